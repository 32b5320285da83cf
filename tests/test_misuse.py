"""Misuse that needs more than one attempt to show (the one-attempt kind is the corpus, tests/test_bad_inputs*.py):
a training loss that overflows, in a trial and in a study cell; a lock left by a holder that is gone; a relaunch
on data changed or deleted since; trials asking for more than any node has. The suite's shared Ray of 2 CPUs (no
GPU) serves the module."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.beats import kaggle_text
from study.cli import main
from study.launch import StudyError, run_launch
from study.lock import FolderBusy, holding
from study.storage import LocalStorage
from tests.standins import launch_args, sleeping

ONE_CELL = ["--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none", "--inits", "scratch",
            "--samples", "1", "--seeds", "1", "--max-epochs", "1", "--limit", "150"]
DIVERGED = (r"training diverged: the loss of epoch 1, batch \d+ of \d+ is (NaN|infinite) \(learning rate \S+, batch "
            r"size \d+\); the trial stopped without saving that epoch")


def copy_input(demo_dir: Path, to: Path, scale_train: float = 1.0) -> Path:
    """The arrhythmia CSVs of the demo set in ``to``; mitbih_train.csv's samples times ``scale_train``."""
    to.mkdir(parents=True)
    shutil.copy(demo_dir / "mitbih_test.csv", to / "mitbih_test.csv")
    if scale_train == 1.0:
        shutil.copy(demo_dir / "mitbih_train.csv", to / "mitbih_train.csv")
    else:
        table = np.loadtxt(demo_dir / "mitbih_train.csv", delimiter=",")
        (to / "mitbih_train.csv").write_text(kaggle_text(table[:, :-1] * scale_train, table[:, -1].astype(int)))
    return to


# ------------------------------------------------------------------------------------ a loss that overflows

