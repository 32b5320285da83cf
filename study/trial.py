"""One trial: train on the training split, choose the best epoch on validation, evaluate it on test once.

The same ``run_trial`` serves the single-trial CLI (``python -m study trial ...``) and Ray Tune. What a trial's
folder holds, and how each of its files is read and written: study/trial_folder.py.

Given a folder with ``last.pt``, a trial continues from the next epoch and ends with the same numbers
as one never stopped (batch order and dropout come from RNG states saved in ``last.pt``).
"""

import contextlib
import math
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from data import TaskData, save_split_indices
from data.files import write_json
from models import (CheckpointError, body_parameters, build_model, build_transfer_model, head_parameters,
                    load_checkpoint, load_weights, rhythm_inputs, save_checkpoint, save_torch,
                    trained_with_rhythm)
from study.config import (BEST_FILE, CONFIG_FILE, EPOCHS_FILE, FINAL_FILE, LAST_FILE, SPLITS_FILE,
                          TrialConfig)
from study.metrics import classification_metrics, flat_metrics, selection_key, selection_value
from study.storage import fetch, is_uri
from study.trial_folder import (STATE_FORMAT, STATE_VERSION, describe, describe_again, finished_final, load_state,
                                write_epochs_csv)
from study.weight_average import WeightAverage

Report = Callable[[dict, Path], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no CUDA device; use --device cpu or auto.")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes in bf16 natively (a CUDA card that supports it, a CPU with AVX512-BF16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check and check())


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. bf16 needs no loss scaling, unlike fp16.

    "auto" takes bf16 where the hardware computes it natively: 1.1x (seq) to 1.9x (bigru) faster on this
    project's CPUs, best validation macro F1 at most 0.02 below fp32's in short seeded runs (bench/RESULTS.md,
    section "trial"); emulated bf16 would be slower than fp32, so other CPUs stay in fp32.
    """
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and native_bf16(device):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def compute_loss(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy over the classes, or BCE-with-logits on the single MI logit; always in fp32."""
    logits = logits.float()
    if task == "mi":
        return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), y.float())
    return nn.functional.cross_entropy(logits, y)


def build_trial_model(config: TrialConfig) -> nn.Module:
    """A fresh model, an MI model transferred from an arrhythmia checkpoint, or a warm start of the same task."""
    rhythm = rhythm_inputs(config.rhythm)
    if not config.is_transfer:
        return build_model(config.model, config.task, rhythm)
    checkpoint = read_init(config.init)
    if config.task == "mi":
        return build_transfer_model(config.model, checkpoint, config.transfer_mode, rhythm)
    if trained_with_rhythm(checkpoint["config"]) != config.rhythm:
        trained = "without" if config.rhythm else "with"
        raise CheckpointError(f"--init {config.init} was trained {trained} --rhythm, and a warm start of the same "
                              f"task needs the same inputs: {'drop' if rhythm else 'add'} --rhythm")
    model = build_model(config.model, config.task, rhythm)
    load_weights(model, checkpoint)
    return model


def read_init(init: str) -> dict:
    """The checkpoint ``init`` names: a local path, or a URI (a study whose results are on s3://, ...),
    fetched into a temporary folder first. Messages name ``init`` as given."""
    if not is_uri(init):
        return load_checkpoint(init)
    with tempfile.TemporaryDirectory() as folder:
        local = fetch(init, Path(folder))
        try:
            checkpoint = load_checkpoint(local)
        except CheckpointError as error:
            raise CheckpointError(str(error).replace(str(local), init)) from None
    return {**checkpoint, "path": init}


