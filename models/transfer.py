"""Checkpoints, transfer from arrhythmia to MI, and the original project's `cnet` weights.

A checkpoint is one `torch.save`d dict that `torch.load(weights_only=True)` can read (tensors and plain
values only, so loading a file never runs code):

    {"format": "ecg-study-checkpoint", "version": 1, "model": name, "task": task, "state_dict": {...},
     "config": {...JSON-able...}, "fingerprint": str, "epoch": int, "metrics": {...}}

Transfer (`build_transfer_model`) follows Kachuee et al. 2018 and the original project: an MI model of the
same architecture as an arrhythmia checkpoint, with the checkpoint's body and a fresh head (the last two
fully connected layers, `HEAD`) ending in one logit. `frozen` trains the head only (what the original did);
`finetune` trains everything (the trial gives the body a lower learning rate). The original kept `fc1`'s
trained weights and replaced only `fc2`, though its README says the last two layers are replaced; here both
are fresh, as its README, Kachuee et al. and this project's issue describe.

From the command line (models/__main__.py):
    python -m models show CHECKPOINT                 # what a checkpoint holds
    python -m models import-original IN OUT          # original project's cnet state dict -> checkpoint
"""

import dataclasses
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.constants import TASKS, TRANSFER_MODES
from data.files import write_bytes
from models.common import body_parameters, is_head_key, unwrap
from models.registry import MODEL_NAMES, NUM_OUTPUTS, build_model, check_model_name, check_task, rhythm_inputs

FORMAT = "ecg-study-checkpoint"
VERSION = 1
FIELDS = {"format": str, "version": int, "model": str, "task": str, "state_dict": dict, "config": dict,
          "fingerprint": str, "epoch": int, "metrics": dict}
ORIGINAL_SOURCE = "original project state dict"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, not ours, or does not fit the model asked for."""


# ----------------------------------------------------------------------------------------------- saving

def _plain(value: Any, what: str) -> Any:
    """`value` as plain JSON types (numpy scalars/arrays and paths converted), which weights-only loading reads."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)

    def convert(obj):
        if hasattr(obj, "tolist"):  # numpy scalars and arrays, 0-d tensors
            return obj.tolist()
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        raise TypeError(f"value of type {type(obj).__name__}")

    try:
        return json.loads(json.dumps(value, default=convert))
    except TypeError as err:
        raise ValueError(f"checkpoint {what} must hold plain JSON-able values; found a {err}") from None


def _reference_shapes(name: str, task: str, rhythm_inputs: int = 0) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of model `name` for `task` (with `rhythm_inputs` RR-interval inputs), built on the meta
    device (no memory, no RNG draws)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build_model(name, task, rhythm_inputs).state_dict().items()}


def trained_with_rhythm(config) -> bool:
    """Whether a checkpoint's config (the trial's, as saved) says its model took each beat's RR intervals."""
    return isinstance(config, dict) and config.get("rhythm") is True


def save_torch(path: Path | str, obj) -> Path:
    """torch.save into memory, then one atomic write: a full disk then raises data.files.WriteError naming
    ``path`` (ENOSPC, EFBIG ...), where torch's own file writer raises a RuntimeError about zip record positions."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def save_checkpoint(path, model: nn.Module, *, model_name: str, task: str, config, fingerprint: str,
                    epoch: int, metrics) -> Path:
    """Write `model`'s weights with what produced them; atomic (temp file + os.replace), tensors on CPU."""
    check_model_name(model_name)
    check_task(task)
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise ValueError(f"checkpoint epoch must be an int, got {epoch!r}")
    if not isinstance(fingerprint, str):
        raise ValueError(f"checkpoint fingerprint must be a str, got {type(fingerprint).__name__}")
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    config = _plain(config, "config")
    expected = _reference_shapes(model_name, task, rhythm_inputs(trained_with_rhythm(config)))
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        raise ValueError(f"the model being saved is not a {model_name!r} model for task {task!r} "
                         f"({_mismatch(got, expected, 'model', 'a fresh one')})")
    checkpoint = {"format": FORMAT, "version": VERSION, "model": model_name, "task": task,
                  "state_dict": state, "config": config, "fingerprint": fingerprint,
                  "epoch": epoch, "metrics": _plain(metrics, "metrics")}
    return save_torch(path, checkpoint)


# ---------------------------------------------------------------------------------------------- loading

