"""TPE on all trials against TPE on nas's bounded history (nas.search.history), side by side.

Both optimise the same two-objective test problem (ZDT1 with `--dims` parameters, both
objectives minimised) for `--trials` trials from the same seeds, with nas's TPE settings
(multivariate, constant liar, 10 random start-up trials); the bounded one fits past `--size`
finished trials to a uniform sample of that many plus the Pareto front. Printed per seed and on
average: the hypervolume of the front at several trial counts (reference point (1.1, 11); the
larger the better) and the mean seconds a proposal took over the last 100 trials.

    python benchmarks/tpe_history.py                          # 1,000 trials, a history of 400
    python benchmarks/tpe_history.py --trials 600 --size 200   # a history of 200
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import optuna

from nas.search.history import BoundedHistory
from nas.study import hypervolume

REFERENCE = (1.1, 11.0)


def zdt1(x: np.ndarray) -> tuple[float, float]:
    f1 = float(x[0])
    g = 1.0 + 9.0 * float(np.mean(x[1:]))
    return f1, g * (1.0 - (f1 / g) ** 0.5)


def tpe(seed: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=10)


def run(sampler: optuna.samplers.BaseSampler, trials: int, dims: int,
        marks: list[int]) -> tuple[dict[int, float], float]:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    seconds, points, hv = [], [], {}
    for i in range(1, trials + 1):
        start = time.perf_counter()
        trial = study.ask()
        x = np.array([trial.suggest_float(f"x{d}", 0.0, 1.0) for d in range(dims)])
        seconds.append(time.perf_counter() - start)
        values = zdt1(x)
        study.tell(trial, values)
        points.append(values)
        if i in marks:
            hv[i] = hypervolume(points, REFERENCE)
    return hv, statistics.mean(seconds[-100:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--dims", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    marks = sorted({m for m in (args.size, args.size * 2, args.trials) if m <= args.trials})
    rows: dict[str, list[tuple[dict[int, float], float]]] = {"all trials": [], "bounded": []}
    for seed in range(args.seeds):
        rows["all trials"].append(run(tpe(seed), args.trials, args.dims, marks))
        rows["bounded"].append(run(BoundedHistory(tpe(seed), size=args.size, seed=seed),
                                   args.trials, args.dims, marks))
        for name, got in rows.items():
            hv, s = got[-1]
            print(f"seed {seed} {name:>10}: " + "  ".join(f"HV@{m} {hv[m]:.3f}" for m in marks)
                  + f"  {s * 1000:.0f} ms a proposal", flush=True)
    print(f"\nZDT1, {args.dims} parameters, {args.trials} trials, {args.seeds} seeds, history "
          f"size {args.size}; hypervolume to {REFERENCE} (mean [min, max] over seeds)")
    print("| TPE fitted to | " + " | ".join(f"HV at {m}" for m in marks)
          + " | ms a proposal (last 100) |")
    print("|---|" + "---|" * len(marks) + "---|")
    for name, got in rows.items():
        cells = []
        for m in marks:
            values = [hv[m] for hv, _ in got]
            cells.append(f"{statistics.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]")
        ms = statistics.mean(s for _, s in got) * 1000
        print(f"| {name} | " + " | ".join(cells) + f" | {ms:.0f} |")


if __name__ == "__main__":
    main()
