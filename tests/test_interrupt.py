"""Ctrl-C: the study's driver, run as a user runs it, is interrupted (SIGINT to its whole process group, as a
terminal sends it) and says so; the same command then finishes the study from Tune's saved state."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.standins import standin_driver

ROOT = Path(__file__).resolve().parents[1]
DRIVER = standin_driver({"cnet": 0.3})  # the real driver; epochs of a stand-in trainable take 0.3 s


@pytest.mark.slow
def test_ctrl_c_ends_the_launch_with_130_and_the_same_command_finishes_it(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="ri")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_TMPDIR=ray_tmp, PYTHONPATH=str(ROOT))
    flags = ["launch", "--profile", "smoke", "--input", str(tmp_path / "input"), "--results", str(tmp_path / "results"),
             "--name", "ctrlc", "--num-cpus", "2", "--tasks", "arrhythmia,mi", "--models", "cnet", "--oversample",
             "none", "--inits", "transfer", "--samples", "2", "--max-epochs", "10", "--grace-period", "1",
             "--limit", "200", "--seeds", "1"]
    log_path = tmp_path / "first.log"
    try:
        with open(log_path, "w") as log:
            driver = subprocess.Popen([*DRIVER, *flags], cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while "search started" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "search started" in log_path.read_text(), log_path.read_text()
        time.sleep(1.5)  # trials part-way through their 10 epochs (3 s)
        os.killpg(driver.pid, signal.SIGINT)
        code = driver.wait(timeout=60)
        first = log_path.read_text()
        assert code == 130, first
        assert "Study 'ctrlc' interrupted after" in first and "Tune's state is saved" in first, first
        command = "Run the same command to continue: python -m study " + " ".join(flags)
        assert command in first, first
        assert "Traceback" not in first, first
        cells = tmp_path / "results" / "ctrlc" / "cells"
        assert not list(cells.glob("mi-*.json")), "the MI cell cannot have finished before its source"
        study = json.loads((tmp_path / "results" / "ctrlc" / "study.json").read_text())
        assert study["failures"] == [], "an interruption is not a failure"

        # The same command finishes it; with --resume too, which only ever continues a study.
        second = subprocess.run([*DRIVER, *flags, "--resume"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "continuing the interrupted run" in second.stdout, second.stdout
        assert sorted(p.stem for p in cells.glob("*.json")) == ["arrhythmia-cnet-none-scratch",
                                                                "mi-cnet-none-transfer"]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.parametrize("loading", ["pandas", "libtorch"])
def test_ctrl_c_while_the_libraries_load_ends_the_command_with_130(tmp_path, loading):
    """`python -m study` takes seconds to import its libraries: a Ctrl-C then ends it as one later does, with no
    traceback, whichever library was loading. The signal goes once the process has mapped the library named (a
    fixed delay would land before Python has started on a loaded machine, where no handler of ours could run)."""
    command = [sys.executable, "-m", "study", "trial", "--demo", "--input", str(tmp_path / "input"),
               "--out", str(tmp_path / "trial"), "--epochs", "1"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while loading not in Path(f"/proc/{process.pid}/maps").read_text() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the command went on after Ctrl-C")
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in err, err


def test_ctrl_c_in_a_trial_or_before_a_launchs_trials_start_says_how_to_continue(tmp_path, monkeypatch, capsys):
    """Training, loading data, oversampling, starting Ray: a Ctrl-C there is an interruption too, and says what to
    run (the subprocess tests above interrupt the launch in Tune's loop and the trial while it imports)."""
    from study import cli, launch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(launch, "run_launch", interrupted)
    monkeypatch.setattr(cli, "run_trial_command", interrupted)
    flags = ["launch", "--profile", "smoke", "--results", str(tmp_path / "results"), "--name", "early"]
    assert cli.main(flags) == 130
    assert capsys.readouterr().err == ("interrupted; finished cells are kept: run the same command to continue: "
                                       f"python -m study {' '.join(flags)}\n")
    assert cli.main(["trial", "--demo", "--out", str(tmp_path / "trial")]) == 130
    assert capsys.readouterr().err == ("interrupted; last.pt holds every finished epoch: the same command continues "
                                       "from there\n")
