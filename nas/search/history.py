"""A bounded history for TPE: what it fits its densities to does not grow with the study.

Optuna's TPE refits its two Parzen estimators to every finished trial on each proposal, in
Python loops over the trials: at 5,000 stored trials a proposal took 0.27 s against 0.05 s at
20, which made a search's cost per trial grow with the study. `BoundedHistory` gives the base
sampler a view of the study in which the finished trials are

- a uniform sample of at most `size` of them (reservoir sampling, seeded, kept as trials
  finish), from which TPE's densities are estimated with fewer points; and
- every trial of the current Pareto front (complete, feasible, not dominated over the study's
  objectives; one trial for each set of values: reused results repeat their source's), kept
  exactly as trials finish, so that the best trials always shape the "good" density;

and the running and waiting trials as they are (the constant liar needs them). TPE counts the
best gamma(n) of the n trials it is shown as good (10 % of them; at most 25 for one objective);
shown the view, it counts as good the front and the share of the sample that gamma gives the
whole study (so at 5,000 trials of one objective, the front and 1 sampled trial: the top 25 of
5,000 is 0.5 %), not 10 % of the view. Until more than `size` trials have finished, the view is
the whole study and gamma TPE's own: small studies are sampled exactly as before. Everything
else the sampler asks of the study goes to the study itself.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.samplers._tpe.sampler import default_gamma, default_gamma_multiobjective
from optuna.trial import FrozenTrial, TrialState

# finished trials in the sample: fitted to 400, TPE did as well as on all of them
# (benchmarks/tpe_history.py), where 200 fell behind
HISTORY_SIZE = 400


def feasible(trial: FrozenTrial) -> bool:
    """Whether a trial meets the constraints it records (none recorded: feasible)."""
    return all(c <= 0.0 for c in trial.constraints.values())


def dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    """Whether values `a` dominate `b` (each objective times its sign is minimised)."""
    no_worse = all(x * s <= y * s for x, y, s in zip(a, b, signs))
    return no_worse and any(x * s < y * s for x, y, s in zip(a, b, signs))


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class History:
    """The sample and the front of one study's finished trials, updated as trials finish.

    It reads the study's trial list (sorted by number, numbers 0, 1, 2...: a new trial is always
    at the end) from where it stopped, and looks again only at the trials that were not finished
    then: an update costs the new and the running trials, not the study."""

    def __init__(self, size: int, seed: int | None) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.cursor = 0  # trials[:cursor] were looked at
        self.pending: set[int] = set()  # numbers of those not finished then
        self.count = 0  # finished trials (complete or pruned) taken in
        self.sample: list[FrozenTrial] = []
        self.front: dict[int, FrozenTrial] = {}  # by trial number
        self._finished: list[FrozenTrial] | None = None

    def update(self, trials: list[FrozenTrial], signs: Sequence[float]) -> bool:
        """Takes in the trials that finished since the last look, by number; False (and
        nothing taken in) when the list is not numbered 0, 1, 2... as Optuna numbers a study's
        trials: the view is then the whole study."""
        if trials and trials[-1].number != len(trials) - 1 or \
                len(trials) < self.cursor:
            return False
        new = sorted(n for n in self.pending if trials[n].state.is_finished())
        self.pending.difference_update(new)
        for trial in trials[self.cursor:]:
            if trial.state.is_finished():
                new.append(trial.number)
            else:
                self.pending.add(trial.number)
        self.cursor = len(trials)
        for number in new:
            trial = trials[number]
            if trial.state not in FINISHED:  # failed: not a sampler's observation
                continue
            self._finished = None
            self.add_to_sample(trial)
            if trial.state == TrialState.COMPLETE and trial.values is not None \
                    and feasible(trial):
                self.add_to_front(trial, signs)
        return True

    def add_to_sample(self, trial: FrozenTrial) -> None:
        """Algorithm R: the i-th trial replaces a sampled one with probability size / i."""
        self.count += 1
        if len(self.sample) < self.size:
            self.sample.append(trial)
            return
        slot = self.rng.randrange(self.count)
        if slot < self.size:
            self.sample[slot] = trial

    def add_to_front(self, trial: FrozenTrial, signs: Sequence[float]) -> None:
        values = trial.values
        if any(f.values == values or dominates(f.values, values, signs)
               for f in self.front.values()):
            return  # dominated, or a reuse of a front trial's result
        for number in [n for n, f in self.front.items() if dominates(values, f.values, signs)]:
            del self.front[number]
        self.front[trial.number] = trial

    def finished(self) -> list[FrozenTrial]:
        """The sample and the front, each trial once, by number."""
        if self._finished is None:
            chosen = {t.number: t for t in self.sample} | self.front
            self._finished = sorted(chosen.values(), key=lambda t: t.number)
        return self._finished

    def unfinished(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """The trials not finished at the last update, by number."""
        return [trials[n] for n in sorted(self.pending)]


class StudyView:
    """A study whose trials, as a sampler reads them, are a snapshot of its trials with the
    finished ones a `History`'s once more than its size have finished."""

    def __init__(self, study: optuna.Study, history: History | None,
                 trials: list[FrozenTrial]) -> None:
        self._study = study
        self._history = history  # None: the whole study
        self._trials = trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        history = self._history
        if history is None or history.count <= history.size:  # small: all, as Optuna gives it
            return [t for t in self._trials if states is None or t.state in states]
        kept = [t for t in history.finished() if states is None or t.state in states]
        others = [t for t in history.unfinished(self._trials)
                  if states is None or t.state in states]
        return sorted(kept + others, key=lambda t: t.number) if others else kept

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                   ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=False, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=False)


