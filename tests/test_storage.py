"""Study files on a local folder or on S3 (a moto S3 server on loopback stands in for AWS)."""

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from study.cli import main
from study.launch import run_launch
from study.results import StudyFolder
from study.storage import LocalStorage, RemoteStorage, Storage, fetch, is_uri
from tests.rays import own_ray
from tests.standins import crashing_once, launch_args, standin_driver

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on 127.0.0.2 with an empty bucket "study"; the AWS SDK (pyarrow's too) finds it through
    AWS_ENDPOINT_URL, and Ray workers started afterwards inherit it."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.2", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket="study")
    yield "s3://study"
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def objects(prefix: str) -> list[str]:
    """Every object key under an s3:// prefix, relative to it."""
    import pyarrow.fs

    fs, base = pyarrow.fs.FileSystem.from_uri(prefix)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1:] for i in infos if i.type == pyarrow.fs.FileType.File)


def test_uris_and_local_paths_are_told_apart():
    assert is_uri("s3://bucket/x") and is_uri("gs://b/x") and is_uri("hdfs://host/x")
    assert not is_uri("results") and not is_uri("/abs/results") and not is_uri("file:///abs/results")
    assert not is_uri("C:\\results")
    assert isinstance(Storage.at("file:///tmp/x"), LocalStorage) and Storage.at("file:///tmp/x").location == "/tmp/x"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_storage_reads_writes_lists_and_names_its_files(where, tmp_path, request):
    location = str(tmp_path / "study") if where == "local" else request.getfixturevalue("s3") + f"/{tmp_path.name}"
    store = Storage.at(location).child("smoke")
    assert store.read_json("study.json") is None and not store.exists("study.json")
    store.makedirs()
    store.write_json("cells/a.json", {"b": 1, "a": [1.5]})
    store.write_text("cells/notes.txt", "x")
    (tmp_path / "best.pt").write_bytes(b"\x00weights")
    store.put_file(tmp_path / "best.pt", "checkpoints/a/seed0/best.pt")
    assert store.read_json("cells/a.json") == {"a": [1.5], "b": 1}
    assert store.read_text("cells/a.json") == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    assert store.list("cells", ".json") == ["a.json"] and store.list("nothing") == []
    ref = store.ref("checkpoints/a/seed0/best.pt")
    assert ref == (f"{location}/smoke/checkpoints/a/seed0/best.pt" if where == "s3"
                   else str(tmp_path / "study" / "smoke" / "checkpoints" / "a" / "seed0" / "best.pt"))
    assert fetch(ref, tmp_path / "fetched").read_bytes() == b"\x00weights"
    store.write_text("cells/bad.json", "{not json")
    with pytest.raises(ValueError, match=r"cells/bad.json is not valid JSON"):
        store.read_json("cells/bad.json")
    if where == "local":  # a folder where a cell's file belongs is listed, and reading it names it
        (tmp_path / "study" / "smoke" / "cells" / "folder.json").mkdir()
        assert store.list("cells", ".json") == ["a.json", "bad.json", "folder.json"]
        with pytest.raises(ValueError, match=r"cells/folder.json is a folder where a file belongs; move it away\.$"):
            store.read_json("cells/folder.json")
    # A second storage opened from the reference string sees the same files (what other nodes do).
    assert Storage.at(store.location).read_json("cells/a.json") == {"a": [1.5], "b": 1}
    if where == "local":
        assert not list((tmp_path / "study").rglob("*.tmp"))


def test_bad_locations_fail_with_a_sentence(s3, tmp_path):
    with pytest.raises(ValueError, match=r"cannot open nosuch://x/y: .*give a local folder or a URI such as s3://"):
        Storage.at("nosuch://x/y")
    missing = Storage.at("s3://no-such-bucket/results")
    with pytest.raises(OSError, match=r"could not write s3://no-such-bucket/results/study.json: .*no-such-bucket"):
        missing.write_json("study.json", {})
    with pytest.raises(FileNotFoundError, match=r"s3://study/none/best.pt does not exist"):
        fetch(f"{s3}/none/best.pt", tmp_path)


