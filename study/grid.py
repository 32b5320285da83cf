"""The study's grid of cells and its budgets (profiles). No Ray here: the report and tests read it too."""

from dataclasses import dataclass, field

from data.constants import MODEL_NAMES, TASKS
from study.metrics import selection_key

CELL_OVERSAMPLING = ("none", "smote")  # "smote" means --smote-method: smote or smote-tomek
INITS = ("scratch", "transfer")
SMOTE_METHODS = ("smote", "smote-tomek")
BATCH_SIZES = (64, 128, 256, 512, 1024)
LR_RANGE = (1e-4, 1e-2)


@dataclass(frozen=True)
class Cell:
    """One comparison of the study: Optuna searches lr and batch size inside it."""

    task: str
    model: str
    oversample: str  # "none" or "smote"
    init: str = "scratch"  # "transfer": MI from the best arrhythmia checkpoint of the same model and oversampling

    @property
    def cell_id(self) -> str:
        return f"{self.task}-{self.model}-{self.oversample}-{self.init}"

    @property
    def source(self) -> "Cell | None":
        """The arrhythmia cell a transfer cell starts from."""
        return Cell("arrhythmia", self.model, self.oversample) if self.init == "transfer" else None

    @property
    def selection_metric(self) -> str:
        return f"val_{selection_key(self.task)}"

    @classmethod
    def from_id(cls, cell_id: str) -> "Cell":
        """The cell named ``task-model-oversampling-init``, e.g. ``mi-cnet-smote-transfer``."""
        try:
            parts = split_cell_id(cell_id)
        except ValueError:
            parts = ()
        if (len(parts) != 4 or parts[0] not in TASKS or parts[1] not in MODEL_NAMES or parts[2] not in CELL_OVERSAMPLING
                or parts[3] not in INITS or parts[0] == "arrhythmia" and parts[3] == "transfer"):
            raise ValueError(f"{cell_id!r} is not a cell of the grid (task-model-oversampling-init, "
                             "e.g. mi-cnet-smote-transfer).")
        return cls(*parts)


def split_cell_id(cell_id: str) -> tuple[str, str, str, str]:
    """``"mi-cnet-smote-transfer"`` -> ("mi", "cnet", "smote", "transfer"), whether or not the parts are the grid's
    (the report reads cells of other versions too); the oversampling may hold a hyphen."""
    parts = cell_id.split("-") if isinstance(cell_id, str) else []
    if len(parts) < 4 or not all(parts):
        raise ValueError(f"cell id {cell_id!r} is not of the form task-model-oversample-init.")
    return parts[0], parts[1], "-".join(parts[2:-1]), parts[-1]


def grid_rank(task: str, model: str, oversample: str, init: str) -> tuple:
    """The grid's order as a sort key: arrhythmia before MI (a transfer cell needs its source), then models,
    oversampling and init as the grid lists them; values the grid does not know come after its own, by name."""
    def rank(value, order):
        return (order.index(value), "") if value in order else (len(order), value)

    return rank(task, TASKS), rank(model, MODEL_NAMES), rank(oversample, CELL_OVERSAMPLING), rank(init, INITS)


def make_grid(tasks=TASKS, models=MODEL_NAMES, oversample=CELL_OVERSAMPLING, inits=INITS) -> list[Cell]:
    """The cells of the flags' values, in the grid's order (grid_rank), whatever order the flags list them in.

    Arrhythmia has no transfer cells; MI transfer cells pull in their arrhythmia source cell
    even when the arrhythmia task was not asked for, so a transfer cell never lacks its source.
    """
    for name, values, valid in (("task", tasks, TASKS), ("model", models, MODEL_NAMES),
                                ("oversampling", oversample, CELL_OVERSAMPLING), ("init", inits, INITS)):
        unknown = [value for value in values if value not in valid]
        if unknown:
            raise ValueError(f"unknown {name} {unknown[0]!r}; valid: {', '.join(valid)}.")
        if not values:
            raise ValueError(f"no {name} selected; valid: {', '.join(valid)}.")
    cells = {Cell("arrhythmia", m, o) for m in models for o in oversample} if "arrhythmia" in tasks else set()
    if "mi" in tasks:
        mi = {Cell("mi", m, o, i) for m in models for o in oversample for i in inits}
        cells |= mi | {c.source for c in mi if c.source is not None}
    return sorted(cells, key=lambda c: grid_rank(c.task, c.model, c.oversample, c.init))


@dataclass(frozen=True)
class Profile:
    """A budget: how many Optuna samples a cell, ASHA's maximum epochs, seeds of the final evaluation."""

    samples: int
    max_epochs: dict  # task -> epochs
    seeds: int
    grace_period: int  # epochs every trial gets before ASHA may stop it
    demo_rows: int  # size of the demo mitbih_train.csv used when the real CSVs are absent
    limit: int | None  # beats kept of each CSV (None: all)
    patience: int  # early stopping of the final seed runs (0: off)
    batch_sizes: tuple[int, ...] = BATCH_SIZES  # what Optuna chooses from (those up to the training split's size)
    lr_range: tuple[float, float] = LR_RANGE  # Optuna's learning rates, drawn log-uniformly
    # model -> {"max_epochs": {task: epochs}, "limit": beats or None}: a model's own budget, in place of the above
    models: dict = field(default_factory=dict)
    transfer_mode: str = "frozen"  # how a transfer cell trains the body it loads (--transfer-mode sets it)


PROFILES = {
    # Every cell on a tiny budget: proves the whole pipeline in minutes on a laptop. cnet trains long enough to
    # learn the demo data: 2,000 beats of each file (the demo's 6,000-row mitbih_train.csv cut to 2,000; its PTB
    # files, 1,000 beats, whole: at the real proportion a 2,000-row demo has 333, too few steps for an MI model to
    # leave "every beat MI" within its budget). bilstm and bigru (25 times slower a beat on a CPU) and seq (slow to
    # learn the demo data) get 1 epoch on 200 beats a file, too little to learn in (the launch's summary names the
    # cells that did not learn). The search space is cut to what 16 epochs on 1,800 beats can learn with: batch
    # 64 (a larger batch leaves too few steps an epoch), learning rates within a factor 2 of Adam's customary 1e-3
    # (below, too slow; above 3e-3 training swings from epoch to epoch). The first rung is at epoch 3, after the
    # recipe's 2 warm-up epochs: ranking trials while their rates still ramp up stopped the better one on noise.
    # Transfer fine-tunes the body: a frozen arrhythmia body gives features the demo's MI head learns little from.
    "smoke": Profile(samples=2, max_epochs={"arrhythmia": 1, "mi": 1}, seeds=1, grace_period=3,
                     demo_rows=6000, limit=200, patience=0, batch_sizes=(64,), lr_range=(5e-4, 2e-3),
                     models={"cnet": {"max_epochs": {"arrhythmia": 16, "mi": 20}, "limit": 2000}},
                     transfer_mode="finetune"),
    # The original project's budgets (80 epochs arrhythmia, 600 MI) as ASHA's maximum.
    "paper": Profile(samples=16, max_epochs={"arrhythmia": 80, "mi": 600}, seeds=3, grace_period=10,
                     demo_rows=20000, limit=None, patience=0),
}
