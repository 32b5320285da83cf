"""A bad-input corpus, part two: numbers the beats cannot hold, data a study cannot use, study folders and trial
folders in use or holding other files, flags given twice or out of range, and every entry point's command line.
Each fails early with its one sentence and leaves what exists alone (tests/corpus.py; part one:
tests/test_bad_inputs.py).
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

from data import demo, download, entry, physionet, prepare_task
from data.files import write_json
from models.__main__ import main as models_main
from study.lock import LAUNCH_LOCK, TRIAL_LOCK, holding
from study.storage import LocalStorage
from tests import test_bad_inputs
from tests.corpus import (Case, _error, cell, cell_record, check_case, cli, command, csv, launch_subprocess,
                          launch_without_ray, planned_study_record, study_record, trial)

FLOAT32_SENTENCE = r"beyond float32's range \(largest magnitude 3\.403e\+38\), the type the beats are trained in"
BUSY = (r"is in use by process \d+ on host \S+ since \S+ \(.*\): a second writer would mix its files with that "
        r"one's; wait for it to end, or stop it first$")


def module(mod):
    return lambda argv: entry.run(mod.get_args_parser(), mod.main, argv)


def held(store_path: Path, name: str, attempt):
    """The attempt, made while this process holds the lock ``name`` of ``store_path`` by another file handle (a
    flock conflicts between handles as between processes)."""
    def locked():
        with holding(LocalStorage(store_path), name, "folder", say=lambda line: None):
            return attempt()
    return locked


def only_files(w, folder: Path, *names: str) -> Path:
    """``folder`` holding copies of the workspace's demo CSVs ``names``."""
    for name in names:
        shutil.copy(w.input / name, folder / name)
    return folder


def one_class_split(w, folder: Path):
    y = np.zeros(20, dtype=np.int64)
    for name in ("mitbih_train.csv", "mitbih_test.csv"):
        (folder / name).write_bytes(demo.format_rows(w.x, y))
    return lambda: _error(lambda: prepare_task("arrhythmia", folder, cache_dir=folder / "cache"))


def file_in(folder: Path, name: str = "a-file") -> Path:
    path = folder / name
    path.write_text("not a folder\n")
    return path


