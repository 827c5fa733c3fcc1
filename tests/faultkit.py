"""What the fault tests share: real `nas search` processes on a tiny space, polling their study,
and the PostgreSQL servers scripts/test.sh starts (one the fault tests restart and pause, one
that no test disrupts)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.builder import build
from nas.cost import measure
from nas.io import parse_spec
from nas.study.outage import RetryPolicy
from nas.study.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("NAS_TEST_POSTGRES_URL")  # a server no test stops
# a server of its own for the tests that restart and pause it, set by scripts/test.sh when it
# started both: other tests' connections to PG_URL are never cut under them
FAULT_PG_URL = os.environ.get("NAS_TEST_PG_FAULT_URL")
PG_CONTROL = os.environ.get("NAS_TEST_PG_CONTROL")
FAULT_PG_ENV = {"NAS_PG_DIR": os.environ.get("NAS_TEST_PG_FAULT_DIR", ""),
                "NAS_PG_PORT": os.environ.get("NAS_TEST_PG_FAULT_PORT", "")}
needs_pg_control = pytest.mark.skipif(
    FAULT_PG_URL is None or PG_CONTROL is None,
    reason="needs the PostgreSQL server scripts/test.sh starts for fault tests (it is restarted)")
ENV = {**os.environ, "NAS_HEARTBEAT_S": "1", "NAS_GRACE_S": "3", "PYTHONUNBUFFERED": "1"}
# a tiny space on 1% of the data: an epoch is ~0.1 s of training and ~0.3 s of validation on
# one core, so the tests spend their time on the faults
SPACE = str(REPO / "tests" / "spaces" / "tiny_resnext.yaml")
BUDGET = ["--epochs", "3", "--subset", "0.01", "--batch-size", "64", "--device", "cpu",
          "--jobs", "1"]
# trials long enough that the one seen running is still running when the test acts on it
LONGER = ["--epochs", "12"]


def storage_for(kind: str, tmp_path: Path, pg_url: str | None, missing: str) -> str:
    """The storage a test parametrised over ["sqlite", "postgresql"] runs on (skipped, saying
    `missing`, when there is no such server)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if pg_url is None:
        pytest.skip(missing)
    return pg_url


def search_args(storage: str, study: str, trials: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nas", "search", "--space", SPACE, "--trials",
            str(trials), "--study", study, "--storage", storage, *BUDGET, *extra]


STARTED: list[subprocess.Popen] = []


def default_sigint() -> None:
    """Children of a background job inherit an ignored SIGINT; a user's Ctrl-C is not ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], cwd: Path, env: dict[str, str] = ENV) -> subprocess.Popen:
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint)
    STARTED.append(process)
    return process


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """A failed test must not leave a search running to slow down the tests after it."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


@functools.cache
def reader(storage: str) -> optuna.storages.BaseStorage:
    """One storage per URL: opening one runs schema checks, too slow to do on every poll. It
    waits out a restarting server as the searches do."""
    return open_storage(storage, heartbeat=False,
                        retry=RetryPolicy(limit_s=120, notify=lambda text: None))


def load(storage: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=reader(storage))


def wait_for(predicate, timeout: float = 120.0,  # noqa: ANN001
             process: subprocess.Popen | None = None) -> None:
    """Polls `predicate`; with `process`, a search that ended first fails with its output."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the search ended (exit {process.returncode}) first:\n{out}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def running_mid_trial(storage: str, study: str) -> bool:
    """A trial is RUNNING and has finished at least one epoch (so a checkpoint exists)."""
    try:
        trials = load(storage, study).get_trials(states=(TrialState.RUNNING,))
    except KeyError:
        return False
    return any(t.user_attrs.get("curve") for t in trials)


def check_study(storage: str, study: str, target: int) -> list[optuna.trial.FrozenTrial]:
    """Target reached, unique numbers, nothing RUNNING, costs recomputable from stored specs."""
    trials = load(storage, study).get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= target
    for t in trials:
        if t.state == TrialState.COMPLETE:
            spec = parse_spec(t.user_attrs["spec"])
            cost = measure(build(spec), spec.in_channels, spec.input_size)
            assert (cost.params, cost.macs) == (t.user_attrs["params"], t.user_attrs["macs"])
    return trials


def pg(action: str, *args: str) -> None:
    """Restart or pause the test server, as a database upgrade or a fail-over does."""
    subprocess.run(["bash", str(REPO / PG_CONTROL), action, *args],  # type: ignore[operator]
                   check=True, capture_output=True, timeout=120,
                   env={**os.environ, **FAULT_PG_ENV})


def error_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("nas: error:")]


def finished_count(storage: str, study: str) -> int:
    try:
        trials = load(storage, study).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    except Exception:  # noqa: BLE001  the server may be restarting
        return 0
    return len(trials)



def busy(workers: list[subprocess.Popen], storage: str, study: str) -> bool:
    """Every live worker is inside a trial, so a kill hits one."""
    alive = sum(w.poll() is None for w in workers)
    try:
        running = load(storage, study).get_trials(states=(TrialState.RUNNING,))
    except Exception:  # noqa: BLE001  not created yet, or the server is restarting
        return False
    return alive == 0 or len(running) >= alive


