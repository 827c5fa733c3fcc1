"""The splits a training run reads: images (tensors, or index views of a memory-mapped cache),
labels, and what describes the data (classes, normalisation, size, where it came from)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nas.errors import UserError


class DataError(UserError):
    """A dataset that cannot be found, read or used as asked."""


class IndexView:
    """Rows `index` of a uint8 image tensor [N,C,H,W], gathered per batch, never copied whole.

    User data lives in one memory-mapped file shared by every process through the page cache;
    a split is a view of its rows. Indexing with a slice or an index tensor returns a real
    tensor of just those images, which is all the training loop and evaluation ask of it.
    """

    def __init__(self, base: torch.Tensor, index: torch.Tensor) -> None:
        self.base = base
        self.index = index.to(device=base.device, dtype=torch.int64)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.index.numel(), *self.base.shape[1:]))

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    def __len__(self) -> int:
        return self.index.numel()

    def __getitem__(self, key: slice | torch.Tensor) -> torch.Tensor:
        rows = self.index[key.to(self.index.device) if isinstance(key, torch.Tensor) else key]
        return self.base[rows]

    def materialize(self) -> torch.Tensor:
        """All rows as one contiguous tensor (copies: for small data or tests only)."""
        return self.base[self.index]


Images = torch.Tensor | IndexView


@dataclass
class DataSplits:
    """Train/validation/test splits: uint8 images [N,C,H,W] and int64 labels on `device`.

    Built-in datasets hold tensors; user data holds IndexViews of a memory-mapped cache. The
    tensors may be shared between callers (a process caches them): never modify them.
    """

    name: str
    train_x: Images
    train_y: torch.Tensor
    val_x: Images
    val_y: torch.Tensor
    test_x: Images
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: int  # the prepared images' side (built-ins: their native size)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    source: str = ""
    augment: str = "none"  # the dataset's default augmentation: none, flip or crop-flip
    val_fraction: float = 1 / 12
    seed: int = 0
    classes: tuple[str, ...] = ()  # label index -> class name
    fingerprint: str = ""  # what the images are: changes when any file, size or label does
    kind: str = "builtin"  # builtin, folder or csv
    extra: dict = field(default_factory=dict)  # user data: layout, unreadable files, cache

    @property
    def is_user_data(self) -> bool:
        return self.kind != "builtin"

    def counts(self) -> dict[str, int]:
        """Images per split."""
        return {"train": int(self.train_y.numel()), "val": int(self.val_y.numel()),
                "test": int(self.test_y.numel())}


__all__ = ["DataError", "DataSplits", "Images", "IndexView"]
