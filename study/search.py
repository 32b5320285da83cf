"""What each cell's Tuner tries: Optuna's proposals in the search, the seeds in the final runs.

A killed driver leaves two records of a search behind: Tune's experiment state (the trials, their statuses and
checkpoints) and the searcher's state, saved and uploaded one after the other. A kill between the two leaves one
newer than the other, and a restore that trusts both goes wrong: a trial the searcher still counts as running
when the experiment says it finished keeps its concurrency slot forever (the restored search hangs); one the
searcher proposed but the experiment never saved is lost, or one the experiment holds is proposed again.

So the searchers here keep no state of their own across a restore. Tune's restored trials are the one record:
the scheduler hands each to the search algorithm as Tune re-adds it (``ProposalSearch.adopt``), and the
searcher rebuilds itself from them, replaying Optuna's proposals in the order they were made.
"""

import math

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import SearchGenerator, Searcher


def proposal_number(experiment_tag: str) -> float:
    """The order the searcher proposed a trial in: Tune tags trials "N_<config>", N counting from 1.
    (Trial IDs are random; Tune re-adds restored trials newest first.)"""
    number = str(experiment_tag).partition("_")[0]
    return int(number) if number.isdigit() else math.inf


def proposal_order(trial: Trial) -> tuple:
    return proposal_number(trial.experiment_tag), trial.trial_id


