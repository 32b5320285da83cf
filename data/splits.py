"""Train, validation and test splits of a task, seeded, stratified and disjoint, optionally oversampled.

    data = prepare_task("arrhythmia", "input", seed=0, oversample="smote")
    print(data.summary())

arrhythmia: train and validation come from mitbih_train.csv (validation: `val_fraction`, stratified,
    seeded; in a folder data.physionet built with the inter-patient split, whole records: data/records.py);
    test is mitbih_test.csv.
mi: the pool is the rows of ptbdb_abnormal.csv followed by those of ptbdb_normal.csv; the test set is
    made exactly as the original project made it, `train_test_split(test_size=0.2, random_state=1,
    stratify=y)` over that pool, whatever the seed, so test sets are comparable with the published
    numbers; validation (`val_fraction` of the rest, stratified, seeded) is carved from the rest.

With `rhythm=True` (a folder data.physionet built), each beat's x gains the RR-interval features of data/rhythm.py
after its BEAT_LEN samples.

Split.index holds each beat's row in its source pool (0-based; for mi, rows of ptbdb_abnormal.csv come
first), -1 for a synthetic oversampled beat; TaskData.pools says which pool each split indexes.
Only the training split is ever oversampled. Arrays are read-only: consumers never modify in place.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from data import cache
from data.beats import BeatFile, DataError, load_beat_file
from data.checks import check_classes, check_constant, check_overlap
from data.files import atomic_write, write_text
from data.constants import (BEAT_LEN, DEMO_MANIFEST, KAGGLE_FILES, MITBIH_TEST, MITBIH_TRAIN, OVERSAMPLING, PTB_ABNORMAL,
                            PHYSIONET_BUILD, PTB_NORMAL, TASK_CLASSES, TASK_FILES, TASKS)
from data.oversample import oversample_arrays
from data.records import check_built_pair, read_records, record_split
from data.rhythm import VERSION as RHYTHM_VERSION, rhythm_features

SPLIT_VERSION = 1  # bump when the way splits are drawn changes: it is part of every fingerprint
MI_TEST_SIZE, MI_TEST_RANDOM_STATE = 0.2, 1  # the original project's split, kept for comparability


@dataclass(frozen=True, eq=False)
class Split:
    """Beats of one split: x float32 (n, BEAT_LEN), or (n, BEAT_LEN + len(rhythm.FEATURES)) with the RR-interval
    features; y int64 (n,), index int64 (n,) into the source pool."""
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.y, minlength=num_classes)


@dataclass(frozen=True, eq=False)
class TaskData:
    task: str
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    oversample: str
    seed: int
    val_fraction: float
    fingerprint: str  # over the source files' content hashes, the split parameters and the oversampling
    source: str  # "kaggle", "demo", or where else the files came from
    pools: dict = field(default_factory=dict)  # split name -> what its `index` counts rows of
    files: dict = field(default_factory=dict)  # source file name -> its sha256 (data.beats: its fingerprint)
    val_records: tuple[str, ...] = ()  # validation by record (an inter-patient build): the records held out
    rhythm: bool = False  # x holds the RR-interval features (data/rhythm.py) after the samples

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        """One line: beats per split and class."""
        def describe(split: Split) -> str:
            counts = split.counts(self.num_classes)
            return f"{len(split):,} (" + " ".join(f"{c} {n:,}" for c, n in zip(self.class_names, counts)) + ")"
        by = f" (records {' '.join(self.val_records)})" if self.val_records else ""
        rhythm = ", RR features" if self.rhythm else ""
        return (f"{self.task} [{self.source}{rhythm}, oversample={self.oversample}, seed={self.seed}]: "
                f"train {describe(self.train)}, val {describe(self.val)}{by}, test {describe(self.test)}")


def has_task_files(task: str, input_dir="input") -> bool:
    """Whether `input_dir` holds every file the task needs."""
    _check_task(task)
    return all((Path(input_dir) / name).is_file() for name in TASK_FILES[task])


def prepare_task(task: str, input_dir="input", *, seed: int = 0, val_fraction: float = 0.1,
                 oversample: str = "none", cache_dir=None, limit: int | None = None, rhythm: bool = False) -> TaskData:
    """Load the task's files and split them; see the module doc.

    limit: keep at most `limit` beats of each source pool (stratified, seeded) before splitting, for
    quick debugging runs. cache_dir: where parsed files and oversampled sets are cached (default
    `<input_dir>/.cache`). rhythm: append each beat's RR-interval features (data/rhythm.py) to its samples.
    """
    _check_task(task)
    val_records: tuple[str, ...] = ()
    if oversample not in OVERSAMPLING:
        raise ValueError(f"unknown oversampling {oversample!r}; choose one of {', '.join(OVERSAMPLING)}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    limit = None if limit is None else int(limit)
    input_dir = Path(input_dir)
    cache_dir = cache.default_cache_dir(input_dir) if cache_dir is None else Path(cache_dir)
    files = {name: load_beat_file(input_dir / name, cache_dir) for name in TASK_FILES[task]}
    inputs = {name: f.x for name, f in files.items()}
    by_record = task == "arrhythmia" and built_split(input_dir) == "inter"
    side_sha256 = {name: check_built_pair(input_dir / name, files[name].sha256)  # the side files read below
                   for name in (list(files) if rhythm else [MITBIH_TRAIN] if by_record else [])}
    if rhythm:
        features = rhythm_features([input_dir / name for name in files], [len(f.y) for f in files.values()],
                                   [f.y for f in files.values()])
        inputs = {name: np.hstack([f.x, rr]) for (name, f), rr in zip(files.items(), features)}

    if task == "arrhythmia":
        pool, test_pool = files[MITBIH_TRAIN], files[MITBIH_TEST]
        x, y = inputs[MITBIH_TRAIN], pool.y
        rows = _subsample(y, limit, seed)
        if by_record:
            records = read_records(input_dir / MITBIH_TRAIN, len(y), y)
            train_idx, val_idx, val_records = record_split(rows, y, records, val_fraction, seed)
        else:
            train_idx, val_idx = _stratified_split(rows, y, val_fraction, seed, "validation")
        test_rows = _subsample(test_pool.y, limit, seed)
        test = _split(inputs[MITBIH_TEST], test_pool.y, test_rows)
        pools = {"train": MITBIH_TRAIN, "val": MITBIH_TRAIN, "test": MITBIH_TEST}
    else:
        abnormal, normal = files[PTB_ABNORMAL], files[PTB_NORMAL]
        x, y = np.concatenate([inputs[PTB_ABNORMAL], inputs[PTB_NORMAL]]), np.concatenate([abnormal.y, normal.y])
        rows = _subsample(y, limit, seed)
        rest, test_idx = _stratified_split(rows, y, MI_TEST_SIZE, MI_TEST_RANDOM_STATE, "test")
        train_idx, val_idx = _stratified_split(rest, y, val_fraction, seed, "validation")
        test = _split(x, y, test_idx)
        n = len(abnormal.y)
        mi_pool = f"{PTB_ABNORMAL} row r is index r (r < {n}), then {PTB_NORMAL} row r is index {n} + r"
        pools = {"train": mi_pool, "val": mi_pool, "test": mi_pool}

    for name, beats in files.items():
        check_constant(name, beats.x)
    train = _split(x, y, train_idx)
    check_classes(task, train.y, TASK_CLASSES[task], " and ".join(files))
    check_overlap(task, train.x[:, :BEAT_LEN], test.x[:, :BEAT_LEN],
                  lambda i: _where(pools["test"], test.index[i], files))
    split_key = {"version": SPLIT_VERSION, "task": task, "files": {n: f.sha256 for n, f in files.items()},
                 "seed": int(seed), "val_fraction": float(val_fraction), "limit": limit,
                 **({"val_records": list(val_records)} if val_records else {}),
                 **({"rhythm": {"version": RHYTHM_VERSION, "side_files": [side_sha256[n] for n in files]}}
                    if rhythm else {})}
    split_fingerprint = _digest(split_key)
    plain_fingerprint = _digest({"split": split_fingerprint, "oversample": "none"})
    if oversample != "none":  # cached under the fingerprint of the data it starts from
        x_res, y_res, origin = oversample_arrays(train.x, train.y, oversample, seed=seed,
                                                 key=plain_fingerprint, cache_dir=cache_dir)
        index = np.where(origin >= 0, train.index[np.maximum(origin, 0)], -1)
        train = _frozen(Split(x_res, y_res, index))
    fingerprint = (plain_fingerprint if oversample == "none" else
                   _digest({"split": split_fingerprint, "oversample": oversample, **_library_version()}))
    return TaskData(task=task, train=train, val=_split(x, y, val_idx), test=test,
                    class_names=TASK_CLASSES[task], oversample=oversample, seed=int(seed),
                    val_fraction=float(val_fraction), fingerprint=fingerprint,
                    source=describe_source(input_dir, files), pools=pools,
                    files={name: f.sha256 for name, f in files.items()}, val_records=val_records, rhythm=rhythm)


def _where(pool: str, index: int, files: dict) -> str:
    """A pool row as a file and its row (1-based), for messages."""
    if pool in files:
        return f"{pool} row {index + 1}"
    abnormal = len(files[PTB_ABNORMAL].y)
    return f"{PTB_ABNORMAL} row {index + 1}" if index < abnormal else f"{PTB_NORMAL} row {index - abnormal + 1}"


SPLIT_NAMES = ("train", "val", "test")  # the row arrays of a split-indices file, beside its info


def save_split_indices(data: TaskData, path) -> Path:
    """Write the source rows of every split (JSON, or .npz by suffix) so a result traces to its exact split."""
    info = {"format": "ecg-split-indices", "version": 1, "task": data.task, "fingerprint": data.fingerprint,
            "source": data.source, "seed": data.seed, "val_fraction": data.val_fraction,
            "oversample": data.oversample, "pools": data.pools, "val_records": list(data.val_records),
            "note": "0-based rows of each split's pool; -1 marks a synthetic oversampled beat"}
    splits = {name: getattr(data, name).index for name in SPLIT_NAMES}
    if Path(path).suffix == ".npz":
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, info=np.array(json.dumps(info)), **splits)
        return atomic_write(path, write)
    return write_text(path, json.dumps({**info, **{k: v.tolist() for k, v in splits.items()}}) + "\n")


def read_split_info(path) -> dict:
    """What save_split_indices wrote beside the rows (task, seed, val_records and the rest), from either format."""
    if Path(path).suffix != ".npz":
        return {name: value for name, value in json.loads(Path(path).read_text()).items() if name not in SPLIT_NAMES}
    with np.load(path) as saved:
        return json.loads(str(saved["info"]))


def built_split(input_dir: Path) -> str | None:
    """The split of a mitdb folder data.physionet built ("intra" or "inter"); None for any other folder."""
    try:
        built = json.loads((Path(input_dir) / PHYSIONET_BUILD).read_text())
        return built["split"] if built.get("db") == "mitdb" and built.get("split") in ("intra", "inter") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def describe_source(input_dir: Path, files: dict[str, BeatFile]) -> str:
    """"kaggle" when every file is the Kaggle original (a CRLF copy included), "demo" when written by
    data.demo, else a description."""
    if all(KAGGLE_FILES.get(name, (0, ""))[1] == f.sha256 for name, f in files.items()):
        return "kaggle"
    try:
        demo = json.loads((input_dir / DEMO_MANIFEST).read_text())
        if all(demo["sha256"].get(name) == f.sha256 for name, f in files.items()):
            return "demo"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    try:  # built from the raw records by data.physionet: say which database and which split
        built = json.loads((input_dir / PHYSIONET_BUILD).read_text())
        if all(built["files"][name]["rows"] == len(f.y) for name, f in files.items()):
            split = f", {built['split']} split" if built.get("split") else ""
            return f"physionet {built['db']}{split} (built by data.physionet in {input_dir})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return f"local files in {input_dir} (not the Kaggle originals)"


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _library_version() -> dict:
    """What made an oversampled training split, beside how: another imbalanced-learn may sample otherwise."""
    import imblearn
    return {"imblearn": imblearn.__version__}


def _frozen(split: Split) -> Split:
    for array in (split.x, split.y, split.index):
        array.flags.writeable = False
    return split


def _split(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> Split:
    rows = np.asarray(rows, dtype=np.int64)
    return _frozen(Split(np.ascontiguousarray(x[rows], dtype=np.float32).reshape(-1, x.shape[1]),
                         y[rows].astype(np.int64), rows.copy()))


def _stratified_split(rows: np.ndarray, y: np.ndarray, fraction: float, random_state: int,
                      what: str) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held-out) of `rows`, stratified by label, as sklearn's train_test_split draws it."""
    try:
        rest, held = train_test_split(rows, test_size=fraction, random_state=random_state, stratify=y[rows])
    except ValueError as exc:
        # A large share leaves too few beats of a class on the other side: then the share is what to lower.
        share = (f"{'lower' if fraction > 0.5 else 'raise'} the validation share (--val-fraction), or "
                 if what == "validation" else "")
        raise DataError(f"cannot draw a stratified {what} set of {fraction:g} from {len(rows)} beats ({exc}); "
                        f"{share}raise the beats kept (--limit, the limit argument), or give more data") from None
    return np.asarray(rest, dtype=np.int64), np.asarray(held, dtype=np.int64)


def _subsample(y: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted rows of a stratified random subset of at most `limit` beats (all rows without a limit).

    Classes keep their shares (largest remainders), but every class keeps at least 3 beats where it has
    them, so that the later stratified splits still find each class (so a tiny limit may be exceeded).
    """
    n = len(y)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * limit / n
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota)[: limit - take.sum()]] += 1  # largest remainders first
    take = np.maximum(take, np.minimum(counts, 3))
    largest = np.argmax(take)  # pays for the minimums, down to 3 beats itself
    take[largest] = max(take[largest] - max(take.sum() - limit, 0), min(counts[largest], 3))
    rows = [rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(rows)).astype(np.int64)
