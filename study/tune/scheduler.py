"""StudyASHA: successive halving per cell, decided in proposal order, so a study is reproducible and survives a
restore; and the hook through which the study searcher learns how each trial ended.

Ray Tune's ASHAScheduler stops a trial at a rung when its metric falls below a quantile of the values that reached
the rung before it. Which trials those are depends on which trial happened to finish its epochs first, so two
runs with the same seeds can stop different trials; and Tune saves no scheduler state, so after a restore ASHA
starts again with empty rungs.

StudyASHA decides each rung as ASHA would if the cell's search trials had run one after another in the order the
searcher proposed them: a trial at a rung is compared with the earlier-proposed search trials of the same cell
that reached that rung. When one of those is still on its way there, the trial is paused (Tune checkpoints it
and frees its slot for any cell's trial) until the answer is known. Seed runs are never stopped. Every value and
decision is written to a JSON file, so a restored experiment replays them.
"""

import math

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.storage import Storage
from study.tune.records import failure_of
from study.tune.cells import METRIC, current_launch, proposal_order
from study.tune.trainable import DIVERGED

RUNGS_FORMAT, RUNGS_VERSION = "ecg-study-rungs", 2
TIME_ATTR = "epoch"


def milestones(grace_period: int, max_t: int, reduction_factor: int) -> tuple[int, ...]:
    """ASHA's rungs below ``max_t`` (grace, grace * rf, ...): a trial at ``max_t`` ends anyway."""
    rungs, epoch = [], grace_period
    while epoch < max_t:
        rungs.append(epoch)
        epoch *= reduction_factor
    return tuple(rungs)


def below_cutoff(value: float, earlier: list[float], reduction_factor: int) -> bool:
    """ASHA's rule: stop when ``value`` is below the (1 - 1/rf) quantile of the earlier values at this rung."""
    if not earlier:
        return False
    return bool(value < np.nanpercentile(earlier, (1 - 1 / reduction_factor) * 100))


