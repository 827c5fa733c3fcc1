"""One entry point for every data source: a built-in dataset's name, or a user's folder or
CSV/TSV file; and the JSON card that describes what was loaded (stored with a study and in a
run folder as data.json, read back by `nas predict`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nas.data.builtin import check_source, dataset_info, is_builtin, load_builtin
from nas.data.pool import Progress
from nas.data.splits import DataError, DataSplits
from nas.data.user import load_user

CARD_FORMAT = 1
RESIZE = "shorter side to input_size (bilinear), centre crop"


def load_data(
    source: str | Path = "fashion-mnist",
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    val_fraction: float = 1 / 12,
    seed: int = 0,
    *,
    input_size: int | None = None,
    channels: int | None = None,
    progress: Progress | None = None,
    fingerprint: str | None = None,
) -> DataSplits:
    """The splits of a built-in dataset (by name) or of a user's folder or CSV/TSV (by path).

    User data is prepared once at `input_size` with `channels` (defaults: the images' median
    shorter side up to 224 px, and 3 channels when any image has colour) and memory-mapped;
    a validation split is drawn from train by `seed`, stratified, when the data has none.
    `fingerprint` (a DataSplits.fingerprint recorded earlier) loads exactly that version and
    refuses changed files. Built-ins ignore `input_size` (batches are resized to the model).
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), not {val_fraction}")
    check_source(source)
    device = torch.device(device)
    if is_builtin(source):
        info = dataset_info(str(source))
        if channels not in (None, info.in_channels):
            raise DataError(f"{info.name} has {info.in_channels}-channel images; --channels "
                            f"applies to image folders and tables")
        return load_builtin(info.name, data_dir, device, val_fraction, seed)
    if data_dir is not None:
        raise DataError(f"--data-dir is for the built-in datasets; {source} is read as a "
                        f"folder or table")
    return load_user(source, device, val_fraction, seed, input_size, channels, progress,
                     fingerprint)


def describe(data: DataSplits) -> dict[str, Any]:
    """The data card (JSON-safe): what the data is, and how images become the model's input."""
    return {
        "format": CARD_FORMAT, "kind": data.kind, "name": data.name, "source": data.source,
        "fingerprint": data.fingerprint, "classes": list(data.classes),
        "num_classes": data.num_classes, "mean": list(data.mean), "std": list(data.std),
        "input_size": data.image_size, "channels": data.in_channels, "resize": RESIZE,
        "augment": data.augment, "counts": data.counts(), "val_fraction": data.val_fraction,
        "split_seed": data.seed, **({"val_drawn": data.extra["val_drawn"]}
                                    if "val_drawn" in data.extra else {}),
        **({"unreadable": data.extra["unreadable"]} if "unreadable" in data.extra else {}),
    }


def builtin_card(name: str) -> dict[str, Any]:
    """A built-in dataset's card without loading it (for run folders written before data.json)."""
    info = dataset_info(name)
    return {"format": CARD_FORMAT, "kind": "builtin", "name": info.name, "source": "",
            "fingerprint": "", "classes": list(info.classes), "num_classes": info.num_classes,
            "mean": list(info.mean), "std": list(info.std), "input_size": info.image_size,
            "channels": info.in_channels, "resize": RESIZE, "augment": info.augment}


__all__ = ["CARD_FORMAT", "builtin_card", "describe", "load_data"]
