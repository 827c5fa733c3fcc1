"""Do a study's zero-cost proxies rank its architectures better than their parameter count?

For each proxy recorded on the study's trials (nas.proxies, before training) and for the params
and MACs baselines: Spearman's rho with trained validation accuracy over the evaluated trials,
a percentile bootstrap interval, and a paired bootstrap of rho(proxy) - rho(params) over the
same resamples. Correlations are signed, as Abdelfattah et al. (2021) and White et al. (2022)
report them: every score is oriented so that higher should mean more accurate (as a search
that prefers the highest score uses it), so a negative rho is a proxy that misleads. A proxy
beats params only when the interval of its difference lies above 0.

Statistics take plain arrays (`proxy_correlations`); `analyse_proxies` reads a study through
nas.study. No torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import optuna
from pydantic import BaseModel

from nas.analysis.study import evaluated_trials
from nas.analysis.trust import spearman_rows
from nas.errors import UserError
from nas.study import FINISHED, StudyTrial, study_trials
from nas.study.queries import unique_architectures

BASELINE = "params"
MIN_TRIALS = 8  # below this a rank correlation's interval spans most of [-1, 1]


class ProxyCorrelation(BaseModel):
    """One proxy's Spearman rho with accuracy, its interval, and how it compares to params."""

    proxy: str
    n: int  # trials with a finite score
    rho: float
    low: float
    high: float
    versus_params: float | None = None  # rho - rho(params) on the same trials
    versus_low: float | None = None
    versus_high: float | None = None
    verdict: str  # baseline, beats params, worse than params, not distinguishable from params
    median_seconds: float | None = None  # time to compute it per trial


class ProxyReport(BaseModel):
    """`nas proxies` of one study."""

    study: str
    epoch: int | None  # accuracy after this epoch; None: final accuracy at the full budget
    trials: int  # trials correlated: those below that recorded proxies
    evaluated: int  # trials with an accuracy to correlate with, with or without proxies
    confidence: float
    n_boot: int
    seed: int
    rows: list[ProxyCorrelation]


