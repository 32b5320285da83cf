"""The study report's files on the hand-built study of tests/report_study.py: plots, identical files from two runs,
a full disk, and the entry points."""

import json
import os
import shutil
from pathlib import Path

import pytest

from study import report
from study.cli import main
from study.report.plots import PLOT_FILES
from study.report import NO_RESULT, UNREADABLE, build_report, load_study, summary_table
from tests.report_study import PNG_SIGNATURE, make_study, mi_metrics, read_csv, row_of


@pytest.fixture
def study_dir(tmp_path):
    return make_study(tmp_path)


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
