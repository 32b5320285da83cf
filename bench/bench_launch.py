"""The study's costs: the smoke profile end to end (and how busy it kept the machine), and Ray Tune's overhead per
trial.

    python -m bench.bench_launch                 # writes the "launch" section of bench/RESULTS.md
    python -m bench.bench_launch --skip-smoke    # only the per-trial overhead

Per-trial overhead: one Tuner of 4 trials of a trainable that receives the data through the object store
and reports once without training (a 0-epoch trial), next to the same Tuner running 1-epoch `cnet` trials
through run_trial, on the smoke profile's data and on a full-size arrhythmia training split.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._results import trainable_seconds, write_section
from study.grid import PROFILES

ROOT = Path(__file__).resolve().parents[1]


def utilization(study: Path, slots: int) -> tuple[float, float]:
    """Slot utilization of a study: the seconds its trials spent inside their trainables, over slots x the span
    from the first trial's start to the last one's end (from its cell files); and that span."""
    import json

    runs = [(run["ran"]["started_at"], run["ran"]["finished_at"])
            for path in (study / "cells").glob("*.json") for cell in [json.loads(path.read_text())]
            for run in cell["trials"] + cell["seeds"] if run["ran"]["started_at"] and run["ran"]["finished_at"]]
    span = max(end for _, end in runs) - min(start for start, _ in runs)
    return trainable_seconds(study) / (slots * span), span


def learned(study: Path) -> list[str]:
    """What the smoke study's cnet cells reached on test, against the targets: macro F1 at least 0.80
    (arrhythmia), F1 of MI above calling every beat MI."""
    import json

    from data.constants import TASK_CLASSES
    from study.metrics import one_class_value, selection_value

    lines = []
    for path in sorted((study / "cells").glob("*-cnet-*.json")):
        cell = json.loads(path.read_text())
        task = cell["cell"]["task"]
        values = [selection_value(seed["test"], task) for seed in cell["seeds"]]
        support = [sum(row) for row in cell["seeds"][0]["test"]["confusion_matrix"]]
        target = 0.80 if task == "arrhythmia" else one_class_value(support, task, TASK_CLASSES[task])
        reached = min(values) >= target if task == "arrhythmia" else min(values) > target
        lines.append(f"| {cell['cell_id']} | {', '.join(f'{v:.3f}' for v in values)} | "
                     f"{'at least' if task == 'arrhythmia' else 'above'} {target:.3f} | {'yes' if reached else 'no'} |")
    return lines


def smoke_wall_time(work: Path) -> tuple[float, str]:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    command = [sys.executable, "-m", "study", "launch", "--profile", "smoke", "--input", str(work / "input"),
               "--results", str(work / "results")]
    started = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(out.stdout + out.stderr)
    return seconds, out.stdout


def zero_epoch_trainable(config: dict, data) -> None:
    from ray import tune

    tune.report({"val_metric": 0.0, "beats": len(data.train.y)})


def one_epoch_trainable(config: dict, data) -> None:
    from ray import tune

    from study.config import TrialConfig
    from study.trial import run_trial

    trial = TrialConfig(epochs=1, batch_size=min(256, len(data.train.y)), limit=config["limit"], data_seed=0)
    work = Path(tune.get_context().get_storage().trial_working_directory) / "work"  # as the study does
    run_trial(trial, data, work, report=lambda row, _: tune.report({"val_metric": row["val_metric"]}),
              evaluate_test=False)


def tuner_seconds(trainable, data, limit, storage: Path, name: str) -> tuple[float, float]:
    """Wall time of a 4-trial Tuner, and the mean time each trial spent inside its trainable."""
    from ray import tune

    bound = tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1})
    started = time.perf_counter()
    grid = tune.Tuner(bound, param_space={"i": tune.grid_search(list(range(4))), "limit": limit},
                      tune_config=tune.TuneConfig(max_concurrent_trials=2),
                      run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0)).fit()
    wall = time.perf_counter() - started
    inside = [r.metrics["time_total_s"] for r in grid]
    return wall, sum(inside) / len(inside)


def overhead_rows(work: Path) -> list[str]:
    import ray

    from data import ensure_demo, prepare_task

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []
    try:
        smoke = PROFILES["smoke"]
        for label, rows_demo, limit in (("smoke profile data", smoke.demo_rows, smoke.limit),
                                        ("full size (87,554 rows)", 87554, None)):
            folder = ensure_demo(work / f"demo-{rows_demo}", rows=rows_demo, seed=0)
            data = prepare_task("arrhythmia", folder, seed=0, limit=limit)
            zero = tuner_seconds(zero_epoch_trainable, data, limit, work / "tune", f"zero-{rows_demo}")
            one = tuner_seconds(one_epoch_trainable, data, limit, work / "tune", f"one-{rows_demo}")
            rows.append(f"| {label} | {len(data.train.y):,} | {zero[0]:.1f} s | {zero[1]:.2f} s | "
                        f"{one[0]:.1f} s | {one[1]:.2f} s |")
            print(rows[-1], flush=True)
    finally:
        ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-smoke", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_smoke:
            seconds, output = smoke_wall_time(work)
            cells = output.count(": done in ")
            print(output)
            used, span = utilization(work / "results" / "smoke", os.cpu_count())
            lines += [f"`python -m study launch --profile smoke` (demo data, every cell, {os.cpu_count()} CPUs): "
                      f"**{seconds:.0f} s** wall time for {cells} cells, Ray's start included (target: at most "
                      f"150 s); slot utilization **{used:.2f}** (the seconds trials spent inside their trainables "
                      f"over {os.cpu_count()} slots x the {span:.0f} s from the first trial's start to the last "
                      "one's end; target: at least 0.7).", "",
                      "What its `cnet` cells reached on test (the other models' budget is too small to learn in; "
                      "the summary names the cells that did no better than one class for every beat):", "",
                      "| cell | test figure (macro F1, or F1 of MI) | target | reached |", "|---|---:|---|---|",
                      *learned(work / "results" / "smoke"), ""]
        lines += ["Ray Tune's overhead per trial: a Tuner of 4 trials, 2 at a time, 1 CPU each; a 0-epoch trial "
                  "receives the data through the object store and reports once; a 1-epoch trial trains `cnet` "
                  "once through run_trial. *Inside*: mean seconds a trial spent in its trainable.", "",
                  "| data | training beats | 0-epoch Tuner | inside | 1-epoch Tuner | inside |",
                  "|---|---:|---:|---:|---:|---:|", *overhead_rows(work)]
    write_section("launch", "\n".join(lines))


if __name__ == "__main__":
    main()
