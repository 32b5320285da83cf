"""Build the beat data sets from the raw PhysioNet records, as Kachuee et al. (2018) did for Kaggle's.

    python -m data.physionet build --db mitdb --records ../shared/physionet/mitdb --out input/mitdb-intra
    python -m data.physionet build --db mitdb --records ../shared/physionet/mitdb --out input/mitdb-inter --split inter
    python -m data.physionet build --db mitdb --download --out input/mitdb-intra      # fetches from PhysioNet
    python -m data.physionet build --db ptbdb --download --out input/ptbdb

The output has the Kaggle files' names and format (`%.18e`, comma-separated, no header, label last), so the
rest of the project reads it unchanged: mitdb -> mitbih_train.csv / mitbih_test.csv, ptbdb -> ptbdb_normal.csv /
ptbdb_abnormal.csv. Beside each CSV, `<name>.beats.csv` gives every row's record, sample index (at the record's
own sampling rate) and annotation symbol, and `physionet_build.json` records what was built from what.

Preprocessing, per record (Kachuee et al. 2018, section III.A):
  1. one lead: MLII for mitdb, lead ii for ptbdb (Kachuee used lead II throughout). mitdb records 102 and 104 have
     no MLII; the Kaggle set still holds their paced beats, so those records fall back to their first channel (V5),
     with a warning.
  2. resampled to 125 Hz (polyphase, anti-aliased), cut into 10 s windows, each window normalised to [0, 1].
  3. R peaks. mitdb: the reference annotations' beat positions, mapped to 125 Hz. This is what makes the class
     counts match Kaggle's: Kachuee's threshold detector (below) misses beats, yet the Kaggle set holds all but 48 of
     the annotated beats. ptbdb has no beat annotations, so there the detector is used: local maxima of the
     normalised window above 0.9, at least 200 ms apart.
  4. T = the median RR interval of the window (of the record, when a window holds fewer than two beats); each beat
     runs from its R peak for 1.2 T samples, stopping at the window's end, then is zero-padded or cut to 187.
  5. The last beat of each record is dropped: the Kaggle set lacks exactly the 48 records' last beats
     (N 42, S 2, Q 4 -- its whole shortfall against the annotations).
Classes follow AAMI EC57: N = {N, L, R, e, j}, S = {A, a, J, S}, V = {V, E}, F = {F}, Q = {/, f, Q}; every other
annotation symbol is not a beat. ptbdb: "Healthy control" -> normal, "Myocardial infarction" -> MI (from each
header's "Reason for admission"); records with another diagnosis are left out.

Splits (mitdb): `intra` is a random 80/20 split stratified by class, as Kaggle's (beats of one patient land on both
sides); `inter` is de Chazal et al.'s (2004) inter-patient split: DS1 trains, DS2 tests, paced records left out
(data.splits then draws validation as whole DS1 records: data/records.py).
"""

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import find_peaks, resample_poly

from data.constants import (ARRHYTHMIA_CLASSES, BEAT_LEN, MI_CLASSES, MITBIH_TEST, MITBIH_TRAIN, PTB_ABNORMAL,
                            PHYSIONET_BUILD, PTB_NORMAL, SAMPLE_RATE_HZ)

from data import DataError, entry
from data.beats import content_sha256, kaggle_text
from data.files import atomic_write, refuse_foreign, write_text
from data.records import SIDE_COLUMNS, side_file

DATABASES = ("mitdb", "ptbdb")
SPLITS = ("intra", "inter")
BUILD_FORMAT = "physionet-build"  # of PHYSIONET_BUILD, the summary written beside the CSVs
LEADS = {"mitdb": "MLII", "ptbdb": "ii"}  # matched case-insensitively against the header's signal names

WINDOW_S = 10  # seconds a window
SEGMENT_RR = 1.2  # a beat spans this many median RR intervals
TEST_FRACTION = 0.2  # intra split, as Kaggle's 87,554 / 21,892
PEAK_HEIGHT = 0.9  # detector (ptbdb): Kachuee's threshold on the normalised window
PEAK_DISTANCE_S = 0.2  # detector: refractory period between two R peaks

AAMI = {**dict.fromkeys("NLRej", "N"), **dict.fromkeys("AaJS", "S"), **dict.fromkeys("VE", "V"),
        "F": "F", **dict.fromkeys("/fQ", "Q")}

