"""A user's images as DataSplits: found, read (headers), prepared once, split and normalised.

`peek` finds the files and reads their headers (cached), refusing what cannot be a data set;
`load_user` prepares the images (or maps the prepared cache) and returns index views of it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data.builtin import check_source
from nas.data.discover import SPLITS, Listing, discover
from nas.data.pipeline import default_augment
from nas.data.pool import Progress
from nas.data.prepared import Prepared, find_prepared, prepare, prepared_key
from nas.data.scan import Scan, cached_defaults, scan, write_json
from nas.data.splits import DataError, DataSplits, IndexView


@dataclass
class DataSummary:
    """What a data set is, from its file list and headers alone (nothing decoded)."""

    kind: str  # folder or csv
    layout: str  # class folders, split folders, csv
    source: str
    name: str
    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # split -> class -> readable images
    channels: int  # the default: 3 when any image has colour
    input_size: int  # the default: the images' median shorter side, at most 224
    sizes: dict[str, list[int]]  # width, height, shorter_side: [min, median, max]
    modes: dict[str, int]
    unreadable: list[tuple[str, str]]  # (file, reason)
    ignored: dict[str, int]
    listing_fingerprint: str
    listing: Listing = field(repr=False)
    scan: Scan = field(repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def images(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def split_sizes(self) -> dict[str, int]:
        return {split: sum(c.values()) for split, c in self.counts.items()}

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {
            "kind": self.kind, "layout": self.layout, "source": self.source, "name": self.name,
            "classes": list(self.classes), "num_classes": self.num_classes,
            "counts": self.counts, "images": self.images, "channels": self.channels,
            "input_size": self.input_size, "sizes": self.sizes, "modes": self.modes,
            "unreadable": [list(u) for u in self.unreadable], "ignored": self.ignored,
            "listing_fingerprint": self.listing_fingerprint,
        }


def peek(source: str | Path, progress: Progress | None = None) -> DataSummary:
    """Finds the files and reads their headers (cached): refuses, in one line, a data set
    that cannot train (missing, empty, one class, a class without a readable image)."""
    check_source(source)
    return peek_listing(discover(source), progress)


def peek_listing(listing: Listing, progress: Progress | None = None) -> DataSummary:
    """peek's work on a listing already made."""
    found = scan(listing, progress)
    summary = summarize(listing, found)
    check_readable(summary, set(found.errors))
    return summary


def summarize(listing: Listing, found: Scan,
              decoded: dict[int, tuple[str, str]] | None = None) -> DataSummary:
    """The summary of a listing and its headers (and of what failed to decode, when the
    images were prepared: entry index -> (name, reason))."""
    failed = {**{i: (listing.entries[i].name, r) for i, r in found.errors.items()},
              **(decoded or {})}
    counts: dict[str, Counter] = {split: Counter() for split in SPLITS}
    for i, e in enumerate(listing.entries):
        if i not in failed:
            counts[e.split][e.label] += 1
    unreadable = listing.skipped + [failed[i] for i in sorted(failed)]
    return DataSummary(
        kind=listing.kind, layout=listing.layout, source=str(listing.source),
        name=listing.name, classes=listing.classes,
        counts={s: {c: counts[s][c] for c in listing.classes} for s in SPLITS if counts[s]},
        channels=found.default_channels(), input_size=found.natural_size(),
        sizes=found.size_figures(), modes=found.mode_counts(), unreadable=unreadable,
        ignored=dict(listing.ignored), listing_fingerprint=listing.fingerprint,
        listing=listing, scan=found,
    )


def check_readable(summary: DataSummary, failed: set[int]) -> None:
    """Every class keeps at least one readable training image."""
    train = Counter(e.label for i, e in enumerate(summary.listing.entries)
                    if e.split == "train" and i not in failed)
    for label in summary.classes:
        if not train[label]:
            total = sum(1 for e in summary.listing.entries if e.label == label)
            raise DataError(f"{summary.source}: class {label!r} has no readable training "
                            f"image ({total} file(s), none could be read; `nas data "
                            f"{summary.source}` names them)")


def default_input_size(summary: DataSummary, allowed: Sequence[int] | None = None) -> int:
    """The data's natural size (median shorter side, at most 224); with `allowed` (a space's
    input sizes), the allowed size nearest to it in scale (the larger on a tie)."""
    natural = summary.input_size
    if not allowed:
        return natural
    return min(sorted(allowed, reverse=True), key=lambda s: abs(math.log(s / natural)))


def check_options(input_size: int | None, channels: int | None) -> None:
    """Refuses a channel count other than 1 or 3, or an input size out of bounds."""
    if channels not in (None, 1, 3):
        raise DataError(f"--channels must be 1 or 3, not {channels}")
    if input_size is not None and not 1 <= input_size <= 4096:
        raise DataError(f"--input-size must be between 1 and 4096 pixels, not {input_size}")


def load_user(source: str | Path, device: torch.device, val_fraction: float, seed: int,
              input_size: int | None, channels: int | None, progress: Progress | None = None,
              fingerprint: str | None = None) -> DataSplits:
    """A user's data set prepared at `input_size` with `channels` (defaults from the images),
    split and normalised; `fingerprint` loads exactly that prepared version or refuses."""
    check_options(input_size, channels)
    prepared = find_prepared(fingerprint) if fingerprint else None
    if prepared is None:
        check_source(source)
        prepared = find_or_prepare(discover(source), input_size, channels, progress,
                                   fingerprint)
    return make_user_splits(prepared, device, val_fraction, seed)


