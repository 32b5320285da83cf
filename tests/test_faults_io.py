"""Faults of the machines under a study: a node that disappears, a results folder that refuses writes, a full disk.

    python -m pytest -q tests/test_faults_io.py            # add -m "not slow" to skip the two-node cluster

The faults are real, made by the OS: a node's processes killed (ray.cluster_utils), a folder made read-only
(chmod 0o555; a test run as root first gives up the capabilities that let root write there anyway), and a
file size limit (RLIMIT_FSIZE) that fails a write in the kernel with EFBIG, as a full disk fails it with
ENOSPC: both reach the code as an OSError in the middle of a write. Each fault must end the command with
one sentence naming the file and the cause (exit code 2), and leave what was written before it intact.
"""

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from study.cli import main
from study.launch import run_launch
from study.lock import TRIAL_LOCK
from tests.rays import shared_ray
from tests.standins import file_size_limited, launch_args, sleeping

ROOT = Path(__file__).resolve().parents[1]
LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the child between fork and exec only calls it
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_FOWNER = 24, 1, 3


def _as_unprivileged_writer() -> None:
    """preexec_fn: file permissions bind the child even as root. Root writes into a read-only folder through
    two capabilities; dropped from the bounding set before exec, the new program never holds them."""
    if os.geteuid() != 0:
        return
    for capability in (CAP_DAC_OVERRIDE, CAP_FOWNER):
        if LIBC.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


@pytest.fixture(scope="module")
def read_only_binds(tmp_path_factory) -> None:
    """Skip, saying why, where a child cannot be made to respect a read-only folder (root without CAP_SETPCAP)."""
    folder = tmp_path_factory.mktemp("read-only")
    folder.chmod(0o555)
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(folder / 'x')!r}, 'w')"], capture_output=True,
                               preexec_fn=_as_unprivileged_writer)
    except subprocess.SubprocessError as error:
        pytest.skip(f"running as root, and the capabilities that override file permissions cannot be dropped "
                    f"({error})")
    finally:
        folder.chmod(0o755)
    if probe.returncode == 0:
        pytest.skip("a child still writes into a read-only folder (capabilities beyond DAC_OVERRIDE/FOWNER?)")


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock of the trial that holds the folder (study/lock.py): not the trial's data."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != TRIAL_LOCK}


