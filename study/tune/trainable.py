"""What runs in a Ray worker: one search trial or one seed run of a cell, as the study searcher proposed it.

A trial's ``config`` (study/tune/searcher.py) is ``{"cell", "phase", "data", "trial"}``: the cell's id, "search" or
"final", the key of its data set, and the whole TrialConfig. The data sets arrive through the object store
(``datasets``: key -> ObjectRef, bound once by tune.with_parameters), and a trial fetches only its own.

A trainable for the study, the real one or a stand-in, reports each epoch through ``Reporter``: a flat row with
``epoch``, ``val_metric`` (the selection metric), ``best_val_metric`` and ``train_loss``, and a checkpoint of its
folder. A seed run ends with a report whose checkpoint holds final.json, best.pt and metrics.csv.

A trial whose loss diverges fails for good at once. Tune retries a failed trial (``FailureConfig(max_failures=3)``,
for a lost node or a full disk), and a retry of a diverged trial would restore the same checkpoint and diverge
again, an epoch and a worker start each time. So the trainable reports ``{"diverged": 1}`` with a checkpoint that
holds diverged.txt (the error) before it raises: the scheduler then lets the trial fail without retries
(study/tune/scheduler.py), and any attempt that restores that checkpoint anyway (a driver killed in between)
raises the same error without training.
"""

import json
import shutil
import tempfile
import time
from pathlib import Path

from study.config import BEST_FILE, EPOCHS_FILE, FINAL_FILE, LAST_FILE, TrialConfig

ATTEMPTS_FILE = "attempts.json"  # where and when each attempt ran; travels in every checkpoint
DIVERGED_FILE = "diverged.txt"  # the error of a trial whose loss diverged (see the module's docstring)
DIVERGED = "diverged"  # the key of the report that says so
SEARCH_FILES = (LAST_FILE, BEST_FILE, EPOCHS_FILE, ATTEMPTS_FILE, DIVERGED_FILE)
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

    from study.trial import TrainingDiverged, run_trial  # torch: imported where a trial trains, not in a stand-in

    work = restore_work_dir(config)
    if (work / DIVERGED_FILE).exists():
        raise TrainingDiverged((work / DIVERGED_FILE).read_text())
    data = ray.get(datasets[config["data"]])
    trial = TrialConfig.from_dict(config["trial"])
    search = config["phase"] == "search"
    report = Reporter(work, SEARCH_FILES if search else FINAL_FILES)
    try:
        final = run_trial(trial, data, work, report=report, evaluate_test=not search)
    except TrainingDiverged as error:
        try:  # spares the retries; where it cannot (a full disk), the trial still ends with its own error
            (work / DIVERGED_FILE).write_text(str(error))
            report({DIVERGED: 1})  # no val_metric: fine while TuneConfig names no metric (it does not)
        except Exception:
            pass
        raise
    if not search:
        report({"final": 1, "epochs_run": final["epochs_run"]})  # the checkpoint that carries final.json
