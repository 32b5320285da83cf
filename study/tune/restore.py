"""A new Tuner for the study's one experiment, or the interrupted one restored; Tune's files written whole.

A driver stopped before Tune first saved its state leaves only the Tuner; older versions (and Tune itself, without
WholeFileHandler) copied these files in place, so a kill mid-copy could cut one short. Ray 2.60 then logs that it
failed to restore and carries on as a new run of a single trial. Such a run is started again instead: the same
seeds give the same trials.
"""

import io
import json
import os
import pickle
from contextlib import contextmanager
from pathlib import Path

import pyarrow
import pyarrow.fs

from data.files import temporary_path
from study.storage import LocalStorage, Storage


def tune_storage(store: Storage) -> tuple[str, object]:
    """(storage_path, storage_filesystem) of a folder, for Ray Tune's RunConfig and Tuner.restore: a local folder
    through a file system that writes whole files (WholeFileHandler); an object store as it is."""
    if isinstance(store, LocalStorage):
        return store.location, pyarrow.fs.PyFileSystem(WholeFileHandler())
    return store.base, store.fs


def unrestorable(experiment: Storage) -> str | None:
    """Why Tune could not restore the interrupted run in ``experiment``, or None when it can: the Tuner, the
    newest experiment state (the trials) and the newest search state (the experiment's spec) must read back."""
    from ray import cloudpickle

    names = experiment.list("")

    def newest(prefix: str) -> str | None:  # as Tune chooses: the greatest name, whose timestamp is the latest
        return max((n for n in names if n.startswith(prefix) and n.endswith(".json")), default=None)

    state, search = newest("experiment_state-"), newest("search_gen_state-")
    if state is None or search is None or "tuner.pkl" not in names:
        return "Tune had not saved its state yet"
    try:
        json.loads(experiment.read_text(state))
        cloudpickle.loads(experiment.read_bytes(search))
        cloudpickle.loads(experiment.read_bytes("tuner.pkl"))
    except (ValueError, EOFError, pickle.UnpicklingError):  # JSON, UTF-8 and pickles cut short
        return "Tune's saved state was cut short when the driver stopped"
    return None


def make_tuner(trainable, tune_folder: Storage, name: str, tune_config, verbose: bool,
               state_files: tuple[Storage, ...] = (), say=print):
    """A new Tuner of experiment ``name`` in ``tune_folder``, or the interrupted one restored from it.

    ``state_files`` (folder, file) belong to the experiment (the scheduler's rungs): a new experiment starts
    without them, since a run killed before Tune saved its first state leaves files that describe trials the new
    run will not have. Errored trials are not resumed: the study searcher proposes a failed seed run again, and
    a search whose every trial failed afresh.
    """
    from ray import tune

    experiment = tune_folder.child(name)
    path, filesystem = tune_storage(experiment)
    if tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        why = unrestorable(experiment)
        if why is None:
            say(f"continuing the interrupted run in {experiment.location}")
            return tune.Tuner.restore(path, trainable=trainable, resume_errored=False, storage_filesystem=filesystem)
        say(f"starting the interrupted run in {experiment.location} again: {why}")
        tune_folder.delete_folder(name)
    for folder, rel in state_files:
        folder.delete(rel)
    storage_path, filesystem = tune_storage(tune_folder)
    run_config = tune.RunConfig(
        name=name, storage_path=storage_path, storage_filesystem=filesystem, verbose=1 if verbose else 0,
        failure_config=tune.FailureConfig(max_failures=3),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2))
    return tune.Tuner(trainable, param_space={}, tune_config=tune_config, run_config=run_config)


@contextmanager
def pending_trials(count: int):
    """Let Tune keep ``count`` trials waiting for resources: with a searcher that is not its own
    ConcurrencyLimiter it keeps one, and trials then start one after another. (Tune reads this setting only from
    the environment; one a user set is kept.)"""
    name = "TUNE_MAX_PENDING_TRIALS_PG"
    if name in os.environ:
        yield
        return
    os.environ[name] = str(count)
    try:
        yield
    finally:
        os.environ.pop(name, None)


class WholeFileHandler(pyarrow.fs.FileSystemHandler):
    """A pyarrow file system handler for the local disk on which every file written appears whole or not at all:
    it is written beside its target under a temporary name (data.files.is_temporary) and moved over the target
    when closed, unless a write failed.

    Ray Tune copies its experiment state (trials, searcher, the Tuner, every trial's results) into the results
    folder through its storage file system, in place: a driver killed mid-copy leaves a file cut short, and Tune
    can no longer restore the run. Objects in s3:// and the like appear whole anyway.
    """

    def __init__(self):
        self._fs = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, WholeFileHandler)

    def get_type_name(self) -> str:
        return "local-whole-files"

    def normalize_path(self, path: str) -> str:
        return self._fs.normalize_path(path)

    def get_file_info(self, paths):
        return self._fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self._fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path: str) -> None:
        self._fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        tmp = str(temporary_path(dest))
        try:
            self._fs.copy_file(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open_input_stream(self, path: str):
        return self._fs.open_input_stream(path)

    def open_input_file(self, path: str):
        return self._fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata):
        return pyarrow.PythonFile(_WholeFile(path), mode="w")

    def open_append_stream(self, path: str, metadata):
        return self._fs.open_append_stream(path)


class _WholeFile(io.RawIOBase):
    """A file opened for writing under a temporary name, moved over ``path`` on close (after failed writes,
    removed instead)."""

    def __init__(self, path: str):
        super().__init__()
        self.path, self.tmp = path, temporary_path(path)
        self._file = open(self.tmp, "wb")
        self._failed = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except BaseException:
            self._failed = True
            raise

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._file.close()
            if self._failed:
                self.tmp.unlink(missing_ok=True)
            else:
                os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        finally:
            super().close()
