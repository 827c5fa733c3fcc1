"""Every file's header read once (size, mode, colour; no pixels), with all cores, and kept in
the cache beside the prepared data, keyed by the listing's fingerprint: what `nas data`, the
default channels and input size, and the early refusals read."""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.data.builtin import cache_dir
from nas.data.discover import Listing
from nas.data.images import ImageReadError, read_header
from nas.data.pool import Progress, map_chunks

SCAN_FORMAT = 1
MAX_DEFAULT_SIZE = 224  # larger images are scaled down to this by default (a search's cost)


@dataclass
class Scan:
    """Per entry of a listing: header figures, or why it could not be read."""

    widths: list[int]
    heights: list[int]
    modes: list[str]
    colour: list[bool]
    errors: dict[int, str]  # entry index -> reason
    cached: bool = False  # read from the cache (no file opened this time)

    def readable(self) -> list[int]:
        """Indices of the entries whose header could be read."""
        return [i for i in range(len(self.widths)) if i not in self.errors]

    def default_channels(self) -> int:
        """3 when any readable image has colour, else 1."""
        return 3 if any(self.colour[i] for i in self.readable()) else 1

    def natural_size(self) -> int:
        """The median shorter side of the readable images, at most MAX_DEFAULT_SIZE."""
        sides = [min(self.widths[i], self.heights[i]) for i in self.readable()]
        return max(1, min(MAX_DEFAULT_SIZE, int(statistics.median(sides)))) if sides else 0

    def size_figures(self) -> dict[str, list[int]]:
        """[min, median, max] of widths, heights and shorter sides."""
        keep = self.readable()
        figures = {"width": [self.widths[i] for i in keep],
                   "height": [self.heights[i] for i in keep],
                   "shorter_side": [min(self.widths[i], self.heights[i]) for i in keep]}
        return {k: [min(v), int(statistics.median(v)), max(v)] if v else []
                for k, v in figures.items()}

    def mode_counts(self) -> dict[str, int]:
        return dict(Counter(self.modes[i] for i in self.readable()).most_common())


def scan_chunk(items: Sequence[tuple[int, str]]) -> list[tuple[int, Any]]:
    """(index, (width, height, mode, colour) or a reason) for each (index, path)."""
    out: list[tuple[int, Any]] = []
    for index, path in items:
        try:
            h = read_header(path)
            out.append((index, (h.width, h.height, h.mode, h.colour)))
        except ImageReadError as e:
            out.append((index, e.reason))
    return out


def scan(listing: Listing, progress: Progress | None = None) -> Scan:
    """The listing's headers: from the cache when this exact listing was read before."""
    path = cache_dir() / "scans" / f"{listing.fingerprint}.json"
    cached = read_scan(path, len(listing.entries))
    if cached is not None:
        if not defaults_path(listing).exists():  # a scan kept by an earlier version
            write_defaults(listing, cached)
        return cached
    items = [(i, e.path) for i, e in enumerate(listing.entries)]
    found = Scan([0] * len(items), [0] * len(items), [""] * len(items), [False] * len(items),
                 {})
    for index, value in map_chunks(scan_chunk, items, "reading image headers", progress, 512):
        if isinstance(value, str):
            found.errors[index] = value
        else:
            (found.widths[index], found.heights[index], found.modes[index],
             found.colour[index]) = value
    write_json(path, {"format": SCAN_FORMAT, "widths": found.widths, "heights": found.heights,
                      "modes": found.modes, "colour": found.colour,
                      "errors": {str(k): v for k, v in found.errors.items()}})
    write_defaults(listing, found)
    return found


def write_defaults(listing: Listing, found: Scan) -> None:
    write_json(defaults_path(listing), {"format": SCAN_FORMAT, "size": found.natural_size(),
                                        "channels": found.default_channels()})


def defaults_path(listing: Listing) -> Path:
    return cache_dir() / "scans" / f"{listing.fingerprint}.defaults.json"


def cached_defaults(listing: Listing) -> tuple[int, int] | None:
    """(channels, input size) by default, when this listing's headers were read before: what
    finding its prepared data needs, without reading the whole scan."""
    try:
        blob = json.loads(defaults_path(listing).read_text())
        return (int(blob["channels"]), int(blob["size"])) \
            if blob.get("format") == SCAN_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_scan(path: Path, count: int) -> Scan | None:
    """A cached scan, or None when absent, unreadable or of another format."""
    try:
        blob = json.loads(path.read_text())
        if blob.get("format") != SCAN_FORMAT or len(blob["widths"]) != count:
            return None
        return Scan(blob["widths"], blob["heights"], blob["modes"], blob["colour"],
                    {int(k): v for k, v in blob["errors"].items()}, cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_json(path: Path, blob: dict[str, Any]) -> None:
    """Writes `blob` atomically; a cache that cannot be written is no reason to fail."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(blob))
        os.replace(tmp, path)
    except OSError:
        pass


__all__ = ["MAX_DEFAULT_SIZE", "Scan", "cached_defaults", "scan"]
