"""Storage outages, held results and dead workers, in process on real SQLite files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import psycopg
import pytest
import sqlalchemy.exc as sa
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from nas.pool.trial_loop import run_trial
from nas.study import TrialRecord, write_trial
from nas.study.liveness import fail_dead_trials, is_dead, start_ticks, this_worker
from nas.study.outage import (
    RetryPolicy,
    StorageBroken,
    StorageUnavailable,
    is_transient,
    server_restarting,
)
from nas.study.pending import flush_pending, pending_dir
from nas.study.record import WorkerId
from nas.study.storage import open_storage


def sqlite_error(name: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(name.lower())
    error.sqlite_errorname = name  # what sqlite3 sets on errors from the library
    return error


def wrapped(inner: BaseException) -> optuna.exceptions.StorageInternalError:
    """As Optuna raises it: StorageInternalError from SQLAlchemy's error from the driver's."""
    try:
        try:
            raise sa.OperationalError("SELECT 1", {}, inner) from inner
        except sa.OperationalError as e:
            raise optuna.exceptions.StorageInternalError("commit failed") from e
    except optuna.exceptions.StorageInternalError as e:
        return e


def test_lost_connections_are_transient_and_data_errors_are_not() -> None:
    assert is_transient(wrapped(psycopg.OperationalError("server closed the connection")))
    assert is_transient(wrapped(sqlite_error("SQLITE_BUSY")))
    assert is_transient(sa.DisconnectionError("gone"))
    assert not is_transient(wrapped(sqlite_error("SQLITE_FULL")))
    assert not is_transient(wrapped(psycopg.errors.UniqueViolation("duplicate")))
    assert not is_transient(ValueError("no"))


def test_a_restarting_server_is_told_from_a_wrong_address() -> None:
    """A worker that starts while PostgreSQL restarts waits for it; a wrong address does not."""
    assert server_restarting(wrapped(psycopg.errors.AdminShutdown(
        "terminating connection due to administrator command")))
    assert server_restarting(wrapped(psycopg.OperationalError(
        'connection failed: FATAL:  the database system is starting up')))
    assert not server_restarting(wrapped(psycopg.OperationalError(
        "connection failed: Connection refused")))


class Flaky:
    """Fails transiently `failures` times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise wrapped(psycopg.OperationalError("connection refused"))
        return "answer"


def test_an_outage_is_waited_out_and_announced_once() -> None:
    notices: list[str] = []
    policy = RetryPolicy(limit_s=30, notify=notices.append, describe="storage X")
    flaky = Flaky(3)
    assert policy.call(flaky) == "answer" and flaky.calls == 4
    assert notices == ["storage X unreachable (connection refused), retrying for up to 30 s"]
    assert policy.call(Flaky(2)) == "answer" and len(notices) == 2, "a new outage, a new line"


class Busy(Flaky):
    """A SQLite file another connection is writing: busy `failures` times."""

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise wrapped(sqlite_error("SQLITE_BUSY"))
        return "answer"


def test_a_busy_sqlite_file_is_retried_at_once_and_not_announced() -> None:
    """A second writer (another worker, the heartbeat thread) is not an outage: the user is
    not told (unless it lasts), and the retry is fast."""
    notices: list[str] = []
    policy = RetryPolicy(limit_s=30, notify=notices.append, describe="storage X")
    busy = Busy(3)
    assert policy.call(busy) == "answer" and busy.calls == 4 and notices == []
    with pytest.raises(StorageUnavailable, match="database is busy|sqlite_busy"):
        RetryPolicy(limit_s=0.2, notify=notices.append).call(Busy(10**6))


def test_an_outage_longer_than_the_limit_is_one_line() -> None:
    policy = RetryPolicy(limit_s=0.3, notify=lambda text: None, describe="storage X")
    with pytest.raises(StorageUnavailable) as caught:
        policy.call(Flaky(10**6))
    assert "\n" not in str(caught.value) and "connection refused" in str(caught.value)
    with pytest.raises(ValueError):  # not an outage: no waiting at all
        policy.call(lambda: int("x"))
    with pytest.raises(optuna.exceptions.StorageInternalError):  # limit 0: no retry
        RetryPolicy(limit_s=0).call(Flaky(1))


