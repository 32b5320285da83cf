"""StudySearch: the one searcher of the study's one Tune experiment, serving every cell.

Each cell has its own seeded Optuna study (TPE over learning rate and batch size), seeded from the study's --seed
and the cell's id, so a cell proposes the same trials whatever cells run beside it. Whenever Tune has a free slot,
the next trial comes from the first cell that has one, in this order (``rank``): the longest remaining chain of
work first (the beats a cell plans to train, search and seed runs, plus the longest such chain of the transfer
cells waiting on it: so an arrhythmia cell with SMOTE comes before one without, and a cell whose transfer cell
waits on it before one alike that nothing waits on), then the grid's order. A cell's seed runs are proposed once its search trials have all ended and its configuration is
chosen; a transfer cell's first trial once its source cell's result is written. ``--max-cells`` caps the cells
in progress (1: one cell after another); at most ``max_concurrent`` trials are in flight (a trial paused at a
rung is not). While only waiting cells remain it proposes nothing; when no cell can go on, the search is finished.

A killed driver leaves Tune's experiment state and the searcher's state out of step, so this searcher saves
nothing: Tune's restored trials are the one record. The scheduler hands each to ``adopt`` as Tune re-adds it,
and each cell replays its Optuna proposals in the order they were made (OptunaCell). What a launch brings (the
cells it plans, its limits, its console, the study folder) is attached by the driver (``attach``), since Tune
restores the searcher and the scheduler from the pickle it made when the experiment began, in a folder that may
have moved since.
"""

import math

from ray.tune.experiment import Trial
from ray.tune.search import SearchGenerator, Searcher

from study.metrics import SELECTION_NAME
from study.tune.cells import METRIC, CellProgress, Launch, OptunaCell, current_launch, proposal_number, proposal_order
from study.tune.trainable import DIVERGED


