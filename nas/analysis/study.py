"""A study's models as the rule tests and the RegNet fit read them (through nas.study).

The one place where nas.analysis meets Optuna: `nas analyze`, `nas refine`, `nas fit-regnet`
and `nas report` call these. Kept out of `nas.analysis`'s re-exports so that the statistics
import without Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import optuna
import pandas as pd
from optuna.trial import TrialState

from nas.analysis.compare import RuleEffects, rule_effects
from nas.analysis.models import SamplerCheck, enough_models, sampler_check, stage_lists
from nas.analysis.rules import Rule, builtin_rules
from nas.errors import UserError
from nas.study import StudySettings, StudyTrial, study_trials
from nas.study.queries import by_accuracy, unique_architectures

MODEL_COLUMNS = ("number", "family", "spec_hash", "spec", "error", "val_accuracy", "params",
                 "macs")
ANALYSIS_COSTS = ("params", "macs")


def model_row(t: StudyTrial) -> dict[str, Any]:
    """One evaluated trial as a row of MODEL_COLUMNS, its spec with per-stage lists."""
    r = t.record
    acc = float(r.val_accuracy or 0.0)  # evaluated trials have one
    return {"number": t.number, "family": r.family or "?", "spec_hash": r.spec_hash or "",
            "spec": stage_lists(r.spec or {}), "error": 1.0 - acc, "val_accuracy": acc,
            "params": math.nan if r.params is None else float(r.params),
            "macs": math.nan if r.macs is None else float(r.macs)}


def evaluated_trials(trials: Iterable[StudyTrial]) -> list[StudyTrial]:
    """The first evaluated trial of each architecture (`StudyTrial.evaluated`), by number."""
    return unique_architectures(t for t in trials if t.evaluated)


def study_models(trials: Iterable[StudyTrial]) -> pd.DataFrame:
    """Distinct architectures trained to the full budget, one row each (MODEL_COLUMNS)."""
    rows = [model_row(t) for t in evaluated_trials(trials)]
    return pd.DataFrame(rows, columns=list(MODEL_COLUMNS))


class StudyAnalysis(NamedTuple):
    """A study's rule tests: its sampler, the models compared and the effects."""

    study: str
    sampler: SamplerCheck
    models: pd.DataFrame
    effects: RuleEffects
    stopped: int  # trials stopped early: left out, so the EDFs describe the survivors

    def stopped_warning(self) -> str | None:
        """One line when early stopping left models out of the comparison."""
        if not self.stopped:
            return None
        return (f"{self.stopped} trials of study {self.study} were stopped early and are left "
                f"out, so the EDFs describe the models that survived; search with "
                f"--no-early-stop for a whole random population")


def check_cost(cost: str) -> str:
    """params or macs (latency depends on the machine a trial ran on)."""
    if cost not in ANALYSIS_COSTS:
        raise UserError(f"--cost {cost}: one of {', '.join(ANALYSIS_COSTS)}")
    return cost


def analyse_study(study: optuna.Study, cost: str = "params", rules: Sequence[Rule] = (),
                  trials: list[StudyTrial] | None = None, **options: Any) -> StudyAnalysis:
    """The built-in rules and `rules` tested on a study's evaluated models.

    Refuses (UserError) a study with no trained models, or too few for any rule; a user rule
    over a field no model has (RuleError). The sampler is reported, not judged: see
    `SamplerCheck.require`. `options` go to `rule_effects`.
    """
    name, cost = study.study_name, check_cost(cost)
    check = sampler_check(StudySettings.from_study(study), name)
    trials = study_trials(study) if trials is None else trials
    models = study_models(trials)
    enough_models(len(models), name)
    effects = rule_effects(models, builtin_rules() + list(rules), cost, **options)
    stopped = sum(t.state == TrialState.PRUNED for t in trials)
    return StudyAnalysis(name, check, models, effects, stopped)


def pick_trials(study: optuna.Study, numbers: Sequence[int], top: int | None,
                ) -> list[StudyTrial]:
    """Trials by number (in the order given), or the `top` evaluated ones by val accuracy."""
    trials = study_trials(study)
    if numbers and top is not None:
        raise UserError("give trial numbers or --top K, not both")
    if not numbers:
        k = 1 if top is None else top
        if k < 1:
            raise UserError(f"--top must be at least 1, got {k}")
        ranked = by_accuracy(evaluated_trials(trials))
        if not ranked:
            raise UserError(f"study {study.study_name} has no trained trials to fit")
        return ranked[:k]
    found = {t.number: t for t in trials}
    for n in numbers:
        if n not in found:
            raise UserError(f"study {study.study_name} has no trial {n} "
                            f"(trials 0..{max(found, default=-1)})")
        if not found[n].record.spec:
            raise UserError(f"trial {n} of study {study.study_name} records no spec")
    return [found[n] for n in numbers]


__all__ = ["ANALYSIS_COSTS", "MODEL_COLUMNS", "StudyAnalysis", "analyse_study", "check_cost",
           "evaluated_trials", "pick_trials", "study_models"]
