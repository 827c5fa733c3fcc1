"""The trial loop: ask, run the objective under a heartbeat, tell; nas's own instead of
`Study.optimize`, so that every outcome is decided by exception type and state, not by the
wording of Optuna's errors, and so that storage errors can be handled around each call."""

from __future__ import annotations

import gc
import logging
import threading
import warnings
from collections.abc import Callable, Sequence

import optuna
from optuna.exceptions import ExperimentalWarning, TrialPruned, UpdateFinishedTrialError
from optuna.storages import BaseStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from nas.study import finished_count

log = logging.getLogger("nas.search")
Callback = Callable[[optuna.Study, FrozenTrial], None]
Objective = Callable[[optuna.Trial], float | Sequence[float]]


class Heartbeat:
    """Records a running trial's heartbeat every interval in a thread (a no-op without
    heartbeats); a failed write is logged, never printed as a traceback."""

    def __init__(self, storage: BaseStorage, trial_id: int) -> None:
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="nas-heartbeat")

    def _beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)  # type: ignore[attr-defined]
            except Exception as e:  # noqa: BLE001  a lost beat is retried at the next interval
                log.warning("heartbeat of trial id %d not recorded: %s", self.trial_id,
                            str(e).splitlines()[0] if str(e) else type(e).__name__)
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
    return bool(getattr(storage, "get_heartbeat_interval", lambda: None)())


def run_trial(study: optuna.Study, objective: Objective,
              catch: tuple[type[Exception], ...]) -> FrozenTrial | None:
    """Runs one trial to its end and returns it as stored; None when another worker failed it
    as stale while it ran (its retry runs elsewhere). Exceptions not in `catch` propagate after
    the trial is told FAIL."""
    storage = study._storage  # noqa: SLF001  Optuna has no public accessor; ids are storage-level
    with warnings.catch_warnings():
        # nas runs the heartbeat itself (Heartbeat below), so Optuna's advice does not apply
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        warnings.simplefilter("ignore", ExperimentalWarning)
        if heartbeat_enabled(storage):
            fail_stale_trials(study)  # stale trials of dead workers: failed, retries queued
        trial = study.ask()
    values, state = None, TrialState.FAIL
    try:
        with Heartbeat(storage, trial._trial_id):  # noqa: SLF001
            try:
                values, state = objective(trial), TrialState.COMPLETE
            except TrialPruned:
                state = TrialState.PRUNED
            except catch:
                state = TrialState.FAIL
    except UpdateFinishedTrialError:
        return taken_over(trial)
    except BaseException:
        tell(study, trial, None, TrialState.FAIL)
        raise
    return tell(study, trial, values, state)


def tell(study: optuna.Study, trial: optuna.Trial, values: object,
         state: TrialState) -> FrozenTrial | None:
    """Stores the outcome, unless the trial was already finished by another worker."""
    frozen = study.tell(trial, values if state == TrialState.COMPLETE else None,  # type: ignore[arg-type]
                        state=state, skip_if_finished=True)
    if frozen.state != state:
        return taken_over(trial)
    return frozen


def taken_over(trial: optuna.Trial) -> None:
    log.warning("trial %d was failed by another worker as stale (its heartbeat was late); "
                "its retry runs there, this worker goes on with a new trial", trial.number)
    return None


def run_trials(study: optuna.Study, objective: Objective, target: int,
               callbacks: Sequence[Callback] = (), catch: tuple[type[Exception], ...] = (),
               should_stop: Callable[[], bool] = lambda: False) -> None:
    """Trials until the study holds `target` finished (complete or pruned) trials, or
    `should_stop()`; each finished trial is passed to the callbacks."""
    while finished_count(study) < target and not should_stop():
        frozen = run_trial(study, objective, catch)
        gc.collect()
        if frozen is not None:
            for callback in callbacks:
                callback(study, frozen)


__all__ = ["Heartbeat", "run_trial", "run_trials"]
