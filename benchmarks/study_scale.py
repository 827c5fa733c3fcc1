"""How a search's per-trial overhead and the read commands scale with the trials a study holds.

For each storage (a SQLite file; PostgreSQL with --postgres URL) and each size N, a study is
grown to N finished trials whose attributes are those real trials write (a spec of the space, its
hash, costs, curves, environment, worker, constraints). Then, in --rounds rounds that take every
size in turn (a slower minute of a shared machine falls on all sizes alike), `nas search` runs
a few real trials on each (one worker, a tiny training budget; --trials in all) and the read
commands run on it as a user runs them.

Printed per N: start-up (opening the study and the data until the first trial, the first
round's: later rounds find the study cached), the non-training time per trial (a trial's wall
time from ask to tell less its training, median over the rounds), the training time, and the
median wall time of each read command (a subprocess, as typed).

    python benchmarks/study_scale.py                      # SQLite, N = 0, 500, 2000, 5000
    python benchmarks/study_scale.py --postgres postgresql://nas@127.0.0.1:5432/nas
    python benchmarks/study_scale.py --sampler random     # without TPE's own O(N) cost
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from nas.pool import TrialEvent
from nas.search import objective as objective_module
from nas.search.fresh import architecture_key
from nas.search.request import SearchRequest, trial_settings
from nas.search.resume import open_search_study
from nas.search.space import SAMPLING, load_space
from nas.search.work import search
from nas.study.record import TrialRecord, WorkerId

DATA_FIELDS = {"in_channels": 1, "num_classes": 10, "input_size": 28}


def grown_trials(space_name: str, n: int, budget_key: str, seed: int = 0) -> list[Any]:
    """`n` finished trials of distinct architectures, attributes as real trials write them."""
    space = load_space(space_name)
    key = architecture_key(space, SAMPLING)
    sampler = optuna.samplers.RandomSampler(seed=seed)
    scratch = optuna.create_study(sampler=sampler)
    rng, seen, out = random.Random(seed), set(), []
    env = {"python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1", "device": "cpu",
           "platform": "Linux", "device_name": "cpu", "threads": 1, "cpu_count": 2,
           "cuda": None, "cudnn": None}
    worker = WorkerId(host="grown", boot="b", namespace="n", pid=1, started=1)
    while len(out) < n:
        trial = scratch.ask()
        values = space.sample(trial, SAMPLING)
        arch = key(trial.params)
        if arch in seen:
            continue
        seen.add(arch)
        spec = space.to_spec(values, DATA_FIELDS)
        params = rng.randint(1_000, 200_000)
        curve = sorted(rng.uniform(0.5, 0.9) for _ in range(2))
        pruned = rng.random() < 0.2
        record = TrialRecord(
            spec=spec.model_dump(mode="json"), spec_hash=spec.content_hash(), family=spec.family,
            budget_key=budget_key, params=params, macs=params * 150, activations=params * 3,
            peak_memory_bytes=params * 40, training_memory_bytes=params * 900,
            latency_ms=rng.uniform(0.5, 5), trained=True, val_accuracy=curve[-1],
            curve=curve[:1] if pruned else curve, loss_curve=[1.2, 0.6][:1 if pruned else 2],
            wall_time_s=rng.uniform(5, 20), images_per_second=rng.uniform(500, 3000),
            epochs_run=1 if pruned else 2, steps=100, seed=0, device="cpu", environment=env,
            stopped="on_epoch" if pruned else None, resumed_epochs=0, worker=worker,
            reason="early_stopped: epoch 1 ..." if pruned else None)
        out.append(optuna.trial.create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
            values=None if pruned else [curve[-1], float(params)], params=trial.params,
            distributions=trial.distributions, user_attrs=record.to_attrs(),
            system_attrs={"constraints:max_memory": -1e9}))
        scratch.tell(trial, 0.0)
    return out


def request(url: str, study: str, args: argparse.Namespace, trials: int) -> SearchRequest:
    return SearchRequest(space=load_space(args.space), trials=trials, study=study, storage=url,
                         sampler=args.sampler, epochs=1, subset=args.subset, batch_size=64,
                         device="cpu", early_stop=False)


class Timer:
    """Per-trial wall time (ask to tell, through the trial events) and training time."""

    def __init__(self) -> None:
        self.fit_s: list[float] = []
        self.ends: list[float] = []
        self.first_start: float | None = None
        real_fit = objective_module.fit

        def timed_fit(*a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return real_fit(*a, **kw)
            finally:
                self.fit_s.append(time.perf_counter() - start)

        objective_module.fit = timed_fit  # type: ignore[assignment]
        self.real_fit = real_fit

    def restore(self) -> None:
        objective_module.fit = self.real_fit  # type: ignore[assignment]

    def on_start(self, study: optuna.Study, settings: dict[str, Any]) -> None:
        self.first_start = time.perf_counter()

    def on_event(self, event: TrialEvent) -> None:
        self.ends.append(time.perf_counter())

    def overhead(self) -> list[float]:
        """Each trial's wall time less its training (the first measured from the start)."""
        starts = [self.first_start or 0.0, *self.ends[:-1]]
        walls = [end - start for start, end in zip(starts, self.ends)]
        return [w - f for w, f in zip(walls, self.fit_s)]


