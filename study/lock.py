"""One writer per folder: a study folder while a driver runs in it, a trial's folder while a trial trains into it.

    with holding(folder_store, LAUNCH_LOCK, "study folder"):   # FolderBusy if another process holds it
        ...

The lock is a small JSON file in the folder (``launch.lock``, ``trial.lock``) that says who holds it: host,
process id, since when, and the command. On a local disk the holder also keeps an exclusive ``flock`` on it, which
the operating system drops however the holder ends (killed, crashed, its machine's power cut, for NFS), so a lock
file whose flock is free was left by a process that is gone: the next writer takes it over and says so. An object
store (s3://) has no flock: there the file is the record, taken over only where its holder is a process of this
host that no longer runs; a holder on another host is named, with the way to remove its lock.
"""

import errno
import json
import os
import socket
import sys
import contextlib
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

LAUNCH_LOCK = "launch.lock"
TRIAL_LOCK = "trial.lock"


class FolderBusy(RuntimeError):
    """Another process writes into the folder: one sentence naming it."""


def holder_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": _command()}


def _command() -> str:
    program = Path(sys.argv[0]).as_posix() if sys.argv and sys.argv[0] else "python"
    head = "python -m study" if program.endswith("study/__main__.py") else program
    return " ".join([head, *sys.argv[1:]])[:300]


def describe(holder: dict | None) -> str:
    if not holder:
        return "a process that has not yet said who it is"
    return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('since', '?')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


def _parse(text) -> dict | None:
    try:
        holder = json.loads(text)
    except (TypeError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _gone(holder: dict) -> bool:
    """Whether a holder of this host no longer runs (a holder elsewhere cannot be checked from here)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False


@contextmanager
def holding(store, name: str, what: str, say=print):
    """Hold the lock ``name`` in ``store`` (study.storage.Storage) while the block runs; FolderBusy at once where
    another process holds it. A folder the lock had to create is removed again if the block left it empty."""
    from study.storage import LocalStorage

    if isinstance(store, LocalStorage):
        with _local(store.root, name, what, say):
            yield
    else:
        with _remote(store, name, what, say):
            yield


@contextmanager
def _local(folder: Path, name: str, what: str, say):
    import fcntl

    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _parse(_read_fd(fd))
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise FolderBusy(f"{what} {folder} is in use by {describe(holder)}: a second writer would mix its files "
                             f"with that one's; wait for it to end, or stop it first") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break  # still the file at that path: the releasing holder did not unlink it under us
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        left = _parse(_read_fd(fd))
        if left:
            say(f"took over the lock of {what} {folder}: {describe(left)} held it and is gone")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_record()).encode(), 0)
        os.fsync(fd)
        yield
    finally:
        with contextlib.suppress(OSError):  # a folder turned read-only keeps the file: its flock goes anyway
            path.unlink(missing_ok=True)
        os.close(fd)  # drops the flock
        if created:
            _remove_if_empty(folder)


def _read_fd(fd: int) -> bytes:
    return os.pread(fd, 4096, 0)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or gone): either way not ours to remove
        pass


@contextmanager
def _remote(store, name: str, what: str, say):
    held = store.read_text(name)
    if held is not None:
        holder = _parse(held)
        if holder is None or not _gone(holder):
            raise FolderBusy(f"{what} {store.location} is in use by {describe(holder)}: a second writer would mix its "
                             f"files with that one's; wait for it to end, or if that process is gone, delete "
                             f"{store.ref(name)}")
        say(f"took over the lock of {what} {store.location}: {describe(holder)} held it and is gone")
    mine = json.dumps(holder_record())
    store.write_text(name, mine)
    try:
        yield
    finally:
        if store.read_text(name) == mine:
            store.delete(name)
