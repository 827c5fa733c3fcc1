"""The trial loop: ask, run the objective under a heartbeat, tell; nas's own instead of
`Study.optimize`, so that every outcome is decided by exception type and state, not by the
wording of Optuna's errors, and so that a storage outage cannot lose a finished result.

Before each trial, trials whose worker died are failed and their retry queued: at once for a
dead process on this host, after the heartbeat's grace for other hosts.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, TrialPruned, UpdateFinishedTrialError
from optuna.storages import BaseStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from nas.errors import Terminated
from nas.pool.signals import interrupts_deferred
from nas.study import TrialRecord, write_trial
from nas.study.liveness import fail_dead_trials, this_worker
from nas.study.outage import StorageBroken, StorageUnavailable, backend, impatient
from nas.study.pending import PendingResult, save_pending

log = logging.getLogger("nas.search")
Callback = Callable[[optuna.Study, FrozenTrial], None]
Objective = Callable[[optuna.Trial], float | Sequence[float]]
STORAGE_DOWN = (StorageUnavailable, StorageBroken)


class ResultHeld(Exception):
    """A trial finished but its result could not be written: the loop keeps it on disk."""

    def __init__(self, cause: Exception, state: TrialState, values: Any = None,
                 attrs: dict[str, Any] | None = None) -> None:
        super().__init__(str(cause))
        self.cause, self.state, self.values, self.attrs = cause, state, values, attrs or {}


class Heartbeat:
    """Records a running trial's heartbeat every interval in a thread (a no-op without
    heartbeats); a missed beat is neither retried nor printed: the next one follows."""

    def __init__(self, storage: BaseStorage, trial_id: int) -> None:
        self.storage = backend(storage)
        interval = getattr(self.storage, "get_heartbeat_interval", lambda: None)()
        self.trial_id, self.interval = trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="nas-heartbeat")

    def _beat(self) -> None:
        beat = getattr(self.storage, "beat", None) or self.storage.record_heartbeat  # type: ignore[attr-defined]
        while True:
            try:
                beat(self.trial_id)
            except Exception as e:  # noqa: BLE001  the worker's own calls report outages
                log.debug("heartbeat of trial id %d not recorded: %s", self.trial_id, e)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def heartbeat_enabled(storage: BaseStorage) -> bool:
    return bool(getattr(backend(storage), "get_heartbeat_interval", lambda: None)())


def fail_abandoned(study: optuna.Study) -> None:
    """Fails (and queues the retry of) trials whose worker died: dead processes on this host
    at once, other hosts' trials once their heartbeat is older than the grace period."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if heartbeat_enabled(study._storage):  # noqa: SLF001
            fail_dead_trials(study)
            fail_stale_trials(study)


def ask(study: optuna.Study, queued_only: bool = False) -> optuna.Trial | None:
    """The next trial (a queued one first: retries, enqueued jobs), recorded as run by this
    process; with `queued_only`, None when the queue is empty (no new trial is created)."""
    fail_abandoned(study)
    if queued_only:
        trial_id = study._pop_waiting_trial_id()  # noqa: SLF001  ask() would create a trial
        if trial_id is None:
            return None
        trial = optuna.Trial(study, trial_id)
    else:
        with warnings.catch_warnings():
            # nas runs the heartbeat itself (Heartbeat above): Optuna's advice does not apply
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = study.ask()
    write_trial(trial, worker=this_worker())
    return trial


def run_trial(study: optuna.Study, objective: Objective, catch: tuple[type[Exception], ...],
              url: str = "", trial: optuna.Trial | None = None, interrupted: bool = False,
              ) -> FrozenTrial | None:
    """Runs one trial (`trial`, else a new one) to its end and returns it as stored; None when
    another worker failed it as stale while it ran (its retry runs elsewhere). Exceptions not
    in `catch` propagate after the trial is told FAIL; a result that cannot be written is kept
    on disk (`url` says where) before the storage error propagates."""
    trial = trial or ask(study)
    assert trial is not None
    values, state = None, TrialState.FAIL
    try:
        with Heartbeat(study._storage, trial._trial_id):  # noqa: SLF001
            if interrupted:  # a signal held back while the trial was asked for
                raise Terminated()
            try:
                values, state = objective(trial), TrialState.COMPLETE
            except TrialPruned:
                state = TrialState.PRUNED
            except catch:
                state = TrialState.FAIL
    except UpdateFinishedTrialError:
        return taken_over(trial)
    except ResultHeld as held:
        hold(study, url, trial, held.state, held.values, held.attrs)
        raise held.cause from None
    except STORAGE_DOWN:
        raise  # nothing can be told now; the next run fails the trial at once (dead worker)
    except BaseException:
        with contextlib.suppress(*STORAGE_DOWN, UpdateFinishedTrialError), \
                impatient(study._storage):  # noqa: SLF001  on its way out: no long waits
            tell(study, trial, None, TrialState.FAIL)
        raise
    try:
        return tell(study, trial, values, state)
    except STORAGE_DOWN:
        if state != TrialState.FAIL:
            hold(study, url, trial, state, values, {})
        raise


