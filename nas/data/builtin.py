"""The built-in datasets (Fashion-MNIST, MNIST, CIFAR-10) as uint8 tensors on the device.

Sources, in order: an explicit `data_dir`, the user's cache ($NAS_DATA_DIR or
~/.cache/nas/datasets), Debian's /usr/share/datasets/<name>/ (package dataset-fashion-mnist),
then torchvision's download. Every source is read through torchvision's dataset classes; the
decoded tensors are cached on disk (`<cache>/<name>.pt`) and in the process.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from nas.data.splits import DataError, DataSplits

CACHE_FORMAT = 1


@dataclass(frozen=True)
class DatasetInfo:
    """What nas knows about one dataset: its torchvision class, shape and statistics."""

    name: str
    torchvision_class: str
    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    idx_files: tuple[str, ...] = ()  # MNIST-style raw files (train images/labels, test ...)
    debian_package: str | None = None
    augment: str = "none"  # the default augmentation: none, flip or crop-flip
    download_hint: str = ""
    classes: tuple[str, ...] = ()  # label index -> name, as torchvision's dataset class has them


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "FashionMNIST", 1, 28, 10, (0.2860,), (0.3530,), MNIST_FILES,
        debian_package="dataset-fashion-mnist",
        download_hint="install the Debian package dataset-fashion-mnist "
                      "(apt install dataset-fashion-mnist) or pass --data-dir DIR with the "
                      "idx files (train-images-idx3-ubyte.gz, ...)",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
    ),
    "mnist": DatasetInfo(
        "mnist", "MNIST", 1, 28, 10, (0.1307,), (0.3081,), MNIST_FILES,
        download_hint="pass --data-dir DIR with the MNIST idx files "
                      "(train-images-idx3-ubyte.gz, ...)",
        classes=("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
                 "6 - six", "7 - seven", "8 - eight", "9 - nine"),
    ),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        augment="crop-flip",
        download_hint="pass --data-dir DIR holding cifar-10-python.tar.gz or "
                      "cifar-10-batches-py/",
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"),
    ),
}


class RawData(NamedTuple):
    """Decoded train and test sets on the CPU, and where they came from."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str


_RAW: dict[tuple[str, str], RawData] = {}
_SPLITS: dict[tuple, DataSplits] = {}


def builtin_key(name: str) -> str:
    """A dataset name as the registry spells it (fashion_mnist, FashionMNIST: fashion-mnist)."""
    key = name.lower().replace("_", "-")
    return "fashion-mnist" if key == "fashionmnist" else key


def is_builtin(source: object) -> bool:
    """Whether `source` names a built-in dataset (a name, never a Path or a path with a /)."""
    return isinstance(source, str) and builtin_key(source) in DATASETS


