"""Multi-fidelity search: asynchronous successive halving over epochs, with MOASHA's rule.

Every trial is planned for `max_epochs` (its learning-rate schedule spans them all) and is
judged at geometric rungs: min_epochs, min_epochs x eta, ... below max_epochs. At a rung, the
trial's (accuracy at that epoch, costs) is ranked among the results every other trial of its
bracket recorded at the same rung (finished or still running): fronts of non-dominated sorting
first, then, within a front, an epsilon-net order (farthest point first in normalised objective
space, from the most accurate), as MOASHA does (Salinas et al. 2021; Schmucker et al. 2021; Syne
Tune's `MOASHA`). The trial trains on when its position is within the top 1/eta of them, else it
is stopped there (PRUNED, its reached fidelity recorded). This is the stopping variant of
asynchronous successive halving: no worker ever waits for a rung to fill. With `brackets` > 1
(Hyperband), trial n belongs to bracket n mod brackets, whose first rung is min_epochs x eta^b.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas.errors import UserError


@dataclass(frozen=True)
class Fidelity:
    """The epoch schedule of a multi-fidelity search."""

    min_epochs: int
    max_epochs: int
    eta: int = 3
    brackets: int = 1

    def check(self) -> None:
        """One line naming the option when the schedule cannot be used."""
        if self.min_epochs < 1:
            raise UserError(f"--min-epochs must be at least 1, got {self.min_epochs}")
        if self.min_epochs >= self.max_epochs:
            raise UserError(f"--min-epochs {self.min_epochs} must be below --max-epochs "
                            f"(--epochs) {self.max_epochs}: the rungs lie between them")
        if self.eta < 2:
            raise UserError(f"--eta must be at least 2 (each rung keeps 1/eta), got {self.eta}")
        if self.brackets < 1:
            raise UserError(f"--brackets must be at least 1, got {self.brackets}")
        last = self.min_epochs * self.eta ** (self.brackets - 1)
        if last >= self.max_epochs:
            raise UserError(f"--brackets {self.brackets}: bracket {self.brackets - 1} would "
                            f"start at {last} epochs, not below --max-epochs {self.max_epochs}")

    def bracket(self, number: int) -> int:
        """The bracket of trial `number`."""
        return number % self.brackets

    def rungs(self, bracket: int = 0) -> list[int]:
        """The epochs at which a trial of `bracket` is judged (all below max_epochs)."""
        out, rung = [], self.min_epochs * self.eta ** bracket
        while rung < self.max_epochs:
            out.append(int(rung))
            rung *= self.eta
        return out

    def describe(self) -> str:
        brackets = [f"{self.rungs(b)}" for b in range(self.brackets)]
        return (f"rungs at epochs {', '.join(brackets)} of {self.max_epochs}, each keeping "
                f"1/{self.eta}")


def front_ranks(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting of points (rows, every column minimised): 0 for the Pareto front,
    1 for the front of what is left, and so on."""
    n = len(points)
    ranks = np.full(n, -1)
    left = np.arange(n)
    level = 0
    while len(left):
        p = points[left]
        no_worse = (p[:, None, :] <= p[None, :, :]).all(axis=2)
        better = (p[:, None, :] < p[None, :, :]).any(axis=2)
        dominated = (no_worse & better).any(axis=0)
        ranks[left[~dominated]] = level
        left = left[dominated]
        level += 1
    return ranks


def selection_order(points: np.ndarray) -> list[int]:
    """Indices in MOASHA's order: front by front; within a front, farthest first (an
    epsilon-net in objective space normalised to [0, 1]), starting from the best first
    objective (accuracy)."""
    span = points.max(axis=0) - points.min(axis=0)
    scaled = (points - points.min(axis=0)) / np.where(span > 0, span, 1.0)
    ranks = front_ranks(points)
    order: list[int] = []
    for level in range(int(ranks.max()) + 1 if len(points) else 0):
        members = [int(i) for i in np.flatnonzero(ranks == level)]
        first = min(members, key=lambda i: (points[i, 0], i))
        chosen, rest = [first], [i for i in members if i != first]
        while rest:
            dist = [min(float(np.linalg.norm(scaled[i] - scaled[j])) for j in chosen)
                    for i in rest]
            chosen.append(rest.pop(int(np.argmax(dist))))
        order += chosen
    return order


def keeps_training(me: Sequence[float], peers: Sequence[Sequence[float]], eta: int) -> bool:
    """MOASHA's rule at a rung: `me` and `peers` are (accuracy, cost...) recorded there;
    True when `me` is within the top 1/eta of all of them in MOASHA's order (the first of
    them always is: alone at a rung, a trial trains on)."""
    if not peers:
        return True
    signs = np.array([-1.0] + [1.0] * (len(me) - 1))  # accuracy is maximised, costs minimised
    points = np.array([*peers, me], dtype=float) * signs
    points = np.where(np.isfinite(points), points, np.finfo(float).max)
    position = selection_order(points).index(len(points) - 1)
    return position * eta < len(points)  # among the first n/eta (the first always is)


def stop_reason(epoch: int, rung_size: int, eta: int) -> str:
    """The recorded reason of a trial stopped at a rung."""
    return (f"early_stopped: rung at epoch {epoch}: not in the top 1/{eta} of the "
            f"{rung_size} trials there (non-dominated sorting of accuracy and cost)")


__all__ = ["Fidelity", "front_ranks", "keeps_training", "selection_order", "stop_reason"]
