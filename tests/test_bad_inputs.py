"""A bad-input corpus, part one: data files, names, numbers, checkpoints, paths. Each malformed input fails early
with its one sentence and leaves what exists alone (tests/corpus.py: the workspace and how a case is checked; part
two, study folders, locks, entry points and flags: tests/test_bad_inputs_study.py).

    python -m pytest -q tests/test_bad_inputs.py tests/test_bad_inputs_study.py
"""

import shutil

import pytest
import torch

from data import prepare_task
from data.files import write_json
from tests.corpus import (VALID, Case, _error, cell, check_case, cli, csv, free_port, launch_subprocess,
                          launch_without_ray, load, ptb_normal_with_one_mi_beat, study_record, trial, zip_of)

def nan_checkpoint(w, folder):
    """The workspace's cnet arrhythmia checkpoint with every weight NaN, saved in ``folder``."""
    checkpoint = torch.load(w.ckpt / "cnet-arrhythmia.pt", weights_only=True)
    checkpoint["state_dict"] = {k: torch.full_like(v, float("nan")) for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, folder / "nan.pt")
    return folder / "nan.pt"


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
    Case("batch size larger than the training split",
         lambda w, folder: trial(w, "--batch-size", "100000", "--out", folder / "trial"),
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
    Case("checkpoint whose weights are NaN",
         lambda w, folder: trial(w, "--task", "mi", "--init", nan_checkpoint(w, folder), "--out", folder / "t"),
         r"^error: checkpoint \S+nan\.pt holds weights that are not finite numbers \(NaN or infinite: c1\.bias, "
         r"c1\.weight, cresids\.0\.c1\.bias and \d+ more\): it is no model to start from$"),
    Case("truncated checkpoint", lambda w, folder: trial(w, "--task", "mi", "--init", w.ckpt / "truncated.pt"),
         r"^error: checkpoint \S+truncated\.pt is truncated or corrupt and cannot be read \(.+\)$"),
    Case("pickle carrying code", lambda w, folder: trial(w, "--task", "mi", "--init", w.ckpt / "code.pt"),
         r"^error: refused to load \S+code\.pt: it is a pickle that calls or builds the Python object `exec` "
         r"\(code, not only tensors and plain values\), and weights-only loading neither imports nor runs it$"),
    Case("truncated trial state (last.pt)",
         lambda w, folder: trial(w, "--batch-size", 32, "--out", w.results / "broken-trial"),
         r"^error: \S+last\.pt cannot be read as a trial state \(.+\); move it away to start the trial afresh\.$"),
    Case("a trial's --out holding another trial's result without its last.pt",
         lambda w, folder: trial(w, "--lr", "0.05"),
         r"^error: --out \S+/trial holds final\.json of a trial but not its last\.pt, so it can be neither continued "
         r"nor checked against this one; give another folder, or move them away$"),
    Case("a transfer's --init inside its --out",
         lambda w, folder: (shutil.copy(w.ckpt / "cnet-arrhythmia.pt", folder / "best.pt"),
                            trial(w, "--task", "mi", "--init", folder / "best.pt", "--out", folder))[1],
         r"^error: --init \S+/best\.pt lies in --out \S+, where the trial writes its own best\.pt: give the "
         r"checkpoint from another folder, or another --out$"),
    Case("trial state of the right format without its fields (last.pt)",
         lambda w, folder: trial(w, "--batch-size", 32, "--out", w.results / "shapeless-trial"),
         r"^error: \S+last\.pt is damaged: its field config is missing; move it away to start the trial afresh\.$"),
    # --- paths and addresses
    Case("CSV that is a symbolic link in a loop",
         lambda w, folder: ((folder / "mitbih_train.csv").symlink_to("loop"),
                            (folder / "loop").symlink_to("mitbih_train.csv"), load(folder / "mitbih_train.csv", w))[2],
         r"^\S+/mitbih_train\.csv is a symbolic link in a loop \(following it leads back to a link already "
         r"followed\)$"),
    Case("input folder with a CSV linked to a file that is gone",
         lambda w, folder: ((folder / "mitbih_train.csv").symlink_to(w.root / "moved-away.csv"),
                            launch_without_ray(w, "--input", folder))[1],
         r"^error: --input: \S+/mitbih_train\.csv is a symbolic link to \S+/moved-away\.csv, which does not exist "
         r"\(No such file or directory\)$"),
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
         r"^error: \S+/old/study\.json was written by the version of this project that ran one Tuner a cell \(format "
         r"version 1\); this one reads version 2: continue it with that version, or use another --name\.$"),
    Case("study name that is a file in --results",
         lambda w, folder: ((w.results / "filed").write_text("notes\n"), launch_without_ray(w, "--name", "filed"))[1],
         r"^error: \S+/results/filed is a file, not a folder$"),
    Case("study.json whose data files are a list",
         lambda w, folder: (write_json(w.results / "listed" / "study.json",
                                       study_record(data={"files": ["mitbih_train.csv"]})),
                            launch_without_ray(w, "--name", "listed"))[1],
         r"^error: \S+/listed/study\.json: field data\.files is list, expected an object\.$"),
    Case("study.json whose data sha256 is a number",
         lambda w, folder: (write_json(w.results / "hashless" / "study.json",
                                       study_record(data={"files": {"arrhythmia": {"mitbih_train.csv": 7}}})),
                            launch_without_ray(w, "--name", "hashless"))[1],
         r"^error: \S+/hashless/study\.json: field data\.files\.arrhythmia is \{'mitbih_train\.csv': 7\}, expected "
         r"an object of file names and their sha256\.$"),
    Case("study.json without its plan",
         lambda w, folder: (write_json(w.results / "planless" / "study.json",
                                       {k: v for k, v in study_record().items() if k != "plan"}),
                            launch_without_ray(w, "--name", "planless"))[1],
         r"^error: \S+/planless/study\.json: field plan is missing\.$"),
    Case("study.json with a seed that is not a number",
         lambda w, folder: (write_json(w.results / "seedless" / "study.json", {**study_record(), "seed": "zero"}),
                            launch_without_ray(w, "--name", "seedless"))[1],
         r"^error: \S+/seedless/study\.json: field seed is 'zero', expected a whole number\.$"),
    Case("--address with nothing listening",
         lambda w, folder: launch_subprocess(w, "--address", f"127.0.0.2:{free_port('127.0.0.2')}", "--name", "addr",
                                             "--tasks", "arrhythmia", "--models", "cnet", "--oversample", "none"),
         r"^error: nothing answers at Ray address 127\.0\.0\.2:\d+ \(Connection refused\): start the head there "
         r"with `ray start --head`, or check --address or RAY_ADDRESS$"),
]




@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_fails_with_one_sentence_and_leaves_what_exists_alone(ws, case):
    check_case(ws, case)
