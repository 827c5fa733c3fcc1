"""Questions asked of a study, on inputs whose answers are worked out by hand."""

from __future__ import annotations

import pytest

from nas.study import hypervolume


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