class Proposals(Searcher):
    """A searcher that caps the trials in flight and rebuilds itself from restored trials, never from a file.

    Subclasses say what to propose (``propose``), what a finished trial teaches them (``learn``) and how to
    take back a restored trial (``take_back``); this class keeps which trials are in flight.
    """

    def __init__(self, max_concurrent: int, metric: str | None = None, mode: str | None = None):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be 1 or more; got {max_concurrent}.")
        super().__init__(metric=metric, mode=mode)
        self.max_concurrent = max_concurrent
        self._live: set[str] = set()  # proposed or adopted, not finished
        self._finished: set[str] = set()
        self._adopted: list[Trial] = []  # restored trials not yet taken back

    # Tune's interface.

    def suggest(self, trial_id: str) -> dict | None:
        self._take_back_adopted()
        if len(self._live) >= self.max_concurrent:
            return None
        config = self.propose(trial_id)
        if config is not None:
            self._live.add(trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._take_back_adopted()
        if trial_id not in self._live:  # unknown, or told twice (a scheduler that stops a paused trial does)
            return
        self._live.discard(trial_id)
        self._finished.add(trial_id)
        self.learn(trial_id, result, error)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing is saved: a restore rebuilds the searcher from the trials (see the module's docstring)."""

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Nothing is read: the restored trials are adopted one by one instead."""

    # Restored trials.

    def adopt(self, trial: Trial) -> None:
        """A trial Tune restored from its experiment state; taken back, in proposal order, before the next call."""
        if trial.trial_id not in self._live and trial.trial_id not in self._finished:
            self._adopted.append(trial)

    def _take_back_adopted(self) -> None:
        if not self._adopted:
            return
        trials, self._adopted = sorted(self._adopted, key=proposal_order), []
        self.take_back(trials)
        for trial in trials:
            # Tune re-adds an unfinished trial as PENDING (or a scheduler holds it PAUSED): it runs on, in flight.
            (self._finished if trial.status in (Trial.TERMINATED, Trial.ERROR) else self._live).add(trial.trial_id)

    # For subclasses.

    def propose(self, trial_id: str) -> dict | None:
        raise NotImplementedError

    def learn(self, trial_id: str, result: dict | None, error: bool) -> None:
        """A trial finished (``result`` is its last one, or None)."""

    def take_back(self, trials: list[Trial]) -> None:
        """The restored trials, in proposal order, before any new proposal."""


class OptunaProposals(Proposals):
    """Optuna's TPE (seeded) over learning rate (log-uniform) and batch size (a choice), on ``metric``.

    A restore replays the proposals: a fresh study with the same seed is asked again, once per restored trial in
    proposal order, and then told the finished trials' values. While fewer than ``n_startup_trials`` trials have
    finished, TPE draws at random from its seeded generator, so the replay proposes exactly what the first run
    did, and the next proposal is the one the first run would have made. Later proposals depend on which trials
    had finished when they were made, which no record keeps: a replayed ask that draws something else is told
    as failed (TPE ignores failed trials) and the restored trial's own values are entered in its place.
    """

    def __init__(self, *, lr_range: tuple[float, float], batch_sizes: list[int], metric: str, mode: str, seed: int,
                 max_concurrent: int):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}.")
        super().__init__(max_concurrent, metric=metric, mode=mode)
        self.space = {"lr": optuna.distributions.FloatDistribution(*lr_range, log=True),
                      "batch_size": optuna.distributions.CategoricalDistribution(list(batch_sizes))}
        self._study = optuna.create_study(direction="maximize" if mode == "max" else "minimize",
                                          sampler=optuna.samplers.TPESampler(seed=seed))
        self._asked: dict[str, optuna.trial.Trial] = {}  # every trial in flight (proposed or taken back)

    def propose(self, trial_id: str) -> dict:
        self._asked[trial_id] = self._study.ask(fixed_distributions=self.space)
        return dict(self._asked[trial_id].params)

    def learn(self, trial_id: str, result: dict | None, error: bool) -> None:
        asked = self._asked.pop(trial_id)
        value = (result or {}).get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            state = optuna.trial.TrialState.FAIL if error or value is not None else optuna.trial.TrialState.PRUNED
            self._study.tell(asked, state=state)
        else:
            self._study.tell(asked, float(value))

    def take_back(self, trials: list[Trial]) -> None:
        if self._asked or self._study.trials:
            raise RuntimeError("restored trials arrive before any new proposal; this search has made some already.")
        for trial in trials:
            wanted = {name: trial.config[name] for name in self.space}
            asked = self._study.ask(fixed_distributions=self.space)
            if asked.params != wanted:
                self._study.tell(asked, state=optuna.trial.TrialState.FAIL)  # a draw the first run did not make
                self._study.enqueue_trial(wanted)
                asked = self._study.ask(fixed_distributions=self.space)
            self._asked[trial.trial_id] = asked
        for trial in trials:
            if trial.status in (Trial.TERMINATED, Trial.ERROR):
                self.learn(trial.trial_id, trial.last_result, error=trial.status == Trial.ERROR)


class SeedProposals(Proposals):
    """The final runs: one trial per seed, in the given order; a restored trial keeps its seed."""

    def __init__(self, seeds: list[int], max_concurrent: int):
        super().__init__(max_concurrent)
        self.seeds = list(seeds)
        self._taken: set[int] = set()

    def propose(self, trial_id: str) -> dict | None:
        seed = next((seed for seed in self.seeds if seed not in self._taken), None)
        if seed is None:
            return None
        self._taken.add(seed)
        return {"seed": seed}

    def take_back(self, trials: list[Trial]) -> None:
        self._taken.update(int(trial.config["seed"]) for trial in trials)


class ProposalSearch(SearchGenerator):
    """Tune's search generator around a ``Proposals`` searcher; after a restore, the count of trials proposed
    (which numbers them, and ends the search at ``num_samples``) comes from the adopted trials too."""

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)  # the experiment spec; the searcher reads nothing
        self._counter, self._finished = 0, False

    def adopt(self, trial: Trial) -> None:
        number = proposal_number(trial.experiment_tag)
        if number != math.inf:
            self._counter = max(self._counter, int(number))
        self.searcher.adopt(trial)


class AdoptingFIFO(FIFOScheduler):
    """First in, first out, and every trial Tune re-adds on a restore goes to the search algorithm's ``adopt``
    (Tune tells schedulers of restored trials, not search algorithms)."""

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        adopt = getattr(tune_controller.search_alg, "adopt", None)
        if adopt is not None:  # a new trial is the searcher's own proposal, and adopting it changes nothing
            adopt(trial)
