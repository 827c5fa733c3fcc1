"""FreshSampler: a sampler's re-proposal of an architecture the study has is asked again."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from optuna.samplers import BaseSampler

from nas.search.fresh import FreshSampler, architecture_key
from nas.search.history import BoundedHistory
from nas.search.samplers import make_sampler
from nas.search.space import SAMPLING, SearchSpace, load_space

SPACE = load_space("resnext")
DATA = {"in_channels": 1, "num_classes": 10, "input_size": 28}
KEY = architecture_key(SPACE, SAMPLING)


def params_of(**values: Any) -> dict[str, Any]:
    """Optuna parameters of a resnext point (two stages unless depths says otherwise)."""
    out = {"num_stages": len(values.get("depths", [1, 1])), "stem_width": 0, "group_width": 0,
           "bottleneck_ratio": 0, "depths_2": 1, "groups_2": 0}
    for i, depth in enumerate(values.get("depths", [1, 1])):
        out[f"depths_{i}"], out[f"groups_{i}"] = depth, values.get("groups", [0, 0, 0])[i]
    return {**out, **values.get("extra", {})}


def test_the_key_is_the_architecture_unused_stage_slots_left_out() -> None:
    a, b = params_of(), params_of(extra={"depths_2": 2, "groups_2": 3})
    assert a != b and KEY(a) == KEY(b), "a 2-stage point ignores the third slot"
    assert KEY(params_of(groups=[0, 1])) != KEY(a)
    assert KEY({"num_stages": 2}) is None, "parameters missing: unknown"


class Scripted(BaseSampler):
    """Proposes the given points in turn as relative parameters (a joint sampler)."""

    def __init__(self, points: list[dict[str, Any]]) -> None:
        self.points, self.asked = points, 0

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {k: d for k, d in study.trials[0].distributions.items() if not d.single()}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        self.asked += 1
        return dict(self.points[min(self.asked, len(self.points)) - 1])

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        raise AssertionError("every parameter is relative here")


def study_with(sampler: BaseSampler, first: dict[str, Any]) -> optuna.Study:
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial(first)
    trial = study.ask()
    SPACE.sample(trial)
    study.tell(trial, 0.5)
    return study


def test_a_re_proposal_is_asked_again_and_the_new_point_is_used() -> None:
    old, new = params_of(), params_of(groups=[2, 3])
    base = Scripted([old, old, new])
    study = study_with(FreshSampler(base, KEY, seed=0), old)
    trial = study.ask()
    SPACE.sample(trial)
    assert base.asked == 3 and trial.params == new


def test_a_sampler_that_keeps_re_proposing_is_replaced_by_random_points() -> None:
    old = params_of()
    base = Scripted([old])
    study = study_with(FreshSampler(base, KEY, seed=0, tries=3), old)
    trial = study.ask()
    SPACE.sample(trial)
    assert base.asked == 3 and KEY(trial.params) != KEY(old)


def repeats(sampler: BaseSampler, trials: int = 40) -> int:
    """Trials that re-propose an architecture, on a cheap stand-in for accuracy and cost."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    seen: set[str | None] = set()
    count = 0
    for _ in range(trials):
        trial = study.ask()
        values = SPACE.sample(trial)
        key = KEY(trial.params)
        count += key in seen
        seen.add(key)
        size = sum(values["depths"]) * sum(values["groups"]) * values["group_width"]
        study.tell(trial, [1 - 1 / math.log2(4 + size), size])
    return count


@pytest.mark.parametrize("multivariate", [True, False])
def test_tpe_re_proposes_architectures_and_fresh_sampling_does_not(multivariate: bool) -> None:
    def tpe() -> BaseSampler:
        return optuna.samplers.TPESampler(seed=1, multivariate=multivariate,
                                          n_startup_trials=10)

    # 10 (multivariate) and 4 (univariate) of 40 with Optuna 5.1, 5 or more with 5.0
    assert repeats(tpe()) >= 2, "the waste FreshSampler is for"
    assert repeats(FreshSampler(tpe(), KEY, seed=1)) == 0


def test_the_registry_says_which_samplers_a_search_asks_again() -> None:
    assert isinstance(make_sampler("tpe", 0, KEY), FreshSampler)
    assert isinstance(make_sampler("gp", 0, KEY), FreshSampler)
    assert type(make_sampler("random", 0, KEY)) is optuna.samplers.RandomSampler, "the baseline"
    assert type(make_sampler("tpe", 0)) is BoundedHistory, "no key, no FreshSampler"
    assert type(make_sampler("tpe", 0).base) is optuna.samplers.TPESampler


def test_an_exhausted_space_gives_back_the_first_proposal() -> None:
    tiny = SearchSpace.model_validate({  # two points
        "name": "tiny", "family": "resnet", "fixed": {"depths": [1], "widths": [8]},
        "dimensions": {"stem_width": {"choices": [8, 16]}, "stem": {"choices": ["simple"]}}})
    key = architecture_key(tiny, SAMPLING)
    study = optuna.create_study(sampler=FreshSampler(Scripted([{"stem_width": 1}]), key, seed=0))
    for width in (0, 1):
        study.enqueue_trial({"stem_width": width, "stem": 0})
        trial = study.ask()
        tiny.sample(trial)
        study.tell(trial, 0.5)
    trial = study.ask()
    assert tiny.sample(trial)["stem_width"] == 16, "seen, but nothing else is left"


def test_prescreening_completes_candidates_outside_the_common_search_space() -> None:
    """Stage counts vary, so the study's common search space lacks the third stage's
    parameters: each candidate is completed before the proxy sees it (a partial point once
    crashed the search), and the trial gets the chosen candidate's values for them."""
    from nas.search.fresh import point_completer

    sampler = FreshSampler(optuna.samplers.RandomSampler(seed=3), KEY, seed=3)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial(params_of(depths=[1, 1]))
    study.enqueue_trial(params_of(depths=[1, 1, 1]))
    for _ in range(2):
        trial = study.ask()
        SPACE.sample(trial, SAMPLING)
        study.tell(trial, 0.5)
    seen: list[list[dict[str, Any]]] = []

    def choose(points: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        seen.append(points)
        return len(points) - 1, {"proxy": "test"}

    sampler.candidates, sampler.choose = 4, choose
    sampler.complete = point_completer(SPACE, SAMPLING)
    stages = set()
    for _ in range(8):
        trial = study.ask()
        SPACE.sample(trial, SAMPLING)
        chosen = seen[-1][-1]
        assert KEY(chosen) is not None, "every candidate is a whole point"
        assert KEY(trial.params) == KEY(chosen), "the trial is the chosen candidate"
        stages.add(trial.params["num_stages"])
        study.tell(trial, 0.5)
    assert len(seen) == 8 and all(KEY(p) is not None for points in seen for p in points)
    assert stages == {2, 3}
