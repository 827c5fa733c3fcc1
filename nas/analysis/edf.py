"""Error EDFs at matched cost, their summaries, and bootstrap intervals for a difference of two.

The normalisation is the "normalized error EDF" of Radosavovic et al. 2019, "On Network Design
Spaces for Visual Recognition" (Sec. 3): models are reweighted so that the groups compared have
the same complexity distribution, since a group of bigger models would otherwise look better for
its size alone. The paper bins the complexity range into k bins and gives each of the m_j models of
a set that fall in bin j the weight 1/(k m_j), so that every set's complexity distribution is
uniform over the bins. What `normalized_weights` implements, precisely:

1. Bins. The pooled costs of all groups span [lo, hi] in log10; that span is cut into `bins`
   equal-width bins (a cost equal to hi falls in the last one). Explicit edges, in cost units and
   increasing, may be given instead; a cost outside them gets weight 0. `bins=1` is no matching
   at all: every group keeps equal weights (the plain EDF).
2. Shared bins. A bin counts only when every group has a model in it; models in a bin that another
   group lacks get weight 0, since nothing in that group can be compared with them at that cost.
3. Reference mass r_j over the k shared bins: "uniform", r_j = 1/k (the paper's choice), or
   "pooled", r_j proportional to all groups' models in bin j (lower variance when the models
   crowd in a few bins).
4. Weight. A model of group g in shared bin j weighs r_j / m_gj, where m_gj counts group g's models
   in bin j: each group's weights sum to 1 and put the same mass r_j in every bin.

pycls's sweep analysis (`pycls/sweep/analysis.py`, `plotting.py`) draws plain EDFs
(`np.cumsum(np.ones(k) / k)`) and controls complexity by sampling within a narrow flop range
(`CONSTRAINTS.CX`); the reweighting above therefore follows the paper's text.

Summaries of a (weighted) EDF F: the weighted mean error, which is the area over the EDF, since
for errors inside [low, high] the area under F on that range is high - mean; and the error at a
quantile q, the smallest error e with F(e) >= q (the inverse EDF, no interpolation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

Reference = Literal["uniform", "pooled"]
ArrayLike = np.ndarray | pd.Series | Sequence[float]

DEFAULT_BINS = 5
DEFAULT_BOOT = 2000
QUANTILE = re.compile(r"q(\d{1,2}(?:\.\d+)?)")
BATCH_CELLS = 2_000_000  # resamples x models per vectorised batch: ~16 MB per float array


def as_array(values: ArrayLike) -> np.ndarray:
    """A 1-D float array from an array, a Series or a list."""
    return np.asarray(values, dtype=float).reshape(-1)


def as_costs(values: ArrayLike) -> np.ndarray:
    """Costs as a 1-D float array, refusing any that is not finite and positive."""
    costs = as_array(values)
    if np.any(~np.isfinite(costs)) or np.any(costs <= 0):
        raise ValueError("costs must be finite and positive")
    return costs


def log_edges(costs: Sequence[np.ndarray], bins: int | ArrayLike) -> np.ndarray:
    """Bin edges in log10 cost: `bins` equal widths over the pooled range, or the given edges."""
    if np.ndim(bins) == 0:
        if int(bins) < 1:  # type: ignore[arg-type]
            raise ValueError(f"bins must be at least 1, got {bins}")
        pooled = np.log10(np.concatenate(costs))
        lo, hi = (float(pooled.min()), float(pooled.max())) if pooled.size else (0.0, 0.0)
        return np.linspace(lo, hi, int(bins) + 1)  # type: ignore[arg-type]
    edges = np.log10(as_array(bins))  # type: ignore[arg-type]
    if edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("explicit bin edges must be at least two increasing costs")
    return edges


def bin_index(costs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each cost under log10 `edges`; -1 outside them; the top edge is in the last."""
    logc = np.log10(costs)
    last = len(edges) - 2
    index = np.minimum(np.searchsorted(edges, logc, side="right") - 1, last)
    index[(logc < edges[0]) | (logc > edges[-1])] = -1
    return index


