"""The study report: tables, plots and findings rebuilt from the files a study wrote.

    python -m study report results/smoke                  # writes results/smoke/report/report.md
    python -m study report results/full --out docs/full   # somewhere else
    python -m study report                                # the most recently changed study under results/
    python -m study.report results/smoke --no-plots       # standalone, tables and findings only

Reads only ``study.json`` and ``cells/*.json`` (their schema is study/results.py; ``manifest.json`` too in
folders of format version 1): no Ray, no GPU, no retraining. A finished, partial or still-running study all work: a planned
cell without a result file is marked "no result yet" in every table, never dropped. A result file that
cannot be read gets one sentence in the report's Problems section and on stderr, and the rest is built.

Every figure is a test-set percentage, the mean over the cell's seeds of that figure computed on each
seed's test predictions (std: sample standard deviation over seeds). Every table is written as Markdown
and CSV and gathered, with the plots and the findings, in ``report.md``.
"""

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tabulate import tabulate

from data.constants import ARRHYTHMIA_CLASSES, MI_CLASSES, TASK_CLASSES, TASKS
from data.files import atomic_write, write_text
from study.config import RECIPES, describe_recipe
from study.grid import CELL_OVERSAMPLING, INITS, MODELS, make_grid
from study.metrics import AAMI_REPORTED, SELECTION_NAME, harmonic_mean, one_class_value, selection_key
from study.storage import LocalStorage, Storage, is_uri

# Format version 2 (study/results.py) and the version 1 of studies run one Tuner a cell, with manifest.json.
STUDY_FORMAT, CELL_FORMAT, VERSIONS = "ecg-study", "ecg-study-cell", (1, 2)

RARE_CLASSES = ("S", "F")  # the two rarest AAMI classes in MIT-BIH (about 2.5 % and 0.7 % of beats)

PUBLISHED_CSV = Path(__file__).with_name("published_results.csv")
PUBLISHED_SOURCE = ("README tables of the original project (CS 598 Deep Learning in Healthcare course project, "
                    "UIUC, Spring 2021), copied in `study/published_results.csv`; see `study/published_results.md`")

OK = "ok"
NO_RESULT = "no result yet"
UNREADABLE = "unreadable (see Problems)"
NOT_PLANNED = "not in this study"
NOT_RUN = "not run by original"



def full_grid() -> list[str]:
    """Every cell of the full study: 8 arrhythmia cells (scratch only) and 16 MI cells (scratch and transfer)."""
    return [cell.cell_id for cell in make_grid()]


def parse_cell_id(cell_id: str) -> tuple[str, str, str, str]:
    """``"mi-cnet-smote-transfer"`` -> ("mi", "cnet", "smote", "transfer"); oversampling may hold a hyphen."""
    parts = cell_id.split("-")
    if len(parts) < 4 or not all(parts):
        raise ValueError(f"cell id {cell_id!r} is not of the form task-model-oversample-init.")
    return parts[0], parts[1], "-".join(parts[2:-1]), parts[-1]


# ----------------------------------------------------------------------------------------------------
# Reading a study
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stat:
    """One figure over a cell's seeds, in percent."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); None for a single seed, which has no spread to show."""
        if len(self.values) < 2:
            return None
        mean = self.mean
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1))


@dataclass
class Cell:
    """One cell of the study grid and, when its result file could be read, what it holds."""

    cell_id: str
    task: str
    model: str
    oversample: str
    init: str
    planned: bool = True
    status: str = NO_RESULT
    smote_method: str | None = None
    transfer_mode: str | None = None
    transfer_source: str | None = None
    selection_metric: str | None = None
    lr: float | None = None
    batch_size: int | None = None
    epochs_run: tuple[int, ...] = ()
    best_epochs: tuple[int, ...] = ()
    trials_run: int | None = None
    trials_stopped_early: int | None = None
    trials_failed: int = 0
    wall_time_s: float | None = None
    val: Stat | None = None  # the selection metric on validation
    test: dict[str, Stat] = field(default_factory=dict)  # "macro_f1", "overall_f1", "f1/S", "precision" ...
    confusion: list[list[int]] | None = None  # test confusion matrices summed over seeds
    curve: list[dict] = field(default_factory=list)  # best trial: [{"epoch", "train_loss", "val_metric"}]
    trials: list[dict] = field(default_factory=list)  # [{"lr", "batch_size", "val_metric", "stopped_early"}]

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def main_key(self) -> str:
        """The test figure a cell is judged by: macro F1 (arrhythmia) or F1 of the MI class."""
        return selection_key(self.task)

    @property
    def main(self) -> Stat:
        return self.test[self.main_key]

    @property
    def method(self) -> str:
        """The oversampling that actually ran: "none", "smote" or "smote-tomek"."""
        return self.smote_method if self.oversample != "none" and self.smote_method else self.oversample

    @property
    def init_label(self) -> str:
        return f"transfer ({self.transfer_mode})" if self.init == "transfer" and self.transfer_mode else self.init

    @property
    def label(self) -> str:
        return f"{self.model} / {self.method} / {self.init_label}"


