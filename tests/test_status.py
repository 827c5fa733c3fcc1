"""nas status: a real `nas search --jobs 2` seen while it runs (one worker SIGKILLed: shown dead)
and once it has finished; that it never writes; how liveness is told; recent failures."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from faultkit import (
    ENV,
    REPO,
    load,
    no_leftover_processes,  # noqa: F401  an autouse fixture
    search_args,
    start,
    wait_for,
)
from optuna.trial import TrialState

from nas.errors import UserError
from nas.study import trained_count
from nas.study.liveness import this_worker
from nas.study.record import TrialRecord, WorkerId
from nas.study.status import liveness, read_only, study_status
from nas.study.storage import open_existing


def status_json(url: str, study: str) -> dict:
    """`nas status --json` in a process of its own, as a user on another terminal runs it."""
    done = subprocess.run([sys.executable, "-m", "nas", "status", "--study", study, "--storage",
                           url, "--json"], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return json.loads(done.stdout)


def study_files(path: Path) -> dict[str, str]:
    """The SQLite file and the frames of its write-ahead log, by content hash (an empty log is
    no log). The -shm file is left out: it is the log's shared index, in which every reader,
    even a read-only one, marks what it reads."""
    wal = path.with_name(path.name + "-wal")
    files = [path, *([wal] if wal.exists() and wal.stat().st_size else [])]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def two_mid_trial(url: str, study: str) -> bool:
    """Both workers are inside a trial that has finished an epoch and records its worker."""
    try:
        running = load(url, study).get_trials(states=(TrialState.RUNNING,))
    except KeyError:
        return False
    return len(running) == 2 and all(t.user_attrs.get("curve") and t.user_attrs.get("worker")
                                     for t in running)


def watch_until(url: str, study: str, text: str) -> tuple[str, int]:
    """`nas status --watch` on a terminal (as rich sees one) until `text` is drawn, then
    Ctrl-C: everything it wrote and its exit code."""
    watched = subprocess.Popen(
        [sys.executable, "-m", "nas", "status", "--study", study, "--storage", url, "--watch",
         "--interval", "0.5"], cwd=REPO, env={**ENV, "TTY_COMPATIBLE": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    drawn: list[str] = []
    reading = threading.Thread(target=lambda: drawn.extend(iter(
        lambda: watched.stdout.read(1) if watched.stdout else "", "")), daemon=True)
    reading.start()
    try:
        wait_for(lambda: text in "".join(drawn), 120, process=watched)
        time.sleep(1.5)  # a redraw or two more
    finally:
        watched.send_signal(signal.SIGINT)
        watched.wait(timeout=60)
        reading.join(timeout=10)
    return "".join(drawn), watched.returncode


@pytest.mark.slow
def test_status_of_a_live_search_shows_each_worker_and_a_killed_one_dead(tmp_path: Path) -> None:
    url, study = f"sqlite:///{tmp_path / 's.db'}", "live"
    env = {**ENV, "NAS_GRACE_S": "600"}  # liveness here comes from the processes
    search = start(search_args(url, study, 4, "--epochs", "40", "--jobs", "2"), tmp_path, env)
    wait_for(lambda: two_mid_trial(url, study), 180, process=search)
    seen = status_json(url, study)
    assert seen["study"] == "live" and seen["storage"] == url and seen["epochs"] == 40
    assert seen["counts"]["RUNNING"] == 2 and len(seen["running"]) == 2
    for row in seen["running"]:
        assert row["liveness"] == "alive", row
        assert row["host"] == this_worker().host and row["pid"] != search.pid
        assert 1 <= row["epoch"] <= 40 and row["epochs"] == 40
        assert row["heartbeat_age_s"] is not None and row["heartbeat_age_s"] < 30
        assert row["elapsed_s"] > 0 and row["worker_started"] is not None
    victim, other = seen["running"]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{victim['pid']}").exists(), 30)  # its parent reaps it
    after = {r["number"]: r for r in status_json(url, study)["running"]}
    assert after[victim["number"]]["liveness"] == "dead"
    assert after[victim["number"]]["why"] == f"process {victim['pid']} is gone"
    assert after[other["number"]]["liveness"] == "alive"
    out, code = watch_until(url, study, f"dead: process {victim['pid']} is gone")
    assert code == 0, out
    assert "Traceback" not in out
    search.send_signal(signal.SIGINT)
    search.communicate(timeout=120)


@pytest.mark.slow
def test_status_of_a_finished_study_reads_without_writing(tmp_path: Path, run_nas) -> None:  # noqa: ANN001
    path = tmp_path / "s.db"
    url, study = f"sqlite:///{path}", "done"
    done = subprocess.run(search_args(url, study, 3, "--epochs", "1", "--jobs", "2"),
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    before = study_files(path)
    result = run_nas("status", "--study", study, "--storage", url)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(f"study done ({url}): space tiny_resnext")
    trials = load(url, study).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    finished, trained = len(trials), trained_count(load(url, study))
    assert lines[1].startswith(f"progress: {trained} trained of 3; search time ")
    assert lines[2].startswith(f"trials: {sum(t.state == TrialState.COMPLETE for t in trials)} "
                               f"complete, ")
    assert "no trial is running" in lines
    assert "failed in the last hour: 0 (0 retried)" in lines
    data = status_json(url, study)
    assert data["running"] == [] and data["finished"] == finished
    assert data["trained"] == trained >= 3 and data["target"] == 3
    assert data["search_s"] > 0 and data["time_s"] is None and data["fidelity"] is None
    assert data["counts"]["RUNNING"] == 0
    light = subprocess.run([sys.executable, "-X", "importtime", "-m", "nas", "status",
                            "--study", study, "--storage", url], capture_output=True, text=True,
                           timeout=120, cwd=REPO, env=ENV)
    imported = {line.split("|")[-1].strip() for line in light.stderr.splitlines()}
    assert "nas.study.status" in imported and not {"torch", "pandas"} & imported
    assert study_files(path) == before, "nas status changed the study's files"


def test_a_status_reader_cannot_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="s", storage=url)
    storage = read_only(open_existing(url))
    with pytest.raises(Exception, match="readonly|read-only|query_only"):  # noqa: B017
        storage.set_study_user_attr(storage.get_study_id_from_name("s"), "k", 1)
    assert optuna.load_study(study_name="s", storage=url).user_attrs == {}


def test_liveness_of_this_machine_by_process_and_of_others_by_heartbeat() -> None:
    me = this_worker()
    assert liveness(me, None, 30) == ("alive", f"process {me.pid} runs")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = me.model_copy(update={"pid": gone.pid})
    gone.wait()
    assert liveness(dead, 1.0, 30) == ("dead", f"process {gone.pid} is gone")
    elsewhere = WorkerId(host="other-host", boot="b", pid=me.pid, started=me.started)
    assert liveness(elsewhere, 5.0, 30) == ("alive", "heartbeat 5 s ago")
    state, why = liveness(elsewhere, 45.0, 30)
    assert state == "stale" and why.startswith("last heartbeat 45 s ago, over the 30 s grace")
    assert liveness(elsewhere, None, 30)[0] == "unknown"
    assert liveness(None, 3.0, 30) == ("alive", "heartbeat 3 s ago")


def failed_trial(number_hint: int, when: datetime, **record: object) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(state=TrialState.FAIL,
                                      user_attrs=TrialRecord(**record).to_attrs())
    trial.datetime_start, trial.datetime_complete = when - timedelta(seconds=5), when
    return trial


def test_failures_of_the_last_hour_and_their_retries(tmp_path: Path, run_nas) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="f", storage=url)
    now = datetime.now()
    study.add_trial(failed_trial(0, now - timedelta(hours=2), reason="oom"))  # too old
    study.add_trial(failed_trial(1, now - timedelta(minutes=5), reason="worker_died",
                                 detail="process 7 on h is gone"))
    study.add_trial(failed_trial(2, now - timedelta(minutes=1), reason="data_error"))
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING,
                                              system_attrs={"failed_trial": 1}))
    status = study_status(read_only(open_existing(url)), "f", url)
    assert [(f.number, f.reason, f.retry, f.retry_state) for f in status.failed_last_hour] == [
        (1, "worker_died", 3, "WAITING"), (2, "data_error", None, None)]
    assert status.retried_last_hour == 1
    secret = "postgresql://nas:s3cret@db.example:5432/nas"  # as a user's --storage may hold
    reader = read_only(open_existing(url))
    assert study_status(reader, "f", secret).storage == "postgresql://nas:***@db.example:5432/nas"
    with pytest.raises(UserError, match=r"no study 'g' in postgresql://nas:\*\*\*@db"):
        study_status(reader, "g", secret)
    assert status.counts == {"RUNNING": 0, "COMPLETE": 0, "PRUNED": 0, "FAIL": 3, "WAITING": 1}
    out = run_nas("status", "--study", "f", "--storage", url).out.splitlines()
    assert "failed in the last hour: 2 (1 retried)" in out
    assert "  trial 1: worker_died (process 7 on h is gone); retry: trial 3 (waiting)" in out
    assert "  trial 2: data_error; not retried" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--study", "nope"], "nas: error: no study 'nope' in sqlite:///"),
    (["--study", "f", "--watch", "--json"], "nas: error: --watch redraws a table; --json"),
    (["--study", "f", "--watch", "--interval", "0"], "nas: error: --interval 0.0: must be"),
])
def test_bad_input_is_one_line(tmp_path: Path, run_nas, args: list[str],  # noqa: ANN001
                               message: str) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="f", storage=url)
    result = run_nas("status", "--storage", url, *args)
    assert result.code == 2 and len(result.err_lines) == 1
    assert result.err_lines[0].startswith(message)


def test_a_worker_elsewhere_is_judged_by_the_heartbeat_its_trial_records(tmp_path: Path,
                                                                         run_nas) -> None:  # noqa: ANN001
    from nas.study import StudySettings
    from nas.study.storage import open_storage

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="mf", storage=url)
    StudySettings(epochs=9, min_epochs=1, eta=3, brackets=2, trials=20, time_s=600.0).write(study)
    elsewhere = WorkerId(host="node-7", boot="b", pid=4242, started=1)
    study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=TrialRecord(
        worker=elsewhere, curve=[0.5, 0.6], bracket=1, continues=0).to_attrs()))
    [running] = study.get_trials(states=(TrialState.RUNNING,))
    open_storage(url, heartbeat=False).record_heartbeat(running._trial_id)
    reader = read_only(open_existing(url))
    status = study_status(reader, "mf", url, grace_s=30)
    [row] = status.running
    assert (row.host, row.pid, row.worker_started) == ("node-7", 4242, None)
    assert (row.epoch, row.epochs, row.bracket, row.continues) == (2, 9, 1, 0)
    assert row.liveness == "alive" and 0 <= row.heartbeat_age_s < 5
    assert status.fidelity == {"min_epochs": 1, "eta": 3, "brackets": 2}
    assert (status.target, status.trained, status.time_s) == (20, 0, 600.0)
    time.sleep(2.1)  # SQLite's clock counts whole seconds
    assert study_status(reader, "mf", url, grace_s=1).running[0].liveness == "stale"
    out = run_nas("status", "--study", "mf", "--storage", url).out
    assert "progress: 0 trained of 20; search time 0:00 of 10:00" in out
    assert "multi-fidelity: first rung at 1 epochs, eta 3, 2 brackets" in out
    data = json.loads(run_nas("status", "--study", "mf", "--storage", url, "--json").out)
    assert [(r["number"], r["bracket"], r["continues"], r["liveness"]) for r in data["running"]] \
        == [(0, 1, 0, "alive")]  # within the default grace period
