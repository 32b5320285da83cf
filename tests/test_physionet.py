"""data.physionet on small WFDB records written here, and on the real MIT-BIH records where they are present."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():  # wfdb 4.3 still passes inplace= to pandas, at import and when reading
    warnings.simplefilter("ignore", DeprecationWarning)
    import wfdb

from data import physionet as pn
from data.constants import ARRHYTHMIA_CLASSES, BEAT_LEN, MITBIH_TEST, MITBIH_TRAIN, PTB_ABNORMAL, PTB_NORMAL

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")

MITDB = Path(__file__).resolve().parents[2] / "shared" / "physionet" / "mitdb"
FS = 360
STEP = 72  # 72 samples at 360 Hz are exactly 25 at 125 Hz, so these R peaks land on whole samples
W = pn.WINDOW_S * pn.SAMPLE_RATE_HZ


def ecg(n: int, peaks, fs: int = FS) -> np.ndarray:
    """A baseline with a slow wander, an R spike at each peak and an S dip 40 ms later."""
    t = np.arange(n)
    sig = 0.4 + 0.02 * np.sin(2 * np.pi * t / (7.3 * fs))
    width = 0.008 * fs
    for r in peaks:
        sig += np.exp(-0.5 * ((t - r) / width) ** 2) - 0.5 * np.exp(-0.5 * ((t - r - 0.04 * fs) / width) ** 2)
    return sig


def write_record(folder: Path, name: str, peaks, symbols=None, *, seconds=30, leads=("MLII", "V1"), fs=FS,
                 comments=None, atr=True, extra=()):
    """A two-lead record `name` in `folder`; `extra` = (sample, symbol) non-beat annotations."""
    folder.mkdir(parents=True, exist_ok=True)
    sig = ecg(seconds * fs, peaks, fs)
    p = np.column_stack([sig] + [0.5 * sig] * (len(leads) - 1))
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(leads), sig_name=list(leads), p_signal=p,
                fmt=["16"] * len(leads), comments=comments, write_dir=str(folder))
    if atr:
        ann = sorted([*zip(peaks, symbols or ["N"] * len(peaks)), *extra])
        wfdb.wrann(name, "atr", np.array([a[0] for a in ann]), symbol=[a[1] for a in ann], write_dir=str(folder))


def regular(rr_s: float, seconds=30, start=STEP) -> list[int]:
    rr = round(rr_s * FS)
    assert rr % STEP == 0
    return list(range(start, seconds * FS - 1, rr))


# ---------------------------------------------------------------- signal steps on hand-made arrays

def test_normalise_windows_scales_each_window_and_the_short_last_one():
    sig = np.array([2.0, 4.0, 3.0, 10.0, 20.0, 15.0, 7.0, 7.0])
    out = pn.normalise_windows(sig, 3)
    np.testing.assert_allclose(out, [0, 1, 0.5, 0, 1, 0.5, 0, 0])  # last window [7, 7] is flat -> 0


def test_median_rr_per_window_falls_back_to_the_record():
    peaks = np.array([0, 10, 30, 100, 120, 125, 205])
    # window 0: 10, 20 -> 15; window 1: 20, 5 (the 30 -> 100 interval crosses windows) -> 12.5;
    # window 2: one peak -> record median of [10, 20, 70, 20, 5, 80] = 20
    np.testing.assert_allclose(pn.median_rr(peaks, 100, 3), [15, 12.5, 20])


def test_cut_beats_start_at_the_peak_span_1_2_rr_and_stop_at_the_window_end():
    n, window = 1000, 500
    norm = np.linspace(0.01, 1, n)
    peaks = np.array([10, 450, 600])
    rr = np.array([100.0, 300.0])  # window 0: 1.2 x 100 = 120 samples; window 1: 360, cut to BEAT_LEN
    x = pn.cut_beats(norm, peaks, window, rr)
    assert x.shape == (3, BEAT_LEN) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], norm[peaks], rtol=1e-6)  # each row starts at its R peak
    for row, p, length in zip(x, peaks, [120, 50, 187]):  # 450 stops at the window's end (500)
        np.testing.assert_allclose(row[:length], norm[p:p + length], rtol=1e-6)
        assert np.all(row[length:] == 0)


def test_detector_finds_tall_local_maxima_at_least_200_ms_apart():
    peaks = np.arange(50, 2500, 100)
    sig = np.zeros(2500)
    sig[peaks] = 1.0
    sig[peaks + 3] = 0.95  # too close to count as a second beat
    assert np.array_equal(pn.detect_peaks(pn.normalise_windows(sig, W)), peaks)


# ---------------------------------------------------------------- records

def test_label_mapping_follows_aami_and_skips_non_beats(tmp_path):
    symbols = list("NLRejAaJSVEF/fQ")
    peaks = regular(0.8)[:len(symbols) + 1]
    write_record(tmp_path, "100", peaks, symbols + ["N"], extra=[(peaks[2] + 36, "+"), (peaks[5] + 36, "~"),
                                                                 (peaks[7] + 36, "|"), (peaks[9] + 36, "x")])
    beats, lead = pn.mitdb_record(tmp_path, "100")
    assert lead == "MLII"
    assert list(beats.symbol) == symbols  # the last beat of the record is dropped
    assert [ARRHYTHMIA_CLASSES[c] for c in beats.y] == list("NNNNNSSSSVVFQQQ")
    assert np.array_equal(beats.sample, peaks[:-1])


@pytest.mark.parametrize("rr_s, span", [(0.8, 120), (1.6, 187)])
def test_record_beats_align_to_r_peaks_and_are_padded_or_cut(tmp_path, rr_s, span):
    peaks = regular(rr_s)
    write_record(tmp_path, "100", peaks)
    beats, _ = pn.mitdb_record(tmp_path, "100")
    assert len(beats) == len(peaks) - 1
    at = np.array(peaks[:-1]) * 25 // STEP
    length = np.minimum(span, (at // W + 1) * W - at)  # a beat stops at its window's end
    for row, p, n in zip(beats.x, at, length):
        assert row[0] >= 0.95 and np.argmax(row[:5]) == 0, f"beat at {p} does not start at its R peak"
        assert np.all(row[n:] == 0) and row[n - 2:n].max() > 0, f"beat at {p} is not {n} samples long"
    assert beats.x.min() >= 0 and beats.x.max() <= 1


def test_record_without_mlii_falls_back_to_its_first_channel(tmp_path):
    write_record(tmp_path, "102", regular(0.8), leads=("V5", "V2"))
    with pytest.warns(pn.PhysioNetWarning, match="102 has no MLII"):
        _, lead = pn.mitdb_record(tmp_path, "102")
    assert lead == "V5"


# ---------------------------------------------------------------- build, files, splits

def write_records(folder: Path, names, alphabet: str = "NNNNNNLRAVFf/Q", seed: int = 0) -> Path:
    """Records of 40 s, a beat every 0.8 s, their symbols drawn (seeded) from ``alphabet``; 102 lacks MLII, as in
    MIT-BIH."""
    rng = np.random.default_rng(seed)
    for name in names:
        peaks = regular(0.8, seconds=40)
        symbols = list(rng.choice(list(alphabet), size=len(peaks)))
        write_record(folder, name, peaks, symbols, seconds=40,
                     leads=("V5", "V2") if name == "102" else ("MLII", "V1"))
    return folder


@pytest.fixture
def mitdb(tmp_path):
    """Six records: DS1 101 and 106, DS2 100 and 103, paced 102 (no MLII), and 999 (no list), all classes."""
    return write_records(tmp_path / "mitdb", ("100", "101", "102", "103", "106", "999"))


def read_side(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, line.split(","))) for line in lines[1:]]


def test_build_intra_writes_kaggle_format_and_side_files(mitdb, tmp_path):
    out = tmp_path / "out"
    with pytest.warns(pn.PhysioNetWarning):
        summary = pn.build("mitdb", mitdb, out, split="intra", seed=3)
    total = 0
    for name in (MITBIH_TRAIN, MITBIH_TEST):
        raw = (out / name).read_bytes()
        lines = raw.split(b"\n")
        assert lines[-1] == b"" and all(len(line) == 4699 for line in lines[:-1])  # 4,700 bytes with '\n'
        table = np.loadtxt(out / name, delimiter=",")
        assert table.shape[1] == BEAT_LEN + 1 and table[:, :-1].min() >= 0 and table[:, :-1].max() <= 1
        assert np.all(np.diff(table[:, -1]) >= 0)  # ordered by class, as Kaggle's
        side = read_side(out / name.replace(".csv", ".beats.csv"))
        assert len(side) == len(table)
        assert [ARRHYTHMIA_CLASSES[int(v)] for v in table[:, -1]] == [r["label"] for r in side]
        assert summary["files"][name]["rows"] == len(table)
        total += len(table)
    assert total == sum(summary["counts"].values()) == 6 * (len(regular(0.8, seconds=40)) - 1)
    assert json.loads((out / "physionet_build.json").read_text())["leads"]["102"] == "V5"


def test_built_files_load_with_the_data_layer(mitdb, tmp_path):
    data = pytest.importorskip("data")
    if not hasattr(data, "load_beats"):
        pytest.skip("data.load_beats is not in place yet")
    with pytest.warns(pn.PhysioNetWarning):
        pn.build("mitdb", mitdb, tmp_path / "out")
    x, y = data.load_beats(tmp_path / "out" / MITBIH_TRAIN)
    assert x.shape[1] == BEAT_LEN and set(np.unique(y)) <= set(range(len(ARRHYTHMIA_CLASSES)))


def test_intra_split_is_stratified_seeded_and_disjoint():
    y = np.repeat(np.arange(5), [500, 40, 100, 11, 90])
    train, test = pn.split_intra(y, seed=1)
    assert np.intersect1d(train, test).size == 0 and len(train) + len(test) == len(y)
    assert np.array_equal(np.bincount(y[test]), [100, 8, 20, 2, 18])
    again, _ = pn.split_intra(y, seed=1)
    other, _ = pn.split_intra(y, seed=2)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_inter_split_keeps_records_apart_and_leaves_paced_ones_out(mitdb, tmp_path):
    out = tmp_path / "out"
    with pytest.warns(pn.PhysioNetWarning) as caught:
        summary = pn.build("mitdb", mitdb, out, split="inter")
    assert any("999 are in neither DS1 nor DS2" in str(w.message) for w in caught)
    train = {r["record"] for r in read_side(out / "mitbih_train.beats.csv")}
    test = {r["record"] for r in read_side(out / "mitbih_test.beats.csv")}
    assert train == {"101", "106"} and test == {"100", "103"}
    assert summary["files"][MITBIH_TRAIN]["records"] == ["101", "106"]


def test_inter_split_needs_both_sides(tmp_path):
    write_record(tmp_path, "101", regular(0.8))
    with pytest.raises(pn.DataError, match="none of DS2"):
        pn.build("mitdb", tmp_path, tmp_path / "out", split="inter")


def test_cli_builds(mitdb, tmp_path, capsys):
    args = pn.get_args_parser().parse_args(["build", "--db", "mitdb", "--records", str(mitdb),
                                            "--out", str(tmp_path / "out"), "--seed", "1"])
    pn.main(args)
    assert "beats from 6 records" in capsys.readouterr().out
    assert (tmp_path / "out" / MITBIH_TRAIN).is_file() and (tmp_path / "out" / MITBIH_TEST).is_file()


# ---------------------------------------------------------------- ptbdb

def test_ptbdb_labels_from_the_header_and_detects_peaks(tmp_path):
    folder = tmp_path / "ptbdb"
    leads = ("i", "ii", "iii")
    peaks = list(range(504, 30_000 - 500, 800))  # 1000 Hz, 0.8 s apart, on whole samples at 125 Hz
    reason = "Reason for admission: {}"
    write_record(folder / "patient001", "s0010_re", peaks, fs=1000, leads=leads, atr=False,
                 comments=["age: 81", reason.format("Myocardial infarction")])
    write_record(folder / "patient104", "s0306lre", peaks, fs=1000, leads=leads, atr=False,
                 comments=[reason.format("Healthy control")])
    write_record(folder / "patient200", "s0400_re", peaks, fs=1000, leads=leads, atr=False,
                 comments=[reason.format("Cardiomyopathy")])
    out = tmp_path / "out"
    with pytest.warns(pn.PhysioNetWarning, match="1 of 3 PTB records"):
        summary = pn.build("ptbdb", folder, out)
    assert summary["skipped"] == {"patient200/s0400_re": "cardiomyopathy"}
    assert summary["leads"] == {"patient001/s0010_re": "ii", "patient104/s0306lre": "ii"}
    for name, label, record in ((PTB_NORMAL, 0, "patient104/s0306lre"), (PTB_ABNORMAL, 1, "patient001/s0010_re")):
        table = np.loadtxt(out / name, delimiter=",", ndmin=2)
        assert len(table) == len(peaks) - 1 and np.all(table[:, -1] == label)
        assert table[:, 0].min() >= 0.95  # beats start at the detected R peaks
        side = read_side(out / name.replace(".csv", ".beats.csv"))
        assert {r["record"] for r in side} == {record}
        assert [abs(int(r["sample"]) - p) <= 8 for r, p in zip(side, peaks)] == [True] * len(side)


# ---------------------------------------------------------------- errors

def test_unknown_database(tmp_path):
    with pytest.raises(pn.DataError, match="unknown database; expected one of mitdb, ptbdb"):
        pn.build("nsrdb", tmp_path, tmp_path / "out")


def test_folder_without_records(tmp_path):
    with pytest.raises(pn.DataError, match="no WFDB records"):
        pn.build("mitdb", tmp_path, tmp_path / "out")
    with pytest.raises(pn.DataError, match="no such folder"):
        pn.build("mitdb", tmp_path / "absent", tmp_path / "out")


def test_record_missing_its_annotations(tmp_path):
    write_record(tmp_path, "100", regular(0.8))
    write_record(tmp_path, "101", regular(0.8), atr=False)
    with pytest.raises(pn.DataError, match=r"101 has no reference annotations \(101.atr\)"):
        pn.build("mitdb", tmp_path, tmp_path / "out")


def test_unknown_split(tmp_path):
    write_record(tmp_path, "100", regular(0.8))
    with pytest.raises(pn.DataError, match="unknown split"):
        pn.build("mitdb", tmp_path, tmp_path / "out", split="random")
    args = pn.get_args_parser().parse_args(["build", "--db", "ptbdb", "--records", str(tmp_path),
                                            "--out", str(tmp_path / "out"), "--split", "inter"])
    with pytest.raises(pn.DataError, match="--split applies to mitdb only"):
        pn.main(args)


def test_download_failure_is_one_sentence(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Max retries exceeded with url: /content/mitdb/\nmore detail")

    monkeypatch.setattr(wfdb, "dl_database", offline)
    with pytest.raises(pn.DataError, match=r"could not download mitdb from PhysioNet .*ConnectionError") as err:
        pn.download("mitdb", tmp_path / "raw")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- the real records

@pytest.mark.skipif(not (MITDB / "RECORDS").is_file(), reason=f"no MIT-BIH records at {MITDB}")
def test_real_mitdb_matches_the_kaggle_class_counts():
    with pytest.warns(pn.PhysioNetWarning, match="no MLII"):  # 102 and 104
        beats, notes = pn.read_database(MITDB, "mitdb")
    assert len(notes["leads"]) == 48
    got = pn.counts(beats.y, ARRHYTHMIA_CLASSES)
    for name, want in pn.KAGGLE_COUNTS.items():
        assert abs(got[name] - want) <= 0.005 * want, f"{name}: {got[name]} beats, Kaggle has {want}"
    train, test = pn.split_inter(beats.record)
    assert not set(beats.record[train]) & set(beats.record[test])
    assert set(beats.record[train]) == set(pn.DS1) and set(beats.record[test]) == set(pn.DS2)
