"""Data sets written from Fashion-MNIST's own images, for the tests of user data (nas data,
train, predict, export, and the search on folders and tables). Each is written once per test
process into a temporary folder (removed when the process ends): call the functions from a
session-scoped fixture, or directly.

`fashion_folders()` writes the same 4,200 images (360 training and 60 test images per class)
as a split tree of PNG files, a flat ImageFolder, a CSV with a split column, a CSV without one,
and the idx files of a reference copy that `--dataset fashion-mnist --data-dir` reads. The
folders are laid out so that every layout trains on the same images in the same order and
validates on the same images as the reference:

- the flat folder and the CSV without splits draw their validation split in nas (1/12 of each
  class, by the seed); the tree's train/ and val/ and the CSV's split column hold exactly that
  split;
- the reference idx file puts those validation images where the built-in loader's random
  carve (1/12 of the training file, by the same seed) takes its validation images, and the
  training images, in the folders' order, everywhere else.

So `nas train --data LAYOUT --augment none` and `nas train --dataset fashion-mnist --data-dir
REFERENCE --augment none` at the same seed differ only by the normalisation figures (computed
from the training split for user data, Fashion-MNIST's published ones for the built-in).
"""

from __future__ import annotations

import atexit
import csv
import functools
import gzip
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import nas.data as nd
from nas.data.user import stratified_split

PER_CLASS = 360  # training images per class; 1/12 of them (30) are validation images
TEST_PER_CLASS = 60
# Fashion-MNIST's classes, numbered so that sorting the folder names keeps its label order
CLASSES = tuple(f"{i} {name.replace('/', ' ')}"
                for i, name in enumerate(nd.DATASETS["fashion-mnist"].classes))
TINTS = np.array([[255, 80, 80], [80, 255, 80], [80, 80, 255], [255, 255, 80], [255, 80, 255],
                  [80, 255, 255], [255, 160, 40], [160, 40, 255], [40, 160, 120],
                  [200, 200, 200]], dtype=np.float32) / 255


@dataclass(frozen=True)
class FashionFolders:
    """One subset of Fashion-MNIST in every layout nas reads."""

    tree: Path  # train/, val/, test/ of class folders of PNG files
    flat: Path  # class folders of the training PNGs (validation drawn by nas)
    table: Path  # CSV: path,label,split of the tree's files
    table_unsplit: Path  # CSV: path,label of the flat folder's files
    reference: Path  # idx files: the same images, as the built-in loader reads them
    classes: tuple[str, ...]
    seed: int
    train_images: int
    val_images: int
    test_images: int


