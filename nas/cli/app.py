"""The shared typer app and consoles."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    help="nas: explore CNN design spaces (specs, builder, training, Optuna search).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
