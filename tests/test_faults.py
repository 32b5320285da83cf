"""Faults and reproducibility: a driver killed three times, the same seeds twice, and the scheduler that makes both
come out the same as an uninterrupted run (the scheduler on its own, without Ray: tests/test_asha.py).

The slow tests run a reduced smoke study (both tasks and a transfer cell) as a subprocess, the way a user runs it.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from study.report import build_report
from study.results import CellResult

ROOT = Path(__file__).resolve().parents[1]
NAME = "faults"
CELLS = ("arrhythmia-cnet-none-scratch", "mi-cnet-none-scratch", "mi-cnet-none-transfer")
# Three samples on two CPUs: the third trial starts while one of the first two still runs. Rungs at epochs 1, 2.
# Two seeds: seed 0's run is the chosen search trial's (it trains nothing), seed 1's trains.
FLAGS = ["--models", "cnet", "--oversample", "none", "--samples", "3", "--max-epochs", "4", "--grace-period",
         "1", "--limit", "1000", "--seeds", "2"]
# Columns of the report's tables that are wall-clock measurements; every other column must match exactly.
TIMING_COLUMNS = {"wall time"}
# Keys of a cell JSON that record when it ran rather than what it computed.
CELL_TIMING_KEYS = {"wall_time_s", "started", "finished"}
# Per trial and per seed: Tune's random trial ID, and when and where it ran (the clock, the Ray node ids, random
# per Ray start, and IPs).
TRIAL_RUN_KEYS = {"trial_id", "ran"}


# ---------------------------------------------------------------------------------------------------------
# Helpers: what Tune saved, trials' attempts, polling a driver, killing it.


def saved_trials(experiment: Path, cell: str, phase: str) -> list[tuple[str, int | None]]:
    """(status, last epoch) of the trials of one cell and phase in the newest experiment state Tune saved: where a
    restore starts."""
    states = sorted(experiment.glob("experiment_state-*.json"))  # one per driver, named by its start time
    try:
        trials = json.loads(states[-1].read_text())["trial_data"] if states else []
    except (OSError, ValueError):  # caught while Tune replaces it
        return []

    def load(part):  # each trial's state is a JSON string inside the JSON
        return json.loads(part) if isinstance(part, str) else part

    out = []
    for trial, metadata in trials:
        trial, metadata = load(trial), load(metadata)
        if trial["config"].get("cell") == cell and trial["config"].get("phase") == phase:
            out.append((trial["status"], load(metadata)["last_result"].get("epoch")))
    return out


def part_way(experiment: Path, cell: str, phase: str) -> bool:
    """Tune's saved state holds an unfinished trial of the cell's phase that has reported two epochs or more. (Its
    state can record a result before the checkpoint that came with it; but Tune registers a checkpoint before it
    asks for the next epoch, so a second result means the first epoch's checkpoint is in the state.)"""
    return any(status != "TERMINATED" and (epoch or 0) >= 2 for status, epoch in saved_trials(experiment, cell, phase))


def trial_dirs(experiment: Path, cell: str, phase: str) -> list[Path]:
    """The folders of the trials of one cell and phase (Tune writes each trial's config into params.json)."""
    def config(folder):
        try:
            return json.loads((folder / "params.json").read_text())
        except (OSError, ValueError):
            return {}
    return [folder for folder in experiment.glob("trial_*")
            if config(folder).get("cell") == cell and config(folder).get("phase") == phase]


def attempts(trial_dir: Path) -> dict[float, list[int]]:
    """When each attempt of a trial started (the trainable's clock), and the epochs it reported (none for a trial
    a kill caught before its first report)."""
    if not (trial_dir / "progress.csv").exists():
        return {}
    with open(trial_dir / "progress.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("epoch")]
    runs = {}
    for row in rows:
        runs.setdefault(float(row["attempt_started_at"]), []).append(int(float(row["epoch"])))
    return runs


def resumed_after(experiment: Path, cell: str, phase: str, relaunched_at: float) -> list[list[int]]:
    """The epochs of the attempts started by a relaunch that did not begin at epoch 1: trials of the cell's phase it
    resumed from a checkpoint. (Only the clock tells such an attempt from one a pause at a rung made before the
    kill.)"""
    return [epochs for trial in trial_dirs(experiment, cell, phase) for started, epochs in attempts(trial).items()
            if started >= relaunched_at and epochs[0] > 1]


def wait_until(process: subprocess.Popen, condition, what: str, log) -> None:
    """Poll until ``condition()``; fail if the driver ends first (``log()`` says why)."""
    deadline = time.monotonic() + 600  # a guard against a hang, not a measurement
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the driver ended (code {process.returncode}) before {what}:\n{log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after 600 s:\n{log()}")
        time.sleep(0.02)


def ray_env(ray_tmp: str) -> dict:
    """The environment of a driver started here: its own local Ray, and Tune saving its state at every step.

    RAY_TMPDIR: Ray joins the cluster named in RAY_TMPDIR/ray/ray_current_cluster if one is there (another test's
    `ray start` may have left one); a private folder makes the driver start its own. Tune saves its experiment
    state (what a restore starts from) every 10 s or more, and epochs here take a tenth of a second: saving at
    every step makes a small study look like a real one, whose saved state holds trials part-way through.
    """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_TMPDIR=ray_tmp, PYTHONPATH=str(ROOT),
               TUNE_GLOBAL_CHECKPOINT_S="0")
    return env


class Watch:
    """Polls a study folder: the first content of every cell result, to prove none is written twice."""

    def __init__(self, study: Path):
        self.study, self.first_seen = study, {}

    def poll(self) -> None:
        for path in (self.study / "cells").glob("*.json"):
            if path.name not in self.first_seen:
                self.first_seen[path.name] = path.read_text()

    def until(self, process, condition, what: str, log) -> None:
        wait_until(process, lambda: self.poll() or condition(), what, log)
        self.poll()

    def done(self) -> set[str]:
        return {path.stem for path in (self.study / "cells").glob("*.json")}


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    process.wait()


# The scheduler under real Tune, through the study's driver: a stand-in trainable whose epochs take fixed times, so
# trial 1 (proposed second, fast, poor) reaches the first rung long before trial 0 and must wait there for it.
# Run as a script: python TOY FOLDER.
TOY = """
import json, sys
from pathlib import Path

from study.grid import Cell
from study.launch import StudyData, cell_spec, run_launch
from study.plan import resolve_plan
from study.tune.cells import OptunaCell
from study.tune.standin import standin
from tests.standins import launch_args

folder = Path(sys.argv[1])
args = launch_args("--profile", "smoke", "--input", folder / "input", "--results", folder / "results", "--name", "toy",
                   "--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none", "--samples", "3",
                   "--max-epochs", "4", "--grace-period", "1", "--limit", "300", "--seeds", "1", "--num-cpus", "2")
# The cell's first three proposals, as its searcher will make them: trial i is the one with the i-th learning rate.
plan = resolve_plan(args)
cell = Cell.from_id("arrhythmia-cnet-none-scratch")
spec = cell_spec(cell, plan, StudyData(plan))
search = OptunaCell(spec.batch_sizes, spec.optuna_seed, spec.lr_range)
LRS = [search.ask(str(i))["lr"] for i in range(3)]
DELAY, VALUE = (0.5, 0.1, 0.1), (0.5, 0.1, 0.9)  # seconds an epoch, and the metric, of trials 0, 1, 2
# Trial 0 reports its first epoch only once this file exists (the test makes it after the kill): until then
# trial 1 waits at the rung for it, however slowly the machine starts the trials' workers.
RELEASE = folder / "release"


def index(config):
    return LRS.index(config["trial"]["lr"]) if config["phase"] == "search" else 2


trainable = standin(lambda config: DELAY[index(config)], value=lambda trial: VALUE[LRS.index(trial["lr"])],
                    hold=lambda config, epoch: index(config) == 0 and epoch == 1 and not RELEASE.exists())
print("LRS", json.dumps(LRS))
sys.exit(run_launch(args, trainable=trainable))
"""


@pytest.mark.slow
def test_a_trial_waiting_at_a_rung_when_the_driver_is_killed_is_decided_as_before_after_the_restore(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(TOY)
    ray_tmp = tempfile.mkdtemp(prefix="rf")  # short: Ray's socket paths live under it
    env = ray_env(ray_tmp)
    command = [sys.executable, str(script), str(tmp_path)]
    experiment = tmp_path / "results" / "toy" / "tune" / "study"
    cell = "arrhythmia-cnet-none-scratch"
    try:
        with open(tmp_path / "first.log", "w") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        try:
            # Killed once Tune's saved state has trial 1 paused at the rung, waiting for trial 0.
            wait_until(process, lambda: ("PAUSED", 1) in saved_trials(experiment, cell, "search"),
                       "trial 1 paused at its first rung", lambda: (tmp_path / "first.log").read_text())
        finally:
            kill(process)
        (tmp_path / "release").touch()
        rungs = json.loads((tmp_path / "results" / "toy" / "tune" / "rungs.json").read_text())["trials"]
        assert [r["1"]["stop"] for r in rungs.values() if "1" in r] == [None] * len(rungs), rungs  # no decision yet
        relaunch = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert relaunch.returncode == 0, relaunch.stdout + relaunch.stderr
    assert f"continuing the interrupted run in {experiment}" in relaunch.stdout
    lrs = json.loads(relaunch.stdout.split("LRS", 1)[1].splitlines()[0])
    epochs = {lrs.index(json.loads((d / "params.json").read_text())["trial"]["lr"]):
              [e for run in attempts(d).values() for e in run] for d in trial_dirs(experiment, cell, "search")}
    # As one trial after another: 0 goes on (nothing to compare with), 1 stops at epoch 1 (0.1 < 0.5) without
    # training on after the restore, 2 goes on (0.9 >= the median of 0.5 and 0.1).
    assert epochs == {0: [1, 2, 3, 4], 1: [1], 2: [1, 2, 3, 4]}


# ---------------------------------------------------------------------------------------------------------
# The study as a subprocess: killed and relaunched, or run straight through.


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder for the module's studies, with one input folder (the demo data is written by the first launch),
    and a private Ray temp folder (see ray_env)."""
    folder = tmp_path_factory.mktemp("faults")
    ray_tmp = tempfile.mkdtemp(prefix="rf")  # short: Ray's socket paths live under it
    yield folder, ray_tmp
    shutil.rmtree(ray_tmp, ignore_errors=True)


def start_study(workspace, results: str, log_name: str) -> subprocess.Popen:
    folder, ray_tmp = workspace
    with open(folder / f"{log_name}.log", "w") as log:
        # A new session: os.killpg then kills the driver and the Ray instance it started, as a lost machine would.
        return subprocess.Popen(
            [sys.executable, "-m", "study", "launch", "--profile", "smoke", "--input", str(folder / "input"),
             "--results", str(folder / results), "--name", NAME, "--num-cpus", "2", *FLAGS],
            cwd=ROOT, env=ray_env(ray_tmp), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def log_text(workspace, log_name: str) -> str:
    return (workspace[0] / f"{log_name}.log").read_text()


def finish(process: subprocess.Popen, workspace, log_name: str) -> str:
    try:
        code = process.wait(timeout=600)
    except subprocess.TimeoutExpired:
        kill(process)
        pytest.fail(f"the driver did not end within 600 s; its output:\n{log_text(workspace, log_name)}")
    text = log_text(workspace, log_name)
    assert code == 0, text
    return text


@pytest.fixture(scope="module")
def reference(workspace) -> Path:
    """The study run straight through: what a killed study must end up as."""
    finish(start_study(workspace, "reference", "reference"), workspace, "reference")
    return (workspace[0] / "reference" / NAME).resolve()


def comparable_cell(doc: dict, study: Path) -> dict:
    """A cell result without what legitimately differs between two runs of the same study: when and on which
    Ray node it ran, Tune's random trial IDs, and the results folder in the paths it records (the same files,
    in another folder)."""
    doc = json.loads(json.dumps(doc).replace(str(study), "<study>"))
    for key in CELL_TIMING_KEYS:
        doc.pop(key)
    order = [trial["trial_id"] for trial in doc["trials"]]
    for seed in doc["seeds"]:  # the search trial whose epochs a seed run's are, by its place in proposal order
        seed["trained_by"] = order.index(seed["trained_by"]) if seed["trained_by"] else None
    for runs in ("trials", "seeds"):
        doc[runs] = [{k: v for k, v in run.items() if k not in TRIAL_RUN_KEYS} for run in doc[runs]]
    return doc


def report_tables(study: Path, out: Path) -> tuple[dict, list[str]]:
    """Each report table's CSV rows without its timing columns, and the findings."""
    result = build_report(study, out, plots=False, quiet=True)
    tables = {}
    for name, (_, csv_path) in result.table_paths.items():
        rows = list(csv.reader(csv_path.read_text(encoding="utf-8").splitlines()))
        if name == "cells":
            assert TIMING_COLUMNS <= set(rows[0]), rows[0]  # the column is still there, under that name
        keep = [i for i, column in enumerate(rows[0]) if column not in TIMING_COLUMNS]
        tables[name] = [[row[i] for i in keep] for row in rows]
    return tables, result.findings


def best_checkpoint(doc: dict) -> str:
    return CellResult.from_json(doc, "cell").best_checkpoint


def assert_same_study(study: Path, reference: Path) -> None:
    """Same tables (timing columns aside), same cell results, and bit-identical best checkpoints."""
    tables, findings = report_tables(study, study.parent / "report")
    expected_tables, expected_findings = report_tables(reference, reference.parent / "report")
    for name, rows in expected_tables.items():
        differing = [(got, want) for got, want in zip(tables.get(name, []), rows) if got != want]
        assert tables.get(name) == rows, (name, rows[0], differing)
    assert tables == expected_tables
    assert findings == expected_findings
    for cell in CELLS:
        result = json.loads((study / "cells" / f"{cell}.json").read_text())
        expected = json.loads((reference / "cells" / f"{cell}.json").read_text())
        assert comparable_cell(result, study) == comparable_cell(expected, reference), cell
        weights = torch.load(best_checkpoint(result), weights_only=True)["state_dict"]
        expected_weights = torch.load(best_checkpoint(expected), weights_only=True)["state_dict"]
        assert weights.keys() == expected_weights.keys()
        assert all(torch.equal(weights[k], expected_weights[k]) for k in weights), cell


@pytest.mark.slow
def test_a_driver_killed_at_three_points_ends_like_an_uninterrupted_run(workspace, reference):
    """Also the suite's test that the same seeds give the same study twice: the killed study and the reference are
    two runs of it, whose tables, cell results and best checkpoints must be the same."""
    study = (workspace[0] / "killed" / NAME).resolve()
    tune_dir = study / "tune"
    experiment = tune_dir / "study"
    watch = Watch(study)
    # Each point: Tune's saved state holds a trial part-way through (so the relaunch resumes it from its
    # checkpoint). Cells run side by side, so only what must hold of the cells done before each is asserted.
    points = [
        # (a) in the first cell's search: no cell has finished
        ("a search trial part-way in the first cell", (CELLS[0], "search"),
         lambda done: not done),
        # (b) in the first cell's seed run: its search is over, its result (the transfer cell's source) not written
        ("the first cell's seed run part-way", (CELLS[0], "final"), lambda done: CELLS[0] not in done),
        # (c) in the transfer cell's search: its source is done
        ("a search trial part-way in the transfer cell", (CELLS[2], "search"),
         lambda done: CELLS[0] in done and CELLS[2] not in done),
    ]
    logs, relaunched_at, done_before = [], [], []
    for number, (what, (cell, phase), expected) in enumerate(points, 1):
        logs.append(f"killed-{number}")
        relaunched_at.append(time.time())
        done_before.append(watch.done())
        process = start_study(workspace, "killed", logs[-1])
        try:
            watch.until(process, lambda: part_way(experiment, cell, phase), what,
                        lambda: log_text(workspace, logs[-1]))
        finally:
            kill(process)
        assert expected(watch.done()), f"killed at {what!r} with cells {watch.done()} done"
    logs.append("killed-last")
    relaunched_at.append(time.time())
    done_before.append(watch.done())
    finish(start_study(workspace, "killed", logs[-1]), workspace, logs[-1])
    watch.poll()
    texts = [log_text(workspace, name) for name in logs]

    # Each relaunch continued where the kill left it, keeping the cells done before it...
    for number, text in enumerate(texts[1:], 1):
        assert f"continuing the interrupted run in {experiment}" in text, text
        for cell in done_before[number]:
            assert f"{cell}: done earlier, kept" in text, (cell, text)
    # ...and resumed the part-way trials from their checkpoints, not from epoch 1.
    for number, (_, (cell, phase), _) in enumerate(points, 1):
        assert resumed_after(experiment, cell, phase, relaunched_at[number]), \
            (cell, phase, [attempts(trial) for trial in trial_dirs(experiment, cell, phase)])

    # Every cell done once: one result file each, finished by one launch and never written again.
    assert sorted(p.name for p in (study / "cells").iterdir()) == sorted(f"{cell}.json" for cell in CELLS)
    for cell in CELLS:
        assert sum(len(re.findall(rf"\] {cell}: done in ", text)) for text in texts) == 1, cell
        assert (study / "cells" / f"{cell}.json").read_text() == watch.first_seen[f"{cell}.json"], cell
        seed_dir = study / "checkpoints" / cell
        assert sorted(p.name for p in seed_dir.iterdir()) == ["seed0", "seed1"]
        for seed in ("seed0", "seed1"):
            assert sorted(p.name for p in (seed_dir / seed).iterdir()) == ["best.pt", "final.json", "metrics.csv"]
    # No half-written file, and every JSON the study wrote parses.
    assert not list(study.rglob("*.tmp")), "a half-written file was left behind"
    written = [study / "study.json", *study.glob("cells/*.json"), *study.glob("checkpoints/**/*.json"),
               *tune_dir.glob("*.json")]  # Tune's own result.json is JSON lines
    for path in written:
        json.loads(path.read_text())

    assert_same_study(study, reference)