class BoundedHistory(BaseSampler):
    """`base` sampling from a `StudyView` of at most `size` finished trials plus the front
    (see the module doc); the search space and the trial hooks see the study itself."""

    def __init__(self, base: BaseSampler, size: int = HISTORY_SIZE, seed: int | None = None,
                 ) -> None:
        self.base = base
        self.size = size
        self.seed = seed
        # by storage and study id (a sampler may serve several studies)
        self.histories: dict[tuple[int, int], History] = {}
        self.current: tuple[History | None, bool] = (None, False)  # the proposal's, for gamma
        if isinstance(base, TPESampler):
            base._gamma = self.gamma  # noqa: SLF001  (its `gamma` argument is deprecated)
        self.snapshot: tuple[tuple[tuple[int, int], int], list[FrozenTrial], bool] | None = None

    def view(self, study: optuna.Study, trial: FrozenTrial) -> StudyView:
        """The view for proposing `trial`: the study's trials read once per trial (the
        constant liar reads them fresh; within one proposal they are the same)."""
        study_id = (id(study._storage), study._study_id)  # noqa: SLF001
        history = self.histories.get(study_id)
        if history is None:
            history = self.histories[study_id] = History(self.size, self.seed)
        if self.snapshot is None or self.snapshot[0] != (study_id, trial.number):
            trials = study._get_trials(deepcopy=False, use_cache=False)  # noqa: SLF001
            signs = [-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0
                     for d in study.directions]
            self.snapshot = ((study_id, trial.number), trials, history.update(trials, signs))
        _, trials, kept = self.snapshot
        self.current = (history if kept else None, study._is_multi_objective())  # noqa: SLF001
        return StudyView(study, history if kept else None, trials)

    def gamma(self, n: int) -> int:
        """How many of the `n` trials TPE is shown count as good: TPE's own rule while the view
        is the whole study; past that, the front and the share of the sample that the rule
        gives the whole study (see the module doc)."""
        history, multi = self.current
        rule = default_gamma_multiobjective if multi else default_gamma
        if history is None or history.count <= history.size:
            return rule(n)
        share = rule(history.count) / history.count
        sampled = sum(t.number not in history.front for t in history.sample)
        return max(1, min(n, len(history.front) + math.ceil(share * sampled)))

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial,
                                    ) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.base.sample_relative(self.view(study, trial), trial, search_space)  # type: ignore[arg-type]

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(self.view(study, trial), trial,  # type: ignore[arg-type]
                                            param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


__all__ = ["HISTORY_SIZE", "BoundedHistory", "History", "StudyView"]