def _one_error_line(stderr: str, *fragments: str) -> str:
    """stderr holds exactly one line, an error sentence with every fragment in it, and no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert all(fragment in lines[0] for fragment in fragments), stderr
    return lines[0]


# ------------------------------------------------------------------------------------------ a node removed

def _trial_on(node_id: str, tune_dir: Path, epochs: int) -> Path | None:
    """A trial folder whose progress shows it running (not yet done) on the given node, if any."""
    for progress in tune_dir.glob("*/trial_*/progress.csv"):
        try:
            frame = pd.read_csv(progress)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError):
            continue  # being written
        if {"node_id", "epoch"} <= set(frame) and frame["node_id"].iloc[-1] == node_id \
                and frame["epoch"].max() < epochs:
            return progress.parent
    return None


@pytest.mark.slow
def test_a_worker_node_removed_mid_trial_lets_the_trial_finish_on_the_other_node(tmp_path, monkeypatch):
    import ray
    from ray._raylet import Config
    from ray.cluster_utils import Cluster

    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)  # "0" refuses a second node
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # as a real cluster runs
    Config.initialize("")  # this process read RAY_AUTH_MODE when it imported Ray; the nodes' clients run in it
    ray.shutdown()  # the suite's shared Ray, if this process runs it
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.2",
                                                            "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.3")
    cluster.wait_for_nodes()
    head_id, worker_id = cluster.head_node.node_id, worker.node_id
    epochs = 5
    study = tmp_path / "results" / "node"
    removed: dict = {}  # the trial folder caught on the worker, or the watcher's error
    study_over = threading.Event()

    def remove_the_worker_mid_trial():
        try:
            while not study_over.is_set():
                trial = _trial_on(worker_id, study / "tune", epochs)
                if trial is not None:
                    removed["trial"] = trial
                    cluster.remove_node(worker)
                    return
                time.sleep(0.1)
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            removed["error"] = error

    # One search trial, then three seeds: seed 0's run is the search trial's (it trains nothing), seeds 1 and 2
    # train at once, one on each node, so some trial trains on the worker either way. The
    # stand-in trainable (study/tune/standin.py) checkpoints and restores through the study's own Reporter; an
    # epoch of a second leaves time to see a trial start and remove its node.
    watcher = threading.Thread(target=remove_the_worker_mid_trial, daemon=True)
    watcher.start()
    try:
        args = launch_args("--profile", "smoke", "--address", cluster.address, "--input", tmp_path / "input",
                           "--results", tmp_path / "results", "--name", "node", "--tasks", "arrhythmia",
                           "--models", "bigru", "--oversample", "none", "--samples", "1", "--max-epochs", epochs,
                           "--limit", "600", "--seeds", "3")
        code = run_launch(args, trainable=sleeping({"bigru": 1.0}))
    finally:
        study_over.set()
        watcher.join(timeout=60)
        ray.shutdown()
        cluster.shutdown()
    assert "error" not in removed, removed
    assert code == 0
    trial = removed.get("trial")
    assert trial is not None, "no trial was seen running on the worker node"

    # The trial reported every epoch once, in order: the worker's epochs, then the head's from its checkpoint.
    progress = pd.read_csv(trial / "progress.csv")
    epoch_rows = progress.dropna(subset=["epoch"])
    assert epoch_rows["epoch"].astype(int).tolist() == list(range(1, epochs + 1))
    ran_on = list(dict.fromkeys(progress["node_id"]))
    assert ran_on == [worker_id, head_id], progress[["epoch", "node_id"]]
    assert progress["node_id"].iloc[-1] == head_id
    assert progress["attempt_started_at"].nunique() == 2  # the attempt on the worker, the retry on the head

    # The cell's record says so too, and the study finished: every seed with its test metrics.
    cell = json.loads((study / "cells" / "arrhythmia-bigru-none-scratch.json").read_text())
    runs = cell["trials"] + cell["seeds"]
    moved = [run for run in runs if run["ran"]["node_ids"] == [worker_id, head_id]]
    assert len(moved) == 1, runs
    assert len(cell["seeds"]) == 3 and all(seed["test"] is not None for seed in cell["seeds"])
    assert all(seed["epochs_run"] == epochs for seed in cell["seeds"])
    assert cell["trials"][0]["epochs"] == epochs


# ------------------------------------------------------------------------------------------ a trial's folder

def _quiet_epoch(out: Path) -> int | None:
    """With the trial stopped: the epochs it has written if it is between writes (no temporary file, last.pt
    and metrics.csv at the same epoch), else None."""
    if list(out.glob(".*.tmp")) or not (out / "metrics.csv").exists() or not (out / "last.pt").exists():
        return None
    rows = len(pd.read_csv(out / "metrics.csv"))
    return rows if torch.load(out / "last.pt", weights_only=True)["epoch"] == rows else None


def _fault_mid_trial(tmp_path: Path, demo_dir: Path, fault) -> tuple[subprocess.CompletedProcess, dict, int]:
    """Run ``python -m study trial``, stop it between two writes once two epochs are on disk, snapshot the
    folder, apply ``fault(pid, out)``, let it go on. Returns (its outcome, the snapshot, epochs written)."""
    out = tmp_path / "trial"
    child = subprocess.Popen(
        [sys.executable, "-m", "study", "trial", "--input", str(demo_dir), "--cache", str(tmp_path / "cache"),
         "--limit", "600", "--epochs", "300", "--batch-size", "64", "--device", "cpu", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_unprivileged_writer)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and child.poll() is None:
            if (out / "metrics.csv").exists() and len((out / "metrics.csv").read_text().splitlines()) > 2:
                child.send_signal(signal.SIGSTOP)
                epochs = _quiet_epoch(out)
                if epochs is not None:
                    break
                child.send_signal(signal.SIGCONT)  # caught mid-write: let it finish and try again
            time.sleep(0.05)
        else:
            pytest.fail(f"the trial never wrote two epochs: {child.communicate(timeout=60)}")
        before = _snapshot(out)
        fault(child.pid, out)
        child.send_signal(signal.SIGCONT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr), before, epochs


def _assert_trial_intact(out: Path, before: dict, epochs: int) -> None:
    """Every file as it was before the fault (byte for byte), no temporary file, and the state loadable."""
    assert _snapshot(out) == before
    assert not list(out.glob(".*.tmp"))
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == epochs
    assert len(pd.read_csv(out / "metrics.csv")) == epochs
    json.loads((out / "config.json").read_text())


def test_a_trial_whose_disk_fills_mid_run_stops_with_one_sentence_and_its_epochs_intact(tmp_path, demo_dir):
    def fill_the_disk(pid: int, out: Path) -> None:
        # A file size limit of 0 on the running trial: its next write fails in the kernel (EFBIG), as on a full
        # disk (ENOSPC). Python ignores SIGXFSZ, so the write raises instead of killing the process.
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]))

    done, before, epochs = _fault_mid_trial(tmp_path, demo_dir, fill_the_disk)
    out = tmp_path / "trial"
    assert done.returncode == 2, done.stderr
    _one_error_line(done.stderr, f"could not write {out / 'last.pt'}: File too large",
                    "any earlier version of it is unchanged", "run the same command again to continue")
    _assert_trial_intact(out, before, epochs)


def test_a_trial_whose_folder_turns_read_only_mid_run_stops_with_one_sentence_and_its_epochs_intact(
        tmp_path, demo_dir, read_only_binds):
    def make_read_only(pid: int, out: Path) -> None:
        out.chmod(0o555)

    try:
        done, before, epochs = _fault_mid_trial(tmp_path, demo_dir, make_read_only)
    finally:
        if (tmp_path / "trial").exists():
            (tmp_path / "trial").chmod(0o755)  # so pytest can clean up
    out = tmp_path / "trial"
    assert done.returncode == 2, done.stderr
    _one_error_line(done.stderr, f"could not write {out / 'last.pt'}: Permission denied",
                    "run the same command again to continue")
    _assert_trial_intact(out, before, epochs)


# ------------------------------------------------------------------------------------------ a study's folder

STUDY = ["launch", "--profile", "smoke", "--tasks", "arrhythmia", "--oversample", "none", "--samples", "1",
         "--max-epochs", "1", "--limit", "150", "--seeds", "1", "--name", "io"]
DONE, NEXT = "arrhythmia-cnet-none-scratch", "arrhythmia-seq-none-scratch"


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> Path:
    """A study whose first cell (cnet) is done; each test continues a copy of it with a second cell (seq)."""
    root = tmp_path_factory.mktemp("finished")
    shared_ray()
    assert main([*STUDY, "--models", "cnet", "--input", str(root / "input"), "--results", str(root)]) == 0
    return root


def _continue_args(finished_study: Path, results: Path) -> list[str]:
    return [*STUDY, "--models", "cnet,seq", "--input", str(finished_study / "input"), "--results", str(results)]


def _copy_study(finished_study: Path, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the finished study, and a snapshot of the results a fault must leave alone."""
    import shutil

    study = tmp_path / "results" / "io"
    shutil.copytree(finished_study / "io", study)
    return study, _kept(study)


