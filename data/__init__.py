"""The heartbeat data: load and validate the Kaggle CSVs, split them per task, oversample, demo data.

    from data import prepare_task
    data = prepare_task("arrhythmia", "input", seed=0, oversample="smote")
"""

from data.beats import BeatFile, DataError, load_beat_file, load_beats
from data.oversample import resample
from data.splits import Split, TaskData, has_task_files, prepare_task, save_split_indices

__all__ = ["BeatFile", "DataError", "ensure_demo", "Split", "TaskData", "has_task_files", "load_beat_file", "load_beats",
           "prepare_task", "resample", "save_split_indices", "write_demo"]


def __getattr__(name: str):
    # data.demo on first use: it is a command too (`python -m data.demo`), and one that the package had imported
    # already would make runpy warn on every run.
    if name in ("ensure_demo", "write_demo"):
        from data import demo
        return getattr(demo, name)
    raise AttributeError(f"module 'data' has no attribute {name!r}")
