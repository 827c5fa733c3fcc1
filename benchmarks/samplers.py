"""Sampler quality: hypervolume of the (error, log10 params) front against trials, per sampler.

Runs every sampler on the same space and budget (by default the main job's: resnext, the CPU
budget, 50 trials, its worker processes), each with several sampler seeds (the training seed,
hence the data split and every network's initial weights, stays the same), and prints the mean
and spread over seeds of the hypervolume after 10, 20, ... trials, and the trial at which each
sampler first reaches the random sampler's final mean hypervolume.

    python benchmarks/samplers.py                        # resnext, 50 trials, 3 seeds, all samplers
    python benchmarks/samplers.py --trials 20 --seeds 3 --samplers tpe,random --epochs 1

A sampler is a registry name (nas.search.samplers), or NAME@vN for a study created with the
space's sampling scheme N (an older nas's parameters; resumed studies keep theirs). The default
list adds `tpe-old@v1`: the default sampler as it was before issue 11 (scheme 1, re-proposals
not asked again), registered here only.

Result cache, benchmark only: training an architecture with a given budget and seed is
deterministic on CPU with fixed threads, so the studies share a cache of fit results keyed on
(spec content hash, budget key), and an architecture one study trained is not retrained by
another. The cached curve is replayed epoch by epoch through the trial's early-stopping rule, so
every trial ends as it would have (same values, same stop) and the sampler sees the same
values; only its recorded time is the first training's. `nas search` has no such cache.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nas.device import auto_jobs
from nas.errors import Terminated, UserError
from nas.pool import run_worker
from nas.pool.signals import die_with_parent, raise_terminated
from nas.search.request import SearchRequest
from nas.search.resume import open_search_study
from nas.search.samplers import SAMPLERS, check_sampler, register
from nas.search.space import load_space
from nas.search.work import SearchWork
from nas.study import FINISHED, StudySettings, StudyTrial, hypervolume, study_trials
from nas.train import EpochStats, FitResult, search_budget

# (validation error, log10 params): every trained network lies below it (an error of 1 is
# worse than chance), and 10M parameters is far above the resnext space's largest network, so
# the best accuracy found weighs as much as the front's reach towards small networks.
REFERENCE = (1.0, 7.0)
OLD_DEFAULT = "tpe-old@v1"
CURRENT: dict[str, str] = {}  # cache key of the trial this worker is running


@register("tpe-old", fresh=False)  # at import, so in every worker process too
def _tpe_old(seed: int) -> Any:
    """The default sampler before issue 11; run it as tpe-old@v1."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=10)


# --- the result cache (benchmark only) ---------------------------------------------------------

def fit_result(data: dict[str, Any]) -> FitResult:
    return FitResult(**{**data, "curve": [EpochStats(**e) for e in data["curve"]]})


