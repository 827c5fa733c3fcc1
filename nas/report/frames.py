"""Studies as data: tables of a study's trials, fronts, EDFs, importances.

Every figure of `nas report` and `nas compare` is drawn from one of these frames, and tests
check the frames; nothing here draws. Trials are read through nas.study's typed records.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nas.errors import UserError
from nas.study import COSTS, OBJECTIVE_FIELDS, StudySettings, StudyTrial, front
from nas.study import study_trials as read_trials

COST_COLUMNS = {c: OBJECTIVE_FIELDS[c] for c in COSTS}  # cost objective -> frame column
MIN_IMPORTANCE_TRIALS = 5
TRIAL_COLUMNS = ("number", "state", "family", "spec_hash", "val_accuracy", "error", "params",
                 "macs", "latency_ms", "trained", "feasible", "reused_from", "epochs_run",
                 "reason", "on_front", "spec")


def trial_row(t: StudyTrial, on_front: set[int]) -> dict[str, Any]:
    """One trial's record as a flat row."""
    r = t.record
    acc = r.val_accuracy if t.trained else None

    def number(value: float | None) -> float:
        return math.nan if value is None else value

    return {
        "number": t.number, "state": t.state.name, "family": r.family or "?",
        "spec_hash": r.spec_hash or "",
        "val_accuracy": number(acc), "error": math.nan if acc is None else 1.0 - acc,
        "params": number(r.params), "macs": number(r.macs), "latency_ms": number(r.latency_ms),
        "trained": t.trained, "feasible": t.feasible, "reused_from": number(r.reused_from),
        "epochs_run": number(r.epochs_run), "reason": r.reason or "",
        "on_front": t.number in on_front, "spec": r.spec,
    }


def study_directions(study: optuna.Study) -> list[str]:
    return [d.name.lower() for d in study.directions]


def trials_frame(study: optuna.Study, trials: list[StudyTrial] | None = None) -> pd.DataFrame:
    """Every trial of a study, one row each (columns TRIAL_COLUMNS), by trial number."""
    trials = read_trials(study) if trials is None else trials
    on_front = {t.number for t in front(trials, study_directions(study), top=1)}
    rows = [trial_row(t, on_front) for t in trials]
    frame = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    for col in ("params", "macs", "latency_ms", "val_accuracy", "error"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame.sort_values("number", ignore_index=True)


def evaluated(frame: pd.DataFrame) -> pd.DataFrame:
    """Distinct architectures trained to the full budget: complete, feasible, not reused."""
    keep = ((frame["state"] == TrialState.COMPLETE.name) & frame["trained"] & frame["feasible"]
            & frame["reused_from"].isna() & frame["val_accuracy"].notna())
    return frame[keep].reset_index(drop=True)


def front_frame(frame: pd.DataFrame, cost: str) -> pd.DataFrame:
    """The 2-D Pareto front of evaluated trials: highest accuracy for its cost, by cost."""
    column = COST_COLUMNS[cost]
    points = evaluated(frame).dropna(subset=[column])
    points = points.sort_values([column, "val_accuracy", "number"],
                                ascending=[True, False, True])
    best, keep = -math.inf, []
    for index, acc in points["val_accuracy"].items():
        if acc > best:
            keep.append(index)
            best = acc
    return points.loc[keep].reset_index(drop=True)


def history_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Validation accuracy of complete trained trials by trial number, with the best so far."""
    done = frame[(frame["state"] == TrialState.COMPLETE.name) & frame["trained"]
                 & frame["val_accuracy"].notna()]
    out = done[["number", "family", "val_accuracy", "reused_from"]].reset_index(drop=True)
    out["best_so_far"] = out["val_accuracy"].cummax()
    return out


def edf_frame(errors: pd.Series | list[float]) -> pd.DataFrame:
    """Empirical distribution function: fraction of models with error <= each error."""
    values = np.sort(np.asarray(errors, dtype=float))
    n = len(values)
    return pd.DataFrame({"error": values, "fraction": np.arange(1, n + 1) / max(n, 1)})


class Importances(NamedTuple):
    """Parameter importances for validation accuracy, or a note saying why there are none."""

    frame: pd.DataFrame  # columns: param, importance (descending)
    note: str | None
    top: float  # the fraction of trials counted as top


class OwnedTrialsStorage(optuna.storages.InMemoryStorage):
    """An in-memory storage that keeps the trials it is given instead of deep-copying each
    (for a study of fresh FrozenTrials nobody else holds: copying 5,000 of them took longer
    than the importances computed from them)."""

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        if template_trial is None:
            return super().create_new_trial(study_id)
        with self._lock:
            self._check_study_id(study_id)
            trial_id = self._max_trial_id = self._max_trial_id + 1
            template_trial.number = len(self._studies[study_id].trials)
            template_trial._trial_id = trial_id
            self._trial_id_to_study_id_and_number[trial_id] = (study_id, template_trial.number)
            self._studies[study_id].trials.append(template_trial)
            self._update_cache(trial_id, study_id)
            return trial_id


def accuracy_study(trials: list[StudyTrial]) -> optuna.Study:
    """An in-memory single-objective copy of trials, valued by validation accuracy. The copies
    go straight into the storage: they are the study's own stored parameters, valid already,
    and Optuna's add_trial would check each one twice (most of the importances' time at 5,000
    trials)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line on stderr
    storage = OwnedTrialsStorage()
    try:
        proxy = optuna.create_study(direction="maximize", storage=storage)
    finally:
        optuna.logging.set_verbosity(level)
    study_id = storage.get_study_id_from_name(proxy.study_name)
    for t in trials:
        storage.create_new_trial(study_id, template_trial=FrozenTrial(
            number=-1, state=TrialState.COMPLETE, value=float(t.record.val_accuracy),  # type: ignore[arg-type]
            datetime_start=None, datetime_complete=None, params=t.trial.params,
            distributions=t.trial.distributions, user_attrs={}, system_attrs={},
            intermediate_values={}, trial_id=-1))
    return proxy


