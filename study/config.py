"""One frozen dataclass for a trial's configuration, built once at the edge (CLI or Ray Tune) and passed down."""

import dataclasses
import math
from dataclasses import dataclass

from data.constants import MIN_LIMIT, OVERSAMPLING, TASKS, TRANSFER_MODES
from study.lock import TRIAL_LOCK

# What a trial's folder holds (study/trial_folder.py owns them; see its docstring). Here, so that what only names them
# (the study's Tune parts, a stand-in trainable) need not import torch.
CONFIG_FILE, EPOCHS_FILE, FINAL_FILE = "config.json", "metrics.csv", "final.json"
BEST_FILE, LAST_FILE, SPLITS_FILE = "best.pt", "last.pt", "splits.npz"
TRIAL_FILES = (CONFIG_FILE, EPOCHS_FILE, FINAL_FILE, BEST_FILE, LAST_FILE, SPLITS_FILE, TRIAL_LOCK)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("adamw", "adam")  # adamw: decoupled weight decay (Loshchilov & Hutter); adam: the original's
SCHEDULES = ("cosine", "constant")  # the learning rate an epoch: see lr_factor

# A recipe is a named set of the optimizer fields below. "default" was chosen on validation macro F1 (the
# PhysioNet intra build, bench/RESULTS.md "quality"); "original" is the original project's plain Adam at one rate.
RECIPES = {
    "default": {"optimizer": "adamw", "weight_decay": 1e-2, "schedule": "cosine", "warmup_epochs": 2, "ema_decay": 0.0},
    "original": {"optimizer": "adam", "weight_decay": 0.0, "schedule": "constant", "warmup_epochs": 0, "ema_decay": 0.0},
}
# Fields a config written before they existed lacks, and what it trained with: read so, and left out of to_dict at
# that value, so that every config, study and finished trial made before them reads and compares the same.
ADDED_FIELDS = {"rhythm": False, "ema_decay": 0.0}


