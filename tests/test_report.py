"""The study report on a hand-built results folder whose numbers, and so every expected figure, are known.

The fixture study plans 8 cells (cnet and seq; arrhythmia none/smote; MI none scratch/transfer) and
writes 7 of them; arrhythmia-seq-smote-scratch has no result file. Expected figures are worked out by hand
in the comments next to each assertion.
"""

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from study import report
from study.cli import main
from study.report.plots import PLOT_FILES
from study.report.reading import NOT_PLANNED
from study.report import NO_RESULT, NOT_RUN, UNREADABLE, build_report, load_study, summary_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- fixture builder ---------------------------------------------------------------------------------

def arrhythmia_metrics(precision, recall, f1, accuracy):
    """A test/val metric dict for N, S, V, F, Q; macro figures are the means of the per-class ones."""
    names = ("N", "S", "V", "F", "Q")
    return {
        "accuracy": accuracy,
        "macro_precision": sum(precision) / 5, "macro_recall": sum(recall) / 5, "macro_f1": sum(f1) / 5,
        "per_class": {n: {"precision": p, "recall": r, "f1": f, "support": 100}
                      for n, p, r, f in zip(names, precision, recall, f1)},
        "confusion_matrix": [[90 if i == j else 2 + i for j in range(5)] for i in range(5)],
    }


def mi_metrics(precision, recall, f1, accuracy):
    return {
        "accuracy": accuracy, "macro_precision": (precision + 0.9) / 2, "macro_recall": (recall + 0.9) / 2,
        "macro_f1": (f1 + 0.9) / 2,
        "per_class": {"normal": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 40},
                      "MI": {"precision": precision, "recall": recall, "f1": f1, "support": 100}},
        "confusion_matrix": [[36, 4], [3, 97]],
        "precision": precision, "recall": recall, "f1": f1, "auroc": 0.99,
    }


RAN = {"started_at": 1.0, "finished_at": 126.0, "nodes": ["127.0.0.2"], "node_ids": ["node-a"]}


def cell_doc(cell_id, seeds, *, transfer_mode="frozen", smote_method="smote-tomek"):
    """A cell result (study/results.py, format version 2); seeds: [(test metric dict, val figure, epochs_run,
    best_epoch)]."""
    task, model, oversample, init = cell_id.split("-")
    key = "val_f1" if task == "mi" else "val_macro_f1"

    def trial(trial_id, lr, batch_size, val_metric, epochs, stopped_early):
        return {"trial_id": trial_id, "lr": lr, "batch_size": batch_size, "val_metric": val_metric, "epochs": epochs,
                "stopped_early": stopped_early, "failed": False, "error": None, "ran": RAN}

    return {
        "format": "ecg-study-cell", "version": 2, "study": "fixture", "cell_id": cell_id,
        "cell": {"task": task, "model": model, "oversample": oversample,
                 "smote_method": smote_method if oversample != "none" else None, "init": init,
                 "transfer_mode": transfer_mode if init == "transfer" else None,
                 "transfer_source": f"ckpt/{model}/best.pt" if init == "transfer" else None},
        "selection_metric": key,
        "best_config": {"lr": 0.001, "batch_size": 256},
        "trials": [trial("t0", 0.001, 256, 0.8, 20, False), trial("t1", 0.0003, 64, 0.7, 20, False),
                   trial("t2", 0.01, 1024, 0.5, 4, True)],
        "best_trial_curve": [{"epoch": e, "train_loss": 1.0 / e, "val_metric": 0.5 + 0.1 * e} for e in (1, 2, 3)],
        "seeds": [{"seed": i, "epochs_run": epochs, "best_epoch": best,
                   "val": {("f1" if task == "mi" else "macro_f1"): val}, "test": test,
                   "checkpoint": f"ckpt/{cell_id}/s{i}/best.pt", "ran": RAN}
                  for i, (test, val, epochs, best) in enumerate(seeds)],
        "data_fingerprint": "abc123", "wall_time_s": 125.0,
        "started": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T00:02:05+00:00",
    }


