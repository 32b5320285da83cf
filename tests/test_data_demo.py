"""The demo generator writes the exact Kaggle format, deterministically, with learnable but not trivial beats."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from data.constants import ARRHYTHMIA_CLASSES, BEAT_LEN, MITBIH_TEST, MITBIH_TRAIN, PTB_ABNORMAL, PTB_NORMAL
from data.demo import MITBIH_SHARES, ROW_BYTES, demo_sizes, get_args_parser, main, make_beats, write_demo

VALUE = r"\d\.\d{18}e[+-]\d\d"
ROW = re.compile(rf"^(?:{VALUE},){{{BEAT_LEN}}}{VALUE}\n$")
FILES = (MITBIH_TRAIN, MITBIH_TEST, PTB_NORMAL, PTB_ABNORMAL)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    write_demo(out, rows=400, seed=3)
    return out


def test_files_have_the_kaggle_format(demo):
    sizes = demo_sizes(400)
    for name in FILES:
        raw = (demo / name).read_bytes()
        assert len(raw) == sizes[name] * ROW_BYTES
        lines = raw.decode("ascii").splitlines(keepends=True)
        assert len(lines) == sizes[name]
        assert all(len(line) == ROW_BYTES and ROW.match(line) for line in lines)
        frame = pd.read_csv(demo / name, header=None)
        assert frame.shape == (sizes[name], BEAT_LEN + 1)
        assert all(dtype == np.float64 for dtype in frame.dtypes)
        samples, labels = frame.iloc[:, :BEAT_LEN].to_numpy(), frame.iloc[:, BEAT_LEN].to_numpy()
        assert samples.min() >= 0 and samples.max() <= 1
        assert (samples[:, -1] == 0).mean() > 0.9  # zero-padded tails
        assert np.all(labels == np.round(labels))
        expected = {MITBIH_TRAIN: set(range(5)), MITBIH_TEST: set(range(5)), PTB_NORMAL: {0}, PTB_ABNORMAL: {1}}
        assert set(labels.astype(int)) == expected[name]


def test_same_seed_same_bytes_other_seed_other_bytes(demo, tmp_path):
    write_demo(tmp_path / "a", rows=400, seed=3)
    write_demo(tmp_path / "b", rows=400, seed=4)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (demo / name).read_bytes()
        assert (tmp_path / "b" / name).read_bytes() != (demo / name).read_bytes()


def test_rows_are_shuffled_and_imbalanced_like_the_real_set():
    x, y = make_beats("mitbih", 6000, np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (6000, BEAT_LEN)
    shares = np.bincount(y, minlength=5) / len(y)
    assert np.allclose(shares, MITBIH_SHARES, atol=0.002)
    assert (np.diff(y) != 0).sum() > 500  # not sorted by class
    sizes = demo_sizes(87554)
    assert sizes[MITBIH_TEST] == 21892
    assert abs(sizes[PTB_NORMAL] - 4046) < 20 and abs(sizes[PTB_ABNORMAL] - 10506) < 20


def _best_threshold_balanced_accuracy(a: np.ndarray, b: np.ndarray) -> float:
    """Best balanced accuracy of `value > t` (or <) separating samples a from samples b."""
    values = np.concatenate([a, b])
    is_b = np.concatenate([np.zeros(len(a), bool), np.ones(len(b), bool)])
    order = np.argsort(values, kind="stable")
    values, is_b = values[order], is_b[order]
    a_below = np.cumsum(~is_b) / len(a)
    b_below = np.cumsum(is_b) / len(b)
    cut = np.r_[values[1:] != values[:-1], True]  # thresholds only between distinct values
    balanced = (0.5 * (a_below + 1 - b_below))[cut]
    return float(np.maximum(balanced, 1 - balanced).max())


def test_no_single_sample_separates_two_classes():
    rng = np.random.default_rng(1)
    x, y = make_beats("mitbih", 8000, rng)
    groups = [x[y == k] for k in range(len(ARRHYTHMIA_CLASSES))]
    groups += [make_beats("ptb_normal", 1500, rng)[0], make_beats("ptb_abnormal", 1500, rng)[0]]
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)] + [(5, 6)]
    best = max(_best_threshold_balanced_accuracy(groups[i][:, c], groups[j][:, c])
               for i, j in pairs for c in range(BEAT_LEN))
    # Measured about 0.96 at worst: every single sample misclassifies a clear share of beats.
    assert best < 0.97


def test_a_small_cnn_learns_the_classes_quickly():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier than two threads on a busy two-core machine
    try:
        macro_f1 = _train_small_cnn(torch)
    finally:
        torch.set_num_threads(threads)
    print(f"macro F1 {macro_f1:.3f}")
    assert macro_f1 > 0.9


def _train_small_cnn(torch) -> float:
    from sklearn.metrics import f1_score
    rng = np.random.default_rng(0)
    x_train, y_train = make_beats("mitbih", 2500, rng)
    # A test set with enough minority beats for a stable macro F1.
    x_test, y_test = make_beats("mitbih", 4000, rng)
    keep = np.concatenate([np.flatnonzero(y_test == k)[:60] for k in range(5)])
    x_test, y_test = x_test[keep], y_test[keep]
    net = torch.nn.Sequential(
        torch.nn.Conv1d(1, 16, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool1d(2),
        torch.nn.Conv1d(16, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool1d(2),
        torch.nn.Conv1d(32, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool1d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 5))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    inputs, targets = torch.from_numpy(x_train)[:, None], torch.from_numpy(y_train)
    # Class weights stand in for oversampling: the classes are as imbalanced as the real ones.
    weights = torch.tensor(len(y_train) / (5 * np.bincount(y_train)), dtype=torch.float32)
    for _ in range(20):
        for batch in torch.randperm(len(targets)).split(64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(inputs[batch]), targets[batch], weight=weights)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predicted = net(torch.from_numpy(x_test)[:, None]).argmax(1).numpy()
    return f1_score(y_test, predicted, average="macro")


def test_rows_are_validated_before_anything_is_written(tmp_path):
    for rows in (10, 10**7, 150.5):
        with pytest.raises(ValueError, match=r"^demo rows must be an integer from 100 to 1,000,000, got "):
            write_demo(tmp_path / "demo", rows=rows)
    assert not (tmp_path / "demo").exists()


def test_command_line(tmp_path, capsys):
    main(get_args_parser().parse_args(["--out", str(tmp_path), "--rows", "200", "--seed", "1"]))
    assert "200 rows" in capsys.readouterr().out
    assert (tmp_path / MITBIH_TRAIN).stat().st_size == 200 * ROW_BYTES
    assert (tmp_path / "demo.json").is_file()


def test_ensure_demo_keeps_an_intact_set_and_rewrites_a_damaged_one(tmp_path):
    from data import ensure_demo
    ensure_demo(tmp_path, rows=200, seed=0)
    train = tmp_path / MITBIH_TRAIN
    original, stamp = train.read_bytes(), train.stat().st_mtime_ns
    ensure_demo(tmp_path, rows=200, seed=0)
    assert train.stat().st_mtime_ns == stamp  # kept
    train.write_bytes(original[:-ROW_BYTES])
    ensure_demo(tmp_path, rows=200, seed=0)
    assert train.read_bytes() == original  # rewritten
    ensure_demo(tmp_path, rows=300, seed=0)
    assert train.stat().st_size == 300 * ROW_BYTES  # other parameters, other set
    manifest = tmp_path / "demo.json"
    for digests in ([], {}):  # data.demo's record, damaged: the set is written again
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "sha256": digests}))
        train.write_bytes(b"")
        ensure_demo(tmp_path, rows=300, seed=0)
        assert train.stat().st_size == 300 * ROW_BYTES


def test_ensure_demo_refuses_csvs_that_data_demo_did_not_write(tmp_path):
    """A trial's --demo writes into INPUT/demo: where the user's own CSVs lie there, it says so instead of replacing
    them."""
    from data import ensure_demo

    (tmp_path / MITBIH_TRAIN).write_text("the user's own beats\n")
    for manifest in (None, "[]\n"):
        if manifest is not None:
            (tmp_path / "demo.json").write_text(manifest)
        with pytest.raises(ValueError, match="holds mitbih_train.csv, which data.demo did not write"):
            ensure_demo(tmp_path, rows=200, seed=0)
        assert (tmp_path / MITBIH_TRAIN).read_text() == "the user's own beats\n"