def _kept(study: Path) -> dict[str, bytes]:
    """The finished cell's results: its JSON and its checkpoints."""
    files = _snapshot(study)
    return {name: data for name, data in files.items() if name.startswith((f"cells/{DONE}", f"checkpoints/{DONE}"))}


def _assert_study_intact(study: Path, kept: dict) -> None:
    assert _kept(study) == kept
    assert not (study / "cells" / f"{NEXT}.json").exists()
    assert json.loads((study / "study.json").read_text())["cells"] == [DONE, NEXT]
    assert not [p for p in study.rglob("*.tmp") if p.name.startswith(".")], "a temporary file was left behind"


def _last_line(stderr: str) -> str:
    """The study's last word. (Tune may log tracebacks of its own failed writes before it.)"""
    return stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_study_whose_cells_folder_turns_read_only_stops_with_one_sentence(finished_study, tmp_path,
                                                                           read_only_binds):
    study, kept = _copy_study(finished_study, tmp_path)
    cell_json = study / "cells" / f"{NEXT}.json"
    command = [sys.executable, "-m", "study", *_continue_args(finished_study, tmp_path / "results"), "--num-cpus", "2"]
    (study / "cells").chmod(0o555)
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              preexec_fn=_as_unprivileged_writer)
    finally:
        (study / "cells").chmod(0o755)
    assert done.returncode == 2, done.stdout + done.stderr
    assert _last_line(done.stderr) == (
        f"error: could not write {cell_json}: Permission denied (any earlier version of it is unchanged); "
        "fix that and run the same command again to continue where it stopped")
    _assert_study_intact(study, kept)