def tell(study: optuna.Study, trial: optuna.Trial, values: object,
         state: TrialState) -> FrozenTrial | None:
    """Stores the outcome, unless the trial was already finished by another worker."""
    frozen = study.tell(trial, values if state == TrialState.COMPLETE else None,  # type: ignore[arg-type]
                        state=state, skip_if_finished=True)
    if frozen.state != state:
        return taken_over(trial)
    return frozen


def hold(study: optuna.Study, url: str, trial: optuna.Trial, state: TrialState, values: Any,
         attrs: dict[str, Any]) -> None:
    """Keeps a finished trial's result on local disk for the next run to write."""
    values = list(values) if isinstance(values, (list, tuple)) else (
        None if values is None else [values])
    result = PendingResult(study=study.study_name, trial_id=trial._trial_id,  # noqa: SLF001
                           number=trial.number, state=state.name, values=values, attrs=attrs)
    try:
        where = save_pending(url, result)
    except OSError as e:
        log.error("trial %d: its result could not be kept either (%s)", trial.number, e)
        return
    log.warning("trial %d: result kept in %s; the next run writes it", trial.number, where)


def taken_over(trial: optuna.Trial) -> None:
    log.warning("trial %d was failed by another worker as stale (its heartbeat was late); "
                "its retry runs there, this worker goes on with a new trial", trial.number)
    return None


@dataclass(frozen=True)
class TrialEvent:
    """A finished trial as a worker tells it (picklable: it crosses to the parent process)."""

    number: int
    state: str  # COMPLETE, PRUNED or FAIL
    reason: str = ""
    detail: str = ""
    trained: bool = False
    reused: bool = False
    val_accuracy: float | None = None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialEvent:
        record = TrialRecord.from_trial(trial)
        return cls(trial.number, trial.state.name, record.reason or "", record.detail or "",
                   record.is_trained, record.reused_from is not None, record.val_accuracy)


class FailureGuard:
    """Trips after `limit` consecutive failed trials in this worker."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count, self.tripped = limit, 0, False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.count = self.count + 1 if trial.state == TrialState.FAIL else 0
        self.tripped = self.count >= self.limit


@dataclass
class Session:
    """A worker's trials: its study, the objective of one trial, and when it is done.

    `done()` is asked before each new trial (a search's target, or its time); with
    `queue_only` the worker takes queued trials only and stops when none is left."""

    study: optuna.Study
    objective: Objective
    url: str = ""
    catch: tuple[type[Exception], ...] = ()
    done: Callable[[], bool] = lambda: False
    queue_only: bool = False
    callbacks: list[Callback] = field(default_factory=list)

    def next_trial(self) -> optuna.Trial | None:
        """A queued trial first, else (unless `queue_only`) a new one; None when done."""
        if self.done():
            return None
        return ask(self.study, queued_only=self.queue_only)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Trials until done, the queue is empty, or `should_stop()`; each finished trial is
        passed to the callbacks. An interrupt while a trial is being asked for is held back
        until it exists, and then fails it as an interrupt during the trial would."""
        while not should_stop():
            with interrupts_deferred() as interrupted:
                trial = self.next_trial()
            if trial is None:
                if interrupted.is_set():
                    raise KeyboardInterrupt
                return
            frozen = run_trial(self.study, self.objective, self.catch, self.url, trial,
                               interrupted=interrupted.is_set())
            gc.collect()
            if frozen is not None:
                for callback in self.callbacks:
                    callback(self.study, frozen)


__all__ = ["FailureGuard", "Heartbeat", "ResultHeld", "Session", "TrialEvent", "ask",
           "run_trial"]
