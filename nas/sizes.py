"""Sizes in bytes and durations in seconds for people: parsed from options such as --max-memory
and --time, and printed (no torch here, so a bad option is refused before torch is imported)."""

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


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", re.IGNORECASE)


def parse_duration(text: str, option: str = "--time") -> float:
    """Seconds of a duration such as '90s', '30m', '2h', '1h30m' or a plain number of seconds;
    a UserError naming `option` when it is not a duration above zero."""
    compact = text.strip().replace(" ", "")
    parts = DURATION.findall(compact)
    total = sum(float(n) * DURATION_UNITS[(u or "s").lower()] for n, u in parts)
    rebuilt = "".join(n + u for n, u in parts)
    if not compact or rebuilt.lower() != compact.lower() or not 0 < total < math.inf \
            or (len(parts) > 1 and not all(u for _n, u in parts)):
        raise UserError(f"{option} {text}: not a duration above zero; e.g. 90s, 30m, 2h, 1h30m "
                        "or a number of seconds")
    return total


def format_duration(seconds: float) -> str:
    """5400 -> '1h30m', 75 -> '1m15s', 9.5 -> '10s'."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


__all__ = ["format_bytes", "format_duration", "parse_duration", "parse_memory_option",
           "parse_size"]