def check_source(source: str | Path) -> None:
    """Refuses a name that is neither a built-in dataset nor a path (cheap: one stat)."""
    if is_builtin(source) or not isinstance(source, str):
        return
    looks_like_path = os.sep in source or source.lower().endswith((".csv", ".tsv"))
    if not looks_like_path and not Path(source).expanduser().exists():
        raise DataError(f"unknown dataset {source!r}; one of {', '.join(DATASETS)}, or a "
                        f"folder or .csv/.tsv file of images")


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of a dataset; UserError lists the known names."""
    key = builtin_key(name)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; one of {', '.join(DATASETS)}")
    return DATASETS[key]


def cache_dir() -> Path:
    """The user's dataset cache: $NAS_DATA_DIR or ~/.cache/nas/datasets."""
    env = os.environ.get("NAS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nas" / "datasets"


def debian_dir(info: DatasetInfo) -> Path | None:
    """Where the Debian package puts the dataset's files, if it has one."""
    return Path("/usr/share/datasets") / info.name if info.debian_package else None


def load_builtin(
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    val_fraction: float = 1 / 12,
    seed: int = 0,
) -> DataSplits:
    """A built-in dataset's splits on `device`; validation carved from the train set by `seed`."""
    info = dataset_info(dataset)
    device = torch.device(device)
    key = (info.name, str(data_dir), str(device), float(val_fraction), int(seed))
    if key not in _SPLITS:
        if len(_SPLITS) >= 4:  # a process rarely needs more; bound device memory
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = make_splits(info, load_raw(info, data_dir), device, val_fraction, seed)
    return _SPLITS[key]


def make_splits(
    info: DatasetInfo, raw: RawData, device: torch.device, val_fraction: float, seed: int
) -> DataSplits:
    """Carves a seeded validation split off the train set and moves everything to `device`."""
    n = raw.train_x.shape[0]
    n_val = max(1, round(n * val_fraction))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values

    def put(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous().to(device)

    return DataSplits(
        info.name, put(raw.train_x[train_idx]), put(raw.train_y[train_idx]),
        put(raw.train_x[val_idx]), put(raw.train_y[val_idx]), put(raw.test_x), put(raw.test_y),
        info.num_classes, info.in_channels, info.image_size, info.mean, info.std, device,
        source=raw.source, augment=info.augment, val_fraction=val_fraction, seed=seed,
        classes=info.classes, fingerprint=raw_fingerprint(info, raw),
    )


def raw_fingerprint(info: DatasetInfo, raw: RawData) -> str:
    """A hash of the decoded images and labels (tells one copy of a dataset from another)."""
    digest = hashlib.blake2b(f"{info.name}\n".encode(), digest_size=16)
    for tensor in raw[:4]:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().numpy())
    return digest.hexdigest()


def load_raw(info: DatasetInfo, data_dir: str | Path | None = None) -> RawData:
    """Decoded uint8 train/test tensors, from the first source that has them."""
    key = (info.name, str(Path(data_dir).resolve()) if data_dir else "")
    if key in _RAW:
        return _RAW[key]
    if data_dir is not None:
        raw = read_folder(info, Path(data_dir))
        if raw is None:
            raise DataError(f"{data_dir}: no {info.name} files found there "
                            f"({expected_layout(info)})")
    else:
        raw = read_cache(info) or read_default_sources(info)
    _RAW[key] = raw
    return raw


def expected_layout(info: DatasetInfo) -> str:
    """What a data folder must hold, in words."""
    if info.idx_files:
        return (f"expected {info.idx_files[0]}[.gz] and the other idx files, "
                f"or {info.torchvision_class}/raw/ as torchvision lays it out")
    return "expected cifar-10-batches-py/ or cifar-10-python.tar.gz"


def read_default_sources(info: DatasetInfo) -> RawData:
    """Debian's files, then torchvision's download; writes the cache; one-line error if none."""
    debian = debian_dir(info)
    raw = read_folder(info, debian) if debian is not None and debian.is_dir() else None
    if raw is None:
        try:
            raw = read_torchvision(info, cache_dir() / "torchvision", download=True)
        except Exception as e:  # noqa: BLE001  any download failure ends in the same advice
            text = str(e).strip()
            reason = text.splitlines()[0].rstrip(":") if text else type(e).__name__
            raise DataError(
                f"{info.name} not found in {cache_dir()}"
                + (f" or {debian}" if debian else "")
                + f" and the download failed ({reason[:120]}); {info.download_hint}"
            ) from None
    write_cache(info, raw)
    return raw


def read_folder(info: DatasetInfo, folder: Path) -> RawData | None:
    """A dataset from a folder: a torchvision root, or a flat folder of idx files."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such directory")
    if torchvision_present(info, folder):
        return read_torchvision(info, folder, download=False)
    for flat in (folder, folder / info.torchvision_class / "raw"):
        if info.idx_files and find_idx(flat, info.idx_files[0]) is not None:
            raw = read_torchvision(info, stage_idx_files(info, flat), download=False)
            return raw._replace(source=str(flat))
    if info.name == "cifar10" and (folder / "cifar-10-python.tar.gz").exists():
        return read_torchvision(info, folder, download=True)  # verifies md5, extracts
    return None


def torchvision_present(info: DatasetInfo, root: Path) -> bool:
    """Whether `root` already holds the dataset in torchvision's own layout."""
    if info.idx_files:
        raw = root / info.torchvision_class / "raw"
        return all((raw / name).exists() for name in info.idx_files)
    return (root / "cifar-10-batches-py" / "batches.meta").exists()


def find_idx(folder: Path, name: str) -> Path | None:
    """`name` or `name.gz` in `folder`."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def stage_idx_files(info: DatasetInfo, folder: Path) -> Path:
    """Lays flat idx files out as torchvision expects (<root>/<Class>/raw/, uncompressed).

    torchvision only reads uncompressed idx files and checks the md5 of the .gz files it
    downloads itself (Debian's are compressed differently), so the files are decompressed here,
    into a cache folder named after the source folder.
    """
    tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    root = cache_dir() / "staged" / f"{info.name}-{tag}"
    raw = root / info.torchvision_class / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in info.idx_files:
        source = find_idx(folder, name)
        if source is None:
            raise DataError(f"{folder}: {name}[.gz] is missing")
        target = raw / name
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        tmp = raw / f".{name}.{os.getpid()}.tmp"
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
    return root


def read_torchvision(info: DatasetInfo, root: Path, download: bool) -> RawData:
    """Train and test sets through torchvision's dataset class, as uint8 [N,C,H,W] tensors."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.torchvision_class)
    parts = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as e:
            if download:
                raise  # read_default_sources turns a failed download into advice
            raise DataError(f"{root}: torchvision cannot read {info.name}: {e}") from None
        parts += list(as_tensors(ds.data, ds.targets))
    return RawData(*parts, source=str(root))


def as_tensors(images: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision dataset's `data`/`targets` as uint8 [N,C,H,W] and int64 [N]."""
    x = torch.as_tensor(images)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # HW or HWC -> CHW
    y = torch.as_tensor(labels, dtype=torch.int64)
    return x.to(torch.uint8).contiguous(), y


def cache_file(info: DatasetInfo) -> Path:
    return cache_dir() / f"{info.name}.pt"


def read_cache(info: DatasetInfo) -> RawData | None:
    """The decoded tensors from the on-disk cache, or None when absent or stale."""
    path = cache_file(info)
    if not path.exists():
        return None
    try:
        blob = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001  a corrupt cache is rebuilt, not fatal
        return None
    if blob.get("format") != CACHE_FORMAT:
        return None
    return RawData(blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"],
                   source=str(blob.get("source", path)))


def write_cache(info: DatasetInfo, raw: RawData) -> None:
    """Writes the decoded tensors atomically (parallel workers may race; last one wins)."""
    path = cache_file(info)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        blob = {"format": CACHE_FORMAT, "source": raw.source, **raw._asdict()}
        torch.save(blob, tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home is no reason to fail; the data is in memory


def torchvision_root(dataset: str = "fashion-mnist", data_dir: str | Path | None = None) -> Path:
    """A folder laid out as torchvision's dataset class expects (for the book's loop)."""
    info = dataset_info(dataset)
    if data_dir is not None:
        folder = Path(data_dir)
        if torchvision_present(info, folder):
            return folder
        if info.idx_files and find_idx(folder, info.idx_files[0]) is not None:
            return stage_idx_files(info, folder)
        raise DataError(f"{data_dir}: no {info.name} files found there ({expected_layout(info)})")
    downloaded, debian = cache_dir() / "torchvision", debian_dir(info)
    if torchvision_present(info, downloaded):
        return downloaded
    if debian is not None and debian.is_dir():
        return stage_idx_files(info, debian)
    read_default_sources(info)  # downloads into the cache's torchvision root or says why not
    return downloaded


__all__ = ["DATASETS", "DatasetInfo", "RawData", "builtin_key", "cache_dir", "cache_file",
           "check_source", "dataset_info", "debian_dir", "is_builtin", "load_builtin", "load_raw",
           "make_splits", "read_cache", "read_torchvision", "torchvision_root", "write_cache"]