def percentile_interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of the finite draws (resamples whose values all tie give NaN
    and are left out, as nas.analysis.trust does)."""
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def verdict(low: float, high: float) -> str:
    """What the interval of rho(proxy) - rho(params) says."""
    if low > 0:
        return "beats params"
    if high < 0:
        return "worse than params"
    return "not distinguishable from params"


def correlate(name: str, score: np.ndarray, base: np.ndarray, accuracy: np.ndarray,
              n_boot: int, confidence: float, seed: int) -> ProxyCorrelation:
    """Rho of `score` with accuracy and its difference to the baseline's rho, over the trials
    where both are known (NaN: missing), each from the same resamples of those trials."""
    known = np.isfinite(score) & np.isfinite(base)
    x, b, acc = score[known], base[known], accuracy[known]
    n = len(x)
    if n < 3:
        return ProxyCorrelation(proxy=name, n=n, rho=math.nan, low=math.nan, high=math.nan,
                                verdict="too few trials")
    picks = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    rho, draws = float(spearman_rows(x, acc)), spearman_rows(x[picks], acc[picks])
    low, high = percentile_interval(draws, confidence)
    if name == BASELINE:
        return ProxyCorrelation(proxy=name, n=n, rho=rho, low=low, high=high, verdict="baseline")
    difference = draws - spearman_rows(b[picks], acc[picks])
    v_low, v_high = percentile_interval(difference, confidence)
    return ProxyCorrelation(proxy=name, n=n, rho=rho, low=low, high=high,
                            versus_params=rho - float(spearman_rows(b, acc)),
                            versus_low=v_low, versus_high=v_high, verdict=verdict(v_low, v_high))


def proxy_correlations(scores: Mapping[str, Sequence[float]], accuracy: Sequence[float],
                       n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
                       ) -> list[ProxyCorrelation]:
    """Each score's rho with `accuracy` (one value per trial; NaN where a score is missing),
    the params baseline first. Where every score is known, every score is resampled alike."""
    if BASELINE not in scores:
        raise ValueError(f"the scores need the {BASELINE} baseline")
    acc = np.asarray(accuracy, dtype=float)
    base = np.asarray(scores[BASELINE], dtype=float)
    order = [BASELINE, *(k for k in scores if k != BASELINE)]
    return [correlate(name, np.asarray(scores[name], dtype=float), base, acc, n_boot,
                      confidence, seed) for name in order]


def trial_scores(trials: Sequence[StudyTrial]) -> dict[str, list[float]]:
    """Per trial: params and MACs (the record's), then each recorded proxy (NaN if absent)."""
    names = sorted({k for t in trials for k in t.record.proxies or {}} - {"params", "macs"})
    out: dict[str, list[float]] = {"params": [], "macs": []}
    for t in trials:
        proxies = t.record.proxies or {}
        out["params"].append(math.nan if t.record.params is None else float(t.record.params))
        out["macs"].append(math.nan if t.record.macs is None else float(t.record.macs))
        for name in names:
            out.setdefault(name, []).append(float(proxies.get(name, math.nan)))
    return out


def median_seconds(trials: Sequence[StudyTrial], name: str) -> float | None:
    seconds = [t.record.proxy_seconds[name] for t in trials
               if t.record.proxy_seconds and name in t.record.proxy_seconds]
    return float(np.median(seconds)) if seconds else None


def accuracy_at(t: StudyTrial, epoch: int) -> float | None:
    """Validation accuracy after `epoch` (its curve), if the trial reached it."""
    curve = t.record.curve or []
    return curve[epoch - 1] if len(curve) >= epoch else None


def trials_at(trials: Sequence[StudyTrial], epoch: int | None,
              ) -> list[tuple[StudyTrial, float]]:
    """(trial, accuracy) to correlate with: without `epoch`, the evaluated trials (trained to
    the full budget here, one per architecture) and their final accuracy; with it, every
    finished trial that trained its own model to that epoch (stopped early after it or not),
    one per architecture, and its accuracy then."""
    if epoch is None:
        return [(t, float(t.record.val_accuracy)) for t in evaluated_trials(trials)]  # type: ignore[arg-type]
    reached = [t for t in trials if t.state in FINISHED and t.trained and not t.reused
               and t.feasible and accuracy_at(t, epoch) is not None]
    return [(t, float(accuracy_at(t, epoch))) for t in unique_architectures(reached)]  # type: ignore[arg-type]


def analyse_proxies(study: optuna.Study, epoch: int | None = None,
                    where: Callable[[StudyTrial], bool] | None = None, n_boot: int = 2000,
                    confidence: float = 0.95, seed: int = 0) -> ProxyReport:
    """The proxies of a study's trials against their validation accuracy (`trials_at`:
    final, or after `epoch`; optionally only the trials `where` keeps). Refuses a study
    without proxies or with fewer than MIN_TRIALS such trials."""
    name = study.study_name
    pairs = [(t, a) for t, a in trials_at(study_trials(study), epoch) if where is None or where(t)]
    which = "evaluated trials" if epoch is None else f"trials that reached epoch {epoch}"
    scored = [(t, a) for t, a in pairs if t.record.proxies]
    if not pairs:
        raise UserError(f"study {name} has no {which} (trained to the full budget here, not "
                        f"reused)" if epoch is None else f"study {name}: no trial reached epoch "
                        f"{epoch}")
    if not scored:
        raise UserError(f"study {name}: none of its {len(pairs)} {which} records zero-cost "
                        f"proxies (a search computes them before training each trial)")
    if len(scored) < MIN_TRIALS:
        raise UserError(f"study {name}: {len(scored)} {which} with proxies; at least "
                        f"{MIN_TRIALS} are needed for a rank correlation")
    chosen = [t for t, _ in scored]
    rows = proxy_correlations(trial_scores(chosen), [a for _, a in scored], n_boot, confidence,
                              seed)
    rows = [r.model_copy(update={"median_seconds": median_seconds(chosen, r.proxy)})
            for r in rows]
    return ProxyReport(study=name, epoch=epoch, trials=len(scored), evaluated=len(pairs),
                       confidence=confidence, n_boot=n_boot, seed=seed, rows=rows)


__all__ = ["BASELINE", "MIN_TRIALS", "ProxyCorrelation", "ProxyReport", "analyse_proxies",
           "proxy_correlations", "trial_scores", "trials_at"]
