"""Atomic writes for the study: data.files' helpers, plus torch objects."""

import io
from pathlib import Path

import torch

from data.files import atomic_write, write_bytes, write_json, write_text

__all__ = ["atomic_write", "save_torch", "write_json", "write_text"]


def save_torch(path: Path | str, obj) -> Path:
    """torch.save into memory, then an ordinary write: a full disk then raises OSError (ENOSPC, EFBIG ...),
    where torch's own writer raises a RuntimeError about zip record positions."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())
