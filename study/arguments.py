"""Argument types of the command line, shared by `study trial` (study/cli.py) and `study launch` (study/plan.py):
each turns a flag's text into a value or raises argparse's error with what was expected (a seed's, which the data
commands take too, is data.entry.seed)."""

import argparse

from data.constants import DEMO_ROWS, MIN_LIMIT

MAX_SEEDS = 1000  # seed runs a cell: each trains the chosen configuration once more


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, not {text}")
    return value


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


def _whole_number_in(text: str, low: int, high: int | None, what: str) -> int:
    value = int(text)
    if value < low or (high is not None and value > high):
        bounds = f"from {low:,} to {high:,}" if high is not None else f"of at least {low:,}"
        raise argparse.ArgumentTypeError(f"must be a whole number {bounds} ({what}), not {text}")
    return value


def demo_rows(text: str) -> int:
    return _whole_number_in(text, *DEMO_ROWS, "rows of the demo mitbih_train.csv")


def beat_limit(text: str) -> int:
    return _whole_number_in(text, MIN_LIMIT, None, "beats kept of each CSV")


def seed_count(text: str) -> int:
    return _whole_number_in(text, 1, MAX_SEEDS, "seed runs of each cell")
