"""Load one heartbeat CSV into arrays: validated, and cached after the first parse.

    x, y = load_beats("input/mitbih_train.csv")   # x float32 (n, 187), y int64 (n,)

A file is read with pandas' C parser (about 0.6 s and 0.8 GB peak for the 411 MB mitbih_train.csv).
When that parse fails or its result breaks a rule, a slow line-by-line scan finds the first
offending row and column, so every bad file raises one DataError sentence that names the file,
the row and the column. Rows and columns count from 1, as an editor shows them (the files have no
header, so row N is line N); column 188 is the label. Blank lines and a UTF-8 byte-order mark are
skipped, as pandas does.

Labels must be integers in the file's range: 0..4 for mitbih_*.csv, 0 for ptbdb_normal.csv, 1 for
ptbdb_abnormal.csv. A file with any other name is taken for MIT-BIH-like data and allowed 0..4
(which also covers the PTB labels). Samples outside [0, 1] are accepted with one warning; a sample beyond
float32's range (finite in the text, infinite in the arrays the models train on) is an error.

The cache entry for a CSV is keyed by its name, size, mtime, ctime and a hash of 64 blocks spread
over the file, so any rewrite of the file (which always updates ctime) invalidates it without
reading the whole file on every load. The entry also holds the sha256 of the file's content with
CRLF line endings read as LF: that is the file's fingerprint, equal for a CRLF copy of the same data.
"""

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data import cache, files
from data.constants import (ARRHYTHMIA_CLASSES, BEAT_LEN, KAGGLE_DATASET, MITBIH_TEST, MITBIH_TRAIN,
                            PTB_ABNORMAL, PTB_NORMAL)

N_COLUMNS = BEAT_LEN + 1  # 187 samples, then the label
LABEL_COLUMN = N_COLUMNS  # 1-based, as in the messages
MITBIH_LABELS = tuple(range(len(ARRHYTHMIA_CLASSES)))
FILE_LABELS = {MITBIH_TRAIN: MITBIH_LABELS, MITBIH_TEST: MITBIH_LABELS, PTB_NORMAL: (0,), PTB_ABNORMAL: (1,)}
_SAMPLED_BLOCKS, _BLOCK = 64, 4096
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the samples' type: a larger magnitude becomes infinite


class DataError(ValueError):
    """A data file is missing or malformed; the message is one sentence naming file, row and column."""


@dataclass(frozen=True, eq=False)
class BeatFile:
    """One parsed CSV: the arrays plus what identifies them."""
    path: Path
    x: np.ndarray  # float32 (n, BEAT_LEN)
    y: np.ndarray  # int64 (n,)
    sha256: str  # of the content with CRLF read as LF: the file's data fingerprint
    crlf: bool  # the file uses CRLF line endings
    from_cache: bool


def allowed_labels(path) -> tuple[int, ...]:
    """Labels a file may hold, by its name (0..4 for names this project does not know)."""
    return FILE_LABELS.get(Path(path).name, MITBIH_LABELS)


def content_sha256(path) -> tuple[str, bool]:
    """sha256 of the file's bytes with every CRLF read as LF, and whether it had CRLF line endings."""
    digest, crlf, pending = hashlib.sha256(), False, b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            chunk, pending = pending + chunk, b""
            if chunk.endswith(b"\r"):  # its \n may start the next chunk
                chunk, pending = chunk[:-1], b"\r"
            if b"\r\n" in chunk:
                crlf = True
                chunk = chunk.replace(b"\r\n", b"\n")
            digest.update(chunk)
    digest.update(pending)
    return digest.hexdigest(), crlf


def missing_file_message(path: Path) -> str:
    folder = path.parent.as_posix() or "."
    return (f"{path} does not exist: put the CSVs of the Kaggle data set {KAGGLE_DATASET} "
            f"(https://www.kaggle.com/datasets/{KAGGLE_DATASET}) in {folder}/, "
            f"for example with `python -m data.download --to {folder}`")


def kaggle_text(x: np.ndarray, y: np.ndarray) -> str:
    """Kaggle's text form of beats: float32 values as `%.18e`, comma-separated, the label last, one row a line."""
    rows = np.hstack([x.astype(np.float32), y[:, None].astype(np.float32)]).astype(np.float64)
    line = ",".join(["%.18e"] * rows.shape[1]) + "\n"
    # One %-format over many rows runs in C: as fast as np.savetxt, and the same text.
    return (line * len(rows)) % tuple(rows.ravel().tolist())


