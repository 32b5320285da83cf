"""The study's one experiment on a big logical cluster: makespan and slot utilization against a lower bound.

    python -m bench.bench_cluster                    # 16 and 64 logical CPUs, both cost models: bench/RESULTS.md
    python -m bench.bench_cluster --slots 16 --models one-rate --section cluster-baseline --keep DIR   # the speed-up
    python -m bench.bench_cluster ... --tabulate DIR      # the table again from the studies a --keep DIR run kept

The paper profile's shape (24 cells, 16 samples a cell, successive halving by 2, 3 seeds), its budgets divided by
ten (arrhythmia 8 epochs, MI 60, grace 1: the same rungs as 80 / 600 with grace 10), through the real driver
(study/launch.py) with a stand-in trainable (study/tune/standin.py) that sleeps each epoch for a time in
proportion to the beats the cell trains: the Kaggle training splits (arrhythmia 78,798 beats, 326,110 after
SMOTE-Tomek; MI 10,477 and 15,128). Two cost models: one rate for every model, and the per-model CPU rates of
bench/RESULTS.md's "trial" section (bf16: cnet 10,093, seq 37,815, bilstm 415, bigru 417 beats/s), each scaled
so its longest epoch (one of arrhythmia with SMOTE) takes ``--scale`` x 2 seconds.

Lower bound of a makespan: max(C, W / S). W is the work the run did (each trial's modelled epoch time times the
epochs it ran), S the slots. C is the longest chain of dependent work: a cell's seed runs start after its
longest search trial ends, and a transfer cell's trials after its source's seed runs end, so for each arrhythmia
cell A and its transfer cell T, (A's longest search trial + its seed run) + (T's longest search trial + its seed
run), and for every other cell its own two terms (a seed run whose epochs its chosen search trial trained costs
nothing, and counts in neither W nor C). No schedule beats either term.

Why the longest epoch lasts slots / 2 x 2 seconds by default (--scale 8 at 16 slots, 32 at 64): a trial's start,
a pause and a resume cost Ray and Tune a second or more of CPU each (a worker process, a checkpoint copied, the
driver's handling), and on this 2-core machine all the logical slots share two real cores for it, as they share
them for their idle workers (64 sleeping Ray actors take 0.55 of a core here). A cluster of 64 slots has the
cores for it; this machine has a thirty-second of them. So the epochs grow with the slots, to keep that
overhead's share of the work what it is at 16 slots. At --scale 1 a search trial of an MI cell trains for a
tenth of a second, and the overhead, not the schedule, set the makespan (16 slots, one rate: 236 s at --scale 1
against a bound of 80 s); 64 slots at --scale 8 spent 648 s on a bound of 345 s (per-model), with the driver
busy a third of the time (py-spy), so not the driver but the machine's two cores were short.

Is Tune's driver the bottleneck? A function trainable's report returns once the driver has handled it; the
stand-in measures that wait. The table gives the driver's share of the time trials spent in their trainables.
Trials report their rungs' epochs and their last (what successive halving needs), not every epoch: the budgets
are shrunk a hundredfold in time, and Tune's per-result cost is not.
"""

import argparse
import contextlib
import glob
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench._results import trainable_seconds, write_section

TRAIN_BEATS = {("arrhythmia", "none"): 78_798, ("arrhythmia", "smote-tomek"): 326_110,
               ("mi", "none"): 10_477, ("mi", "smote-tomek"): 15_128}
RATES = {"cnet": 10_093, "seq": 37_815, "bilstm": 415, "bigru": 417}  # beats/s, bench/RESULTS.md "trial"
EPOCHS = {"arrhythmia": 8, "mi": 60}
LONGEST = 2.0  # seconds of the longest epoch at --scale 1


def epoch_seconds(cost: str, scale: float):
    """The stand-in's seconds an epoch of a trial, under a cost model."""
    longest = TRAIN_BEATS[("arrhythmia", "smote-tomek")] / (min(RATES.values()) if cost == "per-model" else 1)

    def seconds(config: dict) -> float:
        trial = config["trial"]
        work = TRAIN_BEATS[(trial["task"], trial["oversample"])]
        if cost == "per-model":
            work /= RATES[trial["model"]]
        return LONGEST * scale * work / longest
    return seconds


