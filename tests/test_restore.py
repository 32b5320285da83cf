"""Tune's state in the results folder written whole or recognised as cut short (study/tune/restore.py), a trial's
epochs read from its checkpoint (study/tune/records.py), and Tune's harmless noise kept off the console."""

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

from study.storage import LocalStorage
from study.tune.restore import WholeFileHandler, unrestorable

ROOT = Path(__file__).resolve().parents[1]


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
    assert unrestorable(LocalStorage(folder)) == why


@pytest.mark.parametrize("missing", ["experiment_state-*", "search_gen_state-*", "tuner.pkl"])
def test_a_run_stopped_before_tune_saved_its_state_is_not_restored(tmp_path, missing):
    folder = tmp_path / "cell-search"
    write_experiment(folder)
    for path in folder.glob(missing):
        path.unlink()
    assert unrestorable(LocalStorage(folder)) == "Tune had not saved its state yet"


WRITER = """
import sys, time, pyarrow.fs
sys.path.insert(0, {root!r})
from study.tune.restore import WholeFileHandler
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
    epoch 2 again. The record must still see every epoch, and choose on all of them."""
    import pandas as pd
    from ray import tune

    from study.tune.records import Recorder, epochs_of
    from study.tune.cells import CellSpec

    def trial(number: int, lr: float, val: list[float]):
        folder = tmp_path / f"trial_{number}" / "checkpoint_000003"
        folder.mkdir(parents=True)
        rows = pd.DataFrame({"epoch": range(1, len(val) + 1), "train_loss": [1.0 / e for e in range(1, len(val) + 1)],
                             "val_metric": val})
        rows.to_csv(folder / "metrics.csv", index=False)
        filesystem = pyarrow.fs.PyFileSystem(WholeFileHandler()) if whole_file else pyarrow.fs.LocalFileSystem()
        # Tune's last result of trial 1 says epoch 1: what its result.json kept.
        return SimpleNamespace(trial_id=f"t{number}", experiment_tag=f"{number}_lr={lr}", status=Trial.TERMINATED,
                               config={"trial": {"lr": lr, "batch_size": 64}}, last_result={"epoch": 1},
                               checkpoint=tune.Checkpoint(str(folder), filesystem=filesystem),
                               pickled_error_file=None)

    spec = CellSpec("arrhythmia-cnet-none-scratch", "arrhythmia/none", {"epochs": 3}, None, 2, (0,), (64,), 0, 100)
    # Trial 1's best epoch (2) is the one its result.json lost; trial 2's result file is whole.
    search = [trial(2, 0.002, [0.5, 0.7, 0.6]), trial(1, 0.001, [0.5, 0.9, 0.6])]
    searched = Recorder(None, "s", {}, {}).search_trials(spec, search, {})
    assert [t.trial_id for t in searched] == ["t1", "t2"]  # in proposal order
    assert [t.val_metric for t in searched] == [0.9, 0.7] and [t.epochs for t in searched] == [3, 3]
    assert Recorder.choose(searched).lr == 0.001
    assert epochs_of(search[1])["val_metric"].tolist() == [0.5, 0.9, 0.6]


def test_tunes_harmless_vanished_file_traceback_is_hidden_and_other_errors_are_not(monkeypatch):
    """Tune renames its searcher state into place while its previous sync is still listing the staging folder;
    the sync logs the vanished temporary file as an ERROR with a traceback in a run that is fine."""
    import logging

    from study.tune.cluster import quiet

    for name in ("RAY_AIR_NEW_OUTPUT", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    logger = logging.getLogger("ray.tune.execution.experiment_state")
    monkeypatch.setattr(logger, "filters", [])
    quiet(verbose=False)

    def record(error: Exception) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "Saving experiment state failed", None,
                                 (type(error), error, None))

    vanished = FileNotFoundError(2, "Failed to open local file '/s/driver_artifacts/.1bd8-tmp-search_gen_state-x.json'")
    assert not logger.filter(record(vanished))
    assert logger.filter(record(FileNotFoundError(2, "Failed to open local file '/s/trial_1/result.json'")))
    assert logger.filter(record(OSError(28, "No space left on device")))
