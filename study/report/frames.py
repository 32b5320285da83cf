"""A study as pandas frames, for a notebook: the way Ray Tune's ``ResultGrid.get_dataframe()`` serves its users.
The report reads a folder into these frames (reading.py) and builds its tables from them.

    from study.report import study_frames
    frames = study_frames("results/smoke")           # a folder, or a URI such as s3://bucket/results/paper
    frames.cells.sort_values("test_mean")            # one row per cell of the plan (and any other cell found)
    frames.seeds.groupby("model").test_macro_f1.mean()
    frames.trials[frames.trials.cell_id == "mi-cnet-none-scratch"]

Figures are fractions (0..1), as the cell files hold them; the report's tables show them as percentages.

``cells``: cell_id, task, model, oversample (the grid's: none or smote), method (what ran: none, smote or
    smote-tomek), init, transfer_mode, status ("ok", "no result yet", "unreadable (see Problems)"),
    selection_metric (val_macro_f1 or val_f1), lr and batch_size (chosen on validation), trials,
    trials_stopped_early, trials_failed, seeds (runs with a test result), val_mean / val_std (the selection
    metric; std over seeds, n - 1, NaN for one seed), test_mean / test_std (the same figure on test), test_accuracy_mean
    / test_accuracy_std, wall_time_s.
``seeds``: cell_id, task, model, method, init, seed, epochs_run, best_epoch, trained_by (the search trial whose epochs
    a run reused, else None), val (the selection metric), and the test split's figures: test_accuracy,
    test_macro_precision, test_macro_recall, test_macro_f1, test_precision_C / test_recall_C / test_f1_C for each
    class C of the task (NaN for the other task's classes), for MI test_precision, test_recall, test_f1 and
    test_auroc; test_confusion_matrix (rows: true classes, a list of lists); checkpoint.
``trials``: cell_id, task, model, method, init, trial_id, lr, batch_size, val_metric (NaN: failed before its first
    validation), epochs, stopped_early (by successive halving), failed, error, chosen (the configuration the cell
    chose).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.metrics import flat_metrics, selection_key
from study.results import CellResult

CELL_COLUMNS = ("cell_id", "task", "model", "oversample", "method", "init", "transfer_mode", "status",
                "selection_metric", "lr", "batch_size", "trials", "trials_stopped_early", "trials_failed", "seeds",
                "val_mean", "val_std", "test_mean", "test_std", "test_accuracy_mean", "test_accuracy_std",
                "wall_time_s")
SEED_COLUMNS = ("cell_id", "task", "model", "method", "init", "seed", "epochs_run", "best_epoch", "trained_by", "val")
TRIAL_COLUMNS = ("cell_id", "task", "model", "method", "init", "trial_id", "lr", "batch_size", "val_metric", "epochs",
                 "stopped_early", "failed", "error", "chosen")


@dataclass(frozen=True)
class StudyFrames:
    cells: pd.DataFrame
    seeds: pd.DataFrame
    trials: pd.DataFrame
    problems: tuple[str, ...]  # files that could not be read: their cells have status "unreadable (see Problems)"


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return np.nan, np.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else np.nan


def method_of(oversample: str, smote_method: str | None) -> str:
    """The oversampling that ran: "none", or what "smote" meant (smote or smote-tomek) where the cell recorded it."""
    return smote_method if oversample != "none" and smote_method else oversample


def build_frames(cells: list[tuple[str, str, str, str, str, str, CellResult | None]],
                 problems: tuple[str, ...] = ()) -> StudyFrames:
    """The frames of ``cells``: (cell_id, task, model, oversample, init, status, result) in the report's order;
    ``status`` is the reader's ("no result yet" or "unreadable (see Problems)") where ``result`` is None."""
    rows, seeds, trials = [], [], []
    for cell_id, task, model, oversample, init, status, result in cells:
        method = method_of(oversample, result.cell.smote_method if result is not None else None)
        head = {"cell_id": cell_id, "task": task, "model": model, "method": method, "init": init}
        runs = result.seeds if result is not None else ()
        key = selection_key(task)
        for run in runs:
            seeds.append({**head, "seed": run.seed, "epochs_run": run.epochs_run, "best_epoch": run.best_epoch,
                          "trained_by": run.trained_by, "val": run.val[key], **flat_metrics(run.test, "test"),
                          "test_confusion_matrix": run.test["confusion_matrix"], "checkpoint": run.checkpoint})
        for trial in result.trials if result is not None else ():
            trials.append({**head, "trial_id": trial.trial_id, "lr": trial.lr, "batch_size": trial.batch_size,
                           "val_metric": np.nan if trial.val_metric is None else trial.val_metric,
                           "epochs": trial.epochs, "stopped_early": trial.stopped_early, "failed": trial.failed,
                           "error": trial.error, "chosen": (trial.lr, trial.batch_size) == (
                               result.best_config["lr"], result.best_config["batch_size"])})
        val, test = _mean_std([r.val[key] for r in runs]), _mean_std([r.test[key] for r in runs])
        accuracy = _mean_std([r.test["accuracy"] for r in runs])
        rows.append({**head, "oversample": oversample,
                     "transfer_mode": result.cell.transfer_mode if result is not None and init == "transfer" else None,
                     "status": "ok" if runs else status, "selection_metric": f"val_{key}",
                     "lr": float(result.best_config["lr"]) if result else np.nan,
                     "batch_size": int(result.best_config["batch_size"]) if result else None,
                     "trials": len(result.trials) if result else 0,
                     "trials_stopped_early": result.trials_stopped_early if result else 0,
                     "trials_failed": sum(t.val_metric is None for t in result.trials) if result else 0,
                     "seeds": len(runs), "val_mean": val[0], "val_std": val[1], "test_mean": test[0],
                     "test_std": test[1], "test_accuracy_mean": accuracy[0], "test_accuracy_std": accuracy[1],
                     "wall_time_s": result.wall_time_s if result else np.nan})
    seed_frame = pd.DataFrame(seeds)
    last = ["test_confusion_matrix", "checkpoint"]
    if seed_frame.empty:
        seed_frame = pd.DataFrame(columns=list(SEED_COLUMNS) + last)
    else:  # the fixed columns first, then the test figures (both tasks' classes), then the matrix and checkpoint
        figures = [c for c in seed_frame.columns if c not in SEED_COLUMNS and c not in last]
        seed_frame = seed_frame[list(SEED_COLUMNS) + figures + last]
    return StudyFrames(cells=pd.DataFrame(rows, columns=list(CELL_COLUMNS)), seeds=seed_frame,
                       trials=pd.DataFrame(trials, columns=list(TRIAL_COLUMNS)), problems=tuple(problems))
