"""The Ray Tune study: every cell of the grid, Optuna inside each cell, resumable.

    python -m study launch --profile smoke                        # local machine, demo data if input/ is empty
    python -m study launch --profile paper --input input/         # the original budgets, 3 seeds
    python -m study launch --profile paper --address auto --results /mnt/shared/results   # a Ray cluster

Each cell (task x model x oversampling x init) gets its own Tuner: Optuna (study/search.py) over learning rate and
batch size, successive halving (study/scheduler.py: ASHA decided in proposal order, so the same seeds give the
same study) stopping poor trials on the validation metric. The best trial's hyperparameters are
then trained again with K seeds, and only those runs are evaluated on the test split. One JSON per cell
lands in RESULTS/NAME/cells/; re-running the same command continues where it stopped.
"""

import argparse
import json
import logging
import os
import pickle
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from data.constants import TASKS
from data.files import is_temporary
from study.config import TrialConfig
from study.grid import (BATCH_SIZES, CELL_OVERSAMPLING, INITS, LR_RANGE, MODELS, PROFILES, SMOTE_METHODS, Cell,
                        make_grid)
from study.metrics import selection_key
from study.storage import LocalStorage, Storage, WholeFileHandler, is_uri
from study.trial import BEST_FILE, EPOCHS_FILE, FINAL_FILE, LAST_FILE, run_trial

CELL_FORMAT, STUDY_FORMAT, FORMAT_VERSION = "ecg-study-cell", "ecg-study", 1
# Fault injection for tests: a trial raises once, after the given epoch, if the marker file does not exist yet.
CRASH_ENV = "ECG_STUDY_CRASH_ONCE"  # "MARKER_PATH:EPOCH"
# Folders never shipped to cluster workers with the code.
WORKING_DIR_EXCLUDES = ["input/", "results/", "runs/", ".git/", ".venv/", "venv/", "bench/_work/", "**/__pycache__/",
                        "*.pt"]


class StudyError(RuntimeError):
    """A cell that cannot finish (every trial failed): one sentence for the user, the study stops there."""


@dataclass(frozen=True)
class StudyPlan:
    """Everything that decides what a study computes, resolved once from the profile and the flags."""

    name: str
    profile: str
    cells: tuple[str, ...]
    samples: int
    max_epochs: dict
    seeds: tuple[int, ...]
    grace_period: int
    patience: int
    smote_method: str
    input: str
    demo: bool
    demo_rows: int
    limit: int | None
    data_seed: int
    search_seed: int
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None
    transfer_mode: str = "frozen"
    split: str = "kaggle"  # arrhythmia beats: the Kaggle CSVs, or a PhysioNet build (intra / inter-patient)
    created: str = field(default="", compare=False)

    def oversample_method(self, cell: Cell) -> str:
        return self.smote_method if cell.oversample == "smote" else "none"


# ---------------------------------------------------------------------------------------------------------
# Trainables: run inside Ray workers. The data arrives through the object store (tune.with_parameters).


def _restore_work_dir() -> Path:
    """The trial's local folder, refilled from Tune's last checkpoint when the trial is a retry or a restore.

    It lies in Tune's trial working directory (under Ray's session folder on the worker's node), which nothing
    copies. get_trial_dir() is the driver's staging folder of the trial instead: on the driver's node the driver
    copies it into the results folder at every experiment sync, half-written temporary files included, and
    never removes what it copied there.
    """
    from ray import tune

    work = Path(tune.get_context().get_storage().trial_working_directory) / "work"
    # Exactly Tune's checkpoint or nothing: files a failed attempt wrote after its last report are not trusted.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(work))  # one copy, from a local folder or a download alike
    return work


