"""What reproducible successive halving costs: the study's OrderedASHA against Ray Tune's ASHAScheduler.

    python -m bench.bench_scheduler            # writes the "scheduler" section of bench/RESULTS.md

One search cell (arrhythmia, cnet, no oversampling) with more samples and rungs than the smoke profile, run
in this process on a local Ray of 2 CPUs, once with each scheduler, alternating, twice each. OrderedASHA
pauses a trial at a rung until the trials Optuna proposed before it have reached that rung (each pause is an
actor restart); Tune's ASHA never waits, but which trials it stops depends on timing.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench._results import write_section


def tune_asha(store, rungs_file, *, metric, mode, time_attr, max_t, grace_period, reduction_factor):
    """Ray Tune's own ASHA, with OrderedASHA's signature (the rungs file is not used)."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=time_attr, metric=metric, mode=mode, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor)


def run_search(work: Path, name: str, scheduler: str, args) -> dict:
    import ray

    import study.scheduler
    from study.cli import main as study_main

    ordered = study.scheduler.OrderedASHA
    if scheduler == "tune":
        study.scheduler.OrderedASHA = tune_asha
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    started = time.perf_counter()
    try:
        code = study_main(["launch", "--profile", "smoke", "--input", str(work / "input"),
                           "--results", str(work / "results"), "--name", name, "--tasks", "arrhythmia",
                           "--models", "cnet", "--oversample", "none", "--samples", str(args.samples),
                           "--max-epochs", str(args.max_epochs), "--limit", str(args.limit), "--seeds", "1"])
    finally:
        seconds = time.perf_counter() - started
        ray.shutdown()
        study.scheduler.OrderedASHA = ordered
    if code != 0:
        raise SystemExit(f"the {scheduler} search failed (exit {code})")
    cell = json.loads((work / "results" / name / "cells" / "arrhythmia-cnet-none-scratch.json").read_text())
    epochs = sum(t["epochs"] for t in cell["trials"])
    return {"seconds": seconds, "epochs": epochs, "stopped": cell["trials_stopped_early"],
            "chosen": (round(cell["best_config"]["lr"], 6), cell["best_config"]["batch_size"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--limit", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for scheduler in ("ordered", "tune"):
                result = run_search(Path(tmp), f"{scheduler}-{repeat}", scheduler, args)
                runs.append((scheduler, repeat, result))
                print(scheduler, repeat, result, flush=True)
    mean = {s: sum(r["seconds"] for k, _, r in runs if k == s) / args.repeats for s in ("ordered", "tune")}
    same = {s: len({(r["stopped"], r["epochs"], r["chosen"]) for k, _, r in runs if k == s}) == 1
            for s in ("ordered", "tune")}
    rows = [f"| {s} | {i + 1} | {r['seconds']:.1f} | {r['epochs']} | {r['stopped']} | lr {r['chosen'][0]:.3g}, "
            f"batch {r['chosen'][1]} |" for s, i, r in runs]
    body = "\n".join([
        f"One cell (arrhythmia, cnet, none), {args.samples} Optuna samples, rungs up to {args.max_epochs} epochs "
        f"(grace 1, reduction 2), {args.limit} beats a file of demo data, 2 trials at a time on 2 CPUs, 1 seed; "
        "wall time of the whole cell (search and the seed run), Ray's start excluded.", "",
        "| scheduler | run | seconds | epochs trained (all trials) | stopped early | chosen |",
        "|---|---:|---:|---:|---:|---|", *rows, "",
        f"Mean: OrderedASHA {mean['ordered']:.1f} s, Tune's ASHA {mean['tune']:.1f} s: ratio "
        f"**{mean['ordered'] / mean['tune']:.2f}**. " + "; ".join(
            f"{label}: {'the same' if same[s] else 'NOT the same'} trials stopped and configuration chosen in every run"
            for s, label in (("ordered", "OrderedASHA"), ("tune", "Tune's ASHA")))
        + "."])
    write_section("scheduler", body)
    print(body)


if __name__ == "__main__":
    main()