class StudySearch(Searcher):
    """The study's searcher (see the module's docstring), serving the launch attached."""

    def __init__(self):
        super().__init__()
        self._state = None  # built from the attached launch at the first call; never pickled

    def __getstate__(self):
        return {**self.__dict__, "_state": None}

    # -------------------------------------------------------------------------------------------- state

    @property
    def launch(self) -> Launch:
        return current_launch()

    @property
    def cells(self) -> dict[str, CellProgress]:
        if self._state is None:
            launch = self.launch
            self._state = {"cells": {}, "trials": {}, "live": set(), "paused": set(), "adopted": [], "epochs": {},
                           "failing": {}}
            launch.searcher = self
            for spec in launch.cells:
                progress = CellProgress(spec, OptunaCell(spec.batch_sizes, spec.optuna_seed, spec.lr_range))
                if spec.source is not None and spec.source in launch.done:
                    progress.init = launch.done[spec.source].best_checkpoint
                self._state["cells"][spec.cell_id] = progress
        return self._state["cells"]

    @property
    def _trials(self) -> dict[str, tuple[str, str]]:  # trial id -> (cell id, phase) of the current trials
        self.cells
        return self._state["trials"]

    def ranks(self) -> dict[str, tuple]:
        """Which cell goes first (the smaller rank): the longest chain of work still to run through it (its planned
        beats to train, CellSpec.planned_work, then the longest such chain of the transfer cells that wait on it),
        then the grid's order. Cells this launch does not run are not in it."""
        cells, grace = self.cells, self.launch.grace_period

        def chain(cid: str) -> int:
            return cells[cid].spec.planned_work(grace) + max(
                (chain(o.spec.cell_id) for o in cells.values() if o.spec.source == cid and not o.over), default=0)

        return {cell_id: (-chain(cell_id), index) for index, cell_id in enumerate(cells)}

    # -------------------------------------------------------------------------------------------- Tune's calls

    def suggest(self, trial_id: str) -> dict | None:
        self.launch.raise_fatal()
        self._take_back_adopted()
        cells, launch = self.cells, self.launch
        if all(c.over for c in cells.values()):
            return Searcher.FINISHED
        if len(self._state["live"] - self._state["paused"]) >= launch.max_concurrent:
            return None
        in_progress = sum(c.started and not c.over for c in cells.values())
        ranks = self.ranks()
        for cell_id in sorted(cells, key=ranks.get):
            progress = cells[cell_id]
            if not progress.started and launch.max_cells and in_progress >= launch.max_cells:
                continue
            config = self._propose(progress, trial_id)
            if config is not None:
                self._state["live"].add(trial_id)
                return config
        return None

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing is saved: a restore rebuilds the searcher from the trials (see the module's docstring)."""

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Nothing is read: the restored trials are adopted one by one instead."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get("epoch") is not None:
            self._state["epochs"][trial_id] = int(result["epoch"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """A trial that ended well the scheduler has told of already (``finish``, with the trial); one that
        failed for good is told here, after the scheduler handed it over (``failing``)."""
        self.cells
        failing = self._state["failing"].pop(trial_id, None)
        if error and failing is not None:
            trial, text, trials = failing
            self.finish(trial, result, text, trials)

    def failing(self, trial: Trial, error: str, trials: list[Trial]) -> None:
        """A trial failed (``error``, in one line): Tune retries it, or tells on_trial_complete it failed."""
        self.cells
        self._state["failing"][trial.trial_id] = (trial, error, trials)

    # -------------------------------------------------------------------------------------------- the driver's calls

    def tally(self, running: int, starting: int) -> None:
        """Tune's own count of its trials running (holding a slot) and pending (not started yet), told by the
        scheduler at every step, for the status line: the trials proposed and not paused or ended are both kinds."""
        self.cells
        self._state["tally"] = (running, starting)

    def unfinished(self) -> list[str]:
        return [cell_id for cell_id, progress in self.cells.items() if not progress.over]

    def status(self) -> dict:
        """Counts for the driver's status line, and the beats trained and left to train (about)."""
        cells, state = dict(self.cells), self._state
        running, starting = state.get("tally") or (len(state["live"] - state["paused"]), 0)
        done_work = left = 0
        for progress in cells.values():
            spec = progress.spec
            work = sum(state["epochs"].get(t, 0) for t in [*progress.search, *progress.seeds.values()])
            done_work += work * spec.train_beats
            if not progress.over:
                left += max(0, spec.planned_work(self.launch.grace_period) - work * spec.train_beats)
        return {"done": sum(p.done for p in cells.values()),
                "running": sum(p.started and not p.over for p in cells.values()),
                "waiting": sum(not p.started and not p.over for p in cells.values()),
                "trials_running": running, "trials_starting": starting,
                "trials_finished": sum(len(p.ended) for p in cells.values()),
                "work_done": done_work, "work_left": left}

    # -------------------------------------------------------------------------------------------- proposals

    def _propose(self, progress: CellProgress, trial_id: str) -> dict | None:
        spec = progress.spec
        if progress.over or progress.waiting:
            return None
        trial = dict(spec.trial, init=progress.init or spec.trial["init"])
        if len(progress.search) < spec.samples:
            if not progress.search:
                self.launch.notify(spec.cell_id, f"search started ({spec.samples} samples)")
            params = progress.optuna.ask(trial_id)
            progress.search.append(trial_id)
            self._trials[trial_id] = (spec.cell_id, "search")
            return {"cell": spec.cell_id, "phase": "search", "data": spec.data, "trial": {**trial, **params}}
        if progress.chosen is None:
            return None  # the search still runs
        seed = next((s for s in spec.seeds if s not in progress.seeds), None)
        if seed is None:
            return None
        progress.seeds[seed] = trial_id
        progress.failed_seeds.pop(seed, None)
        self._trials[trial_id] = (spec.cell_id, "final")
        config = {"cell": spec.cell_id, "phase": "final", "data": spec.data,
                  "trial": {**trial, **progress.chosen, "seed": seed}}
        if progress.trained is not None and progress.trained[0] == seed:
            config.update(trained_by=progress.trained[1], trained=progress.trained[2])  # see CellProgress.trained
        return config

    # -------------------------------------------------------------------------------------------- the scheduler's calls

    def is_current(self, trial: Trial) -> bool:
        """Whether a trial counts for its cell: not one a retry replaced, nor of a cell finished before."""
        self._take_back_adopted()
        return trial.trial_id in self._trials

    def paused(self, trial_id: str) -> None:
        self._state["paused"].add(trial_id)

    def resumed(self, trial_id: str) -> None:
        self._state["paused"].discard(trial_id)

    def finish(self, trial: Trial, result: dict | None, error: str | None, trials: list[Trial]) -> None:
        """A trial ended (``error``: why it failed, or None); ``trials``: every trial of the experiment."""
        try:
            self._finish(trial, result, error, trials)
        except (OSError, ValueError) as failure:  # the study's own files: see Launch.fatal
            self.launch.fatal = self.launch.fatal or failure

    def _finish(self, trial: Trial, result: dict | None, error: str | None, trials: list[Trial]) -> None:
        self._take_back_adopted()
        if trial.trial_id not in self._trials or trial.trial_id not in self._state["live"]:
            return  # not a current trial, or told twice
        self._state["live"].discard(trial.trial_id)
        self._state["paused"].discard(trial.trial_id)
        cell_id, phase = self._trials[trial.trial_id]
        progress = self.cells[cell_id]
        progress.ended.add(trial.trial_id)
        diverged = bool((trial.last_result or {}).get(DIVERGED))  # failed at once: a retry would diverge again
        if error is not None:
            progress.errors[trial.trial_id] = error
            what = "a search trial" if phase == "search" else f"the seed {trial.config['trial']['seed']} run"
            how = "not retried" if diverged else "after its retries"
            self.launch.notify(cell_id, f"{what} failed (trial {trial.trial_id}, {how}): {error}")
        if phase == "search":
            progress.optuna.tell(trial.trial_id, (result or {}).get(METRIC), error is not None)
            self._after_search_trial(progress, trials)
        else:
            seed = int(trial.config["trial"]["seed"])
            if error is not None and trial.trial_id in progress.resumed and not diverged:
                # It could not go on from what the earlier launch left (a checkpoint that never reached the results
                # folder, say): the seed is trained again from the start, once.
                progress.resumed.discard(trial.trial_id)
                del progress.seeds[seed]
                self.launch.notify(cell_id, f"the seed {seed} run starts again from its first epoch")
                return
            if error is not None:
                progress.failed_seeds[seed] = error
            self._after_seed_run(progress, trials)

    def _after_search_trial(self, progress: CellProgress, trials: list[Trial]) -> None:
        spec = progress.spec
        if progress.over or len(progress.search) < spec.samples or not set(progress.search) <= progress.ended:
            return
        recorder = self.launch.recorder
        searched = recorder.search_trials(spec, [t for t in trials if t.trial_id in progress.search], progress.errors)
        best = recorder.choose(searched)
        progress.searched = searched
        if best is None:
            first = next((t.error for t in searched if t.error), None) or "none recorded"
            self._fail(progress, f"every search trial failed; the first error: {first}")
            return
        progress.chosen = {"lr": best.lr, "batch_size": best.batch_size}
        chosen = next((t for t in trials if t.trial_id == best.trial_id), None)
        seed, checkpoint = spec.trial.get("seed"), getattr(chosen, "checkpoint", None)
        if (seed in spec.seeds and not best.stopped_early and best.epochs == int(spec.trial["epochs"])
                and checkpoint is not None):
            progress.trained = (seed, chosen.trial_id, checkpoint.path)
        self.launch.notify(spec.cell_id, f"configuration chosen: lr {best.lr:.2g}, batch {best.batch_size} "
                                         f"({SELECTION_NAME[spec.trial['task']]} "
                                         f"{best.val_metric:.4f} on validation)")

    def _after_seed_run(self, progress: CellProgress, trials: list[Trial]) -> None:
        spec = progress.spec
        if progress.over or any(progress.seeds.get(s) not in progress.ended for s in spec.seeds):
            return
        if progress.failed_seeds:
            seed, error = min(progress.failed_seeds.items())
            self._fail(progress, f"the seed {seed} run failed: {error}")
            return
        cell_trials = [t for t in trials if t.trial_id in progress.search or t.trial_id in progress.seeds.values()]
        result = self.launch.recorder.write_cell(spec, cell_trials, progress.chosen, progress.errors, progress.searched)
        progress.done = True
        self.launch.done[spec.cell_id] = result
        self.launch.notify(spec.cell_id, self.launch.recorder.done_line(result))
        for other in self.cells.values():
            if other.spec.source == spec.cell_id:
                other.init = result.best_checkpoint

    def _fail(self, progress: CellProgress, reason: str) -> None:
        progress.failure = reason
        self.launch.notify(progress.spec.cell_id, f"failed: {reason}")
        for other in self.cells.values():
            if other.spec.source == progress.spec.cell_id and not other.over:
                other.blocked_by = progress.spec.cell_id
                self.launch.notify(other.spec.cell_id, f"blocked: its source cell {progress.spec.cell_id} failed")

    def failures(self) -> list[tuple[str, str, str | None]]:
        """(cell id, reason, the failed cell it waits on) of each cell that could not finish."""
        out = []
        for cell_id, progress in self.cells.items():
            if progress.failure is not None:
                out.append((cell_id, progress.failure, None))
            elif progress.blocked_by is not None:
                out.append((cell_id, f"its source cell {progress.blocked_by} failed", progress.blocked_by))
        return out

    # -------------------------------------------------------------------------------------------- restored trials

    def adopt(self, trial: Trial) -> None:
        """A trial Tune restored from its experiment state; taken back, in proposal order, before the next call."""
        self.cells
        if trial.trial_id not in self._trials:
            self._state["adopted"].append(trial)

    def _take_back_adopted(self) -> None:
        if not self.cells or not self._state["adopted"]:  # every scheduler call asks: nothing to take back, mostly
            return
        trials, self._state["adopted"] = sorted(self._state["adopted"], key=proposal_order), []
        for cell_id, progress in self.cells.items():
            mine = [t for t in trials if t.config.get("cell") == cell_id]
            search = [t for t in mine if t.config["phase"] == "search"]
            # A search whose every trial failed is tried again afresh (a fix between launches); so is a seed run
            # that failed. Their trials stay in Tune's record, no longer the cell's.
            if len(search) >= progress.spec.samples and all(t.status == Trial.ERROR for t in search):
                search = []
            for t in search:
                wanted = {name: t.config["trial"][name] for name in progress.optuna.space}
                progress.optuna.ask(t.trial_id, wanted)
                progress.search.append(t.trial_id)
                self._trials[t.trial_id] = (cell_id, "search")
            for t in mine:
                if t.config["phase"] == "final" and t.status != Trial.ERROR:
                    progress.seeds[int(t.config["trial"]["seed"])] = t.trial_id
                    progress.chosen = {k: t.config["trial"][k] for k in ("lr", "batch_size")}
                    self._trials[t.trial_id] = (cell_id, "final")
            for t in mine:
                if t.trial_id not in self._trials:
                    continue
                last = t.last_result or {}
                # A diverged trial's last result is its "diverged" row, without an epoch: the most it reported.
                epoch = t.metric_analysis.get("epoch", {}).get("max") if last.get(DIVERGED) else last.get("epoch")
                self._state["epochs"][t.trial_id] = int(epoch or 0)
                if t.status in (Trial.TERMINATED, Trial.ERROR):
                    progress.ended.add(t.trial_id)
                    if self._trials[t.trial_id][1] == "search":
                        progress.optuna.tell(t.trial_id, t.last_result.get(METRIC), t.status == Trial.ERROR)
                else:
                    self._state["live"].add(t.trial_id)
                    if t.status == Trial.PAUSED:
                        self._state["paused"].add(t.trial_id)
                    if self._trials[t.trial_id][1] == "final":
                        progress.resumed.add(t.trial_id)
        # The replay may find a search or a cell that ended before the kill; decide them now.
        for progress in self.cells.values():
            if progress.chosen is None:
                self._after_search_trial(progress, trials)
            self._after_seed_run(progress, trials)


class StudySearchGenerator(SearchGenerator):
    """Tune's search generator around StudySearch; after a restore, the count of trials proposed (which numbers
    them) comes from the adopted trials too."""

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)  # the experiment spec; the searcher reads nothing
        self._counter, self._finished = 0, False

    def adopt(self, trial: Trial) -> None:
        number = proposal_number(trial.experiment_tag)
        if number != math.inf:
            self._counter = max(self._counter, int(number))
        self.searcher.adopt(trial)
