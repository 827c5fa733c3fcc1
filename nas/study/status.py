"""A study as it runs: its target and progress, and who runs which trial, how far it is and
whether its worker is still alive; read only, so it is safe anywhere while a search runs.

Liveness is told as the search itself tells it (nas.study.liveness): a worker on this machine
is alive or dead for certain (its pid and start time); a worker elsewhere is judged by its
trial's last heartbeat against the grace period after which a search fails the trial and queues
its retry. Counts, heartbeats and retry links are read with SQL on Optuna's tables (its models
module, the schema its migrations keep), so that a refresh costs the same at 5,000 trials as at
five: Optuna's public API would load every trial to count them and has no heartbeat reader.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel

from nas.errors import UserError
from nas.study.liveness import boot_id, is_dead, pid_namespace, start_ticks
from nas.study.queries import FINISHED
from nas.study.record import (
    FIDELITY_FIELDS,
    StudySettings,
    TrialRecord,
    WorkerId,
    search_spans,
    spent_seconds,
    trained_own_model,
)
from nas.study.storage import GRACE_S, mask_url

RECENT = timedelta(hours=1)
TRAINED_KEYS = ("trained", "reused_from", "reason")  # what trained_own_model reads
Liveness = Literal["alive", "dead", "stale", "unknown"]


class RunningTrial(BaseModel):
    """One RUNNING trial: its worker, progress, heartbeat and whether it is alive."""

    number: int
    host: str | None
    pid: int | None
    worker_started: datetime | None  # local time; known for this machine's workers only
    started: datetime | None  # when the trial started (local time)
    elapsed_s: float | None
    epoch: int  # epochs finished (its curve has one entry each, resumed ones included)
    epochs: int | None  # epochs planned (a multi-fidelity trial may stop at a rung before)
    bracket: int | None = None  # a multi-fidelity search's Hyperband bracket
    heartbeat_age_s: float | None  # None: no heartbeat recorded yet
    liveness: Liveness
    why: str  # how liveness was told
    retry_of: int | None = None  # the failed trial this one retries
    continues: int | None = None  # the time-cut trial this one continues


class RecentFailure(BaseModel):
    """A trial failed in the last hour, and its retry if one was queued."""

    number: int
    finished: datetime | None
    reason: str | None
    detail: str | None
    retry: int | None  # the retry's trial number
    retry_state: str | None


class StudyStatus(BaseModel):
    """`nas status` of one study."""

    study: str
    storage: str  # masked
    space: str | None
    sampler: str | None
    objectives: list[str] | None
    target: int | None  # the target of trained trials (--trials), where the study records one
    trained: int  # what the target counts (nas.study.record.trained_own_model)
    finished: int  # complete and pruned
    counts: dict[str, int]  # trials by state
    time_s: float | None  # the search time asked for (--time), where recorded
    search_s: float  # the search time spent so far (the union of its runs' spans)
    epochs: int | None  # planned per trial (the study's budget)
    fidelity: dict[str, Any] | None  # min_epochs, eta, brackets of a multi-fidelity study
    grace_s: int  # a heartbeat older than this is stale (the study's, else NAS_GRACE_S here)
    running: list[RunningTrial]
    failed_last_hour: list[RecentFailure]
    retried_last_hour: int
    now: datetime


def read_only(storage: RDBStorage) -> RDBStorage:
    """Every later connection of `storage` refuses to write (SQLite's query_only, a read-only
    PostgreSQL session), so that no call can change the study, whatever it is."""
    engine = storage.engine
    statement = ("PRAGMA query_only = ON" if engine.dialect.name == "sqlite" else
                 "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")

    @sqlalchemy.event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        if engine.dialect.name != "sqlite":
            dbapi_connection.commit()  # end the transaction the SET ran in

    engine.dispose()  # connections opened before the listener are not reused
    return storage


def clock_ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def boot_time() -> float | None:
    """This machine's boot, in seconds since the epoch (btime of /proc/stat)."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def on_this_machine(worker: WorkerId) -> bool:
    """Same host, boot and pid namespace: the worker's pid means the same process here."""
    return (worker.host == socket.gethostname() and bool(worker.boot)
            and worker.boot == boot_id() and worker.namespace == pid_namespace())


def worker_start(worker: WorkerId) -> datetime | None:
    """When the worker process started (local time): recorded by workers since nas 0.2, else
    known for a worker of this machine only."""
    if worker.since is not None:
        return datetime.fromtimestamp(worker.since)
    boot = boot_time()
    if not on_this_machine(worker) or boot is None or worker.started < 0:
        return None
    return datetime.fromtimestamp(boot + worker.started / clock_ticks_per_second())


