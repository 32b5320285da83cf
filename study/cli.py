"""The command line: ``python -m study {trial,launch,report}``.

    python -m study trial --task arrhythmia --model cnet --epochs 5 --demo     # one debugging run
    python -m study launch --profile smoke                                     # the whole study
    python -m study report results/smoke                                       # tables and plots
"""

import argparse
import sys
import time
import traceback
import warnings
from pathlib import Path

from data.constants import MODEL_NAMES, OVERSAMPLING, TASKS, TRANSFER_MODES
from data import entry
from data.files import WriteError, is_temporary
from study import launch, plan, report
from study.metrics import selection_key
from study.config import (BEST_FILE, DEVICES, FINAL_FILE, LAST_FILE, OPTIMIZERS, PRECISIONS, RECIPES, SCHEDULES,
                          TRIAL_FILES, TrialConfig, describe_recipe)
from study.arguments import (beat_limit, decay, fraction, non_negative_float, non_negative_int, positive_float,
                             positive_int)
from study.lock import TRIAL_LOCK, FolderBusy, holding
from study.storage import LocalStorage


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=entry.path, default=Path("input"),
                        help="folder with the Kaggle CSVs (default: input/)")
    parser.add_argument("--cache", type=entry.path, default=None,
                        help="cache folder for parsed and oversampled arrays (default: INPUT/.cache)")
    parser.add_argument("--demo", action="store_true",
                        help="use generated demo data (written once to INPUT/demo/) instead of the real CSVs")
    parser.add_argument("--demo-rows", type=entry.demo_rows, default=6000,
                        help="rows of the demo mitbih_train.csv (default: 6000)")
    parser.add_argument("--data-seed", type=entry.seed, default=0,
                        help="seed of the validation split and the oversampler (default: 0)")
    parser.add_argument("--val-fraction", type=fraction, default=0.1, help="validation share (default: 0.1)")
    parser.add_argument("--limit", type=beat_limit, default=None,
                        help="keep at most N beats of each CSV, stratified (quick debugging runs)")


def add_trial_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, default="arrhythmia")
    parser.add_argument("--model", default="cnet", help=f"{', '.join(MODEL_NAMES)} (default: cnet)")
    parser.add_argument("--oversample", choices=OVERSAMPLING, default="none",
                        help="oversampling of the training split (default: none)")
    parser.add_argument("--init", default="scratch",
                        help="'scratch' or a checkpoint: for --task mi an arrhythmia best.pt to transfer from")
    parser.add_argument("--transfer-mode", choices=TRANSFER_MODES, default="frozen",
                        help="with a transfer --init: freeze the body (the original) or fine-tune it at a lower rate")
    parser.add_argument("--rhythm", action="store_true",
                        help="give the model each beat's RR intervals beside its samples (data/rhythm.py); needs a "
                             "folder data.physionet built, as the Kaggle CSVs carry no intervals")
    parser.add_argument("--epochs", type=positive_int, default=40, help="default: 40, as the original")
    parser.add_argument("--lr", type=positive_float, default=1e-3,
                        help="learning rate (default: 0.001); a schedule scales it an epoch")
    add_recipe_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=256, help="default: 256")
    parser.add_argument("--seed", type=entry.seed, default=0, help="seed of weights and batch order")
    parser.add_argument("--patience", type=non_negative_int, default=0,
                        help="stop after N epochs without a better validation metric (default: 0, never)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="default: CUDA when present, else CPU")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default): bf16 autocast where the GPU or CPU computes bf16 natively, else fp32")
    parser.add_argument("--out", type=entry.path, default=None,
                        help="trial folder (default: runs/TASK-MODEL-OVERSAMPLE-INIT-sSEED); "
                             "an existing one is continued")
    add_data_arguments(parser)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """--recipe and the flags that change one of its fields (study/config.py: RECIPES)."""
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                        help="default: " + describe_recipe(RECIPES["default"]) + "; original: the original "
                        "project's plain Adam at a constant rate. The flags below change one field of it")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    parser.add_argument("--weight-decay", type=non_negative_float, default=None, help="0 turns it off")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None, help="constant turns it off")
    parser.add_argument("--warmup-epochs", type=non_negative_int, default=None, help="cosine's warm-up epochs")
    parser.add_argument("--ema-decay", type=decay, default=None,
                        help="validate, select and save an average of the weights over the optimizer's steps, "
                             "each step weighted this many times the next (0.999: about the last 1,000 steps); "
                             "0 turns it off")


def recipe_fields(args: argparse.Namespace) -> dict:
    """The optimizer fields of a TrialConfig: the --recipe's, each changed where its own flag is given."""
    given = {name: getattr(args, name) for name in RECIPES[args.recipe]}
    return {**RECIPES[args.recipe], **{name: value for name, value in given.items() if value is not None}}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbose = {"action": "store_true", "help": "tracebacks on errors, Ray's own output"}
    parser.add_argument("-v", "--verbose", **verbose)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{trial,launch,report}")
    for name, add_arguments, text in (
            ("trial", add_trial_arguments, "train and evaluate one configuration"),
            ("launch", plan.add_launch_arguments, "run the Ray Tune study"),
            ("report", report.add_report_arguments, "tables and plots from a study's results")):
        command = commands.add_parser(name, help=text)
        add_arguments(command)
        # -v after the command too (`study report -v DIR`, as the data and models commands take it); left unset
        # where absent, so that the -v before the command counts
        command.add_argument("-v", "--verbose", default=argparse.SUPPRESS, **verbose)
    return parser


def input_dir(args: argparse.Namespace) -> Path:
    """The folder to read a task's CSVs from: the real one, or demo data generated once on request."""
    if not args.demo:
        return args.input
    from data import ensure_demo

    return ensure_demo(args.input / "demo", rows=args.demo_rows, seed=args.data_seed)