@pytest.mark.slow
def test_a_study_with_results_on_s3_runs_resumes_transfers_and_reports(s3, tmp_path, monkeypatch, capsys):
    from models import load_checkpoint

    marker = tmp_path / "crashed"
    results = f"{s3}/runs"
    flags = ["launch", "--profile", "smoke", "--input", str(tmp_path / "input"), "--results", results,
             "--name", "remote", "--tasks", "arrhythmia,mi", "--models", "cnet", "--oversample", "none",
             "--limit", "150", "--samples", "1", "--max-epochs", "2", "--grace-period", "1", "--seeds", "1",
             "--transfer-mode", "frozen"]
    # A Ray of its own, started after s3 set the endpoint and keys in the environment its workers inherit.
    with own_ray(num_cpus=2):
        monkeypatch.chdir(tmp_path)  # after ray.init (workers start in its folder): to see that nothing lands here
        # The first search trial crashes once, after epoch 1.
        assert run_launch(launch_args(*flags[1:]), trainable=crashing_once(marker, epoch=1)) == 0
        first = capsys.readouterr().out
        assert main(flags) == 0  # the same command again: every cell is found done on S3
        again = capsys.readouterr().out
    assert marker.exists(), "the injected crash did not happen"
    assert f"results in {s3}/runs/remote" in first
    assert again.count("done earlier, kept") == 3

    files = objects(f"{s3}/runs/remote")
    cells = ["arrhythmia-cnet-none-scratch", "mi-cnet-none-scratch", "mi-cnet-none-transfer"]
    assert "study.json" in files and "tune/rungs.json" in files
    assert [f for f in files if f.startswith("cells/")] == [f"cells/{c}.json" for c in cells]
    for cell in cells:
        assert {f"checkpoints/{cell}/seed0/{name}" for name in ("best.pt", "final.json", "metrics.csv")} <= set(files)
    assert any(f.startswith("tune/study/trial_") for f in files)
    assert not (tmp_path / "results").exists(), "a study on S3 writes nothing into the local results folder"

    store = Storage.at(f"{s3}/runs/remote")
    assert isinstance(store, RemoteStorage)
    folder = StudyFolder(store)
    source = folder.read_cell("arrhythmia-cnet-none-scratch")
    transfer = folder.read_cell("mi-cnet-none-transfer")
    # The crashed trial was retried from its checkpoint on S3: each epoch reported once, in two attempts.
    # (The first search trial to reach its first epoch crashed, of whichever cell.)
    search = [f.removesuffix("params.json") for f in files if f.startswith("tune/study/") and f.endswith("params.json")
              and json.loads(store.read_text(f))["phase"] == "search"]
    frames = [pd.read_csv(fetch(f"{s3}/runs/remote/{folder}progress.csv", tmp_path / "progress" / folder))
              for folder in search]
    crashed = [frame for frame in frames if frame["attempt_started_at"].nunique() == 2]
    assert len(search) == 3 and len(crashed) == 1 and crashed[0]["epoch"].dropna().tolist() == [1, 2]

    # The transfer cell started from the source cell's best checkpoint, named by its s3:// URI.
    assert source.best_checkpoint == f"{s3}/runs/remote/checkpoints/arrhythmia-cnet-none-scratch/seed0/best.pt"
    assert transfer.cell.transfer_source == source.best_checkpoint
    body = load_checkpoint(fetch(source.best_checkpoint, tmp_path / "source"))["state_dict"]
    learned = load_checkpoint(fetch(transfer.best_checkpoint, tmp_path / "transfer"))["state_dict"]
    frozen = [k for k in body if not k.startswith(("fc1.", "fc2."))]
    assert frozen and all(torch.equal(body[k], learned[k]) for k in frozen)

    # The report reads the study from S3 and writes here, by default into results/NAME-report.
    assert main(["report", f"{s3}/runs/remote", "--no-plots"]) == 0
    out = capsys.readouterr().out
    report = Path("results") / "remote-report"
    assert f"report: {report / 'report.md'}" in out
    table = pd.read_csv(report / "cells.csv")
    assert list(zip(table["task"], table["model"], table["init"])) == [
        ("arrhythmia", "cnet", "scratch"), ("mi", "cnet", "scratch"), ("mi", "cnet", "transfer (frozen)")]
    assert f"`{s3}/runs/remote`" in (report / "report.md").read_text()
    assert json.loads(store.read_text("study.json"))["name"] == "remote"


@pytest.mark.slow
def test_a_driver_killed_mid_cell_with_results_on_s3_continues_from_there(s3, tmp_path):
    """Tune's experiment state and the finished cells are read back from S3, not from any local folder."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(root),
           "TUNE_GLOBAL_CHECKPOINT_S": "0"}  # Tune saves its experiment state at every chance, not every 10 s
    study = f"{s3}/killed/s3kill"
    # The real driver with a stand-in trainable (tests/standins.py): what is tested is where Tune's state and
    # the cells are read back from; a real trial's checkpoints on s3 are test_a_study_with_results_on_s3_...'s.
    command = [*standin_driver({"cnet": 0.5}), "launch", "--profile", "smoke", "--input", str(tmp_path / "input"),
               "--results", f"{s3}/killed", "--name", "s3kill", "--num-cpus", "2", "--tasks", "arrhythmia",
               "--models", "cnet", "--oversample", "none,smote", "--samples", "2", "--max-epochs", "6",
               "--grace-period", "1", "--limit", "600", "--seeds", "1"]
    log_path = tmp_path / "launch.log"

    def launch() -> subprocess.Popen:
        with open(log_path, "a") as log:
            return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    FIRST, SECOND = "arrhythmia-cnet-smote-scratch", "arrhythmia-cnet-none-scratch"  # more beats to train first
    process = launch()
    store = Storage.at(study)

    def second_cell_part_way() -> bool:
        """The first cell is done, and a trial of the second (still running) has reported to S3."""
        files = objects(study)
        if f"cells/{FIRST}.json" not in files or f"cells/{SECOND}.json" in files:
            return False
        return any(f.endswith("progress.csv") and f'"{SECOND}"' in
                   (store.read_text(f.removesuffix("progress.csv") + "params.json") or "") for f in files)

    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if second_cell_part_way():
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the second cell never ran part-way on S3 after the first was done:\n{log_path.read_text()}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray instance it started
        process.wait()
    first = store.read_text(f"cells/{FIRST}.json")
    assert first is not None and not store.exists(f"cells/{SECOND}.json")

    relaunched = launch()
    assert relaunched.wait(timeout=300) == 0, log_path.read_text()
    output = log_path.read_text()
    assert f"{FIRST}: done earlier, kept" in output
    assert f"continuing the interrupted run in {study}/tune/study" in output
    assert Storage.at(study).read_text(f"cells/{FIRST}.json") == first  # not run again
    assert Storage.at(study).read_json(f"cells/{SECOND}.json")["seeds"]
    assert not (tmp_path / "results").exists()
