"""The `nas` command: a typer app; each command module adds its commands to `app`."""

from __future__ import annotations

import sys

import typer

from nas.cli.app import app, err_console
from nas.errors import UserError

# Importing the command modules registers their commands on `app`.
from nas.cli import spec_cmds  # noqa: E402,F401  isort: skip
from nas.cli import train_cmds  # noqa: E402,F401  isort: skip
from nas.cli import search_cmds  # noqa: E402,F401  isort: skip
from nas.cli import study_cmds  # noqa: E402,F401  isort: skip
from nas.cli import analysis_cmds  # noqa: E402,F401  isort: skip
from nas.cli import confirm_cmds  # noqa: E402,F401  isort: skip
from nas.cli import proxy_cmds  # noqa: E402,F401  isort: skip
from nas.cli import status_cmds  # noqa: E402,F401  isort: skip
from nas.cli import data_cmds  # noqa: E402,F401  isort: skip
from nas.cli import scale_cmds  # noqa: E402,F401  isort: skip
from nas.cli import scale_search_cmds  # noqa: E402,F401  isort: skip


# typer's usage errors (unknown option, missing option, a value that does not parse) derive from
# click's ClickException, which newer typer vendors privately: found through a public class
CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__
                                    if c.__name__ == "ClickException")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors, the command line's included, become one line on stderr and
    exit code 2."""
    try:
        code = app(args=argv, prog_name="nas", standalone_mode=False)
    except CLICK_ERROR as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # plain `nas`: the help, as click does
            e.show()  # type: ignore[attr-defined]
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        err_console.print(f"nas: error: {e.format_message()}{hint}",  # type: ignore[attr-defined]
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:  # end of input at a prompt
        err_console.print("nas: aborted", markup=False)
        sys.exit(1)
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
    if isinstance(code, int) and code:  # typer.Exit(N) comes back as N here
        sys.exit(code)


__all__ = ["app", "main"]
