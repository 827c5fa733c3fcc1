"""Rank correlations, their bootstrap intervals and the seed noise floor, on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nas.analysis.trust import kendall_rows, noise_floor, rank_correlations, spearman_rows


def test_rank_correlations_of_a_hand_worked_example() -> None:
    # y's ranks are 1, 2, 3.5, 5, 3.5 (the two 7s share 3.5); x's are 1..5. Spearman's rho is
    # Pearson's r of the ranks: sum(dx*dy) = 8, sum(dx^2) = 10, sum(dy^2) = 9.5, so 8/sqrt(95).
    # Kendall's tau-b: of the 10 pairs 8 concordant, 1 discordant (4,5), 1 tied in y only (3,5):
    # (8 - 1) / sqrt(10 * 9).
    r = rank_correlations([1, 2, 3, 4, 5], [5, 6, 7, 8, 7], n_boot=200)
    assert r["spearman"].value == pytest.approx(8 / math.sqrt(95))
    assert r["kendall"].value == pytest.approx(7 / math.sqrt(90))
    assert r["spearman"].n == 5


def test_both_agree_with_scipy_on_tied_data() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        a, b = rng.integers(0, 4, size=(2, 9)).astype(float)
        if len(set(a)) == 1 or len(set(b)) == 1:
            continue
        assert spearman_rows(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
        assert kendall_rows(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)


def test_perfect_agreement_and_reversal() -> None:
    up = rank_correlations([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.9], n_boot=100)
    down = rank_correlations([0.1, 0.2, 0.3, 0.4], [0.9, 0.7, 0.6, 0.5], n_boot=100)
    assert up["spearman"].value == up["kendall"].value == 1.0
    assert down["spearman"].value == down["kendall"].value == -1.0


def test_intervals_are_seeded_cover_the_truth_and_shrink_with_more_models() -> None:
    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(n)
        x = rng.normal(size=n)
        return x, x + rng.normal(size=n)  # Spearman's rho about 0.68 for this mix

    widths = {}
    for n in (20, 320):
        x, y = sample(n)
        first, again = rank_correlations(x, y, seed=1), rank_correlations(x, y, seed=1)
        assert first == again
        rho = first["spearman"]
        assert rho.low < 0.68 < rho.high
        widths[n] = rho.high - rho.low
    assert widths[320] < 0.4 * widths[20]  # about 1/sqrt(16)


def test_the_noise_floor_pools_variances_by_degrees_of_freedom() -> None:
    floor = noise_floor({"a": [0.80, 0.82], "b": [0.70, 0.71, 0.72], "single": [0.5]})
    # a: squares 0.0002 (1 dof); b: 0.0002 (2 dof): pooled variance 0.0004 / 3
    assert floor.pooled == pytest.approx(math.sqrt(0.0004 / 3))
    assert floor.dof == 3 and set(floor.per_architecture) == {"a", "b"}
    assert floor.per_architecture["a"] == pytest.approx(0.02 / math.sqrt(2))
    assert floor.indistinguishable(0.80, 0.80 + 1.9 * math.sqrt(2) * floor.pooled)
    assert not floor.indistinguishable(0.80, 0.80 + 2.0 * math.sqrt(2) * floor.pooled)
    with pytest.raises(ValueError, match="two or more seeds"):
        noise_floor({"a": [0.5], "b": [0.6]})
