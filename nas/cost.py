"""Cost measured on the built module: parameters, MACs, activations, peak forward memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.builder import eval_mode
from nas.memory import LiveStorageMode, StorageBytes, tensor_bytes


@dataclass(frozen=True)
class Cost:
    """Per-image costs at the spec's input size (batch of one)."""

    params: int
    macs: int
    activations: int
    peak_memory_bytes: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass, from torch's FLOP counter (FLOPs / 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def count_activations(model: nn.Module, x: torch.Tensor) -> int:
    """Elements in the outputs of conv and linear layers (pycls/fvcore's 'acts')."""
    total = 0

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def peak_forward_memory(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of a no-grad forward: weights and input plus the most activations alive at once.

    On CUDA this is read from the allocator; elsewhere it is tracked per tensor storage created
    while the forward runs (allocator rounding and workspace not included).
    """
    existing = [*model.parameters(), *model.buffers(), x]
    base = tensor_bytes(existing)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        start = torch.cuda.memory_allocated(x.device)
        with torch.no_grad():
            model(x)
        torch.cuda.synchronize(x.device)
        return base + torch.cuda.max_memory_allocated(x.device) - start
    tracker = StorageBytes(existing)
    with torch.no_grad(), LiveStorageMode(tracker):
        model(x)
    return base + tracker.peak


def measure(model: nn.Module, in_channels: int, input_size: int) -> Cost:
    """All costs of `model` for one image of the given shape, in eval mode on its device."""
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, input_size, input_size, device=device)
    with eval_mode(model):
        return Cost(
            params=count_params(model),
            macs=count_macs(model, x),
            activations=count_activations(model, x),
            peak_memory_bytes=peak_forward_memory(model, x),
        )


@dataclass(frozen=True)
class StageRow:
    """One row of a network summary: a stage's kind, output shape and cost."""

    index: int
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def stage_table(model: nn.Module, in_channels: int, input_size: int) -> list[StageRow]:
    """Output shape, parameters and MACs of each stage and of the head, for one image."""
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, input_size, input_size, device=device)
    parts = [(s.kind, m) for s, m in zip(model.spec.stages, model.stages)] + [("head", model.head)]
    rows = []
    with eval_mode(model):
        for index, (kind, module) in enumerate(parts):
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                x = module(x)
            rows.append(StageRow(index, kind, tuple(x.shape), count_params(module),
                                 counter.get_total_flops() // 2))
    return rows
