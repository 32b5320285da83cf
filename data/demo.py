"""Synthetic heartbeats in the exact format of the Kaggle "heartbeat" CSVs, for tests and demo runs.

    python -m data.demo --out input/ --rows 2000 --seed 0

Writes mitbih_train.csv (`rows` rows), mitbih_test.csv (about rows / 4), ptbdb_normal.csv and
ptbdb_abnormal.csv (together about rows / 6, 28% / 72%), as in the real set: no header, 187 samples in
[0, 1] then the label, every value written `%.18e`, 4,700 bytes a row, rows shuffled, classes as
imbalanced as the real ones. Beats are built like the real segments (Kachuee et al. 2018): they start
at an R peak, run for 1.2 times the local RR interval and are zero-padded to 187 samples. Each class
has its own P-QRS-T morphology, and every beat gets its own timing, amplitude, width, baseline wander
and noise, so that a small CNN learns the classes quickly while no single sample separates them.
A `demo.json` beside the files records the generator's parameters and the files' sha256, so the
loader can tell demo data from the real set.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from data import entry
from data.beats import kaggle_text
from data.files import refuse_foreign, write_bytes, written_by
from data.constants import (ARRHYTHMIA_CLASSES, BEAT_LEN, DEMO_MANIFEST, DEMO_ROWS, MITBIH_TEST, MITBIH_TRAIN,
                            PTB_ABNORMAL, PTB_NORMAL)

DEFAULT_ROWS = 2000
MIN_ROWS, MAX_ROWS = DEMO_ROWS
ROW_BYTES = 4700  # 188 values of 24 characters, 187 commas, one newline
DEMO_FILES = (MITBIH_TRAIN, MITBIH_TEST, PTB_NORMAL, PTB_ABNORMAL)  # what a demo folder holds besides demo.json
DEMO_GENERATOR = "data.demo"
DEMO_MARK = ("generator", DEMO_GENERATOR)  # demo.json's field that says data.demo wrote the folder

# Class shares of the real files: MIT-BIH train (N, S, V, F, Q) and PTB (normal, abnormal).
MITBIH_SHARES = (0.8277, 0.0254, 0.0661, 0.0073, 0.0735)
PTB_SHARES = (0.278, 0.722)
# Real sizes relative to mitbih_train.csv (87,554 rows).
TEST_RATIO = 21892 / 87554
PTB_RATIO = (4046 + 10506) / 87554
MIN_PER_CLASS = 6  # SMOTE's default k_neighbors=5 needs six beats of every class

_T = np.arange(BEAT_LEN, dtype=np.float64)


def _gauss(mu: np.ndarray, sigma: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """One Gaussian bump a beat: (n, 1) parameters -> (n, BEAT_LEN)."""
    return amp * np.exp(-0.5 * ((_T - mu) / sigma) ** 2)


def _col(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


def _normal_beat(rng, n, rr, r0, next_rr_factor, p_amp, st_amp=0.0, t_sign=1.0):
    """Narrow QRS at r0, a T wave (upright unless ``t_sign`` is -1), then the next beat's P and R; `rr` is the
    local RR interval."""
    u = lambda lo, hi: _col(rng.uniform(lo, hi, n))  # noqa: E731
    r_sigma = u(1.2, 2.6)
    x = _gauss(r0, r_sigma, u(0.9, 1.1))
    x += _gauss(r0 + u(2.8, 4.2), u(0.8, 1.5), -u(0.1, 0.35))  # S wave
    t_mu = r0 + 0.28 * rr + u(-4, 4)
    x += _gauss(t_mu, u(4.5, 8.0), t_sign * u(0.15, 0.4))  # T wave
    if np.any(st_amp):  # ST elevation: a plateau from the J point into the T wave
        j = r0 + u(4, 6)
        x += st_amp / (1 + np.exp(-(_T - j) / 1.2)) / (1 + np.exp((_T - t_mu) / 3.0))
    nxt = rr * next_rr_factor
    x += _gauss(nxt - u(16, 22), u(2.5, 4.0), p_amp)  # next P
    x += _gauss(nxt, r_sigma, u(0.8, 1.1))  # next R
    return x, nxt


def _ventricular_beat(rng, n, rr, r0):
    """Wide QRS of either polarity, discordant T, no P, compensatory pause (next R rarely in view)."""
    u = lambda lo, hi: _col(rng.uniform(lo, hi, n))  # noqa: E731
    polarity = _col(np.where(rng.random(n) < 0.65, 1.0, -1.0))
    x = _gauss(r0 + u(0, 2), u(3.2, 5.5), polarity * u(0.8, 1.2))
    x += _gauss(r0 + u(6, 9), u(2.5, 4.0), -polarity * u(0.2, 0.5))
    x += _gauss(r0 + 0.3 * rr + u(-3, 6), u(6, 10), -polarity * u(0.25, 0.55))  # discordant T
    nxt = rr * u(1.25, 1.45)
    x += _gauss(nxt, u(1.2, 2.0), u(0.8, 1.1))
    return x


def _paced_beat(rng, n, rr, r0):
    """Pacing spike before a wide QRS; the next paced beat (spike, then QRS) at a regular interval."""
    u = lambda lo, hi: _col(rng.uniform(lo, hi, n))  # noqa: E731
    x = _gauss(r0, u(2.8, 4.0), u(0.7, 1.0))
    x += _gauss(r0 + 0.3 * rr + u(-3, 3), u(6, 9), u(-0.35, 0.3))  # T of either polarity
    nxt = rr * u(0.97, 1.03)
    x += _gauss(nxt - u(2.5, 4.0), u(0.35, 0.6), u(0.8, 1.6))  # pacing spike
    x += _gauss(nxt + 4, u(2.8, 4.0), u(0.6, 0.9))
    spike_now = _col(rng.random(n) < 0.5)  # the current beat's spike is sometimes still in view
    x += spike_now * _gauss(r0 - 3 + u(0, 1.5), u(0.35, 0.6), u(0.6, 1.4))
    return x


def _arrhythmia_beats(rng, labels, rr, r0):
    n = len(labels)
    x = np.zeros((n, BEAT_LEN))
    for k in range(len(ARRHYTHMIA_CLASSES)):
        m = labels == k
        c, rr_k, r0_k = int(m.sum()), rr[m], r0[m]
        if c == 0:
            continue
        if k == 0:  # N: regular rhythm, upright P
            x[m], _ = _normal_beat(rng, c, rr_k, r0_k, _col(rng.uniform(0.93, 1.07, c)),
                                   _col(rng.uniform(0.07, 0.18, c)))
        elif k == 1:  # S: premature, the next beat comes early with an absent or inverted P
            x[m], _ = _normal_beat(rng, c, rr_k, r0_k, _col(rng.uniform(0.62, 0.8, c)),
                                   _col(rng.uniform(-0.2, -0.06, c)))
        elif k == 2:  # V
            x[m] = _ventricular_beat(rng, c, rr_k, r0_k)
        elif k == 3:  # F: fusion of a normal and a ventricular activation
            a = _col(rng.uniform(0.4, 0.6, c))
            nb, _ = _normal_beat(rng, c, rr_k, r0_k, _col(rng.uniform(0.95, 1.1, c)),
                                 _col(rng.uniform(0.04, 0.12, c)))
            x[m] = a * _ventricular_beat(rng, c, rr_k, r0_k) + (1 - a) * nb
        else:  # Q: paced
            x[m] = _paced_beat(rng, c, rr_k, r0_k)
    return x


def _mi_beats(rng, labels, rr, r0):
    """PTB beats: normal ones, and infarction ones with ST elevation, Q waves or inverted T."""
    n = len(labels)
    mi = _col(labels == 1)
    st = mi * _col(rng.uniform(0.12, 0.35, n))
    p = _col(rng.uniform(0.05, 0.18, n))
    t_sign = 1 - 2 * mi * _col(rng.random(n) < 0.5)  # half of them with the T wave inverted
    x, nxt = _normal_beat(rng, n, rr, r0, _col(rng.uniform(0.92, 1.08, n)), p, st_amp=st, t_sign=t_sign)
    q_wave = mi * _col(rng.random(n) < 0.6) * _col(rng.uniform(0.15, 0.4, n))
    x -= _gauss(nxt - _col(rng.uniform(2.5, 3.5, n)), _col(rng.uniform(0.9, 1.4, n)), q_wave)
    return x


def _finish(rng, x, rr):
    """Baseline wander and noise, scale to [0, 1] over the beat, zero-pad after 1.2 RR."""
    n = len(x)
    u = lambda lo, hi: _col(rng.uniform(lo, hi, n))  # noqa: E731
    x = x + u(0, 0.12) * np.sin(2 * np.pi * u(0.1, 0.5) * _T / 125 + u(0, 2 * np.pi))
    x += rng.normal(0.0, 1.0, x.shape) * u(0.008, 0.03)
    length = np.minimum(np.floor(1.2 * rr[:, 0] + rng.uniform(-4, 4, n)), BEAT_LEN).astype(int)
    inside = _T[None, :] < length[:, None]
    lo = np.where(inside, x, np.inf).min(axis=1, keepdims=True)
    hi = np.where(inside, x, -np.inf).max(axis=1, keepdims=True)
    top = u(0.85, 1.0)  # the real set scales 10-second windows, so a beat's peak is not always 1
    x = (x - lo) / (hi - lo) * top
    x = np.where(inside, np.clip(x, 0.0, 1.0), 0.0) + 0.0  # + 0.0 turns -0.0 into 0.0
    return x.astype(np.float32)


def _counts(total: int, shares) -> np.ndarray:
    counts = np.maximum(np.round(np.asarray(shares) * total).astype(int), MIN_PER_CLASS)
    counts[0] += total - counts.sum()  # the majority class takes the rounding
    return counts


def make_beats(kind: str, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`rows` shuffled beats of `kind` ("mitbih", "ptb_normal", "ptb_abnormal"): x float32, y int64."""
    if kind == "mitbih":
        y = np.repeat(np.arange(len(MITBIH_SHARES)), _counts(rows, MITBIH_SHARES))
    else:
        y = np.full(rows, int(kind == "ptb_abnormal"))
    y = rng.permutation(y)
    rr = _col(rng.normal(100, 14, rows).clip(72, 150))  # local RR interval in samples (48-104 bpm)
    r0 = _col(rng.uniform(0, 6, rows))  # the segment starts on, or just before, the R peak
    x = _arrhythmia_beats(rng, y, rr, r0) if kind == "mitbih" else _mi_beats(rng, y, rr, r0)
    return _finish(rng, x, rr), y.astype(np.int64)


