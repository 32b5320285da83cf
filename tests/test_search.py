"""The study searcher (study/tune/searcher.py) without Ray: the order cells go in, their seed runs and transfer
cells, the caps, and a restore that rebuilds it from Tune's trials alone."""

from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial
from ray.tune.search import Searcher

from study.results import SearchTrial, Whereabouts
from study.tune.records import Recorder
from study.tune.cells import CellSpec, Launch, attach, cell_seed
from study.tune.searcher import StudySearch, StudySearchGenerator

ARRHYTHMIA, MI, TRANSFER = "arrhythmia-cnet-none-scratch", "mi-cnet-none-scratch", "mi-cnet-none-transfer"


def spec(cell_id: str, samples: int = 3, seeds=(0, 1)) -> CellSpec:
    task = cell_id.split("-")[0]
    return CellSpec(cell_id=cell_id, data=f"{task}/none", trial={"task": task, "init": "scratch", "epochs": 4},
                    source=ARRHYTHMIA if cell_id.endswith("transfer") else None, samples=samples, seeds=tuple(seeds),
                    batch_sizes=(64, 128, 256), optuna_seed=cell_seed(0, cell_id), train_beats=100)


class FakeRecorder:
    """The searcher's view of records: a search trial's value is its last result's best_val_metric."""

    choose = staticmethod(Recorder.choose)

    def __init__(self):
        self.written = []

    def search_trials(self, cell, trials, errors):
        return [SearchTrial(t.trial_id, t.config["trial"]["lr"], t.config["trial"]["batch_size"],
                            t.last_result.get("best_val_metric"), 4, False, t.status == Trial.ERROR,
                            "boom" if t.status == Trial.ERROR else None, Whereabouts(None, None, (), ()))
                for t in sorted(trials, key=lambda t: int(t.experiment_tag.split("_")[0]))]

    def write_cell(self, cell, trials, chosen, errors, searched=None):
        self.written.append(cell.cell_id)
        return SimpleNamespace(cell_id=cell.cell_id, best_checkpoint=f"/ckpt/{cell.cell_id}/best.pt")

    @staticmethod
    def done_line(result) -> str:
        return "done"


class Run:
    """Tune as the searcher sees it: trials numbered as proposed, finished by hand."""

    def __init__(self, cells, max_concurrent=2, max_cells=None, trials=(), done=None):
        self.lines, self.recorder = [], FakeRecorder()
        self.launch = Launch(cells=list(cells), done=dict(done or {}), recorder=self.recorder,
                             notify=lambda cell, line: self.lines.append(f"{cell}: {line}"),
                             max_concurrent=max_concurrent, max_cells=max_cells)
        attach(self.launch)
        self.searcher = StudySearch()
        self.trials = list(trials)
        self.number = max((int(t.experiment_tag.split("_")[0]) for t in self.trials), default=0)
        for trial in reversed(self.trials):  # Tune re-adds restored trials newest first
            self.searcher.adopt(trial)

    def propose(self):
        attach(self.launch)  # a process drives one study: the Run in use is the one attached
        config = self.searcher.suggest(f"t{self.number + 1}")
        if config is None or config == Searcher.FINISHED:
            return config
        self.number += 1
        trial = SimpleNamespace(trial_id=f"t{self.number}", experiment_tag=f"{self.number}_x", config=config,
                                status=Trial.RUNNING, last_result={})
        self.trials.append(trial)
        return trial

    def end(self, trial, value: float | None = 0.5, error: bool = False):
        attach(self.launch)
        trial.status = Trial.ERROR if error else Trial.TERMINATED
        trial.last_result = {} if value is None else {"epoch": 4, "val_metric": value, "best_val_metric": value}
        self.searcher.finish(trial, trial.last_result, "boom" if error else None, self.trials)


