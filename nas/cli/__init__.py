"""The `nas` command: a typer app; each command module adds its commands to `app`."""

from __future__ import annotations

import sys

from nas.cli.app import app, err_console
from nas.errors import UserError

# Importing the command modules registers their commands on `app`.
from nas.cli import spec_cmds  # noqa: E402,F401  isort: skip
from nas.cli import train_cmds  # noqa: E402,F401  isort: skip
from nas.cli import search_cmds  # noqa: E402,F401  isort: skip
from nas.cli import study_cmds  # noqa: E402,F401  isort: skip
from nas.cli import analysis_cmds  # noqa: E402,F401  isort: skip
from nas.cli import confirm_cmds  # noqa: E402,F401  isort: skip


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="nas")
    except UserError as e:
        err_console.print(f"nas: error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as e:  # a file that cannot be read or written: say which, no traceback
        where = f"{e.filename}: " if e.filename else ""
        err_console.print(f"nas: error: {where}{e.strerror or e}", markup=False,
                          highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("nas: interrupted", markup=False)
        sys.exit(130)


__all__ = ["app", "main"]
