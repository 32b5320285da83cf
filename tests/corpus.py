"""The bad-input corpus's workspace and attempts, shared by tests/test_bad_inputs.py (data files, names, numbers,
checkpoints, paths) and tests/test_bad_inputs_study.py (study folders, locks, entry points, flags).

Every case prepares its input, snapshots the shared workspace (a warm cache, an earlier study's cell file, an
earlier trial's folder, the checkpoints), makes one attempt through the public surface (`data.load_beats`,
`data.prepare_task`, `study.cli.main`, or a module's command line, as a user would type it), and checks the message
and then that no file of the workspace was added, removed or rewritten. The few valid inputs (CRLF, a byte-order
mark, blank lines) must load to the same arrays; they may add a cache entry, but must not touch the entries already
there.
"""


import contextlib
import hashlib
import io
import os
import json
import re
import signal
import socket
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from data import DataError, load_beats, prepare_task
from data.cache import CACHE_DIRNAME
from data.demo import format_rows, make_beats

from models import build_model
from models.transfer import save_checkpoint
from study.results import StudyRecord
from study.tune import cluster
from study.cli import main

ROOT = Path(__file__).resolve().parents[1]
VALID = None  # expected message of an input that must load


# ------------------------------------------------------------------------------------------ the workspace

@dataclass
class Workspace:
    root: Path
    input: Path  # the demo CSVs (read only)
    cache: Path  # warm: every demo CSV parsed once
    results: Path  # an earlier study and an earlier trial
    trial: Path  # the earlier trial's folder, the --out of every trial command below
    ckpt: Path
    marker: Path  # a pickle carrying code would create it
    x: np.ndarray  # the 20 beats every CSV case starts from
    y: np.ndarray


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def make_workspace(demo_dir: Path, tmp_path_factory) -> Workspace:
    """The corpus's workspace (conftest.py's ``ws`` fixture, one a test module)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    x, y = make_beats("mitbih", 120, np.random.default_rng(0))
    w = Workspace(root, demo_dir, root / "cache", root / "results", root / "results" / "trial", root / "ckpt",
                  root / "MARKER", x[:20], y[:20])
    for task in ("arrhythmia", "mi"):
        prepare_task(task, demo_dir, cache_dir=w.cache, limit=200)
    cells = w.results / "smoke" / "cells"
    cells.mkdir(parents=True)
    (cells / "arrhythmia-cnet-none-scratch.json").write_text(json.dumps({"format": "ecg-study-cell", "version": 1}))
    w.trial.mkdir()
    (w.trial / "final.json").write_text(json.dumps({"config": {}, "note": "an earlier trial"}))
    (w.trial / "config.json").write_text(json.dumps({"config": {}}))
    for name, task in (("seq", "arrhythmia"), ("cnet", "mi"), ("cnet", "arrhythmia")):
        save_checkpoint(w.ckpt / f"{name}-{task}.pt", build_model(name, task), model_name=name, task=task,
                        config={}, fingerprint="", epoch=1, metrics={})
    good = (w.ckpt / "cnet-arrhythmia.pt").read_bytes()
    (w.ckpt / "truncated.pt").write_bytes(good[: len(good) // 2])
    torch.save({"format": "ecg-study-checkpoint", "version": 1, "hook": Payload(w.marker)}, w.ckpt / "code.pt")
    broken = w.results / "broken-trial"  # an interrupted trial whose last.pt was cut short by a copy
    broken.mkdir()
    torch.save({"format": "ecg-study-trial-state", "weights": torch.zeros(1000)}, broken / "last.pt")
    (broken / "last.pt").write_bytes((broken / "last.pt").read_bytes()[:500])
    shapeless = w.results / "shapeless-trial"  # a last.pt that reads, of the right format, without its fields
    shapeless.mkdir()
    torch.save({"format": "ecg-study-trial-state", "version": 1, "epoch": "3"}, shapeless / "last.pt")
    return w


def snapshot(root: Path, case: Path) -> dict[str, tuple]:
    """Every file under root with its content hash and mtime; folders by name (of the cases' folders, the one of
    ``case`` only: what the case put there before its attempt must come out of it unchanged too)."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("cases") and not (path == case or case in path.parents):
            continue
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            state[rel] = ("dir",)
        else:
            stat = path.stat()
            state[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_mtime_ns, stat.st_size)
    return state


# ----------------------------------------------------------------------------------------------- attempts

def load(path: Path, w: Workspace):
    """Attempt: load one CSV into the warm cache; the DataError's message, or the arrays."""
    def attempt():
        try:
            return load_beats(path, cache_dir=w.cache)
        except DataError as error:
            return str(error)
    return attempt


def command(run, *argv) -> Callable[[], str]:
    """Attempt: a command line in process (``run(argv)`` -> exit status); exit status 2 and the last line of
    stderr, which is the only line unless argparse printed its usage first."""
    def attempt():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = run([str(a) for a in argv])
            except SystemExit as exit:  # argparse
                code = exit.code
        lines = err.getvalue().strip().splitlines()
        assert code == 2 and lines, f"exit status {code}, stderr {err.getvalue()!r}"
        if ": error: " not in lines[-1]:  # ours: exactly one line, "error: <sentence>"
            assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[-1]
    return attempt


def cli(*argv) -> Callable[[], str]:
    """Attempt: `python -m study ...`."""
    return command(main, *argv)


def defaults_then(defaults: dict, flags: tuple) -> list:
    """``defaults`` ({flag: value}) as command-line words, less the flags a case gives itself, then ``flags``: a
    flag may be given once only."""
    given = {str(f).partition("=")[0] for f in flags if str(f).startswith("--")}
    return [word for flag, value in defaults.items() if flag not in given for word in (flag, value)] + list(flags)