def reported(config: dict, epoch: int) -> bool:
    """Rungs (1, 2, 4, ...) are what successive halving reads; the last epoch is reported anyway."""
    return config["phase"] == "search" and epoch & (epoch - 1) == 0


def run(slots: int, cost: str, scale: float, max_cells: int | None, work: Path) -> dict:
    import ray

    from study.launch import run_launch
    from study.cli import get_args_parser
    from study.tune.standin import standin

    name = f"{cost}-{slots}-{max_cells or 'all'}"
    flags = ["launch", "--profile", "paper", "--demo", "--demo-rows", "2000", "--limit", "300",
             "--max-epochs", ",".join(f"{task}={epochs}" for task, epochs in EPOCHS.items()), "--grace-period", "1",
             "--name", name, "--input", str(work / "input"), "--results", str(work / "results"),
             *(["--max-cells", str(max_cells)] if max_cells else [])]
    args = get_args_parser().parse_args(flags)
    args.argv = flags
    seconds = epoch_seconds(cost, scale)
    ray.init(address="local", num_cpus=slots, include_dashboard=False, log_to_driver=False, configure_logging=False)
    started = time.perf_counter()
    try:
        code = run_launch(args, trainable=standin(seconds, reports=reported))
    finally:
        ray.shutdown()
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"the study {name} ended with code {code}")
    return measure(work / "results" / name, slots, seconds, wall)


def measure(study: Path, slots: int, seconds, wall: float) -> dict:
    cells = {Path(p).stem: json.loads(Path(p).read_text()) for p in glob.glob(str(study / "cells" / "*.json"))}
    starts, ends, work_done, chains, serial = [], [], 0.0, {}, 0.0
    for cell_id, cell in cells.items():
        task, model, over, init = cell_id.split("-")
        config = {"trial": {"task": task, "model": model, "oversample": "smote-tomek" if over == "smote" else "none"}}
        epoch = seconds(config)
        for run in cell["trials"] + cell["seeds"]:
            starts.append(run["ran"]["started_at"])
            ends.append(run["ran"]["finished_at"])
        trained = [s for s in cell["seeds"] if not s.get("trained_by")]  # the others' epochs are a search trial's
        work = epoch * (sum(t["epochs"] for t in cell["trials"]) + sum(s["epochs_run"] for s in trained))
        chains[cell_id] = epoch * (max(t["epochs"] for t in cell["trials"]) + (EPOCHS[task] if trained else 0))
        work_done += work
        serial += max(chains[cell_id], work / slots)  # this cell alone on every slot: no faster
    chain = max(chains[c] + (chains.get(f"mi-{c.split('-', 1)[1].rsplit('-', 1)[0]}-transfer", 0)
                             if c.startswith("arrhythmia") else 0) for c in chains)
    busy, wait = trainable_seconds(study), 0.0
    for progress in glob.glob(str(study / "tune" / "study" / "trial_*" / "progress.csv")):
        frame = pd.read_csv(progress)
        if "report_wait_s" in frame:
            wait += float(frame["report_wait_s"].fillna(0).sum())
    makespan = max(ends) - min(starts)
    bound = max(chain, work_done / slots)
    return {"makespan": makespan, "wall": wall, "bound": bound, "serial_bound": serial, "chain": chain,
            "work": work_done,
            "utilization": busy / (slots * makespan), "driver_share": wait / busy if busy else 0.0}


