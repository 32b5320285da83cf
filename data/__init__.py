"""The heartbeat data: load and validate the Kaggle CSVs, split them per task, oversample, demo data.

    from data import prepare_task
    data = prepare_task("arrhythmia", "input", seed=0, oversample="smote")
"""

from data.beats import BeatFile, DataError, load_beat_file, load_beats
from data.demo import ensure_demo, write_demo
from data.oversample import resample
from data.splits import Split, TaskData, has_task_files, prepare_task, save_split_indices

__all__ = ["BeatFile", "DataError", "ensure_demo", "Split", "TaskData", "has_task_files", "load_beat_file", "load_beats",
           "prepare_task", "resample", "save_split_indices", "write_demo"]