class StudyASHA(FIFOScheduler):
    """Successive halving of each cell's search trials; ``grace_period`` epochs before the first rung. Its rungs
    live in the file ``state_file`` of ``store`` (the study's folder, local or on s3:// and the like): the attached
    launch's (study/tune/searcher.py) unless given."""

    def __init__(self, *, grace_period: int, reduction_factor: int = 2, store: Storage | None = None,
                 state_file: str | None = None):
        super().__init__()
        self._store, self._state_file = store, state_file
        self.grace_period, self.reduction_factor = grace_period, reduction_factor
        self._records: dict | None = None  # trial_id -> {"<milestone>": {"value": float, "stop": bool | None}}

    @property
    def rungs(self) -> tuple[Storage, str]:
        return (self._store, self._state_file) if self._store is not None else current_launch().rungs

    def __getstate__(self):
        # Tune pickles the scheduler into tuner.pkl when the Tuner is made: the rungs are read from the file.
        return {**self.__dict__, "_records": None}

    @property
    def records(self) -> dict:
        if self._records is None:
            store, state_file = self.rungs
            saved = store.read_json(state_file) or {}
            self._records = saved.get("trials", {})
        return self._records

    def _save(self) -> None:
        store, state_file = self.rungs
        store.write_json(state_file, {"format": RUNGS_FORMAT, "version": RUNGS_VERSION, "trials": self.records})

    def milestones(self, trial: Trial) -> tuple[int, ...]:
        """A search trial's rungs (its cell's maximum epochs set them); a seed run has none."""
        if trial.config.get("phase") != "search":
            return ()
        return milestones(self.grace_period, int(trial.config["trial"]["epochs"]), self.reduction_factor)

    def _record(self, trial: Trial, milestone) -> dict | None:
        return self.records.get(trial.trial_id, {}).get(str(milestone))

    def _held_at(self, trial: Trial):
        """The rung a trial stands at (its last result) while no decision lets it train on; else None."""
        epoch = (trial.last_result or {}).get(TIME_ATTR)
        if epoch not in self.milestones(trial):
            return None
        record = self._record(trial, epoch)
        return epoch if record is None or record["stop"] is not False else None

    def _decide(self, tune_controller, trial: Trial, milestone) -> bool | None:
        """Stop (True), continue (False), or None while an earlier-proposed trial of the cell may still reach the
        rung. Only the cell's current search trials count (not those of a search tried again afresh)."""
        searcher = tune_controller.search_alg.searcher
        mine, earlier = proposal_order(trial), []
        for other in tune_controller.get_trials():
            if (other is trial or other.config.get("cell") != trial.config["cell"]
                    or other.config.get("phase") != "search" or proposal_order(other) >= mine
                    or not searcher.is_current(other)):
                continue
            record = self._record(other, milestone)
            if record is not None:
                earlier.append(record["value"])
            elif other.status not in (Trial.TERMINATED, Trial.ERROR):
                return None  # it has not reached the rung yet, and may still
        return below_cutoff(self._record(trial, milestone)["value"], earlier, self.reduction_factor)

    # -------------------------------------------------------------------------------------------- Tune's calls

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        # A restored trial can stand at a rung whose decision is not known yet (or was to stop). Tune starts every
        # PENDING trial by itself, so it is held as PAUSED: only choose_trial_to_run lets a paused trial go on.
        if trial.status == Trial.PENDING and self._held_at(trial) is not None:
            trial.set_status(Trial.PAUSED)
        super().on_trial_add(tune_controller, trial)
        # Tune tells schedulers of restored trials, not search algorithms. A new trial is the searcher's own
        # proposal, and adopting it changes nothing.
        tune_controller.search_alg.adopt(trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if result.get(DIVERGED):
            # The trainable raises next, and a retry would diverge again: Tune's check (Trial.should_recover,
            # failures <= max_failures) then fails the trial at its first error. Retries of other errors keep theirs.
            trial.max_failures = 0
            return TrialScheduler.CONTINUE
        epoch, value = result.get(TIME_ATTR), result.get(METRIC)
        if epoch not in self.milestones(trial) or value is None:
            return TrialScheduler.CONTINUE
        record = self.records.setdefault(trial.trial_id, {}).get(str(epoch))
        if record is None:
            record = self.records[trial.trial_id][str(epoch)] = {"value": float(value), "stop": None}
        # A trial that reports a rung again (restored from an older checkpoint) replays the first decision.
        if record["stop"] is None:
            record["stop"] = self._decide(tune_controller, trial, epoch)
        self._save()
        if record["stop"] is None:
            tune_controller.search_alg.searcher.paused(trial.trial_id)
            return TrialScheduler.PAUSE
        return TrialScheduler.STOP if record["stop"] else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._finish(tune_controller, trial, result, None)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        # Tune says so of a trial it retries too; the searcher hears of a trial that failed for good through its
        # on_trial_complete(error=True), which follows this call (and has no trial to read the error from).
        tune_controller.search_alg.searcher.failing(trial, failure_of(trial), tune_controller.get_trials())

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._finish(tune_controller, trial, trial.last_result, None)

    def _finish(self, tune_controller, trial: Trial, result, error: str | None) -> None:
        tune_controller.search_alg.searcher.finish(trial, result, error, tune_controller.get_trials())

    def _settle(self, tune_controller) -> None:
        """Decide the paused trials whose earlier trials are now known; stop those below the cutoff, and trials
        that no longer count for their cell."""
        searcher, changed = tune_controller.search_alg.searcher, False
        for trial in sorted(tune_controller.get_trials(), key=proposal_order):
            if trial.status in (Trial.PENDING, Trial.PAUSED) and not searcher.is_current(trial):
                tune_controller.stop_trial(trial)  # restored, of a cell finished or tried again afresh
                continue
            milestone = self._held_at(trial) if trial.status == Trial.PAUSED else None
            if milestone is None:
                continue
            rungs = self.records.setdefault(trial.trial_id, {})
            if str(milestone) not in rungs:  # a restored trial whose rung value the file missed
                rungs[str(milestone)], changed = {"value": float(trial.last_result[METRIC]), "stop": None}, True
            record = rungs[str(milestone)]
            if record["stop"] is None:
                record["stop"] = self._decide(tune_controller, trial, milestone)
                changed = changed or record["stop"] is not None
            if record["stop"]:
                if changed:  # the decision is on file before it is acted on
                    self._save()
                    changed = False
                tune_controller.stop_trial(trial)  # the searcher learns its last result (on_trial_remove)
        # Tune calls this at every step: the file (written with an fsync) is rewritten only when a decision was
        # made; rewriting it for each trial still waiting took 40% of the driver's time at 64 slots
        # (bench/bench_cluster.py).
        if changed:
            self._save()

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        searcher = tune_controller.search_alg.searcher
        searcher.launch.raise_fatal()  # raised here, it ends Tune's loop (see Launch.fatal)
        self._settle(tune_controller)
        ranks = searcher.ranks()
        trials = sorted(tune_controller.get_trials(),
                        key=lambda t: (ranks.get(t.config.get("cell"), (0, math.inf)), proposal_order(t)))
        searcher.tally(running=sum(t.status == Trial.RUNNING for t in trials),
                       starting=sum(t.status == Trial.PENDING for t in trials))
        # A paused trial goes on only when chosen here, one a step; Tune starts PENDING trials by itself. So a
        # trial free to leave its rung comes first: choosing a PENDING one (which waits for its worker) would keep
        # every paused trial waiting behind it.
        for trial in trials:
            if trial.status == Trial.PAUSED and self._held_at(trial) is None:
                searcher.resumed(trial.trial_id)
                return trial
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        return None

    def debug_string(self) -> str:
        return f"Using StudyASHA: rungs from epoch {self.grace_period}, reduction {self.reduction_factor}."
