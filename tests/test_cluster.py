"""A two-node Ray cluster on loopback (127.0.0.2 head, 127.0.0.3 worker) runs a study through --address."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.rays import stop_cluster

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_two_node_cluster_runs_a_study_through_its_address(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # "0" means single-node only: it refuses a second node
    port = free_port()
    address = f"127.0.0.2:{port}"

    def ray_cli(*args):
        return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=180)

    temp_dir = tempfile.mkdtemp(prefix="rc")  # short: Ray's socket paths live under it; names this cluster's processes
    head = ray_cli("start", "--head", "--node-ip-address=127.0.0.2", f"--port={port}", "--num-cpus=1",
                   "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}")
    assert head.returncode == 0, head.stdout + head.stderr
    try:
        worker = ray_cli("start", f"--address={address}", "--node-ip-address=127.0.0.3", "--num-cpus=1")
        assert worker.returncode == 0, worker.stdout + worker.stderr
        study = subprocess.run(
            [sys.executable, "-m", "study", "launch", "--profile", "smoke", "--address", address,
             "--input", str(tmp_path / "input"), "--results", str(tmp_path / "results"), "--name", "cluster",
             "--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none", "--samples", "4",
             "--max-epochs", "3", "--grace-period", "1", "--limit", "600",
             "--seeds", "2"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert study.returncode == 0, study.stdout + study.stderr
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    result = json.loads((tmp_path / "results" / "cluster" / "cells" / "arrhythmia-cnet-none-scratch.json").read_text())
    nodes = {node for trial in result["trials"] for node in trial["ran"]["nodes"]}
    assert nodes == {"127.0.0.2", "127.0.0.3"}, result["trials"]
    assert len(result["seeds"]) == 2
