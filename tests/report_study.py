"""The hand-built results folder of the report's tests (tests/test_report.py, tests/test_report_files.py), whose
numbers, and so every expected figure, are known: 8 cells planned (cnet and seq; arrhythmia none/smote; MI none
scratch/transfer), 7 written; arrhythmia-seq-smote-scratch has no result file."""

import csv
import io
import json
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def arrhythmia_metrics(precision, recall, f1, accuracy):
    """A test/val metric dict for N, S, V, F, Q; macro figures are the means of the per-class ones."""
    names = ("N", "S", "V", "F", "Q")
    return {
        "accuracy": accuracy,
        "macro_precision": sum(precision) / 5, "macro_recall": sum(recall) / 5, "macro_f1": sum(f1) / 5,
        "per_class": {n: {"precision": p, "recall": r, "f1": f, "support": 100}
                      for n, p, r, f in zip(names, precision, recall, f1)},
        "confusion_matrix": [[90 if i == j else 2 + i for j in range(5)] for i in range(5)],
    }


def mi_metrics(precision, recall, f1, accuracy):
    return {
        "accuracy": accuracy, "macro_precision": (precision + 0.9) / 2, "macro_recall": (recall + 0.9) / 2,
        "macro_f1": (f1 + 0.9) / 2,
        "per_class": {"normal": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 40},
                      "MI": {"precision": precision, "recall": recall, "f1": f1, "support": 100}},
        "confusion_matrix": [[36, 4], [3, 97]],
        "precision": precision, "recall": recall, "f1": f1, "auroc": 0.99,
    }


RAN = {"started_at": 1.0, "finished_at": 126.0, "nodes": ["127.0.0.2"], "node_ids": ["node-a"]}


def cell_doc(cell_id, seeds, *, transfer_mode="frozen", smote_method="smote-tomek"):
    """A cell result (study/results.py, format version 2); seeds: [(test metric dict, val figure, epochs_run,
    best_epoch)]."""
    task, model, oversample, init = cell_id.split("-")
    key = "val_f1" if task == "mi" else "val_macro_f1"

    def trial(trial_id, lr, batch_size, val_metric, epochs, stopped_early):
        return {"trial_id": trial_id, "lr": lr, "batch_size": batch_size, "val_metric": val_metric, "epochs": epochs,
                "stopped_early": stopped_early, "failed": False, "error": None, "ran": RAN}

    return {
        "format": "ecg-study-cell", "version": 2, "study": "fixture", "cell_id": cell_id,
        "cell": {"task": task, "model": model, "oversample": oversample,
                 "smote_method": smote_method if oversample != "none" else None, "init": init,
                 "transfer_mode": transfer_mode if init == "transfer" else None,
                 "transfer_source": f"ckpt/{model}/best.pt" if init == "transfer" else None},
        "selection_metric": key,
        "best_config": {"lr": 0.001, "batch_size": 256},
        "trials": [trial("t0", 0.001, 256, 0.8, 20, False), trial("t1", 0.0003, 64, 0.7, 20, False),
                   trial("t2", 0.01, 1024, 0.5, 4, True)],
        "best_trial_curve": [{"epoch": e, "train_loss": 1.0 / e, "val_metric": 0.5 + 0.1 * e} for e in (1, 2, 3)],
        "seeds": [{"seed": i, "epochs_run": epochs, "best_epoch": best,
                   "val": {("f1" if task == "mi" else "macro_f1"): val}, "test": test,
                   "checkpoint": f"ckpt/{cell_id}/s{i}/best.pt", "ran": RAN}
                  for i, (test, val, epochs, best) in enumerate(seeds)],
        "data_fingerprint": "abc123", "wall_time_s": 125.0,
        "started": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T00:02:05+00:00",
    }


PLANNED = ["arrhythmia-cnet-none-scratch", "arrhythmia-cnet-smote-scratch", "arrhythmia-seq-none-scratch",
           "arrhythmia-seq-smote-scratch", "mi-cnet-none-scratch", "mi-cnet-none-transfer",
           "mi-seq-none-scratch", "mi-seq-none-transfer"]

CELLS = {
    # seed 0: macro P .87, R .786, F1 .828; seed 1: macro P .786, R .87, F1 .824
    "arrhythmia-cnet-none-scratch": [
        (arrhythmia_metrics([1.00, 0.80, 0.90, 0.70, 0.95], [0.98, 0.60, 0.90, 0.50, 0.95],
                            [0.99, 0.70, 0.90, 0.60, 0.95], 0.97), 0.85, 20, 15),
        (arrhythmia_metrics([0.98, 0.60, 0.90, 0.50, 0.95], [1.00, 0.80, 0.90, 0.70, 0.95],
                            [0.99, 0.66, 0.90, 0.62, 0.95], 0.95), 0.83, 18, 12)],
    # two identical seeds: macro P .85, R .882, F1 .866
    "arrhythmia-cnet-smote-scratch": [
        (arrhythmia_metrics([0.97, 0.75, 0.92, 0.65, 0.96], [0.97, 0.85, 0.90, 0.75, 0.94],
                            [0.97, 0.80, 0.91, 0.70, 0.95], 0.96), 0.88, 20, 20)] * 2,
    # one seed: macro P .818, R .718, F1 .76; the best validation figure of all arrhythmia cells
    "arrhythmia-seq-none-scratch": [
        (arrhythmia_metrics([0.99, 0.70, 0.90, 0.60, 0.90], [0.99, 0.50, 0.80, 0.40, 0.90],
                            [0.99, 0.58, 0.85, 0.48, 0.90], 0.95), 0.90, 20, 19)],
    "mi-cnet-none-scratch": [(mi_metrics(0.99, 0.98, 0.985, 0.98), 0.97, 30, 25),
                             (mi_metrics(0.97, 0.96, 0.965, 0.96), 0.95, 30, 28)],
    "mi-cnet-none-transfer": [(mi_metrics(0.95, 0.93, 0.94, 0.93), 0.93, 30, 30)],
    "mi-seq-none-scratch": [(mi_metrics(0.96, 0.98, 0.97, 0.96), 0.96, 30, 30)],
    "mi-seq-none-transfer": [(mi_metrics(0.90, 0.92, 0.91, 0.90), 0.90, 30, 30)],
}


def make_study(root: Path, *, study_json=True) -> Path:
    study = root / "fixture"
    (study / "cells").mkdir(parents=True)
    if study_json:
        (study / "study.json").write_text(json.dumps({
            "format": "ecg-study", "version": 2, "name": "fixture", "profile": "test", "smote_method": "smote-tomek",
            "data": {"source": "demo", "input": "input/demo", "fingerprints": {"arrhythmia": "abc123", "mi": "def456"}},
            "seed": 0, "created": "2025-01-01T00:00:00+00:00", "cells": PLANNED, "plan": {"recipe": "default"}}))
    for cell_id, seeds in CELLS.items():
        (study / "cells" / f"{cell_id}.json").write_text(json.dumps(cell_doc(cell_id, seeds)))
    return study


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def md_rows(text: str) -> list[list[str]]:
    """The cells of every row of the Markdown tables in ``text``, stripped; separator rows left out."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|--")]


def row_of(rows, **match):
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]
