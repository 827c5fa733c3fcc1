"""Worker processes on their way out: a SIGTERM from the parent stopping the others must not
turn a worker's orderly exit into a 'Terminated' traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nas.pool.signals import leaving, raise_terminated, unwind_on_sigterm

REPO = Path(__file__).resolve().parents[1]

WORKER = """
import os, signal, sys
from nas.errors import UserError
from nas.pool.workers import _worker_process

class Messages:  # the parent's queue; the parent stops the others as soon as it reads an error
    def put(self, item):
        os.kill(os.getpid(), signal.SIGTERM)
        sys.stderr.write(f"told the parent: {item[1]}\\n")

class Failing:  # work whose session cannot open
    noun, stop_hint, device, threads, max_failures = "trial", "", "cpu", 1, 5
    def for_worker(self, index):
        return self
    def open_session(self, notify, worker, opened=None):
        raise UserError("3 consecutive trials failed")

_worker_process(Failing(), 0, os.getppid(), Messages())
"""


def test_a_worker_stopping_on_an_error_exits_2_through_a_sigterm() -> None:
    """Seen by a newcomer: workers that all stopped on one error printed a Terminated
    traceback, the parent's SIGTERM arriving while they reported it."""
    done = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert done.stderr == "told the parent: 3 consecutive trials failed\n"


def test_the_handler_unwinds_once_then_lets_the_exit_finish() -> None:
    before = signal.getsignal(signal.SIGTERM)
    try:
        unwind_on_sigterm()
        with pytest.raises(KeyboardInterrupt):  # Terminated unwinds like Ctrl-C
            raise_terminated(signal.SIGTERM, None)
        assert raise_terminated(signal.SIGTERM, None) is None, "a second one is ignored"
        unwind_on_sigterm()
        leaving()
        assert raise_terminated(signal.SIGTERM, None) is None, "ignored once leaving"
    finally:
        signal.signal(signal.SIGTERM, before)
