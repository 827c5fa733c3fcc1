"""Signals of worker processes: SIGTERM unwinds like Ctrl-C (the running trial is failed, exit
143) once; a process already on its way out ignores it; every worker dies with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator

from nas.errors import Terminated

_leaving = False  # this process is on its way out: a SIGTERM must not interrupt that


def raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM handler: unwinds like Ctrl-C (the running trial is failed) and exits 143, once.
    A SIGTERM that arrives while the process is already leaving (unwinding from an earlier one,
    or a worker reporting its error while the parent stops the others) is ignored: it would
    otherwise interrupt the exit with a 'Terminated' traceback."""
    global _leaving
    if _leaving:
        return
    _leaving = True
    raise Terminated()


def unwind_on_sigterm() -> None:
    """Installs `raise_terminated` for SIGTERM, this process not leaving yet."""
    global _leaving
    _leaving = False
    signal.signal(signal.SIGTERM, raise_terminated)


def leaving() -> None:
    """From here on this process is exiting: SIGTERMs are ignored."""
    global _leaving
    _leaving = True


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM held back for the block: the event says one came, and the caller acts
    on it once the block is done (asking for a trial must not be cut between the trial's
    creation and the code that tells it FAIL on an interrupt). Outside the main thread, or
    when the process already ignores them, the block runs as is."""
    pending = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, handler in kept.items():
        if handler not in (signal.SIG_IGN, None):
            signal.signal(sig, lambda signum, frame: pending.set())
    try:
        yield pending
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)


def die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (even by SIGKILL): no orphan workers."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise Terminated()


__all__ = ["die_with_parent", "interrupts_deferred", "leaving", "raise_terminated",
           "unwind_on_sigterm"]
