"""Several worker processes on one study: `--trials` stays the study's total; a worker that
dies takes none of the others with it, and every worker dies with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna

from nas.device import worker_device
from nas.errors import Terminated, UserError
from nas.search.run import (
    SearchRequest,
    SearchStopped,
    check_request,
    last_reason,
    open_search_study,
    run_search,
)
from nas.study.outage import StorageBroken, StorageUnavailable

_leaving = False  # this process is on its way out: a SIGTERM must not interrupt that


def raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM handler: unwinds like Ctrl-C (the running trial is failed) and exits 143, once.
    A SIGTERM that arrives while the process is already leaving (unwinding from an earlier one,
    or a worker reporting its error while the parent stops the others) is ignored: it would
    otherwise interrupt the exit with a 'Terminated' traceback."""
    global _leaving
    if _leaving:
        return
    _leaving = True
    raise Terminated()


def unwind_on_sigterm() -> None:
    """Installs `raise_terminated` for SIGTERM, this process not leaving yet."""
    global _leaving
    _leaving = False
    signal.signal(signal.SIGTERM, raise_terminated)


def leaving() -> None:
    """From here on this process is exiting: SIGTERMs are ignored."""
    global _leaving
    _leaving = True


def die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (even by SIGKILL): no orphan workers."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise Terminated()


WorkerTarget = Callable[[Any, int, Callable[[str], None]], None]


def search_worker(req: SearchRequest, index: int, notify: Callable[[str], None]) -> None:
    """A search worker: trials of the shared study until its target is reached."""
    req = replace(req, device=worker_device(req.device, index), worker_index=index)
    run_search(req, notify=notify, worker=True)


def _worker(target: WorkerTarget, request: Any, index: int, parent: int,
            messages: mp.Queue) -> None:
    """One worker process with its own storage connection; notices and its error (one line)
    go to the parent, which shows each once however many workers send it."""
    unwind_on_sigterm()
    try:
        die_with_parent(parent)
        target(request, index, lambda text: messages.put(("notice", text)))
    except Terminated:
        raise SystemExit(143) from None
    except KeyboardInterrupt:
        leaving()
        raise SystemExit(130) from None
    except UserError as e:
        leaving()  # the parent, told of the error, stops the others and may signal this one
        messages.put(("error", str(e)))
        raise SystemExit(2) from None
    finally:
        leaving()


class Messages:
    """What the workers said: errors kept for the end, and notices shown once per outage
    (every worker sees the same outage, each in its own words: one line for all of them)."""

    def __init__(self, queue: mp.Queue, notify: Callable[[str], None] | None,
                 quiet_s: float = 30.0) -> None:
        self.queue, self.notify, self.quiet_s = queue, notify, quiet_s
        self.errors: list[str] = []
        self.last_notice = -math.inf

    def drain(self) -> None:
        while True:
            try:
                kind, text = self.queue.get_nowait()
            except queue.Empty:
                return
            if kind == "error":
                self.errors.append(text)
                continue
            if time.monotonic() - self.last_notice > self.quiet_s and self.notify:
                self.notify(text)
            self.last_notice = time.monotonic()


def stop_all(procs: list[mp.Process]) -> None:
    """SIGTERM to the workers still running (each fails its trial and exits), then waits."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join()


def run_workers(
    req: SearchRequest, jobs: int, poll: Callable[[optuna.Study], None] | None = None,
    on_start: Callable[[optuna.Study, dict[str, Any]], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> optuna.Study:
    """N worker processes on one study; `--trials` stays the study's total."""
    from nas.data import load_data

    check_request(req)
    # created here once, so workers only resume it; the parent only reads it for the progress
    # bar, so it does not wait long on an outage (the workers do, and say so)
    # the data is found (or refused) here, once, and before a new study is created
    study, budget = open_search_study(
        replace(req, storage_retry=min(req.storage_retry, 2.0)), notify=lambda text: None,
        prepare=lambda b: load_data(b["dataset"], req.data_dir, "cpu", seed=b["seed"]))
    if on_start:
        on_start(study, budget)
    return run_pool(search_worker, req, jobs, study, poll, notify)


def run_pool(target: WorkerTarget, request: Any, jobs: int, study: optuna.Study,
             poll: Callable[[optuna.Study], None] | None = None,
             notify: Callable[[str], None] | None = None) -> optuna.Study:
    """`jobs` processes each running `target(request, index, notify)` on `study` (opened by
    the caller, who checked the request); the first worker error stops them all, in one line.
    `target` must be a module-level function (workers are spawned)."""
    ctx = mp.get_context("spawn")
    messages = Messages(ctx.Queue(), notify)
    procs = [ctx.Process(target=_worker, args=(target, request, i, os.getpid(),
                                               messages.queue), daemon=False)
             for i in range(jobs)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            messages.drain()
            quietly(poll, study)
            if any(p.exitcode == 2 for p in procs):  # a worker stopped on an error: all stop
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        stop_all(procs)
        raise
    stop_all(procs)
    messages.drain()
    codes = [p.exitcode for p in procs]
    quietly(poll, study)
    if 2 in codes:
        raise SearchStopped(stop_message(messages.errors, study))
    if any(codes):
        raise SearchStopped(f"workers exited with codes {codes}; re-run the same command "
                            f"to resume the study")
    return study


def quietly(poll: Callable[[optuna.Study], None] | None, study: optuna.Study) -> None:
    """A progress update, skipped while the storage is down (the workers report outages)."""
    if poll is not None:
        with contextlib.suppress(StorageUnavailable, StorageBroken):
            poll(study)


def stop_message(errors: list[str], study: optuna.Study) -> str:
    """One line for the whole search: the workers' error, said once."""
    distinct = list(dict.fromkeys(errors))
    if not distinct:
        with contextlib.suppress(StorageUnavailable, StorageBroken):
            distinct = [f"a worker stopped (last failure: {last_reason(study)}); fix the cause "
                        f"and re-run the same command"]
    more = f" (and {len(distinct) - 1} other errors)" if len(distinct) > 1 else ""
    return f"{distinct[0] if distinct else 'a worker stopped'}{more}; the other workers were " \
           f"stopped too"


__all__ = ["raise_terminated", "run_pool", "run_workers"]
