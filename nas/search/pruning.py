"""Early stopping for multi-objective studies, where Optuna's Trial.report is not available.

Cost is known before training, so a trial is compared at epoch k only with trials of similar
or lower cost: if its validation accuracy there is below the top 1/eta of theirs, a trial that
is at least as expensive and already less accurate is unlikely to reach the Pareto front, and
it is stopped (successive halving restricted to cheaper-or-equal peers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    """Another trial: its cost and its validation accuracy after each finished epoch."""

    cost: float
    curve: Sequence[float | None]  # None: an epoch not reported (a resumed run's first ones)


@dataclass(frozen=True)
class CostAwareHalving:
    """Stop when accuracy at epoch k is below the (1 - 1/eta) quantile of comparable peers."""

    eta: float = 3.0
    min_peers: int = 4
    cost_slack: float = 0.1

    def decide(self, epoch: int, accuracy: float, cost: float, peers: Sequence[Peer]) -> str | None:
        """A reason to stop now, or None to carry on."""
        limit = cost * (1 + self.cost_slack)
        scores = sorted(
            score for p in peers if p.cost <= limit and len(p.curve) >= epoch
            and (score := p.curve[epoch - 1]) is not None
        )
        if len(scores) < self.min_peers:
            return None
        threshold = quantile(scores, 1 - 1 / self.eta)
        if accuracy >= threshold:
            return None
        return (f"early_stopped: epoch {epoch} val accuracy {accuracy:.4f} < {threshold:.4f}, "
                f"the top 1/{self.eta:g} of {len(scores)} trials of similar or lower cost")


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    pos = q * (len(sorted_values) - 1)
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)
