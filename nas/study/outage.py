"""Storage outages weathered, not fatal: a lost connection (a server restart, a network blip,
SQLite locked beyond its timeout) is retried with backoff for a while; what cannot be retried
(a full disk, a deleted study file) ends the run with one line.

`ResilientRDBStorage` is Optuna's RDBStorage with every storage call retried while the error
is transient. One `RetryPolicy` per process says for how long, and announces each outage once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from optuna.storages import BaseStorage, RDBStorage

from nas.errors import UserError

log = logging.getLogger("nas.storage")
T = TypeVar("T")
DEFAULT_RETRY_S = 300.0
# SQLite result codes that clear by themselves (another connection holds a lock)
SQLITE_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_PROTOCOL")
# A busy file is another connection's transaction (a second worker, the heartbeat thread): it
# clears in milliseconds, so it is retried quickly and only reported when it lasts.
SQLITE_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
CONTENTION_QUIET_S = 10.0
# ... and those no waiting mends
SQLITE_BROKEN = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CORRUPT",
                 "SQLITE_NOTADB", "SQLITE_CANTOPEN", "SQLITE_PERM")


class StorageUnavailable(UserError):
    """The storage stayed unreachable longer than the retry limit."""


class StorageBroken(UserError):
    """The storage failed in a way waiting cannot mend (disk full, file deleted, read-only)."""


def causes(error: BaseException) -> list[BaseException]:
    """The error and everything it was raised from or during, outermost first."""
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def is_transient(error: BaseException) -> bool:
    """A lost or refused connection, a timed-out pool, a busy SQLite file: worth waiting for."""
    import sqlalchemy.exc as sa

    # no psycopg error can exist before psycopg is imported (importing it to ask took 0.36 s of
    # every SQLite command that looks for a study that is not there)
    psycopg = sys.modules.get("psycopg")
    for e in causes(error):
        if isinstance(e, sqlite3.OperationalError):
            return getattr(e, "sqlite_errorname", "").startswith(SQLITE_TRANSIENT)
        if psycopg is not None and isinstance(e, psycopg.OperationalError):
            return True
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sa.DisconnectionError, sa.InterfaceError, sa.TimeoutError)):
            return True
    return False


def server_restarting(error: BaseException) -> bool:
    """PostgreSQL answered but is shutting down or starting up: the server exists, so even
    the first connection waits for it (a wrong address still fails at once)."""
    psycopg = sys.modules.get("psycopg")  # not imported: no psycopg error to look at
    if psycopg is not None:
        restarting = (psycopg.errors.AdminShutdown, psycopg.errors.CannotConnectNow)
        if any(isinstance(e, restarting) for e in causes(error)):
            return True
    text = first_line(error)
    return "the database system is" in text or "terminating connection due to admin" in text


def is_contention(error: BaseException) -> bool:
    """SQLite busy or locked: a concurrent writer, not an outage."""
    for e in causes(error):
        if isinstance(e, sqlite3.OperationalError):
            return getattr(e, "sqlite_errorname", "").startswith(SQLITE_BUSY)
    return False


def first_line(error: BaseException) -> str:
    """The innermost error that says something, on one line."""
    chain = causes(error)
    for e in reversed(chain):
        text = str(e).strip().splitlines()
        if text and text[0] not in ("()", "None"):
            return text[0]
    return type(chain[-1]).__name__


@dataclass
class RetryPolicy:
    """How long storage calls are retried, and who is told when an outage starts."""

    limit_s: float = DEFAULT_RETRY_S
    notify: Callable[[str], None] = field(default=lambda message: log.warning(message))
    describe: str = "storage"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    down_since: float | None = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, retried with backoff while it fails transiently."""
        start, delay, busy_delay = time.monotonic(), 0.25, 0.005
        while True:
            try:
                value = fn(*args, **kwargs)
            except Exception as e:
                if not is_transient(e) or self.limit_s <= 0:
                    raise
                waited = time.monotonic() - start
                if waited >= self.limit_s:
                    raise StorageUnavailable(
                        f"{self.describe} unreachable for {waited:.0f} s (limit "
                        f"--storage-retry {self.limit_s:g} s): {first_line(e)}") from None
                if is_contention(e):  # jittered so that two waiting writers part
                    if waited >= CONTENTION_QUIET_S:
                        self._announce(e)
                    pause = busy_delay * random.uniform(0.5, 1.5)
                    busy_delay = min(busy_delay * 2, 0.5)
                else:
                    self._announce(e)
                    pause = delay
                    delay = min(delay * 2, 5.0)
                time.sleep(min(pause, self.limit_s - waited))
            else:
                self._recovered()
                return value

    def _announce(self, error: BaseException) -> None:
        with self.lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
        self.notify(f"{self.describe} unreachable ({first_line(error)}), retrying for up to "
                    f"{self.limit_s:g} s")

    def _recovered(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is None:
                return
            log.info("%s back after %.1f s", self.describe, time.monotonic() - self.down_since)
            self.down_since = None


# Every storage call Optuna makes through a study and its cache (the private ones included:
# Optuna's _CachedStorage calls them); each is one transaction, safe to repeat.
RETRIED = (
    "_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param",
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_trial_id_from_study_id_trial_number",
    "get_trial", "get_all_trials", "get_best_trial", "get_n_trials", "record_heartbeat",
    "_get_stale_trial_ids", "check_trial_is_updatable",
)


class ResilientRDBStorage(RDBStorage):
    """RDBStorage whose calls wait out transient outages (`retry`), and which notices a SQLite
    study file deleted under it (`sqlite_file`): a search must not go on writing into a file
    nobody can open any more."""

    retry: RetryPolicy
    sqlite_file: Path | None

    def __init__(self, url: str, retry: RetryPolicy, sqlite_file: Path | None = None,
                 **kwargs: Any) -> None:
        self.retry, self.sqlite_file = retry, sqlite_file
        retry.call(super().__init__, url, **kwargs)

    def check_file(self) -> None:
        """Refuses to go on when the SQLite study file has been deleted or replaced."""
        if self.sqlite_file is not None and not self.sqlite_file.exists():
            raise StorageBroken(f"{self.sqlite_file}: the study file was deleted while the "
                                f"search ran; stopping (nothing more can be recorded there)")

    def beat(self, trial_id: int) -> None:
        """One heartbeat, not retried: a missed beat is simply sent again at the next interval."""
        RDBStorage.record_heartbeat(self, trial_id)


def _retried(name: str) -> Callable[..., Any]:
    @wraps(getattr(RDBStorage, name))
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        self.check_file()
        method = getattr(RDBStorage, name)  # looked up per call: tests replace it to fail
        try:
            return self.retry.call(method, self, *args, **kwargs)
        except (StorageUnavailable, StorageBroken):
            raise
        except Exception as e:
            broken = storage_broken(e, self)
            if broken is not None:
                raise broken from None
            raise

    return call


for _name in RETRIED:
    if hasattr(RDBStorage, _name):
        setattr(ResilientRDBStorage, _name, _retried(_name))


def storage_broken(error: BaseException, storage: ResilientRDBStorage) -> StorageBroken | None:
    """A one-line StorageBroken for SQLite failures no wait can mend (a full disk, a read-only
    or corrupt file); None for anything else (Optuna handles its own integrity errors)."""
    for e in causes(error):
        name = getattr(e, "sqlite_errorname", "") if isinstance(e, sqlite3.Error) else ""
        if name.startswith(SQLITE_BROKEN):
            where = storage.sqlite_file or "the SQLite study file"
            return StorageBroken(f"{where}: {e} ({name}); stopping")
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES):
            return StorageBroken(f"{e.filename or 'storage'}: {e.strerror}; stopping")
    return None


@contextlib.contextmanager
def impatient(storage: BaseStorage, limit_s: float = 5.0) -> Iterator[None]:
    """Within the block, storage calls wait at most `limit_s` (a process on its way out)."""
    policy = getattr(backend(storage), "retry", None)
    if policy is None:
        yield
        return
    before, policy.limit_s = policy.limit_s, min(policy.limit_s, limit_s)
    try:
        yield
    finally:
        policy.limit_s = before


def backend(storage: BaseStorage) -> BaseStorage:
    """The storage behind Optuna's cache wrapper (which a study holds)."""
    return getattr(storage, "_backend", storage)


__all__ = ["DEFAULT_RETRY_S", "ResilientRDBStorage", "RetryPolicy", "StorageBroken",
           "StorageUnavailable", "backend", "is_transient"]