def bin_counts(index: np.ndarray, k: int) -> np.ndarray:
    """Models per bin for each row of bin indices (rows x models) -> rows x k."""
    rows = index.shape[0]
    flat = (index + k * np.arange(rows)[:, None])[index >= 0]
    return np.bincount(flat, minlength=rows * k).reshape(rows, k)


def weights_from_bins(indices: Sequence[np.ndarray], k: int,
                      reference: Reference = "uniform") -> list[np.ndarray]:
    """Normalised weights for each group, row by row (rows x models bin indices -> weights)."""
    counts = [bin_counts(index, k) for index in indices]
    shared = np.logical_and.reduce([c > 0 for c in counts])
    if reference == "uniform":
        mass = shared.astype(float)
    elif reference == "pooled":
        mass = np.sum(counts, axis=0) * shared
    else:
        raise ValueError(f"reference must be 'uniform' or 'pooled', got {reference!r}")
    total = mass.sum(axis=1, keepdims=True)
    mass = np.divide(mass, total, out=np.zeros_like(mass, dtype=float), where=total > 0)
    out = []
    for index, count in zip(indices, counts):
        per_model = np.divide(mass, count, out=np.zeros_like(mass), where=count > 0)
        weight = np.take_along_axis(per_model, np.maximum(index, 0), axis=1)
        out.append(np.where(index >= 0, weight, 0.0))
    return out


def normalized_weights(*costs: ArrayLike, bins: int | ArrayLike = DEFAULT_BINS,
                       reference: Reference = "uniform") -> list[np.ndarray]:
    """Per-model weights giving every group the same binned log-cost distribution (module doc)."""
    arrays = [as_costs(c) for c in costs]
    edges = log_edges(arrays, bins)
    indices = [bin_index(c, edges)[None, :] for c in arrays]
    return [w[0] for w in weights_from_bins(indices, len(edges) - 1, reference)]


def weighted_edf(errors: ArrayLike, weights: ArrayLike | None = None) -> pd.DataFrame:
    """EDF of errors under weights: columns error, fraction (weight of errors <= error).

    Models of weight 0 are left out; with equal weights this is the plain EDF.
    """
    e = as_array(errors)
    w = np.ones_like(e) if weights is None else as_array(weights)
    keep = w > 0
    e, w = e[keep], w[keep]
    order = np.argsort(e, kind="stable")
    fraction = np.cumsum(w[order]) / w.sum() if w.size else np.empty(0)
    return pd.DataFrame({"error": e[order], "fraction": fraction})


def parse_statistic(statistic: str) -> float | None:
    """None for "mean", else the quantile q of a "qNN" statistic (e.g. "q25" -> 0.25)."""
    if statistic == "mean":
        return None
    match = QUANTILE.fullmatch(statistic)
    if match is None or not 0 < float(match.group(1)) < 100:
        raise ValueError(f"statistic must be 'mean' or 'qNN' with 0 < NN < 100, got {statistic!r}")
    return float(match.group(1)) / 100


def row_statistic(errors: np.ndarray, weights: np.ndarray, q: float | None) -> np.ndarray:
    """The statistic of each row (rows x models): weighted mean, or the inverse EDF at q."""
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if q is None:
            out = (errors * weights).sum(axis=1) / total
        else:
            order = np.argsort(errors, axis=1, kind="stable")
            sorted_errors = np.take_along_axis(errors, order, axis=1)
            cumulative = np.cumsum(np.take_along_axis(weights, order, axis=1), axis=1)
            first = (cumulative < (q - 1e-12) * total[:, None]).sum(axis=1)
            first = np.minimum(first, errors.shape[1] - 1)
            out = np.take_along_axis(sorted_errors, first[:, None], axis=1)[:, 0]
    return np.where(total > 0, out, np.nan)


def edf_statistic(errors: ArrayLike, weights: ArrayLike | None = None,
                  statistic: str = "mean") -> float:
    """One summary of a weighted error EDF: "mean" error, or "qNN" the error at quantile NN%."""
    e = as_array(errors)
    w = np.ones_like(e) if weights is None else as_array(weights)
    return float(row_statistic(e[None, :], w[None, :], parse_statistic(statistic))[0])