def _reporter(extra_files: tuple[str, ...] = ()):
    """A run_trial report callback that hands Tune the metrics and a checkpoint of the trial's state."""
    from ray import tune

    import ray

    crash = os.environ.get(CRASH_ENV)
    # Where and when this attempt ran: the cell's record shows trials sharing GPUs, nodes and time. Nodes on
    # one machine (or behind one NAT) can share an IP, so the node's id tells them apart.
    where = {"node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
             "attempt_started_at": time.time()}

    def report(row: dict, out_dir: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name in (LAST_FILE, BEST_FILE, *extra_files):
                if (out_dir / name).exists():
                    shutil.copy2(out_dir / name, tmp)
            tune.report({**row, **where, "reported_at": time.time()},
                        checkpoint=tune.Checkpoint.from_directory(tmp))
        if crash:
            marker, epoch = crash.rsplit(":", 1)
            if row.get("epoch") == int(epoch) and not Path(marker).exists():
                Path(marker).write_text(f"crashed after epoch {epoch}\n")
                raise RuntimeError(f"injected crash after epoch {epoch} ({CRASH_ENV})")

    return report


def cell_trainable(config: dict, data) -> None:
    """Both phases of a cell in one trainable, so each data set sits in the object store once.

    ``config["base"]`` is the cell's fixed TrialConfig (a constant of the param space, so every trial's
    result records it). Phase "search": one Optuna sample of ``lr`` and ``batch_size``, validation only,
    the test split untouched. Phase "final": one ``seed`` of the chosen configuration, evaluated on test
    once; its files travel in the last checkpoint.
    """
    work = _restore_work_dir()
    if config["phase"] == "search":
        trial = TrialConfig.from_dict({**config["base"], "lr": float(config["lr"]),
                                       "batch_size": int(config["batch_size"])})
        # metrics.csv travels in every checkpoint: the search summary reads each trial's epochs from there.
        run_trial(trial, data, work, report=_reporter(extra_files=(EPOCHS_FILE,)), evaluate_test=False)
        return
    trial = TrialConfig.from_dict({**config["base"], "seed": int(config["seed"])})
    report = _reporter(extra_files=(FINAL_FILE, EPOCHS_FILE))
    final = run_trial(trial, data, work, report=report, evaluate_test=True)
    report({"final": 1, "epochs_run": final["epochs_run"]}, work)  # the checkpoint that carries final.json


# ---------------------------------------------------------------------------------------------------------
# The driver.


class Study:
    """A study folder: RESULTS/NAME/{study.json, manifest.json, cells/*.json, checkpoints/, tune/}.

    RESULTS is a local folder (shared by all nodes on a cluster) or a URI such as s3://bucket/results.
    """

    def __init__(self, store: Storage):
        self.store = store

    @staticmethod
    def cell_file(cell: Cell) -> str:
        return f"cells/{cell.cell_id}.json"

    def read_cell(self, cell: Cell) -> dict | None:
        result = self.store.read_json(self.cell_file(cell))
        if result is not None and (result.get("format") != CELL_FORMAT or result.get("version") != FORMAT_VERSION):
            raise ValueError(f"{self.store.ref(self.cell_file(cell))} is not a cell result of format "
                             f"{CELL_FORMAT} v{FORMAT_VERSION}.")
        return result

    def manifest(self) -> dict:
        return self.store.read_json("manifest.json") or {"transfer_sources": {}}

    def record_source(self, cell: Cell, checkpoint: str) -> None:
        manifest = self.manifest()
        manifest["transfer_sources"][f"{cell.model}-{cell.oversample}"] = checkpoint
        self.store.write_json("manifest.json", manifest)

    def tune_storage(self, experiment: str | None = None) -> tuple[str, object]:
        """(path, pyarrow file system or None) of tune/ or of one experiment in it, as Ray Tune takes them."""
        tune = self.store.child("tune")
        return (tune.child(experiment) if experiment else tune).tune_storage()


def resolve_plan(args: argparse.Namespace) -> StudyPlan:
    profile = PROFILES[args.profile]
    max_epochs = dict(profile.max_epochs)
    if args.max_epochs is not None:
        max_epochs = {task: args.max_epochs for task in TASKS}
    seeds = args.seeds if args.seeds is not None else profile.seeds
    cells = make_grid(tasks=args.tasks, models=args.models, oversample=args.oversample, inits=args.inits)
    if args.split != "kaggle":
        built = task_input(Path(args.input), "arrhythmia", args.split)
        if not _has_real_data(built, {"arrhythmia"}):
            raise ValueError(f"--split {args.split} reads the arrhythmia beats from {built}, which holds no "
                             f"{args.split} build; make it with: python -m data.physionet build --db mitdb "
                             f"--records DIR --out {built} --split {args.split}")
    real = all(_has_real_data(task_input(Path(args.input), task, args.split), {task})
               for task in {cell.task for cell in cells})
    if args.demo is False and not real:
        raise ValueError(f"{args.input} lacks the Kaggle CSVs for this study; put them there "
                         "(python -m data.download) or drop --no-demo to use demo data.")
    demo = bool(args.demo) or not real
    if demo and args.split != "kaggle":
        raise ValueError(f"--split {args.split} needs the MI task's CSVs in {args.input} too (demo data has no "
                         "inter- or intra-patient split); or run --tasks arrhythmia.")
    name = args.name or args.profile
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"--name {name!r} must be a plain folder name (letters, digits, '.', '_', '-'), "
                         "so the study stays inside --results.")
    return StudyPlan(
        name=name, profile=args.profile, cells=tuple(c.cell_id for c in cells),
        samples=args.samples or profile.samples, max_epochs=max_epochs,
        seeds=tuple(range(args.seed, args.seed + seeds)), grace_period=min(profile.grace_period, *max_epochs.values()),
        patience=profile.patience, smote_method=args.smote_method, input=str(args.input), demo=demo,
        demo_rows=args.demo_rows or profile.demo_rows,
        limit=args.limit if args.limit is not None else (profile.limit if demo else None),
        data_seed=args.data_seed, search_seed=args.seed, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial if args.gpus_per_trial is not None else -1.0,
        max_concurrent=args.max_concurrent, transfer_mode=args.transfer_mode, split=args.split,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def task_input(input_dir: Path, task: str, split: str) -> Path:
    """Where a task's CSVs are: INPUT, or for arrhythmia on a PhysioNet split INPUT/physionet-SPLIT."""
    return input_dir / f"physionet-{split}" if task == "arrhythmia" and split != "kaggle" else input_dir


def _has_real_data(input_dir: Path, tasks: set[str]) -> bool:
    from data import has_task_files

    return all(has_task_files(task, input_dir) for task in tasks)


def _check_same_plan(study: Study, plan: StudyPlan, info: dict) -> None:
    """A study folder belongs to one plan: continuing it with other settings would mix two studies' numbers.
    ``info`` is the folder's study.json ({} for a new study)."""
    if not info:
        return
    saved = info.get("plan")
    if not isinstance(saved, dict):
        raise ValueError(f"{study.store.ref('study.json')} records no study plan; move the folder away or use "
                         "another --name.")
    for cell_id in info.get("cells") or ():
        try:
            Cell.from_id(cell_id)
        except ValueError:
            raise ValueError(f"{study.store.ref('study.json')} lists {cell_id!r}, which is not a cell of the grid; "
                             "move the folder away or use another --name.") from None
    current = json.loads(json.dumps(asdict(plan)))
    keys = [k for k in current if k not in ("created", "cells", "max_concurrent", "cpus_per_trial", "gpus_per_trial")]
    differences = [f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in keys if saved.get(k) != current[k]]
    if differences:
        raise ValueError(f"{study.store.location} holds study {plan.name!r} with other settings ({'; '.join(differences)}); "
                         "use --name to start a new study, or the same flags to continue this one.")


def run_launch(args: argparse.Namespace) -> int:
    plan = resolve_plan(args)
    results = args.results if is_uri(args.results) else Path(args.results).resolve()
    study = Study(Storage.at(results).child(plan.name))
    saved = study.store.read_json("study.json") or {}  # read once: this driver is its only writer from here on
    _check_same_plan(study, plan, saved)
    if isinstance(study.store, LocalStorage):  # an object store has no half-written files: a PUT is whole
        _remove_stale_temporaries(study.store.root)
    import ray

    _quiet(args.verbose)
    _start_ray(args)
    gpus_per_trial = plan.gpus_per_trial
    if gpus_per_trial < 0:  # default: a quarter of a card a trial where there are GPUs, so four share one
        gpus_per_trial = 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    plan = replace(plan, gpus_per_trial=gpus_per_trial)
    concurrent = plan.max_concurrent or _trial_slots(plan, ray.cluster_resources())
    study.store.makedirs()
    # Continuing with fewer cells keeps the others planned: the report still lists every cell of the study.
    cells = [c.cell_id for c in sorted({Cell.from_id(i) for i in (*saved.get("cells", ()), *plan.cells)},
                                       key=_grid_order)]
    plan = replace(plan, created=saved.get("created") or plan.created)
    loader = DataLoader(plan)
    data_name = "demo data" if plan.demo else f"the CSVs in {plan.input}"
    print(f"Study {plan.name!r} ({plan.profile}): {len(plan.cells)} cells on {data_name}, "
          f"{plan.samples} samples a cell, {len(plan.seeds)} seed(s); results in {study.store.location}", flush=True)
    started = time.perf_counter()
    data = saved.get("data", {})  # what earlier launches loaded stays recorded
    _write_study_json(study, plan, loader, cells, data)
    for number, cell_id in enumerate(plan.cells, 1):
        cell = Cell.from_id(cell_id)
        done = study.read_cell(cell)
        if done is None:
            done = run_cell(cell, plan, study, loader, number, concurrent, verbose=args.verbose)
        else:
            print(f"[{number}/{len(plan.cells)}] {cell_id}: done earlier, kept", flush=True)
        if cell.task == "arrhythmia":
            study.record_source(cell, done["best_checkpoint"])
        _write_study_json(study, plan, loader, cells, data)
    print(f"Study {plan.name!r} finished in {time.perf_counter() - started:.0f} s.", flush=True)
    from study.report import summary_table

    print(summary_table(study.store))
    return 0


def _remove_stale_temporaries(root: Path) -> None:
    """Delete the half-written files of a driver killed mid-write. A study has one driver at a time, so when
    one starts no write of this study is in flight, and no such file will ever be renamed into place."""
    if root.is_dir():
        for path in root.rglob("*.tmp"):
            if is_temporary(path) and path.is_file():
                path.unlink(missing_ok=True)


def _grid_order(cell: Cell) -> tuple:
    """Arrhythmia before MI (transfer needs its source), then models, oversampling and init as in the grid."""
    return (TASKS.index(cell.task), MODELS.index(cell.model), CELL_OVERSAMPLING.index(cell.oversample),
            INITS.index(cell.init))


def _write_study_json(study: Study, plan: StudyPlan, loader: "DataLoader", cells: list[str], data: dict) -> None:
    """The study's settings, and what each data set it loaded was (kaggle, demo, a PhysioNet split ...);
    ``data`` is study.json's "data" as it stood, brought up to date in place."""
    data.update({"source": "demo" if plan.demo else data.get("source", "input"), "input": plan.input,
                 "limit": plan.limit})
    data.setdefault("sources", {}).update(loader.sources)
    data.setdefault("fingerprints", {}).update(loader.fingerprints)
    if data["sources"]:
        data["source"] = "; ".join(f"{task}: {src}" for task, src in sorted(data["sources"].items()))
    study.store.write_json("study.json", {
        "format": STUDY_FORMAT, "version": FORMAT_VERSION, "name": plan.name, "profile": plan.profile,
        "smote_method": plan.smote_method, "cells": cells, "seed": plan.search_seed, "data": data,
        "created": plan.created, "plan": json.loads(json.dumps(asdict(plan)))})


def _quiet(verbose: bool) -> None:
    """Ray's and Optuna's own reporting off unless -v: the study prints one line per cell."""
    if verbose:
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new output engine prints boxes even at verbose=0
    # Checkpointing every epoch makes Tune snapshot its state often; that is expected here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.tune.execution.experiment_state").addFilter(_vanished_staging_file)


def _vanished_staging_file(record: logging.LogRecord) -> bool:
    """False for Tune's traceback when a sync of its state found a temporary file gone: Tune renames its searcher
    state into place while its previous sync is still listing the folder. Harmless (the next sync copies the
    renamed file), but printed as an ERROR with a traceback in a run that is fine. -v still shows it."""
    error = record.exc_info[1] if record.exc_info else None
    return not (isinstance(error, FileNotFoundError) and "-tmp-" in str(error))


def _start_ray(args: argparse.Namespace) -> None:
    import ray

    if ray.is_initialized():
        return
    address = args.address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": {key: os.environ[key] for key in (CRASH_ENV,) if key in os.environ}}
    kwargs = dict(include_dashboard=False, log_to_driver=args.verbose,
                  logging_level=logging.INFO if args.verbose else logging.ERROR)
    if address:
        _check_listening(address)
        if "working_dir" not in _job_runtime_env():
            # The code reaches the cluster's workers as the runtime environment's working directory. A driver run
            # as a Ray job (`ray job submit --working-dir .`, a KubeRay RayJob) has shipped it already, and Ray
            # refuses a second one ("Failed to merge the Job's runtime env").
            runtime_env.update(working_dir=str(Path(__file__).resolve().parents[1]), excludes=WORKING_DIR_EXCLUDES)
        try:
            ray.init(address=address, runtime_env=runtime_env, **kwargs)
        except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"could not join the Ray cluster at {address}: {first}") from None
    else:
        # "local": a new instance even where `ray start` runs a cluster on this machine (--address auto joins it).
        ray.init(address="local", num_cpus=args.num_cpus, runtime_env=runtime_env, **kwargs)


