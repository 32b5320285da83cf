"""Validation by record: the inter-patient protocol holds out whole training records, never beats of them.

A PhysioNet build (data.physionet) writes beside each CSV a side file, `<stem>.beats.csv`, naming every row's
record. With the `inter` split, de Chazal et al.'s (2004) DS1 trains and DS2 tests, and a validation set drawn from
DS1's beats at random would be intra-patient: the epoch would be chosen on patients the model trains on. So there
validation is whole DS1 records (data.splits.prepare_task calls `record_split`):

  1. Records that hold more than half of some class's beats are kept for training where another record has that
     class (record 208 holds 373 of DS1's 415 F beats: holding it out would leave training almost without F).
  2. For each class, rarest first, while validation holds fewer than half its share of that class's beats (at
     least one): a record that has the class, drawn at random (seeded, in proportion to its beats of the class)
     among those rule 1 allows (among all that have it where it allows none).
  3. Then records drawn at random (seeded; those of rule 1 last) until validation holds `fraction` of the beats.
"""

import json
from pathlib import Path

import numpy as np

from data.beats import DataError, content_sha256
from data.constants import PHYSIONET_BUILD, TASK_CLASSES

SIDE_COLUMNS = ("row", "record", "sample", "symbol", "label")  # the side file's header, as data.physionet writes it


def side_file(path: Path) -> Path:
    """The side file beside a built CSV: mitbih_train.csv -> mitbih_train.beats.csv."""
    path = Path(path)
    return path.with_name(path.stem + ".beats.csv")


def check_built_pair(path: Path, sha256: str) -> str | None:
    """The CSV ``path`` (content sha256 ``sha256``) and its side file are the pair data.physionet built: both match
    the digests its physionet_build.json gives. Rows of a build are ordered by class, so a side file of another
    build of the same records (another --seed of the intra split) has the same labels and rows; only the digests
    tell them apart. A build written before the digests existed is checked by row count and labels alone.
    Returns the side file's sha256 (None where it is absent: read_side says so)."""
    side = side_file(path)
    side_sha256 = content_sha256(side)[0] if side.is_file() else None
    try:
        built = json.loads((path.parent / PHYSIONET_BUILD).read_text())["files"][path.name]
        expected = {"CSV": (path, sha256, built.get("sha256")),
                    "side file": (side, side_sha256, built.get("side_sha256"))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return side_sha256  # not a build of data.physionet
    for what, (file, actual, digest) in expected.items():
        if digest is not None and actual is not None and actual != digest:
            raise DataError(f"{file} is not the {what} data.physionet built there (sha256 {actual[:12]}..., its "
                            f"{PHYSIONET_BUILD} says {digest[:12]}...): its beats and R peaks may not be the side "
                            "file's; build the folder again")
    return side_sha256


def read_records(path: Path, rows: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Each row's record name (str array) from the side file of the CSV ``path``, which holds ``rows`` rows."""
    return read_side(path, rows, labels)[0]


def read_side(path: Path, rows: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(record names, R-peak samples as int64) of every row of the CSV ``path`` (``rows`` rows), from its side file.
    ``labels``, the CSV's class of each row (0-4, N S V F Q), where given must be the side file's: with the row
    count, that refuses a side file of another data set; one of another build of the same records has the same
    labels (a build orders its rows by class), and check_built_pair refuses it."""
    side = side_file(path)
    try:
        lines = side.read_text().splitlines()
    except OSError as error:
        raise DataError(f"{side}: cannot be read ({error.strerror or error}); it is the side file data.physionet "
                        "writes beside the CSV (validation by record and --rhythm read it): build the folder "
                        "again") from None
    if not lines or tuple(lines[0].split(",")) != SIDE_COLUMNS:
        raise DataError(f"{side}: the header is not {','.join(SIDE_COLUMNS)}; build the folder again")
    fields = [line.split(",") for line in lines[1:]]
    bad = next((i for i, f in enumerate(fields)
                if len(f) != len(SIDE_COLUMNS) or f[0] != str(i) or not f[2].isdigit()), None)
    if bad is not None:
        raise DataError(f"{side}: row {bad + 2} does not describe row {bad + 1} of {path}; build the folder again")
    if len(fields) != rows:
        raise DataError(f"{side}: it describes {len(fields)} rows, the CSV holds {rows}; build the folder again")
    if labels is not None:
        names = np.array(TASK_CLASSES["arrhythmia"])[np.asarray(labels)]
        wrong = np.flatnonzero(np.array([f[4] for f in fields]) != names)
        if wrong.size:
            i = int(wrong[0])
            raise DataError(f"{side}: row {i + 2} gives label {fields[i][4]}, but row {i + 1} of {path} is "
                            f"{names[i]}: the side file is not this CSV's; build the folder again")
    return np.array([f[1] for f in fields]), np.array([int(f[2]) for f in fields], dtype=np.int64)


def record_split(rows: np.ndarray, y: np.ndarray, records: np.ndarray, fraction: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(training rows, validation rows, validation records) of ``rows``: whole records, as the module doc says."""
    names, which = np.unique(records[rows], return_inverse=True)
    if len(names) < 2:
        raise DataError(f"validation by record needs at least two training records; the training file holds "
                        f"{len(names)} ({', '.join(names)})")
    classes = np.unique(y[rows])
    table = np.zeros((len(names), int(classes.max()) + 1), dtype=np.int64)
    np.add.at(table, (which, y[rows]), 1)
    totals = table.sum(0)
    dominant = (table > totals / 2).any(1)  # rule 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    need = np.maximum(1, np.ceil(fraction * totals / 2))  # rule 2: half a class's share of validation
    for c in sorted(classes, key=lambda c: (totals[c], c)):
        while table[chosen, c].sum() < need[c] and len(chosen) + 1 < len(names):
            having = [r for r in range(len(names)) if table[r, c] and r not in chosen]
            allowed = [r for r in having if not dominant[r]] or having
            if not allowed:
                break
            weights = table[allowed, c] / table[allowed, c].sum()
            chosen.append(int(rng.choice(allowed, p=weights)))
    order = rng.permutation(len(names))
    rest = [int(r) for r in order if r not in chosen and not dominant[r]] + \
        [int(r) for r in order if r not in chosen and dominant[r]]
    while table[chosen].sum() < fraction * len(rows) and len(rest) > 1:  # rule 3; training keeps a record
        chosen.append(rest.pop(0))
    held = np.isin(which, chosen)
    return rows[~held], rows[held], tuple(sorted(str(names[r]) for r in chosen))
