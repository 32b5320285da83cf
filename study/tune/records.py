"""Tune's trials turned into study/results.py records: a cell's search trials, its seed runs, its result.

A trial's epochs and attempts are read from its latest checkpoint (metrics.csv, attempts.json), not from Tune's
result.json: Tune copies that and its experiment state to the results folder one file at a time, so a driver
killed in between restores a trial from a checkpoint whose epochs result.json lacks.
"""

import io
import json
import re
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from ray import cloudpickle
from ray.tune.experiment import Trial

from study.grid import Cell
from study.metrics import SELECTION_NAME, selection_key
from study.results import (CellInfo, CellResult, CurvePoint, SearchTrial, SeedRun, StudyFolder, Whereabouts,
                           seed_folder)
from study.config import BEST_FILE, EPOCHS_FILE, FINAL_FILE
from study.tune.restore import WholeFileHandler
from study.tune.cells import CellSpec, proposal_order
from study.tune.trainable import ATTEMPTS_FILE

def _read(checkpoint, name: str) -> bytes | None:
    """A file of a Tune checkpoint, in one request from its file system (local, NFS or s3:// alike)."""
    if checkpoint is None:
        return None
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{name}") as stream:
            return stream.read()
    except FileNotFoundError:
        return None


@contextmanager
def checkpoint_folder(checkpoint):
    """A Tune checkpoint's folder on this machine: the folder itself in a local (or NFS) results folder, which
    Tune reaches through WholeFileHandler and, not knowing that file system is local, would copy first; else a
    downloaded copy."""
    if isinstance(getattr(checkpoint.filesystem, "handler", None), WholeFileHandler):
        yield Path(checkpoint.path)
    else:
        with checkpoint.as_directory() as folder:
            yield Path(folder)


def epochs_of(trial: Trial) -> pd.DataFrame | None:
    """A trial's epochs as its latest checkpoint holds them (one row an epoch), or None before its first."""
    data = _read(trial.checkpoint, EPOCHS_FILE)
    return None if data is None else pd.read_csv(io.BytesIO(data))


def whereabouts(trial: Trial) -> Whereabouts:
    data = _read(trial.checkpoint, ATTEMPTS_FILE)
    attempts = json.loads(data) if data else []
    if not attempts:
        return Whereabouts(None, None, (), ())
    reported = (trial.last_result or {}).get("reported_at")
    return Whereabouts(started_at=float(min(a["attempt_started_at"] for a in attempts)),
                       finished_at=float(reported) if reported is not None else None,
                       nodes=tuple(sorted({a["node_ip"] for a in attempts})),
                       node_ids=tuple(dict.fromkeys(a["node_id"] for a in attempts)))


