"""A study's plan: what decides what it computes, resolved once from the profile and the launch flags.

    plan = resolve_plan(args)        # args: the parsed flags of `python -m study launch` (add_launch_arguments)
"""

import argparse
import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from data import entry, files
from data.constants import MODEL_NAMES, TASKS, TRANSFER_MODES
from study.arguments import beat_limit, non_negative_float, positive_float, positive_int, seed_count
from study.config import RECIPES, describe_recipe
from study.grid import BATCH_SIZES, CELL_OVERSAMPLING, LR_RANGE, INITS, PROFILES, SMOTE_METHODS, Cell, make_grid


BEFORE = "before"  # a field's metadata: its value in a study made before the field existed (else its default)


@dataclass(frozen=True)
class StudyPlan:
    """Everything that decides what a study computes, resolved once from the profile and the flags."""

    name: str
    profile: str
    cells: tuple[str, ...]
    samples: int
    max_epochs: dict
    seeds: tuple[int, ...]
    grace_period: int
    patience: int
    smote_method: str
    input: str
    demo: bool
    demo_rows: int
    limit: int | None
    data_seed: int
    search_seed: int
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None
    transfer_mode: str = "frozen"
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    lr_range: tuple[float, float] = LR_RANGE
    budgets: dict = field(default_factory=dict)  # model -> {"max_epochs": ..., "limit": ...}: its own budget
    split: str = "kaggle"  # arrhythmia beats: the Kaggle CSVs, or a PhysioNet build (intra / inter-patient)
    rhythm: bool = False  # arrhythmia models see each beat's RR intervals (a PhysioNet build's: data/rhythm.py)
    # study/config.py RECIPES: how every trial trains. A study made before recipes existed trained with plain Adam.
    recipe: str = field(default="default", metadata={BEFORE: "original"})
    created: str = field(default="", compare=False)

    def oversample_method(self, cell: Cell) -> str:
        return self.smote_method if cell.oversample == "smote" else "none"

    def epochs(self, cell: Cell) -> int:
        """Successive halving's maximum epochs for the cell's trials (their seed runs train as long)."""
        return self.budgets.get(cell.model, {}).get("max_epochs", self.max_epochs)[cell.task]

    def rhythm_of(self, cell: Cell) -> bool:
        """Whether the cell's models take RR intervals: arrhythmia cells of a --rhythm study (PTB CSVs have none)."""
        return self.rhythm and cell.task == "arrhythmia"

    def limit_of(self, cell: Cell) -> int | None:
        """Beats kept of each CSV for the cell's model (None: all)."""
        return self.budgets.get(cell.model, {}).get("limit", self.limit)