def trial(w: Workspace, *flags) -> Callable[[], str]:
    return cli("trial", *defaults_then({"--input": w.input, "--cache": w.cache, "--limit": 200, "--out": w.trial,
                                        "--epochs": 1}, flags))


def study_record(**changes) -> dict:
    """A study.json as the driver writes it (study/results.py), with ``changes``."""
    record = StudyRecord(name="x", profile="smoke", smote_method="smote-tomek", cells=("arrhythmia-cnet-none-scratch",),
                         seed=0, data={}, created="2026-01-01T00:00:00+00:00", plan={})
    return {**record.to_json(), **changes}


def _launch_argv(w: Workspace, *flags) -> list:
    return ["launch", *defaults_then({"--input": w.input, "--results": w.results, "--tasks": "arrhythmia",
                                      "--models": "cnet", "--oversample": "none"}, flags)]


def planned_study_record(w: Workspace, name: str) -> dict:
    """The study.json a launch of ``launch_without_ray(w, "--name", name)`` would write: its plan the same."""
    from study.cli import get_args_parser
    from study.plan import resolve_plan

    plan = resolve_plan(get_args_parser().parse_args([str(a) for a in _launch_argv(w, "--name", name)]))
    return study_record(name=name, cells=plan.cells, plan=json.loads(json.dumps(asdict(plan))))


def cell_record() -> dict:
    """A finished arrhythmia-cnet-none-scratch cell's file, as the fixed study folder holds it."""
    return json.loads((ROOT / "tests/fixtures/study/cells/arrhythmia-cnet-none-scratch.json").read_text())


def launch_without_ray(w: Workspace, *flags) -> Callable[[], str]:
    """Attempt: `launch` in process, refusing to start Ray: every case here must fail before it."""
    attempt = cli(*_launch_argv(w, *flags))

    def refuse(args):
        raise AssertionError("reached ray.init: the bad input was not caught first")

    def guarded():
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cluster, "start_ray", refuse)
            return attempt()
    return guarded


def launch_subprocess(w: Workspace, *flags, timeout: float = 45) -> Callable[[], str]:
    """Attempt: `python -m study launch` in a child process (it may hang in ray.init); the last stderr line."""
    def attempt():
        words = defaults_then({"--input": w.input, "--results": w.results}, flags)
        result = subprocess.run([sys.executable, "-m", "study", "launch", *map(str, words)],
                                cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and lines, (result.returncode, result.stderr[-2000:])
        return lines[-1]
    return attempt


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- the cases

def csv(name: str = "mitbih_train.csv", edit=None, raw=None, labels=None):
    """A CSV case: the 20 workspace beats (labels replaced if given), their lines edited, or raw bytes."""
    def make(w: Workspace, folder: Path):
        y = w.y if labels is None else labels
        data = format_rows(w.x, y)
        if edit is not None:
            data = edit(data.decode().splitlines(), data)
            data = data if isinstance(data, bytes) else ("\n".join(data) + "\n").encode()
        if raw is not None:
            data = raw(data)
        path = folder / name
        path.write_bytes(data)
        return load(path, w)
    return make


def cell(row: int, col: int, text: str):
    """Edit: set row `row`, column `col` (1-based) to `text`."""
    def edit(lines, data):
        cells = lines[row - 1].split(",")
        cells[col - 1] = text
        lines[row - 1] = ",".join(cells)
        return lines
    return edit


def zip_of(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mitbih_train.csv", data)
    return buffer.getvalue()


def ptb_normal_with_one_mi_beat():
    labels = np.zeros(20, dtype=np.int64)
    labels[3] = 1
    return csv("ptbdb_normal.csv", labels=labels)


@dataclass
class Case:
    id: str
    make: Callable[[Workspace, Path], Callable]  # prepares the input, returns the attempt
    expected: str | None  # a regex of the one sentence; VALID: must load to the workspace beats
    marks: tuple = ()


def _error(call) -> str:
    try:
        call()
    except ValueError as error:
        return str(error)
    raise AssertionError("no error")


DEADLINE_S = 60  # issue 13: no case hangs; every one ends by itself within a minute on 2 cores


@contextlib.contextmanager
def deadline(seconds: float, what: str):
    """Fail an attempt still running after ``seconds`` (a hang), instead of waiting for it."""
    def expire(signum, frame):
        raise AssertionError(f"{what}: still running after {seconds} s, so it hangs")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_case(ws: Workspace, case: Case) -> None:
    """Prepare the case, attempt it, and check its sentence and that the workspace is as it was."""
    folder = ws.root / "cases" / re.sub(r"\W+", "-", case.id)
    folder.mkdir(parents=True)
    attempt = case.make(ws, folder)
    before = snapshot(ws.root, folder)

    with deadline(DEADLINE_S, case.id):
        outcome = attempt()

    after = snapshot(ws.root, folder)
    if case.expected is VALID:
        x, y = outcome
        np.testing.assert_array_equal(x, ws.x.astype(np.float32))
        np.testing.assert_array_equal(y, ws.y)
        assert {k: v for k, v in after.items() if k in before} == before, "an existing file was changed"
        return
    assert isinstance(outcome, str), f"expected an error, got {type(outcome).__name__}"
    assert "\n" not in outcome and re.search(case.expected, outcome), outcome
    # A cache of the case's own (data/cache.py) may gain the entries of CSVs that parsed; nothing else may appear or
    # change.
    own = folder.relative_to(ws.root).as_posix()
    cached = {k for k in set(after) - set(before)
              if k.startswith(f"{own}/") and {"cache", CACHE_DIRNAME} & set(k.split("/"))}
    after = {k: v for k, v in after.items() if k not in cached}
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    assert not ws.marker.exists(), "a checkpoint's code ran"
