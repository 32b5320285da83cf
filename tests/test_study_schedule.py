"""The study as one Tune experiment, scheduled across cells: a local Ray of 4 logical CPUs and a stand-in
trainable that sleeps (tests/standins.py), so what is measured is the driver's scheduling, not training."""

import contextlib
import io
import json
from pathlib import Path

import pytest

from study.launch import run_launch
from study.results import StudyFolder, StudyRecord
from study.storage import Storage
from tests.rays import own_ray
from study.tune.standin import standin
from tests.standins import launch_args, still_waiting

pytestmark = pytest.mark.slow  # one study of 40 s that every test here reads

# Four arrhythmia cells and their transfer cells; seq's trials all fail. The RNNs' epochs take longer, so the cnet
# source finishes while their arrhythmia cells still run; `holding` keeps a loaded machine from reordering events.
FLAGS = ["--profile", "smoke", "--tasks", "arrhythmia,mi", "--models", "cnet,seq,bilstm,bigru", "--oversample", "none",
         "--inits", "transfer", "--samples", "2", "--max-epochs", "4", "--grace-period", "1", "--limit", "200",
         "--seeds", "2", "--name", "schedule"]
SECONDS = {"cnet": 0.3, "seq": 0.3, "bilstm": 1.5, "bigru": 1.5}
FAILING = ("arrhythmia-seq-none-scratch",)


def holding(marks: Path):
    """A stand-in's hold that forces two orders of events a loaded machine's slow worker starts could reverse, and
    that a driver which never brings them about still fails (each wait ends after 60 s):
      - the first epoch of each cell's search trials waits until trials of three cells have begun (the arrhythmia
        cells cnet, bilstm and bigru start together on 4 CPUs; a driver running one cell at a time never gets there);
      - the last epoch of a seed run of arrhythmia-bilstm-none-scratch waits until a trial of mi-cnet-none-transfer
        has run an epoch (a driver that started transfer cells only after every arrhythmia cell ended never does)."""

    def hold(config: dict, epoch: int) -> bool:
        cell, phase = config["cell"], config["phase"]
        if epoch == 1:
            (marks / f"began-{cell}").touch()
            if phase == "search":
                return still_waiting(marks / f"{cell}-waits", ready=len(list(marks.glob("began-*"))) >= 3)
        if cell != "arrhythmia-bilstm-none-scratch" or phase != "final" or epoch != config["trial"]["epochs"]:
            return False
        return still_waiting(marks / f"bilstm-{config['trial']['seed']}-waits",
                             ready=(marks / "began-mi-cnet-none-transfer").exists())
    return hold


@pytest.fixture(scope="module")
def schedule(tmp_path_factory):
    """The study run once: (its folder, exit code, what it printed)."""
    root = tmp_path_factory.mktemp("schedule")
    args = launch_args(*FLAGS, "--input", root / "input", "--results", root / "results")
    (root / "marks").mkdir()
    trainable = standin(lambda config: SECONDS[config["trial"]["model"]], failing=FAILING,
                        hold=holding(root / "marks"))
    out, err = io.StringIO(), io.StringIO()
    with own_ray(num_cpus=4), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_launch(args, trainable=trainable)
    return root / "results" / "schedule", code, out.getvalue() + err.getvalue()


def intervals(study: Path) -> dict[str, list[tuple[float, float]]]:
    """Each cell's trials (search and seed runs) as (start, end) in unix seconds."""
    out = {}
    for path in (study / "cells").glob("*.json"):
        cell = json.loads(path.read_text())
        out[path.stem] = [(run["ran"]["started_at"], run["ran"]["finished_at"])
                          for run in cell["trials"] + cell["seeds"]]
    return out


def test_trials_of_three_cells_run_at_once(schedule):
    study, _, log = schedule
    runs = intervals(study)
    most = max(sum(any(start <= t < end for start, end in spans) for spans in runs.values())
               for t in {start for spans in runs.values() for start, _ in spans})
    assert most >= 3, (runs, log)


def test_a_transfer_cell_starts_once_its_source_is_written_and_before_the_other_sources_end(schedule):
    study, _, log = schedule
    runs = intervals(study)
    source_written = (study / "cells" / "arrhythmia-cnet-none-scratch.json").stat().st_mtime
    transfer_start = min(start for start, _ in runs["mi-cnet-none-transfer"])
    other_source_end = max(end for _, end in runs["arrhythmia-bilstm-none-scratch"])
    assert source_written <= transfer_start < other_source_end, (runs, log)
    transfer = StudyFolder(Storage.at(study)).read_cell("mi-cnet-none-transfer")
    assert transfer.cell.transfer_source == str(study / "checkpoints" / "arrhythmia-cnet-none-scratch" / "seed0"
                                                / "best.pt")


def test_a_cell_whose_trials_all_fail_stops_only_itself_and_its_transfer_cell(schedule):
    study, code, log = schedule
    assert code == 1, log
    assert sorted(p.stem for p in (study / "cells").glob("*.json")) == [
        "arrhythmia-bigru-none-scratch", "arrhythmia-bilstm-none-scratch", "arrhythmia-cnet-none-scratch",
        "mi-bigru-none-transfer", "mi-bilstm-none-transfer", "mi-cnet-none-transfer"]
    last = log.strip().splitlines()[-1]
    assert last.startswith("error: 2 cell(s) of study 'schedule' did not finish: arrhythmia-seq-none-scratch: every "
                           "search trial failed; the first error: arrhythmia-seq-none-scratch cannot "
                           "train"), last
    assert "mi-seq-none-transfer: its source cell arrhythmia-seq-none-scratch failed" in last, last
    assert last.endswith("Fix that and run the same command to continue them: python -m study launch "
                         + " ".join(FLAGS[:1]) + " " + " ".join(FLAGS[1:]) + f" --input {study.parent.parent / 'input'}"
                         f" --results {study.parent}"), last
    record = StudyRecord.from_json(json.loads((study / "study.json").read_text()), "study.json")
    assert [(f.cell_id, f.blocked_by) for f in record.failures] == [
        ("arrhythmia-seq-none-scratch", None), ("mi-seq-none-transfer", "arrhythmia-seq-none-scratch")]