def resolve_plan(args: argparse.Namespace) -> StudyPlan:
    profile = PROFILES[args.profile]
    max_epochs = {**profile.max_epochs, **(args.max_epochs or {})}
    grace = args.grace_period if args.grace_period is not None else profile.grace_period
    seeds = args.seeds if args.seeds is not None else profile.seeds
    cells = make_grid(tasks=args.tasks, models=args.models, oversample=args.oversample, inits=args.inits)
    if args.rhythm and "arrhythmia" not in args.tasks:
        raise ValueError("--rhythm gives the arrhythmia models each beat's RR intervals, and this study has no "
                         "arrhythmia cells (--tasks): drop --rhythm, or add arrhythmia to --tasks")
    if args.rhythm and args.split == "kaggle":
        raise ValueError("--rhythm gives the arrhythmia models each beat's RR intervals, which the Kaggle CSVs do not "
                         "hold: add --split intra or --split inter (a build of python -m data.physionet)")
    if args.split != "kaggle":
        built = task_input(Path(args.input), "arrhythmia", args.split)
        if not _has_real_data(built, {"arrhythmia"}):
            raise ValueError(f"--split {args.split} reads the arrhythmia beats from {built}, which holds no "
                             f"{args.split} build; make it with: python -m data.physionet build --db mitdb "
                             f"--records DIR --out {built} --split {args.split}")
    for flag, path in (("--input", Path(args.input)), ("--results", Path(str(args.results)))):
        if path.exists() and not path.is_dir():
            raise ValueError(f"{flag} {path} is a file; give a folder")
    wanted = input_files(Path(args.input), {cell.task for cell in cells}, args.split)
    for path in wanted:
        if problem := files.broken_link(path):  # not a missing file: demo data in its place would hide the mistake
            raise ValueError(f"--input: {problem}")
    missing = [path for path in wanted if not path.is_file()]
    if args.demo is False and missing:
        raise ValueError(f"{args.input} lacks {_names(missing)} for this study; put them there "
                         "(python -m data.download) or drop --no-demo to use demo data.")
    demo = bool(args.demo) or len(missing) == len(wanted)  # demo data only where none of the CSVs is there
    if args.split != "kaggle" and (demo or missing):
        raise ValueError(f"--split {args.split} needs the MI task's CSVs in {args.input} too (demo data has no "
                         "inter- or intra-patient split); or run --tasks arrhythmia.")
    # A flag the user gives sets every model's budget: the profile's per-model budgets give way to it, and a
    # profile's limits apply to demo data only.
    overridden = {"max_epochs": bool(args.max_epochs), "limit": args.limit is not None or not demo}
    budgets = {model: {key: value for key, value in budget.items() if not overridden[key]}
               for model, budget in profile.models.items() if model in args.models}
    budgets = {model: budget for model, budget in budgets.items() if budget}
    name = args.name if args.name is not None else args.profile  # --name "" is refused, not the profile's
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"--name {name!r} must be a plain folder name (letters, digits, '.', '_', '-'), "
                         "so the study stays inside --results.")
    return StudyPlan(
        name=name, profile=args.profile, cells=tuple(c.cell_id for c in cells),
        samples=args.samples or profile.samples, max_epochs=max_epochs,
        seeds=tuple(range(args.seed, args.seed + seeds)), grace_period=grace,
        patience=profile.patience, smote_method=args.smote_method, input=str(args.input), demo=demo,
        demo_rows=args.demo_rows or profile.demo_rows,
        limit=args.limit if args.limit is not None else (profile.limit if demo else None),
        data_seed=args.data_seed, search_seed=args.seed, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial if args.gpus_per_trial is not None else -1.0,
        max_concurrent=args.max_concurrent, transfer_mode=args.transfer_mode or profile.transfer_mode,
        split=args.split, rhythm=args.rhythm, recipe=args.recipe,
        batch_sizes=profile.batch_sizes, lr_range=profile.lr_range, budgets=budgets,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def task_input(input_dir: Path, task: str, split: str) -> Path:
    """Where a task's CSVs are: INPUT, or for arrhythmia on a PhysioNet split INPUT/physionet-SPLIT."""
    return input_dir / f"physionet-{split}" if task == "arrhythmia" and split != "kaggle" else input_dir


def input_files(input_dir: Path, tasks: set[str], split: str) -> list[Path]:
    """The CSVs a study of ``tasks`` reads."""
    from data.constants import TASK_FILES

    return [task_input(input_dir, task, split) / name for task in sorted(tasks) for name in TASK_FILES[task]]


def check_input(plan: StudyPlan, saved, explicit_demo: bool) -> None:
    """Every CSV the study reads is there: a study on real data never quietly turns to demo data. A file the
    study read before (``saved``: its record) and that is gone now is named as deleted."""
    if explicit_demo:
        return
    wanted = input_files(Path(plan.input), {Cell.from_id(c).task for c in plan.cells}, plan.split)
    missing = [path for path in wanted if not path.is_file()]
    read_before = saved is not None and saved.plan.get("demo") is False
    if not missing or (plan.demo and not read_before):
        return
    if read_before:
        raise ValueError(f"{_names(missing)} {'was' if len(missing) == 1 else 'were'} deleted since study "
                         f"{plan.name!r} last read {'it' if len(missing) == 1 else 'them'}: put "
                         f"{'it' if len(missing) == 1 else 'them'} back to continue the study, or start another "
                         "with --name")
    present = [path.name for path in wanted if path not in missing]
    raise ValueError(f"{plan.input} holds {', '.join(present)} but not {_names(missing)}, which this study reads "
                     "too: put the missing files there (python -m data.download), choose the tasks whose files are "
                     "there (--tasks), or use --demo for demo data")


def _names(paths: list[Path]) -> str:
    return ", ".join(str(path) for path in paths)


def _has_real_data(input_dir: Path, tasks: set[str]) -> bool:
    from data import has_task_files

    return all(has_task_files(task, input_dir) for task in tasks)


def check_same_plan(plan: StudyPlan, saved, location: str, ref: str) -> None:
    """A study folder belongs to one plan: continuing it with other settings would mix two studies' numbers.
    ``saved`` is the folder's study record (study/results.py; None for a new study), read from ``ref``."""
    if saved is None:
        return
    for cell_id in saved.cells:
        try:
            Cell.from_id(cell_id)
        except ValueError:
            raise ValueError(f"{ref} lists {cell_id!r}, which is not a cell of the grid; "
                             "move the folder away or use another --name.") from None
    current = json.loads(json.dumps(asdict(plan)))
    # A setting added since the study was made is as it was then: its default, or what its metadata says it was.
    before = json.loads(json.dumps({
        f.name: f.metadata.get(BEFORE, f.default if f.default_factory is MISSING else f.default_factory())
        for f in fields(StudyPlan) if f.default is not MISSING or f.default_factory is not MISSING}))
    was = {**{k: v for k, v in before.items() if k not in saved.plan}, **saved.plan}
    if saved.name != plan.name:
        raise ValueError(f"{location} holds study {saved.name!r} ({ref} says so), not {plan.name!r}: the folder was "
                         f"renamed or copied; a study continues under its own name (--name {saved.name} in a "
                         "--results that holds it), or move the folder away to start a new one.")
    if was.get("demo") is True and current["demo"] is False:
        raise ValueError(f"{location} holds study {plan.name!r} on demo data, and {plan.input} now holds the Kaggle "
                         "CSVs: use --name to start a study of them, or --demo to continue this one.")
    keys = [k for k in current if k not in ("created", "cells", "max_concurrent", "cpus_per_trial", "gpus_per_trial")]
    differences = [f"{k}: {was.get(k)!r} -> {current[k]!r}" for k in keys if was.get(k) != current[k]]
    if differences:
        raise ValueError(f"{location} holds study {plan.name!r} with other settings ({'; '.join(differences)}); "
                         "use --name to start a new study, or the same flags to continue this one.")


def epochs_by_task(text: str) -> dict[str, int]:
    """``--max-epochs``: "40" (both tasks) or "arrhythmia=80,mi=600"."""
    def count(value: str) -> int:
        if not value.strip().isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: epochs must be whole numbers of at least 1")
        return int(value)

    if "=" not in text:
        return {task: count(text) for task in TASKS}
    out = {}
    for part in text.split(","):
        task, _, value = part.partition("=")
        if task.strip() not in TASKS or task.strip() in out:
            raise argparse.ArgumentTypeError(f"{text!r}: give N, or TASK=N for each of {', '.join(TASKS)} once")
        out[task.strip()] = count(value)
    return out


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    def names(valid):
        def parse(text: str) -> list[str]:
            values = [v.strip() for v in text.split(",") if v.strip()]
            unknown = [v for v in values if v not in valid]
            if unknown or not values:
                raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(valid)} (comma-separated)")
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise argparse.ArgumentTypeError(f"{text!r} names {', '.join(twice)} twice: name each once")
            return values
        return parse

    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke",
                        help="smoke: every cell on a tiny budget; paper: the original budgets, 16 samples, 3 seeds")
    parser.add_argument("--name", default=None, help="study name: results go to RESULTS/NAME (default: the profile)")
    parser.add_argument("--results", type=entry.location, default="results",
                        help="results folder, shared by all nodes on a cluster")
    parser.add_argument("--input", type=entry.path, default=Path("input"), help="folder with the Kaggle CSVs")
    demo = parser.add_mutually_exclusive_group()
    demo.add_argument("--demo", dest="demo", action="store_true", default=None,
                      help="use demo data even if the real CSVs are present")
    demo.add_argument("--no-demo", dest="demo", action="store_false",
                      help="fail instead of falling back to demo data when the CSVs are absent")
    parser.add_argument("--demo-rows", type=entry.demo_rows, default=None, help="rows of the demo mitbih_train.csv")
    parser.add_argument("--limit", type=beat_limit, default=None, help="beats kept of each CSV (stratified)")
    parser.add_argument("--tasks", type=names(TASKS), default=list(TASKS))
    parser.add_argument("--models", type=names(MODEL_NAMES), default=list(MODEL_NAMES))
    parser.add_argument("--oversample", type=names(CELL_OVERSAMPLING), default=list(CELL_OVERSAMPLING))
    parser.add_argument("--inits", type=names(INITS), default=list(INITS))
    parser.add_argument("--split", choices=("kaggle", "intra", "inter"), default="kaggle",
                        help="arrhythmia beats: the Kaggle CSVs (default), or built from the PhysioNet records by "
                             "python -m data.physionet into INPUT/physionet-intra or INPUT/physionet-inter")
    parser.add_argument("--rhythm", action="store_true",
                        help="with --split intra or inter: the arrhythmia models see each beat's RR intervals beside "
                             "its samples (data/rhythm.py); MI cells read the PTB CSVs, which have none")
    parser.add_argument("--smote-method", choices=SMOTE_METHODS, default="smote-tomek",
                        help="what the 'smote' cells run (default: smote-tomek, as the original's 'smote')")
    parser.add_argument("--transfer-mode", choices=TRANSFER_MODES, default=None,
                        help="how transfer cells train the arrhythmia body they load: frozen (the original's; the "
                             "paper profile's) or finetune at a lower rate (the smoke profile's)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                        help="how every trial trains: default (" + describe_recipe(RECIPES["default"]) + ") or "
                             "original (the original project's plain Adam at a constant rate)")
    parser.add_argument("--samples", type=positive_int, default=None, help="Optuna samples a cell")
    parser.add_argument("--max-epochs", type=epochs_by_task, default=None,
                        help="ASHA's maximum epochs: N for both tasks, or arrhythmia=N,mi=M")
    parser.add_argument("--grace-period", type=positive_int, default=None,
                        help="epochs every search trial gets before successive halving may stop it")
    parser.add_argument("--seeds", type=seed_count, default=None, help="seeds of each cell's final evaluation")
    parser.add_argument("--seed", type=entry.seed, default=0, help="first seed (Optuna and final runs)")
    parser.add_argument("--data-seed", type=entry.seed, default=0, help="seed of splits and oversampling")
    parser.add_argument("--cpus-per-trial", type=positive_float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=non_negative_float, default=None,
                        help="default: 0.25 where the cluster has GPUs (four trials a card), else 0")
    parser.add_argument("--max-concurrent", type=positive_int, default=None, help="cap on trials in flight")
    parser.add_argument("--max-cells", type=positive_int, default=None,
                        help="cap on cells in progress at once (default: none; 1 runs one cell after another)")
    parser.add_argument("--address", default=None, help="join this Ray cluster (default: $RAY_ADDRESS, else local)")
    parser.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs of a local Ray instance")
    parser.add_argument("--recompute-changed", action="store_true",
                        help="run again the finished cells whose data changed since (and the transfer cells built "
                             "on them); without it such a study stops and names the changed files")
    parser.add_argument("--resume", action="store_true",
                        help="continue a study only: refuse to start a new one where the folder holds none (a "
                             "mistyped --name or --results would otherwise start a study afresh)")
