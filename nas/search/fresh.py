"""Asking the sampler again when it proposes an architecture the study already has.

TPE samples candidates around its few best trials and keeps the one its density ratio favours
most, which is often an exact copy of one of those trials: in a space of a few thousand points
a fifth of its proposals were architectures already trained. The objective reuses their results
(no training), but each still took a trial from the target. FreshSampler asks the base sampler
for a whole point at once and asks again, with fresh random draws, while the point is an
architecture that a finished or running trial already has, a few times; a sampler that keeps
proposing it (independent TPE's choice per parameter is nearly deterministic) is then replaced
for this trial by random points, as NNI's tuners fall back to a grid. What is left (two workers
proposing the same architecture at the same moment) the objective still reuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState

from nas.search.space import SearchSpace
from nas.study.record import invalid_point, write_trial_attrs

Key = Callable[[dict[str, Any]], str | None]
Chooser = Callable[[list[dict[str, Any]]], tuple[int, dict[str, Any]]]
Draw = Callable[[str, BaseDistribution], Any]
Completer = Callable[[dict[str, Any], Draw], dict[str, Any]]
SEEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
MISSING = object()


def architecture_key(space: SearchSpace, sampling: int) -> Key:
    """Parameters -> the point of the space they give (unused stage slots left out); None when
    some parameter is missing."""

    def key(params: dict[str, Any]) -> str | None:
        try:
            values = space.sample(optuna.trial.FixedTrial(params), sampling)
        except ValueError:  # FixedTrial: a parameter is missing
            return None
        return json.dumps(values, sort_keys=True)

    return key


class CompletingTrial(optuna.trial.FixedTrial):
    """A FixedTrial that draws (with `draw`) the parameters it was not given, and keeps them."""

    def __init__(self, params: dict[str, Any], draw: Draw) -> None:
        super().__init__(dict(params))
        self._draw = draw

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        if name not in self._params:
            self._params[name] = self._draw(name, distribution)
        return super()._suggest(name, distribution)


def point_completer(space: SearchSpace, sampling: int) -> Completer:
    """Parameters -> every parameter the space asks for at that point: those missing (stage
    parameters outside the study's common search space) drawn with `draw`."""

    def complete(params: dict[str, Any], draw: Draw) -> dict[str, Any]:
        trial = CompletingTrial(params, draw)
        space.sample(trial, sampling)
        return dict(trial.params)

    return complete


class FreshSampler(BaseSampler):
    """`base`, asked for whole points that are new architectures (see the module doc).

    A base that samples points jointly (multivariate TPE, GP, NSGA-II) is asked for relative
    parameters again; one that samples parameter by parameter (random, independent TPE) is asked
    for every parameter of the study's search space up front, so the point can be checked first.
    """

    def __init__(self, base: BaseSampler, key: Key, seed: int | None = None, tries: int = 3,
                 random_tries: int = 20) -> None:
        self.base, self.key, self.tries, self.random_tries = base, key, tries, random_tries
        self.random = optuna.samplers.RandomSampler(seed=seed)
        self.space = IntersectionSearchSpace(include_pruned=True)
        self.joint: bool | None = None  # whether this trial's base samples jointly
        self.known: dict[int, str | None] = {}  # finished trials' architectures, by trial id
        self.fixed: dict[str, Any] = {}  # one-value parameters: the value every trial has
        # --prescreen: each trial draws `candidates` new architectures and `choose` (the
        # objective's proxy ranking) says which one it trains, and what it saw
        self.choose: Chooser | None = None
        self.candidates = 1
        # the relative search space (common to all trials) leaves out parameters that only
        # some points have (per-stage values past a varying stage count): `complete` draws them
        # for each candidate, and the chosen candidate's values are what the trial then gets
        self.complete: Completer | None = None
        self.chosen: dict[int, dict[str, Any]] = {}  # by trial id

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial,
                                    ) -> dict[str, BaseDistribution]:
        relative = self.base.infer_relative_search_space(study, trial)
        self.joint = bool(relative)
        return relative or {k: d for k, d in self.space.calculate(study).items()
                            if not d.single()}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        seen, fixed = self.seen(study, trial)
        if self.choose is None or self.candidates < 2:
            return self.fresh(study, trial, search_space, seen, fixed)
        def draw(name: str, distribution: BaseDistribution) -> Any:
            return self.base.sample_independent(study, trial, name, distribution)

        points, full = [], []  # prescreening: several new architectures, the chooser keeps one
        for _ in range(self.candidates):
            params = self.fresh(study, trial, search_space, seen, fixed)
            point = {**fixed, **params}
            if self.complete is not None:
                point = self.complete(point, draw)
            points.append(params)
            full.append(point)
            seen.add(self.key(point))
        index, note = self.choose(full)
        self.chosen[trial._trial_id] = full[index]  # noqa: SLF001
        write_trial_attrs(study._storage, trial._trial_id, prescreen=note)  # noqa: SLF001
        return points[index]

    def fresh(self, study: optuna.Study, trial: FrozenTrial,
              search_space: dict[str, BaseDistribution], seen: set[str | None],
              fixed: dict[str, Any]) -> dict[str, Any]:
        """A point whose architecture is not in `seen`, if the tries find one."""
        first = None
        for attempt in range(self.tries + self.random_tries):
            params = self.propose(study, trial, search_space, attempt >= self.tries)
            first = params if first is None else first
            key = self.key({**fixed, **params})
            if key is None or key not in seen:
                return params
        return first  # the space may be exhausted: the objective reuses the result

    def propose(self, study: optuna.Study, trial: FrozenTrial,
                search_space: dict[str, BaseDistribution], random: bool) -> dict[str, Any]:
        if self.joint and not random:
            return self.base.sample_relative(study, trial, search_space)
        sampler = self.random if random else self.base
        return {name: sampler.sample_independent(study, trial, name, d)
                for name, d in search_space.items()}

    def seen(self, study: optuna.Study, trial: FrozenTrial,
             ) -> tuple[set[str | None], dict[str, Any]]:
        """The architectures of the study's other trials, and the values of its one-value
        parameters (left out of relative search spaces). A finished trial's architecture is
        worked out once (kept by trial id): the cost of a proposal does not grow with the
        study beyond a set lookup per trial."""
        trials = [t for t in study.get_trials(deepcopy=False, states=(*SEEN, TrialState.FAIL))
                  if t.number != trial.number
                  and (t.state != TrialState.FAIL or invalid_point(t.user_attrs))]
        keys = set()
        for t in trials:
            key = self.known.get(t._trial_id, MISSING)  # noqa: SLF001
            if key is MISSING:
                key = self.key(t.params)
                if t.state.is_finished():
                    self.known[t._trial_id] = key  # noqa: SLF001
                for name, d in t.distributions.items():
                    if d.single():
                        self.fixed.setdefault(name, t.params[name])
            keys.add(key)
        return keys, self.fixed

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        chosen = self.chosen.get(trial._trial_id, {})  # noqa: SLF001  a prescreened point
        if param_name in chosen and param_distribution._contains(  # noqa: SLF001
                param_distribution.to_internal_repr(chosen[param_name])):
            return chosen[param_name]
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.chosen.pop(trial._trial_id, None)  # noqa: SLF001
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


__all__ = ["FreshSampler", "architecture_key"]
