"""A bad-input corpus: each malformed input fails early with its one sentence and leaves what exists alone.

    python -m pytest -q tests/test_bad_inputs.py

One table, one test. Every case prepares its input, snapshots the shared workspace (a warm cache, an
earlier study's cell file, an earlier trial's folder, the checkpoints), makes one attempt through the
public surface (`data.load_beats`, `data.prepare_task`, or `study.cli.main`, as a user would type it),
and checks the message and then that no file of the workspace was added, removed or rewritten. The few
valid inputs (CRLF, a byte-order mark, blank lines) must load to the same arrays; they may add a cache
entry, but must not touch the entries already there.
"""

import contextlib
import hashlib
import io
import json
import re
import socket
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from data import DataError, load_beats, prepare_task
from data.demo import format_rows, make_beats
from data.files import write_json
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


@pytest.fixture(scope="module")
def ws(demo_dir, tmp_path_factory) -> Workspace:
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
    return w


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file under root with its content hash and mtime; folders by name (the cases' scratch excluded)."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("cases"):
            continue
        if path.is_dir():
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


def cli(*argv) -> Callable[[], str]:
    """Attempt: `python -m study ...` in process; exit status 2 and the last line of stderr."""
    def attempt():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exit:  # argparse
                code = exit.code
        lines = err.getvalue().strip().splitlines()
        assert code == 2 and lines, f"exit status {code}, stderr {err.getvalue()!r}"
        if not lines[-1].startswith("python -m study"):  # ours: exactly one line, "error: <sentence>"
            assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[-1]
    return attempt


def trial(w: Workspace, *flags) -> Callable[[], str]:
    return cli("trial", "--input", w.input, "--cache", w.cache, "--limit", 200, "--out", w.trial, "--epochs", 1,
               *flags)


def study_record(**changes) -> dict:
    """A study.json as the driver writes it (study/results.py), with ``changes``."""
    record = StudyRecord(name="x", profile="smoke", smote_method="smote-tomek", cells=("arrhythmia-cnet-none-scratch",),
                         seed=0, data={}, created="2026-01-01T00:00:00+00:00", plan={})
    return {**record.to_json(), **changes}


def launch_without_ray(w: Workspace, *flags) -> Callable[[], str]:
    """Attempt: `launch` in process, refusing to start Ray: every case here must fail before it."""
    attempt = cli("launch", "--input", w.input, "--results", w.results, "--tasks", "arrhythmia", "--models", "cnet",
                  "--oversample", "none", *flags)

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
        result = subprocess.run([sys.executable, "-m", "study", "launch", "--input", str(w.input),
                                 "--results", str(w.results), *map(str, flags)],
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


CASES = [
    # --- CSVs (data.load_beats): the file named, the row and the column counted as an editor shows them
    Case("truncated last row", csv(raw=lambda d: d[:-700]),
         r"mitbih_train\.csv row 20 has \d+ values, expected 188 \(187 samples, then the label\); it is the last "
         r"row and has no line end, so the file looks cut short$"),
    Case("extra column", csv(edit=lambda lines, d: lines[:5] + [lines[5] + ",0.5"] + lines[6:]),
         r"mitbih_train\.csv row 6 has 189 values, expected 188 \(187 samples, then the label\)$"),
    Case("header line", csv(edit=lambda lines, d: [",".join(f"c{i}" for i in range(188))] + lines),
         r"mitbih_train\.csv row 1 is a header line \('c0,c1,c2,.*'\): the heartbeat CSVs have no header, "
         r"remove that line$"),
    Case("semicolons", csv(edit=lambda lines, d: [line.replace(",", ";") for line in lines]),
         r"mitbih_train\.csv row 1 separates its values with semicolons: expected commas, as in the Kaggle CSVs$"),
    Case("semicolons and decimal commas",
         csv(edit=lambda lines, d: [line.replace(",", ";").replace(".", ",") for line in lines]),
         r"mitbih_train\.csv row 1 separates its values with semicolons"),
    Case("byte-order mark (valid)", csv(raw=lambda d: b"\xef\xbb\xbf" + d), VALID),
    Case("byte-order mark, label 5 on row 4", csv(edit=cell(4, 188, "5"), raw=lambda d: b"\xef\xbb\xbf" + d),
         r"mitbih_train\.csv row 4, column 188 \(the label\) is 5, expected an integer in 0\.\.4$"),
    Case("blank lines (valid)", csv(edit=lambda lines, d: lines[:5] + ["", "  "] + lines[5:] + [""]), VALID),
    Case("CRLF (valid)", csv(raw=lambda d: d.replace(b"\n", b"\r\n")), VALID),
    Case("NaN", csv(edit=cell(4, 11, "nan")), r"mitbih_train\.csv row 4, column 11 is NaN, expected a number$"),
    Case("infinity", csv(edit=cell(9, 1, "-inf")),
         r"mitbih_train\.csv row 9, column 1 is infinite, expected a finite number$"),
    Case("empty cell", csv(edit=cell(7, 100, "")), r"mitbih_train\.csv row 7, column 100 is empty, expected a number$"),
    Case("label 5", csv(edit=cell(4, 188, "5.000000000000000000e+00")),
         r"mitbih_train\.csv row 4, column 188 \(the label\) is 5, expected an integer in 0\.\.4$"),
    Case("label 1.5", csv(edit=cell(4, 188, "1.5")),
         r"mitbih_train\.csv row 4, column 188 \(the label\) is 1\.5, expected an integer in 0\.\.4$"),
    Case("MI label in ptbdb_normal.csv", ptb_normal_with_one_mi_beat(),
         r"ptbdb_normal\.csv row 4, column 188 \(the label\) is 1, expected 0 \(every beat in ptbdb_normal\.csv "
         r"is normal\)$"),
    Case("empty file", csv(raw=lambda d: b""), r"mitbih_train\.csv is empty: expected one beat a row"),
    Case("the Kaggle zip saved as the CSV", csv(raw=zip_of),
         r"mitbih_train\.csv is a zip archive, not a CSV: unzip it"),
    Case("missing file", lambda w, folder: load(folder / "mitbih_test.csv", w),
         r"mitbih_test\.csv does not exist: put the CSVs of the Kaggle data set shayanfazeli/heartbeat"),
    # --- names (data.prepare_task, the CLI)
    Case("unknown task (prepare_task)",
         lambda w, folder: lambda: _error(lambda: prepare_task("ecg", w.input, cache_dir=w.cache)),
         r"^unknown task 'ecg'; choose one of arrhythmia, mi$"),
    Case("unknown oversampling (prepare_task)",
         lambda w, folder: lambda: _error(lambda: prepare_task("mi", w.input, cache_dir=w.cache, oversample="adasyn")),
         r"^unknown oversampling 'adasyn'; choose one of none, smote, smote-tomek$"),
    Case("unknown model", lambda w, folder: trial(w, "--model", "resnet"),
         r"^error: model must be one of cnet, seq, bilstm, bigru; got 'resnet'\.$"),
    Case("unknown task", lambda w, folder: trial(w, "--task", "ecg"),
         r"error: argument --task: invalid choice: 'ecg' \(choose from .*arrhythmia.*mi.*\)$"),
    Case("unknown oversampling", lambda w, folder: trial(w, "--oversample", "adasyn"),
         r"error: argument --oversample: invalid choice: 'adasyn'"),
    Case("unknown model in a study", lambda w, folder: launch_without_ray(w, "--models", "cnet,resnet"),
         r"error: argument --models: 'cnet,resnet': choose from cnet, seq, bilstm, bigru \(comma-separated\)$"),
    # --- numbers
    Case("zero epochs", lambda w, folder: trial(w, "--epochs", "0"),
         r"error: argument --epochs: must be a whole number of at least 1, not 0$"),
    Case("negative epochs", lambda w, folder: trial(w, "--epochs", "-3"),
         r"error: argument --epochs: must be a whole number of at least 1, not -3$"),
    Case("zero learning rate", lambda w, folder: trial(w, "--lr", "0"),
         r"error: argument --lr: must be a positive number, not 0$"),
    Case("negative learning rate", lambda w, folder: trial(w, "--lr", "-0.001"),
         r"error: argument --lr: must be a positive number, not -0\.001$"),
    Case("NaN learning rate", lambda w, folder: trial(w, "--lr", "nan"),
         r"error: argument --lr: must be a positive number, not nan$"),
    Case("batch size 0", lambda w, folder: trial(w, "--batch-size", "0"),
         r"error: argument --batch-size: must be a whole number of at least 1, not 0$"),
    Case("batch size larger than the training split", lambda w, folder: trial(w, "--batch-size", "100000"),
         r"^error: batch_size 100000 is larger than the training split \(180 beats\)\.$"),
    # --- checkpoints (--init of an MI transfer)
    Case("checkpoint of another architecture",
         lambda w, folder: trial(w, "--task", "mi", "--batch-size", 32, "--init", w.ckpt / "seq-arrhythmia.pt"),
         r"^error: cannot transfer checkpoint \S+seq-arrhythmia\.pt into a 'cnet' model: it holds a 'seq' model, "
         r"and transfer needs the same architecture$"),
    Case("checkpoint of the other task",
         lambda w, folder: trial(w, "--task", "mi", "--batch-size", 32, "--init", w.ckpt / "cnet-mi.pt"),
         r"^error: cannot transfer checkpoint \S+cnet-mi\.pt: it holds a model for task 'mi', and transfer starts "
         r"from one for 'arrhythmia'$"),
    Case("truncated checkpoint", lambda w, folder: trial(w, "--task", "mi", "--init", w.ckpt / "truncated.pt"),
         r"^error: checkpoint \S+truncated\.pt is truncated or corrupt and cannot be read \(.+\)$"),
    Case("pickle carrying code", lambda w, folder: trial(w, "--task", "mi", "--init", w.ckpt / "code.pt"),
         r"^error: refused to load \S+code\.pt: it is a pickle that calls or builds the Python object `exec` "
         r"\(code, not only tensors and plain values\), and weights-only loading neither imports nor runs it$"),
    Case("truncated trial state (last.pt)",
         lambda w, folder: cli("trial", "--input", w.input, "--cache", w.cache, "--limit", 200, "--epochs", 1,
                               "--batch-size", 32, "--out", w.results / "broken-trial"),
         r"^error: \S+last\.pt cannot be read as a trial state \(.+\); move it away to start the trial afresh\.$"),
    # --- paths and addresses
    Case("study name climbing out of --results", lambda w, folder: launch_without_ray(w, "--name", "../escape"),
         r"^error: --name '\.\./escape' must be a plain folder name \(letters, digits, '\.', '_', '-'\), so the "
         r"study stays inside --results\.$"),
    Case("absolute study name", lambda w, folder: launch_without_ray(w, "--name", str(w.root / "elsewhere")),
         r"^error: --name '/\S+/elsewhere' must be a plain folder name"),
    Case("study.json listing a cell that is not one",
         lambda w, folder: (write_json(w.results / "damaged" / "study.json",
                                       study_record(cells=("arrhythmia-cnet-none",))),
                            launch_without_ray(w, "--name", "damaged"))[1],
         r"^error: \S+/damaged/study\.json lists 'arrhythmia-cnet-none', which is not a cell of the grid; move the "
         r"folder away or use another --name\.$"),
    Case("study.json written by format version 1",
         lambda w, folder: (write_json(w.results / "old" / "study.json", {**study_record(), "version": 1}),
                            launch_without_ray(w, "--name", "old"))[1],
         r"^error: \S+/old/study\.json was written by a version of this study of format 1; this one reads version "
         r"2: continue it with that version, or use another --name\.$"),
    Case("study.json without its plan",
         lambda w, folder: (write_json(w.results / "planless" / "study.json",
                                       {k: v for k, v in study_record().items() if k != "plan"}),
                            launch_without_ray(w, "--name", "planless"))[1],
         r"^error: \S+/planless/study\.json: field plan is missing\.$"),
    Case("study.json with a seed that is not a number",
         lambda w, folder: (write_json(w.results / "seedless" / "study.json", {**study_record(), "seed": "zero"}),
                            launch_without_ray(w, "--name", "seedless"))[1],
         r"^error: \S+/seedless/study\.json: field seed is 'zero', expected int\.$"),
    Case("--address with nothing listening",
         lambda w, folder: launch_subprocess(w, "--address", f"127.0.0.2:{free_port('127.0.0.2')}", "--name", "addr",
                                             "--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none",
                                             timeout=20),
         r"^error: nothing answers at Ray address 127\.0\.0\.2:\d+ \(Connection refused\): start the head there "
         r"with `ray start --head`, or check --address or RAY_ADDRESS$"),
]


def _error(call) -> str:
    try:
        call()
    except ValueError as error:
        return str(error)
    raise AssertionError("no error")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_fails_with_one_sentence_and_leaves_what_exists_alone(ws, case):
    folder = ws.root / "cases" / re.sub(r"\W+", "-", case.id)
    folder.mkdir(parents=True)
    attempt = case.make(ws, folder)
    before = snapshot(ws.root)

    outcome = attempt()

    after = snapshot(ws.root)
    if case.expected is VALID:
        x, y = outcome
        np.testing.assert_array_equal(x, ws.x.astype(np.float32))
        np.testing.assert_array_equal(y, ws.y)
        assert {k: v for k, v in after.items() if k in before} == before, "an existing file was changed"
        return
    assert isinstance(outcome, str), f"expected an error, got {type(outcome).__name__}"
    assert "\n" not in outcome and re.search(case.expected, outcome), outcome
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    assert not ws.marker.exists(), "a checkpoint's code ran"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)