class ResultCache:
    """Fit results as JSON files, one per (spec hash, budget key); safe across processes."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> FitResult | None:
        path = self.dir / f"{key}.json"
        return fit_result(json.loads(path.read_text())) if path.exists() else None

    def put(self, key: str, result: FitResult) -> None:
        """Keeps the longest curve seen (an early-stopped fit is a prefix of the full one)."""
        old = self.get(key)
        if old is not None and len(old.curve) >= len(result.curve):
            return
        tmp = self.dir / f"{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(result.as_dict()))
        tmp.replace(self.dir / f"{key}.json")

    def count_hit(self) -> None:
        with open(self.dir / "hits.log", "a") as f:
            f.write(CURRENT["key"] + "\n")

    def hits(self) -> int:
        path = self.dir / "hits.log"
        return len(path.read_text().splitlines()) if path.exists() else 0


def stopped_at(result: FitResult, epochs: int) -> FitResult:
    """The result as fit returns it when `on_epoch` stops it after `epochs` epochs."""
    curve = result.curve[:epochs]
    return replace(result, curve=curve, epochs_run=epochs, val_accuracy=curve[-1].val_accuracy,
                   steps=curve[-1].steps, wall_time_s=sum(e.seconds for e in curve),
                   stopped="on_epoch")


def replay(cached: FitResult, on_epoch: Callable[[EpochStats], Any] | None) -> FitResult | None:
    """Shows the cached epochs to `on_epoch` as fit would; None when this trial goes on past
    the cached (early-stopped) curve and must train."""
    for i, stats in enumerate(cached.curve):
        if i == len(cached.curve) - 1 and cached.stopped not in (None, "on_epoch"):
            break  # fit does not ask on_epoch about an epoch that a limit cut short
        if on_epoch is not None and on_epoch(stats) is True:
            return stopped_at(cached, i + 1)
    return None if cached.stopped == "on_epoch" else cached


def cached_fit(cache: ResultCache, real_fit: Callable[..., FitResult]) -> Callable[..., FitResult]:
    def fit(model: Any, data: Any, budget: Any = None, config: Any = None,
            on_epoch: Callable[[EpochStats], Any] | None = None, **kw: Any) -> FitResult:
        key, cached, inner = CURRENT["key"], cache.get(CURRENT["key"]), on_epoch
        if cached is not None:
            result = replay(cached, on_epoch)
            if result is not None:
                cache.count_hit()
                return result
            shown = len(cached.curve)  # epochs on_epoch has seen and let pass: not again
            inner = lambda s: False if s.epoch <= shown else on_epoch(s)  # noqa: E731
        result = real_fit(model, data, budget, config, on_epoch=inner, **kw)
        cache.put(key, result)
        return result

    return fit


def install_cache(directory: Path) -> None:
    """In this worker process only: trials fit through the cache."""
    from nas.search import objective

    cache, run = ResultCache(directory), objective.Objective._run

    def keyed_run(self: objective.Objective, trial: Any, spec: Any) -> Any:
        CURRENT["key"] = f"{spec.content_hash()}-{self.settings.budget_key()}"
        return run(self, trial, spec)

    objective.Objective._run = keyed_run  # type: ignore[method-assign]
    objective.fit = cached_fit(cache, objective.fit)  # type: ignore[assignment]


# --- running the studies -----------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One study of the benchmark."""

    sampler: str  # as given: NAME or NAME@vN
    seed: int

    @property
    def registry_name(self) -> str:
        return self.sampler.split("@")[0]

    @property
    def scheme(self) -> int | None:
        return int(self.sampler.split("@v")[1]) if "@v" in self.sampler else None

    @property
    def study(self) -> str:
        return f"{self.sampler.replace('@', '-')}-seed{self.seed}"


def bench_worker(req: SearchRequest, index: int, parent: int, cache_dir: str | None) -> None:
    """One worker process of a study (as nas.pool runs them), with the cache."""
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        die_with_parent(parent)
        if cache_dir:
            install_cache(Path(cache_dir))
        run_worker(SearchWork(req).for_worker(index), notify=print)
    except (Terminated, KeyboardInterrupt):
        raise SystemExit(143) from None
    except UserError as e:
        print(f"worker {index} of {req.study}: error: {e}", flush=True)
        raise SystemExit(2) from None