@dataclass
class Study:
    directory: str  # the folder or URI it was read from, as given
    name: str
    info: dict  # study.json, or {} when missing or unreadable
    manifest: dict
    cells: list[Cell]
    problems: list[str]
    notes: list[str]

    def cell(self, task: str, model: str, oversample: str, init: str) -> Cell | None:
        return self._by_id.get(f"{task}-{model}-{oversample}-{init}")

    def __post_init__(self):
        self._by_id = {c.cell_id: c for c in self.cells}

    @property
    def smote_method(self) -> str:
        """Which method "smote" meant, from study.json and the cell files; "mixed: ..." if they disagree."""
        methods = {c.smote_method for c in self.cells if c.ok and c.oversample != "none" and c.smote_method}
        if self.info.get("smote_method"):
            methods.add(str(self.info["smote_method"]))
        if not methods:
            return "not recorded"
        return methods.pop() if len(methods) == 1 else "mixed: " + ", ".join(sorted(methods))


class _Malformed(ValueError):
    """A result file that parses as JSON but lacks a field or holds a value of the wrong kind."""


def _get(obj, key, where: str):
    if not isinstance(obj, dict):
        raise _Malformed(f"{where or 'the top level'} is not a JSON object")
    if key not in obj:
        raise _Malformed(f"has no field {where}{key}")
    return obj[key]


def _fraction(obj, key, where: str) -> float:
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _Malformed(f"has {where}{key} = {value!r}, not a fraction between 0 and 1")
    return float(value)


def _number(obj, key, where: str, kind=float):
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise _Malformed(f"has {where}{key} = {value!r}, not a number")
    return kind(value)


def _read_json(store: Storage, rel: str, problems: list[str], what: str) -> dict | None:
    """The parsed file, or None with one sentence in ``problems`` when it cannot be parsed."""
    path = store.ref(rel)
    try:
        doc = json.loads(store.read_text(rel))
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{path} could not be read ({error.__class__.__name__}: {error}); {what}.")
        return None
    except json.JSONDecodeError as error:
        problems.append(f"{path} is not valid JSON ({error}); {what}.")
        return None
    if not isinstance(doc, dict):
        problems.append(f"{path} holds a JSON {type(doc).__name__}, not an object; {what}.")
        return None
    return doc


def _check_format(doc: dict, path: str, expected: str, problems: list[str], what: str) -> bool:
    fmt, version = doc.get("format"), doc.get("version")
    if fmt != expected:
        problems.append(f"{path} has format {fmt!r}, not {expected!r}, so it is not a file this report "
                        f"can read; {what}.")
        return False
    if version not in VERSIONS:
        problems.append(f"{path} is {fmt!r} version {version!r}, but this report reads only versions "
                        f"{' and '.join(map(str, VERSIONS))}; {what}.")
        return False
    return True


