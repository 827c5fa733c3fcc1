"""Work over many files with every core: chunks mapped over a process pool, with progress."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
# what a caller is told as work advances: (phase, items done, items in all)
Progress = Callable[[str, int, int], None]


def worker_count(chunks: int) -> int:
    """Processes to use: the cores this process may run on ($NAS_DATA_WORKERS to change), never
    more than there are chunks, and 1 inside a daemon process (which may not have children)."""
    wanted = os.environ.get("NAS_DATA_WORKERS")
    cores = int(wanted) if wanted else len(os.sched_getaffinity(0))
    if mp.current_process().daemon:
        return 1
    return max(1, min(cores, chunks))


def map_chunks(func: Callable[[Sequence[T]], list[R]], items: Sequence[T], phase: str,
               progress: Progress | None = None, chunk_size: int = 256) -> list[R]:
    """func over `items` in chunks, in worker processes when there are several; results in
    the order of `items`. `func` must be a module-level function (it is sent to workers)."""
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    report = progress or (lambda phase, done, total: None)
    report(phase, 0, len(items))
    workers = worker_count(len(chunks))
    if workers == 1:
        results: list[list[R]] = []
        for chunk in chunks:
            results.append(func(chunk))
            report(phase, sum(map(len, results)), len(items))
        return [r for part in results for r in part]
    return pooled(func, chunks, workers, phase, report, len(items))


def pooled(func: Callable[[Sequence[T]], list[R]], chunks: list[Sequence[T]], workers: int,
           phase: str, report: Progress, total: int) -> list[R]:
    """The chunks over a pool of forked processes (cheap to start: no re-import)."""
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    parts: dict[int, list[R]] = {}
    done = 0
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures: dict[Any, int] = {pool.submit(func, c): i for i, c in enumerate(chunks)}
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    parts[futures[future]] = future.result()
                    done += len(chunks[futures[future]])
                report(phase, done, total)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [r for i in range(len(chunks)) for r in parts[i]]


__all__ = ["Progress", "map_chunks", "worker_count"]
