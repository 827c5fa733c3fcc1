"""Rule tests: for each design rule, the error EDFs of the models that satisfy and violate it,
compared at matched cost, with a bootstrap interval and a verdict.

Verdicts: `helps` when the interval of the effect lies above 0, `hurts` when below, `no evidence`
when it covers 0; `too few models` when a side has fewer than `min_models` models, or fewer that
share a cost bin with the other side; `not testable` when the rule does not vary in the study (no
model has its fields, every model has them as a single value so it holds by construction, or every
model satisfies it, or none does). Each rule is one test at `confidence`; with several rules a
`helps` or `hurts` can come by chance (at 95%, about one rule in twenty with no real effect).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from nas.analysis.edf import (
    DEFAULT_BINS,
    DEFAULT_BOOT,
    Reference,
    bootstrap_ci,
    edf_statistic,
    normalized_weights,
    weighted_edf,
)
from nas.analysis.rules import PER_STAGE_ALIASES, Rule, builtin_rules, check_fields
from nas.errors import UserError

# Fewer than 8 models a side: a percentile bootstrap of a mean takes few distinct values and its
# interval is too narrow by about sqrt((n-1)/n) and more with unequal weights, and 5 cost bins
# can hold only one or two models each; 8 is also a fifth of the smallest study (40) analysed.
MIN_MODELS = 8
EFFECT_COLUMNS = ("rule", "description", "fields", "verdict", "effect", "low", "high",
                  "stat_satisfied", "stat_violated", "n_satisfied", "n_violated",
                  "matched_satisfied", "matched_violated", "n_trivial", "n_missing", "reason")
EDF_COLUMNS = ("rule", "side", "error", "fraction")
TESTED = ("helps", "hurts", "no evidence")
SIDES = ("satisfies", "violates")


class RuleEffects(NamedTuple):
    """The rule table and the normalised EDFs behind it.

    table (one row per rule, ranked: tested rules by effect, largest first, then too few models,
    then not testable), columns EFFECT_COLUMNS:
      rule, description, fields (comma-joined spec fields the rule reads);
      verdict: helps / hurts / no evidence / too few models / not testable;
      effect = stat_violated - stat_satisfied (positive: the rule's models have lower error), with
      low, high its percentile bootstrap interval at `confidence`; stat_* the chosen statistic of
      each side's normalised error EDF (NaN unless tested);
      n_satisfied, n_violated: models on each side; matched_*: those with weight > 0 (in a cost
      bin both sides share); n_trivial: models whose spec form decides the rule (a single value
      for a per-stage field); n_missing: models lacking a field the rule reads (both left out);
      reason: why a rule was not tested, else empty.
    edfs (tested rules only), columns EDF_COLUMNS: rule, side (satisfies / violates), error,
      fraction (normalised weighted EDF).
    """

    table: pd.DataFrame
    edfs: pd.DataFrame
    cost: str
    statistic: str
    confidence: float
    n_boot: int
    seed: int
    n_models: int  # rows with a finite error and a positive cost


def usable_models(models: pd.DataFrame, cost: str) -> pd.DataFrame:
    """Rows with a finite error and a finite positive cost."""
    for column in ("spec", "error"):
        if column not in models.columns:
            raise ValueError(f"models need a {column!r} column")
    if cost not in models.columns:
        raise UserError(f"no cost column {cost!r} among the models' columns "
                        f"({', '.join(map(str, models.columns))})")
    error = pd.to_numeric(models["error"], errors="coerce")
    price = pd.to_numeric(models[cost], errors="coerce")
    keep = np.isfinite(error) & np.isfinite(price) & (price > 0)
    return models[keep].reset_index(drop=True)


def untestable_reason(rule: Rule, counts: dict[str, int]) -> str | None:
    """Why a rule does not vary among the models, or None when it does."""
    fields = ", ".join(f"{f} / {PER_STAGE_ALIASES[f]}" if f in PER_STAGE_ALIASES else f
                       for f in rule.fields)
    sat, vio = counts["satisfied"], counts["violated"]
    if sat + vio == 0:
        if counts["trivial"]:
            return (f"every model with {fields} has it as a single value (or one stage), "
                    f"so the rule holds by construction")
        return f"no model has {fields}"
    if vio == 0:
        return f"every model that can break it satisfies it ({sat})"
    if sat == 0:
        return f"no model satisfies it ({vio} violate it)"
    return None


def too_few_reason(counts: dict[str, int], matched: dict[str, int], cost: str,
                   min_models: int) -> str | None:
    """Why a side is too small to compare, or None."""
    for status, verb in (("satisfied", "satisfy"), ("violated", "violate")):
        if counts[status] < min_models:
            n = counts[status]
            one = {"satisfy": "satisfies", "violate": "violates"}[verb]
            who = f"{n} model {one}" if n == 1 else f"{n} models {verb}"
            return f"only {who} it (at least {min_models} a side)"
    for status, verb in (("satisfied", "satisfy"), ("violated", "violate")):
        if matched[status] < min_models:
            return (f"only {matched[status]} of the {counts[status]} models that {verb} it share "
                    f"a {cost} bin with the other side (at least {min_models} a side)")
    return None


def rule_seed(seed: int, name: str) -> list[int]:
    """A per-rule seed: adding or reordering rules leaves each rule's interval unchanged."""
    return [seed, zlib.crc32(name.encode())]


def verdict(low: float, high: float) -> str:
    """helps / hurts when the interval excludes 0, else no evidence."""
    if low > 0:
        return "helps"
    if high < 0:
        return "hurts"
    return "no evidence"


def compare_rule(rule: Rule, specs: Sequence[Any], errors: np.ndarray, costs: np.ndarray,
                 options: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """One rule's table row and, when tested, its two normalised EDFs."""
    status = np.array([rule.status(s) for s in specs])
    counts = {s: int((status == s).sum()) for s in ("satisfied", "violated", "trivial", "missing")}
    row: dict[str, Any] = {
        "rule": rule.name, "description": rule.description, "fields": ", ".join(rule.fields),
        "effect": np.nan, "low": np.nan, "high": np.nan, "stat_satisfied": np.nan,
        "stat_violated": np.nan, "n_satisfied": counts["satisfied"],
        "n_violated": counts["violated"], "matched_satisfied": 0, "matched_violated": 0,
        "n_trivial": counts["trivial"], "n_missing": counts["missing"], "reason": "",
    }
    reason = untestable_reason(rule, counts)
    if reason is not None:
        return {**row, "verdict": "not testable", "reason": reason}, None
    sides = [status == "satisfied", status == "violated"]
    weights = normalized_weights(costs[sides[0]], costs[sides[1]], bins=options["bins"],
                                 reference=options["reference"])
    matched = {"satisfied": int((weights[0] > 0).sum()), "violated": int((weights[1] > 0).sum())}
    row.update(matched_satisfied=matched["satisfied"], matched_violated=matched["violated"])
    reason = too_few_reason(counts, matched, options["cost"], options["min_models"])
    if reason is not None:
        return {**row, "verdict": "too few models", "reason": reason}, None
    stats = [edf_statistic(errors[m], w, options["statistic"]) for m, w in zip(sides, weights)]
    diff = bootstrap_ci(errors[sides[0]], costs[sides[0]], errors[sides[1]], costs[sides[1]],
                        statistic=options["statistic"], bins=options["bins"],
                        reference=options["reference"], n_boot=options["n_boot"],
                        confidence=options["confidence"],
                        seed=rule_seed(options["seed"], rule.name))
    row.update(effect=diff.estimate, low=diff.low, high=diff.high, stat_satisfied=stats[0],
               stat_violated=stats[1], verdict=verdict(diff.low, diff.high))
    edfs = [weighted_edf(errors[m], w).assign(rule=rule.name, side=side)
            for m, w, side in zip(sides, weights, SIDES)]
    return row, pd.concat(edfs, ignore_index=True)


def rank(table: pd.DataFrame) -> pd.DataFrame:
    """Tested rules by effect (largest first), then too few models, then not testable."""
    order = {"too few models": 1, "not testable": 2}
    group = table["verdict"].map(lambda v: order.get(v, 0))
    keyed = table.assign(_group=group, _effect=-table["effect"].fillna(0.0))
    keyed = keyed.sort_values(["_group", "_effect", "rule"], kind="stable")
    return keyed.drop(columns=["_group", "_effect"]).reset_index(drop=True)


def rule_effects(models: pd.DataFrame, rules: Sequence[Rule] | None = None,
                 cost_column: str = "params", *, statistic: str = "mean",
                 bins: int | Sequence[float] = DEFAULT_BINS, reference: Reference = "uniform",
                 min_models: int = MIN_MODELS, n_boot: int = DEFAULT_BOOT,
                 confidence: float = 0.95, seed: int = 0) -> RuleEffects:
    """Test each rule (default: the built-ins) on models with columns spec, error, cost_column.

    Rows without a finite error or a positive cost are left out. A user rule over a field no model
    has raises RuleError; a built-in one is reported not testable. See RuleEffects for the frames.
    """
    rules = builtin_rules() if rules is None else list(rules)
    points = usable_models(models, cost_column)
    specs = points["spec"].tolist()
    check_fields(rules, specs)
    errors = points["error"].to_numpy(dtype=float)
    costs = points[cost_column].to_numpy(dtype=float)
    options = {"statistic": statistic, "bins": bins, "reference": reference, "cost": cost_column,
               "min_models": min_models, "n_boot": n_boot, "confidence": confidence,
               "seed": seed}
    rows, edfs = [], []
    for rule in rules:
        row, edf = compare_rule(rule, specs, errors, costs, options)
        rows.append(row)
        if edf is not None:
            edfs.append(edf)
    table = rank(pd.DataFrame(rows, columns=list(EFFECT_COLUMNS)))
    edf_frame = (pd.concat(edfs, ignore_index=True)[list(EDF_COLUMNS)] if edfs
                 else pd.DataFrame({c: pd.Series(dtype=float if c in ("error", "fraction")
                                                 else str) for c in EDF_COLUMNS}))
    return RuleEffects(table, edf_frame, cost_column, statistic, confidence, n_boot, seed,
                       len(points))