def _fill_cell(cell: Cell, doc: dict) -> None:
    """Copy what the report needs from a cell result file into ``cell``; raise _Malformed on a bad field."""
    info = _get(doc, "cell", "")
    for key in ("task", "model", "oversample", "init"):
        if _get(info, key, "cell.") != getattr(cell, key):
            raise _Malformed(f"says cell.{key} is {info[key]!r}, but its name says {getattr(cell, key)!r}")
    cell.smote_method = info.get("smote_method") or doc.get("smote_method")
    cell.transfer_mode = info.get("transfer_mode") if cell.init == "transfer" else None
    cell.transfer_source = info.get("transfer_source") if cell.init == "transfer" else None
    cell.selection_metric = doc.get("selection_metric")
    best = _get(doc, "best_config", "")
    cell.lr = _number(best, "lr", "best_config.")
    cell.batch_size = _number(best, "batch_size", "best_config.", int)
    trials = doc.get("trials") or []
    cell.trials = [{"lr": _number(t, "lr", f"trials[{i}]."),
                    "batch_size": _number(t, "batch_size", f"trials[{i}].", int),
                    # None: the trial failed before its first validation.
                    "val_metric": None if t.get("val_metric") is None else _fraction(t, "val_metric", f"trials[{i}]."),
                    "stopped_early": bool(t.get("stopped_early", False))} for i, t in enumerate(trials)]
    cell.trials_run = _number(doc, "trials_run", "", int) if "trials_run" in doc else len(cell.trials)
    cell.trials_stopped_early = (_number(doc, "trials_stopped_early", "", int) if "trials_stopped_early" in doc
                                 else sum(t["stopped_early"] for t in cell.trials))
    cell.trials_failed = sum(t["val_metric"] is None for t in cell.trials)
    cell.curve = [{"epoch": _number(p, "epoch", f"best_trial_curve[{i}].", int),
                   "val_metric": _fraction(p, "val_metric", f"best_trial_curve[{i}].")}
                  for i, p in enumerate(doc.get("best_trial_curve") or [])]
    cell.wall_time_s = _number(doc, "wall_time_s", "") if doc.get("wall_time_s") is not None else None

    seeds = _get(doc, "seeds", "")
    if not isinstance(seeds, list):
        raise _Malformed("has a field seeds that is not a list")
    if not seeds:
        return  # the search ran but no seed has a test result yet: still "no result yet"
    classes = MI_CLASSES if cell.task == "mi" else ARRHYTHMIA_CLASSES
    columns: dict[str, list[float]] = {}
    val_values, confusion = [], None
    for i, seed in enumerate(seeds):
        where = f"seeds[{i}]."
        test = _get(seed, "test", where)
        where += "test."
        figures = {key: _fraction(test, key, where)
                   for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1")}
        # The original project's "overall" F1: the harmonic mean of macro precision and macro recall.
        figures["overall_f1"] = harmonic_mean(figures["macro_precision"], figures["macro_recall"])
        per_class = _get(test, "per_class", where)
        for name in classes:
            stats = _get(per_class, name, where + "per_class.")
            for stat in ("precision", "recall", "f1"):
                figures[f"{stat}/{name}"] = _fraction(stats, stat, f"{where}per_class.{name}.")
        if cell.task == "mi":
            for stat in ("precision", "recall", "f1"):
                figures[stat] = _fraction(test, stat, where)
            if test.get("auroc") is not None:
                figures["auroc"] = _fraction(test, "auroc", where)
        for key, value in figures.items():
            columns.setdefault(key, []).append(100 * value)
        val_values.append(100 * _fraction(_get(seed, "val", f"seeds[{i}]."), cell.main_key, f"seeds[{i}].val."))
        matrix = _get(test, "confusion_matrix", where)
        if (not isinstance(matrix, list) or len(matrix) != len(classes)
                or any(not isinstance(row, list) or len(row) != len(classes) for row in matrix)):
            raise _Malformed(f"has a {where}confusion_matrix that is not {len(classes)} x {len(classes)}")
        matrix = [[int(v) for v in row] for row in matrix]
        confusion = matrix if confusion is None else [[a + b for a, b in zip(r, s)] for r, s in zip(confusion, matrix)]
    cell.epochs_run = tuple(_number(s, "epochs_run", f"seeds[{i}].", int) for i, s in enumerate(seeds))
    cell.best_epochs = tuple(_number(s, "best_epoch", f"seeds[{i}].", int) for i, s in enumerate(seeds))
    # A figure some seeds lack (AUROC is None when a split holds one class) is not averaged at all.
    cell.test = {key: Stat(tuple(values)) for key, values in columns.items() if len(values) == len(seeds)}
    cell.val = Stat(tuple(val_values))
    cell.confusion = confusion
    cell.status = OK


def _sort_key(cell: Cell):
    def rank(value, order):
        return (order.index(value), "") if value in order else (len(order), value)

    # The grid's order; cells of other models or variants found on disk come after the known ones.
    return (rank(cell.task, TASKS), rank(cell.model, MODELS), rank(cell.oversample, CELL_OVERSAMPLING),
            rank(cell.init, INITS), cell.cell_id)


def load_study(study_dir: Path | str | Storage) -> Study:
    """Read a study folder (local, or a URI such as s3://bucket/results/smoke); problems with single files are
    collected, a folder that is not a study raises."""
    store = study_dir if isinstance(study_dir, Storage) else Storage.at(study_dir)
    where = store.location
    if isinstance(store, LocalStorage) and not store.root.is_dir():
        raise FileNotFoundError(f"{where} is not a folder; pass a study folder such as results/smoke.")
    cell_files = store.list("cells", ".json")
    has_info = store.exists("study.json")
    if not has_info and not cell_files and not store.exists("cells"):
        raise FileNotFoundError(f"{where} has neither study.json nor a cells/ folder, so it is not a study "
                                "folder; pass one such as results/smoke.")
    problems: list[str] = []
    notes: list[str] = []

    info: dict = {}
    study_path = store.ref("study.json")
    if has_info:
        doc = _read_json(store, "study.json", problems, "the planned cells are taken to be the full grid")
        if doc is not None and _check_format(doc, study_path, STUDY_FORMAT, problems,
                                             "the planned cells are taken to be the full grid"):
            info = doc
    else:
        notes.append(f"{study_path} does not exist, so the planned cells are taken to be the full grid "
                     f"({len(full_grid())} cells).")
    planned = info.get("cells") if isinstance(info.get("cells"), list) else None
    if info and planned is None:
        problems.append(f"{study_path} has no list of planned cells; the planned cells are taken to be the full grid.")
    planned_ids = [str(c) for c in planned] if planned is not None else full_grid()

    manifest: dict = {}
    if store.exists("manifest.json"):
        manifest = _read_json(store, "manifest.json", problems, "the transfer sources are not listed") or {}

    cells: dict[str, Cell] = {}
    for cell_id in planned_ids:
        try:
            cells[cell_id] = Cell(cell_id, *parse_cell_id(cell_id))
        except ValueError as error:
            problems.append(f"{study_path} plans a cell that this report cannot place: {error}")

    for file_name in cell_files:
        rel = f"cells/{file_name}"
        path = store.ref(rel)
        cell_id = file_name.removesuffix(".json")
        try:
            cell = cells.get(cell_id) or Cell(cell_id, *parse_cell_id(cell_id), planned=False)
        except ValueError as error:
            problems.append(f"{path} was skipped: its name is not a cell id, since {error}")
            continue
        cells[cell_id] = cell
        what = "that cell is reported as unreadable"
        doc = _read_json(store, rel, problems, what)
        if doc is None or not _check_format(doc, path, CELL_FORMAT, problems, what):
            cell.status = UNREADABLE
            continue
        try:
            _fill_cell(cell, doc)
        except (_Malformed, KeyError, TypeError, ValueError) as error:
            # Start from a blank cell: nothing half-read from a bad file reaches a table or a plot.
            cells[cell_id] = Cell(cell_id, cell.task, cell.model, cell.oversample, cell.init,
                                  planned=cell.planned, status=UNREADABLE)
            problems.append(f"{path} {error}; {what}.")

    extra = [c.cell_id for c in cells.values() if not c.planned]
    if extra and planned is not None:
        notes.append(f"cells/ holds results for cells that study.json does not plan, reported too: "
                     f"{', '.join(sorted(extra))}.")
    default_name = store.root.resolve().name if isinstance(store, LocalStorage) else where.partition("?")[0].rsplit("/", 1)[-1]
    name = str(info.get("name") or default_name)
    return Study(where, name, info, manifest if isinstance(manifest, dict) else {},
                 sorted(cells.values(), key=_sort_key), problems, notes)


def load_published(path: Path | str = PUBLISHED_CSV) -> dict[tuple[str, str, str, str, str], dict[str, float]]:
    """(model, oversampling, task, init, class) -> {"precision", "recall", "f1"} in percent, as printed."""
    table = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["model"], row["oversampling"], row["task"], row["init"], row["class"])
            table[key] = {stat: float(row[stat]) for stat in ("precision", "recall", "f1")}
    return table