def format_rows(x: np.ndarray, y: np.ndarray) -> bytes:
    """The Kaggle text form: 187 samples then the label, each `%.18e`, comma-separated, one row a line."""
    text = kaggle_text(x, y).encode("ascii")
    if len(text) != ROW_BYTES * len(x):  # a value outside [0, 10) would change the row width
        raise ValueError("demo rows must be 4,700 bytes each; a value left [0, 1]")
    return text


def demo_sizes(rows: int) -> dict[str, int]:
    """Rows of each file for a demo of `rows` mitbih_train rows (the real set's proportions)."""
    ptb = max(round(rows * PTB_RATIO), 4 * MIN_PER_CLASS)
    normal = max(round(ptb * PTB_SHARES[0]), 2 * MIN_PER_CLASS)
    return {MITBIH_TRAIN: rows, MITBIH_TEST: max(round(rows * TEST_RATIO), len(MITBIH_SHARES) * MIN_PER_CLASS),
            PTB_NORMAL: normal, PTB_ABNORMAL: max(ptb - normal, 2 * MIN_PER_CLASS)}


def write_demo(out_dir, *, rows: int = DEFAULT_ROWS, seed: int = 0, replace: bool = False) -> dict[str, Path]:
    """Write the four demo CSVs (and demo.json) into `out_dir`; returns {file name: path}.

    `rows` is the size of mitbih_train.csv; the other files follow the real set's proportions.
    The same rows and seed give byte-identical files. CSVs of those names that no demo.json lists are not
    written over (ValueError) unless ``replace``.
    """
    if int(rows) != rows or not MIN_ROWS <= rows <= MAX_ROWS:
        raise ValueError(f"demo rows must be an integer from {MIN_ROWS} to {MAX_ROWS:,}, got {rows!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; the demo CSVs are written into a folder: give a folder's path")
    if not replace:
        refuse_foreign(out, DEMO_FILES, DEMO_MANIFEST, "data.demo", DEMO_MARK)
    out.mkdir(parents=True, exist_ok=True)
    kinds = dict(zip(DEMO_FILES, ("mitbih", "mitbih", "ptb_normal", "ptb_abnormal")))
    streams = np.random.SeedSequence(seed).spawn(len(kinds))  # one stream a file: sizes don't interact
    paths, digests = {}, {}
    manifest = {"generator": DEMO_GENERATOR, "rows": int(rows), "seed": int(seed), "sha256": digests}
    # First a demo.json without digests: a write cut short leaves files that are data.demo's (rewritten by
    # ensure_demo, never refused as someone else's) but not a set that ensure_demo would accept.
    write_bytes(out / DEMO_MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    for (name, kind), stream in zip(kinds.items(), streams):
        x, y = make_beats(kind, demo_sizes(rows)[name], np.random.default_rng(stream))
        text = format_rows(x, y)
        paths[name] = out / name
        write_bytes(paths[name], text)
        digests[name] = hashlib.sha256(text).hexdigest()
    write_bytes(out / DEMO_MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())  # now with every digest
    return paths


def ensure_demo(out_dir, *, rows: int = DEFAULT_ROWS, seed: int = 0) -> Path:
    """`out_dir` holding the demo set of `rows` and `seed`: kept if its files match demo.json, else (re)written.

    demo.json is written last, so an interrupted write never leaves files that this check would accept.
    """
    out = Path(out_dir)
    manifest = written_by(out / DEMO_MANIFEST, DEMO_MARK)  # None: not data.demo's
    digests = manifest.get("sha256") if manifest is not None else None
    try:
        intact = (isinstance(digests, dict) and set(digests) == set(DEMO_FILES)
                  and (manifest.get("rows"), manifest.get("seed")) == (rows, seed)
                  and all(hashlib.sha256((out / name).read_bytes()).hexdigest() == digests[name] for name in digests))
    except OSError:
        intact = False
    if not intact:  # a demo cut short is rewritten; CSVs that data.demo did not write are refused, not replaced
        write_demo(out, rows=rows, seed=seed, replace=manifest is not None)
    return out


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write synthetic heartbeat CSVs in the Kaggle format.")
    parser.add_argument("--out", type=entry.path, default=Path("input"),
                        help="folder to write the four CSVs into (default: input)")
    parser.add_argument("--rows", type=entry.demo_rows, default=DEFAULT_ROWS,
                        help=f"rows of mitbih_train.csv; the other files scale with it (default: {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=entry.seed, default=0, help="random seed, 0 or more (default: 0)")
    entry.add_verbose(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    paths = write_demo(args.out, rows=args.rows, seed=args.seed)
    for name, path in paths.items():
        print(f"{path}: {path.stat().st_size // ROW_BYTES:,} rows")


if __name__ == "__main__":
    sys.exit(entry.run(get_args_parser(), main))
