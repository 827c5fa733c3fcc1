"""Sizes in bytes for people: parsed from options such as --max-memory, and printed (no torch
here, so a bad option is refused before torch is imported)."""

from __future__ import annotations

import math
import re

from nas.errors import UserError

SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30,
              "t": 2**40, "tib": 2**40}
SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """Bytes of a size such as '2GiB', '500MB', '1.5G' (K/M/G/T alone are binary, as in
    docker) or a plain number of bytes; None when it is not a size above zero."""
    match = SIZE.fullmatch(text)
    unit = match and SIZE_UNITS.get(match.group(2).lower())
    if not match or unit is None:
        return None
    size = float(match.group(1)) * unit
    return int(size) if 1 <= size < math.inf else None


def parse_memory_option(text: str | None) -> int | None:
    """--max-memory's bytes (None when not given); a UserError naming the option if bad."""
    if text is None:
        return None
    size = parse_size(text)
    if size is None:
        raise UserError(f"--max-memory {text}: not a size above zero; e.g. 2GiB, 500MB, 1.5G "
                        "or a number of bytes")
    return size


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units up to EiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} EiB"


__all__ = ["format_bytes", "parse_memory_option", "parse_size"]