def run_trials(url: str, study: str, args: argparse.Namespace, target: int,
               ) -> dict[str, Any]:
    """Real trials until the study has `target` trained ones; start-up and each trial's
    overhead and training time."""
    timer = Timer()
    started = time.perf_counter()
    try:
        search(request(url, study, args, target), on_start=timer.on_start,
               on_event=timer.on_event)
    finally:
        timer.restore()
    return {"startup_s": (timer.first_start or started) - started,
            "overhead": timer.overhead(), "fit": list(timer.fit_s)}


def timed(argv: list[str], env: dict[str, str], refusal_ok: bool = False) -> float:
    """Wall time of one nas command (a subprocess, as typed); fails loudly if it fails (a
    one-line refusal is fine with `refusal_ok`: analyze refuses a study under 16 models)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nas", *argv], capture_output=True, text=True,
                          env=env, timeout=900)
    if done.returncode != 0 and not (refusal_ok and done.returncode == 2):
        raise SystemExit(f"nas {' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def dashboard_launch(url: str, study: str, env: dict[str, str]) -> float:
    """Seconds from `nas dashboard` to its API listing the study's trials."""
    with socket.socket() as free:  # a port nothing else listens on (a test suite may run)
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", "--study", study,
                             "--storage", url, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        while time.perf_counter() - start < 300:
            try:
                with urllib.request.urlopen(base, timeout=60) as listing:
                    body = json.load(listing)
                studies = (body.get("studies") or body.get("study_summaries") or []
                           if isinstance(body, dict) else body)  # the key differs by version
                ids = [s["study_id"] for s in studies if s["study_name"] == study]
                with urllib.request.urlopen(f"{base}/{ids[0]}", timeout=300):
                    return time.perf_counter() - start  # the study's trials, as the page loads
            except OSError:
                time.sleep(0.2)
        return float("nan")
    finally:
        proc.terminate()
        proc.wait()


def reads(url: str, study: str, folder: Path, env: dict[str, str]) -> dict[str, float]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    common = ["--study", study, "--storage", url]
    out["report"] = timed(["report", *common, "--out", str(folder / f"{study}.html"),
                           "--overwrite"], env)
    out["export"] = timed(["export", *common, "--pareto", "--out", str(folder / study)], env)
    out["analyze"] = timed(["analyze", *common, "--allow-nonrandom", "--json"], env,
                           refusal_ok=True)
    out["status"] = timed(["status", *common, "--json"], env) if has_command("status") else \
        float("nan")
    out["dashboard"] = dashboard_launch(url, study, env)
    return out


def has_command(name: str) -> bool:
    done = subprocess.run([sys.executable, "-m", "nas", name, "--help"], capture_output=True)
    return done.returncode == 0


def grow(url: str, n: int, args: argparse.Namespace) -> None:
    """Study scale-n with n finished trials of distinct architectures."""
    study = f"scale-{n}"
    req = request(url, study, args, 1)
    opened, settings = open_search_study(req)
    budget_key = trial_settings(req, settings).budget_key()  # as the search's trials have it
    grown = grown_trials(args.space, n, budget_key)
    for i in range(0, len(grown), 500):
        opened.add_trials(grown[i:i + 500])


def trained(url: str, study: str) -> int:
    """Trials of the study that trained a model (what a search's target counts); 0 if none."""
    from nas.study.queries import trained_count

    try:
        return trained_count(optuna.load_study(study_name=study, storage=url))
    except KeyError:
        return 0


def settle(url: str) -> None:
    """PostgreSQL's statistics brought up to date after the bulk inserts (autovacuum would do
    it in the middle of the measurements otherwise)."""
    if url.startswith("postgresql"):
        engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as db:
            db.exec_driver_sql("VACUUM ANALYZE")
        engine.dispose()


