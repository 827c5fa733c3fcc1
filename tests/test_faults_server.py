"""Faults of the database server under running searches: PostgreSQL restarted, stopped for
longer than --storage-retry, and the chaos of killed workers with server restarts. These restart
and pause a PostgreSQL server of their own (scripts/test.sh starts it), one test at a time
(a file lock, whichever test process runs them)."""

from __future__ import annotations

import fcntl
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from faultkit import (
    ENV,
    FAULT_PG_ENV,
    FAULT_PG_URL,
    LONGER,
    PG_CONTROL,
    busy,
    check_study,
    error_lines,
    finished_count,
    needs_pg_control,
    no_leftover_processes,  # noqa: F401  an autouse fixture
    pg,
    running_mid_trial,
    search_args,
    start,
    storage_for,
    wait_for,
)
from optuna.trial import TrialState

from nas.study import TrialRecord

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_for(request.param, tmp_path, FAULT_PG_URL if PG_CONTROL else None,
                       "needs the PostgreSQL server scripts/test.sh starts for fault tests")


@pytest.fixture(autouse=True)
def the_server_alone() -> Iterator[None]:
    """One test at a time acts on the fault server, whichever test process runs it (a lock
    beside the server's folder), and it starts with the server answering."""
    if not FAULT_PG_ENV["NAS_PG_DIR"]:
        yield
        return
    with open(f"{FAULT_PG_ENV['NAS_PG_DIR']}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server_up()
        yield


def server_up() -> None:
    """Each test starts with the fault server accepting connections (restarted when it does
    not: a test that failed mid-pause may have left it stopped)."""
    if FAULT_PG_URL is None or PG_CONTROL is None:
        return
    try:
        psycopg.connect(FAULT_PG_URL, connect_timeout=5).close()
    except psycopg.OperationalError:
        pg("restart")


def start_on_pg(args: list[str], tmp_path: Path, study: str) -> subprocess.Popen:
    """A search on the fault server, seen mid-trial. What these tests break is a server under a
    running search; one found down before the search opened its study (it should not be) is
    set up again, once, and a failure carries the server's log."""
    for attempt in range(2):
        server_up()
        search = start(args, tmp_path)
        try:
            wait_for(lambda: running_mid_trial(FAULT_PG_URL, study), process=search)  # type: ignore[arg-type]
            return search
        except AssertionError as e:
            if attempt or "cannot open storage" not in str(e):
                raise AssertionError(f"{e}\n{pg_log()}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def pg_log(lines: int = 30) -> str:
    """The end of the fault server's log (scripts/postgres.sh keeps it in its folder)."""
    log = Path(FAULT_PG_ENV["NAS_PG_DIR"]) / "log"
    try:
        return "server log:\n" + "\n".join(log.read_text().splitlines()[-lines:])
    except OSError:
        return f"no server log at {log}"


@needs_pg_control
def test_a_postgres_restart_mid_search_is_weathered(tmp_path: Path) -> None:
    study = f"restart-{uuid.uuid4().hex[:8]}"
    search = start_on_pg([*search_args(FAULT_PG_URL, study, 6), "--jobs", "2"], tmp_path, study)  # type: ignore[arg-type]
    pg("restart")
    wait_for(lambda: finished_count(FAULT_PG_URL, study) >= 3, 300)  # type: ignore[arg-type]
    pg("restart")
    out, _ = search.communicate(timeout=400)
    assert search.returncode == 0, out
    assert "Traceback" not in out and not error_lines(out)
    # at most one line per outage for all workers (none when no call was in flight: the pool
    # replaces dead connections before use)
    assert out.count("unreachable") <= 2, out
    check_study(FAULT_PG_URL, study, 6)  # type: ignore[arg-type]


@needs_pg_control
def test_an_outage_longer_than_the_limit_is_one_line_and_the_rerun_cleans_up(
    tmp_path: Path
) -> None:
    study = f"outage-{uuid.uuid4().hex[:8]}"
    args = [*search_args(FAULT_PG_URL, study, 3, *LONGER), "--storage-retry", "3"]  # type: ignore[arg-type]
    search = start_on_pg(args, tmp_path, study)
    pg("pause", "12")
    out, _ = search.communicate(timeout=120)
    assert search.returncode == 2, out
    assert "Traceback" not in out
    [line] = error_lines(out)
    assert "unreachable" in line and "--storage-retry 3" in line
    rerun = subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True,
                           timeout=400)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = check_study(FAULT_PG_URL, study, 3)  # type: ignore[arg-type]
    assert any(TrialRecord.from_trial(t).reason == "worker_died" for t in trials), \
        "the trial the outage interrupted was failed at once and retried"


def test_chaos_kills_workers_and_restarts_the_server(storage_url: str, tmp_path: Path) -> None:
    """4 workers, random SIGKILLs (each killed worker started again) and, on PostgreSQL,
    server restarts in between; then a last run of the same command."""
    postgres = storage_url.startswith("postgresql")
    if postgres and PG_CONTROL is None:
        pytest.skip("needs the PostgreSQL server scripts/test.sh starts (it is restarted)")
    study, target = f"chaos-{uuid.uuid4().hex[:8]}", 10
    args = search_args(storage_url, study, target, "--epochs", "6")
    env = {**ENV, "NAS_GRACE_S": "600"}  # deaths are noticed through the dead-worker path
    rng, begun, kills, restarts = random.Random(11), time.monotonic(), 0, 0
    workers = [start(args, tmp_path, env) for _ in range(4)]
    for step in range(6):
        time.sleep(rng.uniform(1, 4))
        if step % 2:
            if postgres:  # once every worker has opened the study (a new one would fail fast)
                wait_for(lambda: busy(workers, storage_url, study), 120)
                pg("restart")
                restarts += 1
            continue
        wait_for(lambda: busy(workers, storage_url, study), 120)
        alive = [w for w in workers if w.poll() is None]
        if not alive:
            break
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        workers[workers.index(victim)] = start(args, tmp_path, env)
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    assert not any("Traceback" in o for o in outputs), outputs
    final = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=400)  # a last run closes whatever the last kill left
    assert final.returncode == 0, final.stdout + final.stderr
    trials = check_study(storage_url, study, target)
    dead = [t for t in trials if t.state == TrialState.FAIL]
    assert dead and all(TrialRecord.from_trial(t).reason == "worker_died" for t in dead)
    retried = [t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs]
    assert len(retried) == len(set(retried)), "each killed trial is retried once"
    assert {t.number for t in dead if "failed_trial" not in t.system_attrs} <= set(retried)
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            r = TrialRecord.from_trial(t)
            assert r.spec and r.spec_hash and r.params and r.worker, t.number
            assert r.trained is False or len(r.curve or []) == r.epochs_run, t.number
    print(f"\nchaos on {storage_url.split(':')[0]}: 4 workers, {kills} SIGKILLs, {restarts} "
          f"server restarts, {len(trials)} trials, {time.monotonic() - begun:.0f} s")