def _job_runtime_env() -> dict:
    """The runtime environment of the Ray job this driver runs as; {} when it is not run as one."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray's job supervisor for the entrypoint
    return (json.loads(raw).get("runtime_env") or {}) if raw else {}


def _check_listening(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing answers at a cluster address: ray.init would retry for about 13 minutes
    (20 attempts of some 40 s each) before giving up."""
    if address in ("auto", "local"):
        return  # Ray resolves these itself, and says at once when no cluster runs here
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except ValueError:
        raise ValueError(f"Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), auto, or "
                         "ray://HOST:PORT") from None
    except OSError as error:
        raise ValueError(f"nothing answers at Ray address {address} ({error.strerror or error}): start the head "
                         "there with `ray start --head`, or check --address or RAY_ADDRESS") from None


class DataLoader:
    """Loads each (task, oversampling) data set once in the driver and puts it into Ray's object store once."""

    def __init__(self, plan: StudyPlan):
        self.plan = plan
        self._trainables: dict = {}
        self.sources: dict[str, str] = {}  # task -> where its data came from
        self.fingerprints: dict[str, str] = {}  # "task-oversampling" -> data fingerprint

    def input_dir(self, task: str) -> Path:
        if not self.plan.demo:
            return task_input(Path(self.plan.input), task, self.plan.split)
        from data import ensure_demo

        return ensure_demo(Path(self.plan.input) / "demo", rows=self.plan.demo_rows, seed=self.plan.data_seed)

    def trainable(self, cell: Cell):
        """(trainable, data): cell_trainable with the cell's data bound once through tune.with_parameters."""
        from ray import tune

        method = self.plan.oversample_method(cell)
        key = (cell.task, method)
        if key not in self._trainables:
            from data import prepare_task

            data = prepare_task(cell.task, self.input_dir(cell.task), seed=self.plan.data_seed,
                                oversample=method, limit=self.plan.limit)
            self.sources[cell.task] = data.source
            self.fingerprints[f"{cell.task}-{method}"] = data.fingerprint
            resources = {"cpu": self.plan.cpus_per_trial, "gpu": self.plan.gpus_per_trial}
            trainable = tune.with_resources(tune.with_parameters(cell_trainable, data=data), resources)
            self._trainables[key] = (trainable, data)
        return self._trainables[key]


def base_config(cell: Cell, plan: StudyPlan, study: Study) -> dict:
    init = "scratch"
    if cell.init == "transfer":
        source = study.manifest()["transfer_sources"].get(f"{cell.model}-{cell.oversample}")
        if source is None:
            raise ValueError(f"cell {cell.cell_id} needs the arrhythmia cell {cell.source.cell_id} first; "
                             f"run it with --tasks arrhythmia --models {cell.model}.")
        init = source
    return TrialConfig(task=cell.task, model=cell.model, oversample=plan.oversample_method(cell), init=init,
                       transfer_mode=plan.transfer_mode, epochs=plan.max_epochs[cell.task], seed=plan.search_seed,
                       data_seed=plan.data_seed, limit=plan.limit, patience=plan.patience).to_dict()


def _tuner(trainable, name: str, study: Study, plan: StudyPlan, tune_config, param_space: dict, verbose: bool,
           state_files: tuple[str, ...] = ()):
    """A new Tuner, or the interrupted one restored from its experiment folder.

    ``state_files`` belong to this Tuner (the scheduler's rungs): a new Tuner starts without them, since a run
    killed before Tune saved its first state leaves files that describe trials the new run will not have.
    """
    from ray import tune

    path, filesystem = study.tune_storage(name)
    if tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        where = study.store.ref("tune/" + name)
        unreadable = _unrestorable(study.store.child("tune/" + name))
        if unreadable is None:
            print(f"    continuing the interrupted run in {where}", flush=True)
            return tune.Tuner.restore(path, trainable=trainable, resume_errored=True, param_space=param_space,
                                      storage_filesystem=filesystem)
        print(f"    starting the interrupted run in {where} again: {unreadable}", flush=True)
        study.store.delete_folder("tune/" + name)
    for stale in state_files:
        study.store.delete(stale)
    storage_path, filesystem = study.tune_storage()
    run_config = tune.RunConfig(
        name=name, storage_path=storage_path, storage_filesystem=filesystem, verbose=1 if verbose else 0,
        failure_config=tune.FailureConfig(max_failures=3),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2))
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


@contextmanager
def _pending_trials(count: int):
    """Let Tune keep ``count`` trials waiting for resources: with a searcher that is not its own
    ConcurrencyLimiter it keeps one, and the trials of a cell then start one after another. (Tune reads this
    setting only from the environment; one a user set is kept.)"""
    name = "TUNE_MAX_PENDING_TRIALS_PG"
    if name in os.environ:
        yield
        return
    os.environ[name] = str(count)
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _unrestorable(experiment: Storage) -> str | None:
    """Why Tune could not restore the interrupted run in ``experiment``, or None when it can: the Tuner, the
    newest experiment state (the trials) and the newest search state (the experiment's spec) must read back.

    A driver stopped before Tune first saved its state leaves only the Tuner; older versions of this study (and
    Tune itself, without WholeFileHandler) copied these files in place, so a kill mid-copy could cut one short.
    Ray 2.60 then logs that it failed to restore and carries on as a new run of a single trial, which would stand
    as the cell's search. Such a run is started again instead: the same seeds give the same trials.
    """
    from ray import cloudpickle

    names = experiment.list("")

    def newest(prefix: str) -> str | None:  # as Tune chooses: the greatest name, whose timestamp is the latest
        return max((n for n in names if n.startswith(prefix) and n.endswith(".json")), default=None)

    state, search = newest("experiment_state-"), newest("search_gen_state-")
    if state is None or search is None or "tuner.pkl" not in names:
        return "Tune had not saved its state yet"
    try:
        json.loads(experiment.read_text(state))
        cloudpickle.loads(experiment.read_bytes(search))
        cloudpickle.loads(experiment.read_bytes("tuner.pkl"))
    except (ValueError, EOFError, pickle.UnpicklingError):  # JSON, UTF-8 and pickles cut short
        return "Tune's saved state was cut short when the driver stopped"
    return None


def _trial_slots(plan: StudyPlan, resources: dict) -> int:
    """How many trials the cluster runs at once: the searchers' cap on trials in flight, and how many Tune may
    keep waiting for resources (with one, a cell's trials would start one after another)."""
    slots = resources.get("CPU", 1) // plan.cpus_per_trial
    if plan.gpus_per_trial > 0:
        slots = min(slots, resources.get("GPU", 0) // plan.gpus_per_trial)
    return max(1, int(slots))


def run_cell(cell: Cell, plan: StudyPlan, study: Study, loader: DataLoader, number: int, concurrent: int,
             verbose: bool) -> dict:
    from ray import tune

    from study.scheduler import OrderedASHA
    from study.search import AdoptingFIFO, OptunaProposals, ProposalSearch, SeedProposals

    total = len(plan.cells)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    trainable, data = loader.trainable(cell)
    base = base_config(cell, plan, study)
    max_epochs = plan.max_epochs[cell.task]
    batch_sizes = [b for b in BATCH_SIZES if b <= len(data.train.y)] or [len(data.train.y)]
    print(f"[{number}/{total}] {cell.cell_id}: searching ({plan.samples} samples, up to {max_epochs} epochs, "
          f"{len(data.train.y)} training beats)", flush=True)
    # Optuna over lr and batch size, successive halving on the validation metric; `val_metric` is the cell's
    # selection metric. The rungs are decided in proposal order and kept in a file, so neither which trial
    # finishes an epoch first nor a restore changes which trials are stopped.
    # The searchers cap the trials in flight themselves (not Tune's max_concurrent_trials), and rebuild themselves
    # from the restored trials rather than from a saved state a kill may leave out of step (study/search.py).
    rungs_file = f"tune/{cell.cell_id}-rungs.json"
    tune_config = tune.TuneConfig(
        search_alg=ProposalSearch(OptunaProposals(lr_range=LR_RANGE, batch_sizes=batch_sizes, metric="val_metric",
                                                  mode="max", seed=plan.search_seed, max_concurrent=concurrent)),
        scheduler=OrderedASHA(study.store, rungs_file, metric="val_metric", mode="max", time_attr="epoch",
                              max_t=max_epochs, grace_period=plan.grace_period, reduction_factor=2),
        num_samples=plan.samples, trial_dirname_creator=_trial_dirname)
    with _pending_trials(concurrent):
        search = _tuner(trainable, f"{cell.cell_id}-search", study, plan, tune_config,
                        {"phase": "search", "base": base}, verbose, state_files=(rungs_file,)).fit()
    trials, curve, best_config = _search_summary(search, max_epochs)
    # The choice is made once: a restored search may rerun errored trials, but the seeds train what was chosen.
    chosen_file = f"tune/{cell.cell_id}-chosen.json"
    chosen = study.store.read_json(chosen_file)
    if chosen is not None:
        best_config = chosen
    elif best_config is not None:
        study.store.write_json(chosen_file, best_config)
    if best_config is None:
        error = next((_trial_error(r.error) for r in search if r.error is not None), "none recorded")
        raise StudyError(f"every search trial of cell {cell.cell_id} failed; the first error: {error} "
                         f"(see {study.store.ref('tune/' + cell.cell_id + '-search')}); fix it and run the same command "
                         "again to continue.")

    final_base = {**base, **best_config}
    final_config = tune.TuneConfig(search_alg=ProposalSearch(SeedProposals(list(plan.seeds), concurrent)),
                                   scheduler=AdoptingFIFO(), num_samples=len(plan.seeds),
                                   trial_dirname_creator=_trial_dirname)
    with _pending_trials(concurrent):
        finals = _tuner(trainable, f"{cell.cell_id}-final", study, plan, final_config,
                        {"phase": "final", "base": final_base}, verbose).fit()
    seeds = []
    for result in finals:
        if result.error is not None or result.checkpoint is None:
            raise StudyError(f"the final run of cell {cell.cell_id} (seed {(result.config or {}).get('seed')}) failed: "
                             f"{_trial_error(result.error)}; run the same command again to continue.")
        seed = int(result.config["seed"])
        target = f"checkpoints/{cell.cell_id}/seed{seed}"
        with _checkpoint_folder(result.checkpoint) as saved:
            final = json.loads((saved / FINAL_FILE).read_text())
            for name in (BEST_FILE, FINAL_FILE, EPOCHS_FILE):
                study.store.put_file(saved / name, f"{target}/{name}")
        seeds.append({"seed": seed, "epochs_run": final["epochs_run"], "best_epoch": final["best_epoch"],
                      "val": final["val"], "test": final["test"], "checkpoint": study.store.ref(f"{target}/{BEST_FILE}"),
                      **_whereabouts(result.metrics_dataframe)})
    seeds.sort(key=lambda s: s["seed"])
    key = selection_key(cell.task)
    best_seed = max(seeds, key=lambda s: s["val"][key])  # chosen on validation, like everything else
    result = {
        "format": CELL_FORMAT, "version": FORMAT_VERSION, "study": plan.name, "cell_id": cell.cell_id,
        "cell": {"task": cell.task, "model": cell.model, "oversample": cell.oversample,
                 "smote_method": plan.smote_method if cell.oversample == "smote" else None, "init": cell.init,
                 "transfer_mode": plan.transfer_mode if cell.init == "transfer" else None,
                 "transfer_source": base["init"] if cell.init == "transfer" else None},
        "selection_metric": cell.selection_metric, "best_config": best_config,
        "trials": trials, "trials_run": len(trials),
        "trials_stopped_early": sum(t["stopped_early"] for t in trials),
        "best_trial_curve": curve, "seeds": seeds, "wall_time_s": round(time.perf_counter() - started, 3),
        "best_checkpoint": best_seed["checkpoint"], "data_fingerprint": data.fingerprint,
        "started": started_at, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    study.store.write_json(study.cell_file(cell), result)
    tests = [s["test"][key] for s in seeds]
    mean = sum(tests) / len(tests)
    print(f"[{number}/{total}] {cell.cell_id}: done in {result['wall_time_s']:.0f} s: "
          f"{cell.selection_metric} {max(t['val_metric'] for t in trials if t['val_metric'] is not None):.4f} "
          f"(lr {best_config['lr']:.2g}, batch {best_config['batch_size']}), "
          f"test {key.replace('_', ' ')} {mean:.4f} over {len(seeds)} seed(s)", flush=True)
    return result


@contextmanager
def _checkpoint_folder(checkpoint):
    """A Tune checkpoint's folder on this machine: the folder itself in a local (or NFS) results folder, which
    Tune reaches through WholeFileHandler and, not knowing that file system is local, would copy first; else a
    downloaded copy."""
    if isinstance(getattr(checkpoint.filesystem, "handler", None), WholeFileHandler):
        yield Path(checkpoint.path)
    else:
        with checkpoint.as_directory() as folder:
            yield Path(folder)


def _trial_error(error) -> str:
    """What went wrong in a trial, in one line: the exception Ray wrapped (a RayTaskError's cause, e.g.
    "could not write .../last.pt: No space left on device"), not Ray's first line, which names its actor."""
    cause = getattr(error, "cause", None) or error
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip()  # Ray colours its own lines
    return (text.splitlines() or [type(cause).__name__])[0][:500]


def _whereabouts(frame) -> dict:
    """When a trial ran (first attempt's start to last report, unix seconds) and on which node(s): their IPs,
    and their Ray node ids in the order the trial reported from them (a retry elsewhere adds one at the end)."""
    if frame is None or "reported_at" not in frame:
        return {"started_at": None, "finished_at": None, "nodes": [], "node_ids": []}
    node_ids = frame["node_id"].dropna() if "node_id" in frame else []  # absent in results of older versions
    return {"started_at": float(frame["attempt_started_at"].min()), "finished_at": float(frame["reported_at"].max()),
            "nodes": sorted(set(frame["node_ip"].dropna())), "node_ids": list(dict.fromkeys(node_ids))}


def _trial_dirname(trial) -> str:
    """Short trial folders: Tune's default name spells out the whole config, base included."""
    return f"trial_{trial.trial_id}"


def _trial_epochs(result):
    """A search trial's epochs, from metrics.csv in its latest checkpoint: the epochs its restore point holds.

    Not Tune's result.json: Tune copies that and its experiment state to the results folder one file at a time,
    so a driver killed in between restores a trial from a checkpoint whose epochs result.json lacks, and the
    resumed trial never reports them again. Results of older versions (no metrics.csv there) fall back to Tune's.
    """
    import pandas as pd

    checkpoint = result.checkpoint
    if checkpoint is None:
        return result.metrics_dataframe
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{EPOCHS_FILE}") as stream:
            return pd.read_csv(stream)
    except FileNotFoundError:
        return result.metrics_dataframe


def _search_summary(search, max_epochs: int) -> tuple[list[dict], list[dict], dict | None]:
    """Every trial's hyperparameters and best validation metric; the best trial's curve and config.

    Trials are taken in proposal order, and a tie goes to the earlier-proposed trial, so the same search
    chooses the same configuration whether it ran straight through or was restored.
    """
    trials, best, best_frame = [], None, None
    from study.search import proposal_number

    for result in sorted(search, key=lambda r: (proposal_number(r.metrics.get("experiment_tag", "")),
                                                r.metrics.get("trial_id", ""))):
        if not result.config:  # failed before it started (its worker could not even import it): nothing to record
            continue
        frame = _trial_epochs(result)
        has_metric = frame is not None and "val_metric" in frame
        value = float(frame["val_metric"].max()) if has_metric else None
        epochs = int(frame["epoch"].max()) if has_metric else 0
        trials.append({"trial_id": result.metrics.get("trial_id", ""), "lr": float(result.config["lr"]),
                       "batch_size": int(result.config["batch_size"]), "val_metric": value, "epochs": epochs,
                       "stopped_early": result.error is None and epochs < max_epochs,
                       "failed": result.error is not None, **_whereabouts(result.metrics_dataframe)})
        if value is not None and (best is None or value > best[0]):
            best, best_frame = (value, result.config), frame
    if best is None:
        return trials, [], None
    curve = [{"epoch": int(row.epoch), "train_loss": float(row.train_loss), "val_metric": float(row.val_metric)}
             for row in best_frame.sort_values("epoch").drop_duplicates("epoch", keep="last").itertuples()]
    return trials, curve, {"lr": float(best[1]["lr"]), "batch_size": int(best[1]["batch_size"])}


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    from study.cli import non_negative_float, non_negative_int, positive_float, positive_int

    def names(valid):
        def parse(text: str) -> list[str]:
            values = [v.strip() for v in text.split(",") if v.strip()]
            unknown = [v for v in values if v not in valid]
            if unknown or not values:
                raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(valid)} (comma-separated)")
            return values
        return parse

    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke",
                        help="smoke: every cell on a tiny budget; paper: the original budgets, 16 samples, 3 seeds")
    parser.add_argument("--name", default=None, help="study name: results go to RESULTS/NAME (default: the profile)")
    parser.add_argument("--results", default="results", help="results folder, shared by all nodes on a cluster")
    parser.add_argument("--input", type=Path, default=Path("input"), help="folder with the Kaggle CSVs")
    demo = parser.add_mutually_exclusive_group()
    demo.add_argument("--demo", dest="demo", action="store_true", default=None,
                      help="use demo data even if the real CSVs are present")
    demo.add_argument("--no-demo", dest="demo", action="store_false",
                      help="fail instead of falling back to demo data when the CSVs are absent")
    parser.add_argument("--demo-rows", type=positive_int, default=None, help="rows of the demo mitbih_train.csv")
    parser.add_argument("--limit", type=positive_int, default=None, help="beats kept of each CSV (stratified)")
    parser.add_argument("--tasks", type=names(TASKS), default=list(TASKS))
    parser.add_argument("--models", type=names(MODELS), default=list(MODELS))
    parser.add_argument("--oversample", type=names(CELL_OVERSAMPLING), default=list(CELL_OVERSAMPLING))
    parser.add_argument("--inits", type=names(INITS), default=list(INITS))
    parser.add_argument("--split", choices=("kaggle", "intra", "inter"), default="kaggle",
                        help="arrhythmia beats: the Kaggle CSVs (default), or built from the PhysioNet records by "
                             "python -m data.physionet into INPUT/physionet-intra or INPUT/physionet-inter")
    parser.add_argument("--smote-method", choices=SMOTE_METHODS, default="smote-tomek",
                        help="what the 'smote' cells run (default: smote-tomek, as the original's 'smote')")
    parser.add_argument("--transfer-mode", choices=("frozen", "finetune"), default="frozen")
    parser.add_argument("--samples", type=positive_int, default=None, help="Optuna samples a cell")
    parser.add_argument("--max-epochs", type=positive_int, default=None, help="ASHA's maximum epochs (both tasks)")
    parser.add_argument("--seeds", type=positive_int, default=None, help="seeds of each cell's final evaluation")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="first seed (Optuna and final runs)")
    parser.add_argument("--data-seed", type=non_negative_int, default=0, help="seed of splits and oversampling")
    parser.add_argument("--cpus-per-trial", type=positive_float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=non_negative_float, default=None,
                        help="default: 0.25 where the cluster has GPUs (four trials a card), else 0")
    parser.add_argument("--max-concurrent", type=positive_int, default=None, help="cap on trials in flight")
    parser.add_argument("--address", default=None, help="join this Ray cluster (default: $RAY_ADDRESS, else local)")
    parser.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs of a local Ray instance")
    parser.add_argument("--resume", action="store_true",
                        help="continue the study (the default anyway: finished cells are never run again)")
