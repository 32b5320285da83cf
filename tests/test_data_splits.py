"""Splits: disjoint, stratified, deterministic per seed; the MI test split is the original project's."""

import json

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from data import DataError, TaskData, has_task_files, load_beats, prepare_task, save_split_indices, write_demo
from data.splits import read_split_info
from data.constants import (ARRHYTHMIA_CLASSES, BEAT_LEN, MI_CLASSES, MITBIH_TEST, MITBIH_TRAIN, PTB_ABNORMAL,
                            PTB_NORMAL)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("input")
    write_demo(out, rows=1000, seed=0)
    return out


def rows_of(split) -> set:
    return set(split.index.tolist())


def test_arrhythmia_splits(demo):
    data = prepare_task("arrhythmia", demo, seed=0)
    x, y = load_beats(demo / MITBIH_TRAIN)
    x_test, y_test = load_beats(demo / MITBIH_TEST)
    assert isinstance(data, TaskData) and data.class_names == ARRHYTHMIA_CLASSES and data.num_classes == 5
    assert not rows_of(data.train) & rows_of(data.val)
    assert rows_of(data.train) | rows_of(data.val) == set(range(len(y)))
    assert sorted(data.test.index) == list(range(len(y_test)))
    assert len(data.val) == round(0.1 * len(y))
    for split, source_x, source_y in [(data.train, x, y), (data.val, x, y), (data.test, x_test, y_test)]:
        assert split.x.dtype == np.float32 and split.x.shape == (len(split), BEAT_LEN)
        assert split.y.dtype == np.int64 and split.index.dtype == np.int64
        np.testing.assert_array_equal(split.x, source_x[split.index])
        np.testing.assert_array_equal(split.y, source_y[split.index])
        assert not split.x.flags.writeable  # consumers never modify in place
    # Stratified: every class's share of the validation split within one beat of its share overall.
    expected = np.bincount(y, minlength=5) * len(data.val) / len(y)
    assert np.all(np.abs(data.val.counts(5) - expected) <= 1)
    assert data.source == "demo" and data.oversample == "none" and data.val_fraction == 0.1
    assert data.summary().startswith("arrhythmia [demo") and "train 900 (N " in data.summary()


def test_mi_test_split_is_the_original_projects(demo):
    data = prepare_task("mi", demo, seed=5)
    x_ab, y_ab = load_beats(demo / PTB_ABNORMAL)
    x_no, y_no = load_beats(demo / PTB_NORMAL)
    # The original: concatenate abnormal then normal rows, split with random_state=1, stratified.
    x = np.concatenate([x_ab, x_no])
    y = np.concatenate([y_ab, y_no])
    _, x_test, _, y_test = train_test_split(x, y, test_size=0.2, random_state=1, stratify=y)
    np.testing.assert_array_equal(data.test.x, x_test)
    np.testing.assert_array_equal(data.test.y, y_test)
    assert data.class_names == MI_CLASSES
    assert not rows_of(data.train) & rows_of(data.val) and not rows_of(data.test) & (rows_of(data.train) | rows_of(data.val))
    assert rows_of(data.train) | rows_of(data.val) | rows_of(data.test) == set(range(len(y)))
    rest = len(y) - len(y_test)
    assert abs(len(data.val) - 0.1 * rest) <= 1
    assert abs(data.val.y.mean() - y.mean()) < 0.05
    # The test split does not depend on the seed; validation does.
    other = prepare_task("mi", demo, seed=6)
    np.testing.assert_array_equal(other.test.index, data.test.index)
    assert rows_of(other.val) != rows_of(data.val)
    n_abnormal = len(y_ab)
    assert data.pools["test"] == (f"ptbdb_abnormal.csv row r is index r (r < {n_abnormal}), "
                                  f"then ptbdb_normal.csv row r is index {n_abnormal} + r")


