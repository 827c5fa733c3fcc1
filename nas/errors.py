"""Errors a user can cause: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(Exception):
    """Bad input from the user (file, value, missing data); message is one clear line."""


class SpecError(UserError):
    """A spec or space file that cannot be read or is invalid."""


class WeightsError(UserError):
    """A weights file that cannot be read or does not fit the model."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled like Ctrl-C (the running trial is marked FAIL) but exits 143."""


def describe(error: ValidationError, tags: tuple[str, ...] = ()) -> str:
    """The first validation problem as 'field.path: message' on one line."""
    errors = [e for e in error.errors() if not echo_of_item_error(e, error.errors())]
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    if loc and loc[0] in tags:  # the discriminated union adds the family as the first step
        loc = loc[1:]
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "union_tag_invalid":
        msg = f"unknown {first['ctx']['discriminator']} {first['ctx']['tag']}; " \
              f"expected one of {first['ctx']['expected_tags']}"
    where = ".".join(loc)
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {msg}{suffix}" if where else f"{msg}{suffix}"


def echo_of_item_error(e: dict, errors: list[dict]) -> bool:
    """A list's 'at least 1 item' that pydantic adds when its only item was refused."""
    loc = tuple(e["loc"])
    return e["type"] == "too_short" and any(
        len(o["loc"]) > len(loc) and tuple(o["loc"][:len(loc)]) == loc for o in errors)
