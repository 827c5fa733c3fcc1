"""Who runs a trial, and whether that process is still alive: a worker killed on this machine
is noticed at once by any nas process here, not after a heartbeat grace period.

Each running trial records its worker (host, boot, pid and the process's start time); a RUNNING
trial whose worker was on this host, in this boot, and whose pid is gone or now names another
process, is dead. Trials of other hosts are left to the heartbeat and its grace period.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from nas.study.record import TrialRecord, WorkerId, write_trial_attrs

log = logging.getLogger("nas.search")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot); None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return -1  # exists but unreadable: assume alive
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@functools.cache
def _host() -> tuple[str, str, str]:
    return socket.gethostname(), boot_id(), pid_namespace()


def boot_time() -> float | None:
    """This machine's boot, in seconds since the epoch (btime of /proc/stat)."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


@functools.cache
def _started() -> tuple[int, float]:
    """This process's start: clock ticks since boot, and seconds since the epoch."""
    ticks = start_ticks(os.getpid()) or -1
    boot = boot_time()
    if ticks < 0 or boot is None:
        return ticks, time.time()
    return ticks, boot + ticks / os.sysconf("SC_CLK_TCK")


def this_worker() -> WorkerId:
    """This process."""
    host, boot, namespace = _host()
    ticks, since = _started()
    return WorkerId(host=host, boot=boot, namespace=namespace, pid=os.getpid(), started=ticks,
                    since=round(since, 2))


def is_dead(worker: WorkerId) -> bool:
    """True only when it is certain: same host, boot and pid namespace, and the pid is gone or
    now names a process started at another time."""
    host, boot, namespace = _host()
    if worker.host != host or not boot or not worker.boot or worker.namespace != namespace:
        return False
    if worker.boot != boot:
        return True  # the machine rebooted since
    started = start_ticks(worker.pid)
    if started is None:
        return True
    return started not in (-1, worker.started) and worker.started != -1


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fails the RUNNING trials whose worker died on this host and queues their retry (the
    storage's stale-trial callback, as for a stale heartbeat). Returns their numbers."""
    storage = study._storage  # noqa: SLF001  trial ids are storage-level
    callback = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = TrialRecord.from_trial(trial).worker
        if worker is None or not is_dead(worker):
            continue
        try:
            write_trial_attrs(storage, trial._trial_id, reason="worker_died",  # noqa: SLF001
                              detail=f"process {worker.pid} on {worker.host} is gone")
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):  # noqa: SLF001
                continue
        except UpdateFinishedTrialError:  # another process got there first
            continue
        failed.append(trial.number)
        log.warning("trial %d: its worker (pid %d) died; failed it and queued its retry",
                    trial.number, worker.pid)
        if callback is not None:
            callback(study, storage.get_trial(trial._trial_id))  # noqa: SLF001
    return failed


__all__ = ["WorkerId", "fail_dead_trials", "is_dead", "this_worker"]
