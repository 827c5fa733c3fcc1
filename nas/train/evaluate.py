"""Accuracy on a split, and forward latency: both in eval mode, without autograd."""

from __future__ import annotations

import statistics
import time
from typing import Literal

import torch
from torch import nn

from nas.builder import eval_mode
from nas.data import BatchMaker, DataSplits
from nas.device import synchronize
from nas.train.policy import autocast, model_input_size, use_channels_last


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, maker: BatchMaker,
             batch_size: int = 1024, amp: bool = False) -> float:
    """Top-1 accuracy over uint8 images `x`, in eval mode, in large batches."""
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            with autocast(x.device, amp):
                logits = model(maker(x[i:i + batch_size]))
            correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    return correct.item() / max(1, x.shape[0])


def evaluate(model: nn.Module, data: DataSplits, split: Literal["val", "test"] = "val",
             batch_size: int = 1024, channels_last: bool | None = None,
             amp: bool | None = None) -> float:
    """Accuracy on the validation or test split (resized to the model's input), on its device."""
    model.to(data.device)
    layout = use_channels_last(model, data.device, channels_last)
    maker = BatchMaker(data, model_input_size(model, data), layout)
    x, y = (data.val_x, data.val_y) if split == "val" else (data.test_x, data.test_y)
    use_amp = data.device.type == "cuda" if amp is None else amp
    return accuracy(model, x, y, maker, batch_size, use_amp)


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
