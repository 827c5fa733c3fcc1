"""Finding a user's images: an ImageFolder tree, split folders found as timm finds them, or a
CSV/TSV of path,label[,split]. Lists files (one stat each, nothing opened); refuses in one line
what cannot be a data set."""

from __future__ import annotations

import csv
import errno
import functools
import hashlib
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from nas.data.images import IMAGE_EXTENSIONS, reason_of
from nas.data.splits import DataError

LISTING_FORMAT = 1
SPLITS = ("train", "val", "test")
# split folder and CSV split names: timm's synonyms for train and for evaluation, and test
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "eval": "val", "evaluation": "val", "test": "test",
               "testing": "test"}
LAYOUT_HINT = "expected PATH/<class>/<image>, PATH/train/<class>/<image> (+ val/, test/), " \
              "or a .csv/.tsv with path,label[,split] columns"


class Entry(NamedTuple):  # a tuple: a listing holds tens of thousands
    """One image file of the data set, before it is read."""

    path: str  # absolute, as found (symbolic links not resolved)
    name: str  # as shown: relative to the data's root, or as written in the CSV
    label: str
    split: str  # train, val or test
    size: int
    mtime_ns: int


@dataclass
class Listing:
    """The files of a data set and their labels and splits, in a fixed order."""

    kind: str  # folder or csv
    layout: str  # class folders, split folders, csv
    source: Path  # the folder or file the user named (absolute)
    entries: list[Entry]
    classes: tuple[str, ...]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # found but not readable
    ignored: Counter = field(default_factory=Counter)  # non-image files, by kind

    @property
    def name(self) -> str:
        return self.source.stem if self.kind == "csv" else self.source.name

    def has_split(self, split: str) -> bool:
        return any(e.split == split for e in self.entries)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of every file's name, label, split, size and modification time (computed
        once: a listing is complete when discover returns it)."""
        digest = hashlib.blake2b(f"nas-listing {LISTING_FORMAT} {self.kind}\n".encode(),
                                 digest_size=16)
        lines = "".join(f"{e.name}\0{e.label}\0{e.split}\0{e.size}\0{e.mtime_ns}\n"
                        for e in self.entries)
        digest.update(lines.encode("utf-8", "surrogateescape"))
        return digest.hexdigest()


def discover(source: str | Path) -> Listing:
    """The listing of a folder or a CSV/TSV file; one-line DataError when it cannot be one."""
    path = Path(source).expanduser().absolute()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(f"{source}: no such file or folder ({LAYOUT_HINT})") from None
    except OSError as e:
        raise DataError(f"{source}: {reason_of(e)}") from None
    if stat.S_ISDIR(info.st_mode):
        listing = discover_folder(path)
    elif path.suffix.lower() in (".csv", ".tsv"):
        listing = read_table(path)
    else:
        raise DataError(f"{source}: not a folder, .csv or .tsv file ({LAYOUT_HINT})")
    check_classes(listing)
    return listing


def discover_folder(root: Path) -> Listing:
    """Class folders, or train/ (val/, test/) folders of class folders."""
    listing = Listing("folder", "class folders", root, [], ())
    folders, files = subfolders(root, listing)
    splits = split_folders(root, folders)
    if splits:
        listing.layout = "split folders"
        listing.ignored["folders beside train/val/test"] += len(folders) - len(splits)
        listing.ignored["files outside class folders"] += files
        classes: set[str] = set()
        for split in SPLITS:  # entries by split, class, then as torchvision orders files
            if split in splits:
                classes |= add_classes(listing, root / splits[split], split)
    else:
        listing.ignored["files outside class folders"] += files
        classes = add_classes(listing, root, "train", folders)
    listing.classes = tuple(sorted(classes))
    if not listing.entries and not listing.skipped:
        raise DataError(f"{root}: no images found ({LAYOUT_HINT})")
    return listing


def subfolders(folder: Path, listing: Listing) -> tuple[list[str], int]:
    """Names of the visible subfolders (sorted) and the number of other files."""
    names, files = [], 0
    for entry in scan_folder(folder):
        if entry.name.startswith("."):
            listing.ignored["hidden files and folders"] += 1
        elif entry.is_dir():
            names.append(entry.name)
        else:
            files += 1
    return sorted(names), files


def split_folders(root: Path, folders: list[str]) -> dict[str, str]:
    """{split: folder} when `root` holds a train folder (timm's names); else {}."""
    found: dict[str, str] = {}
    for name in folders:
        split = SPLIT_NAMES.get(name.lower())
        if split is None:
            continue
        if split in found:
            raise DataError(f"{root}: both {found[split]}/ and {name}/ hold the {split} split; "
                            f"keep one")
        found[split] = name
    if found and "train" not in found:
        names = ", ".join(f"{f}/" for f in found.values())
        raise DataError(f"{root}: has {names} but no train/ folder ({LAYOUT_HINT})")
    return found


def add_classes(listing: Listing, folder: Path, split: str,
                classes: list[str] | None = None) -> set[str]:
    """The images under each class folder of `folder` (its `classes` when already listed),
    added to the listing as `split`."""
    if classes is None:
        classes, files = subfolders(folder, listing)
        listing.ignored["files outside class folders"] += files
    if not classes:
        raise DataError(f"{folder}: no class folders ({LAYOUT_HINT})")
    for label in classes:
        found = walk_images(folder / label, listing, label, split)
        if not found:
            raise DataError(f"{folder / label}: no image files (class {label!r}); add images "
                            f"or remove the folder")
        listing.entries += found
    return set(classes)


def walk_images(top: Path, listing: Listing, label: str, split: str) -> list[Entry]:
    """Every image file below `top` in torchvision's order (by folder path, then file name),
    links followed, loops refused."""
    found: list[Entry] = []
    make = Entry._make  # tuple.__new__ without NamedTuple's keyword handling: 3x faster
    nested = False
    prefix = len(str(listing.source)) + 1  # names relative to the root (cheaper than relpath)
    above = tuple((i.st_dev, i.st_ino) for i in map(os.stat, (top, *top.parents)))
    stack = [(top, above)]  # a link back to any folder above is a loop, caught at once
    while stack:
        folder, ancestors = stack.pop()
        for entry in scan_folder(folder):
            name = entry.path[prefix:]
            if entry.name.startswith("."):
                listing.ignored["hidden files and folders"] += 1
                continue
            try:
                info = entry.stat()  # follows symbolic links
            except OSError as e:
                listing.skipped.append((name, reason_of(e)))
                continue
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in ancestors:
                    raise DataError(f"{entry.path}: symbolic link loop (leads back to a folder "
                                    f"above it); remove the link")
                stack.append((Path(entry.path), (*ancestors, key)))
                nested = True
            elif not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                suffix = Path(entry.name).suffix.lower() or "no extension"
                listing.ignored[f"non-image files ({suffix})"] += 1
            else:
                found.append(make((entry.path, name, label, split, info.st_size,
                                   info.st_mtime_ns)))
    if nested:
        found.sort(key=lambda e: e.path.rpartition(os.sep)[::2])
    return found


def scan_folder(folder: Path) -> list[os.DirEntry]:
    """The folder's entries sorted by name; a folder that cannot be listed is refused."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"{folder}: {reason_of(e)} (cannot list the folder)") from None


def read_table(path: Path) -> Listing:
    """A CSV/TSV with a header naming path and label (and optionally split) columns."""
    rows = table_rows(path)
    columns = header_columns(path, rows[0][1] if rows else [])
    listing = Listing("csv", "csv", path, [], ())
    seen: dict[str, int] = {}
    missing: list[str] = []
    for line, row in rows[1:]:
        cell = dict(zip(columns, [c.strip() for c in row]))
        entry = table_entry(path, line, cell, seen, missing)
        if entry is not None:
            listing.entries.append(entry)
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}{more}")
    if not listing.entries:
        raise DataError(f"{path}: no rows after the header ({LAYOUT_HINT})")
    listing.classes = tuple(sorted({e.label for e in listing.entries}))
    return listing


def table_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise DataError(f"{path}: not a readable {path.suffix[1:].upper()} ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: {reason_of(e)}") from None
    return rows


def header_columns(path: Path, header: list[str]) -> list[str]:
    """The header's column names, lower case; path and label must be among them."""
    columns = [c.strip().lower() for c in header]
    absent = [c for c in ("path", "label") if c not in columns]
    if absent:
        shown = ", ".join(c.strip() for c in header) or "nothing"
        raise DataError(f"{path}: no {' or '.join(absent)} column (header: {shown}); a table "
                        f"needs path and label columns, and optionally split")
    return columns


def table_entry(table: Path, line: int, cell: dict[str, str], seen: dict[str, int],
                missing: list[str]) -> Entry | None:
    """One row as an Entry (None when its file is missing: collected in `missing`)."""
    where = f"{table} line {line}"
    written, label = cell.get("path", ""), cell.get("label", "")
    if not written:
        raise DataError(f"{where}: empty path")
    if not label:
        raise DataError(f"{where}: empty label for {written}")
    split = table_split(where, cell)
    file = Path(written).expanduser()
    file = file if file.is_absolute() else table.parent / file
    key = os.path.realpath(file)
    if key in seen:
        raise DataError(f"{table} lines {seen[key]} and {line}: the same file {written} "
                        f"twice; list each image once")
    seen[key] = line
    try:
        info = file.stat()
    except OSError as e:
        gone = isinstance(e, FileNotFoundError) or e.errno == errno.ENOTDIR
        missing.append(f"{where}: {written}: {'no such file' if gone else reason_of(e)}")
        return None
    return Entry(str(file), written, label, split, info.st_size, info.st_mtime_ns)


def table_split(where: str, cell: dict[str, str]) -> str:
    """The row's split (train when the table has no split column)."""
    if "split" not in cell:
        return "train"
    value = cell["split"]
    split = SPLIT_NAMES.get(value.lower())
    if split is None:
        raise DataError(f"{where}: split {value!r} is not train, val or test")
    return split


def check_classes(listing: Listing) -> None:
    """At least two classes, and every class with training images."""
    if len(listing.classes) < 2:
        only = f" ({listing.classes[0]!r})" if listing.classes else ""
        raise DataError(f"{listing.source}: only one class{only}; a classifier needs at "
                        f"least two")
    in_train = {e.label for e in listing.entries if e.split == "train"}
    lacking = [c for c in listing.classes if c not in in_train]
    if lacking:
        elsewhere = sorted({e.split for e in listing.entries if e.label == lacking[0]})
        raise DataError(f"{listing.source}: class {lacking[0]!r} has no training images "
                        f"(only {' and '.join(elsewhere)} images)")


__all__ = ["Entry", "LAYOUT_HINT", "Listing", "SPLITS", "SPLIT_NAMES", "discover"]
