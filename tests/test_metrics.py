"""Metrics against answers computed by hand on tiny arrays."""

import numpy as np
import pytest

from study.metrics import (binary_auroc, classification_metrics, confusion_matrix, flat_metrics, harmonic_mean,
                           one_class_value, selection_value)

CLASSES = ("N", "S", "V", "F", "Q")


def test_confusion_matrix_rows_are_truth_columns_are_predictions():
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_confusion_matrix_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_multiclass_metrics_by_hand_with_a_class_that_never_occurs():
    # truth:     N N N N S S V V Q      (F never occurs, neither true nor predicted)
    # predicted: N N N S S N V N Q
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 4])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 0, 4])
    m = classification_metrics(y_true, y_pred, CLASSES)
    # N: TP 3, predicted 5, support 4 -> P 3/5, R 3/4, F1 2*.6*.75/1.35 = 2/3
    assert m["per_class"]["N"] == pytest.approx({"precision": 0.6, "recall": 0.75, "f1": 2 / 3, "support": 4})
    # S: TP 1, predicted 2, support 2 -> P 1/2, R 1/2, F1 1/2
    assert m["per_class"]["S"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # V: TP 1, predicted 1, support 2 -> P 1, R 1/2, F1 2/3
    assert m["per_class"]["V"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["F"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["Q"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    # Macro over the four classes that occur (F is left out): P (.6+.5+1+1)/4, R (.75+.5+.5+1)/4
    assert m["macro_precision"] == pytest.approx(3.1 / 4)
    assert m["macro_recall"] == pytest.approx(2.75 / 4)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 2 / 3 + 1) / 4)
    assert m["accuracy"] == pytest.approx(6 / 9)
    assert m["confusion_matrix"][0] == [3, 1, 0, 0, 0]
    assert "auroc" not in m and "f1" not in m
    assert selection_value(m, "arrhythmia") == m["macro_f1"]


def test_a_class_predicted_but_never_true_counts_in_the_macro_average():
    m = classification_metrics(np.array([0, 0]), np.array([0, 1]), ("a", "b", "c"))
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_precision"] == pytest.approx(0.5)  # a: 1, b: 0; c left out
    assert m["macro_recall"] == pytest.approx(0.25)  # a: 1/2, b: 0


def test_binary_metrics_and_auroc_by_hand():
    y_true = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.7, 0.9])
    m = classification_metrics(y_true, (scores > 0.5).astype(int), ("normal", "MI"), scores=scores)
    # MI: TP 2 (0.7, 0.9), FP 1 (0.6), FN 1 (0.4) -> P 2/3, R 2/3, F1 2/3
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # AUROC: of the 6 (positive, negative) pairs, 5 rank the positive higher (0.4 < 0.6 is the one miss)
    assert m["auroc"] == pytest.approx(5 / 6)
    assert selection_value(m, "mi") == m["f1"]


def test_auroc_ties_count_half_and_one_class_gives_none():
    assert binary_auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert binary_auroc(np.array([1, 1]), np.array([0.2, 0.3])) is None


def test_harmonic_mean():
    assert harmonic_mean(0.6, 0.75) == pytest.approx(2 / 3)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_flat_metrics_are_scalars_only():
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), ("normal", "MI"), scores=np.array([0.2, 0.8]))
    flat = flat_metrics(m, "val")
    assert flat["val_f1"] == 1.0 and flat["val_f1_MI"] == 1.0 and flat["val_auroc"] == 1.0
    assert all(isinstance(v, (int, float)) for v in flat.values())
    assert not any("confusion" in key for key in flat)


def test_one_class_for_every_beat_scores_the_majority_class_f1_over_the_classes_present():
    # Arrhythmia, 80 N, 10 S, 10 V: all N gives N an F1 of 2 * 0.8 / 1.8, the other two 0; F and Q never occur.
    assert one_class_value([80, 10, 10, 0, 0], "arrhythmia", CLASSES) == pytest.approx(2 * 0.8 / 1.8 / 3)
    # MI, 30 normal and 70 MI: calling every beat MI gives precision 0.7, recall 1; calling it normal gives 0.
    assert one_class_value([30, 70], "mi", ("normal", "MI")) == pytest.approx(2 * 0.7 / 1.7)