def test_a_cell_proposes_the_same_trials_whatever_runs_beside_it():
    alone = Run([spec(MI)], max_concurrent=10)
    beside = Run([spec(ARRHYTHMIA), spec(MI)], max_concurrent=10)
    mine = [alone.propose().config["trial"]["lr"] for _ in range(3)]
    theirs = [t.config["trial"]["lr"] for t in (beside.propose() for _ in range(6)) if t.config["cell"] == MI]
    assert mine == theirs and len(set(mine)) == 3


def test_the_longest_chain_goes_first_and_a_transfer_cell_waits_for_its_sources_result():
    run = Run([spec(ARRHYTHMIA, samples=2, seeds=(0,)), spec(MI, samples=2, seeds=(0,)),
               spec(TRANSFER, samples=2, seeds=(0,))], max_concurrent=10)
    first = [run.propose() for _ in range(4)]
    # The arrhythmia cell (a transfer cell waits on it) before the MI cell nothing waits on; the transfer cell waits.
    assert [t.config["cell"] for t in first] == [ARRHYTHMIA, ARRHYTHMIA, MI, MI]
    assert run.propose() is None
    run.end(first[0], 0.6)
    run.end(first[1], 0.4)
    seed = run.propose()  # the search is over: the seed run of the configuration chosen on validation
    assert seed.config["phase"] == "final" and seed.config["trial"]["seed"] == 0
    assert seed.config["trial"]["lr"] == first[0].config["trial"]["lr"]
    assert "configuration chosen" in run.lines[-1]
    assert run.propose() is None  # the transfer cell still waits: its source's result is not written
    run.end(seed)
    assert run.recorder.written == [ARRHYTHMIA]
    transfer = run.propose()
    assert transfer.config["cell"] == TRANSFER and transfer.config["trial"]["init"] == f"/ckpt/{ARRHYTHMIA}/best.pt"


def test_one_cell_at_a_time_runs_the_cells_one_after_another():
    run = Run([spec(ARRHYTHMIA, samples=2, seeds=(0,)), spec(MI, samples=2, seeds=(0,))], max_concurrent=10,
              max_cells=1)
    search = [run.propose(), run.propose()]
    assert run.propose() is None  # the MI cell may not start while the arrhythmia cell is in progress
    for trial in search:
        run.end(trial)
    run.end(run.propose())
    assert [t.config["cell"] for t in (run.propose(), run.propose())] == [MI, MI]


def test_trials_in_flight_are_capped_and_a_paused_trial_holds_no_slot():
    run = Run([spec(ARRHYTHMIA, samples=4)], max_concurrent=2)
    first, second = run.propose(), run.propose()
    assert run.propose() is None
    run.searcher.paused(second.trial_id)  # waiting at a rung: its slot goes to another trial
    third = run.propose()
    assert third is not None and run.propose() is None
    run.searcher.resumed(second.trial_id)
    run.end(first)
    assert run.propose() is None  # second and third in flight


def test_a_cell_whose_search_trials_all_fail_blocks_its_transfer_cell_and_the_search_ends():
    run = Run([spec(ARRHYTHMIA, samples=2), spec(TRANSFER, samples=2)], max_concurrent=10)
    for trial in (run.propose(), run.propose()):
        run.end(trial, value=None, error=True)
    assert run.propose() == Searcher.FINISHED
    assert run.searcher.failures() == [(ARRHYTHMIA, "every search trial failed; the first error: boom", None),
                                       (TRANSFER, f"its source cell {ARRHYTHMIA} failed", ARRHYTHMIA)]
    assert run.searcher.unfinished() == []


def test_a_failed_seed_run_fails_its_cell_and_a_relaunch_proposes_that_seed_again():
    run = Run([spec(MI, samples=1, seeds=(0, 1))], max_concurrent=10)
    run.end(run.propose())
    seeds = [run.propose(), run.propose()]
    run.end(seeds[0])
    run.end(seeds[1], error=True)
    assert run.searcher.failures() == [(MI, "the seed 1 run failed: boom", None)]
    again = Run([spec(MI, samples=1, seeds=(0, 1))], trials=run.trials, max_concurrent=10)
    retry = again.propose()
    assert retry.config["phase"] == "final" and retry.config["trial"]["seed"] == 1
    assert again.propose() is None
    again.end(retry)
    assert again.recorder.written == [MI]


