"""study_frames: a study folder as pandas frames with the documented columns, one row per cell, seed run and trial,
agreeing with the report built from the same folder."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from study.report import NO_RESULT, UNREADABLE, build_report, study_frames
from study.report.frames import CELL_COLUMNS, SEED_COLUMNS, TRIAL_COLUMNS

FIXED = Path(__file__).resolve().parent / "fixtures" / "study"


@pytest.fixture(scope="module")
def frames():
    return study_frames(FIXED)


def cell_files():
    return {p.stem: json.loads(p.read_text()) for p in sorted((FIXED / "cells").glob("*.json"))}


def test_one_row_per_cell_seed_and_trial_with_the_documented_columns(frames):
    docs = cell_files()
    assert tuple(frames.cells.columns) == CELL_COLUMNS and len(frames.cells) == 12
    assert sorted(frames.cells.cell_id) == sorted(docs)
    assert tuple(frames.seeds.columns[:len(SEED_COLUMNS)]) == SEED_COLUMNS and frames.seeds.columns[-1] == "checkpoint"
    assert len(frames.seeds) == sum(len(d["seeds"]) for d in docs.values()) == 24
    assert tuple(frames.trials.columns) == TRIAL_COLUMNS
    assert len(frames.trials) == sum(len(d["trials"]) for d in docs.values())
    arrhythmia = frames.seeds[frames.seeds.task == "arrhythmia"]
    assert {"test_f1_S", "test_precision_F", "test_recall_Q", "test_macro_f1"} <= set(frames.seeds.columns)
    assert arrhythmia.test_f1_MI.isna().all() and frames.seeds[frames.seeds.task == "mi"].test_f1_S.isna().all()
    assert frames.problems == ()


def test_the_figures_are_the_cell_files_and_agree_with_the_report(frames, tmp_path):
    docs = cell_files()
    cell = "arrhythmia-cnet-smote-scratch"
    runs = frames.seeds[frames.seeds.cell_id == cell].sort_values("seed")
    assert list(runs.test_macro_f1) == [s["test"]["macro_f1"] for s in docs[cell]["seeds"]]
    assert list(runs.test_f1_S) == [s["test"]["per_class"]["S"]["f1"] for s in docs[cell]["seeds"]]
    row = frames.cells.set_index("cell_id").loc[cell]
    values = [s["test"]["macro_f1"] for s in docs[cell]["seeds"]]
    assert row.test_mean == pytest.approx(np.mean(values)) and row.test_std == pytest.approx(np.std(values, ddof=1))
    assert (row.method, row.status, row.lr, row.seeds) == ("smote-tomek", "ok", docs[cell]["best_config"]["lr"], 2)
    chosen = frames.trials[(frames.trials.cell_id == cell) & frames.trials.chosen]
    assert list(chosen.lr) == [docs[cell]["best_config"]["lr"]]
    table = build_report(FIXED, tmp_path, plots=False, quiet=True).table_paths["cells"][1]
    with open(table) as handle:
        report = {(r["task"], r["model"], r["oversampling"], r["init"]): r for r in csv.DictReader(handle)}
    for row in frames.cells.itertuples():
        shown = report[(row.task, row.model, row.method, row.init if row.init == "scratch" else
                        f"transfer ({row.transfer_mode})")]
        assert float(shown["test F1 mean"]) == pytest.approx(100 * row.test_mean, abs=5e-5)
        assert float(shown["val mean"]) == pytest.approx(100 * row.val_mean, abs=5e-5)


def test_cells_without_a_readable_result_are_rows_with_their_status(tmp_path):
    study = tmp_path / "study"
    (study / "cells").mkdir(parents=True)
    (study / "study.json").write_text((FIXED / "study.json").read_text())
    docs = cell_files()
    for cell_id, doc in list(docs.items())[:5]:
        (study / "cells" / f"{cell_id}.json").write_text(json.dumps(doc))
    broken = list(docs)[0]
    (study / "cells" / f"{broken}.json").write_text("{")
    frames = study_frames(study)
    assert len(frames.cells) == 12 and len(frames.problems) == 1
    status = frames.cells.set_index("cell_id").status
    assert status[broken] == UNREADABLE and (status == NO_RESULT).sum() == 7 and (status == "ok").sum() == 4
    assert broken not in set(frames.seeds.cell_id) and len(frames.seeds) == 8
    assert np.isnan(frames.cells.set_index("cell_id").loc[broken, "test_mean"])
