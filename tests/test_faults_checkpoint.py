"""A SIGKILLed search whose checkpoint files are then damaged, as a torn write or a full disk
leaves them, and the same command run at once: no killed trial is lost.

A real `nas search --jobs 3` on SQLite is killed (its three workers and the parent, SIGKILL)
while each worker is inside a trial with a checkpoint; one checkpoint is truncated, one
overwritten with random bytes, one replaced by another trial's file. The rerun fails the dead
trials and queues their retries; each retry says once that its checkpoint is not resumed and
trains from its first epoch, and completes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from faultkit import (
    ENV,
    check_study,
    load,
    no_leftover_processes,  # noqa: F401  an autouse fixture
    search_args,
    start,
    wait_for,
)
from optuna.trial import FrozenTrial, TrialState

from nas.study import TrialRecord
from nas.train.checkpoint import HEADER_SIZE

pytestmark = pytest.mark.slow
JOBS = 3
# trials of 12 epochs that no early stopping cuts short: each is still running when it is killed
ARGS = ["--epochs", "12", "--no-early-stop", "--jobs", str(JOBS)]
LIBRARY_WARNING = re.compile(r"\b[A-Z][A-Za-z]*Warning\b")


class LibraryWarningSeen(AssertionError):
    """A library's warning reached the terminal during the rerun."""


def all_workers_mid_trial(url: str, study: str, seen: list[FrozenTrial]) -> bool:
    """Every worker runs a trial that has finished an epoch (so has a checkpoint) and is far
    from its last; those trials are put in `seen`."""
    try:
        running = load(url, study).get_trials(states=(TrialState.RUNNING,))
    except KeyError:
        return False
    if len(running) < JOBS or not all(1 <= len(t.user_attrs.get("curve", [])) <= 8
                                      for t in running):
        return False
    seen[:] = running
    return True


def checkpoint_of(folder: Path, trial: FrozenTrial) -> Path:
    [path] = folder.glob(f"trial-{trial.number}-*.pt")
    return path


def kill_search(search: subprocess.Popen, victims: list[FrozenTrial]) -> None:
    """SIGKILL for every worker, then the parent: nothing is cleaned up."""
    for trial in victims:
        worker = TrialRecord.from_trial(trial).worker
        assert worker is not None and worker.pid != search.pid
        os.kill(worker.pid, signal.SIGKILL)
    search.send_signal(signal.SIGKILL)
    search.wait()


def damage(paths: list[Path]) -> list[str]:
    """Truncated, random bytes, another trial's file; what the rerun will say of each."""
    first = paths[0].read_bytes()
    paths[0].write_bytes(first[:len(first) // 2])
    paths[1].write_bytes(os.urandom(paths[1].stat().st_size))
    paths[2].write_bytes(first)
    payload = len(first) - HEADER_SIZE
    return [f"truncated: {len(first) // 2 - HEADER_SIZE:,} of {payload:,} bytes",
            "not a nas checkpoint (no nas header)",
            f"it is another file ({paths[0].name}) copied over this one"]


def test_killed_trials_with_damaged_checkpoints_complete_in_the_rerun(tmp_path: Path) -> None:
    url, study = f"sqlite:///{tmp_path / 'study.db'}", f"ck-{uuid.uuid4().hex[:8]}"
    env = {**ENV, "NAS_GRACE_S": "600"}  # the dead workers are found by their pid, at once
    args = search_args(url, study, JOBS + 1, *ARGS)
    search = start(args, tmp_path, env)
    victims: list[FrozenTrial] = []
    wait_for(lambda: all_workers_mid_trial(url, study, victims), timeout=300, process=search)
    kill_search(search, victims)
    folder = tmp_path / "checkpoints" / study
    paths = [checkpoint_of(folder, t) for t in victims]
    why = damage(paths)

    rerun = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out
    assert "Traceback" not in out and "weights_only" not in out, out
    said = [line for line in out.splitlines() if "checkpoint not resumed" in line]
    assert sorted(said) == sorted(f"{p}: checkpoint not resumed, {reason}; training from the "
                                  f"first epoch" for p, reason in zip(paths, why)), out
    trials = check_study(url, study, JOBS + 1)
    for victim in victims:
        assert trials[victim.number].state == TrialState.FAIL
        assert TrialRecord.from_trial(trials[victim.number]).reason == "worker_died"
        [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
        record = TrialRecord.from_trial(retry)
        assert retry.state == TrialState.COMPLETE and retry.params == victim.params
        assert record.trained and record.epochs_run == 12
        assert not record.resumed_epochs, "its checkpoint was bad: trained from scratch"
    assert not [t for t in trials if t.state == TrialState.FAIL
                and TrialRecord.from_trial(t).reason != "worker_died"]
    assert sorted(os.listdir(folder)) == [], "finished trials leave no checkpoint behind"
    if LIBRARY_WARNING.search(out):
        raise LibraryWarningSeen(out)