def _read(path: Path) -> Any:
    """torch.load(weights_only=True), every failure turned into one CheckpointError sentence."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was truncated or never written")
    try:
        with warnings.catch_warnings():  # torch warns about plain pickles before refusing them; we refuse anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, UnpicklingError ... by format
        text = str(err)
        if "Weights only load failed" in text:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            if found:
                raise CheckpointError(
                    f"refused to load {path}: it is a pickle that calls or builds the Python object "
                    f"`{found.group(1)}` (code, not only tensors and plain values), and weights-only loading "
                    f"neither imports nor runs it") from None
            raise CheckpointError(
                f"refused to load {path}: weights-only loading cannot read it (it is corrupt, or a pickle using "
                f"more than tensors and plain values, e.g. a plain Python pickle), and none of it was run") from None
        first = text.strip().splitlines()[0].split(". ")[0].rstrip(".")[:100] if text.strip() else ""
        reason = f"{type(err).__name__}: {first}" if first else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be read ({reason})") from None


def _describe(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, dict):
        keys = ", ".join(map(str, list(obj)[:4])) + (", ..." if len(obj) > 4 else "")
        return f"a dict with keys {keys or '(none)'}"
    return f"a {type(obj).__name__}"


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _validate(obj: Any, path: Path) -> dict:
    if not isinstance(obj, dict) or "format" not in obj:
        hint = " (a bare state dict: save with models.transfer.save_checkpoint)" if _is_state_dict(obj) else ""
        raise CheckpointError(f"{path} is not an {FORMAT} file: it holds {_describe(obj)}{hint}, "
                              f"where a dict with format {FORMAT!r} was expected")
    if obj["format"] != FORMAT:
        raise CheckpointError(f"{path} has format {obj['format']!r}, expected {FORMAT!r}")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {obj.get('version')!r}; "
                              f"this code reads version {VERSION}")
    missing = [k for k in FIELDS if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the field(s) {', '.join(missing)}")
    for key, kind in FIELDS.items():
        if not isinstance(obj[key], kind) or (kind is int and isinstance(obj[key], bool)):
            raise CheckpointError(f"checkpoint {path} field {key!r} should be of type {kind.__name__}, "
                                  f"found {type(obj[key]).__name__}")
    if obj["model"] not in MODEL_NAMES:
        raise CheckpointError(f"checkpoint {path} holds unknown model {obj['model']!r}; "
                              f"valid models: {', '.join(MODEL_NAMES)}")
    if obj["task"] not in TASKS:
        raise CheckpointError(f"checkpoint {path} is for unknown task {obj['task']!r}; "
                              f"valid tasks: {', '.join(TASKS)}")
    if not _is_state_dict(obj["state_dict"]):
        raise CheckpointError(f"checkpoint {path} field 'state_dict' is not a non-empty dict of tensors")
    return obj


def load_checkpoint(path, *, allow_original: bool = True) -> dict:
    """Read and validate a checkpoint; the result also carries "path" (where it was read from).

    With `allow_original`, a state dict saved by the original project's `cnet` (torch.save(model.state_dict()))
    is accepted too and returned as a checkpoint: model "cnet", task read from its output layer (5 outputs:
    arrhythmia, 1: mi), config {"source": "original project state dict", ...}, fingerprint "", epoch -1.
    """
    path = Path(path)
    obj = _read(path)
    if allow_original and _is_state_dict(obj) and _looks_like_original_cnet(obj):
        checkpoint = _wrap_original(obj, path)
    else:
        checkpoint = _validate(obj, path)
    return {**checkpoint, "path": str(path)}


def _as_checkpoint(checkpoint) -> dict:
    return checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)


def _short(keys, limit: int = 3) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _mismatch(source: dict, target: dict, source_name: str, target_name: str) -> str:
    """One clause saying how two {key: shape} maps differ (empty when they agree)."""
    parts = []
    if missing := target.keys() - source.keys():
        parts.append(f"{source_name} lacks {_short(missing)}")
    if unexpected := source.keys() - target.keys():
        parts.append(f"{source_name} has unexpected {_short(unexpected)}")
    for key in sorted(source.keys() & target.keys()):
        if tuple(source[key]) != tuple(target[key]):
            parts.append(f"{key} is {tuple(source[key])} in the {source_name} but {tuple(target[key])} "
                         f"in {target_name}")
            break
    return "; ".join(parts)


def load_weights(model: nn.Module, checkpoint, *, head: bool = True) -> nn.Module:
    """Copy a checkpoint's weights (a loaded dict or a path) into `model`, checking every key and shape.

    head=False loads the body only and leaves the head (`HEAD`) as it is: what transfer does.
    """
    checkpoint = _as_checkpoint(checkpoint)
    where = checkpoint.get("path", "the checkpoint")
    target = unwrap(model)
    head_names = tuple(target.HEAD)
    keep = (lambda k: True) if head else (lambda k: not is_head_key(k, head_names))
    source = {k: v for k, v in checkpoint["state_dict"].items() if keep(k)}
    wanted = {k: v for k, v in target.state_dict().items() if keep(k)}
    problem = _mismatch({k: v.shape for k, v in source.items()}, {k: v.shape for k, v in wanted.items()},
                        "checkpoint", "the model")
    if problem:
        raise CheckpointError(f"checkpoint {where} ({checkpoint.get('model')!r}, {checkpoint.get('task')!r}) "
                              f"does not fit the {type(target).__name__} model: {problem}")
    not_finite = sorted(k for k, v in source.items() if v.is_floating_point() and not v.isfinite().all())
    if not_finite:  # training from it would diverge at once, and the message would blame the learning rate
        raise CheckpointError(f"checkpoint {where} holds weights that are not finite numbers (NaN or infinite: "
                              f"{_short(not_finite)}): it is no model to start from")
    target.load_state_dict(source, strict=head)
    return model


def build_from_checkpoint(checkpoint, *, name: str | None = None, task: str | None = None) -> nn.Module:
    """The model a checkpoint (path or loaded dict) holds, with its weights: for `--init` and evaluation.

    `name` / `task`, when given, must match the checkpoint's, else CheckpointError naming both.
    """
    checkpoint = _as_checkpoint(checkpoint)
    where = checkpoint.get("path", "the checkpoint")
    if name is not None and checkpoint["model"] != name:
        raise CheckpointError(f"checkpoint {where} holds a {checkpoint['model']!r} model, "
                              f"not the {name!r} model asked for")
    if task is not None and checkpoint["task"] != task:
        raise CheckpointError(f"checkpoint {where} holds a model for task {checkpoint['task']!r}, "
                              f"not for the {task!r} task asked for (transfer goes from arrhythmia to mi)")
    rhythm = rhythm_inputs(trained_with_rhythm(checkpoint["config"]))
    return load_weights(build_model(checkpoint["model"], checkpoint["task"], rhythm), checkpoint)


def build_transfer_model(name: str, checkpoint_path, mode: str = "frozen", rhythm_inputs: int = 0) -> nn.Module:
    """An MI model `name` with the body of an arrhythmia checkpoint of the same architecture and a fresh head (taking
    `rhythm_inputs` RR-interval features, whatever the checkpoint's head took: the body does not see them).

    mode "frozen": the body's parameters get requires_grad=False (only the head trains);
    mode "finetune": everything trains (give `body_parameters(model)` a lower learning rate).
    """
    check_model_name(name)
    if mode not in TRANSFER_MODES:
        raise ValueError(f"unknown transfer mode {mode!r}; valid modes: {', '.join(TRANSFER_MODES)}")
    checkpoint = _as_checkpoint(checkpoint_path)
    where = checkpoint.get("path", "the checkpoint")
    if checkpoint["model"] != name:
        raise CheckpointError(f"cannot transfer checkpoint {where} into a {name!r} model: it holds a "
                              f"{checkpoint['model']!r} model, and transfer needs the same architecture")
    if checkpoint["task"] != "arrhythmia":
        raise CheckpointError(f"cannot transfer checkpoint {where}: it holds a model for task "
                              f"{checkpoint['task']!r}, and transfer starts from one for 'arrhythmia'")
    model = load_weights(build_model(name, "mi", rhythm_inputs), checkpoint, head=False)
    if mode == "frozen":
        for p in body_parameters(model):
            p.requires_grad_(False)
    return model


# ------------------------------------------------------------------------------ original project's cnet

def _original_shapes(state_dict: dict) -> dict[str, tuple[int, ...]]:
    """The shapes an original cnet state dict must have; its output layer may be arrhythmia's or mi's."""
    outputs = state_dict.get("fc2.weight", torch.empty(0)).shape[:1]
    task = next((t for t, n in NUM_OUTPUTS.items() if (n,) == tuple(outputs)), "arrhythmia")
    return _reference_shapes("cnet", task)


def _strip_module(state_dict: dict) -> dict:
    """Drop the `module.` prefix nn.DataParallel adds (the original wrapped its model on multi-GPU machines)."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _looks_like_original_cnet(state_dict: dict) -> bool:
    keys = set(_strip_module(state_dict))
    return keys == set(_reference_shapes("cnet", "arrhythmia"))


def import_original_cnet(state_dict: dict) -> dict:
    """Map the original project's CNet state dict (keys c1.*, cresids.{0..4}.c1.*, cresids.{0..4}.c2.*, fc1.*,
    fc2.*, optionally prefixed `module.`) onto our `cnet`, checking every key and shape.

    Our CNet uses the original's parameter names, so the mapping is the identity after the prefix; the check
    is the point. The output layer may have 5 rows (arrhythmia) or 1 (the original's `mimodel`).
    """
    if not _is_state_dict(state_dict):
        raise CheckpointError("not an original cnet state dict (a dict of names to tensors): "
                              f"got {_describe(state_dict)}")
    ours = {k: v.detach() for k, v in _strip_module(state_dict).items()}
    problem = _mismatch({k: v.shape for k, v in ours.items()}, _original_shapes(ours),
                        "state dict", "the original CNet")
    if problem:
        raise CheckpointError(f"not a state dict of the original project's CNet: {problem}")
    return ours


def _wrap_original(state_dict: dict, path: Path) -> dict:
    try:
        ours = import_original_cnet(state_dict)
    except CheckpointError as err:
        raise CheckpointError(f"{path} is {err}") from None
    task = next(t for t, n in NUM_OUTPUTS.items() if n == ours["fc2.weight"].shape[0])
    return {"format": FORMAT, "version": VERSION, "model": "cnet", "task": task, "state_dict": ours,
            "config": {"source": ORIGINAL_SOURCE, "source_path": str(path)},
            "fingerprint": "", "epoch": -1, "metrics": {}}


def load_original_cnet(path) -> dict:
    """A state dict file saved by the original project's cnet, as one of our checkpoints (task from fc2)."""
    path = Path(path)
    return {**_wrap_original(_read(path), path), "path": str(path)}
