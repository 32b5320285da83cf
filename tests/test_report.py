"""The study report's tables and findings on the hand-built results folder of tests/report_study.py, whose numbers,
and so every expected figure, are known. Expected figures are worked out by hand in the comments next to each
assertion; the report's files (plots, determinism, a full disk, entry points): tests/test_report_files.py.
"""

import json

import pytest

from study.report.reading import NOT_PLANNED
from study.report import NO_RESULT, NOT_RUN, UNREADABLE, build_report, load_study
from tests.report_study import PLANNED, make_study, md_rows, read_csv, row_of


@pytest.fixture
def study_dir(tmp_path):
    return make_study(tmp_path)


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
