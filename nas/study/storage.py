"""Study storage: SQLite by default, PostgreSQL to scale out; URLs are masked in every message."""

from __future__ import annotations

import os
import re
import sqlite3
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from nas.errors import UserError

# A killed worker's trial is failed (and retried) GRACE_S after its last heartbeat; the
# environment can shorten both (the fault tests do).
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


def open_storage(url: str, heartbeat: bool = True, max_retry: int = 1) -> RDBStorage:
    """An RDB storage with heartbeats: trials of killed workers are failed and retried once."""
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
        kwargs.update(
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
        )
    try:
        return RDBStorage(url, **kwargs)
    except Exception as e:  # sqlalchemy raises many kinds; the user needs one line
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise UserError(f"cannot open storage {mask_url(url)}: {mask_url(reason)}") from None


def study_names(storage: RDBStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


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
