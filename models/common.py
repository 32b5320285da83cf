"""Pieces every model shares: the input contract and the head/body split used by transfer and fine-tuning."""

from collections.abc import Iterator

import torch
from torch import nn

from data.constants import BEAT_LEN


def as_beats(x: torch.Tensor) -> torch.Tensor:
    """Return `x` as (batch, BEAT_LEN); (batch, 1, BEAT_LEN) is accepted too, as the original project fed it."""
    if x.dim() == 3 and x.shape[1] == 1:
        x = x.squeeze(1)
    if x.dim() != 2 or x.shape[1] != BEAT_LEN:
        raise ValueError(f"expected beats shaped (batch, {BEAT_LEN}) or (batch, 1, {BEAT_LEN}), "
                         f"got {tuple(x.shape)}")
    return x


def split_inputs(x: torch.Tensor, rhythm_inputs: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(beats (batch, BEAT_LEN), RR-interval features (batch, rhythm_inputs) or None) of a model's input: the
    beats alone (as_beats), or each beat's samples followed by its rhythm_inputs features (data/rhythm.py)."""
    if not rhythm_inputs:
        return as_beats(x), None
    if x.dim() != 2 or x.shape[1] != BEAT_LEN + rhythm_inputs:
        raise ValueError(f"expected beats with {rhythm_inputs} RR-interval features, shaped (batch, "
                         f"{BEAT_LEN + rhythm_inputs}), got {tuple(x.shape)}")
    return x[:, :BEAT_LEN], x[:, BEAT_LEN:]


def with_rhythm(summary: torch.Tensor, rhythm: torch.Tensor | None) -> torch.Tensor:
    """The body's summary of each beat, followed by its RR-interval features where the model takes them: the head's
    input (so the features reach the classifier beside the shape, as de Chazal et al. 2004 combined them)."""
    return summary if rhythm is None else torch.cat([summary, rhythm.to(summary.dtype)], dim=1)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind torch.compile's wrapper (whose parameter names gain an `_orig_mod.` prefix)."""
    return getattr(model, "_orig_mod", model)


def _head_names(model: nn.Module) -> tuple[str, ...]:
    head = getattr(unwrap(model), "HEAD", None)
    if not head:
        raise ValueError(f"{type(unwrap(model)).__name__} has no HEAD attribute naming its head layers")
    return tuple(head)


def is_head_key(key: str, head: tuple[str, ...]) -> bool:
    """Whether a parameter or state-dict key (e.g. "fc1.weight") belongs to one of the `head` layers."""
    return key.split(".", 1)[0] in head


def head_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters of the model's head: its last two fully connected layers (`HEAD`)."""
    head = _head_names(model)
    return (p for name, p in unwrap(model).named_parameters() if is_head_key(name, head))


def body_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Every parameter that is not in the head: what transfer loads and freezes (or trains at a lower rate)."""
    head = _head_names(model)
    return (p for name, p in unwrap(model).named_parameters() if not is_head_key(name, head))