PLANNED = ["arrhythmia-cnet-none-scratch", "arrhythmia-cnet-smote-scratch", "arrhythmia-seq-none-scratch",
           "arrhythmia-seq-smote-scratch", "mi-cnet-none-scratch", "mi-cnet-none-transfer",
           "mi-seq-none-scratch", "mi-seq-none-transfer"]

CELLS = {
    # seed 0: macro P .87, R .786, F1 .828; seed 1: macro P .786, R .87, F1 .824
    "arrhythmia-cnet-none-scratch": [
        (arrhythmia_metrics([1.00, 0.80, 0.90, 0.70, 0.95], [0.98, 0.60, 0.90, 0.50, 0.95],
                            [0.99, 0.70, 0.90, 0.60, 0.95], 0.97), 0.85, 20, 15),
        (arrhythmia_metrics([0.98, 0.60, 0.90, 0.50, 0.95], [1.00, 0.80, 0.90, 0.70, 0.95],
                            [0.99, 0.66, 0.90, 0.62, 0.95], 0.95), 0.83, 18, 12)],
    # two identical seeds: macro P .85, R .882, F1 .866
    "arrhythmia-cnet-smote-scratch": [
        (arrhythmia_metrics([0.97, 0.75, 0.92, 0.65, 0.96], [0.97, 0.85, 0.90, 0.75, 0.94],
                            [0.97, 0.80, 0.91, 0.70, 0.95], 0.96), 0.88, 20, 20)] * 2,
    # one seed: macro P .818, R .718, F1 .76; the best validation figure of all arrhythmia cells
    "arrhythmia-seq-none-scratch": [
        (arrhythmia_metrics([0.99, 0.70, 0.90, 0.60, 0.90], [0.99, 0.50, 0.80, 0.40, 0.90],
                            [0.99, 0.58, 0.85, 0.48, 0.90], 0.95), 0.90, 20, 19)],
    "mi-cnet-none-scratch": [(mi_metrics(0.99, 0.98, 0.985, 0.98), 0.97, 30, 25),
                             (mi_metrics(0.97, 0.96, 0.965, 0.96), 0.95, 30, 28)],
    "mi-cnet-none-transfer": [(mi_metrics(0.95, 0.93, 0.94, 0.93), 0.93, 30, 30)],
    "mi-seq-none-scratch": [(mi_metrics(0.96, 0.98, 0.97, 0.96), 0.96, 30, 30)],
    "mi-seq-none-transfer": [(mi_metrics(0.90, 0.92, 0.91, 0.90), 0.90, 30, 30)],
}


def make_study(root: Path, *, study_json=True) -> Path:
    study = root / "fixture"
    (study / "cells").mkdir(parents=True)
    if study_json:
        (study / "study.json").write_text(json.dumps({
            "format": "ecg-study", "version": 2, "name": "fixture", "profile": "test", "smote_method": "smote-tomek",
            "data": {"source": "demo", "input": "input/demo", "fingerprints": {"arrhythmia": "abc123", "mi": "def456"}},
            "seed": 0, "created": "2025-01-01T00:00:00+00:00", "cells": PLANNED, "plan": {"recipe": "default"}}))
    for cell_id, seeds in CELLS.items():
        (study / "cells" / f"{cell_id}.json").write_text(json.dumps(cell_doc(cell_id, seeds)))
    return study


