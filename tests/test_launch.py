"""The Ray Tune study on a local Ray instance with 2 CPUs: the whole grid, transfer, shared GPUs, crashes (driver kills:
test_faults.py; scheduling across cells: test_study_schedule.py)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from models import load_checkpoint
from study.cli import main
from study.grid import make_grid
from study.launch import run_launch
from study.tune.standin import standin
from study.results import CellResult
from tests.rays import own_ray
from tests.standins import crashing_once, launch_args, still_waiting

TINY = ["--limit", "150", "--samples", "1", "--max-epochs", "1", "--seeds", "1"]


def launch(tmp_path, *flags) -> int:
    return main(["launch", "--profile", "smoke", "--input", str(tmp_path / "input"),
                 "--results", str(tmp_path / "results"), *flags])


def cells_written(study: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((study / "cells").glob("*.json"))}


def cell_result(study: Path, cell_id: str) -> CellResult:
    path = study / "cells" / f"{cell_id}.json"
    return CellResult.from_json(json.loads(path.read_text()), str(path))


@pytest.mark.slow
def test_smoke_study_over_every_cell_writes_a_json_per_cell(ray_2cpu, tmp_path, capsys):
    assert launch(tmp_path, *TINY, "--name", "all", "--transfer-mode", "frozen") == 0  # the body checked below
    study = tmp_path / "results" / "all"
    cells = cells_written(study)
    assert sorted(cells) == sorted(cell.cell_id for cell in make_grid())
    assert len(cells) == 24
    for cell_id, result in cells.items():
        assert result["format"] == "ecg-study-cell" and result["cell_id"] == cell_id
        assert len(result["trials"]) == 1 and len(result["seeds"]) == 1
        seed = result["seeds"][0]
        assert Path(seed["checkpoint"]).exists() and seed["test"] is not None
        assert 0 <= seed["test"]["accuracy"] <= 1
    out = capsys.readouterr().out
    assert "24 of 24 cells to run" in out and out.count(": done in ") == 24 and "finished" in out

    # A transfer cell's frozen body is exactly its source's best arrhythmia checkpoint.
    for model in ("cnet", "bigru"):
        result = cell_result(study, f"mi-{model}-smote-transfer")
        source_path = result.cell.transfer_source
        assert source_path == cell_result(study, f"arrhythmia-{model}-smote-scratch").best_checkpoint
        source = load_checkpoint(source_path)["state_dict"]
        learned = load_checkpoint(result.best_checkpoint)["state_dict"]
        body = [k for k in source if not k.startswith(("fc1.", "fc2."))]
        assert body and all(torch.equal(source[k], learned[k]) for k in body)
        assert not torch.equal(source["fc1.weight"], learned["fc1.weight"])  # the head was replaced
        assert learned["fc2.weight"].shape[0] == 1

    # Running the same command again finds every cell done and trains nothing.
    before = {p: p.stat().st_mtime_ns for p in (study / "cells").glob("*.json")}
    assert launch(tmp_path, *TINY, "--name", "all", "--transfer-mode", "frozen") == 0  # the body checked below
    assert "done earlier, kept" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (study / "cells").glob("*.json")}


@pytest.mark.slow
def test_four_half_gpu_trials_share_two_gpus_at_once(tmp_path):
    # No real GPU is needed: Ray schedules by the GPUs it is told about; the trials then run on the CPU.
    started = tmp_path / "started"
    started.mkdir()

    def hold(config: dict, epoch: int) -> bool:
        """A search trial's first epoch waits until all four have begun (60 s at most): where Ray runs four at once
        they then overlap, however slowly a loaded machine starts their workers; where it runs fewer, they do not."""
        if config["phase"] != "search" or epoch != 1:
            return False
        return still_waiting(started / str(config["trial"]["lr"]), ready=len(list(started.iterdir())) >= 4)

    with own_ray(num_cpus=4, num_gpus=2):  # a stand-in trainable: what is tested is where Tune puts the trials
        code = run_launch(launch_args("--profile", "smoke", "--input", tmp_path / "input", "--results",
                                      tmp_path / "results", "--tasks", "arrhythmia", "--models", "cnet", "--oversample",
                                      "none", "--samples", "4", "--max-epochs", "3", "--grace-period", "1", "--limit",
                                      "1500", "--seeds", "1",
                                      "--gpus-per-trial", "0.5", "--name", "gpus"),
                          trainable=standin(lambda config: 0.5, hold=hold))
    assert code == 0
    trials = cells_written(tmp_path / "results" / "gpus")["arrhythmia-cnet-none-scratch"]["trials"]
    assert len(trials) == 4
    latest_start = max(t["ran"]["started_at"] for t in trials)
    earliest_end = min(t["ran"]["finished_at"] for t in trials)
    assert latest_start < earliest_end, f"the four trials did not overlap: {trials}"


@pytest.mark.slow
def test_a_trial_that_crashes_once_is_retried_from_its_checkpoint(ray_2cpu, tmp_path):
    marker = tmp_path / "crashed"
    args = launch_args("--profile", "smoke", "--input", tmp_path / "input", "--results", tmp_path / "results",
                       "--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none", "--samples", "1",
                       "--max-epochs", "4", "--limit", "300", "--seeds", "1", "--name", "crash")
    code = run_launch(args, trainable=crashing_once(marker, epoch=2))
    assert code == 0 and marker.exists()
    study = tmp_path / "results" / "crash"
    assert cells_written(study)["arrhythmia-cnet-none-scratch"]["trials"][0]["epochs"] == 4
    # The crashed trial continued after epoch 2: every epoch appears once, none was trained twice.
    progress = [pd.read_csv(d / "progress.csv") for d in (study / "tune" / "study").glob("trial_*")
                if json.loads((d / "params.json").read_text())["phase"] == "search"]
    assert len(progress) == 1
    assert progress[0]["epoch"].tolist() == [1, 2, 3, 4]
    assert progress[0]["attempt_started_at"].nunique() == 2  # two attempts: the crash and the retry


def test_a_changed_plan_is_refused_for_an_existing_study(ray_2cpu, tmp_path, capsys):
    flags = ["--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none", *TINY, "--name", "plan"]
    assert launch(tmp_path, *flags) == 0
    cell = tmp_path / "results" / "plan" / "cells" / "arrhythmia-cnet-none-scratch.json"
    before = cell.read_text()

    # Its one search trial trained every epoch with seed 0, so it is seed 0's run: that run only evaluated the
    # trial's best epoch on test, and gave exactly what training seed 0 afresh gives.
    from data import prepare_task
    from study.config import TrialConfig
    from study.trial import run_trial

    result = cell_result(tmp_path / "results" / "plan", "arrhythmia-cnet-none-scratch")
    (seed,) = result.seeds
    assert seed.trained_by == result.trials[0].trial_id and seed.seed == 0
    config = TrialConfig.from_dict(load_checkpoint(seed.checkpoint)["config"])
    data = prepare_task("arrhythmia", tmp_path / "input" / "demo", seed=0, limit=150)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a 1-CPU Ray worker
    try:
        fresh = run_trial(config, data, tmp_path / "fresh")
    finally:
        torch.set_num_threads(threads)
    assert fresh["test"] == seed.test and fresh["best_epoch"] == seed.best_epoch
    weights, again = load_checkpoint(seed.checkpoint)["state_dict"], load_checkpoint(fresh["checkpoint"])["state_dict"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)

    changed = list(flags)
    changed[changed.index("--max-epochs") + 1] = "2"
    assert launch(tmp_path, *changed) == 2
    assert "holds study 'plan' with other settings (max_epochs" in capsys.readouterr().err
    assert cell.read_text() == before


def test_the_smoke_profile_gives_cnet_a_budget_it_learns_in_and_flags_override_it(tmp_path):
    from study.grid import Cell
    from study.plan import resolve_plan

    def plan(*flags):
        return resolve_plan(launch_args("--profile", "smoke", "--input", tmp_path, *flags))

    cnet, bigru = Cell("arrhythmia", "cnet", "none"), Cell("arrhythmia", "bigru", "none")
    mi = Cell("mi", "cnet", "none")
    smoke = plan()
    assert (smoke.epochs(cnet), smoke.limit_of(cnet), smoke.epochs(mi)) == (16, 2000, 20)
    assert (smoke.epochs(bigru), smoke.limit_of(bigru), smoke.batch_sizes, smoke.grace_period) == (1, 200, (64,), 3)
    assert smoke.lr_range == (5e-4, 2e-3) and plan("--profile", "paper").lr_range == (1e-4, 1e-2)
    given = plan("--max-epochs", "3", "--limit", "150")  # a flag sets every model's budget
    assert {(given.epochs(c), given.limit_of(c)) for c in (cnet, bigru, mi)} == {(3, 150)}
    assert plan("--models", "bigru").budgets == {}
    paper = plan("--profile", "paper")
    assert paper.budgets == {}
    # A study made before a plan had these settings continues where it ran with what are now their defaults.
    from dataclasses import asdict

    from study.plan import check_same_plan

    before = {k: v for k, v in json.loads(json.dumps(asdict(paper))).items() if k not in ("batch_sizes", "budgets")}
    check_same_plan(paper, SimpleNamespace(name=paper.name, cells=paper.cells, plan=before), "here", "here/study.json")
    with pytest.raises(ValueError, match=r"batch_sizes: \[64, 128, 256, 512, 1024\] -> \[64\]"):
        check_same_plan(smoke, SimpleNamespace(name=smoke.name, cells=smoke.cells, plan={**before, "profile": "smoke"}), "here", "x")
    # ... except the recipe: a study from before recipes trained with plain Adam, whatever the default is now
    no_recipe = {k: v for k, v in before.items() if k != "recipe"}
    with pytest.raises(ValueError, match=r"recipe: 'original' -> 'default'"):
        check_same_plan(paper, SimpleNamespace(name=paper.name, cells=paper.cells, plan=no_recipe), "here", "x")
    original = plan("--profile", "paper", "--recipe", "original")
    check_same_plan(original, SimpleNamespace(name=paper.name, cells=paper.cells, plan={**no_recipe, "created": original.created}),
                    "here", "x")


def test_bad_launch_flags_fail_with_a_sentence(capsys):
    with pytest.raises(SystemExit):
        main(["launch", "--models", "resnet"])
    assert "choose from cnet, seq, bilstm, bigru" in capsys.readouterr().err


def test_a_study_name_cannot_leave_the_results_folder(tmp_path, capsys):
    assert launch(tmp_path, "--name", "../escaped") == 2
    assert "--name '../escaped' must be a plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "results").exists()


def test_resume_continues_a_study_and_never_starts_one(tmp_path, capsys):
    assert launch(tmp_path, "--resume", "--name", "typo") == 2
    assert f"--resume continues a study, and {tmp_path / 'results' / 'typo'} holds none" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_physionet_split_needs_its_build_and_reads_from_it(tmp_path, capsys):
    from data import write_demo
    from study.launch import task_input

    assert launch(tmp_path, "--split", "inter", "--tasks", "arrhythmia") == 2
    err = capsys.readouterr().err
    assert "--split inter reads the arrhythmia beats from" in err and "python -m data.physionet build" in err
    built = task_input(tmp_path / "input", "arrhythmia", "inter")
    assert built == tmp_path / "input" / "physionet-inter"
    assert task_input(tmp_path / "input", "mi", "inter") == tmp_path / "input"
    write_demo(built, rows=200)  # stands in for a build: the plan now resolves, with the MI files still missing
    assert launch(tmp_path, "--split", "inter", "--name", "x") == 2
    assert "needs the MI task's CSVs" in capsys.readouterr().err


def test_the_status_line_counts_trials_starting_apart_from_those_holding_a_slot():
    from study.tune.status import StatusLine

    status = {"done": 3, "running": 2, "waiting": 5, "trials_running": 3, "trials_starting": 1,
              "trials_finished": 40, "work_done": 100, "work_left": 300}
    # Every slot is taken, by a trial running or one starting: nothing to say of the cluster's free resources.
    assert StatusLine(None, slots=4, cpus=1.0, gpus=0.0).line(status, elapsed=120) == (
        "status: cells 3 done, 2 running, 5 waiting; trials 3 running, 1 starting, 40 finished; slots 3/4 in use; "
        "2.0 min elapsed, about 6.0 min left")


def test_the_grid_comes_in_its_order_whatever_order_the_flags_give():
    cells = make_grid(tasks=("mi", "arrhythmia"), models=("seq", "cnet"), oversample=("smote", "none"),
                      inits=("transfer", "scratch"))
    assert [c.cell_id for c in cells] == [c.cell_id for c in make_grid() if c.model in ("seq", "cnet")]
    assert [c.cell_id for c in make_grid(tasks=("mi",), models=("bigru",), inits=("transfer",))] == [
        "arrhythmia-bigru-none-scratch", "arrhythmia-bigru-smote-scratch", "mi-bigru-none-transfer",
        "mi-bigru-smote-transfer"]  # a transfer cell brings its source


def test_the_status_line_says_what_a_study_with_free_slots_waits_for(monkeypatch):
    """A busy cluster: slots free in the study, but no node has a trial's resources free right now."""
    import ray

    from study.tune.status import StatusLine

    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 0.5, "GPU": 0.25})
    status = {"done": 0, "running": 1, "waiting": 2, "trials_running": 1, "trials_starting": 0,
              "trials_finished": 0, "work_done": 0, "work_left": 10}
    assert StatusLine(None, slots=4, cpus=1.0, gpus=0.5).line(status, elapsed=60) == (
        "status: cells 0 done, 1 running, 2 waiting; trials 1 running, 0 finished; slots 1/4 in use; 1.0 min "
        "elapsed; waiting for resources: a trial needs 1 CPU(s) and 0.5 GPU(s), the cluster has 0.5 CPU(s) and "
        "0.25 GPU(s) free")
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 3.0, "GPU": 1.0})
    assert StatusLine(None, slots=4, cpus=1.0, gpus=0.5).line(status, elapsed=60).endswith("1.0 min elapsed")


@pytest.mark.parametrize("groups, waits", [([], False), ([(8, 1, 0)], False), ([(8, 1, 4)], True),
                                           ([(8, 0, 4)], False)])
def test_resources_no_node_has_are_refused_unless_the_autoscaler_may_add_a_node_with_them(monkeypatch, groups, waits):
    """groups: the autoscaler's node groups as (CPUs, GPUs, most nodes); one that may add a node with a GPU waits."""
    import ray
    from ray._private.state import state

    from study.tune import cluster

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    config = SimpleNamespace(node_group_configs=[SimpleNamespace(resources={"CPU": c, "GPU": g}, max_count=n)
                                                 for c, g, n in groups])
    monkeypatch.setattr(state, "get_cluster_config", lambda: config)
    assert cluster.no_node_fits(1, 0) is None
    sentence, may_add = cluster.no_node_fits(1, 1)
    assert sentence == ("a trial asks for 1 CPU(s) and 1 GPU(s) (--cpus-per-trial, --gpus-per-trial), and the largest "
                        "node of the cluster has 2 CPU(s) and 0 GPU(s)")
    assert may_add is waits
