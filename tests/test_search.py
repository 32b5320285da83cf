"""The searchers rebuilt from restored trials, and the whole-file writes of Tune's state (study/search.py,
study/storage.py): what makes a study restored after a kill continue as if it had not been stopped."""

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs
import pytest
from ray.tune.experiment import Trial

from study.launch import _unrestorable
from study.search import OptunaProposals, ProposalSearch, SeedProposals
from study.storage import LocalStorage, WholeFileHandler

ROOT = Path(__file__).resolve().parents[1]


class RestoredTrial:
    """What the searchers read of a trial Tune restored: its tag, id, config, status and last result."""

    def __init__(self, number: int, trial_id: str, config: dict, status: str, last_result: dict | None = None):
        self.experiment_tag, self.trial_id, self.config = f"{number}_lr={config.get('lr')}", trial_id, config
        self.status, self.last_result = status, last_result or {}


def optuna_proposals(max_concurrent: int = 2) -> OptunaProposals:
    return OptunaProposals(lr_range=(1e-4, 1e-2), batch_sizes=[64, 128, 256], metric="val", mode="max", seed=3,
                           max_concurrent=max_concurrent)


def uninterrupted() -> list[dict]:
    """Five proposals, two in flight at a time, each finishing before the next is asked for."""
    searcher, proposals = optuna_proposals(), []
    for number in range(5):
        proposals.append(searcher.suggest(f"t{number}"))
        if number >= 1:
            searcher.on_trial_complete(f"t{number - 1}", {"val": 0.1 * number})
    return proposals


def test_a_restored_search_proposes_what_the_uninterrupted_one_does():
    proposals = uninterrupted()
    assert len({p["lr"] for p in proposals}) == 5  # five different draws
    # Restored after the third proposal: t0 and t1 finished, t2 in flight. Tune re-adds them newest first.
    searcher = optuna_proposals()
    for number, status in ((2, Trial.PENDING), (1, Trial.TERMINATED), (0, Trial.TERMINATED)):
        searcher.adopt(RestoredTrial(number + 1, f"t{number}", proposals[number], status,
                                     {"val": 0.1 * (number + 1)} if status == Trial.TERMINATED else None))
    assert searcher.suggest("t3") == proposals[3]
    assert searcher.suggest("t4") is None  # t2 and t3 in flight: the cap holds
    searcher.on_trial_complete("t2", {"val": 0.3})
    assert searcher.suggest("t4") == proposals[4]


def test_finished_trials_a_restore_brings_back_hold_no_slot():
    """The hang this replaces: Tune's ConcurrencyLimiter restored from a state older than the trials still
    counted two finished trials as running, so no further trial was ever proposed."""
    proposals = uninterrupted()
    searcher = optuna_proposals(max_concurrent=2)
    for number in (1, 0):
        searcher.adopt(RestoredTrial(number + 1, f"t{number}", proposals[number], Trial.TERMINATED, {"val": 0.5}))
    assert searcher.suggest("t2") == proposals[2]
    assert searcher.suggest("t3") == proposals[3]
    assert searcher.suggest("t4") is None


def test_a_restored_trial_the_replay_does_not_draw_keeps_its_own_values():
    """Past TPE's random start, a proposal depends on which trials had finished: a replay cannot redraw it,
    and the restored trial's values are entered as they are."""
    own = {"lr": 0.004321, "batch_size": 128}
    searcher = optuna_proposals()
    searcher.adopt(RestoredTrial(1, "t0", own, Trial.TERMINATED, {"val": 0.7}))
    fresh = searcher.suggest("t1")
    assert fresh is not None and fresh != own
    told = [t for t in searcher._study.trials if t.state.name == "COMPLETE"]
    assert [(t.params, t.value) for t in told] == [(own, 0.7)]


def test_a_trial_finished_twice_or_unknown_is_ignored():
    searcher = optuna_proposals(max_concurrent=1)
    first = searcher.suggest("a")
    searcher.on_trial_complete("a", {"val": 0.2})
    searcher.on_trial_complete("a", {"val": 0.9})  # a scheduler stopping a paused trial tells it twice
    searcher.on_trial_complete("nobody", {"val": 0.9})
    assert [t.value for t in searcher._study.trials] == [0.2]
    assert searcher.suggest("b") not in (None, first)


def test_failed_and_metricless_trials_are_told_as_such():
    searcher = optuna_proposals(max_concurrent=3)
    for name in "abc":
        searcher.suggest(name)
    searcher.on_trial_complete("a", None, error=True)
    searcher.on_trial_complete("b", {"loss": 1.0})
    searcher.on_trial_complete("c", {"val": float("nan")}, error=False)
    assert [t.state.name for t in searcher._study.trials] == ["FAIL", "PRUNED", "FAIL"]


