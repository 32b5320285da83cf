"""Shared fixtures: the repository root on sys.path, a home folder of the suite's own, and small generated
Kaggle-format data.

The suite runs as on a machine that never ran it: HOME (and the XDG and matplotlib folders under it) is a new
empty folder for the session, so no test reads or writes the user's ~/.ray, ~/.cache or ~/.config, and no test
passes because an earlier run left something there. Ray's token authentication reads its token from
RAY_AUTH_TOKEN_PATH, a token this file makes: every local ray.init, `ray start` and driver of the session (and
the processes they start, which inherit the environment) uses it, and Ray never writes ~/.ray/auth_token.
"""

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Set before anything imports Ray or matplotlib: both read these folders when first used.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="ecg-tests-home-"))
RAY_TOKEN = SESSION_HOME.parent / f"{SESSION_HOME.name}-ray-token"  # outside HOME: HOME stays as Ray leaves it
RAY_TOKEN.write_text(secrets.token_hex(32))
os.environ.update({"HOME": str(SESSION_HOME), "XDG_CACHE_HOME": str(SESSION_HOME / ".cache"),
                   "XDG_CONFIG_HOME": str(SESSION_HOME / ".config"), "MPLCONFIGDIR": str(SESSION_HOME / ".matplotlib"),
                   "RAY_AUTH_TOKEN_PATH": str(RAY_TOKEN)})
os.environ.pop("RAY_AUTH_TOKEN", None)  # a user's token would take precedence over the file
# Keep Ray on loopback and quiet in every test that starts it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest


def pytest_sessionfinish(session, exitstatus):
    from tests.rays import end_ray

    end_ray()


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_HOME, ignore_errors=True)
    RAY_TOKEN.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """The four Kaggle-format CSVs of a small demo set, written once per test session."""
    from data import write_demo

    folder = tmp_path_factory.mktemp("demo-input")
    write_demo(folder, rows=3000, seed=0)
    return folder


@pytest.fixture
def ray_2cpu():
    """A local Ray of 2 CPUs and no GPUs on loopback, shared by the tests that ask for it (tests/rays.py)."""
    from tests.rays import shared_ray

    return shared_ray()


@pytest.fixture(scope="module")
def ws(demo_dir, tmp_path_factory):
    """The bad-input corpus's workspace (tests/corpus.py)."""
    from tests.corpus import make_workspace

    return make_workspace(demo_dir, tmp_path_factory)