def run_trial_command(args: argparse.Namespace) -> int:
    from data import prepare_task
    from study.trial import run_trial

    config = TrialConfig(task=args.task, model=args.model, oversample=args.oversample, init=str(args.init),
                         transfer_mode=args.transfer_mode, epochs=args.epochs, lr=args.lr,
                         batch_size=args.batch_size, seed=args.seed, data_seed=args.data_seed,
                         val_fraction=args.val_fraction, limit=args.limit, patience=args.patience,
                         device=args.device, precision=args.precision, rhythm=args.rhythm, **recipe_fields(args))
    if config.is_transfer:
        from study.trial import build_trial_model

        build_trial_model(config)  # a bad or unfitting checkpoint fails now, not after the data is loaded
    for flag, folder in (("--input", args.input), ("--cache", args.cache)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise ValueError(f"{flag} {folder} is a file; give a folder")
    if args.warmup_epochs and config.schedule == "constant":  # 0 asks for no warm-up, as a constant rate has
        raise ValueError(f"--warmup-epochs {args.warmup_epochs} warms up the cosine schedule, and this trial's rate is "
                         "constant (--schedule constant, or --recipe original): drop it, or add --schedule cosine")
    if args.warmup_epochs is not None and config.schedule == "cosine" and config.warmup_epochs >= config.epochs:
        raise ValueError(f"--warmup-epochs {config.warmup_epochs} must be fewer than --epochs ({config.epochs}): the "
                         "cosine decays over the epochs after the warm-up")
    init_name = "scratch" if not config.is_transfer else f"from-{Path(config.init).parent.name or 'ckpt'}"
    model = config.model + ("-rhythm" if config.rhythm else "")
    out = args.out or Path("runs") / f"{config.task}-{model}-{config.oversample}-{init_name}-s{config.seed}"
    if config.is_transfer and Path(out).resolve() in Path(config.init).resolve().parents:
        raise ValueError(f"--init {config.init} lies in --out {out}, where the trial writes its own best.pt: give "
                         "the checkpoint from another folder, or another --out")
    check_trial_folder(Path(out))
    data = prepare_task(config.task, input_dir(args), seed=config.data_seed,
                        val_fraction=config.val_fraction, oversample=config.oversample, cache_dir=args.cache,
                        limit=config.limit, rhythm=config.rhythm)
    print(f"{config.task} / {config.model} / oversample {config.oversample} / init {config.init}: {data.summary()}")
    print(f"lr {config.lr:g}, batch {config.batch_size}, {config.epochs} epochs, seed {config.seed}, "
          f"recipe {config.recipe} -> {out}")
    started = time.perf_counter()
    with holding(LocalStorage(Path(out)), TRIAL_LOCK, "trial folder"):
        check_trial_folder(Path(out))  # again, under the lock
        final = run_trial(config, data, out, log=print)
    print(summarise_trial(final, data.class_names, time.perf_counter() - started, Path(out)))
    return 0


def check_trial_folder(out: Path) -> None:
    """A --out that is a file, or a folder holding files no trial writes, is refused: a trial continues in its
    own folder and would write over anything else."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; a trial writes into a folder: give a folder's path")
    present = {p.name for p in out.iterdir()} if out.is_dir() else set()
    foreign = sorted(name for name in present if name not in TRIAL_FILES and not is_temporary(name))
    if foreign:
        raise ValueError(f"--out {out} holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, which no "
                         f"trial writes: a trial continues only in its own folder; give an empty or new one")
    results = sorted(present & {FINAL_FILE, BEST_FILE})
    if results and LAST_FILE not in present:  # nothing tells which trial they are: training would replace them
        raise ValueError(f"--out {out} holds {' and '.join(results)} of a trial but not its {LAST_FILE}, so it can "
                         f"be neither continued nor checked against this one; give another folder, or move them away")


def summarise_trial(final: dict, class_names: tuple[str, ...], seconds: float, out: Path) -> str:
    val, test = final["val"], final["test"]
    metric = "F1 (MI)" if final["config"]["task"] == "mi" else "macro F1"
    key = selection_key(final["config"]["task"])
    lines = [f"best epoch {final['best_epoch']} of {final['epochs_run']}"
             f"{' (stopped early)' if final['stopped_early'] else ''}, chosen on validation {metric} {val[key]:.4f}",
             f"test: {metric} {test[key]:.4f}, accuracy {test['accuracy']:.4f}"
             + (f", AUROC {test['auroc']:.4f}" if test.get("auroc") is not None else ""),
             "test F1 per class: " + ", ".join(f"{name} {test['per_class'][name]['f1']:.3f}" for name in class_names),
             f"{seconds:.1f} s; results in {out}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = entry.parse(get_args_parser(), argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what continues a launch: the same command
    handlers = {"trial": run_trial_command, "launch": launch.run_launch, "report": report.run_report}
    if not args.verbose:  # a warning is one line, as an error is; -v shows where it came from
        warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    try:
        return handlers[args.command](args)
    except (ValueError, OSError, launch.StudyError, FolderBusy) as error:
        # Our own errors are one clear sentence; the traceback is for -v.
        if args.verbose:
            traceback.print_exc()
        again = ""
        if isinstance(error, WriteError) and args.command in ("trial", "launch"):
            again = "; fix that and run the same command again to continue where it stopped"
        print(f"error: {entry.sentence(error)}{again}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = {"trial": "; last.pt holds every finished epoch: the same command continues from there",
                 "launch": "; finished cells are kept: run the same command to continue: "
                           + launch.command_line(args)}.get(args.command, "")
        print(f"interrupted{again}", file=sys.stderr)
        return 130