def delete_studies(url: str, names: list[str]) -> None:
    """The benchmark's own studies from an earlier run, so that each size starts from N."""
    storage = optuna.storages.RDBStorage(url)
    present = {s.study_name for s in optuna.get_all_study_summaries(storage,
                                                                    include_best_trial=False)}
    for name in sorted(present & set(names)):
        optuna.delete_study(study_name=name, storage=storage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,500,2000,5000")
    parser.add_argument("--trials", type=int, default=12, help="timed trials per size")
    parser.add_argument("--rounds", type=int, default=3, help="the sizes are measured in turn "
                        "this many times (the trials and the reads split between them)")
    parser.add_argument("--space", default="resnext")
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--subset", type=float, default=0.005)
    parser.add_argument("--postgres", help="also on this PostgreSQL database (the benchmark's "
                        "studies, scale-N, are deleted there first, and nothing else; VACUUM "
                        "ANALYZE then runs on the database)")
    parser.add_argument("--storages", help="which of sqlite,postgresql to run (default: "
                        "sqlite, and postgresql with --postgres)")
    parser.add_argument("--keep", action="store_true", help="PostgreSQL: keep the studies of "
                        "an earlier run that hold N trained trials already (growing them takes "
                        "minutes); a study holding fewer is grown by N more")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="nas-scale-"))
    storages = {"sqlite": f"sqlite:///{folder / 'scale.db'}"}
    if args.postgres:
        storages["postgresql"] = args.postgres
    if args.storages:
        wanted = args.storages.split(",")
        if not set(wanted) <= set(storages):
            parser.error(f"--storages {args.storages}: of {', '.join(storages)} "
                         "(postgresql needs --postgres)")
        storages = {k: v for k, v in storages.items() if k in wanted}
    sizes = [int(s) for s in args.sizes.split(",")]
    if "postgresql" in storages and not args.keep:
        delete_studies(storages["postgresql"], [f"scale-{n}" for n in sizes])
    for kind, url in storages.items():
        for n in sizes:
            if args.keep and trained(url, f"scale-{n}") >= n:
                print(f"kept {kind} scale-{n}", flush=True)
                continue
            grow(url, n, args)
            print(f"grew {kind} scale-{n}", flush=True)
        settle(url)
    # measured in rounds, every size in turn in each, so that a slower minute of a shared
    # machine falls on all sizes alike: the medians compare like with like
    per_round = max(1, math.ceil(args.trials / args.rounds))  # at least --trials in all
    samples: dict[tuple[str, int], dict[str, list[float]]] = {}
    targets = {(kind, n): trained(url, f"scale-{n}") for kind, url in storages.items()
               for n in sizes}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for round_ in range(args.rounds):
        for kind, url in storages.items():
            for n in sizes:
                key, study = (kind, n), f"scale-{n}"
                targets[key] += per_round
                got = run_trials(url, study, args, targets[key])
                out = samples.setdefault(key, {"startup_s": [got["startup_s"]]})
                out.setdefault("overhead_s", []).extend(got["overhead"])
                out.setdefault("fit_s", []).extend(got["fit"])
                for name, seconds in reads(url, study, folder / kind / str(round_),
                                           env).items():
                    out.setdefault(name, []).append(seconds)
                print(f"round {round_ + 1}/{args.rounds} {kind} n={n}: overhead "
                      f"{statistics.median(got['overhead']):.3f} s", flush=True)
    rows = []
    for (kind, n), out in samples.items():
        row = {"storage": kind, "n": n, "trials": len(out["overhead_s"]),
               **{k: statistics.median(v) for k, v in out.items()}}
        row["startup_s"] = out["startup_s"][0]  # the first, cold read; later ones are cached
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nspace {args.space}, sampler {args.sampler}, {args.trials} trials per size in "
          f"{args.rounds} rounds "
          f"(1 epoch on {args.subset:g} of the split); seconds; load {os.getloadavg()[0]:.1f}")
    cols = ["storage", "n", "startup_s", "overhead_s", "fit_s", "report", "export", "analyze",
            "status", "dashboard"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) if isinstance(row[c], (str, int)) else
                                f"{row[c]:.2f}" for c in cols) + " |")
    for kind in {r["storage"] for r in rows}:
        mine = [r for r in rows if r["storage"] == kind]
        low, high = mine[0], mine[-1]
        print(f"{kind}: overhead per trial at n={high['n']} / n={low['n']}: "
              f"{high['overhead_s'] / low['overhead_s']:.2f}x")


if __name__ == "__main__":
    main()