@pytest.mark.parametrize("diverged", [False, True])
def test_a_resumed_seed_run_that_fails_starts_again_once_unless_its_loss_diverged(diverged):
    # A failed seed run an earlier launch began may have lost its checkpoint: trained again from its first epoch,
    # once. One whose loss diverged would only diverge again: its cell fails.
    straight = Run([spec(MI, samples=1, seeds=(0,))], max_concurrent=10)
    straight.end(straight.propose())
    straight.propose()
    restored_trials = [SimpleNamespace(**vars(t)) for t in straight.trials]
    restored_trials[1].status = Trial.PENDING  # in flight when the driver stopped
    run = Run([spec(MI, samples=1, seeds=(0,))], trials=restored_trials, max_concurrent=10)
    assert run.propose() is None  # the seed run goes on from its checkpoint
    resumed = run.trials[1]
    resumed.status, resumed.last_result = Trial.ERROR, {"diverged": 1} if diverged else {}
    run.searcher.finish(resumed, resumed.last_result, "training diverged" if diverged else "boom", run.trials)
    if diverged:
        assert run.searcher.failures() == [(MI, "the seed 0 run failed: training diverged", None)]
        assert run.lines[-2:] == [f"{MI}: the seed 0 run failed (trial t2, not retried): training diverged",
                                  f"{MI}: failed: the seed 0 run failed: training diverged"]
    else:
        again = run.propose()
        assert again.config["phase"] == "final" and again.config["trial"]["seed"] == 0
        assert run.lines[-1] == f"{MI}: the seed 0 run starts again from its first epoch"


def test_a_restored_search_proposes_what_the_uninterrupted_one_does():
    straight = Run([spec(ARRHYTHMIA, samples=6)], max_concurrent=2)
    trials = [straight.propose(), straight.propose()]
    for number in range(2, 6):
        straight.end(trials[number - 2], 0.1 * number)
        trials.append(straight.propose())
    proposals = [t.config["trial"]["lr"] for t in trials]
    # Restored after the fourth proposal: two finished, two in flight.
    restored_trials = [SimpleNamespace(**vars(t)) for t in trials[:4]]
    for t in restored_trials[2:]:
        t.status, t.last_result = Trial.PENDING, {}
    restored = Run([spec(ARRHYTHMIA, samples=6)], max_concurrent=2, trials=restored_trials)
    assert restored.propose() is None  # two in flight: the cap holds
    restored.end(restored.trials[2], 0.4)
    assert restored.propose().config["trial"]["lr"] == proposals[4]


def test_finished_trials_a_restore_brings_back_hold_no_slot_and_are_not_told_twice():
    straight = Run([spec(ARRHYTHMIA, samples=4)], max_concurrent=2)
    first, second = straight.propose(), straight.propose()
    straight.end(first, 0.5)
    straight.end(second, 0.6)
    restored = Run([spec(ARRHYTHMIA, samples=4)], max_concurrent=2, trials=[first, second])
    assert restored.propose() is not None and restored.propose() is not None
    restored.end(first, 0.9)  # told again (a scheduler stopping a paused trial can): ignored
    study = restored.searcher.cells[ARRHYTHMIA].optuna.study
    assert [t.value for t in study.trials if t.value is not None] == [0.5, 0.6]


def test_a_restored_trial_the_replay_does_not_draw_keeps_its_own_values():
    own = {"task": "arrhythmia", "init": "scratch", "epochs": 4, "lr": 0.004321, "batch_size": 128}
    trial = SimpleNamespace(trial_id="t1", experiment_tag="1_x", status=Trial.TERMINATED,
                            config={"cell": ARRHYTHMIA, "phase": "search", "data": "arrhythmia/none", "trial": own},
                            last_result={"val_metric": 0.7, "best_val_metric": 0.7})
    run = Run([spec(ARRHYTHMIA)], trials=[trial])
    assert run.propose().config["trial"]["lr"] != own["lr"]
    study = run.searcher.cells[ARRHYTHMIA].optuna.study
    assert [(t.params, t.value) for t in study.trials if t.state.name == "COMPLETE"] == [
        ({"lr": 0.004321, "batch_size": 128}, 0.7)]


