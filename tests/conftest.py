"""Shared fixtures: the repository root on sys.path, and small generated Kaggle-format data."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Keep Ray on loopback and quiet in every test that starts it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """The four Kaggle-format CSVs of a small demo set, written once per test session."""
    from data import write_demo

    folder = tmp_path_factory.mktemp("demo-input")
    write_demo(folder, rows=3000, seed=0)
    return folder
