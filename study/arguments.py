"""Argument types of the command line, shared by `study trial` (study/cli.py) and `study launch` (study/plan.py):
each turns a flag's text into a value or raises argparse's error with what was expected (those the data commands
take too, a seed's and the demo's rows, are data.entry's)."""

import argparse

from data.constants import MIN_LIMIT
from data.entry import whole_number

MAX_SEEDS = 1000  # seed runs a cell: each trains the chosen configuration once more

positive_int = whole_number(1)
non_negative_int = whole_number(0)
beat_limit = whole_number(MIN_LIMIT, what="beats kept of each CSV")
seed_count = whole_number(1, MAX_SEEDS, "seed runs of each cell")


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, not {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def decay(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or between 0 and 1, not {text}")
    return value