def write_table(rows: list, section: str, note: str = "") -> None:
    """The section of bench/RESULTS.md, with the settings measured so far (written after each one, so a run cut
    short keeps what it measured)."""
    lines = [
        "The paper profile's shape through the real driver with a stand-in trainable that sleeps (study/tune/"
        "standin.py): 24 cells, 16 samples, successive halving by 2, 3 seeds; budgets divided by ten (arrhythmia "
        "8 epochs, MI 60, grace 1); longest epoch: the seconds one of arrhythmia with SMOTE-Tomek sleeps (the "
        "slots / 2 x 2 s by default, see the script's docstring). Bound: max(longest chain of "
        "dependent work, work done / slots) (see the script's docstring). Utilization: seconds inside trainables "
        "over slots x makespan. Driver: the share of those seconds a trial waited for Tune's driver to take its "
        "report. For --max-cells 1 the bound is that of running one cell at a time: the sum over cells of each "
        "cell's own bound, max(its chain, its work / slots).", "",
        "| cost model | slots | longest epoch | cells at once | makespan | bound | makespan / bound | utilization | "
        "driver | speed-up over one cell at a time |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    at_best = []
    for cost, slots, scale, default, one in rows:
        for label, m, bound in (("all (default)", default, "bound"), ("1 (--max-cells 1)", one, "serial_bound")):
            if m is None:
                continue
            lines.append(f"| {cost} | {slots} | {LONGEST * scale:.0f} s | {label} | {m['makespan']:.0f} s | "
                         f"{m[bound]:.0f} s | {m['makespan'] / m[bound]:.2f} | {m['utilization']:.2f} | "
                         f"{m['driver_share']:.3f} | "
                         + (f"{one['makespan'] / default['makespan']:.1f}x |" if m is default and one else "|"))
        if one is not None:
            at_best.append(f"{cost}, {slots} slots: {one['serial_bound'] / default['makespan']:.1f}x")
    if at_best:
        lines += ["", "The default against the best that any schedule of one cell at a time could do (its bound, not "
                  "its measured makespan): " + "; ".join(at_best) + "."]
    lines += ["", "Targets: the default within 1.25x of the bound in every setting; at least 4x faster than "
              "--max-cells 1 at 16 slots, one rate."] + (["", note] if note else [])
    write_section(section, "\n".join(lines))
    print("\n".join(lines), flush=True)


def ran_when(folder: Path) -> str:
    """Where and when the studies a --tabulate reads ran (from their cell files)."""
    times = [run["ran"][key] for path in glob.glob(str(folder / "results" / "*" / "cells" / "*.json"))
             for cell in [json.loads(Path(path).read_text())] for run in cell["trials"] + cell["seeds"]
             for key in ("started_at", "finished_at")]
    when = [time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) for t in (min(times), max(times))]
    return f"Tabulated from the studies kept in {folder} (--keep), which ran from {when[0]} to {when[1]} UTC."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--models", nargs="+", default=["one-rate", "per-model"], choices=["one-rate", "per-model"])
    parser.add_argument("--scale", type=float, default=None,
                        help="the longest epoch takes 2 s times this (default: slots / 2; see the docstring)")
    parser.add_argument("--section", default="cluster",
                        help="the section of bench/RESULTS.md to write (another keeps the main run's figures)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the studies in DIR (default: a temporary folder, removed at the end)")
    parser.add_argument("--note", default="", help="a sentence for the section: what else ran on the machine, say")
    parser.add_argument("--tabulate", type=Path, default=None, metavar="DIR",
                        help="measure the studies an earlier run with these settings kept in DIR (--keep DIR) instead "
                             "of running them again")
    parser.add_argument("--baseline-at", nargs="*", default=["one-rate:16"], metavar="COST:SLOTS",
                        help="the settings that also run --max-cells 1 (default: one-rate:16, where the speed-up "
                             "target is; it takes about five times the default's time)")
    args = parser.parse_args()
    if args.tabulate is not None and not (args.tabulate / "results").is_dir():
        parser.error(f"--tabulate {args.tabulate} holds no kept studies (a results/ folder, from --keep)")
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep} is not empty: a study there would be continued, not measured")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    rows = []
    with contextlib.ExitStack() as stack:
        folder = args.tabulate or args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench-cluster-")))
        for cost in args.models:
            for slots in args.slots:
                scale = args.scale or slots / 2
                baseline = f"{cost}:{slots}" in args.baseline_at
                measured = {cells: (run(slots, cost, scale, cells, folder) if args.tabulate is None else
                                    measure(folder / "results" / f"{cost}-{slots}-{cells or 'all'}", slots,
                                            epoch_seconds(cost, scale), float("nan")))
                            for cells in ((None, 1) if baseline else (None,))}
                default, one = measured[None], measured.get(1)
                rows.append((cost, slots, scale, default, one))
                print(cost, slots, scale, json.dumps({"default": default, "max_cells_1": one}), flush=True)
                note = " ".join(filter(None, [ran_when(folder) if args.tabulate else "", args.note]))
                write_table(rows, args.section, note)


if __name__ == "__main__":
    main()
