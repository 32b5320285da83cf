"""The report's tables: each a Table of rows that renders as Markdown (for people) and CSV (for programs)."""

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tabulate import tabulate

from data.constants import ARRHYTHMIA_CLASSES, TASK_CLASSES
from study.metrics import AAMI_REPORTED, SELECTION_NAME, one_class_value
from study.report.reading import NO_RESULT, NOT_PLANNED, ReportedStudy, Stat, load_study
from study.storage import Storage

PUBLISHED_CSV = Path(__file__).parents[1] / "published_results.csv"
PUBLISHED_SOURCE = ("README tables of the original project (CS 598 Deep Learning in Healthcare course project, "
                    "UIUC, Spring 2021), copied in `study/published_results.csv`; see `study/published_results.md`")

NOT_RUN = "not run by original"


def load_published(path: Path | str = PUBLISHED_CSV) -> dict[tuple[str, str, str, str, str], dict[str, float]]:
    """(model, oversampling, task, init, class) -> {"precision", "recall", "f1"} in percent, as printed."""
    table = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["model"], row["oversampling"], row["task"], row["init"], row["class"])
            table[key] = {stat: float(row[stat]) for stat in ("precision", "recall", "f1")}
    return table


class Shown(NamedTuple):
    """A number shown differently in Markdown (for people) and CSV (for programs)."""

    md: str
    csv: str


def _lr(value: float) -> Shown:
    return Shown(f"{value:.3g}", repr(value))


def _duration(seconds: float) -> Shown:
    whole = int(round(seconds))
    if whole < 60:
        md = f"{whole}s"
    elif whole < 3600:
        md = f"{whole // 60}m {whole % 60:02d}s"
    else:
        md = f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return Shown(md, f"{seconds:.1f}")


def _delta(value: float) -> Shown:
    return Shown(f"{value:+.2f}", f"{value:+.4f}")


def _span(values: tuple[int, ...]) -> str:
    return str(values[0]) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def _pm(stat: Stat, digits: int = 2) -> str:
    return f"{stat.mean:.{digits}f}" if stat.std is None else f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


@dataclass(frozen=True)
class Table:
    """Rows of values: str, int, float (a percentage), Stat (mean ± std), Shown, or None (nothing to show)."""

    name: str
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple, ...]
    notes: str = ""

    def markdown(self) -> str:
        def show(value) -> str:
            if value is None:
                return "—"
            if isinstance(value, Stat):
                return _pm(value)
            if isinstance(value, Shown):
                return value.md
            if isinstance(value, float):
                return f"{value:.2f}"
            return str(value)

        numeric = [any(isinstance(row[i], (int, float, Stat, Shown)) for row in self.rows)
                   for i in range(len(self.headers))]
        align = ["right" if flag else "left" for flag in numeric]
        body = [[show(v) for v in row] for row in self.rows]
        return tabulate(body, headers=list(self.headers), tablefmt="github", disable_numparse=True,
                        colalign=align) + "\n"

    def csv_text(self) -> str:
        # A column holding mean ± std becomes two columns, "<header> mean" and "<header> std".
        split = [any(isinstance(row[i], Stat) for row in self.rows) for i in range(len(self.headers))]
        headers = []
        for header, two in zip(self.headers, split):
            headers += [f"{header} mean", f"{header} std"] if two else [header]

        def show(value) -> str:
            if value is None:
                return ""
            if isinstance(value, Stat):
                return f"{value.mean:.4f}"
            if isinstance(value, Shown):
                return value.csv
            if isinstance(value, float):
                return f"{value:.4f}"
            return str(value)

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        for row in self.rows:
            out = []
            for value, two in zip(row, split):
                out.append(show(value))
                if two:
                    std = value.std if isinstance(value, Stat) else None
                    out.append("" if std is None else f"{std:.4f}")
            writer.writerow(out)
        return buffer.getvalue()


