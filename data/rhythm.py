"""RR intervals beside each beat: the timing a Kaggle-format beat lacks.

A Kaggle-format beat runs from its R peak over 1.2 local median RR intervals (data/physionet.py), so it shows the
beat's shape and the local heart rate, but not how early or late the beat came. That timing is what tells most
supraventricular (S) beats from normal ones: they are premature, with a shape often much like N. De Chazal et al.
(2004) gave their inter-patient classifier RR intervals beside the shape, and so does `--rhythm` here.

A PhysioNet build names every row's record and R-peak sample in its side file (data/records.py), so the intervals are
known. Per record (the rows of all the build's files together: the intra split puts beats of one record in both),
in the order of its R peaks:
    pre   = this R peak minus the previous one   (the record's first beat: post)
    post  = the next R peak minus this one        (the record's last beat kept: pre, as the build drops the last)
    local = the mean of pre over the 11 beats centred on this one
    mean  = the mean of pre over the record
Like de Chazal et al.'s, these are offline features: local and mean look at later beats of the record too (a test
record's own beats, never another record's). A record with one beat kept has no interval: its features are 0, a
steady rhythm's.
The features (FEATURES) are log ratios, so a patient's own rate is the unit and no sampling rate is needed:
log(pre/local), log(post/local), log(pre/mean), log(post/mean), log(local/mean), each times SCALE (their spread over
MIT-BIH's DS1 beats is about 1/6), float32. The Kaggle CSVs have no side files, and so no features.
"""

from pathlib import Path

import numpy as np

from data.beats import DataError
from data.records import read_side, side_file

FEATURES = ("pre/local", "post/local", "pre/mean", "post/mean", "local/mean")
VERSION = 1  # bump when the features change: it is part of the data fingerprint (data/splits.py)
LOCAL_BEATS = 11
SCALE = 6.0


def record_features(samples: np.ndarray) -> np.ndarray:
    """FEATURES of one record's beats, given their R-peak samples in the record's order (at least two beats)."""
    rr = np.diff(samples).astype(np.float64)
    pre = np.concatenate([rr[:1], rr])
    post = np.concatenate([rr, rr[-1:]])
    half = LOCAL_BEATS // 2
    local = np.convolve(np.pad(pre, half, mode="edge"), np.ones(LOCAL_BEATS) / LOCAL_BEATS, mode="valid")
    mean = pre.mean()
    ratios = np.stack([pre / local, post / local, pre / mean, post / mean, local / mean], axis=1)
    return (SCALE * np.log(ratios)).astype(np.float32)


def rhythm_features(paths: list[Path], rows: list[int], labels: list | None = None) -> list[np.ndarray]:
    """FEATURES (float32, (n, len(FEATURES))) of every row of each built CSV in ``paths`` (``rows`` rows each), from
    their side files; every record's intervals are taken over the rows of all the files. ``labels``: each CSV's
    classes, checked against its side file's (data.records.read_side)."""
    sides = []
    for path, n, y in zip(paths, rows, labels or [None] * len(paths)):
        if not side_file(path).is_file():
            raise DataError(f"--rhythm needs each beat's R-peak position, which a data.physionet build writes beside "
                            f"its CSVs; {side_file(path)} does not exist (the Kaggle CSVs carry no RR intervals)")
        sides.append(read_side(path, n, y))
    records = np.concatenate([records for records, _ in sides])
    samples = np.concatenate([samples for _, samples in sides])
    features = np.zeros((len(records), len(FEATURES)), np.float32)
    for name in np.unique(records):
        at = np.flatnonzero(records == name)
        at = at[np.argsort(samples[at], kind="stable")]
        if len(at) < 2:
            continue  # no interval: a steady rhythm's zeros
        if np.any(np.diff(samples[at]) <= 0):
            raise DataError(f"record {name} has two beats at one R-peak sample in "
                            f"{', '.join(str(side_file(p)) for p in paths)}; RR intervals need distinct R peaks: "
                            "build the folder again")
        features[at] = record_features(samples[at])
    return np.split(features, np.cumsum(rows)[:-1])
