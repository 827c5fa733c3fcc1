"""What a confirmation study says about its search: per architecture the search accuracy and
the confirmation accuracies over seeds; the rank agreement between the two budgets, the seed
noise floor, which front members stay on the front, and the confirmed best."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from pydantic import BaseModel

from nas.analysis.trust import Correlation, NoiseFloor, noise_floor, rank_correlations
from nas.study import StudySettings, StudyTrial, study_trials
from nas.study.queries import pareto_mask
from nas.study.record import SCORES

MIN_FOR_RANKS = 3


class Architecture(BaseModel):
    """One retrained architecture (by its search trial)."""

    trial: int
    group: str  # front or control
    search_accuracy: float
    confirm_accuracies: list[float]
    mean: float | None
    std: float | None  # over its seeds (ddof 1), when two or more
    costs: dict[str, float]  # the search's cost objectives
    on_confirmed_front: bool = False


class ConfirmSummary(BaseModel):
    """The linked study's findings (stored on it, printed by `nas confirm`)."""

    study: str
    confirm_study: str
    budget: dict[str, Any]
    seeds: list[int]
    runs_done: int
    runs_total: int
    architectures: list[Architecture]
    spearman: Correlation | None
    kendall: Correlation | None
    noise_std: float | None  # pooled seed standard deviation of validation accuracy
    noise_dof: int
    front_kept: list[int]  # search front members on the confirmed front
    front_dropped: list[int]
    confirmed_front: list[int]
    best: Architecture | None
    note: str = ""

    @property
    def noise(self) -> NoiseFloor | None:
        if self.noise_std is None:
            return None
        return NoiseFloor(per_architecture={}, pooled=self.noise_std, dof=self.noise_dof)


def architectures(search: list[StudyTrial], runs: list[StudyTrial],
                  costs: list[str]) -> list[Architecture]:
    """Per source trial: its search accuracy and the accuracies of its finished runs."""
    by_number = {t.number: t for t in search}
    found: dict[int, list[float]] = {}
    groups: dict[int, str] = {}
    for run in runs:
        r = run.record
        if r.source_trial is None or r.source_trial not in by_number:
            continue
        groups[r.source_trial] = r.group or "control"
        if run.state == TrialState.COMPLETE and r.val_accuracy is not None:
            found.setdefault(r.source_trial, []).append(r.val_accuracy)
    out = []
    for number, group in sorted(groups.items()):
        source = by_number[number].record
        accs = found.get(number, [])
        out.append(Architecture(
            trial=number, group=group, search_accuracy=source.val_accuracy or math.nan,
            confirm_accuracies=accs, mean=float(np.mean(accs)) if accs else None,
            std=float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
            costs={c: float(source.objective(c) or 0.0) for c in costs}))
    return out


def mark_front(archs: list[Architecture], costs: list[str]) -> list[int]:
    """Marks (and returns) the confirmed front: mean accuracy against the search's costs."""
    done = [a for a in archs if a.mean is not None]
    if not done:
        return []
    values = np.array([[a.mean, *(a.costs[c] for c in costs)] for a in done], dtype=float)
    keep = pareto_mask(values, ["maximize"] + ["minimize"] * len(costs))
    for a, k in zip(done, keep):
        a.on_confirmed_front = bool(k)
    return [a.trial for a, k in zip(done, keep) if k]


def summarize(source: optuna.Study, confirm: optuna.Study, seed: int = 0) -> ConfirmSummary:
    """The findings of `confirm` (the linked study) about `source` so far."""
    settings = StudySettings.from_study(confirm)
    costs = [o for o in (settings.objectives or []) if o not in SCORES]
    runs = study_trials(confirm)
    archs = architectures(study_trials(source), runs, costs)
    front = mark_front(archs, costs)
    selection = settings.selection or {}
    chosen, seeds = selection.get("front", []), selection.get("seeds", [])
    done = [a for a in archs if a.mean is not None]
    ranks = rank_correlations([a.search_accuracy for a in done], [a.mean for a in done],
                              seed=seed) if len(done) >= MIN_FOR_RANKS else {}
    floor = None
    if any(len(a.confirm_accuracies) > 1 for a in archs):
        floor = noise_floor({str(a.trial): a.confirm_accuracies for a in archs})
    best = max(done, key=lambda a: (a.mean, -a.trial), default=None)
    total = (len(chosen) + len(selection.get("control", []))) * len(seeds)
    note = "" if len(done) >= MIN_FOR_RANKS else (
        f"rank correlations need {MIN_FOR_RANKS} confirmed architectures; {len(done)} so far")
    return ConfirmSummary(
        study=source.study_name, confirm_study=confirm.study_name, budget=settings.budget(),
        seeds=seeds, runs_done=sum(len(a.confirm_accuracies) for a in archs), runs_total=total,
        architectures=archs, spearman=ranks.get("spearman"), kendall=ranks.get("kendall"),
        noise_std=floor.pooled if floor else None, noise_dof=floor.dof if floor else 0,
        front_kept=[n for n in chosen if n in front],
        front_dropped=[n for n in chosen if n not in front],
        confirmed_front=front, best=best, note=note)


__all__ = ["Architecture", "ConfirmSummary", "summarize"]
