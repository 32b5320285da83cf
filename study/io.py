"""Atomic writes for the study: data.files' helpers, plus torch objects (models.transfer.save_torch)."""

from data.files import atomic_write, write_json, write_text
from models.transfer import save_torch

__all__ = ["atomic_write", "save_torch", "write_json", "write_text"]