# ----------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------

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


def original_layout_table(study: Study) -> Table:
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


def cells_table(study: Study) -> Table:
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


def published_table(study: Study, published: dict) -> Table:
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


def inter_patient_table(study: Study) -> Table:
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


def summary_rows(study: Study) -> list[list[str]]:
    rows = []
    for c in study.cells:
        if not c.ok:
            rows.append([c.cell_id, c.status, "", "", "", "", ""])
            continue
        rows.append([c.cell_id, _pm(c.main), _pm(c.val), f"{c.lr:.3g}", str(c.batch_size),
                     f"{c.trials_run} ({c.trials_stopped_early} early)",
                     _duration(c.wall_time_s).md if c.wall_time_s is not None else "—"])
    return rows


def summary_table(study_dir: "Path | str | Storage | Study", *, problems: bool = True) -> str:
    """A compact text table of a study's cells, for the launcher to print when a study ends."""
    study = study_dir if isinstance(study_dir, Study) else load_study(study_dir)
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


# ----------------------------------------------------------------------------------------------------
# Findings: sentences computed from the numbers
# ----------------------------------------------------------------------------------------------------

def _pts(value: float) -> str:
    return f"{value:+.2f}"


def _best_findings(study: Study, task: str) -> list[str]:
    name = SELECTION_NAME[task]
    ok = [c for c in study.cells if c.task == task and c.ok]
    title = "Arrhythmia" if task == "arrhythmia" else "MI"
    if not ok:
        return [f"**{title}**: no cell has a result yet."]
    best = max(ok, key=lambda c: c.main.mean)  # ties: the first cell in table order
    text = (f"**{title}**: the highest mean test {name} is {best.label} at {_pm(best.main)} % "
            f"({best.main.n} seed{'s' if best.main.n != 1 else ''}).")
    others = [c for c in ok if c is not best]
    if others:
        second = max(others, key=lambda c: c.main.mean)
        margin = best.main.mean - second.main.mean
        spreads = [s for s in (best.main.std, second.main.std) if s is not None]
        text += f" The runner-up is {second.label} at {_pm(second.main)} %, {margin:.2f} points behind"
        if spreads:
            relation = "less" if margin < max(spreads) else "more"
            text += f", {relation} than the larger seed-to-seed standard deviation of the two ({max(spreads):.2f})."
        else:
            text += "; with one seed there is no spread to compare that margin with."
    chosen = max(ok, key=lambda c: c.val.mean)
    if chosen is best:
        text += (f" It also has the highest validation {name} ({_pm(chosen.val)} %), so choosing on validation "
                 "would name the same cell.")
    else:
        text += (f" Choosing on validation {name}, the only choice a selection may make, would name "
                 f"{chosen.label} instead (validation {_pm(chosen.val)} %, test {_pm(chosen.main)} %).")
    ranking = []
    for model in dict.fromkeys(c.model for c in ok):
        mine = [c for c in ok if c.model == model]
        pick = max(mine, key=lambda c: c.val.mean)
        ranking.append((pick.main.mean, model, pick))
    ranking.sort(key=lambda item: -item[0])
    if len(ranking) > 1:
        text += (" Models ranked by the test figure of their cell with the best validation figure: "
                 + ", ".join(f"{model} {mean:.2f} ({pick.method}/{pick.init_label})"
                             for mean, model, pick in ranking) + ".")
    return [text]


