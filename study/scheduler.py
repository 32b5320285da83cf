"""Successive halving whose decisions do not depend on timing, so a study is reproducible and survives a restore.

Ray Tune's ASHAScheduler stops a trial at a rung when its metric falls below a quantile of the values that
reached the rung before it. Which trials those are depends on which trial happened to finish its epochs first,
so two runs with the same seeds can stop different trials and choose different configurations; and Tune saves
no scheduler state, so after ``Tuner.restore`` ASHA starts again with empty rungs.

``OrderedASHA`` decides each rung as ASHA would if the trials had run one after another in the order the
searcher proposed them: a trial at a rung is compared with the earlier-proposed trials that reached that rung.
When one of those is still on its way there, the trial is paused (Tune checkpoints it and frees its slot) until
the answer is known. Every value and decision is written to a JSON file, so a restored Tuner replays them.
"""

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from study.search import AdoptingFIFO, proposal_order
from study.storage import Storage

RUNGS_FORMAT, RUNGS_VERSION = "ecg-study-rungs", 1


def milestones(grace_period: int, max_t: int, reduction_factor: int) -> tuple[int, ...]:
    """ASHA's rungs below ``max_t`` (grace, grace * rf, ...): a trial at ``max_t`` ends anyway."""
    rungs, epoch = [], grace_period
    while epoch < max_t:
        rungs.append(epoch)
        epoch *= reduction_factor
    return tuple(rungs)


def below_cutoff(value: float, earlier: list[float], reduction_factor: int, mode: str) -> bool:
    """ASHA's rule: stop when ``value`` is below the (1 - 1/rf) quantile of the earlier values at this rung."""
    if not earlier:
        return False
    sign = 1.0 if mode == "max" else -1.0
    cutoff = np.nanpercentile([sign * v for v in earlier], (1 - 1 / reduction_factor) * 100)
    return bool(sign * value < cutoff)


class OrderedASHA(AdoptingFIFO):
    """Asynchronous successive halving, decided in proposal order; its rungs live in the file ``state_file`` of
    ``store`` (the study's folder, local or on s3:// and the like)."""

    def __init__(self, store: Storage, state_file: str, *, metric: str, mode: str, time_attr: str, max_t: int,
                 grace_period: int, reduction_factor: int = 2):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}.")
        self._metric, self._mode = metric, mode
        self.store, self.state_file = store, state_file
        self.time_attr, self.reduction_factor = time_attr, reduction_factor
        self.milestones = milestones(grace_period, max_t, reduction_factor)
        self._records: dict | None = None  # trial_id -> {"<milestone>": {"value": float, "stop": bool | None}}

    def __getstate__(self):
        # Tune pickles the scheduler into tuner.pkl when the Tuner is made: the rungs are read from the file.
        return {**self.__dict__, "_records": None}

    @property
    def records(self) -> dict:
        if self._records is None:
            saved = self.store.read_json(self.state_file) or {}
            self._records = saved.get("trials", {})
        return self._records

    def _save(self) -> None:
        self.store.write_json(self.state_file, {"format": RUNGS_FORMAT, "version": RUNGS_VERSION,
                                            "milestones": list(self.milestones), "trials": self.records})

    def _record(self, trial: Trial, milestone) -> dict | None:
        return self.records.get(trial.trial_id, {}).get(str(milestone))

    def _held_at(self, trial: Trial):
        """The rung a trial stands at (its last result) while no decision lets it train on; else None."""
        epoch = (trial.last_result or {}).get(self.time_attr)
        if epoch not in self.milestones:
            return None
        record = self._record(trial, epoch)
        return epoch if record is None or record["stop"] is not False else None

    def _decide(self, tune_controller, trial: Trial, milestone) -> bool | None:
        """Stop (True), continue (False), or None while an earlier-proposed trial may still reach this rung."""
        mine, earlier = proposal_order(trial), []
        for other in tune_controller.get_trials():
            if other is trial or proposal_order(other) >= mine:
                continue
            record = self._record(other, milestone)
            if record is not None:
                earlier.append(record["value"])
            elif other.status not in (Trial.TERMINATED, Trial.ERROR):
                return None  # it has not reached the rung yet, and may still
        value = self._record(trial, milestone)["value"]
        return below_cutoff(value, earlier, self.reduction_factor, self._mode)

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        # A restored trial can stand at a rung whose decision is not known yet (or was to stop). Tune starts every
        # PENDING trial by itself, so it is held as PAUSED: only choose_trial_to_run lets a paused trial go on.
        if trial.status == Trial.PENDING and self._held_at(trial) is not None:
            trial.set_status(Trial.PAUSED)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        epoch, value = result.get(self.time_attr), result.get(self._metric)
        if epoch not in self.milestones or value is None:
            return TrialScheduler.CONTINUE
        record = self.records.setdefault(trial.trial_id, {}).get(str(epoch))
        if record is None:
            record = self.records[trial.trial_id][str(epoch)] = {"value": float(value), "stop": None}
        # A trial that reports a rung again (restored from an older checkpoint) replays the first decision.
        if record["stop"] is None:
            record["stop"] = self._decide(tune_controller, trial, epoch)
        self._save()
        if record["stop"] is None:
            return TrialScheduler.PAUSE
        return TrialScheduler.STOP if record["stop"] else TrialScheduler.CONTINUE

    def _settle(self, tune_controller) -> None:
        """Decide the paused trials whose earlier trials are now known; stop those below the cutoff."""
        for trial in sorted(tune_controller.get_trials(), key=proposal_order):
            milestone = self._held_at(trial) if trial.status == Trial.PAUSED else None
            if milestone is None:
                continue
            record = self.records.setdefault(trial.trial_id, {}).setdefault(
                str(milestone), {"value": float(trial.last_result[self._metric]), "stop": None})
            if record["stop"] is None:
                record["stop"] = self._decide(tune_controller, trial, milestone)
                self._save()
            if record["stop"]:
                # The searcher learns the trial's value, as when ASHA stops a running trial; stop_trial would
                # tell it of a paused one without a result (the second completion is ignored).
                tune_controller.search_alg.on_trial_complete(trial.trial_id, result=dict(trial.last_result))
                tune_controller.stop_trial(trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        self._settle(tune_controller)
        trials = sorted(tune_controller.get_trials(), key=proposal_order)
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        for trial in trials:
            if trial.status == Trial.PAUSED and self._held_at(trial) is None:
                return trial
        return None

    def debug_string(self) -> str:
        return f"Using OrderedASHA: rungs at {self.time_attr} {list(self.milestones)}."