def is_zombie(pid: int) -> bool:
    """The process has exited and waits for its parent to collect it (state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def liveness(worker: WorkerId | None, heartbeat_age_s: float | None,
             grace_s: int) -> tuple[Liveness, str]:
    """Alive, dead, stale or unknown, and how that was told."""
    if worker is not None and on_this_machine(worker):
        if is_dead(worker):
            return "dead", f"process {worker.pid} is gone"
        if start_ticks(worker.pid) in (worker.started, -1):
            if is_zombie(worker.pid):
                return "dead", f"process {worker.pid} has exited"
            return "alive", f"process {worker.pid} runs"
    if heartbeat_age_s is None:
        return "unknown", "no heartbeat recorded yet"
    if heartbeat_age_s > grace_s:
        return "stale", (f"last heartbeat {heartbeat_age_s:.0f} s ago, over the {grace_s} s "
                         f"grace period: the next worker to ask fails it and queues its retry")
    return "alive", f"heartbeat {heartbeat_age_s:.0f} s ago"


def state_counts(storage: RDBStorage, study_id: int) -> dict[str, int]:
    """Trials by state name, counted by the database."""
    query = (sqlalchemy.select(models.TrialModel.state, sqlalchemy.func.count())
             .where(models.TrialModel.study_id == study_id).group_by(models.TrialModel.state))
    with storage.engine.connect() as db:
        found = {state.name: n for state, n in db.execute(query)}
    return {s.name: found.get(s.name, 0) for s in TrialState}


def heartbeat_ages(storage: RDBStorage, trial_ids: list[int]) -> dict[int, float]:
    """Seconds since each trial's last heartbeat, on the database's clock (as Optuna judges
    staleness); trials without one are absent."""
    if not trial_ids:
        return {}
    beats = models.TrialHeartbeatModel
    query = sqlalchemy.select(beats.trial_id, beats.heartbeat).where(beats.trial_id.in_(trial_ids))
    with storage.engine.connect() as db:
        now = db.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar_one()
        now = now.replace(tzinfo=None)  # PostgreSQL's is aware; Optuna compares them naive
        return {trial_id: (now - beat).total_seconds() for trial_id, beat in db.execute(query)}


def retry_links(storage: RDBStorage, study_id: int) -> dict[int, tuple[int, str]]:
    """Failed trial number -> (its retry's number, the retry's state), from the retries'
    `failed_trial` system attribute (nas.study.storage.RetryStaleTrial writes it)."""
    attrs, trials = models.TrialSystemAttributeModel, models.TrialModel
    query = (sqlalchemy.select(attrs.value_json, trials.number, trials.state)
             .join(trials, attrs.trial_id == trials.trial_id)
             .where(trials.study_id == study_id, attrs.key == "failed_trial"))
    with storage.engine.connect() as db:
        return {int(json.loads(value)): (number, state.name) for value, number, state
                in db.execute(query)}


def trained_models(storage: RDBStorage, study_id: int) -> int:
    """Finished trials that trained a model of their own (what --trials counts), judged by
    `trained_own_model` on the few attributes it reads, fetched by the database alone."""
    attrs, trials = models.TrialUserAttributeModel, models.TrialModel
    query = (sqlalchemy.select(trials.trial_id, attrs.key, attrs.value_json)
             .join(trials, attrs.trial_id == trials.trial_id)
             .where(trials.study_id == study_id, trials.state.in_(FINISHED),
                    attrs.key.in_(TRAINED_KEYS)))
    found: dict[int, dict[str, Any]] = {}
    with storage.engine.connect() as db:
        for trial_id, key, value in db.execute(query):
            found.setdefault(trial_id, {})[key] = json.loads(value)
    return sum(trained_own_model(a) for a in found.values())


def running_trial(trial: FrozenTrial, settings: StudySettings, heartbeat_age_s: float | None,
                  grace_s: int, now: datetime) -> RunningTrial:
    record = TrialRecord.from_trial(trial)
    worker = record.worker
    state, why = liveness(worker, heartbeat_age_s, grace_s)
    started = trial.datetime_start
    return RunningTrial(
        number=trial.number, host=worker.host if worker else None,
        pid=worker.pid if worker else None,
        worker_started=worker_start(worker) if worker else None, started=started,
        elapsed_s=(now - started).total_seconds() if started else None,
        epoch=len(record.curve or []), epochs=settings.epochs, bracket=record.bracket,
        heartbeat_age_s=heartbeat_age_s, liveness=state, why=why,
        retry_of=trial.system_attrs.get("failed_trial"), continues=record.continues)


def recent_failures(failed: list[FrozenTrial], retries: dict[int, tuple[int, str]],
                    since: datetime) -> list[RecentFailure]:
    out = []
    for t in sorted(failed, key=lambda t: t.number):
        if t.datetime_complete is None or t.datetime_complete < since:
            continue
        record = TrialRecord.from_trial(t)
        retry = retries.get(t.number)
        out.append(RecentFailure(number=t.number, finished=t.datetime_complete,
                                 reason=record.reason, detail=record.detail,
                                 retry=retry[0] if retry else None,
                                 retry_state=retry[1] if retry else None))
    return out


def study_status(storage: RDBStorage, name: str, url: str, grace_s: int = GRACE_S,
                 ) -> StudyStatus:
    """The status of study `name` in `storage` (opened by the caller, read only)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        raise UserError(f"no study {name!r} in {mask_url(url)}") from None
    attrs = storage.get_study_user_attrs(study_id)
    settings = StudySettings.model_validate(attrs)
    grace_s = settings.grace_s or grace_s  # the grace period the study's workers use
    now = datetime.now()
    running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    ages = heartbeat_ages(storage, [t._trial_id for t in running])  # noqa: SLF001
    failed = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,))
    failures = recent_failures(failed, retry_links(storage, study_id), now - RECENT)
    counts = state_counts(storage, study_id)
    return StudyStatus(
        study=name, storage=mask_url(url), space=settings.space, sampler=settings.sampler,
        objectives=settings.objectives, target=settings.trials,
        trained=trained_models(storage, study_id),
        finished=counts["COMPLETE"] + counts["PRUNED"], counts=counts, time_s=settings.time_s,
        search_s=spent_seconds(search_spans(attrs)), epochs=settings.epochs,
        fidelity=settings.recorded(FIDELITY_FIELDS) if settings.min_epochs else None,
        grace_s=grace_s,
        running=[running_trial(t, settings, ages.get(t._trial_id), grace_s, now)  # noqa: SLF001
                 for t in sorted(running, key=lambda t: t.number)],
        failed_last_hour=failures, retried_last_hour=sum(f.retry is not None for f in failures),
        now=now)


__all__ = ["RecentFailure", "RunningTrial", "StudyStatus", "liveness", "read_only",
           "study_status"]
