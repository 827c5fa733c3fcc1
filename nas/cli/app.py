"""The shared typer app and consoles."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(
    help="nas: explore CNN design spaces (specs, builder, training, Optuna search).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# The width of a console whose output is not a terminal: wide enough that no table or line is
# ever folded or cropped to fit (rich would otherwise take COLUMNS, or 80).
UNLIMITED = 100_000


class LineConsole(Console):
    """A console that never breaks a line of text (a path, a command) across lines.

    Text is printed in soft-wrap mode: a line longer than the terminal is the terminal's to fold,
    so it copies and greps whole. Tables still fit a terminal's width; when the output is not a
    terminal (a pipe, a file) there is no width at all, so tables take their natural width too.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.is_terminal:
            self.width = UNLIMITED

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        """Console.print, soft-wrapped unless asked otherwise when everything printed is text."""
        if soft_wrap is None:
            soft_wrap = all(isinstance(o, (str, Text)) for o in objects)
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


console = LineConsole()
err_console = LineConsole(stderr=True)
