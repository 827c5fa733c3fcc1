"""Accuracy and balanced accuracy on a split, and forward latency: in eval mode, without
autograd."""

from __future__ import annotations

import statistics
import time
from typing import Literal, NamedTuple

import torch
from torch import nn

from nas.builder import eval_mode
from nas.data import BatchMaker, DataSplits, Images
from nas.device import synchronize
from nas.train.policy import autocast, model_input_size, use_channels_last


class Scores(NamedTuple):
    """Top-1 accuracy, and balanced accuracy: the mean per-class recall (classes present)."""

    accuracy: float
    balanced_accuracy: float


@torch.inference_mode()
def split_scores(model: nn.Module, x: Images, y: torch.Tensor, maker: BatchMaker,
                 batch_size: int = 1024, amp: bool = False,
                 num_classes: int | None = None) -> Scores:
    """Accuracy and balanced accuracy over uint8 images `x`, in eval mode, in large batches."""
    k = num_classes if num_classes is not None else int(y.max().item()) + 1 if len(y) else 1
    counts = torch.zeros(2 * k, dtype=torch.int64, device=y.device)  # per class: miss, hit
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            with autocast(y.device, amp):
                logits = model(maker(x[i:i + batch_size]))
            labels = y[i:i + batch_size]
            hits = (logits.argmax(1) == labels).long()
            counts += torch.bincount(labels * 2 + hits, minlength=2 * k)
    return scores_from_counts(counts.view(k, 2).cpu())


def scores_from_counts(counts: torch.Tensor) -> Scores:
    """Scores from [classes, 2] counts of misses and hits (NaN when there are no images)."""
    per_class = counts.sum(1)
    total = int(per_class.sum())
    if total == 0:
        return Scores(float("nan"), float("nan"))
    present = per_class > 0
    recall = counts[present, 1].double() / per_class[present].double()
    return Scores(int(counts[:, 1].sum()) / total, float(recall.mean()))


def accuracy(model: nn.Module, x: Images, y: torch.Tensor, maker: BatchMaker,
             batch_size: int = 1024, amp: bool = False) -> float:
    """Top-1 accuracy over uint8 images `x`, in eval mode, in large batches."""
    if x.shape[0] == 0:
        return 0.0
    return split_scores(model, x, y, maker, batch_size, amp).accuracy


def split_of(data: DataSplits, split: str) -> tuple[Images, torch.Tensor]:
    """The images and labels of the val or test split."""
    return (data.val_x, data.val_y) if split == "val" else (data.test_x, data.test_y)


def scores(model: nn.Module, data: DataSplits, split: Literal["val", "test"] = "val",
           batch_size: int = 1024, channels_last: bool | None = None,
           amp: bool | None = None) -> Scores:
    """Both scores on the validation or test split (resized to the model's input)."""
    model.to(data.device)
    layout = use_channels_last(model, data.device, channels_last)
    maker = BatchMaker(data, model_input_size(model, data), layout)
    use_amp = data.device.type == "cuda" if amp is None else amp
    x, y = split_of(data, split)
    return split_scores(model, x, y, maker, batch_size, use_amp, data.num_classes)


def evaluate(model: nn.Module, data: DataSplits, split: Literal["val", "test"] = "val",
             batch_size: int = 1024, channels_last: bool | None = None,
             amp: bool | None = None) -> float:
    """Accuracy on the validation or test split (resized to the model's input), on its device."""
    return scores(model, data, split, batch_size, channels_last, amp).accuracy


@torch.inference_mode()
def latency_ms(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device | None
               = None, batch_size: int = 1, warmup: int = 10, repeats: int = 50) -> float:
    """Median forward time in ms of one batch, after warm-up, synchronised on CUDA.

    `input_shape` is (C, H, W) (a leading batch dimension is ignored); the model is moved to
    `device` when one is given, and measured in eval mode with no autograd.
    """
    if device is not None:
        model.to(device)
    first = next(model.parameters())
    x = torch.randn(batch_size, *input_shape[-3:], device=first.device)
    if any(p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last)
           and not p.is_contiguous() for p in model.parameters()):
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with eval_mode(model):
        for i in range(warmup + repeats):
            synchronize(first.device)
            start = time.perf_counter()
            model(x)
            synchronize(first.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