CASES = [
    # --- numbers the beats cannot hold (float32)
    Case("sample beyond float32", csv(edit=cell(4, 11, "1e39")),
         rf"mitbih_train\.csv row 4, column 11 is 1e39, {FLOAT32_SENTENCE}: expected a finite number$"),
    Case("negative sample beyond float32 in ptbdb_normal.csv",
         csv("ptbdb_normal.csv", labels=np.zeros(20, dtype=np.int64), edit=cell(2, 5, "-5.0e+38")),
         rf"ptbdb_normal\.csv row 2, column 5 is -5\.0e\+38, {FLOAT32_SENTENCE}"),
    Case("label beyond float32", csv(edit=cell(3, 188, "1e40")),
         rf"mitbih_train\.csv row 3, column 188 is 1e40, {FLOAT32_SENTENCE}"),
    # --- data a study cannot use
    Case("a training split of one class", one_class_split,
         r"^the arrhythmia training split holds beats of one class only \(N, from mitbih_train\.csv and "
         r"mitbih_test\.csv\): no classifier trained on it could mean anything"),
    Case("input holding one task's files only",
         lambda w, folder: launch_without_ray(w, "--input", only_files(w, folder, "mitbih_train.csv",
                                                                      "mitbih_test.csv"),
                                              "--tasks", "arrhythmia,mi", "--name", "partial"),
         r"^error: \S+ holds mitbih_train\.csv, mitbih_test\.csv but not \S+ptbdb_normal\.csv, \S+ptbdb_abnormal\.csv, "
         r"which this study reads too: put the missing files there"),
    Case("input files deleted since the study read them",
         lambda w, folder: (write_json(w.results / "deleted" / "study.json", study_record(plan={"demo": False})),
                            launch_without_ray(w, "--input", folder, "--name", "deleted"))[1],
         r"^error: \S+mitbih_train\.csv, \S+mitbih_test\.csv were deleted since study 'deleted' last read them: put "
         r"them back to continue the study, or start another with --name$"),
    Case("the Kaggle CSVs put into the input of a demo study",
         lambda w, folder: (write_json(w.results / "was-demo" / "study.json",
                                       study_record(name="was-demo", plan={"demo": True})),
                            launch_without_ray(w, "--name", "was-demo"))[1],
         r"^error: \S+/was-demo holds study 'was-demo' on demo data, and \S+ now holds the Kaggle CSVs: use --name to "
         r"start a study of them, or --demo to continue this one\.$"),
    Case("--input is a file", lambda w, folder: launch_without_ray(w, "--input", file_in(folder)),
         r"^error: --input \S+a-file is a file; give a folder$"),
    Case("--results is a file",
         lambda w, folder: launch_without_ray(w, "--results", file_in(folder)),
         r"^error: --results \S+a-file is a file; give a folder$"),
    # --- resources no node has (a Ray of its own, 2 CPUs, no GPU: the launch must say so, not wait)
    Case("a trial asking more CPUs than any node has",
         lambda w, folder: launch_subprocess(w, "--num-cpus", 2, "--cpus-per-trial", 4, "--name", "big",
                                             "--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none",
                                             "--limit", 150, timeout=60),
         r"^error: a trial asks for 4 CPU\(s\) \(--cpus-per-trial, --gpus-per-trial\), and the largest node of the "
         r"cluster has 2 CPU\(s\), so no trial could ever start: ask for at most what a node has$"),
    # --- study folders and trial folders: one writer, and only a trial's own files
    Case("a second launch of a study in progress",
         lambda w, folder: held(w.results / "busy", LAUNCH_LOCK, launch_without_ray(w, "--name", "busy")),
         rf"^error: study folder \S+/busy {BUSY}"),
    Case("a second trial into the same --out",
         lambda w, folder: held(folder / "out", TRIAL_LOCK, trial(w, "--batch-size", 32, "--out", folder / "out")),
         rf"^error: trial folder \S+/out {BUSY}"),
    Case("--out holding files no trial writes",
         lambda w, folder: (file_in(folder, "notes.txt"), trial(w, "--out", folder))[1],
         r"^error: --out \S+ holds notes\.txt, which no trial writes: a trial continues only in its own folder; give "
         r"an empty or new one$"),
    Case("--out is a file", lambda w, folder: trial(w, "--out", file_in(folder)),
         r"^error: --out \S+a-file is a file; a trial writes into a folder: give a folder's path$"),
    Case("study.json of the right syntax but the wrong shape",
         lambda w, folder: (write_json(w.results / "listed" / "study.json", [1, 2]),
                            launch_without_ray(w, "--name", "listed"))[1],
         r"^error: \S+/listed/study\.json holds a JSON list, not the object of an ecg-study\S* file\.$"),
    # --- flags given twice or out of range
    Case("a model named twice", lambda w, folder: launch_without_ray(w, "--models", "cnet,cnet"),
         r"error: argument --models: 'cnet,cnet' names cnet twice: name each once$"),
    Case("a task named twice", lambda w, folder: launch_without_ray(w, "--tasks", "mi,arrhythmia,mi"),
         r"error: argument --tasks: 'mi,arrhythmia,mi' names mi twice: name each once$"),
    Case("a study's demo rows beyond what data.demo writes", lambda w, folder: launch_without_ray(w, "--demo-rows", 50),
         r"error: argument --demo-rows: must be a whole number from 100 to 1,000,000 \(rows of the demo "
         r"mitbih_train\.csv\), not 50$"),
    Case("a trial keeping fewer beats than a split needs", lambda w, folder: trial(w, "--limit", 5),
         r"error: argument --limit: must be a whole number of at least 10 \(beats kept of each CSV\), not 5$"),
    Case("a million seed runs a cell", lambda w, folder: launch_without_ray(w, "--seeds", 1000000),
         r"error: argument --seeds: must be a whole number from 1 to 1,000 \(seed runs of each cell\), not 1000000$"),
    Case("a study seed out of range", lambda w, folder: launch_without_ray(w, "--seed", "5000000000"),
         r"error: argument --seed: must be a whole number from 0 to 2,147,483,647, not 5000000000$"),
    Case("a negative data seed", lambda w, folder: trial(w, "--data-seed", "-1"),
         r"error: argument --data-seed: must be a whole number from 0 to 2,147,483,647, not -1$"),
    Case("--max-epochs of a task that does not exist", lambda w, folder: launch_without_ray(w, "--max-epochs", "ecg=3"),
         r"error: argument --max-epochs: 'ecg=3': give N, or TASK=N for each of arrhythmia, mi once$"),
    Case("a trial flag given twice", lambda w, folder: trial(w, "--lr", "0.001", "--batch-size", 64, "--lr", "0.01"),
         r"error: argument --lr: given twice \(0\.001, then 0\.01\); give it once$"),
    Case("a launch flag given twice, once as --flag=value and once abbreviated",
         lambda w, folder: launch_without_ray(w, "--samples=2", "--seeds", 1, "--sam", 4),
         r"error: argument --samples: given twice \(2, then 4\); give it once$"),
    Case("--init is a folder", lambda w, folder: trial(w, "--task", "mi", "--init", folder),
         r"^error: checkpoint \S+ is a directory, not a checkpoint file$"),
    # --- the other entry points' command lines
    Case("import-original onto an existing file",
         lambda w, folder: command(models_main, "import-original", folder / "original.pt", w.ckpt / "cnet-mi.pt"),
         r"^error: \S+cnet-mi\.pt exists; import-original writes a new checkpoint: give a path that does not exist "
         r"yet$"),
    Case("data.demo --out is a file", lambda w, folder: command(module(demo), "--out", file_in(folder)),
         r"^error: \S+a-file is a file; the demo CSVs are written into a folder: give a folder's path$"),
    Case("data.demo --rows too few", lambda w, folder: command(module(demo), "--out", folder, "--rows", 50),
         r"error: argument --rows: must be a whole number from 100 to 1,000,000 \(rows of the demo "
         r"mitbih_train\.csv\), not 50$"),
    Case("data.demo --seed negative", lambda w, folder: command(module(demo), "--out", folder, "--seed", -1),
         r"error: argument --seed: must be a whole number from 0 to 2,147,483,647, not -1$"),
    Case("data.demo --rows given twice", lambda w, folder: command(module(demo), "--out", folder, "--rows", 100,
                                                                "--rows", 200),
         r"error: argument --rows: given twice \(100, then 200\); give it once$"),
    Case("data.demo --out below a file",
         lambda w, folder: command(module(demo), "--out", file_in(folder) / "sub"),
         r"^error: \S+a-file/sub: \S+a-file is a file, not a folder$"),
    Case("data.demo --out holding the real CSVs",
         lambda w, folder: command(module(demo), "--out", only_files(w, folder, "mitbih_train.csv")),
         r"^error: \S+ holds mitbih_train\.csv, which data\.demo did not write \(no demo\.json from data\.demo beside "
         r"it\): writing there would replace it; choose another folder, or move it away first$"),
    Case("data.demo --out holding the real CSVs beside a demo.json that data.demo did not write",
         lambda w, folder: ((only_files(w, folder, "mitbih_train.csv") / "demo.json").write_text("[]\n"),
                            command(module(demo), "--out", folder))[1],
         r"^error: \S+ holds mitbih_train\.csv, which data\.demo did not write \(no demo\.json from data\.demo beside "
         r"it\)"),
    Case("data.physionet --out holding the Kaggle CSVs",
         lambda w, folder: command(module(physionet), "build", "--db", "mitdb", "--records", folder, "--out",
                                   only_files(w, folder, "mitbih_train.csv", "mitbih_test.csv")),
         r"^error: \S+ holds mitbih_train\.csv, mitbih_test\.csv, which data\.physionet did not write \(no "
         r"physionet_build\.json from data\.physionet beside them\): writing there would replace them"),
    Case("data.physionet --seed negative",
         lambda w, folder: command(module(physionet), "build", "--db", "mitdb", "--records", folder, "--out",
                                   folder / "out", "--seed", -1),
         r"error: argument --seed: must be a whole number from 0 to 2,147,483,647, not -1$"),
    Case("data.physionet --split empty",
         lambda w, folder: command(module(physionet), "build", "--db", "mitdb", "--records", folder, "--out",
                                   folder / "out", "--split", ""),
         r"^error: --split '': unknown split; expected one of intra, inter\.$"),
    Case("a warm-up for a constant rate", lambda w, folder: trial(w, "--recipe", "original", "--warmup-epochs", 2),
         r"^error: --warmup-epochs 2 warms up the cosine schedule, and this trial's rate is constant \(--schedule "
         r"constant, or --recipe original\): drop it, or add --schedule cosine$"),
    Case("data.physionet --out is a file",
         lambda w, folder: command(module(physionet), "build", "--db", "mitdb", "--records", folder, "--out",
                                   file_in(folder)),
         r"^error: \S+a-file is a file; the CSVs are written into a folder: give a folder's path$"),
    Case("data.physionet --records is a file",
         lambda w, folder: command(module(physionet), "build", "--db", "mitdb", "--records", file_in(folder),
                                   "--out", folder / "out"),
         r"^error: --records \S+a-file: a file, not a folder\.$"),
    Case("data.physionet --records without records",
         lambda w, folder: command(module(physionet), "build", "--db", "mitdb", "--records", folder,
                                   "--out", folder / "out"),
         r"^error: --records \S+: no WFDB records \(\*\.hea files\) in this folder\.$"),
    Case("data.download --to is a file",
         lambda w, folder: command(module(download), "--verify-only", "--to", file_in(folder)),
         r"^error: --to \S+a-file is a file; the CSVs go into a folder: give a folder's path$"),
    Case("data.demo --rows beyond what it writes",
         lambda w, folder: command(module(demo), "--out", folder, "--rows", 10**20),
         r"error: argument --rows: must be a whole number from 100 to 1,000,000 \(rows of the demo "
         r"mitbih_train\.csv\), not 100000000000000000000$"),
    Case("data.download into a folder of demo data",
         lambda w, folder: command(module(download), "--to", w.input),
         r"^error: \S+ holds demo data \(data\.demo wrote its demo\.json there\): download into another folder, or "
         r"move the demo files away first$"),
    Case("data.download into a data.physionet build",
         lambda w, folder: ((folder / "physionet_build.json").write_text("{}\n"),
                            command(module(download), "--to", folder))[1],
         r"^error: \S+ holds a build of data\.physionet \(its physionet_build\.json is there\): download into another "
         r"folder, or move the build away first$"),
    # --- empty paths and names: never the current folder, never the profile's study
    Case("data.demo --out empty", lambda w, folder: command(module(demo), "--out", ""),
         r"error: argument --out: is empty: give a path$"),
    Case("report --out empty", lambda w, folder: cli("report", w.results / "smoke", "--out", ""),
         r"error: argument --out: is empty: give a path$"),
    Case("trial --cache empty", lambda w, folder: trial(w, "--cache", ""),
         r"error: argument --cache: is empty: give a path$"),
    Case("launch --name empty", lambda w, folder: launch_without_ray(w, "--name", ""),
         r"^error: --name '' must be a plain folder name"),
    Case("launch --results empty", lambda w, folder: launch_without_ray(w, "--results", ""),
         r"error: argument --results: is empty: give a path$"),
    Case("models import-original onto an empty path",
         lambda w, folder: command(models_main, "import-original", w.ckpt / "cnet-mi.pt", ""),
         r"error: argument out: is empty: give a path$"),
    # --- a file where a folder is expected, a flag that cannot mean what it says
    Case("trial --cache is a file", lambda w, folder: trial(w, "--cache", file_in(folder)),
         r"^error: --cache \S+a-file is a file; give a folder$"),
    Case("report --out is a file", lambda w, folder: cli("report", w.results / "smoke", "--out", file_in(folder)),
         r"^error: --out \S+a-file is a file; the report is written into a folder: give a folder's path$"),
    Case("a warm-up as long as the trial", lambda w, folder: trial(w, "--warmup-epochs", 3, "--epochs", 3),
         r"^error: --warmup-epochs 3 must be fewer than --epochs \(3\): the cosine decays over the epochs after the "
         r"warm-up$"),
    Case("a study folder copied under another name",
         lambda w, folder: (write_json(w.results / "copied" / "study.json", study_record(name="original")),
                            launch_without_ray(w, "--name", "copied"))[1],
         r"^error: \S+/copied holds study 'original' \(\S+study\.json says so\), not 'copied': the folder was "
         r"renamed or copied"),
    Case("a finished cell's file without seed runs",
         lambda w, folder: (write_json(w.results / "seedless-cell" / "study.json",
                                       planned_study_record(w, "seedless-cell")),
                            write_json(w.results / "seedless-cell" / "cells" / "arrhythmia-cnet-none-scratch.json",
                                       {**cell_record(), "seeds": []}),
                            launch_without_ray(w, "--name", "seedless-cell"))[2],
         r"^error: \S+arrhythmia-cnet-none-scratch\.json: field seeds is empty, expected the cell's seed runs; move "
         r"that file away, and the same command computes the cell again\.$"),
    Case("report of a file", lambda w, folder: cli("report", file_in(folder)),
         r"^error: \S+a-file is not a folder; pass a study folder such as results/smoke\.$"),
    Case("report of a folder that is not a study", lambda w, folder: cli("report", folder),
         r"^error: \S+ has neither study\.json nor a cells/ folder, so it is not a study folder"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_fails_with_one_sentence_and_leaves_what_exists_alone(ws, case):
    check_case(ws, case)


def test_the_corpus_is_large_enough():
    cases = [*test_bad_inputs.CASES, *CASES]
    assert len(cases) >= 70 and len({c.id for c in cases}) == len(cases)
