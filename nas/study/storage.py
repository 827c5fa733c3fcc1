"""Study storage: SQLite by default, PostgreSQL to scale out; URLs are masked in every message."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from nas.errors import UserError
from nas.study.bulk import BulkReadCache
from nas.study.outage import (
    ResilientRDBStorage,
    RetryPolicy,
    StorageUnavailable,
    causes,
    server_restarting,
)
from nas.study.record import sampled_attrs

# A killed worker's trial is failed (and retried) GRACE_S after its last heartbeat; the
# environment can shorten both (the fault tests do).
SCHEMA_RACE_TRIES = 5
HEARTBEAT_S = int(os.environ.get("NAS_HEARTBEAT_S", "10"))
GRACE_S = int(os.environ.get("NAS_GRACE_S", "30"))


def default_storage(study: str) -> str:
    """sqlite:///studies/<study>.db, relative to the working directory."""
    return f"sqlite:///studies/{study}.db"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL (None for other URLs or in-memory)."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
        return None
    return Path(url.removeprefix("sqlite:///").split("?")[0])


def prepare_sqlite(path: Path) -> None:
    """Creates the folder; refuses a file that is not a SQLite database or not an Optuna one.

    New files are switched to WAL (persistent in the file) so parallel workers and readers
    such as the dashboard do not block each other.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder for {path}: {e.strerror}") from None
    if path.exists() and path.stat().st_size > 0:
        # Read through SQLite only: a plain open() and close() of the file would drop the POSIX
        # locks of every connection this process holds on it (sqlite.org/howtocorrupt.html 2.2)
        tables = _sqlite_tables(path)
        if tables and "studies" not in tables:
            raise UserError(f"{path}: a SQLite database of another program "
                            f"(tables: {', '.join(sorted(tables)[:5])}); not an Optuna study")
        return
    try:
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as e:
        raise UserError(f"cannot create {path}: {e}") from None


def _sqlite_tables(path: Path) -> set[str]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):
            raise UserError(f"{path}: not a SQLite database (refusing to touch it)") from None
        raise UserError(f"{path}: unreadable SQLite database ({e}); not modified") from None
    return {r[0] for r in rows}


class RetryStaleTrial:
    """Queues one retry of a trial whose worker died (stale heartbeat, or a dead process on
    this host), with the same parameters and spec but none of the dead run's results."""

    def __init__(self, max_retry: int = 1) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.max_retry:
            return
        # the retry sets its own constraints (same spec, same figures): copied ones would make
        # Optuna warn that they are already set
        kept = {k: v for k, v in trial.system_attrs.items() if not k.startswith("constraints:")}
        system_attrs = {**kept, "failed_trial":
                        trial.system_attrs.get("failed_trial", trial.number),
                        "retry_history": history}
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs=sampled_attrs(trial.user_attrs), system_attrs=system_attrs))


def open_storage(url: str, heartbeat: bool = True, max_retry: int = 1,
                 retry: RetryPolicy | None = None, wait_to_open: bool = False) -> RDBStorage:
    """An RDB storage; with `heartbeat`, trials of dead workers are failed and retried once.

    Calls are retried through transient outages as `retry` says (by default they are not);
    the first connection waits too only with `wait_to_open` (a worker joining a search that is
    known to work), so that a wrong URL fails at once.
    """
    path = sqlite_path(url)
    if path is not None:
        prepare_sqlite(path)
    kwargs: dict = {}
    if path is not None:
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if heartbeat:
        kwargs.update(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                      heartbeat_stale_trial_callback=RetryStaleTrial(max_retry))
    policy = retry or RetryPolicy(limit_s=0)
    policy.describe = f"storage {mask_url(url)}"
    opening = policy if wait_to_open else RetryPolicy(limit_s=0, describe=policy.describe)
    try:
        storage = _create(url, opening, policy, path, kwargs)
    except StorageUnavailable:
        raise
    except Exception as e:  # sqlalchemy raises many kinds; the user needs one line
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise UserError(f"cannot open storage {mask_url(url)}: {mask_url(reason)}") from None
    storage.retry = policy
    if path is not None:
        serializable_sqlite(storage.engine)
    return storage