def _oversampling_findings(study: Study) -> list[str]:
    lines = []
    classes = ARRHYTHMIA_CLASSES
    rare = [c for c in RARE_CLASSES if c in classes]
    common = [c for c in classes if c not in rare]
    models = list(dict.fromkeys(c.model for c in study.cells if c.task == "arrhythmia"))
    for model in models:
        base = study.cell("arrhythmia", model, "none", "scratch")
        over = study.cell("arrhythmia", model, "smote", "scratch")
        if base is None or over is None:
            continue
        if not (base.ok and over.ok):
            missing = " and ".join(c.label for c in (base, over) if not c.ok)
            lines.append(f"{model}: no comparison yet ({missing}: {NO_RESULT}).")
            continue

        def d(key: str) -> float:
            return over.test[key].mean - base.test[key].mean

        rare_text = "; ".join(f"{c} {_pts(d('f1/' + c))} (precision {_pts(d('precision/' + c))}, "
                              f"recall {_pts(d('recall/' + c))})" for c in rare)
        common_text = ", ".join(f"{c} {_pts(d('f1/' + c))}" for c in common)
        helped = [c for c in rare if d("f1/" + c) > 0]
        if len(helped) == len(rare):
            verdict = f"it helped {' and '.join(rare)}"
        elif helped:
            verdict = f"it helped {', '.join(helped)} but not {', '.join(c for c in rare if c not in helped)}"
        else:
            verdict = f"it helped neither {' nor '.join(rare)}"
        losers = [c for c in common if d("f1/" + c) < 0]
        lost = ", ".join(f"{c} ({_pts(d('f1/' + c))})" for c in losers)
        cost = f"the other classes that lost F1: {lost}" if losers else "no other class lost F1"
        lines.append(f"{model}: {over.method} against none changed test F1 of the rare classes by {rare_text}; "
                     f"of the others by {common_text}; macro F1 by {_pts(d('macro_f1'))} points. "
                     f"So {verdict}; {cost}.")
    return lines


def _transfer_findings(study: Study) -> list[str]:
    lines = []
    for c in study.cells:
        if c.task != "mi" or c.init != "scratch":
            continue
        transfer = study.cell("mi", c.model, c.oversample, "transfer")
        if transfer is None:
            continue
        if not (c.ok and transfer.ok):
            missing = " and ".join(x.init_label for x in (transfer, c) if not x.ok)
            lines.append(f"{c.model} ({c.method}): no comparison yet ({missing}: {NO_RESULT}).")
            continue
        gap = transfer.main.mean - c.main.mean
        if gap > 0:
            verdict = f"transfer ahead by {gap:.2f} points"
        elif gap < 0:
            verdict = f"scratch ahead by {-gap:.2f} points"
        else:
            verdict = "no difference"
        lines.append(f"{c.model} ({c.method}): {transfer.init_label} {_pm(transfer.main)} % against scratch "
                     f"{_pm(c.main)} % test F1 of MI: {verdict}.")
    return lines


def findings(study: Study) -> list[str]:
    """Markdown bullets, every number in them computed from the study's files."""
    seeds = sorted({c.main.n for c in study.cells if c.ok})
    out = ["Naming the best cell from test figures describes the finished results; it selects nothing. "
           "Inside every cell, epochs, learning rate and batch size were chosen on validation only."]
    for task in TASKS:
        if any(c.task == task for c in study.cells):
            out += _best_findings(study, task)
    oversampling = _oversampling_findings(study)
    if oversampling:
        out.append("**Oversampling on arrhythmia** (test F1 differences in percentage points, oversampled minus "
                   "none, mean over seeds):\n" + "\n".join(f"  - {line}" for line in oversampling))
    transfer = _transfer_findings(study)
    if transfer:
        out.append("**Transfer against scratch on MI**, per model:\n" + "\n".join(f"  - {line}" for line in transfer))
    if seeds:
        count = " or ".join(map(str, seeds))
        out.append(f"With {count} seed(s) per cell, a difference smaller than the seed-to-seed standard deviation "
                   "(table 2) is not evidence of an effect.")
    return out


# ----------------------------------------------------------------------------------------------------
# Plots (matplotlib Figure objects on the Agg canvas: no pyplot state, no display needed)
# ----------------------------------------------------------------------------------------------------

