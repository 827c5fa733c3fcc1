"""Several worker processes on one study: `--trials` stays the study's total; a worker that
dies takes none of the others with it, and every worker dies with its parent."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
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


def raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM handler: unwinds like Ctrl-C (the running trial is failed) and exits 143."""
    raise Terminated()


def die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (even by SIGKILL): no orphan workers."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise Terminated()


def _worker(req: SearchRequest, index: int, parent: int) -> None:
    """One worker process with its own storage connection."""
    signal.signal(signal.SIGTERM, raise_terminated)
    req = replace(req, device=worker_device(req.device, index), worker_index=index)
    try:
        die_with_parent(parent)
        run_search(req)
    except Terminated:
        raise SystemExit(143) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except UserError as e:
        print(f"nas: worker {index}: error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


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
) -> optuna.Study:
    """N worker processes on one study; `--trials` stays the study's total."""
    from nas.data import load_data

    check_request(req)
    study, budget = open_search_study(req)  # created here once, so workers only resume it
    load_data(budget["dataset"], req.data_dir, "cpu", seed=budget["seed"])  # fail here, once
    if on_start:
        on_start(study, budget)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(req, i, os.getpid()), daemon=False)
             for i in range(jobs)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            if poll:
                poll(study)
            if any(p.exitcode == 2 for p in procs):  # a worker stopped on an error: all stop
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        stop_all(procs)
        raise
    stop_all(procs)
    codes = [p.exitcode for p in procs]
    if poll:
        poll(study)
    if 2 in codes:
        worker = codes.index(2)
        raise SearchStopped(f"worker {worker} stopped on an error (last failure: "
                            f"{last_reason(study)}); the other workers were stopped too. "
                            f"See `nas report --study {req.study_name}`, fix the cause and "
                            f"re-run the same command")
    if any(codes):
        raise SearchStopped(f"workers exited with codes {codes}; re-run the same command "
                            f"to resume the study")
    return study


__all__ = ["raise_terminated", "run_workers"]
