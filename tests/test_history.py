"""The bounded history TPE is fitted to: the whole study while it is small; past that a seeded
uniform sample of the finished trials plus the exact Pareto front, kept as trials finish."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from nas.search.history import BoundedHistory, History, StudyView
from nas.study.queries import pareto_mask

DIRECTIONS = ["maximize", "minimize"]
SIGNS = [-1.0, 1.0]
DISTS = {"x": FloatDistribution(0.0, 1.0), "n": IntDistribution(1, 8)}


def finished_study(n: int, seed: int = 0) -> optuna.Study:
    """n trials: mostly complete (some infeasible), some pruned, some failed."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(directions=DIRECTIONS)
    for i in range(n):
        x, k = float(rng.random()), int(rng.integers(1, 9))
        state = TrialState.PRUNED if i % 7 == 3 else TrialState.FAIL if i % 11 == 5 else \
            TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(
            state=state, params={"x": x, "n": k}, distributions=DISTS,
            values=[x * k / 8, float(rng.random()) * k] if state == TrialState.COMPLETE else None,
            system_attrs={"constraints:max_params": 1.0 if i % 13 == 0 else -1.0}))
    return study


def observed(study: optuna.Study, size: int, seed: int = 0) -> tuple[History, list]:
    trials = study.get_trials(deepcopy=False)
    history = History(size, seed)
    assert history.update(trials, SIGNS)
    return history, StudyView(study, history, trials).get_trials(
        states=(TrialState.COMPLETE, TrialState.PRUNED))


def test_a_small_study_is_seen_whole() -> None:
    study = finished_study(60)
    history, seen = observed(study, size=200)
    assert seen == study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                             TrialState.PRUNED))


def test_a_large_study_is_a_sample_of_size_plus_the_exact_front() -> None:
    study = finished_study(1_500)
    history, seen = observed(study, size=100)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert history.count == len(finished) and len(history.sample) == 100
    feasible = [t for t in finished if t.state == TrialState.COMPLETE
                and all(c <= 0 for c in t.constraints.values())]
    mask = pareto_mask(np.array([t.values for t in feasible]), DIRECTIONS)
    front = {t.number for t, keep in zip(feasible, mask) if keep}
    assert set(history.front) == front and len(front) >= 3
    assert {t.number for t in seen} == front | {t.number for t in history.sample}
    assert [t.number for t in seen] == sorted(t.number for t in seen)
    assert all(t.state != TrialState.FAIL for t in seen)


def test_the_sample_is_uniform_over_the_finished_trials() -> None:
    study = finished_study(400)
    finished = [t.number for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))]
    counts = dict.fromkeys(finished, 0)
    runs = 400
    for seed in range(runs):
        history, _ = observed(study, size=40, seed=seed)
        for t in history.sample:
            counts[t.number] += 1
    expected = runs * 40 / len(finished)  # each trial's chance is size / finished
    early, late = finished[: len(finished) // 2], finished[len(finished) // 2:]
    assert np.mean([counts[n] for n in early]) == pytest.approx(expected, rel=0.05)
    assert np.mean([counts[n] for n in late]) == pytest.approx(expected, rel=0.05)
    assert max(counts.values()) < 3 * expected


def test_trials_that_finish_later_are_taken_in_once_and_running_ones_stay_visible() -> None:
    study = finished_study(300)
    history = History(50, 0)
    running = study.ask()  # number 300, running at the first look
    assert history.update(study.get_trials(deepcopy=False), SIGNS)
    before = history.count
    view = StudyView(study, history, study.get_trials(deepcopy=False))
    assert running.number in {t.number for t in view.get_trials(states=(TrialState.RUNNING,))}
    study.tell(running, [2.0, 0.0])  # finishes, and dominates everything
    assert history.update(study.get_trials(deepcopy=False), SIGNS)
    assert history.count == before + 1 and set(history.front) == {running.number}
    assert history.update(study.get_trials(deepcopy=False), SIGNS)
    assert history.count == before + 1, "taken in once"


def test_below_the_size_the_proposals_are_tpes_own() -> None:
    def proposals(sampler: optuna.samplers.BaseSampler) -> list[dict]:
        study = finished_study(40)
        study.sampler = sampler
        out = []
        for _ in range(5):
            trial = study.ask(DISTS)
            out.append(trial.params)
            study.tell(trial, [trial.params["x"], trial.params["n"]])
        return out

    def tpe() -> optuna.samplers.TPESampler:
        return optuna.samplers.TPESampler(seed=3, multivariate=True, constant_liar=True)

    assert proposals(BoundedHistory(tpe(), size=200, seed=3)) == proposals(tpe())


def test_past_the_size_tpe_still_finds_the_good_region() -> None:
    """A 1-D problem whose best x is near 0.8: after 600 random trials, TPE on a history of
    60 proposes mostly near it (random would put a fifth of its points within 0.1)."""
    study = optuna.create_study(direction="minimize")
    rng = np.random.default_rng(0)
    dist = {"x": FloatDistribution(0.0, 1.0)}
    for _ in range(600):
        x = float(rng.random())
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist,
                                                  value=(x - 0.8) ** 2))
    study.sampler = BoundedHistory(optuna.samplers.TPESampler(seed=0), size=60, seed=0)
    near = 0
    for _ in range(30):
        trial = study.ask(dist)
        near += abs(trial.params["x"] - 0.8) < 0.1
        study.tell(trial, (trial.params["x"] - 0.8) ** 2)
    assert near >= 20
    assert math.isfinite(study.best_value)


