"""Classification metrics as pure functions of numpy arrays.

Conventions (those of scikit-learn with ``zero_division=0``, written out so they can be read):
- a class with no predictions has precision 0; a class with no true beats has recall 0;
- macro averages run over the classes that occur in ``y_true`` or ``y_pred``: a class that
  appears in neither (say F in a tiny validation split) is listed with support 0 and left out
  of the averages instead of dragging them to zero;
- for the binary MI task, ``precision``/``recall``/``f1`` are those of the positive class
  (label 1, "MI"), and ``auroc`` is computed from the scores.
"""

import numpy as np
from scipy.stats import rankdata

from data.constants import TASK_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}.")
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}.")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0 where den is 0."""
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def binary_auroc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied scores at mid-rank); None if one class is absent."""
    y_true = np.asarray(y_true).astype(bool)
    positives = int(y_true.sum())
    negatives = y_true.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    u = ranks[y_true].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b), 0 when both are 0: the original project's "overall" F1 of macro P and R."""
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...],
                           scores: np.ndarray | None = None) -> dict:
    """Per-class and macro precision, recall, F1, support; accuracy; confusion matrix; AUROC for binary tasks.

    ``scores`` (binary tasks only) are the predicted probabilities of class 1.
    """
    num_classes = len(class_names)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    true_positive = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _ratio(true_positive, predicted)
    recall = _ratio(true_positive, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    total = int(cm.sum())

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    metrics = {
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
    }
    if num_classes == 2:
        metrics.update(precision=float(precision[1]), recall=float(recall[1]), f1=float(f1[1]))
        metrics["auroc"] = binary_auroc(y_true, scores) if scores is not None else None
    return metrics


SELECTION_NAME = {"arrhythmia": "macro F1", "mi": "F1 of MI"}  # selection_key's metric, as tables name it


def selection_key(task: str) -> str:
    """The metric that selects epochs, trials and hyperparameters (and that a cell is judged by on test):
    macro F1 for arrhythmia, F1 of the MI class for MI."""
    return "f1" if task == "mi" else "macro_f1"


def selection_value(metrics: dict, task: str) -> float:
    return metrics[selection_key(task)]


def flat_metrics(metrics: dict, prefix: str) -> dict:
    """Scalars of a metrics dict as one flat dict (``val_macro_f1``, ``val_f1_S`` ...) for Ray Tune and CSVs."""
    flat = {}
    for key, value in metrics.items():
        if key == "per_class":
            for name, stats in value.items():
                for stat in ("precision", "recall", "f1"):
                    flat[f"{prefix}_{stat}_{name}"] = stats[stat]
        elif key != "confusion_matrix" and value is not None:
            flat[f"{prefix}_{key}"] = value
    return flat


def one_class_value(support, task: str, class_names: tuple[str, ...]) -> float:
    """The best selection value a classifier that gives every beat one class scores, on beats of these per-class
    counts: what a model must beat to have learned anything (for MI: call every beat MI)."""
    y_true = np.repeat(np.arange(len(support)), np.asarray(support, dtype=np.int64))
    return max(selection_value(classification_metrics(y_true, np.full_like(y_true, c), class_names), task)
               for c in range(len(class_names)))


AAMI_REPORTED = ("N", "S", "V", "F")  # de Chazal et al. 2004 report these; DS2 holds only a handful of Q beats


def inter_patient_figures(metrics: dict) -> dict:
    """An arrhythmia metrics dict the inter-patient way: sensitivity (recall) and positive predictive value
    (precision) of N, S, V and F, and the macro F1 over those four classes."""
    per_class = metrics["per_class"]
    return {"sensitivity": {c: per_class[c]["recall"] for c in AAMI_REPORTED},
            "ppv": {c: per_class[c]["precision"] for c in AAMI_REPORTED},
            "macro_f1_nsvf": float(np.mean([per_class[c]["f1"] for c in AAMI_REPORTED]))}


# ---------------------------------------------------------------------------------------------------------
# What a metrics dict read back from a file must hold (study/results.py, study/trial_folder.py read them).

MAX_INT = 2**53  # the largest whole number a JSON reader anywhere keeps exactly


class MetricsError(ValueError):
    """A metrics dict read from a file that is not one classification_metrics writes: names the field."""


def finite(value) -> bool:
    """A JSON number that means one (Python's JSON reads Infinity, NaN and 1e309 too)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= 1e300


def is_fraction(value) -> bool:
    """A JSON number from 0 to 1."""
    return finite(value) and 0 <= value <= 1


def check_metrics(metrics, task: str, where: str) -> None:
    """A split's metrics as classification_metrics computes them: the macro figures, precision, recall and F1 of
    every class of ``task``, the confusion matrix; for MI also those of the MI class; AUROC or None."""
    if not isinstance(metrics, dict):
        raise MetricsError(f"field {where} is {type(metrics).__name__}, expected an object of metrics")
    classes = TASK_CLASSES[task]

    def fraction(values: dict, key: str, at: str) -> None:
        if key not in values:
            raise MetricsError(f"field {at}.{key} is missing")
        if not is_fraction(values[key]):
            raise MetricsError(f"field {at}.{key} is {values[key]!r}, expected a fraction between 0 and 1")

    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", *(("precision", "recall", "f1")
                                                                           if task == "mi" else ())):
        fraction(metrics, key, where)
    if metrics.get("auroc") is not None:  # None where a split holds one class, and for arrhythmia
        fraction(metrics, "auroc", where)
    per_class = metrics.get("per_class")
    if not isinstance(per_class, dict):
        raise MetricsError(f"field {where}.per_class is {per_class!r}, expected an object of the classes")
    for name in classes:
        if not isinstance(per_class.get(name), dict):
            raise MetricsError(f"field {where}.per_class.{name} is missing")
        for stat in ("precision", "recall", "f1"):
            fraction(per_class[name], stat, f"{where}.per_class.{name}")
    matrix = metrics.get("confusion_matrix")
    if (not isinstance(matrix, list) or len(matrix) != len(classes) or any(
            not isinstance(row, list) or len(row) != len(classes)
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT for v in row)
            for row in matrix)):
        raise MetricsError(f"field {where}.confusion_matrix is not {len(classes)} x {len(classes)} counts")
