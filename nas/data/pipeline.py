"""The on-device batch pipeline: uint8 images -> augmented, normalised float batches at the
model's input size, all in batch (no per-image Python, no DataLoader)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nas.data.splits import DataError, DataSplits

AUGMENTS = ("none", "flip", "crop-flip")


def augment_mode(value: bool | str | None, default: str = "none") -> str:
    """An augmentation setting as one of AUGMENTS: None is `default`, old booleans map to
    crop-flip (True) and none (False)."""
    if value is None:
        value = default
    if isinstance(value, bool):
        return "crop-flip" if value else "none"
    if value not in AUGMENTS:
        raise DataError(f"unknown augmentation {value!r}; one of {', '.join(AUGMENTS)}")
    return value


def default_augment(image_size: int) -> str:
    """User data's default: crop-flip up to 64 px, flip above.

    Horizontal flips keep the label of nearly every photo. A random crop of a zero-padded
    image (padding 1/8 of the side) is the small-image recipe (CIFAR, STL-10); at 96-224 px
    the usual recipe is a random *resized* crop, which this pipeline does not do, and black
    borders of up to 28 px are not what those images look like, so larger sizes only flip.
    """
    return "crop-flip" if image_size <= 64 else "flip"


class BatchMaker:
    """uint8 batches on the device -> normalised float batches at the model's input size."""

    def __init__(self, data: DataSplits, size: int, channels_last: bool = True,
                 augment: str = "crop-flip") -> None:
        self.setup(data.mean, data.std, data.device, size, channels_last, augment)

    @classmethod
    def for_stats(cls, mean: Sequence[float], std: Sequence[float], device: torch.device,
                  size: int, channels_last: bool = False) -> BatchMaker:
        """A maker from normalisation figures alone (prediction: no DataSplits at hand)."""
        maker = cls.__new__(cls)
        maker.setup(mean, std, device, size, channels_last, "none")
        return maker

    def setup(self, mean: Sequence[float], std: Sequence[float], device: torch.device,
              size: int, channels_last: bool, augment: str) -> None:
        c = len(mean)
        std_t = torch.tensor(std, device=device).view(1, c, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, device=device).view(1, c, 1, 1) / std_t
        self.size = size
        self.channels_last = channels_last
        self.augment = augment_mode(augment)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augments (when a generator is given), normalises, resizes; all in batch."""
        if generator is not None:
            x = augment(x, self.augment, generator)
        x = torch.addcmul(self.shift, x.float(), self.scale)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=self.size < x.shape[-1])
        # always the model's layout: crop-flip's gather yields an NHWC-strided batch, and on
        # torch 2.14's CPU the backward of a 1x1 stride-2 conv with NCHW weights given such a
        # batch corrupts the heap (a narrow ResNet on cifar10 or user data aborted)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=layout)


def augment(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """A batch augmented as `mode` says (none, flip or crop-flip)."""
    if mode == "crop-flip":
        return random_crop_flip(x, generator)
    if mode == "flip":
        return random_flip(x, generator)
    return x


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image flipped horizontally with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop (zero padding of size/8) and horizontal flip, in one gather."""
    n, c, h, w = x.shape
    pad = max(1, h // 8)
    padded = x.new_zeros(n, c, h + 2 * pad, w + 2 * pad)
    padded[:, :, pad:pad + h, pad:pad + w] = x
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + offsets[1, :, None]
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


__all__ = ["AUGMENTS", "BatchMaker", "augment", "augment_mode", "default_augment",
           "random_crop_flip", "random_flip"]
