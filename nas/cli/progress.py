"""Progress bars on the terminal: a training run's epochs (a nas.train FitProgress)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nas.cli.app import err_console


class EpochBar:
    """A bar per epoch on stderr: loss, accuracy and images/s as it trains, then validation."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                            console=err_console)
        self.task: Any = None
        self.last_text = 0.0
        self.started = False

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        if not self.started:  # drawn from the first epoch on: an error before it stays one line
            self.bar.start()
            self.started = True
        self.task = self.bar.add_task(f"epoch {epoch}/{epochs}", total=steps, info="")

    def step_done(self, seen: int, seconds: float,
                  totals: Callable[[], tuple[float, float]]) -> None:
        """Advances the bar; the figures (a device sync) at most twice a second."""
        now = time.perf_counter()
        if now - self.last_text < 0.5:
            self.bar.update(self.task, advance=1)
            return
        self.last_text = now
        loss, correct = totals()
        info = f"loss {loss / seen:.3f}  acc {correct / seen:.3f}  {seen / seconds:,.0f} img/s"
        self.bar.update(self.task, advance=1, info=info)

    def epoch_done(self, stats: Any) -> None:
        info = (f"loss {stats.train_loss:.3f}  acc {stats.train_accuracy:.3f}  "
                f"{stats.images_per_second:,.0f} img/s  val {stats.val_accuracy:.4f}")
        self.bar.update(self.task, info=info)


@contextmanager
def epoch_bar(enabled: bool) -> Iterator[EpochBar | None]:
    """A live EpochBar when enabled, else None."""
    if not enabled:
        yield None
        return
    bar = EpochBar()
    try:
        yield bar
    finally:
        if bar.started:
            bar.bar.stop()


@contextmanager
def interruptible(resumes: str) -> Iterator[None]:
    """Ctrl-C (exit 130) or SIGTERM (143) ends the block with one line: what was interrupted
    and `resumes` (what the interrupted work left, and how the same command resumes it)."""
    import typer

    from nas.cli.app import err_console
    from nas.errors import Terminated
    from nas.pool.signals import unwind_on_sigterm

    unwind_on_sigterm()
    try:
        yield
    except KeyboardInterrupt as e:  # click would turn it into exit 1; the user wants 130/143
        terminated = isinstance(e, Terminated)
        err_console.print(f"nas: {'terminated' if terminated else 'interrupted'}: {resumes}",
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(143 if terminated else 130) from None


class DataBar:
    """A bar per phase of preparing data (reading headers, decoding, hashing) on stderr; each
    is stopped when its phase completes, so that a training bar can follow."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.phase = ""
        self.task: Any = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            self.stop()
            if total == 0 and not phase.startswith("waiting"):
                return
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(),
                                console=err_console)
            self.bar.start()
            self.phase, self.task = phase, self.bar.add_task(phase, total=total or None)
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
            if total and done >= total:
                self.stop()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.bar, self.phase = None, ""


@contextmanager
def data_bar(enabled: bool = True) -> Iterator[DataBar | None]:
    """A DataBar (a nas.data Progress callback) when enabled, else None; drawn only while
    there is work to show, so that reusing prepared data prints nothing."""
    if not enabled or not err_console.is_terminal:  # no bar frames in logs
        yield None
        return
    bar = DataBar()
    try:
        yield bar
    finally:
        bar.stop()
