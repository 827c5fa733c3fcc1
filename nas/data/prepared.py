"""The prepared cache: a user's images decoded once, with every core, into one uint8 file
[N, C, S, S] that every process memory-maps (the page cache shares it between workers).

Keyed by a fingerprint of the listing (names, labels, splits, sizes, modification times), the
input size and the channels: a changed file prepares again. Written into a temporary folder
renamed into place, under a file lock, so that processes starting together decode once and the
others wait, then map the same file.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data.builtin import cache_dir
from nas.data.discover import SPLITS, Listing
from nas.data.images import ImageReadError, decode
from nas.data.pool import Progress, map_chunks
from nas.data.scan import Scan
from nas.data.splits import DataError
from nas.sizes import format_bytes

PREPARED_FORMAT = 1
DISK_MARGIN = 64 * 2**20  # left free beyond the data, for the file system's own needs


@dataclass
class Prepared:
    """A prepared data set: the mapped images, labels, splits and what failed to decode."""

    path: Path
    images: torch.Tensor  # uint8 [N, C, S, S], memory-mapped; rows of failed files are zeros
    labels: torch.Tensor  # int64 [N]
    splits: torch.Tensor  # int8 [N]: the index of each entry's split in SPLITS
    meta: dict[str, Any]

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def failed(self) -> dict[int, tuple[str, str]]:
        """entry index -> (name, reason)."""
        return {int(k): (v[0], v[1]) for k, v in self.meta["failed"].items()}

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta["classes"])

    def nbytes(self) -> int:
        return self.images.numel()


def prepared_key(listing_fingerprint: str, size: int, channels: int) -> str:
    """The cache's key: the listing, the input size and the channels."""
    text = f"nas-prepared {PREPARED_FORMAT} {listing_fingerprint} {size} {channels}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def prepared_root() -> Path:
    return cache_dir() / "prepared"


def find_prepared(key: str) -> Prepared | None:
    """The prepared data of `key` when it exists (never decodes)."""
    path = prepared_root() / key
    return open_prepared(path) if (path / "meta.json").exists() else None


def open_prepared(path: Path) -> Prepared:
    """Maps a prepared folder's images (shared through the page cache, never copied)."""
    meta = json.loads((path / "meta.json").read_text())
    n, c, s = meta["count"], meta["channels"], meta["size"]
    file = path / "images.u8"
    if file.stat().st_size != n * c * s * s:
        raise DataError(f"{path}: the prepared cache is damaged (images.u8 has the wrong "
                        f"size); delete the folder and run again")
    images = torch.from_file(str(file), shared=False, size=n * c * s * s, dtype=torch.uint8)
    labels = torch.from_numpy(np.load(path / "labels.npy"))
    splits = torch.from_numpy(np.load(path / "splits.npy"))
    return Prepared(path, images.view(n, c, s, s), labels, splits, meta)


def prepare(listing: Listing, scan: Scan, size: int, channels: int,
            progress: Progress | None = None) -> Prepared:
    """The prepared data of this listing at `size` and `channels`: found, or decoded now."""
    key = prepared_key(listing.fingerprint, size, channels)
    found = find_prepared(key)
    if found is not None:
        return found
    root = prepared_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{root}: cannot create the data cache ({e.strerror}); set "
                        f"NAS_DATA_DIR to a writable folder") from None
    waiting = functools.partial(report_wait, progress)
    with file_lock(root / f"{key}.lock", waiting):
        found = find_prepared(key)  # another process prepared it while this one waited
        if found is not None:
            return found
        check_disk(listing, root, len(listing.entries) * channels * size * size)
        return write_prepared(listing, scan, key, size, channels, progress)


def report_wait(progress: Progress | None) -> None:
    if progress is not None:
        progress("waiting for another process preparing the same data", 0, 0)


@contextmanager
def file_lock(path: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """An exclusive lock on `path`, held until the block ends (released if the process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def free_bytes(folder: Path) -> int:
    """Bytes free for this user on the file system holding `folder`."""
    return shutil.disk_usage(folder).free


def check_disk(listing: Listing, root: Path, needed: int) -> None:
    """Refuses, before decoding, a data set whose prepared images would not fit the disk."""
    free = free_bytes(root)
    if needed + DISK_MARGIN > free:
        raise DataError(f"{listing.source}: the prepared images need {format_bytes(needed)} "
                        f"in {root} and only {format_bytes(free)} is free there; free some "
                        f"space, lower --input-size, or set NAS_DATA_DIR to a larger disk")


def write_prepared(listing: Listing, scan: Scan, key: str, size: int, channels: int,
                   progress: Progress | None) -> Prepared:
    """Decodes into a temporary folder and renames it into place."""
    root = prepared_root()
    for stale in root.glob(f".{key}.*.tmp"):  # left by a process that died preparing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".{key}.{os.getpid()}.tmp"
    tmp.mkdir()
    try:
        n = len(listing.entries)
        with open(tmp / "images.u8", "wb") as f:
            f.truncate(n * channels * size * size)
        failed = decode_all(listing, scan, tmp / "images.u8", size, channels, progress)
        write_arrays(tmp, listing)
        meta = prepared_meta(listing, key, size, channels, failed)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, root / key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_prepared(root / key)


def decode_all(listing: Listing, scan: Scan, target: Path, size: int, channels: int,
               progress: Progress | None) -> dict[int, str]:
    """Decodes every readable entry into `target`; returns index -> reason for the others."""
    items = [(i, e.path) for i, e in enumerate(listing.entries) if i not in scan.errors]
    work = functools.partial(decode_chunk, target=str(target), count=len(listing.entries),
                             shape=(channels, size, size))
    failed = dict(scan.errors)
    for index, reason in map_chunks(work, items, "decoding images", progress):
        if reason is not None:
            failed[index] = reason
    return failed


def decode_chunk(items: Sequence[tuple[int, str]], target: str, count: int,
                 shape: tuple[int, int, int]) -> list[tuple[int, str | None]]:
    """Decodes (index, path) items straight into the mapped file; (index, reason or None)."""
    out: list[tuple[int, str | None]] = []
    images = np.memmap(target, dtype=np.uint8, mode="r+", shape=(count, *shape))
    for index, path in items:
        try:
            images[index] = decode(path, shape[1], shape[0])
            out.append((index, None))
        except ImageReadError as e:
            out.append((index, e.reason))
    images.flush()
    del images
    return out


def write_arrays(folder: Path, listing: Listing) -> None:
    """labels.npy (class index) and splits.npy (index into SPLITS), in listing order."""
    index = {c: i for i, c in enumerate(listing.classes)}
    np.save(folder / "labels.npy", np.array([index[e.label] for e in listing.entries],
                                            dtype=np.int64))
    np.save(folder / "splits.npy", np.array([SPLITS.index(e.split) for e in listing.entries],
                                            dtype=np.int8))


def prepared_meta(listing: Listing, key: str, size: int, channels: int,
                  failed: dict[int, str]) -> dict[str, Any]:
    """What meta.json records: enough to load the data without listing the files again."""
    return {
        "format": PREPARED_FORMAT, "key": key, "listing": listing.fingerprint,
        "kind": listing.kind, "layout": listing.layout, "source": str(listing.source),
        "name": listing.name, "classes": list(listing.classes), "size": size,
        "channels": channels, "count": len(listing.entries),
        "failed": {str(i): [listing.entries[i].name, r] for i, r in sorted(failed.items())},
        "skipped": listing.skipped, "ignored": dict(listing.ignored),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


__all__ = ["Prepared", "check_disk", "find_prepared", "free_bytes", "open_prepared", "prepare",
           "prepared_key", "prepared_root"]
