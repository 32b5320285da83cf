"""A trial's folder: what it holds, and how each file is read and written (study/trial.py trains; this module
owns the files).

    config.json    the resolved config, the data's fingerprint and split sizes, software versions
    splits.npz     the source row indices of the train / validation / test beats
    metrics.csv    one row per epoch: training loss, validation metrics, seconds, beats/s
    best.pt        the best epoch's weights (a models.transfer checkpoint: weights + config + fingerprint)
    last.pt        everything needed to continue after the last finished epoch
    final.json     the best epoch, its validation metrics and the test metrics

A damaged config.json or final.json is written again from what the trial knows (its config, last.pt), with a
line saying so; a damaged last.pt is refused with what to do, since nothing else holds the training state.
"""

import csv
import dataclasses
import io
import json
import platform
from pathlib import Path

import torch

from data import TaskData
from data.files import write_json, write_text
from study.config import BEST_FILE, CONFIG_FILE, FINAL_FILE, LAST_FILE, TrialConfig
from study.metrics import MetricsError, check_metrics

STATE_FORMAT, STATE_VERSION = "ecg-study-trial-state", 1
# Config fields that may differ when a trial is continued: they change how fast it runs, not what it computes.
# A cosine schedule is drawn over the trial's epochs, so there its length is fixed too (see load_state).
RESUMABLE_CHANGES = {"epochs", "patience", "device", "eval_batch_size"}
# What last.pt holds besides format and version, and of what type (study/trial.py writes it each epoch).
STATE_FIELDS = {"config": dict, "fingerprint": str, "epoch": int, "model": dict, "optimizer": dict,
                "torch_rng": torch.Tensor, "batch_rng": torch.Tensor, "history": list, "best": dict,
                "best_weights": dict, "stale_epochs": int}


def load_state(path: Path, config: TrialConfig, data: TaskData) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or corrupt; a pickle carrying code is refused, never run
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise ValueError(f"{path} cannot be read as a trial state ({reason}); "
                         "move it away to start the trial afresh.") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise ValueError(f"{path} is not a resumable trial state of this version; move it away to start afresh.")
    for key, kind in STATE_FIELDS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            what = "missing" if key not in state else f"not a {kind.__name__}"
            raise ValueError(f"{path} is damaged: its field {key} is {what}; move it away to start the trial afresh.")
    try:
        saved = dataclasses.asdict(TrialConfig.from_dict(state["config"]))  # every field, those to_dict leaves out too
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} is damaged: its config is not a trial's ({error}); move it away to start the trial "
                         "afresh.") from None
    resumable = RESUMABLE_CHANGES - ({"epochs"} if config.schedule != "constant" else set())
    differences = [f"{key} {saved[key]!r} -> {value!r}" for key, value in dataclasses.asdict(config).items()
                   if key not in resumable and saved[key] != value]
    if differences:
        raise ValueError(f"{path.parent} holds a trial with another config ({'; '.join(differences)}); "
                         "use another output folder to start a new trial.")
    best = state["best"]
    if (state["epoch"] < 1 or not isinstance(best.get("epoch"), int) or not 1 <= best["epoch"] <= state["epoch"]
            or len(state["history"]) != state["epoch"]):
        raise ValueError(f"{path} is damaged: its epoch {state['epoch']!r} or best epoch {best.get('epoch')!r} is not "
                         "one it could have trained; move it away to start the trial afresh.")
    if not isinstance(best.get("value"), float) or not isinstance(best.get("val"), dict) or not all(
            isinstance(row, dict) for row in state["history"]):
        raise ValueError(f"{path} is damaged: its best epoch's figures or its epochs' rows are not a trial's; move it "
                         "away to start the trial afresh.")
    if state["epoch"] > config.epochs:
        raise ValueError(f"{path.parent} holds a trial already trained for {state['epoch']} epochs, more than the "
                         f"{config.epochs} asked for; ask for at least {state['epoch']} or use another folder.")
    if state["fingerprint"] != data.fingerprint:
        raise ValueError(f"{path.parent} holds a trial trained on other data (fingerprint {state['fingerprint'][:12]} "
                         f"vs {data.fingerprint[:12]}); use another output folder.")
    return state


