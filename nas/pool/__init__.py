"""The worker pool: anything that trains trials (a search, a confirmation, a scaling search)
hands it a `Work`; the pool runs it in this process or in spawned workers on one study.

`trial_loop` is nas's own ask/run/tell of one trial (heartbeats, dead workers, outages) and a
worker's `Session`; `workers` starts and stops the worker processes; `signals` is how they
unwind."""

from nas.pool.signals import die_with_parent, leaving, raise_terminated, unwind_on_sigterm
from nas.pool.trial_loop import FailureGuard, ResultHeld, Session, TrialEvent, run_trial
from nas.pool.workers import PoolStopped, Work, last_reason, run_pool, run_worker

__all__ = ["FailureGuard", "PoolStopped", "ResultHeld", "Session", "TrialEvent", "Work",
           "die_with_parent", "last_reason", "leaving", "raise_terminated", "run_pool",
           "run_trial", "run_worker", "unwind_on_sigterm"]
