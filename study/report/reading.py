"""Reading a study folder for the report: one ReportedStudy, its ReportedCells, each figure a Stat over seeds.

Reads only ``study.json`` and ``cells/*.json`` (their schema is study/results.py; ``manifest.json`` too in folders
of format version 1). A result file that cannot be read becomes one sentence in ``problems``; the rest is read.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from data.constants import ARRHYTHMIA_CLASSES, MI_CLASSES
from study.grid import grid_rank, make_grid, split_cell_id
from study.metrics import harmonic_mean, selection_key
from study.storage import LocalStorage, Storage

# Format version 2 (study/results.py) and the version 1 of studies run one Tuner a cell, with manifest.json.
STUDY_FORMAT, CELL_FORMAT, VERSIONS = "ecg-study", "ecg-study-cell", (1, 2)

OK = "ok"
NO_RESULT = "no result yet"
UNREADABLE = "unreadable (see Problems)"
NOT_PLANNED = "not in this study"
NOT_RUN = "not run by original"



def full_grid() -> list[str]:
    """Every cell of the full study: 8 arrhythmia cells (scratch only) and 16 MI cells (scratch and transfer)."""
    return [cell.cell_id for cell in make_grid()]


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
class ReportedCell:
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
class ReportedStudy:
    directory: str  # the folder or URI it was read from, as given
    name: str
    info: dict  # study.json, or {} when missing or unreadable
    manifest: dict
    cells: list[ReportedCell]
    problems: list[str]
    notes: list[str]

    def cell(self, task: str, model: str, oversample: str, init: str) -> ReportedCell | None:
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


def _fill_cell(cell: ReportedCell, doc: dict) -> None:
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


def _sort_key(cell: ReportedCell):
    """The grid's order; cells of other models or variants found on disk come after the known ones."""
    return *grid_rank(cell.task, cell.model, cell.oversample, cell.init), cell.cell_id


def load_study(study_dir: Path | str | Storage) -> ReportedStudy:
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

    cells: dict[str, ReportedCell] = {}
    for cell_id in planned_ids:
        try:
            cells[cell_id] = ReportedCell(cell_id, *split_cell_id(cell_id))
        except ValueError as error:
            problems.append(f"{study_path} plans a cell that this report cannot place: {error}")

    for file_name in cell_files:
        rel = f"cells/{file_name}"
        path = store.ref(rel)
        cell_id = file_name.removesuffix(".json")
        try:
            cell = cells.get(cell_id) or ReportedCell(cell_id, *split_cell_id(cell_id), planned=False)
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
            cells[cell_id] = ReportedCell(cell_id, cell.task, cell.model, cell.oversample, cell.init,
                                  planned=cell.planned, status=UNREADABLE)
            problems.append(f"{path} {error}; {what}.")

    extra = [c.cell_id for c in cells.values() if not c.planned]
    if extra and planned is not None:
        notes.append(f"cells/ holds results for cells that study.json does not plan, reported too: "
                     f"{', '.join(sorted(extra))}.")
    default_name = store.root.resolve().name if isinstance(store, LocalStorage) else where.partition("?")[0].rsplit("/", 1)[-1]
    name = str(info.get("name") or default_name)
    return ReportedStudy(where, name, info, manifest if isinstance(manifest, dict) else {},
                 sorted(cells.values(), key=_sort_key), problems, notes)