def find_or_prepare(listing: Listing, input_size: int | None, channels: int | None,
                    progress: Progress | None, fingerprint: str | None) -> Prepared:
    """The listing's prepared data: found when nothing changed (its headers were read before:
    no file is opened), else prepared now; refused when it is not the `fingerprint` asked."""
    defaults = cached_defaults(listing)
    if defaults is not None:
        key = prepared_key(listing.fingerprint, input_size or defaults[1],
                           channels or defaults[0])
        found = find_prepared(key) if not fingerprint or key == fingerprint else None
        if found is not None:
            return found
    summary = peek_listing(listing, progress)
    size, channels = input_size or summary.input_size, channels or summary.channels
    key = prepared_key(listing.fingerprint, size, channels)
    if fingerprint and key != fingerprint:
        raise DataError(f"{listing.source}: the images changed since this data was recorded "
                        f"(fingerprint {fingerprint}, now {key}); one study or run uses one "
                        f"version of the data")
    return prepare(listing, summary.scan, size, channels, progress)


def make_user_splits(prepared: Prepared, device: torch.device, val_fraction: float,
                     seed: int) -> DataSplits:
    """Index views of the prepared images: train, val (drawn from train, stratified, when the
    data has none) and test; unreadable files left out; statistics from train."""
    meta = prepared.meta
    ok = torch.ones(prepared.labels.numel(), dtype=torch.bool)
    ok[list(prepared.failed)] = False
    index = {s: torch.nonzero((prepared.splits == i) & ok).flatten()
             for i, s in enumerate(SPLITS)}
    check_classes_left(prepared, index["train"])
    if index["val"].numel() == 0:
        index["train"], index["val"] = stratified_split(index["train"], prepared.labels,
                                                        val_fraction, seed)
    mean, std = train_statistics(prepared, index["train"])
    base = prepared.images if device.type == "cpu" else prepared.images.to(device)
    labels = prepared.labels.to(device)

    def view(split: str) -> IndexView:
        return IndexView(base, index[split])

    return DataSplits(
        meta["name"], view("train"), labels[index["train"].to(device)], view("val"),
        labels[index["val"].to(device)], view("test"), labels[index["test"].to(device)],
        len(meta["classes"]), meta["channels"], meta["size"], mean, std, device,
        source=meta["source"], augment=default_augment(meta["size"]),
        val_fraction=val_fraction, seed=seed, classes=tuple(meta["classes"]),
        fingerprint=prepared.key, kind=meta["kind"],
        extra={"layout": meta["layout"], "cache": str(prepared.path),
               "unreadable": len(meta["failed"]) + len(meta["skipped"]),
               "val_drawn": not bool((prepared.splits == 1).any())},
    )


def check_classes_left(prepared: Prepared, train: torch.Tensor) -> None:
    """Refuses a class whose every training image failed to decode."""
    present = torch.bincount(prepared.labels[train], minlength=len(prepared.classes))
    for label, n in zip(prepared.classes, present.tolist()):
        if n == 0:
            raise DataError(f"{prepared.meta['source']}: class {label!r} has no readable "
                            f"training image (every one failed to decode; `nas data "
                            f"{prepared.meta['source']}` names them)")


def stratified_split(train: torch.Tensor, labels: torch.Tensor, val_fraction: float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): round(n * val_fraction) of each class drawn by `seed` (at least one of a
    class with two or more images), both in their original order."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), not {val_fraction}")
    generator = torch.Generator().manual_seed(seed)
    train_labels = labels[train]
    order = np.argsort(train_labels.numpy(), kind="stable")  # numpy's: 10x torch's here
    grouped = train[torch.from_numpy(order)]  # by class, in their order within each
    counts = torch.bincount(train_labels).tolist()
    picked, start = [], 0
    for n in counts:
        members = grouped[start:start + n]
        start += n
        take = max(1, round(n * val_fraction)) if n >= 2 else 0
        if n:
            picked.append(members[torch.randperm(n, generator=generator)[:take]])
    val = torch.cat(picked).sort().values
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[val] = False
    return train[keep[train]], val


def train_statistics(prepared: Prepared, train: torch.Tensor,
                     ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images in [0, 1] (kept in the cache)."""
    digest = hashlib.blake2b(train.numpy().tobytes(), digest_size=8).hexdigest()
    path = prepared.path / f"stats-{digest}.json"
    try:
        blob = json.loads(path.read_text())
        return tuple(blob["mean"]), tuple(blob["std"])
    except (OSError, ValueError, KeyError):
        pass
    _, c, h, w = prepared.images.shape
    sums = torch.zeros(2, c, dtype=torch.int64)  # exact: integer sums of uint8 pixels
    rows = max(1, 2**22 // (c * h * w))  # 16 MiB of int32 at a time
    for start in range(0, train.numel(), rows):
        batch = prepared.images[train[start:start + rows]].to(torch.int32)
        sums[0] += batch.sum(dim=(0, 2, 3))
        sums[1] += batch.square().sum(dim=(0, 2, 3))
    n = max(1, train.numel() * h * w)
    mean = sums[0].double() / n
    std = (sums[1].double() / n - mean.square()).clamp_min(0).sqrt().clamp_min(1.0)  # >= 1/255
    figures = (tuple(round(v / 255, 6) for v in mean.tolist()),
               tuple(round(v / 255, 6) for v in std.tolist()))
    write_json(path, {"mean": figures[0], "std": figures[1]})
    return figures


__all__ = ["DataSummary", "check_options", "default_input_size", "load_user",
           "make_user_splits", "peek", "stratified_split"]
