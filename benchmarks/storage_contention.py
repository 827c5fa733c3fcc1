"""SQLite (WAL + busy timeout, as nas opens it) against Optuna's JournalStorage under N workers.

Each worker runs trials that write like a nas trial does (a dozen user attributes, a per-epoch
curve, heartbeats on), with a tiny objective so the storage is the bottleneck. Prints trials/s,
errors and p95 trial latency side by side. Run: python benchmarks/storage_contention.py
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nas.study.storage import open_storage

ATTRS = {f"attr_{i}": i for i in range(12)}


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1, 1)
    for k, v in ATTRS.items():
        trial.set_user_attr(k, v)
    for epoch in range(3):
        trial.set_user_attr("curve", [0.5] * (epoch + 1))
    return x * x


def storage_for(kind: str, where: Path):  # noqa: ANN201
    if kind == "sqlite":
        return open_storage(f"sqlite:///{where / 's.db'}")
    return JournalStorage(JournalFileBackend(str(where / "journal.log")))


def worker(kind: str, where: Path, study: str, trials: int, out: mp.Queue) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    s = optuna.load_study(study_name=study, storage=storage_for(kind, where))
    times, errors = [], 0
    for _ in range(trials):
        start = time.perf_counter()
        try:
            s.optimize(objective, n_trials=1)
        except Exception:  # noqa: BLE001  counted, not hidden
            errors += 1
        times.append(time.perf_counter() - start)
    out.put((times, errors))


def run(kind: str, workers: int, trials: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        optuna.create_study(study_name="bench", storage=storage_for(kind, where))
        q: mp.Queue = mp.get_context("spawn").Queue()
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=worker, args=(kind, where, "bench", trials, q))
                 for _ in range(workers)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        results = [q.get() for _ in procs]
        for p in procs:
            p.join()
        wall = time.perf_counter() - start
        done = len(optuna.load_study(study_name="bench", storage=storage_for(kind, where))
                   .get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    lat = sorted(t for times, _ in results for t in times)
    return {"trials_per_s": done / wall, "complete": done, "errors": sum(e for _, e in results),
            "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
            "median_ms": 1000 * statistics.median(lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--trials", type=int, default=40, help="per worker")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"{'storage':<8} {'workers':>7} {'trials/s':>9} {'complete':>9} {'errors':>7} "
          f"{'median ms':>10} {'p95 ms':>8}")
    for n in args.workers:
        for kind in ("sqlite", "journal"):
            r = run(kind, n, args.trials)
            print(f"{kind:<8} {n:>7} {r['trials_per_s']:>9.1f} {r['complete']:>9} "
                  f"{r['errors']:>7} {r['median_ms']:>10.1f} {r['p95_ms']:>8.1f}")


if __name__ == "__main__":
    main()