def load_beats(path, cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Samples (float32, (n, 187)) and labels (int64, (n,)) of one heartbeat CSV; see the module doc."""
    beats = load_beat_file(path, cache_dir)
    return beats.x, beats.y


def load_beat_file(path, cache_dir=None) -> BeatFile:
    """Like load_beats, with the file's fingerprint. `cache_dir` defaults to `.cache` beside the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(files.broken_link(path) or missing_file_message(path))
    if not path.is_file():
        raise DataError(f"{path} is not a file: expected a heartbeat CSV")
    cache_dir = cache.default_cache_dir(path.parent) if cache_dir is None else Path(cache_dir)
    key = _cache_key(path)
    entry = _entry_path(path, cache_dir, key)
    hit = cache.read_entry(entry, key)
    if hit is not None:
        arrays, info = hit
        _warn_outside(path, info["outside"])
        return BeatFile(path, arrays["x"], arrays["y"], info["sha256"], info["crlf"], from_cache=True)

    sha256, crlf = content_sha256(path)
    x, y, outside = _parse(path)
    _warn_outside(path, outside)
    if _cache_key(path) != key:  # rewritten while we read it: use what we read, but do not cache it
        return BeatFile(path, x, y, sha256, crlf, from_cache=False)
    if cache.write_entry(entry, {"x": x, "y": y}, key, {"sha256": sha256, "crlf": crlf, "outside": outside}):
        cache.prune(entry, prefix=entry.name.rsplit(".", 2)[0] + ".")
    return BeatFile(path, x, y, sha256, crlf, from_cache=False)


def _cache_key(path: Path) -> dict:
    st = path.stat()
    sample = hashlib.sha256()
    with open(path, "rb") as f:
        for i in range(_SAMPLED_BLOCKS):
            f.seek(max(st.st_size - _BLOCK, 0) * i // (_SAMPLED_BLOCKS - 1))
            sample.update(f.read(_BLOCK))
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "sampled_sha256": sample.hexdigest()}


def _entry_path(path: Path, cache_dir: Path, key: dict) -> Path:
    # The folder tag keeps two input folders that share one cache folder from evicting each other.
    folder = hashlib.sha256(str(path.resolve().parent).encode()).hexdigest()[:8]
    tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{path.name}.{folder}.{tag}{cache.SUFFIX}"


def _parse(path: Path) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """Fast parse; on any doubt, the slow scan names the first problem."""
    allowed = allowed_labels(path)
    try:
        table = pd.read_csv(path, header=None, dtype=np.float64, engine="c").to_numpy()
    except Exception as exc:  # pandas raises several types; the scan below says what is wrong
        raise DataError(_first_problem(path, allowed) or f"{path} could not be parsed: {exc}") from None
    if (table.shape[1] != N_COLUMNS or not np.isfinite(table).all() or (np.abs(table) > FLOAT32_MAX).any()
            or not np.isin(table[:, -1], allowed).all()):
        raise DataError(_first_problem(path, allowed) or f"{path} could not be parsed as a heartbeat CSV")
    labels = table[:, -1]
    samples = table[:, :BEAT_LEN]
    outside = None
    bad = (samples < 0) | (samples > 1)
    if bad.any():
        row, col = np.unravel_index(np.argmax(bad), bad.shape)
        outside = {"count": int(bad.sum()), "rows": int(bad.any(axis=1).sum()), "row": int(row) + 1,
                   "column": int(col) + 1, "value": float(samples[row, col])}
    x = np.ascontiguousarray(samples, dtype=np.float32)
    return x, labels.astype(np.int64), outside


def _warn_outside(path: Path, outside: dict | None) -> None:
    if outside:
        warnings.warn(f"{path}: {outside['count']:,} samples in {outside['rows']:,} rows lie outside [0, 1] "
                      f"(first: row {outside['row']}, column {outside['column']}, {outside['value']:g}); "
                      "the beats may be normalised differently from the Kaggle set", stacklevel=3)


def _number(cell: bytes) -> float | None:
    """The cell's value, or None when it is not a number (pandas' rules: quotes and spaces allowed)."""
    text = cell.strip().strip(b'"').strip()
    if not text or b"_" in text:  # Python's float() accepts "1_0"; pandas does not
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _text_of(cell: bytes) -> str:
    return cell.strip().strip(b'"').strip().decode("ascii", "replace")[:40]


def _looks_like_header(cells: list[bytes]) -> bool:
    values = [_number(c) for c in cells]
    if sum(v is None for v in values) > len(values) // 2:
        return True
    return values == [float(i) for i in range(len(values))]  # pandas' default header 0, 1, ..., 187


def _label_expectation(allowed: tuple[int, ...], path: Path) -> str:
    if allowed == (0,):
        return f"0 (every beat in {path.name} is normal)"
    if allowed == (1,):
        return f"1 (every beat in {path.name} is abnormal)"
    return f"an integer in {allowed[0]}..{allowed[-1]}"


# Files that are not CSV text at all, by their first bytes: say what they are rather than "row 1 is a header".
_SIGNATURES = ((b"\x1f\x8b", "a gzip-compressed file, not a CSV: decompress it first (gunzip)"),
               (b"PK\x03\x04", "a zip archive, not a CSV: unzip it (the Kaggle download is a zip of the four CSVs)"),
               (b"\xff\xfe", "UTF-16 text: save it as plain ASCII or UTF-8"),
               (b"\xfe\xff", "UTF-16 text: save it as plain ASCII or UTF-8"),
               (b"<", "an HTML or XML page, not a CSV (a failed download?): download it again"))
_OTHER_SEPARATORS = {b";": "semicolons", b"\t": "tabs", b"|": "'|'"}


def _cut_short(raw: bytes) -> str:
    """A hint for a problem on a last line without a line end: the file was most likely cut off."""
    return "" if raw.endswith(b"\n") else "; it is the last row and has no line end, so the file looks cut short"


def _first_problem(path: Path, allowed: tuple[int, ...]) -> str | None:
    """Scan the file line by line and describe its first problem in one sentence (None: found none)."""
    with open(path, "rb") as f:
        head = f.read(4)
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return f"{path} is {what}"
    first = True
    with open(path, "rb") as f:
        for row, raw in enumerate(f, 1):
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if row == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, which pandas skips too
            if not line.strip():
                continue
            cells = line.split(b",")
            for separator, name in _OTHER_SEPARATORS.items():
                if len(cells) != N_COLUMNS and line.count(separator) >= BEAT_LEN:
                    return (f"{path} row {row} separates its values with {name}: "
                            "expected commas, as in the Kaggle CSVs")
            if first and _looks_like_header(cells):
                preview = line[:40].decode("utf-8", "replace") + ("..." if len(line) > 40 else "")
                return (f"{path} row {row} is a header line ('{preview}'): the heartbeat CSVs have no header, "
                        "remove that line")
            first = False
            if len(cells) != N_COLUMNS:
                return (f"{path} row {row} has {len(cells)} values, expected {N_COLUMNS} (187 samples, then the label)"
                        f"{_cut_short(raw)}")
            for col, cell in enumerate(cells, 1):
                value = _number(cell)
                if value is None:
                    text = cell.decode("utf-8", "replace")
                    if not text.strip():
                        return f"{path} row {row}, column {col} is empty, expected a number{_cut_short(raw)}"
                    return f"{path} row {row}, column {col} holds '{text[:40]}', which is not a number{_cut_short(raw)}"
                if math.isnan(value):
                    return f"{path} row {row}, column {col} is NaN, expected a number"
                if math.isinf(value):
                    return f"{path} row {row}, column {col} is infinite, expected a finite number"
                if abs(value) > FLOAT32_MAX:
                    return (f"{path} row {row}, column {col} is {_text_of(cell)}, beyond float32's range (largest "
                            f"magnitude {FLOAT32_MAX:.4g}), the type the beats are trained in: expected a finite "
                            "number")
            label = float(_number(cells[-1]))
            if label not in allowed:
                return (f"{path} row {row}, column {LABEL_COLUMN} (the label) is {label:g}, "
                        f"expected {_label_expectation(allowed, path)}")
    if first:
        return f"{path} is empty: expected one beat a row, 187 samples then the label"
    return None