# de Chazal et al. 2004; the paced records are left out of both.
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203", "205",
       "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214", "219",
       "221", "222", "228", "231", "232", "233", "234")
PACED = ("102", "104", "107", "217")

# The Kaggle set's class counts (train + test), which a mitdb build should land within 0.5% of.
KAGGLE_COUNTS = {"N": 90589, "S": 2779, "V": 7236, "F": 803, "Q": 8039}

PTB_REASONS = {"healthy control": 0, "myocardial infarction": 1}  # index into MI_CLASSES


class PhysioNetWarning(UserWarning):
    """A record was used differently from the rest (other lead) or left out."""


@dataclass(frozen=True)
class Beats:
    """Beats of one or more records, one row each, in record order."""

    x: np.ndarray  # float32 (n, BEAT_LEN), values in [0, 1]
    y: np.ndarray  # int64 (n,), index into the database's class names
    record: np.ndarray  # str (n,)
    sample: np.ndarray  # int64 (n,), R peak at the record's own sampling rate
    symbol: np.ndarray  # str (n,), the annotation symbol ("" where the detector found the peak)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> "Beats":
        return Beats(self.x[rows], self.y[rows], self.record[rows], self.sample[rows], self.symbol[rows])

    @staticmethod
    def concat(parts: list["Beats"]) -> "Beats":
        fields = ("x", "y", "record", "sample", "symbol")
        return Beats(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


# ---------------------------------------------------------------- signal steps (pure functions of arrays)

def resample(signal: np.ndarray, fs: float) -> np.ndarray:
    """The signal at SAMPLE_RATE_HZ; polyphase filtering keeps sample i at time i / rate, with no delay."""
    ratio = Fraction(SAMPLE_RATE_HZ) / Fraction(fs).limit_denominator(1000)
    if ratio == 1:
        return np.asarray(signal, np.float64)
    return resample_poly(np.asarray(signal, np.float64), ratio.numerator, ratio.denominator)


def normalise_windows(signal: np.ndarray, window: int) -> np.ndarray:
    """Each run of `window` samples (the last one may be shorter) scaled to [0, 1]; a flat window becomes 0."""
    n = len(signal)
    n_windows = -(-n // window)
    # Padding with the last value leaves the last window's min and max as they are.
    w = np.pad(signal, (0, n_windows * window - n), mode="edge").reshape(n_windows, window)
    low = w.min(axis=1, keepdims=True)
    span = w.max(axis=1, keepdims=True) - low
    out = np.divide(w - low, span, out=np.zeros_like(w), where=span > 0)
    return out.ravel()[:n]


def median_rr(peaks: np.ndarray, window: int, n_windows: int) -> np.ndarray:
    """Per window, the median interval between consecutive R peaks inside it, in samples.

    A window with fewer than two peaks gets the record's median interval (nan when the record has fewer than two).
    """
    rr = np.diff(peaks).astype(np.float64)
    out = np.full(n_windows, np.median(rr) if rr.size else np.nan)
    win = peaks // window
    inside = win[1:] == win[:-1]
    # peaks are sorted, so the intervals of one window are a contiguous run
    w, starts = np.unique(win[1:][inside], return_index=True)
    for k, chunk in zip(w, np.split(rr[inside], starts[1:])):
        out[k] = np.median(chunk)
    return out


def cut_beats(norm: np.ndarray, peaks: np.ndarray, window: int, rr: np.ndarray) -> np.ndarray:
    """Rows of BEAT_LEN samples: each from its R peak over round(1.2 x its window's RR), within the window,
    zero-padded (or cut) to BEAT_LEN."""
    n = len(norm)
    win = peaks // window
    window_end = np.minimum((win + 1) * window, n)
    length = np.minimum(np.rint(SEGMENT_RR * rr[win]).astype(np.int64), window_end - peaks)
    cols = np.arange(BEAT_LEN)
    rows = norm[np.minimum(peaks[:, None] + cols, n - 1)]
    return np.where(cols < length[:, None], rows, 0.0).astype(np.float32)


def detect_peaks(norm: np.ndarray) -> np.ndarray:
    """R peaks found as Kachuee did: local maxima above PEAK_HEIGHT of the window-normalised signal.

    One pass over the whole signal rather than one a window, so that a peak on a window's first sample counts.
    """
    distance = max(1, round(PEAK_DISTANCE_S * SAMPLE_RATE_HZ))
    return find_peaks(norm, height=PEAK_HEIGHT, distance=distance)[0].astype(np.int64)


def beats_from_signal(signal: np.ndarray, fs: float,
                      peaks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows float32 (k, BEAT_LEN), their R peaks as sample indices at `fs`) for one record's lead.

    `peaks` are the R peaks at `fs`, sorted; None finds them with the detector. Every peak but the last gives a row
    (module docstring, step 5), so the rows' peaks are the first k; fewer than two peaks give no rows.
    """
    sig = resample(signal, fs)
    window = WINDOW_S * SAMPLE_RATE_HZ
    norm = normalise_windows(sig, window)
    if peaks is None:
        at = detect_peaks(norm)
        peaks = np.rint(at * (fs / SAMPLE_RATE_HZ)).astype(np.int64)
    else:
        peaks = np.asarray(peaks, np.int64)
        at = np.clip(np.rint(peaks * (SAMPLE_RATE_HZ / fs)).astype(np.int64), 0, len(norm) - 1)
    if len(at) < 2:
        return np.zeros((0, BEAT_LEN), np.float32), peaks[:0]
    rr = median_rr(at, window, -(-len(norm) // window))
    return cut_beats(norm, at[:-1], window, rr), peaks[:-1]


# ---------------------------------------------------------------- records

def list_records(folder: Path, db: str) -> list[str]:
    """Record names (paths relative to `folder`, no suffix) of every header under it, sorted."""
    check_db(db)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--records {folder}: {'a file, not a folder' if folder.exists() else 'no such folder'}.")
    names = sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.hea"))
    if not names:
        raise DataError(f"--records {folder}: no WFDB records (*.hea files) in this folder.")
    if db == "mitdb":
        missing = [n for n in names if not (folder / f"{n}.atr").is_file()]
        if missing:
            raise DataError(f"record {folder / missing[0]} has no reference annotations ({missing[0]}.atr); "
                            f"mitdb needs the .atr of every record ({len(missing)} missing).")
    return names


def read_lead(folder: Path, name: str, db: str) -> tuple[np.ndarray, float, str]:
    """(signal, sampling rate, lead name) of the database's lead, or of the first channel where it is absent."""
    import wfdb

    path = str(Path(folder) / name)
    try:
        header = wfdb.rdheader(path)
        names = [s.lower() for s in header.sig_name]
        channel = names.index(LEADS[db].lower()) if LEADS[db].lower() in names else 0
        if LEADS[db].lower() not in names:
            warnings.warn(f"record {name} has no {LEADS[db]} lead (it has {', '.join(header.sig_name)}); "
                          f"using its first channel, {header.sig_name[0]}.", PhysioNetWarning, stacklevel=2)
        record = wfdb.rdrecord(path, channels=[channel])
    except (OSError, ValueError, IndexError) as err:
        raise DataError(f"record {path} could not be read as a WFDB record: {err}.") from err
    return record.p_signal[:, 0], float(record.fs), header.sig_name[channel]


def mitdb_record(folder: Path, name: str) -> tuple[Beats, str]:
    """The beats of one MIT-BIH record, with the lead used."""
    import wfdb

    signal, fs, lead = read_lead(folder, name, "mitdb")
    try:
        ann = wfdb.rdann(str(Path(folder) / name), "atr")
    except (OSError, ValueError) as err:
        raise DataError(f"annotations {Path(folder) / name}.atr could not be read: {err}.") from err
    symbols = np.asarray(ann.symbol, dtype=str)
    is_beat = np.isin(symbols, list(AAMI))
    samples = np.asarray(ann.sample, np.int64)[is_beat]
    symbols = symbols[is_beat]
    order = np.argsort(samples, kind="stable")
    samples, symbols = samples[order], symbols[order]
    x, samples = beats_from_signal(signal, fs, samples)
    symbols = symbols[:len(x)]
    y = np.array([ARRHYTHMIA_CLASSES.index(AAMI[s]) for s in symbols], np.int64)
    return Beats(x, y, np.full(len(y), name), samples, symbols), lead


def ptb_reason(folder: Path, name: str) -> str:
    """The "Reason for admission" of a PTB record's header, lower case ("" when absent)."""
    import wfdb

    try:
        comments = wfdb.rdheader(str(Path(folder) / name)).comments
    except (OSError, ValueError, IndexError) as err:
        raise DataError(f"record header {Path(folder) / name}.hea could not be read: {err}.") from err
    for line in comments:
        key, _, value = line.partition(":")
        if key.strip().lower() == "reason for admission":
            return value.strip().lower()
    return ""


def ptbdb_record(folder: Path, name: str, label: int) -> tuple[Beats, str]:
    """The beats of one PTB record (R peaks found by the detector), all labelled `label`."""
    signal, fs, lead = read_lead(folder, name, "ptbdb")
    x, samples = beats_from_signal(signal, fs)
    n = len(x)
    return Beats(x, np.full(n, label, np.int64), np.full(n, name), samples, np.full(n, "")), lead


def check_db(db: str) -> None:
    if db not in DATABASES:
        raise DataError(f"--db {db!r}: unknown database; expected one of {', '.join(DATABASES)}.")


def read_database(folder: Path, db: str) -> tuple[Beats, dict]:
    """All beats of the database's records under `folder`, with notes on what was used (leads, skipped records)."""
    names = list_records(folder, db)
    parts, leads, skipped = [], {}, {}
    for name in names:
        if db == "mitdb":
            beats, lead = mitdb_record(folder, name)
        else:
            reason = ptb_reason(folder, name)
            if reason not in PTB_REASONS:
                skipped[name] = reason or "no reason for admission"
                continue
            beats, lead = ptbdb_record(folder, name, PTB_REASONS[reason])
        if len(beats) == 0:
            warnings.warn(f"record {name} gave no beats (fewer than two R peaks); it is left out.",
                          PhysioNetWarning, stacklevel=2)
            skipped[name] = "fewer than two R peaks"
            continue
        parts.append(beats)
        leads[name] = lead
    if skipped and db == "ptbdb":
        warnings.warn(f"{len(skipped)} of {len(names)} PTB records are neither healthy controls nor myocardial "
                      f"infarction and are left out.", PhysioNetWarning, stacklevel=2)
    if not parts:
        raise DataError(f"--records {folder}: no {db} record gave any beats.")
    return Beats.concat(parts), {"records": names, "leads": leads, "skipped": skipped}


# ---------------------------------------------------------------- splits and files

def split_intra(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): TEST_FRACTION of each class at random, seeded; rows sorted."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        test.append(rows[:round(TEST_FRACTION * len(rows))])
    is_test = np.zeros(len(y), bool)
    is_test[np.concatenate(test)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def split_inter(record: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): records of DS1 train, of DS2 test; every other record is left out."""
    others = sorted(set(record) - set(DS1) - set(DS2) - set(PACED))
    if others:
        warnings.warn(f"records {', '.join(others)} are in neither DS1 nor DS2 and are left out of the inter split.",
                      PhysioNetWarning, stacklevel=2)
    train, test = np.flatnonzero(np.isin(record, DS1)), np.flatnonzero(np.isin(record, DS2))
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"--split inter needs records of both DS1 ({' '.join(DS1)}) and DS2 ({' '.join(DS2)}); "
                        f"got {'none of DS1' if len(train) == 0 else 'none of DS2'}.")
    return train, test


def by_class(beats: Beats) -> Beats:
    """Rows ordered by label, then by record and sample (as read), like the Kaggle files."""
    return beats.take(np.argsort(beats.y, kind="stable"))


def write_beats(path: Path, beats: Beats, class_names: tuple[str, ...], chunk: int = 4096) -> None:
    """Write `path` (Kaggle format) and `<stem>.beats.csv` beside it; both appear whole or not at all."""
    path = Path(path)

    def write_rows(tmp: Path) -> None:
        with open(tmp, "w", newline="\n") as f:
            for start in range(0, len(beats), chunk):
                f.write(kaggle_text(beats.x[start:start + chunk], beats.y[start:start + chunk]))

    def write_side(tmp: Path) -> None:
        with open(tmp, "w", newline="\n") as f:
            f.write(",".join(SIDE_COLUMNS) + "\n")
            f.writelines(f"{i},{r},{s},{sym},{class_names[c]}\n"
                         for i, (r, s, sym, c) in enumerate(zip(beats.record, beats.sample.tolist(), beats.symbol,
                                                                beats.y.tolist())))

    atomic_write(path, write_rows)
    atomic_write(side_file(path), write_side)


def counts(y: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    return {name: int(np.sum(y == i)) for i, name in enumerate(class_names)}


def download(db: str, dest: Path) -> Path:
    """Fetch the database's records (and mitdb's .atr) from PhysioNet into `dest` with wfdb."""
    import wfdb

    check_db(db)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        wfdb.dl_database(db, str(dest), annotators=["atr"] if db == "mitdb" else None)
    except Exception as err:  # wfdb raises whatever requests or its parser raised
        raise DataError(f"could not download {db} from PhysioNet into {dest} "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); "
                        f"check the network, or pass --records with a folder of the records.") from err
    return dest


def build(db: str, records: Path, out: Path, split: str = "intra", seed: int = 0) -> dict:
    """Read every record under `records`, write the database's CSVs (and side files) into `out`; returns the
    summary that also goes to `out/physionet_build.json`."""
    check_db(db)
    if split not in SPLITS:
        raise DataError(f"--split {split!r}: unknown split; expected one of {', '.join(SPLITS)}.")
    out = Path(out)
    if out.exists() and not out.is_dir():  # said before the records are read, not after
        raise DataError(f"{out} is a file; the CSVs are written into a folder: give a folder's path")
    refuse_foreign(out, (MITBIH_TRAIN, MITBIH_TEST) if db == "mitdb" else (PTB_NORMAL, PTB_ABNORMAL),
                   PHYSIONET_BUILD, "data.physionet", ("format", BUILD_FORMAT))
    beats, notes = read_database(Path(records), db)
    out.mkdir(parents=True, exist_ok=True)
    if db == "mitdb":
        train, test = split_intra(beats.y, seed) if split == "intra" else split_inter(beats.record)
        files = {MITBIH_TRAIN: train, MITBIH_TEST: test}
        classes = ARRHYTHMIA_CLASSES
    else:
        files = {PTB_NORMAL: np.flatnonzero(beats.y == 0), PTB_ABNORMAL: np.flatnonzero(beats.y == 1)}
        classes = MI_CLASSES
    summary = {"format": BUILD_FORMAT, "version": 1, "db": db, "records_dir": str(Path(records).resolve()),
               "split": split if db == "mitdb" else None, "seed": seed if db == "mitdb" else None,
               "counts": counts(beats.y, classes), "files": {}, **notes}
    for name, rows in files.items():
        part = by_class(beats.take(rows))
        write_beats(out / name, part, classes)
        summary["files"][name] = {"rows": len(part), "counts": counts(part.y, classes),
                                  "records": sorted(set(part.record.tolist())),
                                  # what ties the side file to its CSV: data.records.check_built_pair
                                  "sha256": content_sha256(out / name)[0],
                                  "side_sha256": content_sha256(side_file(out / name))[0]}
    write_text(out / PHYSIONET_BUILD, json.dumps(summary, indent=1) + "\n")
    return summary


# ---------------------------------------------------------------- command line

def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data.physionet", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="build the beat CSVs from raw PhysioNet records")
    b.add_argument("--db", required=True, help=f"database: {', '.join(DATABASES)}")
    source = b.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", type=entry.path, help="folder holding the WFDB records (.hea, .dat, mitdb: .atr)")
    source.add_argument("--download", action="store_true",
                        help="download the records from PhysioNet first, into OUT/raw/DB")
    b.add_argument("--out", type=entry.path, required=True, help="folder for the CSVs")
    b.add_argument("--split", default=None,
                   help="mitdb: intra (random 80/20 stratified by class; the default) or inter (de Chazal DS1/DS2)")
    b.add_argument("--seed", type=entry.seed, default=0, help="seed of the intra split")
    entry.add_verbose(b)
    return parser


def main(args: argparse.Namespace) -> None:
    check_db(args.db)
    if args.db == "ptbdb" and args.split is not None:
        raise DataError("--split applies to mitdb only; ptbdb is written as ptbdb_normal.csv and ptbdb_abnormal.csv.")
    records = download(args.db, args.out / "raw" / args.db) if args.download else args.records
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PhysioNetWarning)
        split = "intra" if args.split is None else args.split  # --split "" is an unknown split, not the default
        summary = build(args.db, records, args.out, split=split, seed=args.seed)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"{args.db}: {sum(summary['counts'].values())} beats from {len(summary['leads'])} records "
          f"({', '.join(f'{k} {v}' for k, v in summary['counts'].items())})")
    for name, info in summary["files"].items():
        print(f"  {args.out / name}: {info['rows']} rows, {len(info['records'])} records")


if __name__ == "__main__":
    sys.exit(entry.run(get_args_parser(), main))
