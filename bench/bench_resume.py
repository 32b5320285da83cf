"""What an interruption costs, and what the study keeps in Ray's object store.

    python -m bench.bench_resume            # writes the "resume" section of bench/RESULTS.md

Resume cost: a study (arrhythmia, cnet, none and smote) is launched in a subprocess and SIGKILLed with its
Ray instance while the second cell searches; the same command is launched again. Measured: seconds from a
launch to its first trial report (result rows' `reported_at`), for the fresh launch and for the relaunch,
side by side; the relaunch's figure is what resuming costs before training goes on (Ray's start, loading the
data, finding finished cells, Tuner.restore).

Object store: a study over both tasks, cnet, none and smote, run in this process on a local Ray; a thread
samples the object store's bytes in use every 0.2 s. Its peak is set against the bytes of the data sets
the study put there (every split's arrays, for each task and oversampling), which the driver keeps
referenced until the study ends.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from bench._results import write_section

ROOT = Path(__file__).resolve().parents[1]
RESUME_FLAGS = ["--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none,smote", "--samples", "2",
                "--max-epochs", "6", "--limit", "600", "--seeds", "1"]


def _launch(work: Path, name: str, flags: list[str]) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    log = open(work / f"{name}.log", "a")
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "study", "launch", "--profile", "smoke", "--input", str(work / "input"),
         "--results", str(work / "results"), "--name", name, "--num-cpus", "2", *flags],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, started


def _reports(study: Path) -> pd.Series:
    """Every trial report's unix time, over the study's Tune experiment."""
    frames = [pd.read_csv(p) for p in study.glob("tune/*/trial_*/progress.csv") if p.stat().st_size]
    times = [f["reported_at"] for f in frames if "reported_at" in f]
    return pd.concat(times) if times else pd.Series(dtype=float)


def resume_cost(work: Path) -> dict:
    study = work / "results" / "resume"
    fresh, fresh_started = _launch(work, "resume", RESUME_FLAGS)
    deadline = time.time() + 900
    while time.time() < deadline and fresh.poll() is None:  # until a trial of the second cell has reported
        if any(p.stat().st_size and '"arrhythmia-cnet-smote-scratch"' in (p.parent / "params.json").read_text()
               for p in study.glob("tune/study/trial_*/progress.csv") if (p.parent / "params.json").exists()):
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"the study ended or stalled before the kill point:\n{(work / 'resume.log').read_text()}")
    os.killpg(fresh.pid, signal.SIGKILL)
    fresh.wait()
    killed_at = time.time()
    first_fresh = _reports(study).min() - fresh_started
    reports_before = len(_reports(study))

    relaunch, relaunch_started = _launch(work, "resume", RESUME_FLAGS)
    if relaunch.wait(timeout=900) != 0:
        raise SystemExit((work / "resume.log").read_text())
    after = _reports(study)
    first_resumed = after[after > relaunch_started].min() - relaunch_started
    log = (work / "resume.log").read_text()
    return {"fresh": first_fresh, "resumed": first_resumed, "reports_before": reports_before,
            "killed_to_relaunch": relaunch_started - killed_at,
            "restored": "continuing the interrupted run in" in log, "kept": log.count("done earlier, kept")}


def _store_bytes() -> int:
    """Bytes in use in /dev/shm, where Ray's object store maps its memory: a page counts once an object has
    been written to it (Ray does not pre-fault the store), so the delta from before the study is what its
    objects took. (Ray's own `ray memory` needs grpcio, which ray[tune] does not install.)"""
    stats = os.statvfs("/dev/shm")
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def object_store_peak(work: Path, rows: int) -> dict:
    import ray

    from data import ensure_demo, prepare_task
    from study.cli import main as study_main

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    if not Path("/dev/shm").is_dir():
        raise SystemExit("the object-store figure reads /dev/shm, which this machine lacks")
    samples, done = [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(_store_bytes())
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    idle = _store_bytes()
    sampler.start()
    flags = ["launch", "--profile", "smoke", "--input", str(work / "input"), "--results", str(work / "results"),
             "--name", "store", "--demo-rows", str(rows), "--limit", str(rows), "--models", "cnet",
             "--smote-method", "smote", "--samples", "1", "--max-epochs", "1", "--seeds", "1"]
    try:
        code = study_main(flags)
    finally:
        done.set()
        sampler.join()
        ray.shutdown()
    if code != 0:
        raise SystemExit(f"the object-store study failed (exit {code})")
    folder = ensure_demo(work / "input" / "demo", rows=rows, seed=0)
    sets = {}
    for task in ("arrhythmia", "mi"):
        for method in ("none", "smote"):
            data = prepare_task(task, folder, seed=0, oversample=method, limit=rows)
            sets[f"{task}-{method}"] = sum(getattr(data, s).x.nbytes + getattr(data, s).y.nbytes +
                                          getattr(data, s).index.nbytes for s in ("train", "val", "test"))
    return {"idle": idle, "peak": max(samples), "sets": sets, "samples": len(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8000, help="demo rows of mitbih_train.csv for the store study")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cost = resume_cost(work)
        print(cost, flush=True)
        store = object_store_peak(work, args.rows)
        print(store, flush=True)
    data_bytes = sum(store["sets"].values())
    lines = [
        "**Resume cost.** The study `--tasks arrhythmia --models cnet --oversample none,smote --samples 2 "
        "--max-epochs 6 --limit 600` killed with SIGKILL (driver and its Ray instance) while the second cell "
        f"searched ({cost['reports_before']} trial reports written before the kill), then the same command again "
        f"(it kept {cost['kept']} finished cell, and {'restored' if cost['restored'] else 'did NOT restore'} "
        "the interrupted Tuner).", "",
        "| launch | seconds from start to its first trial report |", "|---|---:|",
        f"| fresh | {cost['fresh']:.1f} |",
        f"| relaunch after the kill | {cost['resumed']:.1f} |",
        f"| ratio relaunch / fresh | {cost['resumed'] / cost['fresh']:.2f} |", "",
        f"**Object store.** Both tasks, cnet, none and smote (plain SMOTE), demo data of {args.rows:,} rows a "
        f"file, 1 sample, 1 epoch: peak bytes in use {store['peak'] / mib:.1f} MiB (idle before the study "
        f"{store['idle'] / mib:.1f} MiB; {store['samples']} samples every 0.2 s), against {data_bytes / mib:.1f} "
        f"MiB of data sets put there: ratio **{(store['peak'] - store['idle']) / data_bytes:.2f}**.", "",
        "| data set (task-oversampling) | MiB (all splits' arrays) |", "|---|---:|",
        *[f"| {name} | {size / mib:.2f} |" for name, size in store["sets"].items()]]
    write_section("resume", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
