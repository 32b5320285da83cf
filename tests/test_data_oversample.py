"""Oversampling touches only the training split, balances it as promised, is seeded and cached."""

import numpy as np
import pytest
from imblearn.combine import SMOTETomek
from imblearn.over_sampling import SMOTE

import data.oversample
from data import DataError, load_beats, prepare_task, resample, write_demo
from data.cache import SUFFIX
from data.constants import MITBIH_TRAIN


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("input")
    write_demo(out, rows=600, seed=1)
    return out


@pytest.fixture(scope="module")
def plain(demo):
    return prepare_task("arrhythmia", demo, seed=0)


@pytest.mark.parametrize("method", ["smote", "smote-tomek"])
def test_only_the_training_split_changes(demo, plain, method):
    data = prepare_task("arrhythmia", demo, seed=0, oversample=method)
    for name in ("val", "test"):
        np.testing.assert_array_equal(getattr(data, name).index, getattr(plain, name).index)
        np.testing.assert_array_equal(getattr(data, name).x, getattr(plain, name).x)
    real = data.train.index >= 0
    assert set(data.train.index[real]) <= set(plain.train.index)  # no validation or test beat leaks in
    x, _ = load_beats(demo / MITBIH_TRAIN)
    np.testing.assert_array_equal(data.train.x[real], x[data.train.index[real]])
    assert (~real).sum() > 0 and data.train.x.dtype == np.float32 and not data.train.x.flags.writeable
    assert data.fingerprint != plain.fingerprint and data.oversample == method


def test_smote_balances_every_class_to_the_majority(demo, plain):
    data = prepare_task("arrhythmia", demo, seed=0, oversample="smote")
    majority = plain.train.counts(5).max()
    assert np.all(data.train.counts(5) == majority)
    np.testing.assert_array_equal(np.sort(data.train.index[data.train.index >= 0]), np.sort(plain.train.index))


def test_smote_tomek_matches_the_library_and_removes_tomek_links(plain):
    x, y, origin = resample(plain.train.x, plain.train.y, "smote-tomek", seed=0)
    k = min(5, plain.train.counts(5).min() - 1)  # the smallest demo class has fewer than 6 beats
    reference = SMOTETomek(smote=SMOTE(random_state=0, k_neighbors=k), random_state=0)
    x_ref, y_ref = reference.fit_resample(plain.train.x, plain.train.y)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)
    majority = plain.train.counts(5).max()
    counts = np.bincount(y, minlength=5)
    assert np.all(counts <= majority) and np.all(counts >= 0.95 * majority)  # nearly balanced
    real = origin >= 0
    np.testing.assert_array_equal(x[real], plain.train.x[origin[real]])
    assert np.all(np.diff(np.flatnonzero(real)) == 1) and real[: real.sum()].all()  # input rows first, in order


def test_tomek_links_are_removed_from_both_classes():
    # Two classes that touch: the pairs of nearest neighbours across the border are Tomek links.
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (60, 3)), rng.normal(1.5, 1, (20, 3))]).astype(np.float32)
    y = np.r_[np.zeros(60, np.int64), np.ones(20, np.int64)]
    x_s, y_s, _ = resample(x, y, "smote", seed=0)
    x_t, y_t, origin = resample(x, y, "smote-tomek", seed=0)
    assert np.bincount(y_s).tolist() == [60, 60]
    assert len(y_t) < len(y_s) and np.bincount(y_t).min() < 60


def test_seeded(plain):
    a = resample(plain.train.x, plain.train.y, "smote", seed=3)
    b = resample(plain.train.x, plain.train.y, "smote", seed=3)
    c = resample(plain.train.x, plain.train.y, "smote", seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_none_is_the_identity(plain):
    x, y, origin = resample(plain.train.x, plain.train.y, "none", seed=0)
    assert x is plain.train.x and y is plain.train.y
    np.testing.assert_array_equal(origin, np.arange(len(y)))


def test_result_is_cached_and_keyed_by_seed(demo, monkeypatch):
    cache_dir = demo / "oversample-cache"
    first = prepare_task("arrhythmia", demo, seed=0, oversample="smote-tomek", cache_dir=cache_dir)
    assert len(list(cache_dir.glob("oversample-smote-tomek-*" + SUFFIX))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("computed again instead of read from the cache")
    monkeypatch.setattr(data.oversample, "resample", fail)
    again = prepare_task("arrhythmia", demo, seed=0, oversample="smote-tomek", cache_dir=cache_dir)
    np.testing.assert_array_equal(again.train.x, first.train.x)
    np.testing.assert_array_equal(again.train.y, first.train.y)
    np.testing.assert_array_equal(again.train.index, first.train.index)
    with pytest.raises(AssertionError, match="computed again"):
        prepare_task("arrhythmia", demo, seed=1, oversample="smote-tomek", cache_dir=cache_dir)


def test_a_class_of_one_beat_cannot_be_oversampled():
    x = np.random.default_rng(0).random((12, 5), dtype=np.float32)
    y = np.r_[np.zeros(11, np.int64), [1]]
    with pytest.raises(DataError, match="a class of the training split has a single beat"):
        resample(x, y, "smote", seed=0)
    with pytest.raises(ValueError, match="unknown oversampling method 'adasyn'"):
        resample(x, y, "adasyn", seed=0)