PLOT_FILES = {
    "confusion": ("confusion_arrhythmia.png", "Normalised test confusion matrix of each model's best arrhythmia "
                                              "cell (best by validation macro F1; summed over seeds)"),
    "per_class_f1": ("per_class_f1.png", "Test F1 per class, by model and oversampling (mean ± std over seeds)"),
    "val_curves": ("val_curves.png", "Validation curve of each cell's best search trial"),
    "trials_arrhythmia": ("trials_arrhythmia.png", "Search trials on arrhythmia: learning rate x batch size, "
                                                   "coloured by validation macro F1 (ring: chosen)"),
    "trials_mi": ("trials_mi.png", "Search trials on MI: learning rate x batch size, coloured by validation "
                                   "F1 of MI (ring: chosen)"),
}


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    # No "Software" text chunk: two runs of the same matplotlib give byte-identical files.
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _models(study: Study, task: str | None = None) -> list[str]:
    return list(dict.fromkeys(c.model for c in study.cells if task is None or c.task == task))


def plot_confusion(study: Study, path: Path) -> Path:
    models = _models(study, "arrhythmia") or ["(none)"]
    fig = _new_figure(3.2 * len(models), 3.8)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        cells = [c for c in study.cells if c.task == "arrhythmia" and c.model == model and c.ok]
        if not cells:
            ax.set_title(model, fontsize=10)
            ax.set_box_aspect(1)
            _empty(ax, NO_RESULT)
            continue
        best = max(cells, key=lambda c: c.val.mean)
        counts = best.confusion
        normalised = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in counts]
        ax.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
        for i, row in enumerate(normalised):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.5 else "black")
        ticks = range(len(ARRHYTHMIA_CLASSES))
        ax.set_xticks(ticks, ARRHYTHMIA_CLASSES)
        ax.set_yticks(ticks, ARRHYTHMIA_CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{model}, {best.method}\nval macro F1 {best.val.mean:.1f} %", fontsize=9)
    return _save(fig, path)


def plot_per_class_f1(study: Study, path: Path) -> Path:
    fig = _new_figure(12, 4)
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    colours = "tab10"
    from matplotlib import colormaps

    cmap = colormaps[colours]

    def bars(ax, groups, series, value, title):
        ax.set_title(title, fontsize=10)
        if not any(v is not None for _, values in series for v in values):
            _empty(ax, NO_RESULT)
            return
        # Every planned series keeps its slot and colour, so bars do not move as more cells finish.
        width = 0.8 / len(series)
        for k, (label, values) in enumerate(series):
            present = [(g, v) for g, v in enumerate(values) if v is not None]
            if present:
                ax.bar([g + (k - (len(series) - 1) / 2) * width for g, _ in present], [v.mean for _, v in present],
                       width, yerr=[v.std or 0.0 for _, v in present], label=label, color=cmap(k % cmap.N),
                       capsize=2)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel(value)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))

    arrhythmia = [c for c in study.cells if c.task == "arrhythmia"]
    bars(left, list(ARRHYTHMIA_CLASSES),
         [(f"{c.model} / {c.method}", [c.test[f"f1/{k}"] if c.ok else None for k in ARRHYTHMIA_CLASSES])
          for c in arrhythmia],
         "test F1 (%)", "Arrhythmia: F1 per class")
    mi_models = _models(study, "mi")
    variants = list(dict.fromkeys((c.oversample, c.init) for c in study.cells if c.task == "mi"))
    series = []
    for oversample, init in variants:
        values = []
        for model in mi_models:
            cell = study.cell("mi", model, oversample, init)
            values.append(cell.test["f1"] if cell is not None and cell.ok else None)
        series.append((f"{oversample} / {init}", values))
    bars(right, mi_models, series, "test F1 of MI (%)", "MI: F1 of the MI class")
    return _save(fig, path)