def test_a_loss_that_overflows_ends_the_trial_with_its_epoch_and_batch(demo_dir, tmp_path, capsys):
    # Samples of 1e38 are finite in float32, but the network's sums overflow them: the loss is not a number.
    folder = copy_input(demo_dir, tmp_path / "input", scale_train=1e38)
    out = tmp_path / "trial"
    with pytest.warns(UserWarning, match=r"lie outside \[0, 1\]"):  # said first, and the trial goes on
        code = main(["trial", "--input", str(folder), "--limit", "150", "--epochs", "2", "--batch-size", "32",
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert re.fullmatch(rf"error: {DIVERGED}: lower the learning rate, or look for extreme values in the data\n",
                        err), err
    assert not (out / "last.pt").exists() and not (out / "final.json").exists(), "no epoch was saved"


@pytest.mark.slow
def test_a_study_cell_whose_loss_overflows_is_failed_with_the_reason(ray_2cpu, demo_dir, tmp_path, capfd):
    folder = copy_input(demo_dir, tmp_path / "input", scale_train=1e38)
    code = run_launch(launch_args("--input", folder, "--results", tmp_path / "results", "--name", "nan", *ONE_CELL))
    err = capfd.readouterr().err  # Ray's and Tune's loggers too: they write to the process's stderr
    assert code == 1
    assert "arrhythmia-cnet-none-scratch: every search trial failed; the first error: training diverged" in err, err
    assert "Traceback" not in err, err  # Tune's traceback of the failed trial stays in its error.txt
    study = json.loads((tmp_path / "results" / "nan" / "study.json").read_text())
    [failure] = study["failures"]
    assert failure["cell_id"] == "arrhythmia-cnet-none-scratch"
    assert re.search(DIVERGED, failure["error"]), failure
    assert not (tmp_path / "results" / "nan" / "cells" / "arrhythmia-cnet-none-scratch.json").exists()
    # Failed at its first error: Tune's retries (max_failures=3, for lost nodes) would only diverge again.
    [errors] = (tmp_path / "results" / "nan" / "tune").rglob("error.txt")
    assert errors.read_text().count("Failure # ") == 1, errors.read_text()


def test_an_attempt_that_restores_a_diverged_checkpoint_raises_its_error_without_training(tmp_path, monkeypatch):
    # A driver killed between the "diverged" report and the error restarts the trial from that checkpoint.
    from study.trial import TrainingDiverged
    from study.tune import trainable

    (tmp_path / trainable.DIVERGED_FILE).write_text("training diverged: the loss of epoch 3, batch 2 of 9 is NaN")
    monkeypatch.setattr(trainable, "restore_work_dir", lambda config: tmp_path)
    with pytest.raises(TrainingDiverged, match=r"^training diverged: the loss of epoch 3, batch 2 of 9 is NaN$"):
        trainable.study_trainable({"phase": "search", "data": "absent", "trial": {}}, datasets={})


# ------------------------------------------------------------------------------------------------- locks

def test_a_lock_whose_holder_is_gone_is_taken_over_and_a_live_one_is_not(tmp_path):
    store = LocalStorage(tmp_path / "study")
    store.root.mkdir()
    # What a killed driver leaves: the file, its record, and no flock (the system dropped it with the process).
    (store.root / "launch.lock").write_text(json.dumps({"host": "elsewhere", "pid": 123, "since": "then"}))
    said = []
    with holding(store, "launch.lock", "study folder", say=said.append):
        assert said == [f"took over the lock of study folder {store.root}: process 123 on host elsewhere since "
                        "then held it and is gone"]
        mine = json.loads((store.root / "launch.lock").read_text())
        assert mine["pid"] == os.getpid()
        with pytest.raises(FolderBusy, match=rf"study folder \S+ is in use by process {os.getpid()} on host "):
            with holding(store, "launch.lock", "study folder"):
                pass
    assert not (store.root / "launch.lock").exists(), "a released lock leaves no file"


class _Objects:
    """An object store's few calls a lock makes (study.storage.RemoteStorage's names)."""

    def __init__(self):
        self.location, self.objects = "s3://bucket/study", {}

    def read_text(self, rel):
        return self.objects.get(rel)

    def write_text(self, rel, text):
        self.objects[rel] = text

    def delete(self, rel):
        self.objects.pop(rel, None)

    def ref(self, rel):
        return f"{self.location}/{rel}"


def test_a_lock_in_an_object_store_is_taken_over_only_from_a_process_of_this_host_that_is_gone():
    import socket

    store = _Objects()
    store.objects["launch.lock"] = json.dumps({"host": "node-7", "pid": 1, "since": "t"})
    with pytest.raises(FolderBusy, match=r"in use by process 1 on host node-7 since t: .* if that process is gone, "
                                         r"delete s3://bucket/study/launch\.lock$"):
        with holding(store, "launch.lock", "study folder"):
            pass
    gone = 2**22 + 12345  # above any pid this test's machine hands out
    store.objects["launch.lock"] = json.dumps({"host": socket.gethostname(), "pid": gone, "since": "t"})
    said = []
    with holding(store, "launch.lock", "study folder", say=said.append):
        assert json.loads(store.objects["launch.lock"])["pid"] == os.getpid()
    assert said and f"process {gone}" in said[0] and "launch.lock" not in store.objects


def test_a_trial_takes_over_the_lock_a_killed_trial_left(demo_dir, tmp_path, capsys):
    out = tmp_path / "trial"
    out.mkdir()
    (out / "trial.lock").write_text(json.dumps({"host": "h", "pid": 99, "since": "s"}))
    assert main(["trial", "--input", str(demo_dir), "--cache", str(tmp_path / "cache"), "--limit", "150",
                 "--epochs", "1", "--batch-size", "32", "--out", str(out)]) == 0
    assert f"took over the lock of trial folder {out}: process 99 on host h since s" in capsys.readouterr().out
    assert (out / "final.json").exists() and not (out / "trial.lock").exists()


# ------------------------------------------------------------------------ data changed or deleted since

def test_a_relaunch_on_changed_data_names_the_file_and_recomputes_only_on_request(ray_2cpu, demo_dir, tmp_path,
                                                                                  capsys):
    folder = copy_input(demo_dir, tmp_path / "input")
    flags = ["--input", folder, "--results", tmp_path / "results", "--name", "changed", *ONE_CELL]
    assert run_launch(launch_args(*flags), trainable=sleeping({"cnet": 0.0})) == 0
    cell = tmp_path / "results" / "changed" / "cells" / "arrhythmia-cnet-none-scratch.json"
    before = json.loads(cell.read_text())
    lines = (folder / "mitbih_test.csv").read_text().splitlines(keepends=True)
    (folder / "mitbih_test.csv").write_text("".join(lines[1:] + lines[:1]))  # the same beats, another order
    capsys.readouterr()

    with pytest.raises(StudyError, match=r"study 'changed': 1 finished cell\(s\) \(arrhythmia-cnet-none-scratch\) "
                                         r"were computed on other data than \S+ holds now: mitbih_test\.csv \(sha256 "
                                         r"\w{12}\.\.\. then, \w{12}\.\.\. now\) changed since\. Start a study of the "
                                         r"data as it is with another --name, or recompute those cells .* with "
                                         r"--recompute-changed$"):
        run_launch(launch_args(*flags), trainable=sleeping({"cnet": 0.0}))
    assert json.loads(cell.read_text()) == before, "the refused relaunch left the cell as it was"

    assert run_launch(launch_args(*flags, "--recompute-changed"), trainable=sleeping({"cnet": 0.0})) == 0
    assert "arrhythmia-cnet-none-scratch: computed on other data (mitbih_test.csv" in capsys.readouterr().out
    after = json.loads(cell.read_text())
    assert after["data_fingerprint"] != before["data_fingerprint"]

    (folder / "mitbih_train.csv").unlink()
    with pytest.raises(ValueError, match=r"^\S+mitbih_train\.csv was deleted since study 'changed' last read it: put "
                                         r"it back to continue the study, or start another with --name$"):
        run_launch(launch_args(*flags), trainable=sleeping({"cnet": 0.0}))


# ------------------------------------------------------------------------------ resources no node has

@pytest.mark.parametrize("flags, asked, largest", [
    (["--cpus-per-trial", "4"], r"4 CPU\(s\)", r"2 CPU\(s\)"),
    (["--gpus-per-trial", "1"], r"1 CPU\(s\) and 1 GPU\(s\)", r"2 CPU\(s\) and 0 GPU\(s\)"),
])
def test_a_trial_larger_than_every_node_fails_at_launch(ray_2cpu, demo_dir, tmp_path, flags, asked, largest):
    with pytest.raises(StudyError, match=rf"^a trial asks for {asked} \(--cpus-per-trial, --gpus-per-trial\), and the "
                                         rf"largest node of the cluster has {largest}, so no trial could ever start"):
        run_launch(launch_args("--input", demo_dir, "--results", tmp_path / "results", *ONE_CELL, *flags),
                   trainable=sleeping({"cnet": 0.0}))
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))