def test_the_seed_runs_restored_keep_their_seeds_and_run_each_once():
    searcher = SeedProposals([0, 1, 2, 3], max_concurrent=2)
    searcher.adopt(RestoredTrial(2, "s1", {"seed": 1}, Trial.PENDING))
    searcher.adopt(RestoredTrial(1, "s0", {"seed": 0}, Trial.TERMINATED))
    assert searcher.suggest("x") == {"seed": 2}
    assert searcher.suggest("y") is None  # seeds 1 and 2 in flight
    searcher.on_trial_complete("s1", {})
    assert searcher.suggest("y") == {"seed": 3}
    searcher.on_trial_complete("x", {})
    assert searcher.suggest("z") is None  # every seed proposed


def test_the_search_counts_its_proposals_from_the_restored_trials():
    """Whatever count the searcher state saved (older or newer than the trials), the next trial is numbered
    after the restored ones, and the search ends at num_samples."""
    search = ProposalSearch(SeedProposals([0, 1, 2], max_concurrent=3))
    search.set_state({"counter": 0, "total_samples": 3, "finished": False, "experiment": None})
    search.adopt(RestoredTrial(2, "s1", {"seed": 1}, Trial.PENDING))
    search.adopt(RestoredTrial(1, "s0", {"seed": 0}, Trial.TERMINATED))
    assert search.get_state()["counter"] == 2 and not search.is_finished()
    search.adopt(RestoredTrial(3, "s2", {"seed": 2}, Trial.PENDING))
    assert search.is_finished()


def test_the_searchers_save_nothing_and_read_nothing(tmp_path):
    searcher = optuna_proposals()
    searcher.suggest("a")
    searcher.save_to_dir(str(tmp_path), "session")
    assert list(tmp_path.iterdir()) == []
    searcher.restore_from_dir(str(tmp_path))  # nothing to read, nothing fails
    with pytest.raises(ValueError, match="max_concurrent must be 1 or more; got 0"):
        optuna_proposals(max_concurrent=0)


# ---------------------------------------------------------------------------------------------------------
# Tune's state in the results folder: written whole, or recognised as cut short.