def _create(url: str, opening: RetryPolicy, policy: RetryPolicy, path: Path | None,
            kwargs: dict) -> ResilientRDBStorage:
    """The storage, waiting for a server that is restarting (with `policy`), and opening again
    when another process was creating the same new schema at the same moment (the second
    CREATE or version stamp is refused: `schema_race`)."""
    for attempt in range(SCHEMA_RACE_TRIES):
        try:
            return ResilientRDBStorage(url, opening, sqlite_file=path, **kwargs)
        except Exception as e:
            if schema_race(e) and attempt + 1 < SCHEMA_RACE_TRIES:
                time.sleep(0.2 * (attempt + 1))
                continue
            if opening is policy or policy.limit_s <= 0 or not server_restarting(e):
                raise
            return ResilientRDBStorage(url, policy, sqlite_file=path, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


# PostgreSQL's refusals when two processes create Optuna's schema in one new database at once:
# the catalogue's unique index (23505 on pg_type/pg_class), or CREATE of a type or table the
# other process has just made (42710 'type "studydirection" already exists', 42P07 for a table)
DUPLICATE_SCHEMA_STATES = {"42710", "42P07"}


def schema_race(error: BaseException) -> bool:
    """Two processes created one part of Optuna's schema at once: opening again succeeds."""
    chain = list(causes(error))
    if any(getattr(e, "sqlstate", None) in DUPLICATE_SCHEMA_STATES for e in chain):
        return True
    text = " ".join(str(e) for e in chain)
    if "pg_type_typname_nsp_index" in text or "pg_class_relname_nsp_index" in text:
        return True
    # PostgreSQL: type "studydirection" / relation "studies" already exists; SQLite: table
    # study_directions already exists, index ix_studies_study_name already exists
    kinds = ('type "', 'relation "', "table ", "index ")
    if "already exists" in text and any(kind in text for kind in kinds):
        return True
    # both stamped the schema's version: Optuna's alembic_version and version_info rows
    # (PostgreSQL: duplicate key ... "alembic_version_pkc"; SQLite: UNIQUE constraint failed)
    duplicate = "duplicate key" in text or "UNIQUE constraint failed" in text
    return duplicate and ("alembic_version" in text or "version_info" in text)


def serializable_sqlite(engine: Any) -> None:
    """Every SQLite transaction starts at its first statement (SQLAlchemy's documented recipe).

    Python's sqlite3 begins a transaction only at the first write, so a read-check-write (such
    as Optuna taking a queued trial: is it WAITING? then RUNNING) is not atomic, and two
    workers could take the same trial. Begun at the read, the second writer's snapshot is
    stale and SQLite refuses it (SQLITE_BUSY_SNAPSHOT), which is retried like any busy lock.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    engine.dispose()  # connections opened before the listeners are not reused


def shared_cache(storage: BaseStorage) -> BaseStorage:
    """`storage` as every study of this process shares it: one cache of its trials.

    Optuna wraps an RDB storage given to `load_study`/`create_study` in a new cache each time,
    and each new cache reads every trial of the study again; sharing one, a process reads the
    study once (in bulk: nas.study.bulk) and then only what changed (unfinished and new
    trials)."""
    if not isinstance(storage, RDBStorage):
        return storage  # already a cache (or not an RDB storage)
    cached = getattr(storage, "_nas_shared_cache", None)
    if cached is None:
        cached = BulkReadCache(storage)
        storage._nas_shared_cache = cached  # type: ignore[attr-defined]
    return cached


def open_for_work(url: str, retry_s: float, notify: Any = None, worker: bool = False,
                  ) -> BaseStorage:
    """The storage a search or confirmation works on: its calls wait out outages for up to
    `retry_s` seconds, each announced once through `notify`; a worker (`worker`) waits for its
    first connection too; one cache of trials for the whole process (`shared_cache`)."""
    policy = RetryPolicy(limit_s=retry_s)
    if notify is not None:
        policy.notify = notify
    return shared_cache(open_storage(url, retry=policy, wait_to_open=worker))


def study_names(storage: BaseStorage) -> list[str]:
    """The names of the studies a storage holds (their trials are not read)."""
    return [s.study_name for s in storage.get_all_studies()]


def open_existing(url: str) -> RDBStorage:
    """The storage at `url` for reading, refusing (without creating anything) an absent SQLite
    file."""
    path = sqlite_path(url)
    if url.startswith("sqlite:") and path is None:
        raise UserError(f"{url}: an in-memory SQLite database holds no study to read")
    if path is not None and (not path.is_file() or path.stat().st_size == 0):
        what = "no such file" if not path.exists() else "not a study database"
        raise UserError(f"{path}: {what}; run `nas search` first or give --storage")
    return open_storage(url, heartbeat=False)