def make_optimizer(model: nn.Module, config: TrialConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer. Each parameter group keeps its full rate as ``base_lr``; set_epoch_lr scales it."""
    if config.is_transfer and config.task == "mi" and config.transfer_mode == "finetune":
        groups = [{"params": list(body_parameters(model)), "base_lr": config.lr * config.finetune_lr_scale},
                  {"params": list(head_parameters(model)), "base_lr": config.lr}]
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "base_lr": config.lr}]
    for group in groups:
        group["lr"] = group["base_lr"]
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=config.lr, weight_decay=config.weight_decay)


def set_epoch_lr(optimizer: torch.optim.Optimizer, config: TrialConfig, epoch: int) -> float:
    """Set every group's rate for ``epoch`` from the schedule; returns the rate of the last group (the head's)."""
    factor = config.lr_factor(epoch)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[-1]["lr"]


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite: the trial stops before that epoch is saved or reported."""


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int, task: str, generator: torch.Generator, dtype: torch.dtype | None,
                    epoch: int | None = None, average: WeightAverage | None = None) -> float:
    """One pass over the training tensors (already on the device) in a seeded random order; returns the mean loss.
    A batch whose loss is not finite raises TrainingDiverged once the epoch ends, naming the first such batch.
    ``average``, where given, takes the weights after every step."""
    model.train()
    order = torch.randperm(x.shape[0], generator=generator).to(x.device)
    total = torch.zeros((), device=x.device)
    first_bad = torch.zeros((), dtype=torch.int64, device=x.device)  # 1-based; 0: every loss finite so far
    bad_loss = torch.zeros((), device=x.device)
    batches = range(0, x.shape[0], batch_size)
    for number, start in enumerate(batches, 1):
        batch = order[start:start + batch_size]
        with autocast(x.device, dtype):
            logits = model(x[batch])
        loss = compute_loss(logits, y[batch], task)
        newly_bad = (first_bad == 0) & ~torch.isfinite(loss.detach())  # on the device: no sync a batch
        first_bad = torch.where(newly_bad, number, first_bad)
        bad_loss = torch.where(newly_bad, loss.detach().float(), bad_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update()
        total += loss.detach() * batch.numel()
    if int(first_bad):  # the epoch's one device sync
        what = "NaN" if math.isnan(float(bad_loss)) else "infinite"
        where = f"epoch {epoch}, batch {int(first_bad)} of {len(batches)}" if epoch else f"batch {int(first_bad)}"
        raise TrainingDiverged(
            f"training diverged: the loss of {where} is {what} (learning rate {optimizer.param_groups[-1]['lr']:g}, "
            f"batch size {batch_size}); the trial stopped without saving that epoch: lower the learning rate, or look "
            f"for extreme values in the data")
    return float(total) / x.shape[0]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, dtype: torch.dtype | None) -> torch.Tensor:
    """Logits for every beat of ``x``, in fp32 on the CPU."""
    model.eval()
    out = []
    for start in range(0, x.shape[0], batch_size):
        with autocast(x.device, dtype):
            out.append(model(x[start:start + batch_size]).float())
    return torch.cat(out).cpu()


def evaluate(model: nn.Module, x: torch.Tensor, y: np.ndarray, task: str, class_names: tuple[str, ...],
             batch_size: int, dtype: torch.dtype | None) -> dict:
    """The metrics dict of study.metrics for one split."""
    logits = predict(model, x, batch_size, dtype)
    if task == "mi":
        scores = torch.sigmoid(logits.squeeze(1)).numpy()
        return classification_metrics(y, (scores > 0.5).astype(np.int64), class_names, scores=scores)
    return classification_metrics(y, logits.argmax(1).numpy(), class_names)


def check_data(config: TrialConfig, data: TaskData) -> None:
    """The data must be what the config describes, or the trial's record would lie about it."""
    expected = {"task": config.task, "oversample": config.oversample, "seed": config.data_seed,
                "val_fraction": config.val_fraction, "rhythm": config.rhythm}
    for name, value in expected.items():
        actual = getattr(data, name)
        if actual != value:
            raise ValueError(f"The data was prepared with {name}={actual!r} but the trial config says {value!r}.")
    if config.batch_size > len(data.train.y):
        raise ValueError(f"batch_size {config.batch_size} is larger than the training split "
                         f"({len(data.train.y)} beats).")


