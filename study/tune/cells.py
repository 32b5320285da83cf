"""What the study searcher (study/tune/searcher.py) knows of each cell, and of the launch it serves.

    CellSpec      what to propose for a cell: its trial config, samples, seeds, batch sizes, Optuna seed
    OptunaCell    one cell's seeded TPE, and its replay after a restore
    CellProgress  where a cell stands in this launch
    Launch        what the driver attaches (``attach``): the cells with work to do, the limits, the records

The scheduler (study/tune/scheduler.py) reads the attached launch too, so neither keeps a path of the study
folder in the pickle Tune restores them from.
"""

import hashlib
import math
from dataclasses import dataclass, field

import optuna
from ray.tune.experiment import Trial

from study.grid import LR_RANGE

_LAUNCH: list = [None]  # what the driver of this process attached (a process drives one study at a time)
# The metric told to Optuna: the validation selection metric of a search trial's last epoch. Not Tune's ``metric``:
# Tune would then require it in every result, and a seed run's last report carries its final files instead.
METRIC = "val_metric"


def proposal_number(experiment_tag: str) -> float:
    """The order the searcher proposed a trial in: Tune tags trials "N_<config>", N counting from 1.
    (Trial IDs are random; Tune re-adds restored trials newest first.)"""
    number = str(experiment_tag).partition("_")[0]
    return int(number) if number.isdigit() else math.inf


def proposal_order(trial: Trial) -> tuple:
    return proposal_number(trial.experiment_tag), trial.trial_id


def cell_seed(study_seed: int, cell_id: str) -> int:
    """The seed of a cell's Optuna sampler: the same for the same study seed and cell, whatever else runs."""
    return int.from_bytes(hashlib.sha256(f"{study_seed}:{cell_id}".encode()).digest()[:4], "big")


@dataclass(frozen=True)
class CellSpec:
    """What the searcher proposes for a cell: ``trial`` is its TrialConfig as a dict, whose ``init`` a transfer
    cell takes from its source cell's result."""

    cell_id: str
    data: str  # the key of its data set (study/tune/trainable.py)
    trial: dict
    source: str | None
    samples: int
    seeds: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    optuna_seed: int
    train_beats: int  # what an epoch costs, for the estimate of the time left
    lr_range: tuple[float, float] = LR_RANGE

    def planned_work(self, grace_period: int) -> int:
        """Beats to train, about: the search as successive halving by 2 cuts it, then the seed runs."""
        epochs, alive, done = 0.0, float(self.samples), 0
        rung = grace_period
        max_t = int(self.trial["epochs"])
        while rung < max_t:
            epochs += alive * (rung - done)
            alive, done, rung = max(1.0, alive / 2), rung, rung * 2
        epochs += alive * (max_t - done) + len(self.seeds) * max_t
        return int(epochs * self.train_beats)


@dataclass
class Launch:
    """What the driver of this launch attaches: the cells with work to do (in grid order), the limits, where
    results go (a study/tune/records.py Recorder), and ``notify(cell_id, line)`` for the console."""

    cells: list[CellSpec]
    done: dict  # cell_id -> CellResult of the cells finished before (the sources of transfer cells)
    recorder: object
    notify: object
    max_concurrent: int
    max_cells: int | None = None
    grace_period: int = 1
    rungs: tuple | None = None  # (Storage, file) of the scheduler's rung decisions
    searcher: object = None  # the StudySearch Tune runs (restored from its pickle after a kill)
    # A write of the study's own that failed (a full disk, a read-only folder): the run ends with it. Tune catches
    # what its callbacks raise, so it is kept here and raised from the next call whose exception ends Tune's loop.
    fatal: BaseException | None = None

    def raise_fatal(self) -> None:
        if self.fatal is not None:
            raise self.fatal


class OptunaCell:
    """One cell's TPE, and its replay after a restore: a fresh study with the same seed is asked again, once per
    restored trial in proposal order, then told the finished trials' values. While fewer than 10 trials have
    finished, TPE draws from its seeded generator, so the replay proposes exactly what the first run did. A
    replayed ask that draws something else (later proposals depend on which trials had finished) is told as
    failed (TPE ignores those) and the restored trial's own values are entered in its place."""

    def __init__(self, batch_sizes: tuple[int, ...], seed: int, lr_range: tuple[float, float] = LR_RANGE):
        self.space = {"lr": optuna.distributions.FloatDistribution(*lr_range, log=True),
                      "batch_size": optuna.distributions.CategoricalDistribution(list(batch_sizes))}
        self.study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        self.asked: dict[str, optuna.trial.Trial] = {}

    def ask(self, trial_id: str, wanted: dict | None = None) -> dict:
        asked = self.study.ask(fixed_distributions=self.space)
        if wanted is not None and asked.params != wanted:
            self.study.tell(asked, state=optuna.trial.TrialState.FAIL)  # a draw the first run did not make
            self.study.enqueue_trial(wanted)
            asked = self.study.ask(fixed_distributions=self.space)
        self.asked[trial_id] = asked
        return dict(asked.params)

    def tell(self, trial_id: str, value, error: bool) -> None:
        """A trial that failed, or whose figure is not a number, is told as failed whatever it reported before (TPE
        learns nothing from it); one that reported no figure was pruned."""
        asked = self.asked.pop(trial_id)
        if error or (isinstance(value, float) and math.isnan(value)):
            self.study.tell(asked, state=optuna.trial.TrialState.FAIL)
        elif value is None:
            self.study.tell(asked, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(asked, float(value))


@dataclass
class CellProgress:
    """Where a cell stands in this launch: its current search trials and seed runs (Tune trial ids)."""

    spec: CellSpec
    optuna: OptunaCell
    search: list[str] = field(default_factory=list)  # in proposal order
    ended: set[str] = field(default_factory=set)  # search trials and seed runs that finished
    errors: dict[str, str] = field(default_factory=dict)  # trial id -> why it failed (Tune marks it ERROR after)
    seeds: dict[int, str] = field(default_factory=dict)  # seed -> trial id
    failed_seeds: dict[int, str] = field(default_factory=dict)  # seed -> its error, until it is proposed again
    resumed: set[str] = field(default_factory=set)  # seed runs an earlier launch left unfinished
    chosen: dict | None = None  # {"lr", "batch_size"}
    # (seed, trial id, its last checkpoint's path) of the chosen search trial where it trained every epoch: it
    # is the seed run of its seed (the same config), which then only evaluates its best epoch on test
    trained: tuple[int, str, str] | None = None
    searched: list | None = None  # the search trials' records (records.SearchTrial), once its search has ended
    init: str | None = None  # a transfer cell's source checkpoint, once its source's result is written
    done: bool = False
    failure: str | None = None
    blocked_by: str | None = None

    @property
    def started(self) -> bool:
        return bool(self.search)

    @property
    def waiting(self) -> bool:
        return self.spec.source is not None and self.init is None

    @property
    def over(self) -> bool:
        return self.done or self.failure is not None or self.blocked_by is not None


def attach(launch: Launch) -> None:
    """Give the study searcher and scheduler of this process this launch's cells, limits, console and records."""
    _LAUNCH[0] = launch


def current_launch() -> Launch:
    if _LAUNCH[0] is None:
        raise RuntimeError("no launch attached: study/launch.py attaches one before Tune runs")
    return _LAUNCH[0]
