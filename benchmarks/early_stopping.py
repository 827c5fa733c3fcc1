"""Compute saved by multi-objective early stopping, and what it costs in front quality.

Runs the same search twice with the random sampler and one seed, so both runs propose the same
architectures in the same order: once with cost-aware halving, once without. Prints training
time and epochs, and the hypervolume of each (error, params) front, side by side.

    python benchmarks/early_stopping.py --space resnext --trials 30 --epochs 3
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nas.search.request import SearchRequest
from nas.search.space import load_space
from nas.search.work import search


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by (error, log10 params) points, both minimised, up to `ref`."""
    front, best = [], math.inf
    for x, y in sorted(points):
        if y < best and x < ref[0] and y < ref[1]:
            front.append((x, y))
            best = y
    area, prev_y = 0.0, ref[1]
    for x, y in front:
        area += (ref[0] - x) * (prev_y - y)
        prev_y = y
    return area


def summary(study: optuna.Study) -> dict[str, float]:
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    trained = [t for t in trials if t.user_attrs.get("trained") or t.state == TrialState.PRUNED]
    points = [(1 - t.values[0], math.log10(t.user_attrs["params"]))
              for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("trained")]
    return {
        "train_s": sum(t.user_attrs.get("wall_time_s") or 0 for t in trained),
        "epochs": sum(len(t.user_attrs.get("curve") or []) for t in trained),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "hv": hypervolume(points, ref=(1.0, 7.0)),
        "best": max((1 - x for x, _ in points), default=0.0),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", default="resnext")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--subset", type=float, default=0.25)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for early in (False, True):
            req = SearchRequest(
                space=load_space(args.space), trials=args.trials, study="bench",
                storage=f"sqlite:///{Path(tmp) / f'es-{early}.db'}", sampler="random",
                epochs=args.epochs, subset=args.subset, early_stop=early, device="cpu")
            rows[early] = summary(search(req, args.jobs))
    off, on = rows[False], rows[True]
    print(f"{'':<22}{'no early stop':>15}{'early stop':>12}{'ratio':>8}")
    for key, label in (("train_s", "training seconds"), ("epochs", "epochs trained"),
                       ("pruned", "trials stopped"), ("hv", "front hypervolume"),
                       ("best", "best val accuracy")):
        ratio = on[key] / off[key] if off[key] else float("nan")
        print(f"{label:<22}{off[key]:>15.4g}{on[key]:>12.4g}{ratio:>8.3f}")


if __name__ == "__main__":
    main()