@dataclass(frozen=True)
class TrialConfig:
    """Everything that decides what a trial computes. Defaults are the original project's where it had them."""

    task: str = "arrhythmia"
    model: str = "cnet"
    oversample: str = "none"
    init: str = "scratch"  # "scratch" or the path of a checkpoint (an arrhythmia one for MI transfer)
    transfer_mode: str = "frozen"  # with an MI init: body frozen (the original) or trained at finetune_lr_scale * lr
    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 256
    seed: int = 0  # weights, batch order; the data split has its own seed (data_seed)
    data_seed: int = 0
    val_fraction: float = 0.1
    limit: int | None = None  # keep at most this many beats of each source file (debugging runs)
    rhythm: bool = False  # each beat's RR-interval features (data/rhythm.py) beside its samples: a PhysioNet build
    patience: int = 0  # epochs without a better validation metric before stopping; 0 = never stop early
    finetune_lr_scale: float = 0.1
    optimizer: str = RECIPES["default"]["optimizer"]
    weight_decay: float = RECIPES["default"]["weight_decay"]  # AdamW's decoupled decay; adam: L2 in the gradient
    schedule: str = RECIPES["default"]["schedule"]
    warmup_epochs: int = RECIPES["default"]["warmup_epochs"]  # cosine: epochs of linear warm-up first
    ema_decay: float = RECIPES["default"]["ema_decay"]  # > 0: validate an average of the weights (weight_average.py)
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast where the device computes bf16 natively, else fp32
    eval_batch_size: int = 4096

    def __post_init__(self):
        from models import list_models  # local: models imports torch, config should stay cheap to import

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        def one_of(name: str, value, valid) -> None:
            check(value in valid, f"{name} must be one of {', '.join(map(str, valid))}; got {value!r}.")

        one_of("task", self.task, TASKS)
        one_of("model", self.model, list_models())
        one_of("oversample", self.oversample, OVERSAMPLING)
        one_of("transfer_mode", self.transfer_mode, TRANSFER_MODES)
        one_of("device", self.device, DEVICES)
        one_of("precision", self.precision, PRECISIONS)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("schedule", self.schedule, SCHEDULES)
        check(isinstance(self.init, str) and self.init != "", "init must be 'scratch' or a checkpoint path.")
        check(isinstance(self.rhythm, bool), f"rhythm must be true or false; got {self.rhythm!r}.")
        for name in ("epochs", "batch_size", "eval_batch_size", "seed", "data_seed", "patience", "warmup_epochs"):
            check(isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool),
                  f"{name} must be an integer; got {getattr(self, name)!r}.")
        check(self.epochs >= 1, f"epochs must be at least 1; got {self.epochs}.")
        check(self.batch_size >= 1, f"batch_size must be at least 1; got {self.batch_size}.")
        check(self.eval_batch_size >= 1, f"eval_batch_size must be at least 1; got {self.eval_batch_size}.")
        check(self.patience >= 0, f"patience must be 0 (off) or more; got {self.patience}.")
        check(self.warmup_epochs >= 0, f"warmup_epochs must be 0 (none) or more; got {self.warmup_epochs}.")
        check(isinstance(self.ema_decay, (int, float)) and not isinstance(self.ema_decay, bool)
              and 0 <= self.ema_decay < 1, f"ema_decay must be 0 (off) or between 0 and 1; got {self.ema_decay!r}.")
        check(isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < float("inf"),
              f"weight_decay must be a number of at least 0; got {self.weight_decay!r}.")
        check(self.seed >= 0 and self.data_seed >= 0, "seeds must be non-negative integers.")
        check(isinstance(self.lr, (int, float)) and 0 < self.lr < float("inf"),
              f"lr must be a positive number; got {self.lr!r}.")
        check(0 < self.finetune_lr_scale <= 1, f"finetune_lr_scale must be in (0, 1]; got {self.finetune_lr_scale}.")
        check(0 < self.val_fraction < 1, f"val_fraction must be between 0 and 1; got {self.val_fraction}.")
        check(self.limit is None or (isinstance(self.limit, int) and self.limit >= MIN_LIMIT),
              f"limit must be at least {MIN_LIMIT} beats; got {self.limit!r}.")

    @property
    def is_transfer(self) -> bool:
        return self.init != "scratch"

    @property
    def recipe(self) -> str:
        """The recipe's name where the optimizer fields are one of RECIPES, else a description of them."""
        fields = {name: getattr(self, name) for name in RECIPES["default"]}
        if self.schedule == "constant":
            fields["warmup_epochs"] = 0  # a constant rate has no warm-up
        for name, recipe in RECIPES.items():
            if fields == recipe:
                return name
        return describe_recipe(fields)

    def lr_factor(self, epoch: int) -> float:
        """The share of ``lr`` that epoch ``epoch`` (1-based) trains at. constant: 1. cosine: a linear warm-up over
        ``warmup_epochs`` (epoch e at e / (warmup + 1)), then half a cosine from 1 at the first epoch after it down
        to (nearly) 0 after the last; it depends on ``epochs``, so a cosine trial is continued only at its length."""
        if self.schedule == "constant":
            return 1.0
        warmup = min(self.warmup_epochs, self.epochs - 1)
        if epoch <= warmup:
            return epoch / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - warmup - 1) / (self.epochs - warmup)))

    def to_dict(self) -> dict:
        """Every field; those of ADDED_FIELDS only where they differ from what configs before them trained with, so
        such a config reads and compares the same (a finished trial or study is recognised, not trained again)."""
        values = dataclasses.asdict(self)
        for name, before in ADDED_FIELDS.items():
            if values[name] == before:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrialConfig":
        """Build from a plain dict; an unknown key fails loudly rather than being ignored. A config written before
        the recipe fields existed trained with the original's plain Adam, and is read so."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown trial config keys: {', '.join(unknown)}; "
                             f"valid keys: {', '.join(sorted(known))}.")
        if "optimizer" not in values:
            values = {**RECIPES["original"], **values}
        return cls(**{**ADDED_FIELDS, **values})

    def replace(self, **changes) -> "TrialConfig":
        return dataclasses.replace(self, **changes)


def describe_recipe(fields: dict) -> str:
    """The optimizer fields in words: "AdamW (weight decay 0.01), cosine after 2 warm-up epochs"; with an average of
    the weights, ", weights averaged (EMA 0.999)" after it."""
    optimizer = {"adamw": "AdamW", "adam": "Adam"}[fields["optimizer"]]
    decay = f" (weight decay {fields['weight_decay']:g})" if fields["weight_decay"] else ""
    schedule = ("constant learning rate" if fields["schedule"] == "constant" else
                f"cosine after {fields['warmup_epochs']} warm-up epoch{'s' * (fields['warmup_epochs'] != 1)}"
                if fields["warmup_epochs"] else "cosine")
    average = f", weights averaged (EMA {fields['ema_decay']:g})" if fields.get("ema_decay") else ""
    return f"{optimizer}{decay}, {schedule}{average}"