def original_layout_table(study: ReportedStudy) -> Table:
    """The original README's layout: per model and oversampling, P / R / F1 by class, plus macro F1."""
    blocks = []
    for cell in study.cells:
        if (cell.model, cell.oversample) not in blocks:
            blocks.append((cell.model, cell.oversample))
    rows = []
    for model, oversample in blocks:
        arrhythmia = study.cell("arrhythmia", model, oversample, "scratch")
        mi = {init: study.cell("mi", model, oversample, init) for init in ("transfer", "scratch")}
        for stat, label in (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"), (None, "macro F1")):
            row = [model, oversample, label]
            if arrhythmia is None or not arrhythmia.ok:
                marker = arrhythmia.status if arrhythmia is not None else NOT_PLANNED
                row += [marker] + [None] * len(ARRHYTHMIA_CLASSES)
            elif stat is None:
                row += [arrhythmia.test["macro_f1"].mean] + [None] * len(ARRHYTHMIA_CLASSES)
            else:
                overall = {"precision": "macro_precision", "recall": "macro_recall", "f1": "overall_f1"}[stat]
                row += [arrhythmia.test[overall].mean]
                row += [arrhythmia.test[f"{stat}/{name}"].mean for name in ARRHYTHMIA_CLASSES]
            for init in ("transfer", "scratch"):
                cell = mi[init]
                if stat is None:
                    row.append(None)
                elif cell is None:
                    row.append(NOT_PLANNED)
                else:
                    row.append(cell.test[stat].mean if cell.ok else cell.status)
            rows.append(tuple(row))
    headers = ("model", "oversampling", "metric", "overall", *ARRHYTHMIA_CLASSES, "MI (transfer)", "MI (scratch)")
    notes = (
        "Test-set percentages, each the mean over seeds of the figure computed on one seed's test predictions. "
        "Columns N, S, V, F, Q: per-class precision, recall and F1 on MIT-BIH (arrhythmia). "
        "**overall**: macro precision, macro recall, and as F1 the harmonic mean of those two, the definition "
        "this project was asked to follow. That is not macro F1 (the mean of the per-class F1 scores), shown in "
        "the row **macro F1**; the original's own printed overall F1 is in fact that mean (table 3 compares "
        "against it). **MI (transfer)** and **MI (scratch)**: precision, recall and F1 of "
        "the MI class on PTB, for the model initialised from its arrhythmia checkpoint or trained from scratch. "
        f"Oversampling `smote` here means {study.smote_method}."
    )
    return Table("original_layout", "1. The original project's layout", headers, tuple(rows), notes)


def cells_table(study: ReportedStudy) -> Table:
    """One row per cell: what was chosen on validation, what it scored on test, and what it cost."""
    rows = []
    for c in study.cells:
        head = [c.task, c.model, c.method, c.init_label]
        if not c.ok:
            # The status stands where the test figure would; a cell whose search finished but has no seed
            # result yet still shows what the search chose.
            searched = c.status == NO_RESULT and c.lr is not None
            rows.append(tuple(head + [None, SELECTION_NAME.get(c.task), None, c.status, None, None]
                              + ([_lr(c.lr), c.batch_size] if searched else [None, None]) + [None, None]
                              + ([c.trials_run, c.trials_stopped_early] if searched else [None, None])
                              + [_duration(c.wall_time_s) if searched and c.wall_time_s is not None else None]))
            continue
        rows.append(tuple(head + [
            c.val.n, SELECTION_NAME[c.task], c.val, c.main, c.test["accuracy"],
            c.test.get("auroc"),
            _lr(c.lr), c.batch_size, _span(c.epochs_run), _span(c.best_epochs),
            c.trials_run, c.trials_stopped_early,
            _duration(c.wall_time_s) if c.wall_time_s is not None else None]))
    headers = ("task", "model", "oversampling", "init", "seeds", "selected on", "val", "test F1", "test accuracy",
               "test AUROC", "lr", "batch size", "epochs run", "best epoch", "trials", "stopped early", "wall time")
    notes = (
        "**oversampling**: the method that ran on the training split. **init**: scratch, or transfer from the "
        "arrhythmia checkpoint of the same model (frozen: body fixed, finetune: body trained at a lower rate). "
        "**seeds**: training runs of the chosen configuration. **selected on**: the validation figure that chose "
        "epochs, learning rate and batch size (macro F1 for arrhythmia, F1 of the MI class for MI). "
        "**val** / **test F1**: that figure on validation / test, in percent, mean ± sample std over seeds. "
        "**test accuracy**: percent, mean ± std over seeds. **test AUROC**: MI only, percent, mean ± std over seeds. "
        "**lr**, **batch size**: the configuration the hyperparameter search chose on validation. "
        "**epochs run** / **best epoch**: over the seeds (a range when they differ); the checkpoint of the best "
        "validation epoch is the one tested. **trials** / **stopped early**: search trials run, and how many "
        "the scheduler (ASHA) stopped before the maximum number of epochs. "
        "**wall time**: the cell's search and seed runs, end to end."
    )
    return Table("cells", "2. One row per cell", headers, tuple(rows), notes)


def published_table(study: ReportedStudy, published: dict) -> Table:
    """Each cell beside the original project's figure for the same cell, and the difference."""
    rows = []
    for c in study.cells:
        key_class = "MI" if c.task == "mi" else "overall"
        original = published.get((c.model, c.oversample, c.task, c.init, key_class))
        # The original's printed "overall" F1 is the mean of its per-class F1s (it matches to 5 decimals in all
        # 8 arrhythmia rows), i.e. macro F1, not the harmonic mean of its macro P and R: compare like with like.
        figure = SELECTION_NAME[c.task]
        ours = c.main if c.ok else c.status
        theirs = original["f1"] if original else NOT_RUN
        diff = _delta(ours.mean - theirs) if c.ok and original else None
        rows.append((c.task, c.model, c.oversample, c.init_label, figure, ours, theirs, diff))
    headers = ("task", "model", "oversampling", "init", "figure", "ours", "original", "difference")
    notes = (
        "**figure**: for arrhythmia macro F1 (the mean of the five per-class F1s), which is what the original's "
        "printed \"overall\" F1 is: in all eight of its arrhythmia rows it equals the mean of its per-class F1s "
        "to five decimals, not the harmonic mean of its overall precision and recall; for MI the F1 of the MI "
        "class; test set, percent. **ours**: mean ± sample std over seeds. "
        "**original**: one run, as printed in the original README. **difference**: ours minus original, in "
        "percentage points. The original project chose its number of epochs on the test set; this study "
        "chooses epochs and hyperparameters on a validation split taken from the training data and evaluates "
        "the test set once per chosen configuration, so the original's figures are biased upward and the "
        "difference is not a like-for-like contest. The original's `smote` rows ran SMOTE-Tomek (see "
        f"`data/oversample.py`); ours ran {study.smote_method}. \"{NOT_RUN}\": the original reported no "
        "figure for that cell (it ran transfer "
        f"only for cnet). Source of the published figures: {PUBLISHED_SOURCE}."
    )
    return Table("vs_published", "3. Against the published numbers", headers, tuple(rows), notes)


def inter_patient_table(study: ReportedStudy) -> Table:
    """Arrhythmia cells of an inter-patient study as de Chazal et al. (2004) report theirs: sensitivity and positive
    predictive value of N, S, V and F, and the macro F1 over those four (DS2 holds only a handful of Q beats)."""
    rows = []
    for c in study.cells:
        if c.task != "arrhythmia":
            continue
        head = [c.model, c.method, c.init_label]
        if not c.ok:
            rows.append(tuple(head + [c.status] + [None] * (2 * len(AAMI_REPORTED))))
            continue
        nsvf = Stat(tuple(math.fsum(c.test[f"f1/{k}"].values[i] for k in AAMI_REPORTED) / len(AAMI_REPORTED)
                          for i in range(c.main.n)))
        rows.append(tuple(head + [nsvf] + [c.test[f"{stat}/{k}"] for k in AAMI_REPORTED
                                           for stat in ("recall", "precision")]))
    headers = ("model", "oversampling", "init", "macro F1 N,S,V,F",
               *(f"{name} {k}" for k in AAMI_REPORTED for name in ("Se", "+P")))
    notes = ("The arrhythmia beats are de Chazal et al.'s inter-patient split: records DS1 train, records DS2 test, "
             "and validation is whole DS1 records (data/records.py), so no figure here comes from a patient the model "
             "trained or was selected on. **Se**: sensitivity (recall), **+P**: positive predictive value (precision), "
             "of the test beats, percent, mean ± std over seeds. **macro F1 N,S,V,F**: the mean of those four "
             "classes' F1 (Q apart, as de Chazal et al. did: DS2 holds only a handful of Q beats).")
    return Table("inter_patient", "4. Inter-patient figures", headers, tuple(rows), notes)


def summary_rows(study: ReportedStudy) -> list[list[str]]:
    rows = []
    for c in study.cells:
        if not c.ok:
            rows.append([c.cell_id, c.status, "", "", "", "", ""])
            continue
        rows.append([c.cell_id, _pm(c.main), _pm(c.val), f"{c.lr:.3g}", str(c.batch_size),
                     f"{c.trials_run} ({c.trials_stopped_early} early)",
                     _duration(c.wall_time_s).md if c.wall_time_s is not None else "—"])
    return rows


def summary_table(study_dir: "Path | str | Storage | ReportedStudy", *, problems: bool = True) -> str:
    """A compact text table of a study's cells, for the launcher to print when a study ends."""
    study = study_dir if isinstance(study_dir, ReportedStudy) else load_study(study_dir)
    done = sum(c.ok for c in study.cells)
    text = (f"Study {study.name}: {done} of {len(study.cells)} cells have results. test / val: macro F1 "
            "(arrhythmia) or F1 of MI (mi), percent, mean ± std over seeds; lr and batch chosen on validation.\n")
    text += tabulate(summary_rows(study), headers=["cell", "test", "val", "lr", "batch", "trials", "wall time"],
                     tablefmt="simple", disable_numparse=True) + "\n"
    unlearned = [c.cell_id for c in study.cells if c.ok and c.confusion is not None and c.main.mean <= 100 *
                 one_class_value([sum(row) for row in c.confusion], c.task, TASK_CLASSES[c.task]) + 1e-9]
    if unlearned:
        text += (f"{len(unlearned)} cell(s) scored no better on test than giving every beat one class would: "
                 f"they learned nothing at this budget, and their figures say nothing of their models: "
                 f"{', '.join(unlearned)}.\n")
    for problem in study.problems if problems else ():
        text += f"problem: {problem}\n"
    return text
