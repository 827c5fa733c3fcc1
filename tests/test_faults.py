"""Faults: killed workers, signals, stale trials, OOM, NaN, many workers on SQLite and PostgreSQL,
a full disk, a deleted study file.

These drive real `nas search` processes on real Fashion-MNIST and real databases (the server
faults are in test_faults_server.py).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import torch
from faultkit import (
    ENV,
    LONGER,
    PG_URL,
    REPO,
    SPACE,
    check_study,
    error_lines,
    load,
    no_leftover_processes,  # noqa: F401  an autouse fixture
    reader,
    running_mid_trial,
    search_args,
    start,
    storage_for,
    wait_for,
)
from optuna.trial import TrialState

from nas.pool import PoolStopped
from nas.search import objective as objective_module
from nas.search.request import SearchRequest
from nas.search.space import SearchSpace, load_space
from nas.search.work import search as run_search
from nas.study import TrialRecord

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_for(request.param, tmp_path, PG_URL,
                       "NAS_TEST_POSTGRES_URL not set (make test starts a server)")


def test_sigkill_then_the_same_command_at_once_retries_the_killed_trial(
    storage_url: str, tmp_path: Path
) -> None:
    study = f"kill-{uuid.uuid4().hex[:8]}"
    env = {**ENV, "NAS_GRACE_S": "600"}  # the heartbeat path would wait 10 minutes
    args = search_args(storage_url, study, 3, *LONGER)
    worker = start(args, tmp_path, env)
    wait_for(lambda: running_mid_trial(storage_url, study), process=worker)
    victim = load(storage_url, study).get_trials(states=(TrialState.RUNNING,))[0]
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert load(storage_url, study).trials[victim.number].state == TrialState.RUNNING
    rerun = subprocess.run(args, cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = check_study(storage_url, study, 3)
    assert trials[victim.number].state == TrialState.FAIL
    assert TrialRecord.from_trial(trials[victim.number]).reason == "worker_died"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert (TrialRecord.from_trial(retries[0]).resumed_epochs or 0) >= 1, "resumed its checkpoint"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_fail_the_running_trial_and_the_next_run_resumes(
    sig: signal.Signals, code: int, tmp_path: Path
) -> None:
    url, study = f"sqlite:///{tmp_path / 's.db'}", "sig"
    args = search_args(url, study, 3, *LONGER)
    worker = start(args, tmp_path)
    wait_for(lambda: running_mid_trial(url, study), process=worker)
    worker.send_signal(sig)
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == code, out
    assert "Traceback" not in out
    states = [t.state for t in load(url, study).trials]
    assert TrialState.RUNNING not in states and TrialState.FAIL in states
    [failed] = load(url, study).get_trials(states=(TrialState.FAIL,))
    assert failed.user_attrs["reason"] == ("interrupted" if sig == signal.SIGINT else "terminated")
    rerun = subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    check_study(url, study, 3)


def test_a_live_trial_declared_stale_is_logged_and_the_worker_carries_on(tmp_path: Path) -> None:
    url, study = f"sqlite:///{tmp_path / 's.db'}", "stale"
    worker = start(search_args(url, study, 2, *LONGER), tmp_path)
    wait_for(lambda: running_mid_trial(url, study), process=worker)
    live = load(url, study).get_trials(states=(TrialState.RUNNING,))[0]
    reader(url).set_trial_state_values(live._trial_id, state=TrialState.FAIL)  # as a peer would
    out, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, out
    assert "failed by another worker as stale" in out
    check_study(url, study, 2)


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    url, study = f"sqlite:///{tmp_path / 's.db'}", "orphans"
    parent = start([*search_args(url, study, 6), "--jobs", "2"], tmp_path)
    wait_for(lambda: running_mid_trial(url, study), process=parent)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    # the workers get SIGTERM from the kernel, mark their trials failed and exit
    wait_for(lambda: not load(url, study).get_trials(states=(TrialState.RUNNING,)), 60)
    time.sleep(3)
    assert not load(url, study).get_trials(states=(TrialState.RUNNING,)), "no orphan works on"
    assert load(url, study).get_trials(states=(TrialState.FAIL,))


def tiny_request(tmp_path: Path, **kw: object) -> SearchRequest:
    return SearchRequest(space=load_space(SPACE), trials=2, study="s",
                         storage=f"sqlite:///{tmp_path / 's.db'}", epochs=1, subset=0.02,
                         batch_size=64, device="cpu", **kw)  # type: ignore[arg-type]


def test_out_of_memory_fails_one_trial_and_the_study_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fit, calls = objective_module.fit, []

    def fit_once_oom(*args: object, **kwargs: object):  # noqa: ANN202
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(objective_module, "fit", fit_once_oom)
    study = run_search(tiny_request(tmp_path))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.user_attrs["reason"] for t in failed] == ["oom"]
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 2


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_non_finite_loss_fails_trials_and_consecutive_failures_stop(
    jobs: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = search_args(url, "nan", 8, "--lr", "1e12", "--max-failures", "2", "--jobs", jobs)
    run = subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "2 consecutive trials failed" in run.stderr and "non_finite_loss" in run.stderr
    assert run.stderr.splitlines()[-1].startswith("nas: error: ")
    trials = load(url, "nan").trials
    # a worker stopped mid-trial by the others' failure says so
    assert {t.user_attrs.get("reason") for t in trials} <= {"non_finite_loss", "terminated"}
    assert "non_finite_loss" in {t.user_attrs.get("reason") for t in trials}
    assert TrialState.RUNNING not in {t.state for t in trials}, "every worker stopped cleanly"
    assert len(trials) < 8, "the search stopped before its target"


def test_invalid_spec_from_a_user_space_fails_that_trial(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    space = tmp_path / "odd.yaml"
    space.write_text(
        "family: resnext\nfixed: {stem: simple, bottleneck_ratio: 1.0}\nstages: [1, 1]\n"
        "dimensions:\n  depths: {low: 1, high: 1, per_stage: true}\n"
        "  widths: {choices: [10, 12], per_stage: true}\n  group_width: {choices: [4]}\n")
    req = tiny_request(tmp_path, max_failures=50)
    # the load check (and the search's check at the data's size) refuses this space; a point
    # that no check built stands for one here: it fails its trial once
    req.space = load_space(space, check=False)
    monkeypatch.setattr(SearchSpace, "check_points", lambda self, size=None: None)
    req.trials = 3  # the space has two points, one of them invalid: a single network
    with pytest.raises(PoolStopped, match="has 2 point.s., every one trained or invalid"):
        run_search(req)
    study = load(req.storage_url, "s")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert {t.user_attrs.get("reason") for t in failed} == {"invalid_spec"}
    assert len(failed) == 1, "an invalid point is not proposed again"
    trained = [t for t in study.trials if t.user_attrs.get("trained")]
    assert len({t.user_attrs["spec_hash"] for t in trained}) == 1


@pytest.mark.skipif(PG_URL is None, reason="NAS_TEST_POSTGRES_URL not set")
def test_three_workers_share_one_postgres_study(tmp_path: Path) -> None:
    study = f"pg3-{uuid.uuid4().hex[:8]}"
    url = urlsplit(PG_URL)  # type: ignore[arg-type]
    bare = url._replace(netloc=f"{url.username}@{url.hostname}:{url.port}").geturl()
    args = search_args(bare, study, 6, "--epochs", "1")  # the password comes from PGPASSWORD
    env = {**ENV, "PGPASSWORD": url.password or ""}
    workers = [start(args, tmp_path, env) for _ in range(3)]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    assert all("nas-test-secret" not in o for o in outputs), "credentials must be masked"
    trials = check_study(PG_URL, study, 6)  # type: ignore[arg-type]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) <= 6 + 2, "workers stop at the shared target"


def test_a_study_file_deleted_under_a_running_search_stops_it_with_one_line(
    tmp_path: Path
) -> None:
    url, study = f"sqlite:///{tmp_path / 's.db'}", "gone"
    search = start(search_args(url, study, 4, *LONGER), tmp_path)
    wait_for(lambda: running_mid_trial(url, study), process=search)
    (tmp_path / "s.db").unlink()
    out, _ = search.communicate(timeout=120)
    assert search.returncode == 2, out
    assert "Traceback" not in out
    [line] = error_lines(out)
    assert "deleted while the search ran" in line


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> None:
    """Writes a file until the disk is full (the close, flushing the rest, may fail too)."""
    with contextlib.suppress(OSError), (disk / "filler").open("wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()


def test_sqlite_on_a_full_disk_stops_with_one_line(small_disk: Path, tmp_path: Path) -> None:
    url, study = f"sqlite:///{small_disk / 's.db'}", "full"
    search = start(search_args(url, study, 6, *LONGER), tmp_path)
    wait_for(lambda: running_mid_trial(url, study), process=search)
    fill(small_disk)
    out, _ = search.communicate(timeout=120)
    assert search.returncode == 2, out
    assert "Traceback" not in out
    [line] = error_lines(out)
    assert "full" in line.lower() or "no space" in line.lower(), line


OPEN = """
import sys
from nas.study.storage import open_storage
open_storage(sys.argv[1], heartbeat=False)
"""


@pytest.mark.skipif(PG_URL is None, reason="NAS_TEST_POSTGRES_URL not set")
def test_workers_opening_a_new_postgres_database_at_once_all_get_in(tmp_path: Path) -> None:
    """Four processes create Optuna's schema in one new database at the same moment: each
    PostgreSQL refusal of a duplicate catalogue entry is a race to open again, not an error."""
    name = f"race_{uuid.uuid4().hex[:8]}"
    url = urlsplit(PG_URL)  # type: ignore[arg-type]
    with psycopg.connect(PG_URL, autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute(f"CREATE DATABASE {name}")
    try:
        fresh = url._replace(path=f"/{name}").geturl()
        env = {**ENV, "PYTHONPATH": str(REPO)}
        openers = [subprocess.Popen([sys.executable, "-c", OPEN, fresh], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                   for _ in range(4)]
        outputs = [p.communicate(timeout=120)[0] for p in openers]
        assert [p.returncode for p in openers] == [0, 0, 0, 0], outputs
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:  # type: ignore[arg-type]
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
