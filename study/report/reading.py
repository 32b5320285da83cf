"""Reading a study folder for the report: one ReportedStudy, its ReportedCells, each figure a Stat over seeds.

Reads only ``study.json`` and ``cells/*.json``, through study/results.py (their one reader). A file that cannot be
read, or is not a record of this version, becomes one sentence in ``problems``; the rest is read.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from data.constants import TASK_CLASSES
from study.grid import Cell, grid_rank, make_grid, split_cell_id
from study.metrics import harmonic_mean, selection_key
from study.report.frames import StudyFrames, build_frames, method_of
from study.results import (CELLS_FOLDER, STUDY_FILE, CellResult, OtherVersionError, ResultError, StudyRecord,
                           cell_file, describe_version)
from study.storage import LocalStorage, Storage

OK = "ok"
NO_RESULT = "no result yet"
UNREADABLE = "unreadable (see Problems)"
NOT_PLANNED = "not in this study"


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
    result: CellResult | None = None  # the cell file as read (study/report/frames.py builds its rows from it)

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
        return method_of(self.oversample, self.smote_method)

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
    record: StudyRecord | None  # study.json; None when missing or unreadable
    cells: list[ReportedCell]
    problems: list[str]
    notes: list[str]
    frames: StudyFrames  # what the tables are built from

    def cell(self, task: str, model: str, oversample: str, init: str) -> ReportedCell | None:
        return self._by_id.get(Cell(task, model, oversample, init).cell_id)

    def __post_init__(self):
        self._by_id = {c.cell_id: c for c in self.cells}

    @property
    def smote_method(self) -> str:
        """Which method "smote" meant, from study.json and the cell files; "mixed: ..." if they disagree."""
        methods = {c.smote_method for c in self.cells if c.ok and c.oversample != "none" and c.smote_method}
        if self.record is not None:
            methods.add(self.record.smote_method)
        if not methods:
            return "not recorded"
        return methods.pop() if len(methods) == 1 else "mixed: " + ", ".join(sorted(methods))


def _read(store: Storage, rel: str, kind, problems: list[str], what: str):
    """The record ``kind`` (StudyRecord or CellResult) in ``rel``, or None with one sentence in ``problems``."""
    ref = store.ref(rel)
    try:
        doc = json.loads(store.read_text(rel))
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{ref} could not be read ({error.__class__.__name__}: {error}); {what}.")
        return None
    except json.JSONDecodeError as error:
        problems.append(f"{ref} is not valid JSON ({error}); {what}.")
        return None
    except ValueError as error:  # a folder where the file belongs
        problems.append(f"{str(error).rstrip('.')}; {what}.")
        return None
    try:
        return kind.from_json(doc, ref)
    except OtherVersionError as error:
        problems.append(f"{describe_version(error.ref, error.version)}: rebuild its report with the version that "
                        f"wrote it, or run the study again; {what}.")
        return None
    except ResultError as error:
        problems.append(f"{str(error).rstrip('.')}; {what}.")
        return None


def _check_identity(cell: ReportedCell, result: CellResult) -> None:
    for key in ("task", "model", "oversample", "init"):
        if getattr(result.cell, key) != getattr(cell, key):
            raise ValueError(f"says cell.{key} is {getattr(result.cell, key)!r}, but its name says "
                             f"{getattr(cell, key)!r}")


def _fill_cell(cell: ReportedCell, result: CellResult, frames: StudyFrames) -> None:
    """The figures of ``cell`` from its rows of ``frames`` (percentages, Stat over seeds); what the cell is (its
    oversampling method, transfer mode and source) and its best trial's curve (for a plot) from its result."""
    info = result.cell
    cell.smote_method = info.smote_method
    cell.transfer_mode = info.transfer_mode if cell.init == "transfer" else None
    cell.transfer_source = info.transfer_source if cell.init == "transfer" else None
    cell.curve = [{"epoch": p.epoch, "val_metric": p.val_metric} for p in result.best_trial_curve]
    cell.result = result
    row = frames.cells[frames.cells.cell_id == cell.cell_id].iloc[0]
    cell.selection_metric = result.selection_metric
    cell.lr, cell.batch_size = float(row.lr), int(row.batch_size)
    trials = frames.trials[frames.trials.cell_id == cell.cell_id]
    cell.trials = [{"lr": float(t.lr), "batch_size": int(t.batch_size),  # val_metric None: failed early
                    "val_metric": None if math.isnan(t.val_metric) else float(t.val_metric),
                    "stopped_early": bool(t.stopped_early)} for t in trials.itertuples()]
    cell.trials_run, cell.trials_stopped_early = int(row.trials), int(row.trials_stopped_early)
    cell.trials_failed = int(row.trials_failed)
    cell.wall_time_s = float(row.wall_time_s)
    seeds = frames.seeds[frames.seeds.cell_id == cell.cell_id]
    if seeds.empty:
        return  # the search ran but no seed has a test result yet: still "no result yet"

    def column(name: str) -> list[float] | None:
        values = [float(v) for v in seeds[f"test_{name}"]] if f"test_{name}" in seeds else []
        return None if not values or any(math.isnan(v) for v in values) else values

    names = ["accuracy", "macro_precision", "macro_recall", "macro_f1"]
    names += [f"{stat}_{c}" for c in TASK_CLASSES[cell.task] for stat in ("precision", "recall", "f1")]
    names += ["precision", "recall", "f1", "auroc"] if cell.task == "mi" else []
    columns = {name: column(name) for name in names}
    # The original project's "overall" F1: the harmonic mean of macro precision and macro recall.
    columns["overall_f1"] = [harmonic_mean(p, r) for p, r in zip(columns["macro_precision"], columns["macro_recall"])]
    # A figure some seeds lack (AUROC is None when a split holds one class) is not averaged at all.
    keys = {f"{stat}_{c}": f"{stat}/{c}" for c in TASK_CLASSES[cell.task] for stat in ("precision", "recall", "f1")}
    cell.test = {keys.get(name, name): Stat(tuple(100 * v for v in values))
                 for name, values in columns.items() if values is not None}
    cell.val = Stat(tuple(100 * float(v) for v in seeds.val))
    cell.epochs_run = tuple(int(v) for v in seeds.epochs_run)
    cell.best_epochs = tuple(int(v) for v in seeds.best_epoch)
    matrices = list(seeds.test_confusion_matrix)
    size = len(matrices[0])
    cell.confusion = [[sum(m[i][j] for m in matrices) for j in range(size)] for i in range(size)]
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
    cell_files = store.list(CELLS_FOLDER, ".json")
    has_info = store.exists(STUDY_FILE)
    if not has_info and not cell_files and not store.exists(CELLS_FOLDER):
        raise FileNotFoundError(f"{where} has neither study.json nor a cells/ folder, so it is not a study "
                                "folder; pass one such as results/smoke.")
    problems: list[str] = []
    notes: list[str] = []
    if isinstance(store, LocalStorage) and (store.root / CELLS_FOLDER).is_file():
        problems.append(f"{store.ref(CELLS_FOLDER)} is a file, not the folder of the cells' results; no cell's "
                        "result could be read.")

    record = None
    study_path = store.ref(STUDY_FILE)
    if has_info:
        record = _read(store, STUDY_FILE, StudyRecord, problems, "the planned cells are taken to be the full grid")
    else:
        notes.append(f"{study_path} does not exist, so the planned cells are taken to be the full grid "
                     f"({len(full_grid())} cells).")
    planned = list(record.cells) if record is not None else None
    planned_ids = planned if planned is not None else full_grid()

    cells: dict[str, ReportedCell] = {}
    for cell_id in planned_ids:
        try:
            cells[cell_id] = ReportedCell(cell_id, *split_cell_id(cell_id))
        except ValueError as error:
            problems.append(f"{study_path} plans a cell that this report cannot place: {error}")

    results: dict[str, CellResult] = {}
    for file_name in cell_files:
        cell_id = file_name.removesuffix(".json")
        rel = cell_file(cell_id)
        path = store.ref(rel)
        try:
            cell = cells.get(cell_id) or ReportedCell(cell_id, *split_cell_id(cell_id), planned=False)
        except ValueError as error:
            problems.append(f"{path} was skipped: its name is not a cell id, since {error}")
            continue
        cells[cell_id] = cell
        what = "that cell is reported as unreadable"
        result = _read(store, rel, CellResult, problems, what)
        if result is None:
            cell.status = UNREADABLE
            continue
        try:
            _check_identity(cell, result)
        except ValueError as error:
            cell.status = UNREADABLE
            problems.append(f"{path} {error}; {what}.")
            continue
        results[cell_id] = result
    ordered = sorted(cells.values(), key=_sort_key)
    frames = build_frames([(c.cell_id, c.task, c.model, c.oversample, c.init, c.status, results.get(c.cell_id))
                           for c in ordered], tuple(problems))
    for cell in ordered:
        if cell.cell_id in results:
            _fill_cell(cell, results[cell.cell_id], frames)

    extra = [c.cell_id for c in cells.values() if not c.planned]
    if extra and planned is not None:
        notes.append(f"cells/ holds results for cells that study.json does not plan, reported too: "
                     f"{', '.join(sorted(extra))}.")
    default_name = (store.root.resolve().name if isinstance(store, LocalStorage)
                    else where.partition("?")[0].rsplit("/", 1)[-1])
    name = record.name if record is not None else default_name
    return ReportedStudy(where, name, record, ordered, problems, notes, frames)


def study_frames(study_dir: Path | str | Storage) -> StudyFrames:
    """A study folder (local or a URI) as pandas frames of its cells, seed runs and search trials (frames.py)."""
    return load_study(study_dir).frames
