"""One definition of each question about a study's trials: feasible, trained, evaluated,
finished, the Pareto front, the best trial."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.study.record import TIME_UP, TrialRecord, trained_own_model

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class StudyTrial:
    """A trial as nas sees it: Optuna's frozen trial and its typed record."""

    trial: FrozenTrial

    @cached_property
    def record(self) -> TrialRecord:
        return TrialRecord.from_trial(self.trial)

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def state(self) -> TrialState:
        return self.trial.state

    @property
    def values(self) -> list[float] | None:
        return self.trial.values

    @property
    def feasible(self) -> bool:
        """Within every cost limit of the search (Optuna constraints <= 0)."""
        return all(v <= 0 for v in self.trial.constraints.values())

    @property
    def trained(self) -> bool:
        return self.record.is_trained

    @property
    def reused(self) -> bool:
        return self.record.reused_from is not None

    @property
    def scored(self) -> bool:
        """Complete, trained and feasible: a result on the study's terms (maybe reused)."""
        return (self.state == TrialState.COMPLETE and self.trained and self.feasible
                and self.record.val_accuracy is not None)

    @property
    def evaluated(self) -> bool:
        """A distinct architecture trained to the full budget here: scored and not reused."""
        return self.scored and not self.reused


# What became of a trial, as a search counts and shows it (trial_kind).
KINDS = ("trained", "early_stopped", "time_up", "over_budget", "reused", "failed", "running",
         "waiting")


def trial_kind(t: StudyTrial) -> str:
    """One of KINDS: trained (to the end), early_stopped, time_up (cut by the search's time
    limit: a later trial continues it), over_budget (refused by the cost gate, untrained),
    reused (another trial's result), failed, running or waiting (queued)."""
    if t.state == TrialState.RUNNING:
        return "running"
    if t.state == TrialState.WAITING:
        return "waiting"
    if t.state == TrialState.FAIL:
        return "failed"
    if t.reused:
        return "reused"
    if not t.trained:
        return "over_budget" if t.state == TrialState.COMPLETE else "failed"
    if t.state == TrialState.PRUNED:
        return "time_up" if (t.record.reason or "").startswith(TIME_UP) else "early_stopped"
    return "trained"


def count_kinds(trials: Iterable[StudyTrial]) -> dict[str, Any]:
    """How many trials of each kind (KINDS order), and the failed ones by reason."""
    counts: dict[str, Any] = dict.fromkeys(KINDS, 0)
    reasons: dict[str, int] = {}
    for t in trials:
        kind = trial_kind(t)
        counts[kind] += 1
        if kind == "failed":
            reason = (t.record.reason or "unknown").split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
    counts["failed_by_reason"] = reasons
    return counts


# Finished trials never change: their StudyTrial (with its parsed record) is made once per
# process and storage, so reading a study of thousands of trials again costs a list, not
# thousands of record validations. Keyed by the storage object (a process may hold several).
_FINISHED: weakref.WeakKeyDictionary[Any, dict[int, StudyTrial]] = weakref.WeakKeyDictionary()


def study_trials(study: optuna.Study, states: Sequence[TrialState] | None = None,
                 ) -> list[StudyTrial]:
    """The study's trials (optionally of some states), by number."""
    found = study.get_trials(deepcopy=False, states=tuple(states) if states else None)
    try:
        known = _FINISHED.setdefault(study._storage, {})  # noqa: SLF001
    except TypeError:  # a storage that cannot be weakly referenced: no reuse
        known = {}
    out = []
    for t in found:
        view = known.get(t._trial_id)  # noqa: SLF001
        if view is None or view.trial is not t:
            view = StudyTrial(t)
            if t.state.is_finished():
                known[t._trial_id] = view  # noqa: SLF001
        out.append(view)
    out.sort(key=lambda v: v.number)
    return out


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards the target: complete or pruned."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trained_count(study: optuna.Study) -> int:
    """Finished trials that trained a model of their own (to the end or stopped early): what a
    search's --trials counts. Trials refused by the cost gate and reused results do not."""
    return sum(trained_own_model(t.user_attrs)
               for t in study.get_trials(deepcopy=False, states=FINISHED))


def unique_architectures(trials: Iterable[StudyTrial]) -> list[StudyTrial]:
    """The first trial of each architecture (reused results repeat their source's values)."""
    seen: set[str] = set()
    out = []
    for t in trials:
        key = t.record.spec_hash or f"trial-{t.number}"
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Rows of `values` that no other row dominates (better or equal in all, better in one).

    Rows are visited in lexicographic order (everything minimised), so a row can only be
    dominated by one visited before it; and since domination is transitive, a dominated row is
    dominated by a row of the front kept so far. Each row is compared with that front only:
    O(N x front) time and memory, not the N x N of comparing every pair (5,000 trials)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    v = values.reshape(len(values), len(signs)) * signs  # everything minimised
    order = np.lexsort(v.T[::-1])  # by the first column, then the second...
    keep = np.zeros(len(v), dtype=bool)
    kept, size = np.empty_like(v), 0  # the front so far, in its first `size` rows
    for i in order:
        row, front_rows = v[i], kept[:size]
        if ((front_rows <= row).all(axis=1) & (front_rows < row).any(axis=1)).any():
            continue
        keep[i] = True
        kept[size] = row
        size += 1
    return keep


def by_accuracy(trials: Iterable[StudyTrial]) -> list[StudyTrial]:
    """Highest validation accuracy first, earlier trial first on ties."""
    return sorted(trials, key=lambda t: (-(t.record.val_accuracy or 0.0), t.number))


def front(trials: Sequence[StudyTrial], directions: Sequence[str], top: int = 10,
          ) -> list[StudyTrial]:
    """The Pareto front of scored trials (one per architecture, best accuracy first); for a
    single objective, the best `top` distinct architectures."""
    scored = [t for t in trials if t.scored and t.values is not None]
    if len(directions) == 1:
        return unique_architectures(by_accuracy(scored))[:top]
    values = np.array([t.values for t in scored], dtype=float).reshape(len(scored), len(directions))
    on_front = [t for t, keep in zip(scored, pareto_mask(values, directions)) if keep]
    return unique_architectures(by_accuracy(on_front))


def best(trials: Iterable[StudyTrial]) -> StudyTrial | None:
    """The scored trial of highest validation accuracy (earliest on ties), if any."""
    ranked = by_accuracy(t for t in trials if t.scored)
    return ranked[0] if ranked else None


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by `points` up to `reference`, every coordinate minimised; points not
    below the reference in every coordinate add nothing. Optuna's exact implementation (WFG),
    which Optuna 5 keeps in a private module: it has no public hypervolume function."""
    from optuna._hypervolume import compute_hypervolume

    ref = np.asarray(reference, dtype=float)
    values = np.asarray(points, dtype=float)
    if values.size == 0:
        return 0.0
    if values.ndim != 2 or values.shape[1] != ref.size:
        raise ValueError(f"points of shape {values.shape} against a {ref.size}-d reference")
    inside = values[(values < ref).all(axis=1)]
    return float(compute_hypervolume(inside, ref)) if len(inside) else 0.0


def study_front(study: optuna.Study, top: int = 10) -> list[StudyTrial]:
    """`front` of a whole study, in the study's own directions."""
    directions = [d.name.lower() for d in study.directions]
    return front(study_trials(study), directions, top)


__all__ = ["FINISHED", "KINDS", "StudyTrial", "best", "by_accuracy", "count_kinds",
           "finished_count", "front", "hypervolume", "pareto_mask", "study_front", "study_trials",
           "trained_count", "trial_kind", "unique_architectures"]
