"""Training throughput of run_trial's loop against the common per-sample Dataset + DataLoader loop.

    python -m bench.bench_trial               # all four models; writes the "trial" section of bench/RESULTS.md
    python -m bench.bench_trial --quick       # fewer beats, for a quick look

Both loops train the same model with Adam at batch 256 on generated beats (data.demo's shapes) and are
timed side by side in one run, alternating, best of `--repeats`; figures are beats/s and their ratio.
`cnet` and `seq` run a full epoch of 87,554 beats; the RNNs, slow on a CPU, run a slice (on a GPU: all). Then the accuracy check
of the precision lever: the same trial in fp32 and with bf16 autocast, validation macro F1 of each.
"""

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bench._results import write_section
from data.demo import make_beats
from models import build_model, list_models
from study.trial import autocast_dtype, evaluate, resolve_device, train_one_epoch

FULL_EPOCH = 87_554
BATCH = 256


class BeatDataset(Dataset):
    """The common pattern: one (beat, label) pair a __getitem__, collated by a DataLoader."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.x[i]), int(self.y[i])


def dataloader_epoch(model: nn.Module, optimizer, loader: DataLoader, device: torch.device) -> None:
    model.train()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def time_baseline(name: str, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    torch.manual_seed(0)
    model = build_model(name, "arrhythmia").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(BeatDataset(x, y), batch_size=BATCH, shuffle=True)
    started = time.perf_counter()
    dataloader_epoch(model, optimizer, loader, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(y) / (time.perf_counter() - started)


def time_ours(name: str, x: np.ndarray, y: np.ndarray, device: torch.device, precision: str) -> float:
    torch.manual_seed(0)
    model = build_model(name, "arrhythmia").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt = torch.tensor(x, device=device)
    yt = torch.tensor(y, device=device)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    train_one_epoch(model, optimizer, xt, yt, BATCH, "arrhythmia", generator, autocast_dtype(precision, device))
    return len(y) / (time.perf_counter() - started)


def accuracy_check(name: str, beats: int, epochs: int, lr: float, batch: int, device: torch.device) -> dict:
    """Validation macro F1 of the same seeded training in fp32 and with bf16 autocast."""
    rng = np.random.default_rng(1)
    x, y = make_beats("mitbih", beats, rng)
    xv, yv = make_beats("mitbih", max(beats // 4, 2000), rng)
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model(name, "arrhythmia").to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(0)
        xt, yt = torch.tensor(x, device=device), torch.tensor(y, device=device)
        dtype = autocast_dtype(precision, device)
        best = 0.0
        for _ in range(epochs):
            train_one_epoch(model, optimizer, xt, yt, batch, "arrhythmia", generator, dtype)
            metrics = evaluate(model, torch.tensor(xv, device=device), yv, "arrhythmia",
                               ("N", "S", "V", "F", "Q"), 4096, dtype)
            best = max(best, metrics["macro_f1"])
        out[precision] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer beats: a quick look, not for RESULTS.md")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rnn-beats", type=int, default=2048, help="slice the RNNs train on (CPU)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    x, y = make_beats("mitbih", 8192 if args.quick else FULL_EPOCH, np.random.default_rng(0))
    rows = []
    for name in list_models():
        beats = len(y) if name in ("cnet", "seq") or device.type == "cuda" else min(args.rnn_beats, len(y))
        xs, ys = x[:beats], y[:beats]
        figures = {"dataloader": [], "fp32": [], "bf16": []}
        for _ in range(args.repeats):  # alternate, so drifts of a noisy machine hit all three alike
            figures["dataloader"].append(time_baseline(name, xs, ys, device))
            figures["fp32"].append(time_ours(name, xs, ys, device, "fp32"))
            figures["bf16"].append(time_ours(name, xs, ys, device, "bf16"))
        best = {k: max(v) for k, v in figures.items()}
        rows.append((name, beats, best))
        print(f"{name:7s} {beats:6d} beats  DataLoader {best['dataloader']:9.0f}  run_trial fp32 {best['fp32']:9.0f} "
              f"({best['fp32'] / best['dataloader']:.2f}x)  run_trial bf16 {best['bf16']:9.0f} "
              f"({best['bf16'] / best['dataloader']:.2f}x) beats/s", flush=True)
    auto = autocast_dtype("auto", device)
    lines = [f"Training throughput, batch 256, Adam, device `{device}`; the trial's default precision (`auto`) "
             f"here is {'bf16 autocast' if auto else 'fp32'}. Both loops see the same beats; the DataLoader loop "
             f"runs in fp32. Best of {args.repeats} alternating runs; beats/s.",
             "", "| model | beats timed | DataLoader loop | run_trial fp32 | ratio | run_trial bf16 autocast | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, beats, best in rows:
        lines.append(f"| {name} | {beats:,} | {best['dataloader']:,.0f} | {best['fp32']:,.0f} | "
                     f"{best['fp32'] / best['dataloader']:.2f}x | {best['bf16']:,.0f} | "
                     f"{best['bf16'] / best['dataloader']:.2f}x |")
    if not args.quick:
        lines += ["", "Accuracy of the precision lever: best validation macro F1 over the epochs of the same seeded "
                  "training on generated beats, fp32 against bf16 autocast.", "",
                  "| model | training beats | epochs | lr | batch | fp32 | bf16 | difference |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        # The RNNs are slow on a CPU: a smaller set, more epochs and a higher rate, so that they learn at all.
        for name, beats, epochs, lr, batch in (("cnet", 20000, 4, 1e-3, 256), ("seq", 20000, 4, 1e-3, 256),
                                               ("bigru", 3000, 6, 3e-3, 64), ("bilstm", 3000, 6, 3e-3, 64)):
            scores = accuracy_check(name, beats, epochs, lr, batch, device)
            print(f"{name}: validation macro F1 fp32 {scores['fp32']:.4f}, bf16 {scores['bf16']:.4f}", flush=True)
            lines.append(f"| {name} | {beats:,} | {epochs} | {lr:g} | {batch} | {scores['fp32']:.4f} | "
                         f"{scores['bf16']:.4f} | {scores['bf16'] - scores['fp32']:+.4f} |")
        write_section("trial" if device.type == "cpu" else f"trial-{device.type}", "\n".join(lines))


if __name__ == "__main__":
    main()
