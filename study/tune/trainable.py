"""What runs in a Ray worker: one search trial or one seed run of a cell, as the study searcher proposed it.

A trial's ``config`` (study/tune/searcher.py) is ``{"cell", "phase", "data", "trial"}``: the cell's id, "search" or
"final", the key of its data set, and the whole TrialConfig. The data sets arrive through the object store
(``datasets``: key -> ObjectRef, bound once by tune.with_parameters), and a trial fetches only its own.

A trainable for the study, the real one or a stand-in, reports each epoch through ``Reporter``: a flat row with
``epoch``, ``val_metric`` (the selection metric), ``best_val_metric`` and ``train_loss``, and a checkpoint of its
folder. A seed run ends with a report whose checkpoint holds final.json, best.pt and metrics.csv.
"""

import json
import shutil
import tempfile
import time
from pathlib import Path

from study.config import BEST_FILE, EPOCHS_FILE, FINAL_FILE, LAST_FILE, TrialConfig

ATTEMPTS_FILE = "attempts.json"  # where and when each attempt ran; travels in every checkpoint
SEARCH_FILES = (LAST_FILE, BEST_FILE, EPOCHS_FILE, ATTEMPTS_FILE)
FINAL_FILES = (*SEARCH_FILES, FINAL_FILE)


def restore_work_dir(config: dict | None = None) -> Path:
    """The trial's local folder, refilled from Tune's last checkpoint when the trial is a retry or a restore; for
    a seed run whose epochs its cell's chosen search trial trained (``config["trained"]``, that trial's last
    checkpoint in the same storage), from that checkpoint: run_trial then finds every epoch done.

    It lies in Tune's trial working directory (under Ray's session folder on the worker's node), which nothing
    copies. get_trial_dir() is the driver's staging folder of the trial instead: on the driver's node the driver
    copies it into the results folder at every experiment sync, half-written temporary files included.
    """
    from ray import tune

    work = Path(tune.get_context().get_storage().trial_working_directory) / "work"
    # Exactly Tune's checkpoint or nothing: files a failed attempt wrote after its last report are not trusted.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(work))  # one copy, from a local folder or a download alike
    elif (config or {}).get("trained"):
        storage = tune.get_context().get_storage()
        tune.Checkpoint(config["trained"], filesystem=storage.storage_filesystem).to_directory(str(work))
        (work / ATTEMPTS_FILE).unlink(missing_ok=True)  # where and when this run ran starts with it
    return work


class Reporter:
    """Hands Tune each epoch's row and a checkpoint of the trial's folder; records this attempt's node and start.

    Nodes on one machine (or behind one NAT) can share an IP, so the node's id tells them apart.
    """

    def __init__(self, work: Path, files: tuple[str, ...]):
        import ray

        self.work, self.files = work, files
        self.where = {"node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
                      "attempt_started_at": time.time()}
        path = work / ATTEMPTS_FILE
        attempts = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps([*attempts, self.where]))

    def __call__(self, row: dict, out_dir: Path | None = None) -> None:
        from ray import tune

        with tempfile.TemporaryDirectory() as tmp:
            for name in self.files:
                if (self.work / name).exists():
                    shutil.copy2(self.work / name, tmp)
            tune.report({**row, **self.where, "reported_at": time.time()},
                        checkpoint=tune.Checkpoint.from_directory(tmp))


def study_trainable(config: dict, datasets: dict) -> None:
    """One trial of the study: a search trial (validation only, the test split untouched) or a seed run of the
    chosen configuration (its best epoch evaluated on test once; its files travel in the last checkpoint)."""
    import ray

    from study.trial import run_trial  # torch: imported where a trial trains, not where a stand-in reports

    work = restore_work_dir(config)
    data = ray.get(datasets[config["data"]])
    trial = TrialConfig.from_dict(config["trial"])
    if config["phase"] == "search":
        run_trial(trial, data, work, report=Reporter(work, SEARCH_FILES), evaluate_test=False)
        return
    report = Reporter(work, FINAL_FILES)
    final = run_trial(trial, data, work, report=report, evaluate_test=True)
    report({"final": 1, "epochs_run": final["epochs_run"]})  # the checkpoint that carries final.json