class Recorder:
    """Writes a cell's result into the study folder the moment its last seed run ends."""

    def __init__(self, folder: StudyFolder, study: str, infos: dict[str, CellInfo], fingerprints: dict[str, str]):
        self.folder, self.study, self.infos, self.fingerprints = folder, study, infos, fingerprints

    def search_trials(self, spec: CellSpec, trials: list[Trial], errors: dict[str, str]) -> list[SearchTrial]:
        """The cell's search trials in proposal order, each with its best validation metric; ``errors``: why
        the trials that failed did (Tune marks a trial ERROR only after it has told the searcher)."""
        out = []
        for trial in sorted(trials, key=proposal_order):
            frame = epochs_of(trial)
            scored = frame is not None and "val_metric" in frame and len(frame)
            failed = trial.trial_id in errors or trial.status == Trial.ERROR
            epochs = int(frame["epoch"].max()) if scored else 0
            error = errors.get(trial.trial_id) or (failure_of(trial) if failed else None)
            out.append(SearchTrial(trial_id=trial.trial_id, lr=float(trial.config["trial"]["lr"]),
                                   batch_size=int(trial.config["trial"]["batch_size"]),
                                   val_metric=float(frame["val_metric"].max()) if scored else None, epochs=epochs,
                                   stopped_early=not failed and epochs < int(spec.trial["epochs"]), failed=failed,
                                   error=error, ran=whereabouts(trial)))
        return out

    def write_cell(self, spec: CellSpec, trials: list[Trial], chosen: dict, errors: dict[str, str],
                   searched: list[SearchTrial] | None = None) -> CellResult:
        """The cell's result, written; ``searched``: its search trials' records if read already (when its search
        ended in this launch)."""
        search = [t for t in trials if t.config["phase"] == "search"]
        finals = sorted((t for t in trials if t.config["phase"] == "final"), key=lambda t: t.config["trial"]["seed"])
        searched = searched if searched is not None else self.search_trials(spec, search, errors)
        chosen_trial = self.choose(searched)  # None only where the search trials' checkpoints went missing
        best = next((t for t in search if chosen_trial is not None and t.trial_id == chosen_trial.trial_id), None)
        frame = epochs_of(best) if best is not None else None
        curve = frame.sort_values("epoch").drop_duplicates("epoch", keep="last").itertuples() \
            if frame is not None else ()
        seeds = [self._seed_run(spec, trial) for trial in finals]
        started = min((s.ran.started_at for s in [*searched, *seeds] if s.ran.started_at is not None),
                      default=time.time())
        transfer = finals[0].config["trial"]["init"] if spec.source is not None else None
        info = self.infos[spec.cell_id]
        result = CellResult(
            study=self.study, cell_id=spec.cell_id,
            cell=replace(info, transfer_source=transfer),
            selection_metric=Cell.from_id(spec.cell_id).selection_metric, best_config=dict(chosen),
            trials=tuple(searched),
            best_trial_curve=tuple(CurvePoint(int(r.epoch), float(r.train_loss), float(r.val_metric)) for r in curve),
            seeds=tuple(seeds), data_fingerprint=self.fingerprints[spec.cell_id],
            wall_time_s=round(time.time() - started, 3), started=_iso(started), finished=_iso(time.time()))
        self.folder.write_cell(result)
        return result

    def _seed_run(self, spec: CellSpec, trial: Trial) -> SeedRun:
        seed = int(trial.config["trial"]["seed"])
        target = seed_folder(spec.cell_id, seed)
        store = self.folder.store
        with checkpoint_folder(trial.checkpoint) as saved:
            final = json.loads((saved / FINAL_FILE).read_text())
            for name in (BEST_FILE, FINAL_FILE, EPOCHS_FILE):
                store.put_file(saved / name, f"{target}/{name}")
        return SeedRun(seed=seed, epochs_run=final["epochs_run"], best_epoch=final["best_epoch"], val=final["val"],
                       test=final["test"], checkpoint=store.ref(f"{target}/{BEST_FILE}"), ran=whereabouts(trial),
                       trained_by=trial.config.get("trained_by"))

    @staticmethod
    def choose(searched: list[SearchTrial]) -> SearchTrial | None:
        """The search trial whose configuration the seeds train: the best validation metric of those that did not
        fail (a trial whose loss diverged at epoch 5 had validation figures before it, but its configuration does not
        train); of equals, the earlier proposed (max keeps the first). None when no trial that did not fail got as
        far as a validation."""
        return max((t for t in searched if t.val_metric is not None and not t.failed), key=lambda t: t.val_metric,
                   default=None)

    @staticmethod
    def done_line(result: CellResult) -> str:
        task = result.cell.task
        return (f"done in {result.wall_time_s:.0f} s: {result.selection_metric} "
                f"{result.best_seed.val[selection_key(task)]:.4f} (lr {result.best_config['lr']:.2g}, batch "
                f"{result.best_config['batch_size']}), test {SELECTION_NAME[task]} {result.test_mean():.4f} over "
                f"{len(result.seeds)} seed(s)")


def failure_of(trial: Trial) -> str:
    """Why a trial failed, in one line: the exception Ray wrapped (a RayTaskError's cause, e.g. "could not write
    .../last.pt: No space left on device"), not Ray's first line, which names its actor. Tune pickles it beside
    the trial in the driver's staging folder, and in the results folder at its next sync."""
    error = None
    local = trial.pickled_error_file
    if local and Path(local).exists():
        error = cloudpickle.loads(Path(local).read_bytes())
    if error is None:
        error = trial.get_pickled_error() or trial.get_error()
    if error is None:
        return "none recorded"
    cause = getattr(error, "cause", None) or error
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip()  # Ray colours its own lines
    return (text.splitlines() or [type(cause).__name__])[0][:500]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")
