"""The worker pool: whatever trains trials (a search, a confirmation, a scaling search) hands it
a `Work`, and the pool runs it in this process or in N spawned worker processes on one study.

A worker sets its threads, opens its session (the study, its data, the objective of a trial),
runs trials until the session is done, and stops after `max_failures` consecutive failures. The
pool shows each worker's notices once, passes every finished trial to the caller as a
`TrialEvent`, stops every worker on the first one's error (one line), and turns what the
workers did into one outcome: return, `PoolStopped` (exit 2), or an interrupt (130 / 143).
A worker that dies takes none of the others with it, and every worker dies with its parent.
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from nas.errors import Terminated, UserError
from nas.pool.signals import die_with_parent, leaving, unwind_on_sigterm
from nas.pool.trial_loop import FailureGuard, Session, TrialEvent
from nas.study import study_trials
from nas.study.outage import StorageBroken, StorageUnavailable

Notify = Callable[[str], None]
OnEvent = Callable[[TrialEvent], None]


class PoolStopped(UserError):
    """The workers stopped before their work was done (failures in a row, a worker's error)."""


class Work(Protocol):
    """What a pool's workers do. Picklable: each spawned worker gets a copy."""

    noun: str  # what one trial is, in messages: "trial", "confirmation run"
    stop_hint: str  # said after "stopping" when failures stop the work, e.g. where to look
    device: str
    threads: int
    max_failures: int

    def for_worker(self, index: int) -> Work:
        """This work as worker `index` does it (its device, its sampler stream)."""
        ...

    def open_session(self, notify: Notify, worker: bool, opened: Any = None) -> Session:
        """Opens the study and loads the data; `worker`: wait for the storage to answer;
        `opened`: the storage this process has open already (one worker in the caller's
        process reuses it, and the trials it has read)."""
        ...


class RequestWork:
    """A Work whose device, threads and failure limit are its request's (`self.req`), and whose
    worker `index` runs on that device's share (`nas.device.worker_device`)."""

    req: Any

    @property
    def device(self) -> str:
        return self.req.device

    @property
    def threads(self) -> int:
        return self.req.threads

    @property
    def max_failures(self) -> int:
        return self.req.max_failures

    def for_worker(self, index: int) -> Any:
        from dataclasses import replace

        from nas.device import worker_device

        return replace(self, req=replace(self.req, device=worker_device(self.req.device, index)))


def last_reason(study: optuna.Study) -> str:
    """The reason of the study's latest failed trial."""
    failed = study_trials(study, (TrialState.FAIL,))
    return (failed[-1].record.reason or "unknown") if failed else "unknown"


def run_worker(work: Work, notify: Notify, on_event: OnEvent | None = None,
               worker: bool = False, opened: Any = None) -> None:
    """One worker's life: threads, session (study, data), trials until done; PoolStopped after
    `work.max_failures` consecutive failures."""
    import torch

    if not work.device.startswith("cuda"):
        torch.set_num_threads(work.threads)
    session = work.open_session(notify, worker, opened)
    gc.freeze()  # long-lived objects (torch, the data): the collection after each trial skips them
    guard = FailureGuard(work.max_failures)
    session.callbacks.append(guard)
    if on_event is not None:
        session.callbacks.append(lambda _study, trial: on_event(TrialEvent.of(trial)))
    session.run(should_stop=lambda: guard.tripped)
    if guard.tripped:
        raise PoolStopped(f"{guard.count} consecutive {work.noun}s failed (last reason: "
                          f"{last_reason(session.study)}); stopping{work.stop_hint}")


def _worker_process(work: Work, index: int, parent: int, messages: mp.Queue) -> None:
    """A spawned worker: its notices, trial events and error (one line) go to the parent, which
    shows each notice once however many workers send it."""
    unwind_on_sigterm()
    try:
        die_with_parent(parent)
        run_worker(work.for_worker(index), lambda text: messages.put(("notice", text)),
                   lambda event: messages.put(("event", event)), worker=True)
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
    """What the workers said: errors kept for the end, trial events passed on, and notices shown
    once per outage (every worker sees the same outage, each in its own words)."""

    def __init__(self, channel: mp.Queue, notify: Notify | None, on_event: OnEvent | None,
                 quiet_s: float = 30.0) -> None:
        self.queue, self.notify, self.on_event, self.quiet_s = channel, notify, on_event, quiet_s
        self.errors: list[str] = []
        self.last_notice = -math.inf

    def drain(self) -> None:
        while True:
            try:
                kind, item = self.queue.get_nowait()
            except queue.Empty:
                return
            if kind == "error":
                self.errors.append(item)
            elif kind == "event":
                if self.on_event is not None:
                    self.on_event(item)
            else:
                if time.monotonic() - self.last_notice > self.quiet_s and self.notify:
                    self.notify(item)
                self.last_notice = time.monotonic()


def run_pool(work: Work, jobs: int, study: optuna.Study, poll: Callable[[optuna.Study], None]
             | None = None, notify: Notify | None = None, on_event: OnEvent | None = None,
             ) -> None:
    """Runs `work` in `jobs` workers on `study` (opened by the caller, who checked the request):
    in this process for one job, else in spawned processes. `poll(study)` refreshes a display,
    `on_event` hears of every finished trial. The first worker error stops them all, in one
    line; an interrupt of the parent stops the workers and propagates."""
    notify = notify or (lambda text: None)
    if jobs == 1:
        def heard(event: TrialEvent) -> None:
            if on_event is not None:
                on_event(event)
            quietly(poll, study)

        run_worker(work.for_worker(0), notify, heard, opened=study._storage)  # noqa: SLF001
        return
    ctx = mp.get_context("spawn")
    messages = Messages(ctx.Queue(), notify, on_event)
    procs = [ctx.Process(target=_worker_process, args=(work, i, os.getpid(), messages.queue),
                         daemon=False) for i in range(jobs)]
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
    quietly(poll, study)
    outcome([p.exitcode for p in procs], messages.errors, study)


def stop_all(procs: list[Any]) -> None:
    """SIGTERM to the workers still running (each fails its trial and exits), then waits."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join()


def outcome(codes: list[int | None], errors: list[str], study: optuna.Study) -> None:
    """Nothing when every worker ended well; else PoolStopped in one line for all of them."""
    if 2 in codes:
        raise PoolStopped(stop_message(errors, study))
    if any(codes):
        raise PoolStopped(f"workers exited with codes {codes}; re-run the same command to resume "
                          f"the study")


def quietly(poll: Callable[[optuna.Study], None] | None, study: optuna.Study) -> None:
    """A progress update, skipped while the storage is down (the workers report outages)."""
    if poll is not None:
        with contextlib.suppress(StorageUnavailable, StorageBroken):
            poll(study)


def stop_message(errors: list[str], study: optuna.Study) -> str:
    """One line for the whole pool: the workers' error, said once."""
    distinct = list(dict.fromkeys(errors))
    if not distinct:
        with contextlib.suppress(StorageUnavailable, StorageBroken):
            distinct = [f"a worker stopped (last failure: {last_reason(study)}); fix the cause "
                        f"and re-run the same command"]
    more = f" (and {len(distinct) - 1} other errors)" if len(distinct) > 1 else ""
    return f"{distinct[0] if distinct else 'a worker stopped'}{more}; the other workers were " \
           f"stopped too"


__all__ = ["Messages", "PoolStopped", "RequestWork", "Work", "last_reason", "run_pool",
           "run_worker"]
