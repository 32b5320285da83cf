"""Atomic file writes, shared by every package: a reader sees the old file or the new one, never half of one."""

import contextlib
import errno
import json
import os
import re
import uuid
from pathlib import Path
from typing import Callable


class WriteError(OSError):
    """A file that could not be written (a full disk, a folder without write permission ...), said as one
    sentence that names the file the caller asked for, not the temporary file the failure happened in."""

    def __str__(self) -> str:
        return f"could not write {self.filename}: {self.strerror} (any earlier version of it is unchanged)"


TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY_NAME = re.compile(r"\..+\.\d+\.[0-9a-f]{12}" + re.escape(TEMPORARY_SUFFIX))


def is_temporary(path: Path | str) -> bool:
    """Whether ``path`` is one of atomic_write's temporary files (.NAME.PID.RANDOM.tmp): one left by a killed
    writer is never renamed into place."""
    return bool(_TEMPORARY_NAME.fullmatch(Path(path).name))


def temporary_path(path: Path | str) -> Path:
    """A unique name beside ``path`` for its content while it is being written (see ``is_temporary``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{TEMPORARY_SUFFIX}")


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    The temporary name is unique (pid and a random part), so concurrent writers never share one, and it sits
    in the target's folder, so the rename stays on one file system. It is created like any file (not with
    mkstemp's owner-only mode), so results on shared storage stay readable by the cluster's other users.
    An OSError on the way (ENOSPC, EACCES, EFBIG ...) is raised as a WriteError naming ``path``; the
    temporary file is removed, and a file already at ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):  # a folder that refused the write may refuse the removal too
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            blocking = file_in_the_way(error)
            reason = f"{blocking} is a file, not a folder" if blocking else error.strerror or str(error)
            raise WriteError(error.errno, reason, str(path)) from error
        raise
    return path


def file_in_the_way(error: OSError) -> Path | None:
    """Where making a folder failed because a file stands at its path or at a folder above it ("File exists",
    "Not a directory"): that file."""
    if error.errno not in (errno.EEXIST, errno.ENOTDIR) or error.filename is None:
        return None
    path = Path(error.filename)
    candidates = ([path] if error.errno == errno.EEXIST else []) + list(path.parents)
    return next((p for p in candidates if p.exists() and not p.is_dir()), None)


def write_bytes(path: Path | str, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path | str, obj) -> Path:
    """JSON with sorted keys and no NaN (which is not JSON), so files diff cleanly and parse anywhere."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def broken_link(path: Path | str) -> str | None:
    """Why ``path`` is a symbolic link that leads to no file, as a sentence (None where it is not one): a link
    into a folder that was moved, or links that lead back to each other, would otherwise read as a missing file."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"{path} is a symbolic link in a loop (following it leads back to a link already followed)"
        return f"{path} is a symbolic link to {os.readlink(path)}, which does not exist ({error.strerror})"
    return None


def refuse_foreign(folder: Path | str, names, manifest: str, writer: str, mark: tuple[str, str]) -> None:
    """ValueError where ``folder`` holds one of the files ``names`` but not ``manifest``, the record ``writer``
    leaves beside the files it writes (a JSON object whose field ``mark[0]`` is ``mark[1]``): they came from
    elsewhere (the real data set, say), and writing would replace them without a word. A manifest that is not
    that record (``[]``, another program's) does not make the files ``writer``'s."""
    folder = Path(folder)
    if not folder.is_dir() or written_by(folder / manifest, mark) is not None:
        return
    there = [name for name in names if os.path.lexists(folder / name)]  # a link the user made counts too
    if there:
        them = "it" if len(there) == 1 else "them"
        raise ValueError(f"{folder} holds {', '.join(there)}, which {writer} did not write (no {manifest} from "
                         f"{writer} beside {them}): writing there would replace {them}; choose another folder, or "
                         f"move {them} away first")


def written_by(manifest: Path, mark: tuple[str, str]) -> dict | None:
    """The JSON object in ``manifest`` where its field ``mark[0]`` is ``mark[1]`` (its writer's record); None
    where it is absent, unreadable, or another writer's."""
    try:
        doc = json.loads(Path(manifest).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get(mark[0]) == mark[1] else None
