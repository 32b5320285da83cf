"""The study's ASHA scheduler (study/tune/scheduler.py) on its own: fake trials and a fake Tune controller, no Ray.
Its rungs decide the same whichever trial reports first, and a restored scheduler replays them (tests/test_faults.py
runs it under real Tune with a driver killed)."""

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from study.storage import Storage
from study.tune.scheduler import StudyASHA, milestones


class FakeTrial:
    def __init__(self, number: int, trial_id: str, cell: str = "arrhythmia-cnet-none-scratch"):
        self.trial_id, self.experiment_tag = trial_id, f"{number}_lr=0.001"
        self.config = {"cell": cell, "phase": "search", "trial": {"epochs": 4}}
        self.status, self.last_result = Trial.RUNNING, {}

    def set_status(self, status: str) -> None:
        self.status = status


class FakeSearcher:
    """What StudyASHA asks of the study searcher: every trial counts for its cell; it records how trials ended."""

    def __init__(self):
        self.told, self.held = {}, set()
        self.launch = SimpleNamespace(raise_fatal=lambda: None)

    def is_current(self, trial) -> bool:
        return True

    def ranks(self) -> dict:
        return {}  # no cell goes before another

    def paused(self, trial_id) -> None:
        self.held.add(trial_id)

    def resumed(self, trial_id) -> None:
        self.held.discard(trial_id)

    def finish(self, trial, result, error, trials) -> None:
        self.told[trial.trial_id] = result

    def tally(self, running: int, starting: int) -> None:
        self.counts = (running, starting)


class FakeController:
    """Tune's controller as a scheduler sees it: the trials, the search algorithm, and stop_trial, which tells the
    scheduler of a paused trial through on_trial_remove, as Tune does."""

    def __init__(self, trials, scheduler):
        self.trials, self.scheduler = list(trials), scheduler
        self.search_alg = SimpleNamespace(searcher=FakeSearcher(), adopt=lambda trial: None)

    @property
    def told(self) -> dict:
        return self.search_alg.searcher.told

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        trial.status = Trial.TERMINATED


def report(scheduler, controller, trial, epoch: int, value: float) -> str:
    """What Tune does with a result: the scheduler's decision changes the trial's status."""
    trial.last_result = {"epoch": epoch, "val_metric": value}
    decision = scheduler.on_trial_result(controller, trial, trial.last_result)
    trial.status = {TrialScheduler.PAUSE: Trial.PAUSED, TrialScheduler.STOP: Trial.TERMINATED}.get(decision,
                                                                                                 trial.status)
    return decision


def new_scheduler(path: Path) -> StudyASHA:
    return StudyASHA(grace_period=1, store=Storage.at(path.parent), state_file=path.name)


def test_rungs_are_asha_milestones_below_the_maximum():
    assert milestones(1, 4, 2) == (1, 2)
    assert milestones(1, 3, 2) == (1, 2)
    assert milestones(10, 80, 2) == (10, 20, 40)
    assert milestones(2, 2, 2) == ()


@pytest.mark.parametrize("arrival", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)])
def test_rung_decisions_do_not_depend_on_which_trial_reports_first(tmp_path, arrival):
    # Proposed in the order a, b, c. One after another, ASHA would keep a (nothing to compare with), stop b
    # (0.3 < the median of [0.5]) and keep c (0.9 >= the median of [0.5, 0.3]).
    trials = [FakeTrial(1, "zz"), FakeTrial(2, "aa"), FakeTrial(3, "mm")]  # IDs sort unlike the proposals
    values = [0.5, 0.3, 0.9]
    scheduler = new_scheduler(tmp_path / "rungs.json")
    controller = FakeController(trials, scheduler)
    for index in arrival:
        report(scheduler, controller, trials[index], 1, values[index])
        chosen = scheduler.choose_trial_to_run(controller)  # Tune asks every step: paused trials get settled
        if chosen is not None:
            chosen.status = Trial.RUNNING
    assert [trials[i].status for i in range(3)] == [Trial.RUNNING, Trial.TERMINATED, Trial.RUNNING]
    saved = json.loads((tmp_path / "rungs.json").read_text())["trials"]
    assert {t: saved[t]["1"]["stop"] for t in saved} == {"zz": False, "aa": True, "mm": False}
    if arrival.index(1) < arrival.index(0):  # b waited for a, paused, and was stopped then
        assert controller.told["aa"]["val_metric"] == 0.3  # the searcher learns its value, as when ASHA stops it


def test_a_trial_waits_at_a_rung_until_the_earlier_trials_are_known(tmp_path):
    first, second = FakeTrial(1, "b"), FakeTrial(2, "a")
    scheduler = new_scheduler(tmp_path / "rungs.json")
    controller = FakeController([first, second], scheduler)
    assert report(scheduler, controller, second, 1, 0.1) == TrialScheduler.PAUSE
    assert scheduler.choose_trial_to_run(controller) is None  # the first trial has not reached the rung
    assert report(scheduler, controller, first, 1, 0.8) == TrialScheduler.CONTINUE
    assert scheduler.choose_trial_to_run(controller) is None and second.status == Trial.TERMINATED
    # An earlier trial that ends (fails) before the rung no longer holds a later one back.
    third, fourth = FakeTrial(3, "c"), FakeTrial(4, "d")
    controller.trials += [third, fourth]
    assert report(scheduler, controller, fourth, 1, 0.9) == TrialScheduler.PAUSE
    third.status = Trial.ERROR
    assert scheduler.choose_trial_to_run(controller) is fourth


