"""`nas status`: a study's progress and its running trials, read only, once or live."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from nas.cli.app import app, console
from nas.cli.study_cmds import StorageOpt, StudyOpt
from nas.errors import UserError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from nas.study.status import RecentFailure, RunningTrial, StudyStatus

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "RUNNING": "running",
          "WAITING": "waiting", "FAIL": "failed"}


def duration(seconds: float | None) -> str:
    """'1:02:03' or '2:03'; '-' when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def clock(when: datetime | None, now: datetime) -> str:
    """A local time: HH:MM:SS today, else the date too."""
    if when is None:
        return "-"
    return when.strftime("%H:%M:%S" if when.date() == now.date() else "%Y-%m-%d %H:%M")


def header_lines(s: StudyStatus) -> list[str]:
    """Study, progress, counts and the liveness settings."""
    what = ", ".join(f"{k} {v}" for k, v in (("space", s.space), ("sampler", s.sampler)) if v)
    objectives = f", objectives {', '.join(s.objectives)}" if s.objectives else ""
    target = f" of {s.target}" if s.target else ""
    spent = f"; search time {duration(s.search_s)}" + (
        f" of {duration(s.time_s)}" if s.time_s else "")
    counts = ", ".join(f"{s.counts.get(k, 0)} {label}" for k, label in STATES.items())
    budget = f"{s.epochs} epochs per trial" if s.epochs else "epochs per trial not recorded"
    fidelity = "" if not s.fidelity else (
        f" (multi-fidelity: first rung at {s.fidelity.get('min_epochs')} epochs, eta "
        f"{s.fidelity.get('eta')}, {s.fidelity.get('brackets') or 1} brackets)")
    return [f"study {s.study} ({s.storage}){': ' + what if what else ''}{objectives}",
            f"progress: {s.trained} trained{target}{spent}",
            f"trials: {counts}",
            f"{budget}{fidelity}; liveness: this machine's workers by their process, others' "
            f"by heartbeat (stale after {s.grace_s} s without one, NAS_GRACE_S)"]


def running_row(t: RunningTrial, now: datetime) -> list[str]:
    epochs = f"{t.epoch}/{t.epochs}" if t.epochs else str(t.epoch)
    if t.bracket is not None:
        epochs += f" (bracket {t.bracket})"
    beat = "-" if t.heartbeat_age_s is None else f"{t.heartbeat_age_s:.0f} s ago"
    retry = f" (retry of {t.retry_of})" if t.retry_of is not None else ""
    retry += f" (continues {t.continues})" if t.continues is not None else ""
    return [f"{t.number}{retry}", t.host or "-", "-" if t.pid is None else str(t.pid),
            clock(t.worker_started, now), epochs, duration(t.elapsed_s), beat,
            f"{t.liveness}: {t.why}"]


def failure_line(f: RecentFailure) -> str:
    why = f.reason or "no reason recorded"
    detail = f" ({f.detail})" if f.detail else ""
    retry = f"; retry: trial {f.retry} ({f.retry_state.lower()})" if f.retry is not None \
        and f.retry_state else "; not retried"
    return f"  trial {f.number}: {why}{detail}{retry}"


def render(s: StudyStatus) -> RenderableType:
    """The status as rich renderables: header, running trials, recent failures."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = [Text(line) for line in header_lines(s)]
    if s.running:
        table = Table("trial", "host", "pid", "worker start", "epoch", "elapsed", "heartbeat",
                      "alive", box=None, pad_edge=False)
        for t in s.running:
            table.add_row(*running_row(t, s.now))
        parts.append(table)
    else:
        parts.append(Text("no trial is running"))
    failed = s.failed_last_hour
    parts.append(Text(f"failed in the last hour: {len(failed)} ({s.retried_last_hour} retried)"))
    parts += [Text(failure_line(f)) for f in failed]
    return Group(*parts)


def watch(read: Callable[[], StudyStatus], interval: float) -> None:
    """Redraws the status every `interval` seconds (until Ctrl-C, which the caller takes)."""
    from rich.live import Live
    from rich.text import Text

    from nas.study.outage import StorageBroken, StorageUnavailable

    with Live(render(read()), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            try:
                live.update(render(read()), refresh=True)
            except (StorageUnavailable, StorageBroken) as e:  # say so, and try again
                live.update(Text(f"storage unavailable: {e}; retrying"), refresh=True)


def status_reader(study: str | None, storage: str | None) -> Callable[[], StudyStatus]:
    """Opens the study's storage read only; a function that reads its status."""
    from nas.study.locate import locate_open
    from nas.study.status import read_only, study_status

    ref, opened = locate_open(study, storage)
    reader = read_only(opened)
    return lambda: study_status(reader, ref.name, ref.url)


@app.command()
def status(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    watch_: Annotated[bool, typer.Option(
        "--watch", help="Redraw every --interval seconds until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between redraws with --watch.")] = 2.0,
) -> None:
    """A study's progress and who runs which trial, how far, and whether alive (read only)."""
    if watch_ and json_out:
        raise UserError("--watch redraws a table; --json prints once: give one of them")
    if interval <= 0:
        raise UserError(f"--interval {interval}: must be positive")
    if watch_:
        try:
            watch(status_reader(study, storage), interval)
        except KeyboardInterrupt:  # Ctrl-C is how a watch ends
            return
    read = status_reader(study, storage)
    if json_out:
        print(read().model_dump_json())
    else:
        console.print(render(read()), markup=False, highlight=False, soft_wrap=True)


__all__ = ["status"]