def weighted_mean(errors: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Weighted mean error (NaN when every weight is 0)."""
    return edf_statistic(errors, weights, "mean")


def weighted_quantile(errors: ArrayLike, weights: ArrayLike | None, q: float) -> float:
    """The smallest error e whose weighted EDF reaches q: F(e) >= q."""
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    e = as_array(errors)
    w = np.ones_like(e) if weights is None else as_array(weights)
    return float(row_statistic(e[None, :], w[None, :], q)[0])


def edf_area(errors: ArrayLike, weights: ArrayLike | None, low: float, high: float) -> float:
    """Area under the weighted EDF over [low, high]: the integral of F(e) de."""
    edf = weighted_edf(errors, weights)
    inside = np.clip(edf["error"].to_numpy(), low, high)
    steps = np.diff(np.concatenate([[0.0], edf["fraction"].to_numpy()]))
    return float(np.sum(steps * (high - inside)))


class Difference(NamedTuple):
    """stat(b) - stat(a) under normalised weights, with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    resamples: int  # resamples where both groups kept a shared cost bin (the interval's basis)


def resampled_difference(errors: Sequence[np.ndarray], index: Sequence[np.ndarray], k: int,
                         draws: Sequence[np.ndarray], q: float | None,
                         reference: Reference) -> np.ndarray:
    """stat(b) - stat(a) for rows of drawn model positions, weights renormalised per row."""
    bins = [i[d] for i, d in zip(index, draws)]
    weights = weights_from_bins(bins, k, reference)
    stats = [row_statistic(e[d], w, q) for e, d, w in zip(errors, draws, weights)]
    return stats[1] - stats[0]


def bootstrap_ci(errors_a: ArrayLike, cost_a: ArrayLike, errors_b: ArrayLike, cost_b: ArrayLike,
                 *, statistic: str = "mean", bins: int | ArrayLike = DEFAULT_BINS,
                 reference: Reference = "uniform", n_boot: int = DEFAULT_BOOT,
                 confidence: float = 0.95, seed: int | Sequence[int] = 0) -> Difference:
    """Percentile bootstrap interval of stat(b) - stat(a) at matched cost.

    Each resample draws models with replacement within each group, keeps the bin edges of the
    full data and renormalises the weights (`normalized_weights`), so the interval carries the
    uncertainty of the bin counts too. A resample that leaves the groups no shared bin has no
    statistic and is skipped (`resamples` counts the rest); scipy.stats.bootstrap would instead
    return NaN for the whole interval, which is why this is a seeded numpy loop. Deterministic for
    a given seed. For errors, a positive difference means group a has the lower error.
    """
    errors = [as_array(errors_a), as_array(errors_b)]
    costs = [as_costs(cost_a), as_costs(cost_b)]
    if any(e.size != c.size for e, c in zip(errors, costs)):
        raise ValueError("each group needs one cost per error")
    if any(e.size == 0 for e in errors):
        raise ValueError("each group needs at least one model")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    q = parse_statistic(statistic)
    edges = log_edges(costs, bins)
    k = len(edges) - 1
    index = [bin_index(c, edges) for c in costs]
    identity = [np.arange(e.size)[None, :] for e in errors]
    estimate = float(resampled_difference(errors, index, k, identity, q, reference)[0])
    rng = np.random.default_rng(seed)
    per_batch = max(1, BATCH_CELLS // max(1, sum(e.size for e in errors)))
    found = []
    for start in range(0, n_boot, per_batch):
        rows = min(per_batch, n_boot - start)
        draws = [rng.integers(0, e.size, size=(rows, e.size)) for e in errors]
        found.append(resampled_difference(errors, index, k, draws, q, reference))
    values = np.concatenate(found) if found else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Difference(estimate, np.nan, np.nan, 0)
    alpha = 1 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return Difference(estimate, float(low), float(high), int(values.size))
