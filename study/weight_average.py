"""An exponential moving average (EMA) of a model's weights over its optimizer steps, for validation and test.

With ``ema_decay`` d on (study/config.py), each step after the optimizer's adds the new weights w to a running sum,
    sum = d * sum + (1 - d) * w,
and the weights a trial validates, selects and saves are sum / (1 - d^steps): the bias-corrected average (as Adam's
moments), which weights the step k steps back by d^k over the steps taken so far, and none by the initial weights.
Training itself goes on from the raw weights. Averaging smooths the epoch-to-epoch swings of the validation metric
that make choosing the best epoch on a small validation set a lottery (bench/RESULTS.md "quality").
"""

import copy

import torch
from torch import nn


class WeightAverage:
    """The average of ``model``'s trained weights: the parameters that require a gradient and the floating-point
    buffers (running statistics); the rest (a frozen transferred body, counters) is the model's own, unaveraged,
    so a frozen body is saved bit for bit as it was loaded."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must be between 0 and 1 to average; got {decay!r}.")
        self.decay = decay
        self.steps = 0
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        trained |= {name for name, b in model.named_buffers() if b.is_floating_point()}
        # Views of the model's tensors, read at every step: the optimizer and load_state_dict write them in place.
        self.sources = {name: value for name, value in model.state_dict().items() if name in trained}
        self.sums = {name: torch.zeros_like(value) for name, value in self.sources.items()}
        self.averaged = copy.deepcopy(model)  # holds the averaged weights once averaged_model() writes them

    @torch.no_grad()
    def update(self) -> None:
        """Add the model's weights after one optimizer step."""
        self.steps += 1
        for name, value in self.sources.items():
            self.sums[name].mul_(self.decay).add_(value, alpha=1 - self.decay)

    @torch.no_grad()
    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` with the averaged weights (``model`` itself while no step has been taken)."""
        if self.steps == 0:
            return model
        scale = 1 / (1 - self.decay ** self.steps)
        weights = {name: self.sums[name] * scale if name in self.sums else value
                   for name, value in model.state_dict().items()}
        self.averaged.load_state_dict(weights)
        return self.averaged

    def state_dict(self) -> dict:
        return {"decay": self.decay, "steps": self.steps, "sums": {k: v.detach().cpu() for k, v in self.sums.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``'s output; a state of another decay or other weights raises ValueError."""
        if not isinstance(state, dict) or state.get("decay") != self.decay or not isinstance(state.get("steps"), int):
            raise ValueError("its weight average is not one of this trial's ema_decay")
        sums = state.get("sums")
        if not isinstance(sums, dict) or {k: getattr(v, "shape", None) for k, v in sums.items()} != {
                k: v.shape for k, v in self.sums.items()}:
            raise ValueError("its weight average is not of this trial's model")
        self.steps = state["steps"]
        for name, value in sums.items():
            self.sums[name].copy_(value)
