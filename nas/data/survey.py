"""`nas data`: what nas sees in a data set before any training. Reads the file list and every
header (cached), hashes only files whose byte size matches another's (the candidates for the
same image in two splits), and decodes nothing unless asked to prepare."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.data.builtin import cache_dir, check_source, dataset_info, is_builtin
from nas.data.discover import Listing, discover
from nas.data.pool import Progress, map_chunks
from nas.data.prepared import Prepared, find_prepared, prepare, prepared_key
from nas.data.scan import scan, write_json
from nas.data.splits import DataError
from nas.data.user import DataSummary, check_options, check_readable, summarize


def inspect(source: str | Path, input_size: int | None = None, channels: int | None = None,
            prepare_now: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """The `nas data` report (JSON-safe); `problems` holds what would refuse training."""
    if is_builtin(source):
        return builtin_report(str(source))
    check_source(source)
    check_options(input_size, channels)
    listing = discover(source)
    found = scan(listing, progress)
    summary = summarize(listing, found)
    size, ch = input_size or summary.input_size, channels or summary.channels
    key = prepared_key(summary.listing_fingerprint, size, ch)
    problems = check(summary, set(found.errors))
    prepared, decoded = find_prepared(key), 0
    if prepare_now and prepared is None and not problems:
        prepared = prepare(listing, found, size, ch, progress)
        decoded = len(listing.entries) - len(found.errors)
    if prepared is not None and prepared.failed:  # what decoding found, counted out
        summary = summarize(listing, found, prepared.failed)
        problems = problems or check(summary, set(prepared.failed))
    groups, hashed = duplicates(listing, set(found.errors), progress)
    report = summary.as_dict()
    report.update({
        "input_size": size, "input_size_default": summary.input_size, "channels": ch,
        "channels_default": summary.channels, "val": val_origin(listing),
        "duplicates": groups, "leaks": sum(1 for g in groups if len(set(g["splits"])) > 1),
        "cache": cache_report(prepared, key), "problems": problems,
        "read": {"files_listed": len(listing.entries) + len(listing.skipped),
                 "headers_read": 0 if found.cached else len(listing.entries),
                 "files_hashed": hashed, "images_decoded": decoded},
    })
    return report


def check(summary: DataSummary, failed: set[int]) -> list[str]:
    """The refusal training would meet, as a list of at most one line."""
    try:
        check_readable(summary, failed)
    except DataError as e:
        return [str(e)]
    return []


def val_origin(listing: Listing) -> str:
    """Where the validation images come from."""
    if listing.has_split("val"):
        return "the data's own val split"
    return "drawn from train by the split seed, stratified by class (1/12 by default)"


def cache_report(prepared: Prepared | None, key: str) -> dict[str, Any]:
    """Whether the prepared cache exists for these settings, where, and its size."""
    if prepared is None:
        return {"exists": False, "fingerprint": key}
    return {"exists": True, "fingerprint": key, "path": str(prepared.path),
            "bytes": prepared.nbytes(), "created": prepared.meta.get("created")}


def duplicates(listing: Listing, unreadable: set[int], progress: Progress | None,
               ) -> tuple[list[dict[str, Any]], int]:
    """Groups of files with the same content, and how many files were hashed (0 when this
    listing's groups were found before: kept in the cache beside its headers)."""
    path = cache_dir() / "scans" / f"{listing.fingerprint}.duplicates.json"
    try:
        return json.loads(path.read_text())["groups"], 0
    except (OSError, ValueError, KeyError):
        pass
    groups, hashed = find_duplicates(listing, unreadable, progress)
    write_json(path, {"groups": groups})
    return groups, hashed


def find_duplicates(listing: Listing, unreadable: set[int], progress: Progress | None,
                    ) -> tuple[list[dict[str, Any]], int]:
    """Groups of files with the same content, and how many files were hashed.

    Only files whose byte size matches another's are read. With the data's own splits only
    groups spanning two splits matter (leakage); when validation is drawn from train, any
    duplicate can land on both sides, so all are checked.
    """
    explicit = listing.layout == "split folders" or listing.has_split("val") \
        or listing.has_split("test")
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(listing.entries):
        if i not in unreadable:
            by_size[e.size].append(i)
    candidates = [i for group in by_size.values() if len(group) > 1
                  and (not explicit or len({listing.entries[j].split for j in group}) > 1)
                  for i in group]
    items = [(i, listing.entries[i].path) for i in candidates]
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, digest in map_chunks(hash_chunk, items, "hashing files", progress):
        if digest:
            by_hash[digest].append(i)
    groups = []
    for members in by_hash.values():
        splits = [listing.entries[i].split for i in members]
        if len(members) > 1 and (not explicit or len(set(splits)) > 1):
            groups.append({"files": [listing.entries[i].name for i in members],
                           "splits": splits})
    return groups, len(items)


def hash_chunk(items: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """(index, content hash or '' when unreadable) of each file."""
    out = []
    for index, path in items:
        try:
            with open(path, "rb") as f:
                out.append((index, hashlib.file_digest(f, "blake2b").hexdigest()))
        except OSError:
            out.append((index, ""))
    return out


def builtin_report(name: str) -> dict[str, Any]:
    """A built-in dataset's figures (loads it: the cached tensors)."""
    from nas.data.load import describe, load_data

    info = dataset_info(name)
    card = describe(load_data(info.name))
    return {**card, "problems": [], "input_size_default": info.image_size,
            "channels_default": info.in_channels}


__all__ = ["inspect"]
