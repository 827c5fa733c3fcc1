"""Design spaces side by side: each space's normalised error EDF at matched cost, its mean error
with a bootstrap interval, and the shift between spaces with its interval.

All spaces are reweighted to one reference: log10-cost bins over the pooled costs of every
space, counting only the bins where every space has a model, each with mass 1/k (the uniform
complexity distribution of Radosavovic et al. 2019; see nas.analysis.edf). A resample draws each
space's models with replacement, independently, and keeps those bins; a bin that a space's
resample leaves empty drops out of that space's mean in that resample. A shift's interval is
taken over the resampled differences of the pair weighted jointly (bootstrap_ci's
resampled_difference): in each resample both means cover the bins both spaces still have. The
shift from space
a to space b is mean(b) - mean(a): negative when b's models err less at the same cost (the
paper's "the EDF improves").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from nas.analysis.edf import (
    DEFAULT_BINS,
    DEFAULT_BOOT,
    as_array,
    as_costs,
    bin_index,
    log_edges,
    resampled_difference,
    row_statistic,
    weighted_edf,
    weights_from_bins,
)

SUMMARY_COLUMNS = ("space", "models", "matched", "mean_error", "low", "high")
SHIFT_COLUMNS = ("from", "to", "shift", "low", "high", "verdict")


class SpaceComparison(NamedTuple):
    """summary: one row per space (models, those in shared bins, mean error and interval);
    shifts: one row per pair (shift = mean(to) - mean(from), interval, verdict: better when
    the interval lies below 0, worse above, no evidence across); edfs: space, error, fraction."""

    cost: str
    bins: int
    shared_bins: int
    summary: pd.DataFrame
    shifts: pd.DataFrame
    edfs: pd.DataFrame


def shift_verdict(low: float, high: float) -> str:
    """better / worse when the interval excludes 0 (errors: below 0 is better)."""
    if high < 0:
        return "better"
    if low > 0:
        return "worse"
    return "no evidence"


def row_means(errors: np.ndarray, index: np.ndarray, draws: np.ndarray, k: int) -> np.ndarray:
    """Mean error at matched cost of each row of drawn positions (one space)."""
    weights = weights_from_bins([index[draws]], k)[0]
    return row_statistic(errors[draws], weights, None)


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of the finite values (NaN, NaN when none)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan
    alpha = 1 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def compare_spaces(populations: Mapping[str, pd.DataFrame], cost: str = "params", *,
                   pairs: Sequence[tuple[str, str]] | None = None, bins: int = DEFAULT_BINS,
                   n_boot: int = DEFAULT_BOOT, confidence: float = 0.95, seed: int = 0,
                   ) -> SpaceComparison:
    """Compare spaces' models (columns error and `cost`); pairs default to consecutive spaces."""
    names = list(populations)
    errors = [as_array(populations[n]["error"]) for n in names]
    costs = [as_costs(populations[n][cost]) for n in names]
    edges = log_edges(costs, bins)
    k = len(edges) - 1
    index = [bin_index(c, edges) for c in costs]
    shared = np.logical_and.reduce([np.bincount(i[i >= 0], minlength=k) > 0 for i in index])
    index = [np.where(shared[np.maximum(i, 0)] & (i >= 0), i, -1) for i in index]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, e.size, size=(n_boot, e.size)) for e in errors]
    identity = [np.arange(e.size)[None, :] for e in errors]
    means = [row_means(e, i, d, k) for e, i, d in zip(errors, index, draws)]
    rows, edfs = [], []
    for n, e, i, ident, boot in zip(names, errors, index, identity, means):
        weights = weights_from_bins([i[None, :]], k)[0][0]
        low, high = interval(boot, confidence)
        rows.append({"space": n, "models": e.size, "matched": int((weights > 0).sum()),
                     "mean_error": float(row_means(e, i, ident, k)[0]), "low": low,
                     "high": high})
        edfs.append(weighted_edf(e, weights).assign(space=n))
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    shifts = []
    for a, b in pairs if pairs is not None else list(zip(names, names[1:])):
        ia, ib = names.index(a), names.index(b)
        # weighted jointly per resample, so both means of a row cover the same cost bins (a bin
        # one space's resample missed would otherwise drop out of that space's mean only)
        diff = resampled_difference([errors[ia], errors[ib]], [index[ia], index[ib]], k,
                                    [draws[ia], draws[ib]], None, "uniform")
        low, high = interval(diff, confidence)
        shift = float(summary.loc[ib, "mean_error"] - summary.loc[ia, "mean_error"])
        shifts.append({"from": a, "to": b, "shift": shift, "low": low, "high": high,
                       "verdict": shift_verdict(low, high)})
    edf_frame = pd.concat(edfs, ignore_index=True)[["space", "error", "fraction"]]
    return SpaceComparison(cost, k, int(shared.sum()), summary,
                           pd.DataFrame(shifts, columns=list(SHIFT_COLUMNS)), edf_frame)


__all__ = ["SHIFT_COLUMNS", "SUMMARY_COLUMNS", "SpaceComparison", "compare_spaces"]
