"""Time to a good front: hypervolume of the (error, log10 params) front against wall-clock time,
for each way of searching, at the same time budget per run and several sampler seeds.

Methods (each a real `nas search --time T` in its own process, one worker, one thread):
  random        random sampler, every trial trained to the full budget, no early stopping
  default       what `nas search` did before this benchmark (TPE, cost-aware early stopping)
  mf-random     multi-fidelity (MOASHA rungs over epochs) with a random searcher
  mf-tpe        multi-fidelity with TPE
  +prescreen    the best of those four, each trial prescreening K candidates by a proxy
The training seed (data split, initial weights) is the same for every run; the sampler seed
varies. A trial counts once it is trained to the full budget (a trial stopped at a rung or by
the time limit has no accuracy comparable to the others'), at the moment it finished.

Printed: the mean hypervolume at quarters of the budget with its 95 % interval over seeds
(Student's t), and the time at which each run first reaches the random method's final mean
hypervolume (mean over seeds with its interval; runs that never do are counted apart). Written:
an HTML figure (plotly) and, when matplotlib is installed, an SVG for the README.

    python benchmarks/time_to_front.py                         # 5 min a run, 5 seeds
    python benchmarks/time_to_front.py --minutes 2 --seeds 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
from scipy import stats

from nas.study import hypervolume, study_trials
from nas.study.record import search_spans

REFERENCE = (1.0, 7.0)  # (error, log10 params): every network of the space lies below it
REPO = Path(__file__).resolve().parents[1]
METHODS: dict[str, list[str]] = {
    "random": ["--sampler", "random", "--no-early-stop"],
    "default": ["--sampler", "tpe"],
    "mf-random": ["--sampler", "random", "--min-epochs", "{min_epochs}", "--eta", "{eta}"],
    "mf-tpe": ["--sampler", "tpe", "--min-epochs", "{min_epochs}", "--eta", "{eta}"],
}


def run(method: str, flags: list[str], seed: int, args: argparse.Namespace,
        folder: Path) -> dict[str, Any]:
    """One search of `args.minutes` minutes; its hypervolume curve."""
    study = f"{method}-s{seed}"
    url = f"sqlite:///{folder / (study + '.db')}"
    filled = [f.format(min_epochs=args.min_epochs, eta=args.eta) for f in flags]
    argv = [sys.executable, "-m", "nas", "search", "--space", args.space, "--study", study,
            "--storage", url, "--time", f"{args.minutes * 60:g}s", "--epochs", str(args.epochs),
            "--subset", str(args.subset), "--sampler-seed", str(seed), "--jobs", "1",
            "--threads", "1", "--json", *filled]
    start = time.perf_counter()
    if args.reuse and (folder / (study + ".db")).exists():  # a run of an earlier invocation
        loaded = optuna.load_study(study_name=study, storage=url)
        outcome = recorded_outcome(loaded)
    else:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=folder,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode != 0:
            raise SystemExit(f"{study} failed: {done.stderr.strip()[-800:]}")
        loaded = optuna.load_study(study_name=study, storage=url)
        outcome = json.loads(done.stdout)
    curve = hv_curve(loaded, args.minutes * 60, args.step)
    print(f"[{time.strftime('%H:%M:%S')}] {study}: final hypervolume {curve[-1][1]:.4f}, "
          f"{outcome['counts']['trained']} trained to the end, {outcome['trained']} trained, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return {"method": method, "seed": seed, "curve": curve, "counts": outcome["counts"],
            "best": (outcome["best"] or {}).get("val_accuracy")}


def recorded_outcome(study: optuna.Study) -> dict[str, Any]:
    """What `nas search --json` printed, as far as this benchmark uses it, read from a study."""
    from nas.study import best, count_kinds

    trials = study_trials(study)
    counts = count_kinds(trials)
    top = best(trials)
    return {"counts": counts, "trained": counts["trained"] + counts["early_stopped"],
            "best": None if top is None else {"val_accuracy": top.record.val_accuracy}}


def hv_curve(study: optuna.Study, budget_s: float, step: float) -> list[tuple[float, float]]:
    """(seconds since the search began, hypervolume of the full-budget trials finished by
    then), every `step` seconds up to the budget."""
    start = min(s for s, _e in search_spans(study.user_attrs))
    done = sorted(((t.trial.datetime_complete.timestamp() - start, point(t))
                   for t in study_trials(study) if t.scored and t.trial.datetime_complete),
                  key=lambda pair: pair[0])
    out = []
    for i in range(int(budget_s // step) + 1):
        now = i * step
        out.append((now, hypervolume([p for at, p in done if at <= now], REFERENCE)))
    return out


def point(t: Any) -> tuple[float, float]:
    return (1.0 - (t.record.val_accuracy or 0.0), math.log10(t.record.params or 1))


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % interval over seeds (Student's t; the mean alone for one seed)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(
        len(values))
    return mean, mean - half, mean + half


def reach_time(curve: list[tuple[float, float]], goal: float) -> float | None:
    return next((at for at, hv in curve if hv >= goal), None)


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    methods = list(dict.fromkeys(r["method"] for r in runs))
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        mine = [r for r in runs if r["method"] == m]
        n = min(len(r["curve"]) for r in mine)
        times = [mine[0]["curve"][i][0] for i in range(n)]
        bands = [interval([r["curve"][i][1] for r in mine]) for i in range(n)]
        out[m] = {"runs": mine, "times": times, "bands": bands,
                  "trained": statistics.fmean(r["counts"]["trained"] for r in mine),
                  "best": interval([r["best"] or 0.0 for r in mine])}
    goal = out["random"]["bands"][-1][0]
    for figures in out.values():
        reached = [reach_time(r["curve"], goal) for r in figures["runs"]]
        hits = [t for t in reached if t is not None]
        figures["reach"] = interval(hits) if hits else None
        figures["never"] = len(reached) - len(hits)
    return out


def print_table(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    budget = args.minutes * 60
    marks = [budget * q for q in (0.25, 0.5, 0.75, 1.0)]
    print(f"\nhypervolume of the (error, log10 params) front of trials trained to the full "
          f"budget, reference {REFERENCE}; mean [95% interval] over {args.seeds} seeds; "
          f"space {args.space}, {args.epochs} epochs on {args.subset:g} of the training split, "
          f"multi-fidelity from {args.min_epochs} epoch(s), eta {args.eta}; "
          f"{args.minutes:g} min a run; load {os.getloadavg()[0]:.1f}")
    head = " | ".join(f"at {m / 60:g} min" for m in marks)
    print(f"| method | {head} | reaches random's final | trained to the end | best val acc |")
    print("|" + "---|" * (len(marks) + 4))
    for name, f in summary.items():
        cells = []
        for mark in marks:
            i = min(range(len(f["times"])), key=lambda j: abs(f["times"][j] - mark))
            mean, low, high = f["bands"][i]
            cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        reach = "never" if f["reach"] is None else \
            f"{f['reach'][0] / 60:.1f} min [{f['reach'][1] / 60:.1f}, {f['reach'][2] / 60:.1f}]"
        if f["never"] and f["reach"] is not None:
            reach += f" ({f['never']} of {len(f['runs'])} never)"
        best = f"{f['best'][0]:.4f} [{f['best'][1]:.4f}, {f['best'][2]:.4f}]"
        print(f"| {name} | {' | '.join(cells)} | {reach} | {f['trained']:.1f} | {best} |")


def write_figures(summary: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, f in summary.items():
        x = [t / 60 for t in f["times"]]
        low, high = [b[1] for b in f["bands"]], [b[2] for b in f["bands"]]
        fig.add_scatter(x=x + x[::-1], y=high + low[::-1], fill="toself", opacity=0.15,
                        line={"width": 0}, showlegend=False, hoverinfo="skip")
        fig.add_scatter(x=x, y=[b[0] for b in f["bands"]], mode="lines", name=name)
    fig.update_layout(title="Hypervolume against time: mean and 95% interval over seeds",
                      xaxis_title="minutes", yaxis_title="hypervolume")
    written = [out.with_suffix(".html")]
    fig.write_html(written[0], include_plotlyjs=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    figure, ax = plt.subplots(figsize=(7, 4))
    for name, f in summary.items():
        x = [t / 60 for t in f["times"]]
        ax.plot(x, [b[0] for b in f["bands"]], label=name)
        ax.fill_between(x, [b[1] for b in f["bands"]], [b[2] for b in f["bands"]], alpha=0.15)
    ax.set_xlabel("minutes of search")
    ax.set_ylabel("hypervolume (error, log10 params)")
    ax.legend()
    figure.tight_layout()
    written.append(out.with_suffix(".svg"))
    figure.savefig(written[-1])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="resnext")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--subset", type=float, default=0.1)
    parser.add_argument("--prescreen", type=int, default=4, help="K for the +prescreen run "
                                                                 "(0: skip it)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--step", type=float, default=10.0, help="seconds between curve points")
    parser.add_argument("--out", type=Path, default=Path("studies/time_to_front"))
    parser.add_argument("--folder", type=Path, help="where the runs' studies go (default: a new "
                                                     "temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="read the runs already in --folder "
                        "instead of running them again (an interrupted benchmark, a new table)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="nas-ttf-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"runs in {folder}", flush=True)
    jobs = [(m, METHODS[m], s) for s in range(args.seeds) for m in args.methods.split(",")]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda job: run(*job, args, folder), jobs))
    summary = summarise(runs)
    if args.prescreen:
        best = max(summary, key=lambda m: summary[m]["bands"][-1][0])
        flags = [*METHODS[best], "--prescreen", str(args.prescreen)]
        with ThreadPoolExecutor(args.parallel) as pool:
            runs += list(pool.map(lambda s: run(f"{best}+prescreen", flags, s, args, folder),
                                  range(args.seeds)))
        summary = summarise(runs)
    print_table(summary, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for path in write_figures(summary, args.out):
        print(f"wrote {path}")
    (args.out.with_suffix(".json")).write_text(json.dumps(
        [{k: v for k, v in r.items()} for r in runs], indent=1))


if __name__ == "__main__":
    main()
