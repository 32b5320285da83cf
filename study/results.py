"""What a study folder holds besides Ray Tune's own files, and the one place that writes and reads it.

    RESULTS/NAME/study.json                    the study record (StudyRecord): plan, planned cells, data, failures
    RESULTS/NAME/cells/CELL.json               a finished cell (CellResult): its search trials, chosen config, seed runs
    RESULTS/NAME/checkpoints/CELL/seedK/       best.pt, final.json, metrics.csv of each seed run
    RESULTS/NAME/tune/study/                   the study's one Tune experiment; tune/rungs.json, the rung decisions

Every record is a frozen dataclass with ``to_json`` / ``from_json``. Reading is strict: a missing field or one of
the wrong type is one sentence naming the file and the field. What can be derived is not stored (a cell's best
checkpoint is its best seed's; a transfer cell's source is its source cell's result).
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from data.constants import TASK_CLASSES
from study.grid import Cell, split_cell_id
from study.metrics import MAX_INT, MetricsError, check_metrics, finite, is_fraction, selection_key
from study.storage import Storage

FORMAT_VERSION = 2  # of every file below; version 1 (one Tuner a cell, manifest.json) is read no more
STUDY_FORMAT, CELL_FORMAT = "ecg-study", "ecg-study-cell"
STUDY_FILE = "study.json"
CELLS_FOLDER = "cells"
RUNGS_FILE = "tune/rungs.json"
EXPERIMENT = "study"  # the experiment's folder under tune/


class ResultError(ValueError):
    """A study file that parses but is not a record of this version: one sentence naming the file and field."""


class OtherVersionError(ResultError):
    """A study file of this format written by another version of it; ``advice`` says what to do, and a reader with
    other advice (the report) words its own from ``version``."""

    def __init__(self, ref: str, version, advice: str):
        self.ref, self.version = ref, version
        super().__init__(f"{describe_version(ref, version)}: {advice}.")


def describe_version(ref: str, version) -> str:
    """What wrote the file ``ref`` of format version ``version``, against what this version reads."""
    if version == 1:
        return (f"{ref} was written by the version of this project that ran one Tuner a cell (format version 1); "
                f"this one reads version {FORMAT_VERSION}")
    return (f"{ref} was written by another version of this project (format version {version!r}); this one reads "
            f"version {FORMAT_VERSION}")


def cell_file(cell_id: str) -> str:
    return f"{CELLS_FOLDER}/{cell_id}.json"


def seed_folder(cell_id: str, seed: int) -> str:
    return f"checkpoints/{cell_id}/seed{seed}"


# ---------------------------------------------------------------------------------------------------------
# Strict reading of dataclasses from JSON.


def _check(value, kind, where: str):
    """``value`` as the annotated ``kind`` (dataclass, tuple[X, ...], X | None, dict, float, ...), or raise."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check(value, inner, where)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ResultError(f"field {where or 'the top level'} is {type(value).__name__}, expected an object")
        return _from_dict(kind, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ResultError(f"field {where} is {type(value).__name__}, expected a list")
        return tuple(_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if kind is float:
        ok = finite(value)
        value = float(value) if ok else value
    elif kind is dict:
        ok = isinstance(value, dict)
    else:  # int, str, bool
        ok = isinstance(value, kind) and not (kind is int and (isinstance(value, bool) or abs(value) > MAX_INT))
    if not ok:
        expected = {float: "a finite number", int: "a whole number"}.get(kind, getattr(kind, "__name__", kind))
        raise ResultError(f"field {where} is {value!r}, expected {expected}")
    return value


def _from_dict(cls, doc: dict, where: str = ""):
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        name = f"{where}.{f.name}" if where else f.name
        if f.name not in doc and f.default is not dataclasses.MISSING:
            values[f.name] = f.default  # a field added since the file was written, without changing its meaning
            continue
        if f.name not in doc:
            raise ResultError(f"field {name} is missing")
        values[f.name] = _check(doc[f.name], hints[f.name], name)
    return cls(**values)


def _to_json(record) -> dict:
    return dataclasses.asdict(record)  # tuples become lists in JSON


class _Record:
    """A file's top-level record: format and version around the dataclass's fields."""

    FORMAT: typing.ClassVar[str]

    def to_json(self) -> dict:
        return {"format": self.FORMAT, "version": FORMAT_VERSION, **_to_json(self)}

    @classmethod
    def from_json(cls, doc, ref: str):
        """The record in ``doc`` (the parsed file ``ref``); a file of another format or version, a missing or a
        mistyped field raise ResultError naming ``ref``."""
        if not isinstance(doc, dict):
            raise ResultError(f"{ref} holds a JSON {type(doc).__name__}, not the object of an {cls.FORMAT} file.")
        if doc.get("format") != cls.FORMAT:
            raise ResultError(f"{ref} is not an {cls.FORMAT} file (its format field says {doc.get('format')!r}).")
        if doc.get("version") != FORMAT_VERSION:
            raise OtherVersionError(ref, doc.get("version"), "continue it with that version, or use another --name")
        try:
            record = _from_dict(cls, {k: v for k, v in doc.items() if k not in ("format", "version")})
            record.check()
            return record
        except ResultError as error:
            raise ResultError(f"{ref}: {error}.") from None

    def check(self) -> None:
        """What the field types cannot say (a record's figures are fractions, ...): raise ResultError."""


def _fraction(value, where: str) -> None:
    if not is_fraction(value):
        raise ResultError(f"field {where} is {value!r}, expected a fraction between 0 and 1")


def _number(values: dict, key: str, where: str, kind) -> None:
    value = values.get(key)
    if key not in values:
        raise ResultError(f"field {where}.{key} is missing")
    if not finite(value) or value <= 0 or (kind is int and (value != int(value) or value > MAX_INT)):
        raise ResultError(f"field {where}.{key} is {value!r}, expected a positive "
                          + ("whole number" if kind is int else "number"))


# ---------------------------------------------------------------------------------------------------------
# The records.


@dataclass(frozen=True)
class Whereabouts:
    """When a trial ran (its first attempt's start to its last report, unix seconds) and where: the nodes' IPs,
    and their Ray node ids in the order the trial ran on them (a retry elsewhere adds one at the end)."""

    started_at: float | None
    finished_at: float | None
    nodes: tuple[str, ...]
    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class SearchTrial:
    """One Optuna sample of a cell: validation only, the test split untouched."""

    trial_id: str
    lr: float
    batch_size: int
    val_metric: float | None  # the best epoch's; None when it failed before its first validation
    epochs: int
    stopped_early: bool  # by successive halving
    failed: bool
    error: str | None
    ran: Whereabouts


@dataclass(frozen=True)
class CurvePoint:
    epoch: int
    train_loss: float
    val_metric: float


@dataclass(frozen=True)
class SeedRun:
    """The chosen configuration trained with one seed; its best epoch (on validation) evaluated on test once."""

    seed: int
    epochs_run: int
    best_epoch: int
    val: dict
    test: dict
    checkpoint: str  # the best.pt in checkpoints/CELL/seedK/, as a path or URI other processes open
    ran: Whereabouts
    # The search trial whose epochs these are (the same configuration and seed: this run evaluated its best
    # epoch on test and trained nothing); None where this run trained them
    trained_by: str | None = None


@dataclass(frozen=True)
class CellInfo:
    task: str
    model: str
    oversample: str  # "none" or "smote"
    smote_method: str | None  # what "smote" ran
    init: str  # "scratch" or "transfer"
    transfer_mode: str | None
    transfer_source: str | None  # the checkpoint a transfer cell started from: its source cell's best_checkpoint


@dataclass(frozen=True)
class CellResult(_Record):
    FORMAT: typing.ClassVar[str] = CELL_FORMAT

    study: str
    cell_id: str
    cell: CellInfo
    selection_metric: str
    best_config: dict  # {"lr", "batch_size"}: of the search trial that did not fail with the best validation metric
    trials: tuple[SearchTrial, ...]  # in the order Optuna proposed them
    best_trial_curve: tuple[CurvePoint, ...]
    seeds: tuple[SeedRun, ...]  # by seed
    data_fingerprint: str
    wall_time_s: float  # from the cell's first trial's start to its result
    started: str
    finished: str

    def check(self) -> None:
        """Every figure a reader averages or plots is a fraction, the metrics of each seed's test split are
        complete for the cell's task, the chosen configuration is a learning rate and a batch size."""
        if self.cell.task not in TASK_CLASSES:
            raise ResultError(f"field cell.task is {self.cell.task!r}, expected one of {', '.join(TASK_CLASSES)}")
        for name in ("trials", "seeds"):  # a result is written once its last seed run ends: never without them
            if not getattr(self, name):
                raise ResultError(f"field {name} is empty, expected the cell's "
                                  + ("search trials" if name == "trials" else "seed runs"))
        _number(self.best_config, "lr", "best_config", float)
        _number(self.best_config, "batch_size", "best_config", int)
        for i, trial in enumerate(self.trials):
            if trial.val_metric is not None:
                _fraction(trial.val_metric, f"trials[{i}].val_metric")
        for i, point in enumerate(self.best_trial_curve):
            _fraction(point.val_metric, f"best_trial_curve[{i}].val_metric")
        for i, seed in enumerate(self.seeds):
            key = selection_key(self.cell.task)
            if key not in seed.val:
                raise ResultError(f"field seeds[{i}].val.{key} is missing")
            _fraction(seed.val[key], f"seeds[{i}].val.{key}")
            try:
                check_metrics(seed.test, self.cell.task, f"seeds[{i}].test")
            except MetricsError as error:
                raise ResultError(str(error)) from None

    @property
    def trials_stopped_early(self) -> int:
        return sum(t.stopped_early for t in self.trials)

    @property
    def best_seed(self) -> SeedRun:
        """The seed run with the best validation metric (chosen on validation, like everything else)."""
        key = selection_key(self.cell.task)
        return max(self.seeds, key=lambda s: s.val[key])

    @property
    def best_checkpoint(self) -> str:
        return self.best_seed.checkpoint

    def test_mean(self) -> float:
        key = selection_key(self.cell.task)
        return sum(s.test[key] for s in self.seeds) / len(self.seeds)


@dataclass(frozen=True)
class CellFailure:
    """A cell that could not finish in the last launch: its first error, or the failed cell it waits on."""

    cell_id: str
    error: str
    blocked_by: str | None = None


@dataclass(frozen=True)
class StudyRecord(_Record):
    FORMAT: typing.ClassVar[str] = STUDY_FORMAT

    name: str
    profile: str
    smote_method: str
    cells: tuple[str, ...]  # planned, in grid order
    seed: int
    data: dict  # source, input, limit, sources (task -> where from), fingerprints ("task-method" -> fingerprint)
    created: str
    plan: dict  # launch.StudyPlan as JSON: what decides what the study computes
    failures: tuple[CellFailure, ...] = field(default=())

    def check(self) -> None:
        """Its cells are of the tasks this version knows (a report places each by its task); the data record's maps,
        which a relaunch merges and compares: what each was loaded from, its fingerprints, and the sha256 of each
        CSV (by task)."""
        for i, cell_id in enumerate(self.cells):
            try:
                task = split_cell_id(cell_id)[0]
            except ValueError:  # said by its reader, with what to do (the launch's check_same_plan, the report)
                continue
            if task not in TASK_CLASSES:
                raise ResultError(f"field cells[{i}] is {cell_id!r}, of the task {task!r}; expected one of "
                                  f"{', '.join(TASK_CLASSES)}")
        for key in ("sources", "fingerprints", "files"):
            value = self.data.get(key, {})
            if not isinstance(value, dict):
                raise ResultError(f"field data.{key} is {type(value).__name__}, expected an object")
            for name, item in value.items():
                strings = item.values() if key == "files" and isinstance(item, dict) else [item]
                if (key == "files" and not isinstance(item, dict)) or not all(isinstance(v, str) for v in strings):
                    raise ResultError(f"field data.{key}.{name} is {item!r}, expected "
                                      + ("an object of file names and their sha256" if key == "files" else "text"))


# ---------------------------------------------------------------------------------------------------------
# The folder.


class StudyFolder:
    """A study folder (local, or a URI such as s3://bucket/results/NAME) read and written through its records."""

    def __init__(self, store: Storage):
        self.store = store

    def read_study(self) -> StudyRecord | None:
        doc = self.store.read_json(STUDY_FILE)
        return None if doc is None else StudyRecord.from_json(doc, self.store.ref(STUDY_FILE))

    def write_study(self, record: StudyRecord) -> None:
        self.store.write_json(STUDY_FILE, record.to_json())

    def read_cell(self, cell: Cell | str) -> CellResult | None:
        rel = cell_file(cell if isinstance(cell, str) else cell.cell_id)
        doc = self.store.read_json(rel)
        return None if doc is None else CellResult.from_json(doc, self.store.ref(rel))

    def write_cell(self, result: CellResult) -> None:
        self.store.write_json(cell_file(result.cell_id), result.to_json())
