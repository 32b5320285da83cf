"""What a task's data cannot mean, said before anything trains on it (data.splits.prepare_task calls these).

- A training split of one class is an error: no classifier trained on it means anything.
- A training split that lacks some of the task's classes, test beats identical to training beats, and beats that
  are constant (every sample equal) are one warning line each (DataWarning): the run goes on, and the user knows
  what its figures are worth.
"""

import warnings

import numpy as np

from data.beats import DataError


class DataWarning(UserWarning):
    """The data loads, but some figure computed on it would not mean what it seems to."""


def _rows(x: np.ndarray) -> np.ndarray:
    """Each beat as one opaque value, so that whole rows compare at once."""
    x = np.ascontiguousarray(x)
    return x.view(np.dtype((np.void, x.shape[1] * x.itemsize))).ravel()


def check_classes(task: str, y_train: np.ndarray, class_names: tuple[str, ...], files: str) -> None:
    present = np.unique(y_train)
    if len(present) < 2:
        only = class_names[int(present[0])] if len(present) else "none"
        raise DataError(f"the {task} training split holds beats of one class only ({only}, from {files}): no "
                        f"classifier trained on it could mean anything; the files should hold every class of "
                        f"{', '.join(class_names)}")
    absent = [name for k, name in enumerate(class_names) if k not in present]
    if absent:
        warnings.warn(f"the {task} training split has no beats of class {', '.join(absent)} (from {files}): the "
                      "model can never predict it, and its test figures count it as missed", DataWarning,
                      stacklevel=3)


def check_overlap(task: str, x_train: np.ndarray, x_test: np.ndarray, where_test) -> None:
    """``where_test(i)``: the file and row of test beat i, for the message."""
    shared = np.flatnonzero(np.isin(_rows(x_test), _rows(x_train)))
    if len(shared):
        warnings.warn(f"{len(shared):,} of {len(x_test):,} {task} test beats are identical to training beats "
                      f"(first: {where_test(int(shared[0]))}): figures on them measure memory, not generalisation",
                      DataWarning, stacklevel=3)


def check_constant(name: str, x: np.ndarray) -> None:
    flat = np.flatnonzero(x.max(axis=1) == x.min(axis=1)) if len(x) else np.array([], dtype=int)
    if len(flat):
        warnings.warn(f"{len(flat):,} beats of {name} are constant (first: row {flat[0] + 1}, every sample "
                      f"{float(x[flat[0], 0]):g}): they carry no waveform to learn from", DataWarning, stacklevel=3)