def importance_data(trials: list[StudyTrial], frame: pd.DataFrame) -> Importances:
    """PED-ANOVA importances: which parameters set the top trials apart from all evaluated ones."""
    empty = pd.DataFrame({"param": pd.Series(dtype=str), "importance": pd.Series(dtype=float)})
    numbers = set(evaluated(frame)["number"])
    trials = [t for t in trials if t.number in numbers and t.trial.params]
    if len(trials) < MIN_IMPORTANCE_TRIALS:
        return Importances(empty, f"parameter importances need at least {MIN_IMPORTANCE_TRIALS}"
                                  f" trained trials; this study has {len(trials)}", 0.0)
    proxy = accuracy_study(trials)
    top = max(0.1, 2 / len(trials))  # at least two trials in the top group
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=top)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = optuna.importance.get_param_importances(proxy, evaluator=evaluator)
    except (ValueError, RuntimeError) as e:
        return Importances(empty, f"parameter importances unavailable: {e}", top)
    if not scores or not any(scores.values()):
        return Importances(empty, "parameter importances unavailable: no parameter varies", top)
    out = pd.DataFrame({"param": list(scores), "importance": [float(v) for v in scores.values()]})
    return Importances(out, None, top)


class Comparison(NamedTuple):
    """EDFs of several studies restricted to the cost range they all cover."""

    cost: str
    low: float
    high: float
    edf: pd.DataFrame  # columns: study, error, fraction
    counts: pd.DataFrame  # columns: study, in_range, total


def compare_frames(frames: dict[str, pd.DataFrame], cost: str) -> Comparison:
    """Each study's error EDF over its evaluated trials whose cost lies in the common range."""
    if cost not in COST_COLUMNS:
        raise UserError(f"--cost {cost}: one of {', '.join(COST_COLUMNS)}")
    column = COST_COLUMNS[cost]
    points = {name: evaluated(f).dropna(subset=[column]) for name, f in frames.items()}
    for name, p in points.items():
        if p.empty:
            raise UserError(f"study {name} has no trained trial with a {cost} value to compare")
    low = max(float(p[column].min()) for p in points.values())
    high = min(float(p[column].max()) for p in points.values())
    if low > high:
        spans = "; ".join(f"{n} {format_cost(p[column].min())}..{format_cost(p[column].max())}"
                          for n, p in points.items())
        raise UserError(f"the studies' {cost} ranges do not overlap ({spans}): nothing to compare")
    edfs, counts = [], []
    for name, p in points.items():
        inside = p[(p[column] >= low) & (p[column] <= high)]
        edfs.append(edf_frame(inside["error"]).assign(study=name))
        counts.append({"study": name, "in_range": len(inside), "total": len(p)})
    edf = pd.concat(edfs, ignore_index=True)[["study", "error", "fraction"]]
    return Comparison(cost, low, high, edf, pd.DataFrame(counts))


def study_info(study: optuna.Study, trials: list[StudyTrial]) -> dict[str, Any]:
    """The study's recorded settings and its trial counts by state."""
    settings = StudySettings.from_study(study)
    states = [t.state.name.lower() for t in trials]
    return {
        "study": study.study_name, "space": settings.space or "?",
        "objectives": settings.objective_names(len(study.directions)),
        "budget": settings.budget(), "nas_version": settings.nas_version or "?",
        "states": {s: states.count(s) for s in sorted(set(states))},
        "over_budget": sum(not t.feasible for t in trials),
        "reused": sum(t.reused for t in trials),
    }


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one a value


def spec_text(spec: dict[str, Any] | None, sep: str = "<br>") -> str:
    """A spec as `field: value` lines for hover text (JSON values, compact)."""
    if not spec:
        return "(no spec)"
    return sep.join(f"{k}: {_COMPACT_JSON(v)}" for k, v in spec.items())


def format_cost(value: float) -> str:
    """A cost for people: whole counts with separators, small values (latency) to 3 digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def study_costs(study: optuna.Study) -> list[str]:
    """The costs a study optimised, else params and MACs (single-objective studies)."""
    objectives = StudySettings.from_study(study).objectives or []
    costs = [o for o in objectives if o in COST_COLUMNS]
    return costs or ["params", "macs"]
