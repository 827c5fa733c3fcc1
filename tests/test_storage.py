"""Storage opening: hostile files are refused untouched; URLs are masked."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nas.errors import UserError
from nas.study.storage import mask_url, open_storage, schema_race


def test_mask_url_hides_the_password() -> None:
    masked = mask_url("postgresql://nas:s3cret@db.example:5432/nas")
    assert "s3cret" not in masked and masked == "postgresql://nas:***@db.example:5432/nas"
    assert mask_url("sqlite:///studies/x.db") == "sqlite:///studies/x.db"


def test_new_sqlite_study_is_wal(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "s.db"
    open_storage(f"sqlite:///{db}", heartbeat=False)
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def unchanged(path: Path, action) -> str:  # noqa: ANN001
    before = path.read_bytes()
    with pytest.raises(UserError) as info:
        action()
    assert path.read_bytes() == before
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("my notes, not a database\n")
    msg = unchanged(db, lambda: open_storage(f"sqlite:///{db}"))
    assert "not a SQLite database" in msg


def test_a_sqlite_file_of_another_program_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE invoices (id INTEGER)")
    msg = unchanged(db, lambda: open_storage(f"sqlite:///{db}"))
    assert "another program" in msg


def test_a_corrupt_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "broken.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)
    unchanged(db, lambda: open_storage(f"sqlite:///{db}"))


def test_a_path_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create"):
        open_storage(f"sqlite:///{blocker}/sub/s.db")


def test_unreachable_server_is_one_masked_line() -> None:
    with pytest.raises(UserError) as info:
        open_storage("postgresql://nas:hunter2@127.0.0.1:1/nas")
    assert "hunter2" not in str(info.value) and "cannot open storage" in str(info.value)


def test_opening_a_storage_again_keeps_the_locks_of_open_connections(tmp_path: Path) -> None:
    """Opening a study file that this process already has open must not open and close the
    file outside SQLite: a close() drops every POSIX lock the process holds on it, so another
    process that closes its connection thinks it is the last, checkpoints and deletes the WAL,
    and this process's later writes go to a WAL nobody reads (sqlite.org/howtocorrupt.html,
    2.2). Seen as lost trials and a malformed database when one process ran several searches."""
    db = tmp_path / "s.db"
    open_storage(f"sqlite:///{db}", heartbeat=False)
    held = sqlite3.connect(db)
    held.execute("CREATE TABLE probe (x INTEGER)")
    held.commit()
    held.execute("SELECT count(*) FROM probe").fetchall()
    open_storage(f"sqlite:///{db}", heartbeat=False)  # e.g. a second study of the same file
    writer = (f"import sqlite3; c = sqlite3.connect({str(db)!r}); "
              f"c.execute('INSERT INTO probe VALUES (1)'); c.commit(); c.close()")
    for _ in range(2):
        subprocess.run([sys.executable, "-c", writer], check=True)
        held.execute("INSERT INTO probe VALUES (2)")
        held.commit()
    held.close()
    assert sqlite3.connect(db).execute("SELECT count(*) FROM probe").fetchone()[0] == 4


POP = """
import json, sys, optuna
from nas.study.outage import RetryPolicy
from nas.study.storage import open_storage
storage = open_storage(sys.argv[1], retry=RetryPolicy(limit_s=120, notify=lambda text: None))
study = optuna.load_study(study_name="q", storage=storage)
got = []
while (trial_id := study._pop_waiting_trial_id()) is not None:
    got.append(trial_id)
print(json.dumps(got))
"""


def test_workers_never_take_the_same_queued_trial_from_sqlite(tmp_path: Path) -> None:
    # Python's sqlite3 begins a transaction only at the first write: without nas's
    # serializable transactions four processes took 108 of 60 queued trials here
    import json
    import subprocess
    import sys

    import optuna

    url = f"sqlite:///{tmp_path / 'q.db'}"
    study = optuna.create_study(study_name="q", storage=open_storage(url))
    for i in range(40):
        study.enqueue_trial({}, user_attrs={"i": i}, skip_if_exists=False)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    workers = [subprocess.Popen([sys.executable, "-c", POP, url], stdout=subprocess.PIPE,
                                text=True, env=env) for _ in range(4)]
    taken = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    every = [trial_id for ids in taken for trial_id in ids]
    assert sorted(every) == sorted({t._trial_id for t in study.trials}), taken


def psycopg_error(name: str, message: str) -> Exception:
    import psycopg.errors

    return getattr(psycopg.errors, name)(message)


def raised(error: Exception, cause: BaseException) -> Exception:
    try:
        raise error from cause
    except Exception as e:  # noqa: BLE001
        return e


@pytest.mark.parametrize(
    ("error", "race"),
    [
        (psycopg_error("DuplicateObject", 'type "studydirection" already exists'), True),
        (psycopg_error("DuplicateTable", 'relation "studies" already exists'), True),
        (psycopg_error("UniqueViolation", 'duplicate key value violates unique constraint '
                                          '"pg_type_typname_nsp_index"'), True),
        (psycopg_error("UniqueViolation", 'duplicate key value violates unique constraint '
                                          '"trials_pkey"'), False),
        (psycopg_error("UniqueViolation", 'duplicate key value violates unique constraint '
                                          '"alembic_version_pkc"'), True),
        (sqlite3.IntegrityError("UNIQUE constraint failed: alembic_version.version_num"), True),
        (sqlite3.OperationalError("table study_directions already exists"), True),
        (sqlite3.IntegrityError("UNIQUE constraint failed: trials.number"), False),
        (psycopg_error("OperationalError", "connection refused"), False),
    ],
)
def test_a_race_to_create_optunas_schema_is_told_from_other_errors(error: Exception,
                                                                   race: bool) -> None:
    """Seen in CI: four workers opening a new database, one stopped on 'type studydirection
    already exists' (42710), which the catalogue-index check did not know."""
    import sqlalchemy.exc

    wrapped = raised(sqlalchemy.exc.ProgrammingError("CREATE TYPE ...", {}, error), error)
    assert schema_race(raised(UserError("cannot open storage"), wrapped)) is race


OPEN_NEW = """
import sys
from nas.study.storage import open_storage
open_storage(sys.argv[1], heartbeat=False)
"""


def test_processes_opening_a_new_sqlite_file_at_once_all_get_in(tmp_path: Path) -> None:
    """Found by review: of 4 processes creating Optuna's schema in one new file, some stopped
    on 'table study_directions already exists' or on the version stamp's UNIQUE constraint."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    openers = [subprocess.Popen([sys.executable, "-c", OPEN_NEW, url], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in openers]
    assert [p.returncode for p in openers] == [0, 0, 0, 0], outputs