def write_epochs_csv(path: Path, history: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


FINAL_FIELDS = ("config", "epochs_run", "best_epoch", "stopped_early", "val", "test", "checkpoint")


def finished_final(out_dir: Path, config: TrialConfig, evaluate_test: bool = True) -> tuple[dict | None, str | None]:
    """(final.json's content, None) where ``out_dir`` holds this trial finished, its test evaluated unless
    ``evaluate_test`` is false, so that running it again trains nothing; else (None, what is wrong with final.json,
    or None where it is absent or of another config)."""
    if not ((out_dir / FINAL_FILE).exists() and (out_dir / LAST_FILE).exists()):
        return None, None
    final, problem = read_final(out_dir / FINAL_FILE, config.task)
    if final is not None and final["config"] == config.to_dict() and (final["test"] is not None or not evaluate_test):
        return final, None
    return None, problem


def read_final(path: Path, task: str) -> tuple[dict | None, str | None]:
    """final.json as read_object reads it, its figures checked too: a hand-edited or damaged one (``"val": []``) is
    a problem, and the trial's result is computed again from last.pt."""
    final, problem = read_object(path, FINAL_FIELDS)
    if final is None:
        return None, problem
    for name, kind in (("epochs_run", int), ("best_epoch", int), ("stopped_early", bool)):
        if not isinstance(final[name], kind) or (kind is int and isinstance(final[name], bool)):
            return None, f"has {name} {final[name]!r}, not a {kind.__name__}"
    if not 1 <= final["best_epoch"] <= final["epochs_run"]:
        return None, f"has best_epoch {final['best_epoch']}, not one of its {final['epochs_run']} epochs"
    if not (path.parent / BEST_FILE).is_file():
        return None, f"is there, but not the {BEST_FILE} it describes"
    try:
        check_metrics(final["val"], task, "val")
        if final["test"] is not None:
            check_metrics(final["test"], task, "test")
    except MetricsError as error:
        return None, f"is damaged: its {error}"
    return final, None


def read_object(path: Path, fields: tuple[str, ...]) -> tuple[dict | None, str | None]:
    """A trial file's JSON object with ``fields``, or None and what is wrong with it (None where it is absent)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"cannot be read ({error})"
    if not isinstance(doc, dict):
        return None, f"holds a JSON {type(doc).__name__}, not an object"
    missing = [name for name in fields if name not in doc]
    if missing:
        return None, f"lacks the field {missing[0]}"
    return doc, None


def describe_again(out_dir: Path, config: TrialConfig, data: TaskData, device, dtype, log) -> None:
    """config.json of a trial continued or found finished: written again where it no longer describes the trial
    (damaged, or of fewer epochs than a constant-rate trial now trains), said where it was damaged."""
    described, problem = read_object(out_dir / CONFIG_FILE, ("config",))
    if described is not None and described["config"] == config.to_dict():
        return
    if problem is not None or described is None:
        log(f"{out_dir / CONFIG_FILE} {problem or 'is missing'}: written again.")
    write_json(out_dir / CONFIG_FILE, describe(config, data, device, dtype))


def describe(config: TrialConfig, data: TaskData, device: torch.device, dtype: torch.dtype | None) -> dict:
    return {
        "config": config.to_dict(),
        "data": {"task": data.task, "source": data.source, "fingerprint": data.fingerprint,
                 "class_names": list(data.class_names), "oversample": data.oversample,
                 "sizes": {name: int(len(getattr(data, name).y)) for name in ("train", "val", "test")}},
        "runtime": {"device": str(device), "autocast": str(dtype) if dtype else "fp32",
                    "torch": torch.__version__, "python": platform.python_version()},
    }