def run_trial(config: TrialConfig, data: TaskData, out_dir: Path | str, *, report: Report | None = None,
              log: Callable[[str], None] | None = None, evaluate_test: bool = True) -> dict:
    """Train, select the best epoch on validation, and (once) evaluate it on test. Returns final.json's content.

    ``report(metrics, out_dir)`` is called after every epoch, once ``last.pt`` holds that epoch, with a flat
    dict of scalars (``val_metric`` is the selection metric); Ray Tune turns it into ``tune.report``.
    ``evaluate_test=False`` leaves the test split untouched (hyperparameter search trials).
    """
    out_dir = Path(out_dir)
    log = log or (lambda line: None)
    check_data(config, data)
    final_path = out_dir / FINAL_FILE
    device = resolve_device(config.device)
    dtype = autocast_dtype(config.precision, device)
    final, problem = finished_final(out_dir, config, evaluate_test)
    if final is not None:
        describe_again(out_dir, config, data, device, dtype, log)
        log(f"{out_dir} already holds this finished trial; not training again.")
        return {**final, "checkpoint": str(out_dir / BEST_FILE)}  # where it is now, if the folder moved
    if problem is not None:
        log(f"{final_path} {problem}: the trial's result is computed again from {LAST_FILE}.")
    torch.manual_seed(config.seed)
    model = build_trial_model(config).to(device)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    average = WeightAverage(model, config.ema_decay) if config.ema_decay else None

    history: list[dict] = []
    best = {"epoch": 0, "value": -1.0, "val": None}
    best_weights = None
    stale_epochs, start_epoch = 0, 1
    last_path = out_dir / LAST_FILE
    if last_path.exists():
        state = load_state(last_path, config, data)
        try:  # what load_state cannot check without the model: the weights, optimizer and generator states fit
            shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
            if {name: getattr(tensor, "shape", None) for name, tensor in state["best_weights"].items()} != shapes:
                raise ValueError("its best epoch's weights are not this model's")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            generator.set_state(state["batch_rng"])
            if average is not None:
                average.load_state_dict(state.get("average"))
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
        except (KeyError, RuntimeError, TypeError, ValueError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"{last_path} is damaged: its saved state does not fit this trial's model ({reason}); "
                             "move it away to start the trial afresh.") from None
        history, best, stale_epochs = state["history"], state["best"], state["stale_epochs"]
        best_weights = state["best_weights"]
        start_epoch = state["epoch"] + 1
        log(f"Continuing {out_dir} from epoch {start_epoch}.")
        describe_again(out_dir, config, data, device, dtype, log)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / CONFIG_FILE, describe(config, data, device, dtype))
        save_split_indices(data, out_dir / SPLITS_FILE)

    if start_epoch <= config.epochs:
        final_path.unlink(missing_ok=True)  # training more: an older final.json no longer describes the trial
    x_train = torch.tensor(data.train.x, dtype=torch.float32, device=device)  # copies: input may be read-only
    y_train = torch.tensor(data.train.y, dtype=torch.int64, device=device)
    x_val = torch.tensor(data.val.x, dtype=torch.float32, device=device)
    for epoch in range(start_epoch, config.epochs + 1):
        if config.patience and stale_epochs >= config.patience:
            break  # early stopping: also holds when continuing a trial that had already stopped
        started = time.perf_counter()
        lr = set_epoch_lr(optimizer, config, epoch)
        loss = train_one_epoch(model, optimizer, x_train, y_train, config.batch_size, config.task, generator, dtype,
                               epoch=epoch, average=average)
        train_seconds = time.perf_counter() - started
        validated = average.averaged_model(model) if average is not None else model
        val = evaluate(validated, x_val, data.val.y, config.task, data.class_names, config.eval_batch_size, dtype)
        value = selection_value(val, config.task)
        if value > best["value"]:
            best = {"epoch": epoch, "value": value, "val": val}
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in validated.state_dict().items()}
            stale_epochs = 0
        else:
            stale_epochs += 1
        seconds = time.perf_counter() - started
        row = {"epoch": epoch, "lr": lr, "train_loss": loss, "val_metric": value, **flat_metrics(val, "val"),
               "best_epoch": best["epoch"], "best_val_metric": best["value"], "train_seconds": train_seconds,
               "seconds": seconds, "beats_per_s": len(y_train) / train_seconds}
        history.append(row)
        save_torch(last_path, {
            "format": STATE_FORMAT, "version": STATE_VERSION, "config": config.to_dict(),
            "fingerprint": data.fingerprint, "epoch": epoch, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
            "batch_rng": generator.get_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": history, "best": best, "best_weights": best_weights, "stale_epochs": stale_epochs,
            "average": average.state_dict() if average is not None else None})
        write_epochs_csv(out_dir / EPOCHS_FILE, history)
        log(f"epoch {epoch:3d}/{config.epochs}  lr {lr:.3g}  loss {loss:.4f}  val_{selection_key(config.task)} {value:.4f}"
            f"  (best {best['value']:.4f} @ {best['epoch']})  {seconds:.1f}s  {row['beats_per_s']:,.0f} beats/s")
        if report is not None:
            report(row, out_dir)
    stopped_early = len(history) < config.epochs

    model.load_state_dict(best_weights)
    # Written once, from the state last.pt holds, so best.pt and final.json always describe the same epoch.
    save_checkpoint(out_dir / BEST_FILE, model, model_name=config.model, task=config.task, config=config.to_dict(),
                    fingerprint=data.fingerprint, epoch=best["epoch"], metrics=best["val"])
    test = None
    if evaluate_test:
        x_test = torch.tensor(data.test.x, dtype=torch.float32, device=device)
        test = evaluate(model, x_test, data.test.y, config.task, data.class_names, config.eval_batch_size, dtype)
    final = {"config": config.to_dict(), "fingerprint": data.fingerprint, "epochs_run": len(history),
             "best_epoch": best["epoch"], "stopped_early": stopped_early, "selection_metric": f"val_{selection_key(config.task)}",
             "val": best["val"], "test": test, "train_seconds": sum(row["train_seconds"] for row in history),
             "checkpoint": str(out_dir / BEST_FILE)}
    write_json(final_path, final)
    return final
