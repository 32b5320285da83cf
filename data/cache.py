"""Cache entries: one file each, written atomically, trusted only when complete and written for the same key.

An entry is a metadata record followed by its arrays, all in numpy's .npy format one after another
(reading them back is a plain read into memory, several times faster than an .npz). It is written
to a temporary file in the cache folder and renamed into place with os.replace, so a reader sees
either no entry or a complete one: a crash mid-write leaves only a temporary file, which no reader
opens. An entry that cannot be read (truncated by a copy, a foreign file, another format version)
counts as absent and is rebuilt.
"""

import json
import os
import warnings
from pathlib import Path

import numpy as np

from data.files import atomic_write

FORMAT = "ecg-data-cache"
VERSION = 1
CACHE_DIRNAME = ".cache"
SUFFIX = ".npys"  # concatenated .npy records


def default_cache_dir(input_dir) -> Path:
    """Where entries go unless told otherwise: `.cache` inside the input folder."""
    return Path(input_dir) / CACHE_DIRNAME


def read_entry(path: Path, key: dict, mmap: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, metadata) of the entry at `path` if it is complete and was written for `key`; else None.

    Arrays named in `mmap` are mapped read-only from the file instead of read: no copy is made, and the
    mapping stays valid even if the entry is later replaced or deleted (entries are never rewritten in
    place).
    """
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            meta = json.loads(str(np.load(f, allow_pickle=False)))
            if meta.get("format") != FORMAT or meta.get("version") != VERSION or meta.get("key") != key:
                return None
            arrays = {name: _map_next(f, path) if name in mmap else np.load(f, allow_pickle=False)
                      for name in meta["arrays"]}
            if f.read(1):
                raise ValueError("trailing bytes after the last array")
    except Exception as exc:  # truncated or foreign file: rebuild it rather than trust it
        warnings.warn(f"ignoring unreadable cache entry {path} ({type(exc).__name__}: {exc}); rebuilding it",
                      stacklevel=3)
        return None
    return arrays, meta


def _map_next(f, path: Path) -> np.ndarray:
    """Map the .npy record at f's position read-only, and move f past it."""
    version = np.lib.format.read_magic(f)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in read_header:
        return np.load(f, allow_pickle=False)  # rare header versions: a plain read is still correct
    shape, fortran, dtype = read_header[version](f)
    offset = f.tell()
    size = int(np.prod(shape)) * dtype.itemsize
    if offset + size > os.fstat(f.fileno()).st_size:
        raise ValueError("the file ends inside an array")
    if size == 0:
        return np.empty(shape, dtype)
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    f.seek(offset + size)
    return np.asarray(mapped)  # a plain read-only ndarray view; the mapping lives as long as it does


def write_entry(path: Path, arrays: dict[str, np.ndarray], key: dict, info: dict | None = None) -> bool:
    """Write an entry atomically and return True; on an unwritable cache folder warn and return False."""
    meta = {"format": FORMAT, "version": VERSION, "key": key, "arrays": list(arrays), **(info or {})}
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.array(json.dumps(meta)), allow_pickle=False)
            for array in arrays.values():
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)

    try:
        atomic_write(path, write)
    except OSError as exc:
        warnings.warn(f"cache folder {path.parent} cannot be written ({exc.strerror or exc}); "
                      f"continuing without caching {path.name}", stacklevel=3)
        return False
    return True


def prune(path: Path, prefix: str) -> None:
    """Delete the other entries whose name starts with `prefix` (stale versions of the entry at `path`)."""
    for old in path.parent.glob(prefix + "*" + SUFFIX):
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass
