"""The study's driver: every cell of the grid as one Ray Tune experiment, resumable.

    python -m study launch --profile smoke                        # local machine, demo data if input/ is empty
    python -m study launch --profile paper --input input/         # the original budgets, 3 seeds
    python -m study launch --profile paper --address auto --results /mnt/shared/results   # a Ray cluster

One Tuner holds every trial of the study: each cell's search trials (Optuna over learning rate and batch size,
study/tune/searcher.py) and its seed runs, and cells share the machine or cluster at once. Successive halving
(study/tune/scheduler.py) stops a cell's poor search trials, decided in proposal order, so the same seeds give
the same study. A cell's result lands in RESULTS/NAME/cells/ the moment its last seed run ends; re-running the
same command continues where it stopped.
"""

import argparse
import json
import shlex
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from data.files import is_temporary
from study.config import RECIPES, TrialConfig
from study.grid import Cell, grid_rank
from study.lock import LAUNCH_LOCK, holding
from study.plan import StudyPlan, check_input, check_same_plan, resolve_plan, task_input
from study.results import (EXPERIMENT, RUNGS_FILE, STUDY_FILE, CellFailure, CellInfo, OtherVersionError, ResultError,
                           StudyFolder, StudyRecord, cell_file)
from study.storage import LocalStorage, Storage, is_uri
from study.tune import cluster


class StudyError(RuntimeError):
    """A study that cannot go on: one sentence for the user."""


class StudyData:
    """Each (task, oversampling) data set of the study, loaded once in the driver and put into Ray's object store
    once; trials fetch only their own (study/tune/trainable.py)."""

    def __init__(self, plan: StudyPlan):
        self.plan = plan
        self.sets: dict = {}  # "task/method" -> TaskData
        self.sources: dict[str, str] = {}  # task -> where its data came from
        self.fingerprints: dict[str, str] = {}  # "task-method" -> data fingerprint
        self.files: dict[str, dict] = {}  # task -> {CSV name: sha256}

    def key(self, cell: Cell) -> str:
        limit = self.plan.limit_of(cell)
        return (f"{cell.task}/{self.plan.oversample_method(cell)}" + (f"/{limit}" if limit is not None else "")
                + ("/rhythm" if self.plan.rhythm_of(cell) else ""))

    def input_dir(self, task: str) -> Path:
        if not self.plan.demo:
            return task_input(Path(self.plan.input), task, self.plan.split)
        from data import ensure_demo

        return ensure_demo(Path(self.plan.input) / "demo", rows=self.plan.demo_rows, seed=self.plan.data_seed)

    def of(self, cell: Cell):
        key = self.key(cell)
        if key not in self.sets:
            from data import prepare_task

            method, limit = self.plan.oversample_method(cell), self.plan.limit_of(cell)
            data = prepare_task(cell.task, self.input_dir(cell.task), seed=self.plan.data_seed, oversample=method,
                                limit=limit, rhythm=self.plan.rhythm_of(cell))
            self.sets[key] = data
            self.sources[cell.task] = data.source
            self.fingerprints[key.replace("/", "-")] = data.fingerprint
            self.files[cell.task] = data.files
        return self.sets[key]

    def refs(self, keys: set[str]) -> dict:
        """Object store references of the data sets ``keys`` (those of the cells to run, not of finished ones)."""
        import ray

        return {key: ray.put(data) for key, data in self.sets.items() if key in keys}


def cell_spec(cell: Cell, plan: StudyPlan, data: StudyData):
    """What the searcher proposes for a cell; a transfer cell's ``init`` comes from its source cell's result."""
    from study.tune.cells import CellSpec, cell_seed

    trial = TrialConfig(task=cell.task, model=cell.model, oversample=plan.oversample_method(cell),
                        transfer_mode=plan.transfer_mode, epochs=plan.epochs(cell), seed=plan.search_seed,
                        data_seed=plan.data_seed, limit=plan.limit_of(cell), patience=plan.patience,
                        rhythm=plan.rhythm_of(cell), **RECIPES[plan.recipe])
    train = len(data.of(cell).train.y)
    return CellSpec(cell_id=cell.cell_id, data=data.key(cell), trial=trial.to_dict(),
                    source=cell.source.cell_id if cell.source else None, samples=plan.samples, seeds=plan.seeds,
                    batch_sizes=tuple(b for b in plan.batch_sizes if b <= train) or (train,),
                    optuna_seed=cell_seed(plan.search_seed, cell.cell_id), train_beats=train,
                    lr_range=tuple(plan.lr_range))


def cell_info(cell: Cell, plan: StudyPlan) -> CellInfo:
    return CellInfo(task=cell.task, model=cell.model, oversample=cell.oversample,
                    smote_method=plan.smote_method if cell.oversample == "smote" else None, init=cell.init,
                    transfer_mode=plan.transfer_mode if cell.init == "transfer" else None, transfer_source=None)


def run_launch(args: argparse.Namespace, trainable=None) -> int:
    """The study of the flags ``args``; ``trainable`` stands in for study/tune/trainable.py's (tests, bench)."""
    plan = resolve_plan(args)
    results = args.results if is_uri(args.results) else Path(args.results).resolve()
    folder = StudyFolder(Storage.at(results).child(plan.name))
    if args.resume and not folder.store.exists(STUDY_FILE):  # before the lock writes anything
        raise StudyError(f"--resume continues a study, and {folder.store.location} holds none: check --name and "
                         "--results, or drop --resume to start this study")
    with holding(folder.store, LAUNCH_LOCK, "study folder", say=lambda line: print(line, flush=True)):
        return _launch(args, plan, folder, trainable)


def _launch(args: argparse.Namespace, plan: StudyPlan, folder: StudyFolder, trainable) -> int:
    saved = folder.read_study()  # read once, under the lock: this driver is its only writer from here on
    check_input(plan, saved, explicit_demo=bool(args.demo))
    check_same_plan(plan, saved, folder.store.location, folder.store.ref(STUDY_FILE))
    if isinstance(folder.store, LocalStorage):  # an object store has no half-written files: a PUT is whole
        _remove_stale_temporaries(folder.store.root)
    # A relaunch with other cells adds them: the study's one experiment runs every planned cell without a result.
    cells = sorted({Cell.from_id(i) for i in (*(saved.cells if saved else ()), *plan.cells)},
                   key=lambda c: grid_rank(c.task, c.model, c.oversample, c.init))
    done = {c.cell_id: r for c in cells if (r := _read_result(folder, c)) is not None}
    data = StudyData(plan)
    for cell_id in _recompute(args, plan.name, cells, done, data, saved, folder):
        del done[cell_id]
    import ray

    cluster.quiet(args.verbose)
    cluster.start_ray(args)
    gpus = plan.gpus_per_trial
    if gpus < 0:  # default: a quarter of a card a trial where there are GPUs, so four share one
        gpus = 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    plan = replace(plan, gpus_per_trial=gpus, created=saved.created if saved else plan.created)
    unplaceable = cluster.no_node_fits(plan.cpus_per_trial, gpus)
    if unplaceable is not None and not unplaceable[1]:
        raise StudyError(f"{unplaceable[0]}, so no trial could ever start: ask for at most what a node has")
    if unplaceable is not None:
        print(f"{unplaceable[0]}; the cluster's autoscaler may add a node that has it: waiting for one", flush=True)
    slots = plan.max_concurrent or cluster.trial_slots(ray.cluster_resources(), plan.cpus_per_trial, gpus)
    folder.store.makedirs()
    todo = [c for c in cells if c.cell_id not in done]
    specs = [cell_spec(c, plan, data) for c in todo]
    source = (f"the CSVs in {plan.input}" if not plan.demo else "demo data" if args.demo
              else f"demo data ({plan.input} holds none of the Kaggle CSVs)")
    print(f"Study {plan.name!r} ({plan.profile}): {len(todo)} of {len(cells)} cells to run on {source}, "
          f"{plan.samples} samples a cell, {len(plan.seeds)} seed(s), {slots} trials at once"
          f"{f', at most {args.max_cells} cells' if args.max_cells else ''}; results in {folder.store.location}",
          flush=True)
    for cell_id in done:
        print(f"{cell_id}: done earlier, kept", flush=True)
    record = _study_record(plan, cells, data, saved)
    folder.write_study(record)
    started = time.perf_counter()
    failures = _run_cells(args, plan, folder, specs, done, data, slots, trainable) if specs else []
    folder.write_study(replace(record, data=_data_record(plan, data, saved),
                               failures=tuple(CellFailure(*f) for f in failures if f[1] != "interrupted")))
    from study.report import summary_table

    interrupted = [f[0] for f in failures if f[1] == "interrupted"]
    if interrupted:
        print(f"Study {plan.name!r} interrupted after {time.perf_counter() - started:.0f} s; Tune's state is saved. "
              f"Run the same command to continue: {command_line(args)}", flush=True)
        return 130
    print(f"Study {plan.name!r} finished in {time.perf_counter() - started:.0f} s.", flush=True)
    print(summary_table(folder.store))
    if failures:
        print(f"error: {len(failures)} cell(s) of study {plan.name!r} did not finish: "
              + "; ".join(f"{c}: {why}" for c, why, _ in failures)
              + f". Fix that and run the same command to continue them: {command_line(args)}",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _read_result(folder: StudyFolder, cell: Cell):
    """A cell's stored result (None: none yet); one that cannot be read says how to compute the cell again."""
    try:
        return folder.read_cell(cell)
    except OtherVersionError:
        raise  # it says what to do: continue with the version that wrote it, or another --name
    except ResultError as error:
        raise ResultError(f"{str(error).rstrip('.')}; move that file away, and the same command computes the cell "
                          "again.") from None


def _recompute(args, name: str, cells: list[Cell], done: dict, data: StudyData, saved, folder: StudyFolder) -> list:
    """The finished cells computed on other data than the input holds now: an error naming the changed files, or
    with --recompute-changed those cells and the transfer cells built on them, their results deleted."""
    changed = {}
    for cell in (c for c in cells if c.cell_id in done):
        current = data.of(cell)
        if current.fingerprint != done[cell.cell_id].data_fingerprint:
            before = ((saved.data if saved else {}).get("files") or {}).get(cell.task, {})
            changed[cell.cell_id] = [f"{n} (sha256 {before[n][:12]}... then, {sha[:12]}... now)" if n in before
                                     else n for n, sha in current.files.items() if before.get(n) != sha]
    if not changed:
        return []
    files = sorted({f for names in changed.values() for f in names}) or [_same_files_changed(
        [c for c in cells if c.cell_id in changed], data)]
    if not args.recompute_changed:
        raise StudyError(f"study {name!r}: {len(changed)} finished cell(s) ({', '.join(changed)}) were computed on "
                         f"other data than {data.plan.input} holds now: {'; '.join(files)} changed since. Start a "
                         f"study of the data as it is with another --name, or recompute those cells (and the "
                         f"transfer cells built on them) with --recompute-changed")
    again = [c for c in cells if c.cell_id in done and (c.cell_id in changed or (
        c.source is not None and c.source.cell_id in changed))]
    for cell in again:
        folder.store.delete(cell_file(cell.cell_id))
        if cell.cell_id not in changed:
            why = ["its source cell"]
        else:
            why = changed[cell.cell_id] or [_same_files_changed([cell], data)]
        print(f"{cell.cell_id}: computed on other data ({'; '.join(why)}): its result is deleted, and the cell runs "
              "again", flush=True)
    return [cell.cell_id for cell in again]


def _same_files_changed(cells: list[Cell], data: StudyData) -> str:
    """Why cells' data changed though their CSVs did not: what else their fingerprint (data/splits.py) covers."""
    causes = []
    if any(data.plan.rhythm_of(c) for c in cells):
        causes.append("their side files (*.beats.csv) or the version of the RR-interval features (--rhythm)")
    if any(data.of(c).val_records and not data.plan.rhythm_of(c) for c in cells):
        causes.append("the side file of mitbih_train.csv, whose records validation holds out whole (an inter build)")
    if any(c.oversample != "none" for c in cells):
        causes.append("the oversampled set, as another version of scikit-learn or imbalanced-learn draws it")
    return f"the data set built from the same CSVs ({', or '.join(causes or ['the way this version splits them'])})"


def _run_cells(args, plan: StudyPlan, folder: StudyFolder, specs: list, done: dict, data: StudyData, slots: int,
               trainable) -> list[tuple[str, str, str | None]]:
    """The study's one Tune experiment over ``specs``; (cell, reason, blocking cell) of the cells that did not
    finish, with reason "interrupted" for those a Ctrl-C left."""
    from ray import tune

    from study.tune.records import Recorder
    from study.tune.restore import make_tuner, pending_trials
    from study.tune.scheduler import StudyASHA
    from study.tune.cells import Launch, attach
    from study.tune.searcher import StudySearch, StudySearchGenerator
    from study.tune.status import StatusLine
    from study.tune.trainable import study_trainable

    def notify(cell_id: str, line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {cell_id}: {line}", flush=True)

    infos = {s.cell_id: cell_info(Cell.from_id(s.cell_id), plan) for s in specs}
    fingerprints = {s.cell_id: data.of(Cell.from_id(s.cell_id)).fingerprint for s in specs}
    recorder = Recorder(folder, plan.name, infos, fingerprints)
    launch = Launch(cells=specs, done=dict(done), recorder=recorder, notify=notify, max_concurrent=slots,
                    max_cells=args.max_cells, grace_period=plan.grace_period, rungs=(folder.store, RUNGS_FILE))
    attach(launch)
    tune_config = tune.TuneConfig(
        search_alg=StudySearchGenerator(StudySearch()),
        scheduler=StudyASHA(grace_period=plan.grace_period, reduction_factor=2),
        num_samples=-1, trial_dirname_creator=_trial_dirname,
        # On this machine's own Ray a worker process goes from trial to trial: no new process and no torch
        # import each time (bench/RESULTS.md "launch"). Not on a cluster: a cached worker of a node that is
        # gone fails the trial handed to it, where a new worker retries it elsewhere.
        reuse_actors=cluster.own_ray(args))
    datasets = data.refs({s.data for s in specs})
    bound = tune.with_resources(tune.with_parameters(trainable or study_trainable, datasets=datasets),
                                {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial})
    status = StatusLine(launch, slots, plan.cpus_per_trial, plan.gpus_per_trial)
    with pending_trials(slots):
        tuner = make_tuner(bound, folder.store.child("tune"), EXPERIMENT, tune_config, args.verbose,
                           state_files=((folder.store, RUNGS_FILE),), say=lambda line: print(line, flush=True))
        status.start()
        handler = signal.getsignal(signal.SIGINT)
        try:
            tuner.fit()
        finally:
            status.stop()
            # Tune's handler of a first Ctrl-C ends the run with its state saved, and puts the handler it found
            # back in place; a run that ends otherwise leaves Tune's own there.
            interrupted = signal.getsignal(signal.SIGINT) is handler
            signal.signal(signal.SIGINT, handler)
    searcher = launch.searcher
    failures = searcher.failures()
    left = [c for c in searcher.unfinished() if c not in {f[0] for f in failures}]
    if left and not interrupted:
        raise StudyError(f"Tune's run ended with {len(left)} cell(s) unfinished ({', '.join(left)}); see the "
                         f"messages above, and run the same command to continue: {command_line(args)}")
    return failures + [(c, "interrupted", None) for c in left]


def command_line(args) -> str:
    return "python -m study " + " ".join(shlex.quote(str(a)) for a in getattr(args, "argv", None) or ["launch"])


def _study_record(plan: StudyPlan, cells: list[Cell], data: StudyData, saved) -> StudyRecord:
    return StudyRecord(name=plan.name, profile=plan.profile, smote_method=plan.smote_method,
                       cells=tuple(c.cell_id for c in cells), seed=plan.search_seed,
                       data=_data_record(plan, data, saved), created=plan.created,
                       plan=json.loads(json.dumps(asdict(plan))))


def _data_record(plan: StudyPlan, data: StudyData, saved) -> dict:
    """What each data set the study loaded was (kaggle, demo, a PhysioNet split ...); earlier launches' too."""
    record = dict(saved.data) if saved else {}
    record.update({"source": "demo" if plan.demo else record.get("source", "input"), "input": plan.input,
                   "limit": plan.limit,
                   "model_limits": {m: b["limit"] for m, b in plan.budgets.items() if "limit" in b}})
    record["sources"] = {**record.get("sources", {}), **data.sources}
    record["fingerprints"] = {**record.get("fingerprints", {}), **data.fingerprints}
    record["files"] = {**record.get("files", {}), **data.files}
    if record["sources"]:
        record["source"] = "; ".join(f"{task}: {src}" for task, src in sorted(record["sources"].items()))
    return record


def _remove_stale_temporaries(root: Path) -> None:
    """Delete the half-written files of a driver killed mid-write. The launch lock makes this driver the study's
    only one, so no write of this study is in flight, and no such file will ever be renamed into place."""
    if root.is_dir():
        for path in root.rglob("*.tmp"):
            if is_temporary(path) and path.is_file():
                path.unlink(missing_ok=True)


def _trial_dirname(trial) -> str:
    """Short trial folders: Tune's default name spells out the whole config."""
    return f"trial_{trial.trial_id}"
