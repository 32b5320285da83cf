"""Atomic writes for the study: data.files' helpers, plus torch objects."""

from pathlib import Path

import torch

from data.files import atomic_write, write_json, write_text

__all__ = ["atomic_write", "save_torch", "write_json", "write_text"]


def save_torch(path: Path | str, obj) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