@pytest.fixture
def study_dir(tmp_path):
    return make_study(tmp_path)


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def md_rows(text: str) -> list[list[str]]:
    """The cells of every row of the Markdown tables in ``text``, stripped; separator rows left out."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|--")]


def row_of(rows, **match):
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


# --- tables -----------------------------------------------------------------------------------------

def test_original_layout_holds_exactly_the_fixture_numbers(study_dir, tmp_path):
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    rows = read_csv(result.table_paths["original_layout"][1])
    precision = row_of(rows, model="cnet", oversampling="none", metric="Precision")
    # overall P = mean(.87, .786) = .828; per class: mean of the two seeds.
    assert [precision[k] for k in ("overall", "N", "S", "V", "F", "Q", "MI (transfer)", "MI (scratch)")] == \
        ["82.8000", "99.0000", "70.0000", "90.0000", "60.0000", "95.0000", "95.0000", "98.0000"]
    recall = row_of(rows, model="cnet", oversampling="none", metric="Recall")
    assert [recall[k] for k in ("overall", "N", "S", "F", "MI (transfer)", "MI (scratch)")] == \
        ["82.8000", "99.0000", "70.0000", "60.0000", "93.0000", "97.0000"]
    f1 = row_of(rows, model="cnet", oversampling="none", metric="F1")
    # per-class F1: S (.70 + .66) / 2 = .68, F (.60 + .62) / 2 = .61; MI scratch (.985 + .965) / 2 = .975
    assert [f1[k] for k in ("N", "S", "V", "F", "Q", "MI (transfer)", "MI (scratch)")] == \
        ["99.0000", "68.0000", "90.0000", "61.0000", "95.0000", "94.0000", "97.5000"]
    macro = row_of(rows, model="cnet", oversampling="none", metric="macro F1")
    assert macro["overall"] == "82.6000"  # (.828 + .824) / 2
    assert macro["N"] == macro["MI (scratch)"] == ""
    md = result.table_paths["original_layout"][0].read_text()
    assert ["cnet", "none", "Precision", "82.80", "99.00", "70.00", "90.00", "60.00", "95.00", "95.00",
            "98.00"] in md_rows(md)


def test_overall_is_the_harmonic_mean_of_macro_precision_and_recall(study_dir, tmp_path):
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    rows = read_csv(result.table_paths["original_layout"][1])
    # Each seed: 2 * .87 * .786 / (.87 + .786) = 1.36764 / 1.656 = .825870 (the two seeds swap P and R).
    # Mean over seeds of that, not the harmonic mean of the mean P and R (which would be .828).
    assert row_of(rows, model="cnet", oversampling="none", metric="F1")["overall"] == "82.5870"
    # smote: 2 * .85 * .882 / (.85 + .882) = 1.4994 / 1.732 = .865704
    assert row_of(rows, model="cnet", oversampling="smote", metric="F1")["overall"] == "86.5704"
    # seq: 2 * .818 * .718 / 1.536 = 1.174648 / 1.536 = .764745
    assert row_of(rows, model="seq", oversampling="none", metric="F1")["overall"] == "76.4745"


def test_cells_table_has_one_row_per_planned_cell_with_its_numbers(study_dir, tmp_path):
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    rows = read_csv(result.table_paths["cells"][1])
    assert [(r["task"], r["model"]) for r in rows] == [(c.split("-")[0], c.split("-")[1]) for c in PLANNED]
    cnet = row_of(rows, task="arrhythmia", model="cnet", oversampling="none")
    # test macro F1 (.828, .824): mean 82.60, sample std sqrt(2 * .2^2 / 1) = .2828; accuracy (97, 95): 96 ± 1.4142
    assert (cnet["seeds"], cnet["selected on"]) == ("2", "macro F1")
    assert (cnet["val mean"], cnet["val std"]) == ("84.0000", "1.4142")
    assert (cnet["test F1 mean"], cnet["test F1 std"]) == ("82.6000", "0.2828")
    assert (cnet["test accuracy mean"], cnet["test accuracy std"]) == ("96.0000", "1.4142")
    assert (cnet["lr"], cnet["batch size"]) == ("0.001", "256")
    assert (cnet["epochs run"], cnet["best epoch"]) == ("18-20", "12-15")
    assert (cnet["trials"], cnet["stopped early"], cnet["wall time"]) == ("3", "1", "125.0")
    smote = row_of(rows, task="arrhythmia", model="cnet", oversampling="smote-tomek")
    assert (smote["test F1 mean"], smote["test F1 std"]) == ("86.6000", "0.0000")
    transfer = row_of(rows, task="mi", model="cnet", init="transfer (frozen)")
    assert (transfer["selected on"], transfer["test F1 mean"], transfer["test F1 std"]) == ("F1 of MI", "94.0000", "")
    md = result.table_paths["cells"][0].read_text()
    assert ["arrhythmia", "cnet", "none", "scratch", "2", "macro F1", "84.00 ± 1.41", "82.60 ± 0.28", "96.00 ± 1.41",
            "—", "0.001", "256", "18-20", "12-15", "3", "1", "2m 05s"] in md_rows(md)
    assert ["arrhythmia", "seq", "smote", "scratch", "—", "macro F1", "—", NO_RESULT] + ["—"] * 9 in md_rows(md)


def test_published_table_puts_each_cell_beside_the_original(study_dir, tmp_path):
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    rows = read_csv(result.table_paths["vs_published"][1])
    cnet = row_of(rows, task="arrhythmia", model="cnet", oversampling="none")
    # The original's "overall" F1 is its macro F1, so ours is too: mean macro F1 82.60 (seeds 82.4 and 82.8)
    # against 92.83118: 82.6000 - 92.8312 = -10.2312
    assert (cnet["figure"], cnet["ours mean"], cnet["original"], cnet["difference"]) == \
        ("macro F1", "82.6000", "92.8312", "-10.2312")
    mi = row_of(rows, task="mi", model="cnet", init="scratch")
    assert (mi["ours mean"], mi["original"], mi["difference"]) == ("97.5000", "99.7148", "-2.2148")
    never = row_of(rows, task="mi", model="seq", init="transfer (frozen)")
    assert (never["ours mean"], never["original"], never["difference"]) == ("91.0000", NOT_RUN, "")
    md = result.table_paths["vs_published"][0].read_text()
    assert "chose its number of epochs on the test set" in md
    assert ["arrhythmia", "cnet", "none", "scratch", "macro F1", "82.60 ± 0.28", "92.83", "-10.23"] in md_rows(md)
    assert ["mi", "seq", "none", "transfer (frozen)", "F1 of MI", "91.00", NOT_RUN, "—"] in md_rows(md)


def test_a_missing_cell_is_marked_in_every_table_not_dropped(study_dir, tmp_path):
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    cells = row_of(read_csv(result.table_paths["cells"][1]), task="arrhythmia", model="seq", oversampling="smote")
    assert (cells["test F1 mean"], cells["seeds"], cells["lr"]) == (NO_RESULT, "", "")
    published = row_of(read_csv(result.table_paths["vs_published"][1]), task="arrhythmia", model="seq",
                       oversampling="smote")
    assert (published["ours mean"], published["original"]) == (NO_RESULT, "90.0680")
    layout = row_of(read_csv(result.table_paths["original_layout"][1]), model="seq", oversampling="smote",
                    metric="Precision")
    assert (layout["overall"], layout["S"]) == (NO_RESULT, "")
    assert layout["MI (scratch)"] == NOT_PLANNED  # the fixture plans no MI cell with smote
    text = result.report_path.read_text()
    assert "3 of 8 cells" not in text and "7 of 8 cells have results; 1 no result yet" in text
    assert "seq: no comparison yet (seq / smote / scratch: no result yet)." in text


def test_corrupt_and_unknown_version_files_are_named_and_the_rest_is_built(study_dir, tmp_path, capsys):
    corrupt = study_dir / "cells" / "arrhythmia-seq-none-scratch.json"
    corrupt.write_text('{"format": "ecg-study-cell", "version": 1, "seeds": [')
    future = study_dir / "cells" / "mi-seq-none-scratch.json"
    doc = json.loads(future.read_text())
    future.write_text(json.dumps({**doc, "version": 99}))
    folder = study_dir / "cells" / "mi-seq-none-transfer.json"
    folder.unlink()
    folder.mkdir()
    result = build_report(study_dir, tmp_path / "out", plots=True)
    assert len(result.problems) == 3
    assert result.problems[0].startswith(f"{corrupt} is not valid JSON (")
    assert result.problems[0].endswith("that cell is reported as unreadable.")
    assert result.problems[1] == (f"{future} was written by another version of this project (format version 99); "
                                  "this one reads version 2: rebuild its report with the version that wrote it, or "
                                  "run the study again; that cell is reported as unreadable.")
    assert result.problems[2] == (f"{folder} is a folder where a file belongs; move it away; that cell is reported "
                                  "as unreadable.")
    err = capsys.readouterr().err
    text = result.report_path.read_text()
    for problem in result.problems:
        assert problem in err and f"- {problem}" in text
    rows = read_csv(result.table_paths["cells"][1])
    assert row_of(rows, task="arrhythmia", model="seq", oversampling="none")["test F1 mean"] == UNREADABLE
    assert row_of(rows, task="mi", model="seq", init="scratch")["test F1 mean"] == UNREADABLE
    assert row_of(rows, task="mi", model="seq", init="transfer")["test F1 mean"] == UNREADABLE
    assert row_of(rows, task="arrhythmia", model="cnet", oversampling="none")["test F1 mean"] == "82.6000"
    assert all(path.stat().st_size > 1000 for path in result.plots.values())


def test_a_field_of_the_wrong_kind_is_a_problem_not_a_crash(study_dir, tmp_path):
    path = study_dir / "cells" / "mi-cnet-none-transfer.json"
    doc = json.loads(path.read_text())
    doc["seeds"][0]["test"]["f1"] = 94.0  # a percentage where a fraction belongs
    path.write_text(json.dumps(doc))
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    assert result.problems == [f"{path}: field seeds[0].test.f1 is 94.0, expected a fraction between 0 and 1; "
                               "that cell is reported as unreadable."]


@pytest.mark.parametrize("change, sentence", [
    (lambda doc: doc["seeds"][1]["test"]["per_class"].pop("F"), "field seeds[1].test.per_class.F is missing"),
    (lambda doc: doc.pop("wall_time_s"), "field wall_time_s is missing"),
    (lambda doc: doc["trials"][0].update(batch_size="256"),
     "field trials[0].batch_size is '256', expected a whole number"),
    # Numbers Python's JSON reads but no figure is: Infinity, NaN, 1e309, a count beyond 2**53; a task unknown
    (lambda doc: doc["best_config"].update(batch_size=float("inf")),
     "field best_config.batch_size is inf, expected a positive whole number"),
    (lambda doc: doc.update(wall_time_s=float("nan")), "field wall_time_s is nan, expected a finite number"),
    (lambda doc: doc["seeds"][0]["test"]["confusion_matrix"][0].__setitem__(0, 10**30),
     "field seeds[0].test.confusion_matrix is not 5 x 5 counts"),
    (lambda doc: doc["cell"].update(task="ecg"), "field cell.task is 'ecg', expected one of arrhythmia, mi"),
    (lambda doc: doc.update(version=1), "was written by the version of this project that ran one Tuner a cell "
                                        "(format version 1); this one reads version 2: rebuild its report with the "
                                        "version that wrote it, or run the study again"),
])
def test_a_cell_file_with_a_missing_field_a_wrong_type_or_an_old_version_gets_one_sentence(study_dir, tmp_path,
                                                                                              change, sentence):
    path = study_dir / "cells" / "arrhythmia-cnet-none-scratch.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    assert len(result.problems) == 1 and sentence in result.problems[0] and str(path) in result.problems[0]
    assert f"- {result.problems[0]}" in result.report_path.read_text().split("## Problems")[1]
    rows = read_csv(result.table_paths["cells"][1])
    assert row_of(rows, task="arrhythmia", model="cnet", oversampling="none")["test F1 mean"] == UNREADABLE
    assert row_of(rows, task="arrhythmia", model="cnet", oversampling="smote-tomek")["test F1 mean"] == "86.6000"


def test_without_study_json_the_plan_is_the_full_grid(tmp_path):
    study_dir = make_study(tmp_path, study_json=False)
    study = load_study(study_dir)
    assert len(study.cells) == 24 and sum(c.ok for c in study.cells) == 7
    assert [c.cell_id for c in study.cells][:3] == ["arrhythmia-cnet-none-scratch", "arrhythmia-cnet-smote-scratch",
                                                    "arrhythmia-seq-none-scratch"]
    assert "study.json does not exist" in study.notes[0]
    assert study.smote_method == "smote-tomek"  # from the cell files


def test_a_folder_that_is_not_a_study_fails_with_one_sentence(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither study.json nor a cells/ folder"):
        load_study(tmp_path)


# --- findings ---------------------------------------------------------------------------------------

def test_findings_are_computed_from_the_numbers(study_dir, tmp_path):
    found = "\n".join(build_report(study_dir, tmp_path / "out", plots=False, quiet=True).findings)
    # Best arrhythmia cell by test: cnet/smote 86.60 ± 0.00; runner-up cnet/none 82.60 ± 0.28, 4.00 behind.
    assert ("the highest mean test macro F1 is cnet / smote-tomek / scratch at 86.60 ± 0.00 % (2 seeds). "
            "The runner-up is cnet / none / scratch at 82.60 ± 0.28 %, 4.00 points behind, more than") in found
    # By validation seq/none (90.00) beats cnet/smote (88.00): the report says so.
    assert "would name seq / none / scratch instead (validation 90.00 %, test 76.00 %)" in found
    # smote minus none, F1 points: N 97-99 = -2, S 80-68 = +12, V 91-90 = +1, F 70-61 = +9, Q 0; macro 86.6-82.6
    assert ("cnet: smote-tomek against none changed test F1 of the rare classes by S +12.00 (precision +5.00, "
            "recall +15.00); F +9.00 (precision +5.00, recall +15.00); of the others by N -2.00, V +1.00, "
            "Q +0.00; macro F1 by +4.00 points. So it helped S and F; "
            "the other classes that lost F1: N (-2.00).") in found
    # MI cnet: transfer 94.00 against scratch 97.50 -> scratch ahead by 3.50
    assert ("cnet (none): transfer (frozen) 94.00 % against scratch 97.50 ± 1.41 % test F1 of MI: "
            "scratch ahead by 3.50 points.") in found
    assert "seq (none): transfer (frozen) 91.00 % against scratch 97.00 % test F1 of MI: scratch ahead by 6.00" in found


# --- plots, determinism, entry points ---------------------------------------------------------------

def test_every_plot_is_a_valid_png_and_linked(study_dir, tmp_path):
    result = build_report(study_dir, tmp_path / "out", quiet=True)
    assert set(result.plots) == set(PLOT_FILES)
    text = result.report_path.read_text()
    for path in result.plots.values():
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 1000
        assert f"]({path.name})" in text


def test_two_runs_give_identical_files(study_dir, tmp_path):
    first = build_report(study_dir, tmp_path / "a", quiet=True)
    second = build_report(study_dir, tmp_path / "b", quiet=True)
    for name, (md, csv_path) in first.table_paths.items():
        assert md.read_bytes() == second.table_paths[name][0].read_bytes()
        assert csv_path.read_bytes() == second.table_paths[name][1].read_bytes()
    assert first.report_path.read_bytes() == second.report_path.read_bytes()
    for name, path in first.plots.items():
        assert path.read_bytes() == second.plots[name].read_bytes(), name


@pytest.mark.parametrize("failing", ["csv", "png"])
def test_a_report_rebuilt_onto_a_full_disk_leaves_the_older_files_whole(study_dir, tmp_path, monkeypatch, failing):
    """A write that fails half-way (here: part of the file, then ENOSPC) names the file and leaves the report
    built before it as it was, with no temporary file beside it."""
    import errno

    from matplotlib.figure import Figure

    from data.files import WriteError

    out = tmp_path / "out"
    build_report(study_dir, out, quiet=True)
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def half_then_full(path) -> None:
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "png":
        monkeypatch.setattr(Figure, "savefig", lambda self, path, **kwargs: half_then_full(path))
    else:
        write_text = Path.write_text
        monkeypatch.setattr(Path, "write_text", lambda self, text, **kwargs: half_then_full(self)
                            if self.name.startswith(".cells.csv.") else write_text(self, text, **kwargs))
    with pytest.raises(WriteError, match=r"could not write \S+\.(csv|png): No space left on device"):
        build_report(study_dir, out, quiet=True)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_summary_table_and_command_line(study_dir, tmp_path, capsys):
    text = summary_table(study_dir)
    assert "Study fixture: 7 of 8 cells have results" in text
    assert "arrhythmia-cnet-none-scratch" in text and "82.60 ± 0.28" in text
    assert ["arrhythmia-seq-smote-scratch", "no", "result", "yet"] in [line.split() for line in text.splitlines()]
    out = tmp_path / "cli"
    assert main(["report", str(study_dir), "--out", str(out), "--no-plots"]) == 0
    assert (out / "report.md").exists() and not (out / "per_class_f1.png").exists()
    assert "report: " in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_the_summary_names_the_cells_no_better_than_one_class_for_every_beat(study_dir):
    assert "no better" not in summary_table(study_dir)
    # Calling all 140 test beats MI (100 of them are) gives an F1 of MI of 200 / 240 = 83.3%.
    path = study_dir / "cells" / "mi-seq-none-transfer.json"
    doc = json.loads(path.read_text())
    doc["seeds"][0]["test"] = mi_metrics(100 / 140, 1.0, 200 / 240, 100 / 140)
    path.write_text(json.dumps(doc))
    text = summary_table(study_dir)
    assert ("1 cell(s) scored no better on test than giving every beat one class would: they learned nothing at "
            "this budget, and their figures say nothing of their models: mi-seq-none-transfer.") in text
    doc["seeds"][0]["test"] = mi_metrics(0.72, 1.0, 0.84, 0.72)
    path.write_text(json.dumps(doc))
    assert "no better" not in summary_table(study_dir)


def test_default_output_folder_is_inside_the_study(study_dir):
    result = build_report(study_dir, plots=False, quiet=True)
    assert result.out_dir == study_dir / "report" and result.report_path.exists()
    shutil.rmtree(result.out_dir)
    assert load_study(study_dir).problems == []


def test_a_cell_file_without_seed_runs_is_a_problem_not_a_result(study_dir, tmp_path):
    # The driver writes a cell's file once its last seed run has ended: one without seed runs is damaged.
    path = study_dir / "cells" / "arrhythmia-seq-none-scratch.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "seeds": []}))
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    row = row_of(read_csv(result.table_paths["cells"][1]), task="arrhythmia", model="seq", oversampling="none")
    assert row["test F1 mean"] == UNREADABLE
    assert result.problems == [f"{path}: field seeds is empty, expected the cell's seed runs; that cell is reported "
                               "as unreadable."]


def test_failed_search_trials_are_counted_and_do_not_break_the_report(study_dir, tmp_path):
    path = study_dir / "cells" / "mi-seq-none-scratch.json"
    doc = json.loads(path.read_text())
    doc["trials"][2].update(val_metric=None, failed=True, stopped_early=False)
    path.write_text(json.dumps(doc))
    result = build_report(study_dir, tmp_path / "out", quiet=True)
    assert result.problems == []
    assert "failed before their first validation (counted in trials, not plotted in colour): mi-seq-none-scratch 1" \
        in result.report_path.read_text()
    assert result.plots["trials_mi"].read_bytes()[:8] == PNG_SIGNATURE


def test_without_a_folder_the_most_recently_changed_study_is_reported(tmp_path):
    older, newer = make_study(tmp_path / "a"), make_study(tmp_path / "b")
    os.utime(older / "study.json", (1, 1))
    for path in (older / "cells").glob("*.json"):
        os.utime(path, (1, 1))
    assert report.latest_study(tmp_path / "b") == newer
    (tmp_path / "both").mkdir()
    shutil.move(str(older), tmp_path / "both" / "old")
    shutil.move(str(newer), tmp_path / "both" / "new")
    assert report.latest_study(tmp_path / "both") == tmp_path / "both" / "new"
    with pytest.raises(FileNotFoundError, match="no study folder found"):
        report.latest_study(tmp_path / "empty")


def test_an_inter_patient_study_gets_se_and_ppv_of_n_s_v_f_and_every_report_names_its_recipe(study_dir, tmp_path):
    plain = build_report(study_dir, tmp_path / "plain", plots=False, quiet=True)
    assert "inter_patient" not in plain.table_paths
    info = json.loads((study_dir / "study.json").read_text())
    (study_dir / "study.json").write_text(json.dumps({**info, "plan": {"split": "inter"}}))  # before recipes
    result = build_report(study_dir, tmp_path / "inter", plots=False, quiet=True)
    text = result.report_path.read_text()
    assert "- training recipe of every trial: original (Adam, constant learning rate)" in text
    assert "## 4. Inter-patient figures" in text
    rows = read_csv(result.table_paths["inter_patient"][1])
    assert [(r["model"], r["oversampling"]) for r in rows] == [("cnet", "none"), ("cnet", "smote-tomek"),
                                                               ("seq", "none"), ("seq", "smote")]
    cnet = rows[0]
    # F1 of N, S, V, F: seed 0 (.99 .70 .90 .60) -> 79.75, seed 1 (.99 .66 .90 .62) -> 79.25; Se S .60 and .80
    assert (cnet["macro F1 N,S,V,F mean"], cnet["macro F1 N,S,V,F std"]) == ("79.5000", "0.3536")
    assert (cnet["Se S mean"], cnet["Se S std"], cnet["+P S mean"]) == ("70.0000", "14.1421", "70.0000")
    assert rows[3]["macro F1 N,S,V,F mean"] == NO_RESULT
    (study_dir / "study.json").write_text(json.dumps({**info, "plan": {"split": "kaggle", "recipe": "default"}}))
    text = build_report(study_dir, tmp_path / "default", plots=False, quiet=True).report_path.read_text()
    assert "- training recipe of every trial: default (AdamW (weight decay 0.01), cosine after 2 warm-up epochs)" in text
    assert "Inter-patient" not in text
    assert "RR intervals" not in text
    (study_dir / "study.json").write_text(json.dumps({**info, "plan": {"split": "inter", "rhythm": True}}))
    text = build_report(study_dir, tmp_path / "rhythm", plots=False, quiet=True).report_path.read_text()
    assert "- arrhythmia models see each beat's RR intervals beside its samples (`--rhythm`, data/rhythm.py)" in text


def test_a_cells_file_in_place_of_the_cells_folder_is_named(study_dir, tmp_path):
    shutil.rmtree(study_dir / "cells")
    (study_dir / "cells").write_text("notes\n")
    result = build_report(study_dir, tmp_path / "out", plots=False, quiet=True)
    assert result.problems == [f"{study_dir / 'cells'} is a file, not the folder of the cells' results; no cell's "
                               "result could be read."]