def test_failed_and_metricless_trials_are_told_as_such():
    run = Run([spec(ARRHYTHMIA, samples=3)], max_concurrent=3)
    a, b, c = run.propose(), run.propose(), run.propose()
    run.end(a, value=None, error=True)
    run.end(b, value=None)
    run.end(c, value=float("nan"))
    study = run.searcher.cells[ARRHYTHMIA].optuna.study
    assert [t.state.name for t in study.trials] == ["FAIL", "PRUNED", "FAIL"]


def test_a_trial_that_failed_after_its_best_validation_is_never_chosen():
    """A trial whose loss diverged at a later epoch reported validation figures before it: they do not count, in
    the launch it failed in, nor in one that restores it (Tune's record keeps its last result)."""
    run = Run([spec(ARRHYTHMIA, samples=3, seeds=(0,))], max_concurrent=3)
    diverged, fine, running = run.propose(), run.propose(), run.propose()
    run.end(diverged, value=0.99, error=True)
    run.end(fine, value=0.5)
    study = run.searcher.cells[ARRHYTHMIA].optuna.study
    assert [(t.state.name, t.value) for t in study.trials if t.state.name != "RUNNING"] == [
        ("FAIL", None), ("COMPLETE", 0.5)]
    running.status, running.last_result = Trial.PENDING, {}
    restored = Run([spec(ARRHYTHMIA, samples=3, seeds=(0,))], max_concurrent=3, trials=[diverged, fine, running])
    assert restored.propose() is None  # the replay: every sample is proposed, one still runs
    study = restored.searcher.cells[ARRHYTHMIA].optuna.study
    assert [(t.state.name, t.value) for t in study.trials if t.state.name != "RUNNING"] == [
        ("FAIL", None), ("COMPLETE", 0.5)]
    restored.end(running, value=0.4)
    chosen = {k: fine.config["trial"][k] for k in ("lr", "batch_size")}
    assert restored.searcher.cells[ARRHYTHMIA].chosen == chosen
    assert restored.propose().config["trial"]["lr"] == chosen["lr"]  # the seed run trains the trial that did not fail


def test_the_search_counts_its_proposals_from_the_restored_trials_and_saves_nothing(tmp_path):
    run = Run([spec(ARRHYTHMIA)])
    generator = StudySearchGenerator(run.searcher)
    generator.set_state({"counter": 0, "total_samples": -1, "finished": False, "experiment": None})
    for number in (2, 1):
        generator.adopt(SimpleNamespace(trial_id=f"r{number}", experiment_tag=f"{number}_x", status=Trial.PENDING,
                                        config={"cell": ARRHYTHMIA, "phase": "search",
                                                "trial": {"lr": 0.001, "batch_size": 64}}, last_result={}))
    assert generator.get_state()["counter"] == 2
    run.searcher.save_to_dir(str(tmp_path), "session")
    assert list(tmp_path.iterdir()) == []
    run.searcher.restore_from_dir(str(tmp_path))  # nothing to read, nothing fails


def test_a_cell_done_before_this_launch_gives_its_transfer_cell_its_checkpoint_at_once():
    done = {ARRHYTHMIA: SimpleNamespace(best_checkpoint="/earlier/best.pt")}
    run = Run([spec(TRANSFER)], done=done)
    assert run.propose().config["trial"]["init"] == "/earlier/best.pt"


@pytest.mark.parametrize("cell", [ARRHYTHMIA, MI])
def test_cell_seeds_differ_by_cell_and_study_seed(cell):
    assert cell_seed(0, cell) == cell_seed(0, cell) != cell_seed(1, cell)
    assert cell_seed(0, ARRHYTHMIA) != cell_seed(0, MI)