def test_a_reused_result_does_not_join_the_front_twice() -> None:
    study = finished_study(0)
    for _ in range(3):  # the same values three times: a trained trial and two reuses
        study.add_trial(optuna.trial.create_trial(params={"x": 0.5, "n": 4}, distributions=DISTS,
                                                  values=[0.9, 1.0]))
    history = History(1, 0)
    assert history.update(study.get_trials(deepcopy=False), SIGNS)
    assert list(history.front) == [0]


def test_tpe_counts_as_good_the_front_and_the_samples_share_of_the_whole_studys_rule() -> None:
    wrapper = BoundedHistory(optuna.samplers.TPESampler(seed=0), size=100, seed=0)
    assert wrapper.base._gamma == wrapper.gamma, "TPE asks the wrapper"  # noqa: SLF001
    assert [wrapper.gamma(n) for n in (5, 100, 400)] == [1, 10, 25], "TPE's own rule"
    for objectives in (1, 2):
        study = optuna.create_study(directions=DIRECTIONS[:objectives])
        rng = np.random.default_rng(objectives)
        for _ in range(2_000):
            x = float(rng.random())
            study.add_trial(optuna.trial.create_trial(
                params={"x": x, "n": 1}, distributions=DISTS,
                values=[x, float(rng.random())][:objectives]))
        trial = study.ask()
        view = wrapper.view(study, optuna.trial.FrozenTrial(
            number=trial.number, trial_id=trial._trial_id, state=TrialState.RUNNING,
            value=None, values=None, datetime_start=None, datetime_complete=None, params={},
            distributions={}, user_attrs={}, system_attrs={}, intermediate_values={}))
        history = wrapper.histories[(id(study._storage), study._study_id)]
        shown = len(view.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
        sampled = sum(t.number not in history.front for t in history.sample)
        # one objective: the top 25 of 2,000 (1.25 %); two: 10 % of them
        share = 25 / 2_000 if objectives == 1 else 0.1
        assert wrapper.gamma(shown) == len(history.front) + math.ceil(share * sampled)
        if objectives == 1:  # far narrower than 10 % of what TPE is shown
            assert wrapper.gamma(shown) < math.ceil(0.1 * shown)


def test_the_registered_tpe_is_fitted_through_the_wrapper() -> None:
    from nas.search.samplers import make_sampler

    sampler = make_sampler("tpe", 0)
    assert isinstance(sampler, BoundedHistory)
    assert sampler.base._gamma == sampler.gamma  # noqa: SLF001
    calls = []
    real = sampler.gamma
    sampler.base._gamma = lambda n: calls.append(n) or real(n)  # noqa: SLF001
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.optimize(lambda t: (t.suggest_float("x", 0, 1) - 0.3) ** 2, n_trials=14)
    assert calls, "TPE split its trials with the wrapper's gamma"