def study_at(tmp_path: Path, limit_s: float = 0.5) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, retry=RetryPolicy(limit_s=limit_s, notify=lambda text: None))
    return optuna.create_study(study_name="s", storage=storage,
                               directions=["maximize", "minimize"]), url


def objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_int("x", 1, 5)
    write_trial(trial, spec_hash=f"h{x}", trained=True, val_accuracy=0.5 + x / 10)
    return 0.5 + x / 10, float(x)


def told_nothing_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage goes down just as a trial would be told COMPLETE (and stays down)."""
    real = RDBStorage.set_trial_state_values

    def down(self, trial_id, state, values=None):  # noqa: ANN001, ANN202
        if state == TrialState.COMPLETE:
            raise wrapped(psycopg.OperationalError("server closed the connection"))
        return real(self, trial_id, state, values)

    monkeypatch.setattr(RDBStorage, "set_trial_state_values", down)


def held_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[optuna.Study, str]:
    """A study whose first trial finished while the storage was down (for longer than the
    retry limit): the run stops, the trial stays RUNNING, its result is kept on disk."""
    study, url = study_at(tmp_path)
    with monkeypatch.context() as patch:
        told_nothing_complete(patch)
        with pytest.raises(StorageUnavailable):
            run_trial(study, objective, (), url)
    return study, url


def test_a_result_that_cannot_be_told_is_kept_and_written_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, url = held_result(tmp_path, monkeypatch)
    [held] = pending_dir(url).glob("*.json")
    assert study.trials[0].state == TrialState.RUNNING
    assert flush_pending(study, url) == [0] and not held.exists()
    [trial] = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.values == [0.5 + trial.params["x"] / 10,
                                                                    trial.params["x"]]


def test_a_held_result_of_a_trial_failed_meanwhile_is_recorded_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, url = held_result(tmp_path, monkeypatch)
    first = study.trials[0]
    study._storage.set_trial_state_values(first._trial_id, TrialState.FAIL)  # as a dead worker's
    flush_pending(study, url)
    failed, recovered = study.get_trials()
    assert failed.state == TrialState.FAIL and recovered.state == TrialState.COMPLETE
    record = TrialRecord.from_trial(recovered)
    assert record.recovered_from == 0
    assert record.spec_hash == TrialRecord.from_trial(first).spec_hash
    assert recovered.params == first.params and recovered.values[1] == first.params["x"]


def test_a_deleted_study_file_stops_with_one_line(tmp_path: Path) -> None:
    study, _ = study_at(tmp_path)
    study.optimize(objective, n_trials=1)
    (tmp_path / "s.db").unlink()
    with pytest.raises(StorageBroken, match="deleted while the search ran") as caught:
        study.ask()
    assert "\n" not in str(caught.value)


def gone_process() -> WorkerId:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    me = this_worker()
    started = start_ticks(child.pid)
    child.wait()
    return me.model_copy(update={"pid": child.pid, "started": started or 1})


def test_a_worker_is_dead_only_when_that_is_certain() -> None:
    me = this_worker()
    assert not is_dead(me)
    assert is_dead(gone_process())
    assert is_dead(me.model_copy(update={"started": me.started + 1})), "pid reused"
    assert not is_dead(me.model_copy(update={"host": "elsewhere"})), "left to heartbeats"
    assert not is_dead(me.model_copy(update={"namespace": "pid:[1]"})), "another container"


def test_trials_of_dead_workers_are_failed_and_retried_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    trial = study.ask({"x": optuna.distributions.IntDistribution(1, 5)})
    write_trial(trial, spec_hash="abc", spec={"family": "x"}, curve=[0.3],
                worker=gone_process())
    alive = study.ask({"x": optuna.distributions.IntDistribution(1, 5)})
    write_trial(alive, worker=this_worker())
    assert fail_dead_trials(study) == [trial.number]
    assert fail_dead_trials(study) == [], "once"
    states = {t.number: t.state for t in study.get_trials()}
    assert states[trial.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    [retry] = study.get_trials(states=(TrialState.WAITING,))
    assert retry.params == {"x": trial.params["x"]}
    assert retry.system_attrs["failed_trial"] == trial.number
    record = TrialRecord.from_trial(retry)
    assert record.spec_hash == "abc" and record.curve is None, "what to do, not what was done"
    assert TrialRecord.from_trial(study.trials[trial.number]).reason == "worker_died"