def scratch(name: str) -> Path:
    """A fresh folder for this process, removed when it exits."""
    folder = Path(tempfile.mkdtemp(prefix=f"nas-datakit-{name}-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def fashion_subset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels): the first PER_CLASS training
    and TEST_PER_CLASS test images of each class, in file order; images uint8 [N, 28, 28]."""
    raw = nd.load_raw(nd.DATASETS["fashion-mnist"])

    def first(x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        keep = torch.cat([torch.nonzero(y == c).flatten()[:k] for c in range(10)]).sort().values
        return x[keep, 0].numpy(), y[keep].numpy()

    return (*first(raw.train_x, raw.train_y, PER_CLASS),
            *first(raw.test_x, raw.test_y, TEST_PER_CLASS))


@functools.cache
def fashion_folders(seed: int = 0) -> FashionFolders:
    """Writes (once per process) the layouts described in the module's docstring."""
    base = scratch("fashion")
    x, y, tx, ty = fashion_subset()
    # listing order: by class folder, then file name (the image's index in Fashion-MNIST)
    order = np.lexsort((np.arange(len(y)), y))
    x, y = x[order], y[order]
    names = [f"{CLASSES[label]}/{i:05d}.png" for i, label in zip(order, y)]
    train, val = stratified_split(torch.arange(len(y)), torch.from_numpy(y), 1 / 12, seed)
    train, val = train.numpy(), val.numpy()
    split = np.where(np.isin(np.arange(len(y)), val), "val", "train")
    for i in range(len(y)):
        write_png(base / "flat" / names[i], x[i])
        link(base / "flat" / names[i], base / "tree" / split[i] / names[i])
    t_order = np.lexsort((np.arange(len(ty)), ty))
    test_names = [f"{CLASSES[ty[i]]}/{i:05d}.png" for i in t_order]
    for i, name in zip(t_order, test_names):
        write_png(base / "tree" / "test" / name, tx[i])
    write_table(base / "table.csv", ["path", "label", "split"],
                [(f"tree/{split[i]}/{names[i]}", CLASSES[y[i]], split[i]) for i in range(len(y))]
                + [(f"tree/test/{n}", CLASSES[ty[i]], "test") for i, n in zip(t_order, test_names)])
    write_table(base / "unsplit.csv", ["path", "label"],
                [(f"flat/{names[i]}", CLASSES[y[i]]) for i in range(len(y))])
    write_reference(base / "reference", x, y, train, val, seed, tx[t_order], ty[t_order])
    return FashionFolders(base / "tree", base / "flat", base / "table.csv",
                          base / "unsplit.csv", base / "reference", CLASSES, seed,
                          len(train), len(val), len(ty))


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def link(source: Path, target: Path) -> None:
    """A hard link (same bytes and modification time, no copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(source, target)


def write_table(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> None:
    """A CSV (a TSV when the name ends in .tsv) with this header and rows."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",")
        writer.writerow(header)
        writer.writerows(rows)


def write_reference(folder: Path, x: np.ndarray, y: np.ndarray, train: np.ndarray,
                    val: np.ndarray, seed: int, test_x: np.ndarray, test_y: np.ndarray) -> None:
    """idx files in which the built-in loader's carve finds `val` and `train` in order."""
    n = len(y)
    carve = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n / 12))
    assert n_val == len(val), "the built-in carve and the stratified split differ in size"
    val_at, train_at = carve[:n_val].sort().values.numpy(), carve[n_val:].sort().values.numpy()
    placed_x, placed_y = np.empty_like(x), np.empty_like(y)
    placed_x[val_at], placed_y[val_at] = x[val], y[val]
    placed_x[train_at], placed_y[train_at] = x[train], y[train]
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", placed_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", placed_y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx file (gzip): images [N, 28, 28] or labels [N], unsigned bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + array.tobytes())


@functools.cache
def colour_jpegs(per_class: int = 40, val_per_class: int = 10, test_per_class: int = 10,
                 classes: int = 5) -> Path:
    """train/ val/ test/ folders of colour JPEGs of about 100 px (some wider than high):
    Fashion-MNIST images tinted per class, so a small net learns them in one short epoch."""
    base = scratch("jpeg") / "jpegs"
    x, y, _, _ = fashion_subset()
    counts = {"train": per_class, "val": val_per_class, "test": test_per_class}
    for label in range(classes):
        members = np.nonzero(y == label)[0]
        start = 0
        for split, k in counts.items():
            for j, i in enumerate(members[start:start + k]):
                image = tinted(x[i], label, width=100 + 10 * (j % 3))
                path = base / split / CLASSES[label] / f"{i:05d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path, quality=90)
            start += k
    return base


def tinted(pixels: np.ndarray, label: int, width: int = 100, height: int = 100) -> Image.Image:
    """A grey image coloured with its class's tint, scaled to width x height."""
    rgb = (pixels[..., None].astype(np.float32) * TINTS[label]).round().astype(np.uint8)
    return Image.fromarray(rgb, "RGB").resize((width, height), Image.Resampling.BILINEAR)


def small_folder(root: Path, classes: dict[str, int] | None = None, size: tuple[int, int] = (
        12, 10), mode: str = "L", ext: str = ".png") -> Path:
    """A flat ImageFolder: `classes` maps class name -> number of images (default two classes
    of 6), each a distinct random image of `size` (width, height) in `mode`."""
    rng = np.random.default_rng(len(str(root)))
    for label, n in (classes or {"cat": 6, "dog": 6}).items():
        for i in range(n):
            channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
            pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
            image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
            path = root / label / f"{label}-{i:03d}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
    return root


__all__ = ["CLASSES", "FashionFolders", "colour_jpegs", "fashion_folders", "fashion_subset",
           "scratch", "small_folder", "tinted", "write_idx", "write_png", "write_table"]