def write_experiment(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    for stamp in ("2026-01-01_00-00-00", "2026-01-01_00-00-09"):
        (folder / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": [], "stamp": stamp}))
        (folder / f"search_gen_state-{stamp}.json").write_bytes(pickle.dumps({"counter": 1}))


CUT_SHORT = "Tune's saved state was cut short when the driver stopped"


@pytest.mark.parametrize("cut, why", [
    (None, None),
    ("experiment_state-2026-01-01_00-00-09.json", CUT_SHORT),  # the newest one is what Tune would restore
    ("search_gen_state-2026-01-01_00-00-09.json", CUT_SHORT),
    ("tuner.pkl", CUT_SHORT),
    ("experiment_state-2026-01-01_00-00-00.json", None),  # an older session's file is not read
])
def test_tunes_state_cut_short_is_recognised(tmp_path, cut, why):
    folder = tmp_path / "cell-search"
    write_experiment(folder)
    if cut is not None:
        data = (folder / cut).read_bytes()
        (folder / cut).write_bytes(data[: len(data) // 2])
    assert _unrestorable(LocalStorage(folder)) == why


@pytest.mark.parametrize("missing", ["experiment_state-*", "search_gen_state-*", "tuner.pkl"])
def test_a_run_stopped_before_tune_saved_its_state_is_not_restored(tmp_path, missing):
    folder = tmp_path / "cell-search"
    write_experiment(folder)
    for path in folder.glob(missing):
        path.unlink()
    assert _unrestorable(LocalStorage(folder)) == "Tune had not saved its state yet"


WRITER = """
import sys, time, pyarrow.fs
sys.path.insert(0, {root!r})
from study.storage import WholeFileHandler
fs = pyarrow.fs.PyFileSystem(WholeFileHandler())
with fs.open_output_stream({target!r}) as stream:
    stream.write(b"new" * 1000)
    print("writing", flush=True)
    time.sleep(60)
    stream.write(b"end")
"""


def test_a_file_written_for_tune_is_whole_or_absent_when_the_writer_is_killed(tmp_path):
    target = tmp_path / "experiment_state-x.json"
    target.write_text("old, whole")
    writer = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), target=str(target))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert target.read_text() == "old, whole"
    # What the killed writer left is a temporary file that the next launch sweeps (data.files.is_temporary).
    from data.files import is_temporary

    assert [is_temporary(p) for p in tmp_path.iterdir() if p != target] == [True]


def test_files_copied_through_the_whole_file_system_arrive_complete(tmp_path):
    source = tmp_path / "staging"
    (source / "trial_1").mkdir(parents=True)
    (source / "experiment_state-x.json").write_text("x" * 300_000)
    (source / "trial_1" / "result.json").write_text("{}\n")
    filesystem = pyarrow.fs.PyFileSystem(WholeFileHandler())
    pyarrow.fs.copy_files(str(source), str(tmp_path / "results"), destination_filesystem=filesystem,
                          chunk_size=4096)
    assert (tmp_path / "results" / "experiment_state-x.json").read_text() == "x" * 300_000
    assert (tmp_path / "results" / "trial_1" / "result.json").read_text() == "{}\n"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["experiment_state-x.json", "trial_1"]
    assert pickle.loads(pickle.dumps(filesystem)) == filesystem  # Tune ships it to the trials' workers


@pytest.mark.parametrize("whole_file", [True, False], ids=["results-folder", "plain-local"])
def test_a_trials_epochs_come_from_its_checkpoint_not_from_a_result_file_a_kill_left_short(tmp_path, whole_file):
    """Tune copies result.json and its experiment state one file at a time; a driver killed in between restores a
    trial from a checkpoint at epoch 2 while result.json stops at epoch 1, and the resumed trial never reports
    epoch 2 again. The summary must still see every epoch, and choose on all of them."""
    import pandas as pd
    from ray import tune

    from study.launch import _search_summary

    def trial(number: int, lr: float, val: list[float], reported: list[int]):
        folder = tmp_path / f"trial_{number}" / "checkpoint_000003"
        folder.mkdir(parents=True)
        rows = pd.DataFrame({"epoch": range(1, len(val) + 1), "train_loss": [1.0 / e for e in range(1, len(val) + 1)],
                             "val_metric": val})
        rows.to_csv(folder / "metrics.csv", index=False)
        filesystem = pyarrow.fs.PyFileSystem(WholeFileHandler()) if whole_file else pyarrow.fs.LocalFileSystem()
        return SimpleNamespace(config={"lr": lr, "batch_size": 64}, error=None,
                               metrics={"experiment_tag": f"{number}_lr={lr}", "trial_id": f"t{number}"},
                               checkpoint=tune.Checkpoint(str(folder), filesystem=filesystem),
                               metrics_dataframe=rows[rows["epoch"].isin(reported)].reset_index(drop=True))

    # Trial 1's best epoch (2) is the one its result.json lost; trial 2's result file is whole.
    search = [trial(2, 0.002, [0.5, 0.7, 0.6], [1, 2, 3]), trial(1, 0.001, [0.5, 0.9, 0.6], [1, 3])]
    trials, curve, best = _search_summary(search, max_epochs=3)
    assert best == {"lr": 0.001, "batch_size": 64}
    assert [t["val_metric"] for t in trials] == [0.9, 0.7]
    assert [t["epochs"] for t in trials] == [3, 3]
    assert [(p["epoch"], p["val_metric"]) for p in curve] == [(1, 0.5), (2, 0.9), (3, 0.6)]


def test_a_trial_without_metrics_in_its_checkpoint_falls_back_to_tunes_results(tmp_path):
    """Results of older versions: search checkpoints did not carry metrics.csv."""
    import pandas as pd
    from ray import tune

    from study.launch import _search_summary

    (tmp_path / "checkpoint_000000").mkdir()
    result = SimpleNamespace(config={"lr": 0.001, "batch_size": 128}, error=None,
                             metrics={"experiment_tag": "1_lr=0.001", "trial_id": "t1"},
                             checkpoint=tune.Checkpoint(str(tmp_path / "checkpoint_000000")),
                             metrics_dataframe=pd.DataFrame({"epoch": [1, 2], "train_loss": [0.9, 0.8],
                                                             "val_metric": [0.4, 0.6]}))
    trials, curve, best = _search_summary([result], max_epochs=4)
    assert best == {"lr": 0.001, "batch_size": 128}
    assert trials[0]["val_metric"] == 0.6 and trials[0]["stopped_early"]
    assert [p["epoch"] for p in curve] == [1, 2]


def test_tunes_harmless_vanished_file_traceback_is_hidden_and_other_errors_are_not(monkeypatch):
    """Tune renames its searcher state into place while its previous sync is still listing the staging folder;
    the sync logs the vanished temporary file as an ERROR with a traceback in a run that is fine."""
    import logging

    from study.launch import _quiet

    for name in ("RAY_AIR_NEW_OUTPUT", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    logger = logging.getLogger("ray.tune.execution.experiment_state")
    monkeypatch.setattr(logger, "filters", [])
    _quiet(verbose=False)

    def record(error: Exception) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "Saving experiment state failed", None,
                                 (type(error), error, None))

    vanished = FileNotFoundError(2, "Failed to open local file '/s/driver_artifacts/.1bd8-tmp-search_gen_state-x.json'")
    assert not logger.filter(record(vanished))
    assert logger.filter(record(FileNotFoundError(2, "Failed to open local file '/s/trial_1/result.json'")))
    assert logger.filter(record(OSError(28, "No space left on device")))