def test_a_trial_that_reports_its_loss_diverged_is_denied_its_retries_and_no_other_is(tmp_path):
    fine, diverged = FakeTrial(1, "a"), FakeTrial(2, "b")
    diverged.max_failures = fine.max_failures = 3  # FailureConfig(max_failures=3), as study/tune/restore.py sets
    scheduler = new_scheduler(tmp_path / "rungs.json")
    controller = FakeController([diverged, fine], scheduler)
    assert report(scheduler, controller, fine, 1, 0.5) == TrialScheduler.CONTINUE
    # The trainable's last report before it raises TrainingDiverged: no epoch, no metric.
    assert scheduler.on_trial_result(controller, diverged, {"diverged": 1}) == TrialScheduler.CONTINUE
    assert (diverged.max_failures, fine.max_failures) == (0, 3)


def test_a_rung_compares_a_cells_search_trials_only_and_never_stops_a_seed_run(tmp_path):
    # Proposed a, b, c, d across the experiment; b belongs to another cell, d is a seed run of a's cell.
    a, b = FakeTrial(1, "a"), FakeTrial(2, "b", cell="mi-cnet-none-scratch")
    c, d = FakeTrial(3, "c"), FakeTrial(4, "d")
    d.config["phase"] = "final"
    scheduler = new_scheduler(tmp_path / "rungs.json")
    controller = FakeController([a, b, c, d], scheduler)
    assert report(scheduler, controller, a, 1, 0.5) == TrialScheduler.CONTINUE
    # b is compared with nothing of its cell (a is another cell's): it goes on although it is worse than a.
    assert report(scheduler, controller, b, 1, 0.1) == TrialScheduler.CONTINUE
    # c waits for no one but a, and is stopped below a's value; b's lower value does not count for it.
    assert report(scheduler, controller, c, 1, 0.3) == TrialScheduler.STOP
    assert report(scheduler, controller, d, 1, 0.0) == TrialScheduler.CONTINUE  # a seed run has no rungs
    assert sorted(json.loads((tmp_path / "rungs.json").read_text())["trials"]) == ["a", "b", "c"]


def test_a_restored_scheduler_replays_its_rungs_and_holds_undecided_trials(tmp_path):
    path = tmp_path / "rungs.json"
    first, second = FakeTrial(1, "a"), FakeTrial(2, "b")
    scheduler = new_scheduler(path)
    controller = FakeController([first, second], scheduler)
    assert report(scheduler, controller, first, 1, 0.8) == TrialScheduler.CONTINUE
    assert report(scheduler, controller, second, 1, 0.2) == TrialScheduler.STOP
    assert report(scheduler, controller, first, 2, 0.9) == TrialScheduler.CONTINUE

    # Tune.restore unpickles the scheduler from tuner.pkl, pickled before any trial ran: the rungs come from the file.
    restored = pickle.loads(pickle.dumps(scheduler))
    assert restored._records is None
    # Tune's saved state was older than the rungs: `second` comes back PENDING at the rung where it was stopped;
    # a trial proposed later stands at a rung not decided yet. Both are held; a trial between rungs is not.
    second_again, undecided, between = FakeTrial(2, "b"), FakeTrial(3, "c"), FakeTrial(4, "d")
    second_again.last_result = {"epoch": 1, "val_metric": 0.2}
    undecided.last_result = {"epoch": 2, "val_metric": 0.95}
    between.last_result = {"epoch": 3, "val_metric": 0.1}
    first_again = FakeTrial(1, "a")
    first_again.last_result = {"epoch": 1, "val_metric": 0.8}  # restored from the checkpoint before epoch 2
    controller = FakeController([undecided, second_again, between, first_again], restored)  # newest first
    for trial in controller.trials:
        trial.status = Trial.PENDING
        restored.on_trial_add(controller, trial)
    assert [t.status for t in controller.trials] == [Trial.PAUSED, Trial.PAUSED, Trial.PENDING, Trial.PENDING]
    # `undecided` is compared with the first trial's epoch 2, on record from before the kill: 0.95 >= 0.9, go on.
    # A paused trial free to go on is chosen before pending ones (Tune starts those by itself).
    assert restored.choose_trial_to_run(controller) is undecided
    assert json.loads(path.read_text())["trials"]["c"]["2"] == {"value": 0.95, "stop": False}
    assert second_again.status == Trial.TERMINATED  # stopped before the kill: stopped again, not trained on
    assert controller.told["b"]["val_metric"] == 0.2
    undecided.status = Trial.PENDING  # what Tune does with the trial chosen
    assert restored.choose_trial_to_run(controller) is first_again  # then the pending ones, in proposal order
    assert report(restored, controller, first_again, 2, 0.9) == TrialScheduler.CONTINUE  # the decision replayed