@pytest.mark.slow
def test_a_study_whose_disk_fills_while_copying_a_final_checkpoint_stops_with_one_sentence_and_continues_later(
        ray_2cpu, finished_study, tmp_path, capsys):
    study, kept = _copy_study(finished_study, tmp_path)
    target = study / "checkpoints" / NEXT / "seed0" / "best.pt"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # A file size limit on this process only (Ray's processes started before it): the driver's cell JSONs stay far
    # below 800 kB, the seq model's best.pt (about 1.6 MB) does not fit. (Tune's copies of the trials' folders into
    # tune/ fail too; Tune logs that and goes on.)
    resource.setrlimit(resource.RLIMIT_FSIZE, (800_000, hard))
    try:
        code = main(_continue_args(finished_study, tmp_path / "results"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert code == 2
    assert _last_line(capsys.readouterr().err) == (
        f"error: could not write {target}: File too large (any earlier version of it is unchanged); "
        "fix that and run the same command again to continue where it stopped")
    _assert_study_intact(study, kept)
    assert not target.exists()

    # With room again, the same command finishes the study; the finished cell is kept as it was.
    assert main(_continue_args(finished_study, tmp_path / "results")) == 0
    assert f"{DONE}: done earlier, kept" in capsys.readouterr().out
    assert _kept(study) == kept
    assert json.loads((study / "cells" / f"{NEXT}.json").read_text())["seeds"] and target.exists()


@pytest.mark.slow
def test_a_trial_that_cannot_write_its_checkpoint_ends_the_study_with_the_reason(ray_2cpu, finished_study, tmp_path,
                                                                                capsys):
    # The trials run with a 500 kB file size limit (the driver and Ray itself do not): a cnet trial's last.pt
    # (about 900 kB) fails in every attempt.
    flags = [*STUDY[1:], "--models", "cnet", "--input", finished_study / "input", "--results", tmp_path / "results"]
    code = run_launch(launch_args(*flags), trainable=file_size_limited(500_000))
    assert code == 1
    line = _last_line(capsys.readouterr().err)
    assert line.startswith(f"error: 1 cell(s) of study 'io' did not finish: {DONE}: every search trial failed; the "
                           "first error: could not write "), line
    assert "/last.pt: File too large (any earlier version of it is unchanged)" in line, line
    assert line.endswith(". Fix that and run the same command to continue them: python -m study "
                         + " ".join(STUDY) + f" --models cnet --input {finished_study / 'input'} --results "
                         f"{tmp_path / 'results'}"), line
    assert not (tmp_path / "results" / "io" / "cells" / f"{DONE}.json").exists()