def run_study(job: Job, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Creates (or resumes) the job's study, runs its workers to the target, returns figures."""
    req = SearchRequest(
        space=load_space(args.space), trials=args.trials, study=job.study,
        storage=f"sqlite:///{workdir / (job.study + '.db')}", sampler=job.registry_name,
        epochs=args.epochs, subset=args.subset, batch_size=args.batch_size, sampler_seed=job.seed,
        device="cpu")
    start = time.perf_counter()
    study, _ = open_search_study(req)
    if job.scheme is not None and not study.trials:
        StudySettings(sampling=job.scheme).write(study)
    cache = None if args.no_cache else str(args.cache or workdir / "cache")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=bench_worker, args=(req, i, os.getpid(), cache))
             for i in range(args.jobs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit(f"{job.study}: workers exited with {[p.exitcode for p in procs]}")
    figures = study_figures(study_trials(study), args.trials, args.reference)
    figures.update(sampler=job.sampler, seed=job.seed, wall_s=time.perf_counter() - start)
    print(f"[{time.strftime('%H:%M:%S')}] {job.study}: hypervolume {figures['hv'][-1]:.4f}, "
          f"best {figures['best']:.4f}, {figures['evaluated']} architectures trained, "
          f"{figures['wall_s']:.0f} s", flush=True)
    return figures


# --- figures -----------------------------------------------------------------------------------

def counted(trials: list[StudyTrial]) -> list[StudyTrial]:
    """The trials that count towards the target, by number."""
    return [t for t in trials if t.state in FINISHED]


def point(t: StudyTrial) -> tuple[float, float]:
    return (1.0 - (t.record.val_accuracy or 0.0), math.log10(t.record.params or 1))


def study_figures(trials: list[StudyTrial], target: int, reference: tuple[float, float],
                  ) -> dict[str, Any]:
    """Hypervolume after each of the first `target` counted trials, and the study's totals."""
    done = counted(trials)[:target]
    hv = [hypervolume([point(t) for t in done[:n] if t.scored], reference)
          for n in range(1, len(done) + 1)]
    trained = [t for t in trials if t.trained]
    return {
        "hv": hv,
        "points": [[i + 1, *point(t)] for i, t in enumerate(done) if t.scored],  # n, error, log p
        "best": max((t.record.val_accuracy or 0.0 for t in done if t.scored), default=0.0),
        "evaluated": sum(t.evaluated for t in done),
        "reused": sum(t.reused for t in trials),
        "early_stopped": sum(t.state.name == "PRUNED" for t in done),
        "trials": len(trials),
        "train_s": sum(t.record.wall_time_s or 0.0 for t in trained if not t.reused),
    }


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(studies: list[dict[str, Any]], samplers: list[str], target: int,
              ) -> dict[str, dict[str, Any]]:
    """Per sampler: mean and sd of the hypervolume after each trial, over seeds, and totals."""
    out: dict[str, dict[str, Any]] = {}
    for name in samplers:
        runs = [s for s in studies if s["sampler"] == name]
        n = min(len(s["hv"]) for s in runs)
        curve = [mean_sd([s["hv"][i] for s in runs]) for i in range(n)]
        out[name] = {
            "seeds": len(runs), "mean": [m for m, _ in curve], "sd": [d for _, d in curve],
            "best": mean_sd([s["best"] for s in runs]),
            **{k: statistics.fmean(s[k] for s in runs)
               for k in ("evaluated", "reused", "early_stopped", "train_s")},
        }
    goal = out["random"]["mean"][target - 1] if "random" in out else None
    for figures in out.values():
        reached = [i + 1 for i, m in enumerate(figures["mean"]) if goal is not None and m >= goal]
        figures["reaches_random"] = reached[0] if reached else None
    return out


def checkpoints(target: int) -> list[int]:
    return sorted({*range(10, target + 1, 10), target})


def print_table(summary: dict[str, dict[str, Any]], target: int,
                reference: tuple[float, float]) -> None:
    marks = checkpoints(target)
    print("\nhypervolume of the (error, log10 params) front after n trials, mean ± sd over "
          f"seeds; reference point (error, log10 params) = {reference}")
    head = "".join(f"{f'n={n}':>15}" for n in marks)
    print(f"{'sampler':<12}{head}{'reaches random':>16}{'best acc':>16}"
          f"{'trained':>9}{'reused':>8}{'stopped':>9}")
    for name, f in summary.items():
        cells = "".join(f"{f['mean'][n - 1]:>8.3f} ± {f['sd'][n - 1]:<4.3f}" for n in marks)
        reach = "never" if f["reaches_random"] is None else f"n={f['reaches_random']}"
        best = f"{f['best'][0]:.4f} ± {f['best'][1]:.4f}"
        print(f"{name:<12}{cells}{reach:>16}{best:>16}{f['evaluated']:>9.1f}"
              f"{f['reused']:>8.1f}{f['early_stopped']:>9.1f}")
    print(f"reaches random: first n at which the mean hypervolume reaches the random "
          f"sampler's at n={target}; trained: distinct architectures trained in the study, "
          "reused: trials that re-proposed one, stopped: trials stopped early")


def write_html(summary: dict[str, dict[str, Any]], path: Path,
               reference: tuple[float, float]) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, f in summary.items():
        x = list(range(1, len(f["mean"]) + 1))
        low = [m - d for m, d in zip(f["mean"], f["sd"])]
        high = [m + d for m, d in zip(f["mean"], f["sd"])]
        fig.add_scatter(x=x + x[::-1], y=high + low[::-1], fill="toself", opacity=0.15,
                        line={"width": 0}, showlegend=False, hoverinfo="skip", name=name)
        fig.add_scatter(x=x, y=f["mean"], mode="lines", name=f"{name} ({f['seeds']} seeds)")
    fig.update_layout(title=f"Hypervolume of the (error, log10 params) front, reference "
                      f"{reference}: mean ± sd over seeds", xaxis_title="trials",
                      yaxis_title="hypervolume")
    fig.write_html(path, include_plotlyjs=True)


# --- main --------------------------------------------------------------------------------------

def default_samplers() -> list[str]:
    """Every registered sampler, random first (TPE, GP and NSGA-II start with the random
    sampler's stream of the same seed: with the cache those trials are trained once), and the
    old default."""
    others = [s for s in SAMPLERS if s not in ("random", OLD_DEFAULT.split("@")[0])]
    return ["random", *others, OLD_DEFAULT]


def reference_point(text: str) -> tuple[float, float]:
    error, log_params = (float(x) for x in text.split(","))
    return error, log_params


def parse_args() -> argparse.Namespace:
    cpu = search_budget("cpu")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", default="resnext")
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3, help="sampler seeds 0 .. N-1")
    p.add_argument("--samplers", default=",".join(default_samplers()), help="comma-separated")
    p.add_argument("--jobs", type=int, default=auto_jobs("cpu"), help="workers per study")
    p.add_argument("--parallel", type=int, default=2, help="studies run at the same time")
    p.add_argument("--epochs", type=int, default=cpu["epochs"])
    p.add_argument("--subset", type=float, default=cpu["subset"])
    p.add_argument("--batch-size", type=int, default=cpu["batch_size"])
    p.add_argument("--reference", type=reference_point, default=REFERENCE,
                   help=f"hypervolume reference point ERROR,LOG10_PARAMS (default "
                        f"{','.join(map(str, REFERENCE))})")
    p.add_argument("--out", type=Path, default=Path("studies/benchmarks/samplers.json"),
                   help="figures as JSON; the plot beside it as .html")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the studies and the cache here (a re-run resumes them)")
    p.add_argument("--cache", type=Path, default=None,
                   help="the result cache's folder (default: in the workdir); may be shared")
    p.add_argument("--no-cache", action="store_true", help="train every study's trials itself")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    for s in samplers:
        check_sampler(s.split("@")[0])
    # sampler by sampler: studies that run at the same time have different seeds, so the start-up
    # trials that TPE's seed shares with the random sampler's are trained once (the cache)
    jobs = [Job(s, seed) for s in samplers for seed in range(args.seeds)]
    loads, start = [], time.perf_counter()
    kept_cache = args.cache or (args.workdir / "cache" if args.workdir else None)
    hits_before = 0 if args.no_cache or kept_cache is None else ResultCache(kept_cache).hits()
    print(f"{len(jobs)} studies ({', '.join(samplers)} x {args.seeds} seeds) of {args.trials} "
          f"trials on {args.space}: {args.epochs} epochs, subset {args.subset}, batch "
          f"{args.batch_size}, {args.jobs} workers each, {args.parallel} studies at a time; "
          f"result cache {'off' if args.no_cache else 'on (benchmark only)'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(args.parallel) as pool:
            futures = [pool.submit(run_study, job, args, workdir) for job in jobs]
            while not all(f.done() for f in futures):
                loads.append(os.getloadavg()[0])
                time.sleep(15)
            studies = [f.result() for f in futures]
        cache = None if args.no_cache else ResultCache(args.cache or workdir / "cache")
        hits = 0 if cache is None else cache.hits() - hits_before
    wall = time.perf_counter() - start
    summary = summarise(studies, samplers, args.trials)
    print_table(summary, args.trials, args.reference)
    load = statistics.fmean(loads) if loads else os.getloadavg()[0]
    print(f"wall time {wall / 60:.1f} min on {os.cpu_count()} cores, mean load average "
          f"{load:.1f}; the benchmark's result cache saved {hits} trainings (benchmark only: "
          "cached results are replayed through early stopping, so trials end as without it)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "reference": args.reference, "wall_s": wall, "mean_load": load, "cache_hits": hits,
        "samplers": summary, "studies": studies}, indent=1))
    write_html(summary, args.out.with_suffix(".html"), args.reference)
    print(f"figures: {args.out}, plot: {args.out.with_suffix('.html')}")


if __name__ == "__main__":
    main()
