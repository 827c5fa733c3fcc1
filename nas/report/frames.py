"""Studies as data: locate and open a study, then tables of its trials, fronts, EDFs, importances.

Every figure of `nas report` and `nas compare` is drawn from one of these frames, and tests
check the frames; nothing here draws.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nas.errors import UserError
from nas.search.objective import COST_ATTR as COST_COLUMNS  # objective name -> trial attribute
from nas.search.run import front
from nas.search.storage import default_storage, mask_url, open_storage, sqlite_path, study_names

COST_LABELS = {"params": "parameters", "macs": "MACs", "latency": "latency (ms, batch 1)"}
BUDGET_KEYS = ("dataset", "epochs", "subset", "batch_size", "lr", "seed")
MIN_IMPORTANCE_TRIALS = 5
TRIAL_COLUMNS = ("number", "state", "family", "spec_hash", "val_accuracy", "error", "params",
                 "macs", "latency_ms", "trained", "feasible", "reused_from", "epochs_run",
                 "reason", "on_front", "spec")


class StudyRef(NamedTuple):
    """A study name and the storage URL that holds it."""

    name: str
    url: str


def open_existing(url: str) -> optuna.storages.RDBStorage:
    """The storage at `url`, refusing (without creating anything) a SQLite file that is absent."""
    path = sqlite_path(url)
    if url.startswith("sqlite:") and path is None:
        raise UserError(f"{url}: an in-memory SQLite database holds no study to read")
    if path is not None and (not path.is_file() or path.stat().st_size == 0):
        what = "no such file" if not path.exists() else "not a study database"
        raise UserError(f"{path}: {what}; run `nas search` first or give --storage")
    return open_storage(url, heartbeat=False)


def pick_study(names: list[str], url: str) -> str:
    """The only study in a storage; otherwise say which names there are."""
    if len(names) == 1:
        return names[0]
    if not names:
        raise UserError(f"{mask_url(url)}: holds no study")
    raise UserError(f"{mask_url(url)} holds {len(names)} studies ({', '.join(sorted(names))}); "
                    f"choose one with --study")


def locate_study(study: str | None, storage: str | None) -> StudyRef:
    """Resolve --study/--storage defaults: the only study of a storage, the only studies/*.db."""
    if storage is None and study is None:
        found = sorted(Path("studies").glob("*.db"))
        if len(found) != 1:
            held = f"studies/ holds {', '.join(p.name for p in found)}" if found else \
                "no studies/*.db here"
            raise UserError(f"give --study (or --storage): {held}")
        storage = f"sqlite:///{found[0].as_posix()}"
    url = storage or default_storage(study or "")
    names = study_names(open_existing(url))
    if study is None:
        return StudyRef(pick_study(names, url), url)
    if study not in names:
        there = f"studies there: {', '.join(sorted(names))}" if names else "it holds no study"
        raise UserError(f"no study {study!r} in {mask_url(url)}; {there}")
    return StudyRef(study, url)


def load_ref(ref: StudyRef) -> optuna.Study:
    """The study a located reference names."""
    return optuna.load_study(study_name=ref.name, storage=open_existing(ref.url))


def load_study(study: str | None, storage: str | None) -> optuna.Study:
    """An existing study, found through the same defaults as `locate_study`."""
    return load_ref(locate_study(study, storage))


def study_front(study: optuna.Study) -> list[FrozenTrial]:
    """The study's Pareto front of trained feasible trials; the best such trial if one objective."""
    return front(study, top=1)


def trial_row(t: FrozenTrial, on_front: set[int]) -> dict[str, Any]:
    """One trial's record as a flat row."""
    a = t.user_attrs
    acc = a.get("val_accuracy")
    trained = bool(a.get("trained"))
    return {
        "number": t.number, "state": t.state.name, "family": a.get("family", "?"),
        "spec_hash": a.get("spec_hash", ""),
        "val_accuracy": float(acc) if trained and acc is not None else math.nan,
        "error": 1.0 - float(acc) if trained and acc is not None else math.nan,
        "params": a.get("params", math.nan), "macs": a.get("macs", math.nan),
        "latency_ms": a.get("latency_ms", math.nan), "trained": trained,
        "feasible": all(v <= 0 for v in t.constraints.values()),
        "reused_from": a.get("reused_from", math.nan), "epochs_run": a.get("epochs_run", math.nan),
        "reason": a.get("reason", ""), "on_front": t.number in on_front, "spec": a.get("spec"),
    }


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial of a study, one row each (columns TRIAL_COLUMNS), by trial number."""
    on_front = {t.number for t in study_front(study)}
    rows = [trial_row(t, on_front) for t in study.get_trials(deepcopy=False)]
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


def accuracy_study(trials: list[FrozenTrial]) -> optuna.Study:
    """An in-memory single-objective copy of trials, valued by validation accuracy."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line on stderr
    try:
        proxy = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(level)
    proxy.add_trials([optuna.trial.create_trial(
        params=t.params, distributions=t.distributions,
        value=float(t.user_attrs["val_accuracy"])) for t in trials])
    return proxy


def importance_data(study: optuna.Study, frame: pd.DataFrame) -> Importances:
    """PED-ANOVA importances: which parameters set the top trials apart from all evaluated ones."""
    empty = pd.DataFrame({"param": pd.Series(dtype=str), "importance": pd.Series(dtype=float)})
    numbers = set(evaluated(frame)["number"])
    trials = [t for t in study.get_trials(deepcopy=False) if t.number in numbers and t.params]
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


def study_info(study: optuna.Study) -> dict[str, Any]:
    """The study's recorded settings and its trial counts by state."""
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name.lower() for t in trials]
    return {
        "study": study.study_name, "space": attrs.get("space", "?"),
        "objectives": attrs.get("objectives") or ["accuracy"] * len(study.directions),
        "budget": {k: attrs[k] for k in BUDGET_KEYS if k in attrs},
        "nas_version": attrs.get("nas_version", "?"),
        "states": {s: states.count(s) for s in sorted(set(states))},
        "over_budget": sum(not all(v <= 0 for v in t.constraints.values()) for t in trials),
        "reused": sum(t.user_attrs.get("reused_from") is not None for t in trials),
    }


def spec_text(spec: dict[str, Any] | None, sep: str = "<br>") -> str:
    """A spec as `field: value` lines for hover text (JSON values, compact)."""
    if not spec:
        return "(no spec)"
    return sep.join(f"{k}: {json.dumps(v, separators=(',', ':'))}" for k, v in spec.items())


def format_cost(value: float) -> str:
    """A cost for people: whole counts with separators, small values (latency) to 3 digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def study_costs(study: optuna.Study) -> list[str]:
    """The costs a study optimised, else params and MACs (single-objective studies)."""
    objectives = study.user_attrs.get("objectives") or []
    costs = [o for o in objectives if o in COST_COLUMNS]
    return costs or ["params", "macs"]