def plot_val_curves(study: Study, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    tasks = [t for t in TASKS if any(c.task == t for c in study.cells)] or ["arrhythmia"]
    models = _models(study) or ["(none)"]
    fig = _new_figure(3.2 * len(models), 2.8 * len(tasks))
    axes = fig.subplots(len(tasks), len(models), squeeze=False)
    for r, task in enumerate(tasks):
        for k, model in enumerate(models):
            ax = axes[r][k]
            ax.set_title(f"{task} / {model}", fontsize=9)
            cells = [c for c in study.cells if c.task == task and c.model == model and c.curve]
            if not cells:
                _empty(ax, NO_RESULT)
                continue
            for cell in cells:
                ax.plot([p["epoch"] for p in cell.curve], [100 * p["val_metric"] for p in cell.curve],
                        marker=".", label=f"{cell.method} / {cell.init}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"val {SELECTION_NAME[task]} (%)")
            ax.legend(fontsize=7)
    return _save(fig, path)


def plot_trials(study: Study, task: str, path: Path) -> Path:
    models = _models(study, task) or ["(none)"]
    variants = list(dict.fromkeys((c.oversample, c.init) for c in study.cells if c.task == task)) or [("", "")]
    fig = _new_figure(3.0 * len(models) + 1, 2.6 * len(variants))
    axes = fig.subplots(len(variants), len(models), squeeze=False)
    scores = [100 * t["val_metric"] for c in study.cells if c.task == task for t in c.trials
              if t["val_metric"] is not None]
    low, high = (min(scores), max(scores)) if scores else (0.0, 100.0)
    if low == high:
        low, high = low - 0.5, high + 0.5
    mappable, handles = None, {}
    for r, (oversample, init) in enumerate(variants):
        for k, model in enumerate(models):
            ax = axes[r][k]
            ax.set_title(f"{model} / {oversample} / {init}", fontsize=9)
            cell = study.cell(task, model, oversample, init)
            if cell is None or not cell.trials:
                _empty(ax, NO_RESULT if cell is not None else NOT_PLANNED)
                continue
            failed = [t for t in cell.trials if t["val_metric"] is None]
            if failed:
                handles.setdefault("failed", ax.scatter([t["lr"] for t in failed], [t["batch_size"] for t in failed],
                                                        marker="x", color="0.5", s=30, label="failed"))
            for early, marker in ((False, "o"), (True, "v")):
                chosen = [t for t in cell.trials if t["stopped_early"] == early and t["val_metric"] is not None]
                if chosen:
                    mappable = ax.scatter([t["lr"] for t in chosen], [t["batch_size"] for t in chosen],
                                          c=[100 * t["val_metric"] for t in chosen], cmap="viridis",
                                          vmin=low, vmax=high, marker=marker, s=30,
                                          label="stopped early" if early else "completed")
                    handles.setdefault(mappable.get_label(), mappable)
            if cell.lr is not None:
                ax.scatter([cell.lr], [cell.batch_size], s=140, facecolors="none", edgecolors="red", linewidths=1.5)
            ax.set_xscale("log")
            ax.set_yscale("log", base=2)
            sizes = sorted({t["batch_size"] for t in cell.trials})
            ax.set_yticks(sizes, [str(s) for s in sizes])
            ax.minorticks_off()
            ax.set_xlabel("learning rate")
            ax.set_ylabel("batch size")
    if mappable is not None:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=3, fontsize=8)
        fig.colorbar(mappable, ax=axes, label=f"val {SELECTION_NAME[task]} (%)", shrink=0.8)
    return _save(fig, path)


def write_plots(study: Study, out_dir: Path) -> dict[str, Path]:
    import matplotlib.style

    paths = {name: out_dir / file for name, (file, _) in PLOT_FILES.items()}
    # Defaults, not the user's matplotlibrc: the same files on every machine with this matplotlib.
    with matplotlib.style.context("default"):
        plot_confusion(study, paths["confusion"])
        plot_per_class_f1(study, paths["per_class_f1"])
        plot_val_curves(study, paths["val_curves"])
        plot_trials(study, "arrhythmia", paths["trials_arrhythmia"])
        plot_trials(study, "mi", paths["trials_mi"])
    return paths


# ----------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------

@dataclass
class ReportResult:
    study_dir: str  # the folder or URI read
    out_dir: Path
    report_path: Path
    tables: dict[str, Table]
    table_paths: dict[str, tuple[Path, Path]]  # name -> (Markdown, CSV)
    plots: dict[str, Path]
    findings: list[str]
    problems: list[str]
    study: Study  # as read, so a caller need not read it again


def _header(study: Study) -> list[str]:
    info = study.info
    data = info.get("data") if isinstance(info.get("data"), dict) else {}
    done = sum(c.ok for c in study.cells)
    waiting = sum(c.status == NO_RESULT for c in study.cells)
    bad = sum(c.status == UNREADABLE for c in study.cells)
    lines = [f"# Study report: {study.name}", "",
             f"Rebuilt by `python -m study report` from the files in `{study.directory}`; "
             "nothing was retrained. Every figure is a test-set percentage unless marked val.", ""]
    facts = []
    if info:
        facts.append(f"profile `{info.get('profile', 'not recorded')}`, base seed {info.get('seed', 'not recorded')}, "
                     f"created {info.get('created', 'not recorded')}")
    source = data.get("source", "not recorded")
    where = f" (input `{data['input']}`)" if data.get("input") else ""
    limit = f", at most {data['limit']} beats of each CSV" if data.get("limit") else ""
    own = data.get("model_limits") if isinstance(data.get("model_limits"), dict) else {}
    if limit and own:
        limit += " (" + ", ".join(f"{m}: {f'at most {n}' if n else 'every beat'}" for m, n in sorted(own.items())) + ")"
    facts.append(f"data: {source}{where}{limit}")
    fingerprints = data.get("fingerprints")
    if isinstance(fingerprints, dict) and fingerprints:
        facts.append("data fingerprints: " + ", ".join(f"{k} `{str(v)[:12]}`" for k, v in sorted(fingerprints.items())))
    facts.append(f"oversampling `smote` means: {study.smote_method}")
    if isinstance(info.get("plan"), dict):
        recipe = str(info["plan"].get("recipe", "original"))  # a study from before recipes: the original's
        how = f" ({describe_recipe(RECIPES[recipe])})" if recipe in RECIPES else ""
        facts.append(f"training recipe of every trial: {recipe}{how}")
    facts.append(f"{done} of {len(study.cells)} cells have results; {waiting} {NO_RESULT}"
                 + (f"; {bad} unreadable" if bad else ""))
    failed = [c for c in study.cells if c.ok and c.trials_failed]
    if failed:
        facts.append("search trials that failed before their first validation (counted in trials, not plotted "
                     "in colour): " + ", ".join(f"{c.cell_id} {c.trials_failed}" for c in failed))
    sources = study.manifest.get("transfer_sources") or {
        f"{c.model}-{c.oversample}": c.transfer_source for c in study.cells if c.ok and c.transfer_source}
    if isinstance(sources, dict) and sources:
        facts.append("transfer sources: " + ", ".join(f"{k} `{v}`" for k, v in sorted(sources.items())))
    lines += [f"- {fact}" for fact in facts] + [f"- {note}" for note in study.notes]
    return lines


def render_report(study: Study, tables: list[Table], found: list[str], plots: dict[str, Path]) -> str:
    lines = _header(study)
    lines += ["", "## Findings", ""] + [f"- {f}" for f in found]
    lines += ["", "## Problems", ""]
    lines += [f"- {p}" for p in study.problems] if study.problems else ["None: every result file could be read."]
    for table in tables:
        lines += ["", f"## {table.title}", "", table.notes, "",
                  f"Files: [`{table.name}.md`]({table.name}.md), [`{table.name}.csv`]({table.name}.csv)", "",
                  table.markdown().rstrip("\n")]
    if plots:
        lines += ["", "## Plots", ""]
        for name, path in plots.items():
            lines += [f"**{PLOT_FILES[name][1]}**", "", f"![{name}]({path.name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def build_report(study_dir: Path | str | Storage, out_dir: Path | str | None = None, *, plots: bool = True,
                 quiet: bool = False) -> ReportResult:
    """Write report.md, each table as .md and .csv, and the plots; return what was written and found.

    ``out_dir`` defaults to ``<study_dir>/report`` for a local study and to ``results/<name>-report`` (a
    local folder) for one read from a URI. Problems (unreadable files) are listed in the report and, unless
    ``quiet``, printed on stderr; they do not stop the rest of the report.
    """
    study = load_study(study_dir)
    out = Path(out_dir) if out_dir is not None else default_out_dir(study_dir, study.name)
    out.mkdir(parents=True, exist_ok=True)
    for problem in study.problems if not quiet else ():
        print(f"report: {problem}", file=sys.stderr)
    tables = [original_layout_table(study), cells_table(study), published_table(study, load_published())]
    if isinstance(study.info.get("plan"), dict) and study.info["plan"].get("split") == "inter":
        tables.append(inter_patient_table(study))
    table_paths = {}
    for table in tables:
        md, csv_path = out / f"{table.name}.md", out / f"{table.name}.csv"
        # Each file whole or as it was: a report rebuilt over an older one never leaves a file half-written.
        write_text(md, f"## {table.title}\n\n{table.notes}\n\n{table.markdown()}")
        write_text(csv_path, table.csv_text())
        table_paths[table.name] = (md, csv_path)
    plot_paths = write_plots(study, out) if plots else {}
    found = findings(study)
    report_path = out / "report.md"
    write_text(report_path, render_report(study, tables, found, plot_paths))
    return ReportResult(study.directory, out, report_path, {t.name: t for t in tables}, table_paths,
                        plot_paths, found, list(study.problems), study)


def default_out_dir(study_dir: Path | str | Storage, name: str) -> Path:
    """STUDY/report for a local study; results/NAME-report here for a study read from a URI."""
    if isinstance(study_dir, Storage):
        study_dir = study_dir.location
    return Path("results") / f"{name}-report" if is_uri(study_dir) else Path(study_dir) / "report"


def latest_study(root: Path | str = "results") -> Path:
    """The most recently changed study folder under ``root`` (one with study.json or cells/)."""
    root = Path(root)
    children = sorted(root.iterdir()) if root.is_dir() else []
    candidates = [p for p in children if (p / "study.json").exists() or (p / "cells").is_dir()]
    if not candidates:
        raise FileNotFoundError(f"no study folder found under {root}/; pass one, "
                                "e.g. python -m study report results/smoke.")

    def changed(p: Path) -> float:
        files = [p / "study.json", *(p / "cells").glob("*.json")]
        return max((f.stat().st_mtime for f in files if f.exists()), default=p.stat().st_mtime)

    return max(candidates, key=lambda p: (changed(p), p.name))


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", nargs="?", default=None,
                        help="study folder, e.g. results/smoke, or a URI such as s3://bucket/results/smoke "
                             "(default: the most recently changed folder under results/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: STUDY_DIR/report; results/NAME-report for a URI)")
    parser.add_argument("--no-plots", action="store_true", help="tables and findings only")


def run_report(args: argparse.Namespace) -> int:
    study_dir = Storage.at(args.study_dir if args.study_dir is not None else latest_study())
    result = build_report(study_dir, args.out, plots=not args.no_plots)
    print(summary_table(result.study, problems=False), end="")  # build_report printed them on stderr
    written = len(result.table_paths) * 2 + len(result.plots)
    print(f"report: {result.report_path} ({written} more files in {result.out_dir})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.report", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_report(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
