"""Oversampling of a training split: none, SMOTE, or SMOTE followed by Tomek-link removal; cached.

`smote` is imbalanced-learn's SMOTE: every class is raised to the size of the largest one with
synthetic beats interpolated between a beat and one of its k nearest neighbours of the same class.
`smote-tomek` is imbalanced-learn's SMOTETomek (what the original project ran and called "smote"):
SMOTE, then both beats of every Tomek link (two beats of different classes that are each other's
nearest neighbour) are removed, so the classes end up nearly, not exactly, balanced.

Only ever applied to the training split. The Tomek-link search over the whole oversampled set is
the expensive part (minutes at full size), so the result is cached, keyed by the split's
fingerprint, the method, the seed and the library version, with the atomic writes of data.cache.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from data import cache
from data.constants import OVERSAMPLING
from data.beats import DataError

K_NEIGHBORS = 5  # imbalanced-learn's default


def resample(x: np.ndarray, y: np.ndarray, method: str, *, seed: int,
             n_jobs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Oversample (x, y); returns (x, y, origin): origin[i] is the input row of output row i, -1 if synthetic.

    Beats keep their dtype. `n_jobs` goes to the nearest-neighbour search of the Tomek-link step
    (default: all cores); for dense beats scikit-learn already runs that search on every core with
    OpenMP, so it matters only on its joblib code paths.
    """
    if method not in OVERSAMPLING:
        raise ValueError(f"unknown oversampling method {method!r}; choose one of {', '.join(OVERSAMPLING)}")
    n = len(y)
    if method == "none":
        return x, y, np.arange(n, dtype=np.int64)
    from imblearn.combine import SMOTETomek
    from imblearn.over_sampling import SMOTE
    from imblearn.under_sampling import TomekLinks

    counts = np.bincount(y)
    smallest = counts[counts > 0].min()
    if smallest < 2:
        raise DataError(f"cannot oversample with {method}: a class of the training split has a single beat "
                        "(raise the beats kept: --limit, the limit argument; or give more data)")
    smote = SMOTE(random_state=seed, k_neighbors=min(K_NEIGHBORS, int(smallest) - 1))
    if method == "smote":
        x_res, y_res = smote.fit_resample(x, y)
        keep = np.arange(len(y_res))
    else:
        sampler = SMOTETomek(smote=smote, tomek=TomekLinks(sampling_strategy="all", n_jobs=n_jobs or os.cpu_count()),
                             random_state=seed)
        x_res, y_res = sampler.fit_resample(x, y)
        keep = sampler.tomek_.sample_indices_
    # SMOTE returns the input rows first, in order, then the synthetic ones; Tomek removal keeps order.
    origin = np.where(keep < n, keep, -1).astype(np.int64)
    return np.asarray(x_res, dtype=x.dtype), np.asarray(y_res, dtype=y.dtype), origin


def oversample_arrays(x: np.ndarray, y: np.ndarray, method: str, *, seed: int, key: str | None = None,
                      cache_dir=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """resample(), cached in `cache_dir` under `key` (a fingerprint of x and y) when both are given.

    A cached x is a read-only view of the cache file (see data.cache.read_entry).
    """
    if method == "none" or key is None or cache_dir is None:
        return resample(x, y, method, seed=seed)
    import imblearn

    entry_key = {"data": key, "method": method, "seed": int(seed), "imblearn": imblearn.__version__,
                 "rows": int(len(y))}
    tag = hashlib.sha256(json.dumps(entry_key, sort_keys=True).encode()).hexdigest()[:16]
    entry = Path(cache_dir) / f"oversample-{method}-{tag}{cache.SUFFIX}"
    # The beats are mapped from the cache file rather than read: an oversampled training set is
    # several hundred MB, and mapping it costs nothing until (and unless) a page is used.
    hit = cache.read_entry(entry, entry_key, mmap=("x",))
    if hit is not None:
        arrays, _ = hit
        return arrays["x"], arrays["y"], arrays["origin"]
    x_res, y_res, origin = resample(x, y, method, seed=seed)
    cache.write_entry(entry, {"x": x_res, "y": y_res, "origin": origin}, entry_key)
    return x_res, y_res, origin
