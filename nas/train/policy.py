"""Optimiser, learning-rate schedule, step plan, training subset and memory layout."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nas.builder.blocks import SqueezeExcite
from nas.data import DataSplits
from nas.train.config import Budget, TrainConfig, TrainError


def make_optimizer(model: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW; weight decay on weights of rank > 1 only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    nesterov = config.nesterov and config.momentum > 0
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=nesterov)


def lr_factor(schedule: str, step: int, total: int, warmup: float = 0.0) -> float:
    """Multiplier of the peak learning rate at 0-based `step` of `total`."""
    if schedule == "constant":
        return 1.0
    if schedule == "onecycle":  # torch's OneCycleLR shape: cosine up over 25%, then down
        up = max(1, round(0.25 * total))
        start, end = 1 / 25, 1 / 25e4
        if step < up:
            return start + (1 - start) * (1 - math.cos(math.pi * step / up)) / 2
        t = (step - up) / max(1, total - up)
        return end + (1 - end) * (1 + math.cos(math.pi * t)) / 2
    warm = round(warmup * total)
    if step < warm:
        return (step + 1) / warm
    return (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))) / 2


def plan_steps(n_train: int, budget: Budget) -> tuple[int, int]:
    """(steps per epoch, total steps): full batches only, at least one per epoch."""
    per_epoch = max(1, n_train // budget.batch_size)
    total = per_epoch * budget.epochs
    return per_epoch, min(total, budget.max_steps or total)


def subset_indices(n: int, fraction: float, seed: int) -> torch.Tensor:
    """The training subset: the same `fraction` of the split for the same seed."""
    if fraction >= 1:
        return torch.arange(n)
    keep = max(1, round(n * fraction))
    generator = torch.Generator().manual_seed(seed + 7919)
    return torch.randperm(n, generator=generator)[:keep].sort().values


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling/augmentation stream of one epoch: a resumed run draws the same."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def use_channels_last(model: nn.Module, device: torch.device, wanted: bool | None) -> bool:
    """channels_last as asked; by default on CUDA, and on CPU unless some conv is narrow.

    On CPU, batch norm and pooling kernels vectorise over channels in channels_last; with
    fewer than 16 channels (LeNet's 6) they ran 1.3-2x slower than in NCHW here, while 16-128
    channel ResNets ran 1.3-1.6x faster (docs/training.md), and MBConv networks (depthwise
    convs) 1.2-1.8x faster (benchmarks/channels_last.py). Squeeze-and-excitation convs work on
    1x1 pooled maps, where layout does not matter, so their (narrow) widths do not count.
    """
    if wanted is not None:
        return wanted
    if device.type == "cuda":
        return True
    squeeze = {id(conv) for m in model.modules() if isinstance(m, SqueezeExcite)
               for conv in m.modules() if isinstance(conv, nn.Conv2d)}
    widths = [m.out_channels for m in model.modules()
              if isinstance(m, nn.Conv2d) and id(m) not in squeeze]
    return bool(widths) and min(widths) >= 16


def model_input_size(model: nn.Module, data: DataSplits) -> int:
    """The size batches are resized to; refuses channel or class mismatches in one line."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return data.image_size
    check_spec_fits(spec, data.name, data.in_channels, data.num_classes,
                    data.image_size if data.is_user_data else None, data.is_user_data)
    return spec.input_size


def check_spec_fits(spec: Any, name: str, channels: int, classes: int,
                    prepared_size: int | None = None, user_data: bool = False) -> None:
    """Refuses, saying what to set, a spec whose channels, classes or (for user data, which
    is prepared at one size) input size do not fit the data."""
    if spec.in_channels != channels:
        advice = f"set in_channels: {channels} in the spec"
        if user_data:
            advice += f", or pass --channels {spec.in_channels} to read the images " \
                      f"as {'grey' if spec.in_channels == 1 else 'colour'}"
        raise TrainError(f"the spec takes {spec.in_channels}-channel input but {name} images "
                         f"have {channels} channel(s); {advice}")
    if spec.num_classes != classes:
        raise TrainError(f"the spec has {spec.num_classes} classes but {name} has {classes}; "
                         f"set num_classes: {classes} in the spec")
    if prepared_size is not None and spec.input_size != prepared_size:
        raise TrainError(f"the spec takes {spec.input_size} px input but {name} was prepared "
                         f"at {prepared_size} px; pass --input-size {prepared_size} or load "
                         f"the data at {spec.input_size} px")


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on `device` when enabled."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