def test_deterministic_per_seed(demo):
    a, b, c = (prepare_task("arrhythmia", demo, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.train.index, b.train.index)
    np.testing.assert_array_equal(a.val.index, b.val.index)
    assert a.fingerprint == b.fingerprint
    assert rows_of(a.val) != rows_of(c.val) and a.fingerprint != c.fingerprint
    assert prepare_task("arrhythmia", demo, seed=1, val_fraction=0.2).fingerprint != a.fingerprint


def test_limit_keeps_a_stratified_subset_of_each_pool(demo):
    full = prepare_task("arrhythmia", demo, seed=0)
    data = prepare_task("arrhythmia", demo, seed=0, limit=200)
    assert len(data.train) + len(data.val) == 200 and len(data.test) == 200
    counts = data.train.counts(5) + data.val.counts(5)
    total = full.train.counts(5) + full.val.counts(5)
    assert np.all(counts >= 3)  # every class kept
    assert abs(counts[0] / 200 - total[0] / total.sum()) < 0.03
    x, _ = load_beats(demo / MITBIH_TRAIN)
    np.testing.assert_array_equal(data.train.x, x[data.train.index])  # indices still name source rows
    assert data.fingerprint != full.fingerprint
    mi = prepare_task("mi", demo, seed=0, limit=100)
    assert len(mi.train) + len(mi.val) + len(mi.test) == 100


def test_save_split_indices(demo, tmp_path):
    data = prepare_task("mi", demo, seed=0)
    saved = json.loads(save_split_indices(data, tmp_path / "splits.json").read_text())
    assert saved["fingerprint"] == data.fingerprint and saved["task"] == "mi"
    for name in ("train", "val", "test"):
        assert saved[name] == getattr(data, name).index.tolist()
    npz_path = save_split_indices(data, tmp_path / "splits.npz")
    with np.load(npz_path) as npz:
        np.testing.assert_array_equal(npz["test"], data.test.index)
    info = read_split_info(npz_path)
    assert info["fingerprint"] == data.fingerprint and info["val_records"] == []
    assert info == read_split_info(tmp_path / "splits.json") == {
        name: value for name, value in saved.items() if name not in ("train", "val", "test")}


def test_has_task_files(demo, tmp_path):
    assert has_task_files("arrhythmia", demo) and has_task_files("mi", demo)
    (tmp_path / MITBIH_TRAIN).write_bytes((demo / MITBIH_TRAIN).read_bytes())
    assert not has_task_files("arrhythmia", tmp_path) and not has_task_files("mi", tmp_path)
    with pytest.raises(ValueError, match="unknown task 'ecg'"):
        has_task_files("ecg", demo)


def test_bad_arguments_fail_early(demo, tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        prepare_task("afib", demo)
    with pytest.raises(ValueError, match="unknown oversampling 'adasyn'"):
        prepare_task("mi", demo, oversample="adasyn")
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_task("mi", demo, val_fraction=1.0)
    with pytest.raises(ValueError, match="limit"):
        prepare_task("mi", demo, limit=0)
    with pytest.raises(DataError, match=r"ptbdb_normal\.csv does not exist"):
        prepare_task("mi", tmp_path)


def test_source_tells_demo_from_other_files(demo, tmp_path):
    for name in (PTB_NORMAL, PTB_ABNORMAL):
        (tmp_path / name).write_bytes((demo / name).read_bytes())
    assert prepare_task("mi", tmp_path).source.startswith("local files in")  # no demo.json beside them


def test_data_that_cannot_mean_what_it_seems_is_named_in_one_warning_each(demo, tmp_path):
    import warnings

    from data.beats import kaggle_text
    from data.checks import DataWarning

    x, y = load_beats(demo / MITBIH_TRAIN)
    x_test, y_test = load_beats(demo / MITBIH_TEST)
    keep = y != 3  # no F beats left for training
    x, y = x[keep].copy(), y[keep]
    x[5] = 0.25  # a constant beat (row 6)
    (tmp_path / MITBIH_TRAIN).write_text(kaggle_text(x, y))
    (tmp_path / MITBIH_TEST).write_text(kaggle_text(x_test, y_test))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_rows = prepare_task("arrhythmia", tmp_path, seed=0, val_fraction=0.05).train.index
    x_test[[2, 7]] = x[train_rows[:2]]  # two test beats copied from training beats (the split draws on labels only)
    (tmp_path / MITBIH_TEST).write_text(kaggle_text(x_test, y_test))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_task("arrhythmia", tmp_path, seed=0, val_fraction=0.05)
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert said == [
        "1 beats of mitbih_train.csv are constant (first: row 6, every sample 0.25): they carry no waveform to "
        "learn from",
        "the arrhythmia training split has no beats of class F (from mitbih_train.csv and mitbih_test.csv): the "
        "model can never predict it, and its test figures count it as missed",
        f"2 of {len(y_test):,} arrhythmia test beats are identical to training beats (first: mitbih_test.csv row 3): "
        "figures on them measure memory, not generalisation"], said
