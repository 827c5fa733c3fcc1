"""How far a search's answers can be trusted: does its ranking survive a larger budget (rank
correlation between search and confirmation accuracy, with bootstrap intervals), how large is
seed noise (the noise floor), and which front members stay on the front once confirmed.

Rank correlations are computed as scipy's spearmanr and kendalltau (tau-b) define them, for all
bootstrap resamples at once (the tests check them against scipy); everything is plain data in,
typed results out; no Optuna, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel

# Two single runs whose accuracies differ by less than this many standard deviations of their
# difference (sqrt(2) x the seed noise) cannot be told apart at about 95 %.
Z95 = 1.96


class Correlation(BaseModel):
    """A rank correlation with its percentile bootstrap interval."""

    statistic: str  # spearman or kendall
    value: float
    low: float
    high: float
    n: int


class NoiseFloor(BaseModel):
    """Seed noise of validation accuracy: per architecture and pooled."""

    per_architecture: dict[str, float]  # key -> standard deviation over its seeds (ddof 1)
    pooled: float  # sqrt of the pooled variance (weighted by degrees of freedom)
    dof: int  # degrees of freedom behind the pooled figure (sum of seeds - 1)

    def indistinguishable(self, a: float, b: float) -> bool:
        """Whether two single-run accuracies differ by less than the noise can explain."""
        return abs(a - b) < Z95 * math.sqrt(2) * self.pooled


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (ties get average ranks, as scipy.stats.spearmanr)."""
    from scipy import stats  # here: a search's closing table imports this module (0.7 s)

    rx, ry = stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):  # all-tied rows have no correlation: nan
        return (rx * ry).sum(-1) / np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair (as scipy.stats.kendalltau), over all pairs i < j."""
    dx = np.sign(x[..., :, None] - x[..., None, :])
    dy = np.sign(y[..., :, None] - y[..., None, :])
    n = x.shape[-1]
    pairs = n * (n - 1) / 2
    score = (dx * dy).sum((-2, -1)) / 2
    tied_x = ((dx == 0).sum((-2, -1)) - n) / 2  # the diagonal is no pair
    tied_y = ((dy == 0).sum((-2, -1)) - n) / 2
    with np.errstate(all="ignore"):
        return score / np.sqrt((pairs - tied_x) * (pairs - tied_y))


STATISTICS = {"spearman": spearman_rows, "kendall": kendall_rows}


def rank_correlations(search: Sequence[float], confirm: Sequence[float], n_boot: int = 2000,
                      confidence: float = 0.95, seed: int = 0) -> dict[str, Correlation]:
    """Spearman's rho and Kendall's tau-b between paired accuracies, each with a percentile
    bootstrap interval over the pairs (resampled together; a resample whose values are all
    tied has no rank correlation and is left out, as scipy's bootstrap cannot do)."""
    x, y = np.asarray(search, dtype=float), np.asarray(confirm, dtype=float)
    if x.shape != y.shape or len(x) < 3:
        raise ValueError(f"need at least 3 paired values, got {len(x)} and {len(y)}")
    picks = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    out = {}
    for name, fn in STATISTICS.items():
        value = float(fn(x, y))
        # resamples in blocks: Kendall's pairwise signs take n^2 values a resample, so all
        # 2,000 resamples of 300 pairs at once would hold gigabytes
        rows = max(1, 1_000_000 // (len(x) * len(x)))
        draws = np.concatenate([fn(x[block], y[block])
                                for block in np.split(picks, range(rows, n_boot, rows))])
        draws = draws[np.isfinite(draws)]
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(draws, [tail, 100 - tail]) if len(draws) else (-1.0, 1.0)
        out[name] = Correlation(statistic=name, value=value, low=float(low), high=float(high),
                                n=len(x))
    return out


def noise_floor(accuracies: Mapping[str, Sequence[float]]) -> NoiseFloor:
    """Standard deviation over seeds for each architecture with two or more, and pooled."""
    per, num, dof = {}, 0.0, 0
    for key, values in accuracies.items():
        v = np.asarray(values, dtype=float)
        if len(v) < 2:
            continue
        per[key] = float(v.std(ddof=1))
        num += float(((v - v.mean()) ** 2).sum())
        dof += len(v) - 1
    if dof == 0:
        raise ValueError("the noise floor needs an architecture trained with two or more seeds")
    return NoiseFloor(per_architecture=per, pooled=math.sqrt(num / dof), dof=dof)


__all__ = ["Correlation", "NoiseFloor", "noise_floor", "rank_correlations"]
