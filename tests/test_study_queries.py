"""Questions asked of a study, on inputs whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from nas.study import hypervolume
from nas.study.queries import pareto_mask


def test_hypervolume_of_a_staircase_is_the_area_under_it() -> None:
    # (1, 3), (2, 2), (3, 1) up to (4, 4): columns of width 1 and heights 1, 2, 3 -> 6
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)


def test_hypervolume_ignores_dominated_points_and_points_beyond_the_reference() -> None:
    front = [(1, 3), (2, 2), (3, 1)]
    extra = [(2.5, 2.5), (3, 3), (0.5, 5), (5, 0.5), (4, 1)]  # dominated, or not below (4, 4)
    assert hypervolume(front + extra, (4, 4)) == pytest.approx(6.0)
    assert hypervolume([], (4, 4)) == hypervolume([(5, 5)], (4, 4)) == 0.0


def test_hypervolume_of_one_point_is_its_box_and_grows_with_a_better_point() -> None:
    assert hypervolume([(0.2, 4.0)], (1.0, 7.0)) == pytest.approx(0.8 * 3.0)
    assert hypervolume([(0.2, 4.0), (0.1, 5.0)], (1.0, 7.0)) == pytest.approx(
        0.8 * 3.0 + 0.1 * 2.0)


def test_hypervolume_refuses_points_of_another_dimension() -> None:
    with pytest.raises(ValueError, match="3-d|2-d"):
        hypervolume([(1, 2, 3), (2, 1, 3)], (4, 4))


def test_pareto_mask_of_a_hand_worked_set() -> None:
    # accuracy up, params down: (0.9, 100) and (0.8, 10) are the front; (0.85, 100) loses to
    # (0.9, 100); a duplicate of a front point is not dominated by it; (0.7, 50) loses to both
    values = np.array([[0.9, 100], [0.85, 100], [0.8, 10], [0.7, 50], [0.8, 10]])
    assert pareto_mask(values, ["maximize", "minimize"]).tolist() == [
        True, False, True, False, True]
    assert pareto_mask(np.zeros((0, 2)), ["maximize", "minimize"]).tolist() == []


def brute_force_mask(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Every pair compared: the definition, O(N^2)."""
    v = values * np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    no_worse = (v[:, None, :] <= v[None, :, :]).all(axis=2)
    better = (v[:, None, :] < v[None, :, :]).any(axis=2)
    return ~(no_worse & better).any(axis=0)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_pareto_mask_agrees_with_comparing_every_pair(dims: int) -> None:
    rng = np.random.default_rng(dims)
    directions = ["maximize", "minimize", "minimize"][:dims]
    for _ in range(20):
        # few distinct values, so ties and duplicates are common
        values = rng.integers(0, 6, size=(int(rng.integers(1, 60)), dims)).astype(float)
        assert pareto_mask(values, directions).tolist() == \
            brute_force_mask(values, directions).tolist()
