"""Cost of a network: parameters, MACs, activations, forward and training memory.

`measure` runs a real module. `estimate` runs the spec's network on the meta device, where
tensors have shapes but no storage: the same figures (equal to the CPU measurement) before a
byte of weights is allocated, so `nas summary`, `nas train` and the search's gate can refuse
what cannot fit. The spec's bounds (nas.specs) keep the meta build itself small.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from nas.builder import build, eval_mode
from nas.device import MemoryLimit
from nas.errors import UserError
from nas.memory import LiveStorageMode, StorageBytes, saved_for_backward, state_parts, tensor_bytes
from nas.sizes import format_bytes

aten = torch.ops.aten


class OverMemory(UserError):
    """A spec whose memory is over the limit of the device or of --max-memory."""


@dataclass(frozen=True)
class Cost:
    """Per-image costs at the spec's input size (batch of one)."""

    params: int
    macs: int
    activations: int
    peak_memory_bytes: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class StageRow:
    """One row of a network summary: a stage's kind, output shape and cost."""

    index: int
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes one training step holds at `batch_size`: what nas.train estimates on the CPU after
    its first step (weights, gradients, optimiser state, and the tensors autograd saves for
    backward with the input batch). Not included: gradients of activations alive during
    backward, the allocator's rounding and caching, cuDNN workspaces, the data set itself; with
    bf16 autocast (CUDA) saved activations are smaller than this fp32 figure."""

    batch_size: int
    optimizer: str
    weights: int  # parameters and buffers
    gradients: int
    optimiser: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimiser + self.activations

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}

    def describe(self) -> str:
        """'48.2 GiB at batch 256 (weights ..., gradients ..., optimiser ..., activations ...)'."""
        parts = ", ".join(f"{name} {format_bytes(getattr(self, name))}"
                          for name in ("weights", "gradients", "optimiser", "activations"))
        return f"{format_bytes(self.total)} at batch {self.batch_size} ({parts})"


@dataclass(frozen=True)
class CostEstimate:
    """A spec's costs from its network on the meta device: per image, per stage, training."""

    cost: Cost
    stages: tuple[StageRow, ...]
    training: TrainingMemory


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass, from torch's FLOP counter (FLOPs / 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@contextlib.contextmanager
def counting_outputs(model: nn.Module) -> Iterator[list[int]]:
    """Within the block, the elements of conv and linear outputs are summed into `[total]`
    (pycls/fvcore's 'acts')."""
    total = [0]

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        total[0] += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


def count_activations(model: nn.Module, x: torch.Tensor) -> int:
    """Elements in the outputs of conv and linear layers (pycls/fvcore's 'acts')."""
    with counting_outputs(model) as total, torch.no_grad():
        model(x)
    return total[0]


@contextlib.contextmanager
def activation_peak(device: torch.device, exclude: list[torch.Tensor],
                    ) -> Iterator[Callable[[], int]]:
    """Within the block, the most bytes alive at once besides `exclude` (weights, input); on
    CUDA from the allocator, elsewhere (CPU, meta) per tensor storage, without allocator
    rounding or workspace. Yields a function that reads it after the block."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield lambda: torch.cuda.max_memory_allocated(device) - start
        torch.cuda.synchronize(device)
        return
    tracker = StorageBytes(exclude)
    with LiveStorageMode(tracker):
        yield lambda: tracker.peak


class MetaShortcuts(TorchDispatchMode):
    """Batch norm on meta tensors answered from shapes (output like the input, per-channel
    statistics) instead of torch's Python decomposition, which took 80% of a meta forward.
    The outputs are those the meta kernel gives; tests check the figures against the CPU."""

    NORMS = (aten.native_batch_norm.default, aten._native_batch_norm_legit.default,
             aten._native_batch_norm_legit_no_training.default)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func in self.NORMS and args[0].is_meta:
            x, channels = args[0], args[0].shape[1]
            return torch.empty_like(x), x.new_empty(channels), x.new_empty(channels)
        return func(*args, **(kwargs or {}))


def parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """A built network's stages (by kind) and head; any other module as one part."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return [("model", model)]
    return [(s.kind, m) for s, m in zip(spec.stages, model.stages)] + [("head", model.head)]


def profile(model: nn.Module, in_channels: int, input_size: int) -> tuple[Cost, list[StageRow]]:
    """One no-grad forward of one image in eval mode, part by part: the totals and the
    per-stage table. Works on CPU, CUDA and meta modules alike."""
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, input_size, input_size, device=device)
    existing = [*model.parameters(), *model.buffers(), x]
    shortcuts = MetaShortcuts() if device.type == "meta" else contextlib.nullcontext()
    rows = []
    with eval_mode(model), torch.no_grad(), shortcuts, counting_outputs(model) as outputs, \
            activation_peak(device, existing) as peak:
        for index, (kind, module) in enumerate(parts(model)):
            with FlopCounterMode(display=False) as counter:
                x = module(x)
            rows.append(StageRow(index, kind, tuple(x.shape), count_params(module),
                                 counter.get_total_flops() // 2))
    cost = Cost(params=count_params(model), macs=sum(r.macs for r in rows),
                activations=outputs[0], peak_memory_bytes=tensor_bytes(existing) + peak())
    return cost, rows


def measure(model: nn.Module, in_channels: int, input_size: int) -> Cost:
    """All costs of `model` for one image of the given shape, in eval mode on its device."""
    return profile(model, in_channels, input_size)[0]


def stage_table(model: nn.Module, in_channels: int, input_size: int) -> list[StageRow]:
    """Output shape, parameters and MACs of each stage and of the head, for one image."""
    return profile(model, in_channels, input_size)[1]


def training_memory(model: nn.Module, in_channels: int, input_size: int, batch_size: int,
                    optimizer: str = "sgd") -> TrainingMemory:
    """The memory of one training step of a META model: a train-mode forward and the loss at
    `batch_size`, counting what autograd saves, as nas.train's first CPU step does."""
    if next(model.parameters()).device.type != "meta":  # a real forward would move BN stats
        raise ValueError("training_memory runs on a meta model (nas.cost.meta_build)")
    x = torch.zeros(batch_size, in_channels, input_size, input_size, device="meta")
    y = torch.zeros(batch_size, dtype=torch.long, device="meta")
    saved = StorageBytes([*model.parameters(), x])
    was_training = model.training
    model.train()
    try:
        with torch.enable_grad(), MetaShortcuts(), saved_for_backward(saved):
            F.cross_entropy(model(x), y)
    except ValueError as e:  # a BN1d head over a batch of one: training would refuse it too
        raise UserError(f"cannot train at batch {batch_size}: {e}") from None
    finally:
        model.train(was_training)
    weights, gradients, optimiser = state_parts(model, optimizer)
    return TrainingMemory(batch_size, optimizer, weights, gradients, optimiser,
                          saved.total + x.nbytes)


def meta_build(spec: Any) -> nn.Module:
    """`spec`'s network on the meta device: modules and shapes, no storage."""
    with torch.device("meta"):
        return build(spec)


class MetaCost:
    """A spec's costs on the meta device, each measured when first asked for, cheapest first:
    the build gives the parameters; a forward of one image the MACs, activations and forward
    peak; a training forward the training memory at `batch_size`."""

    def __init__(self, spec: Any, batch_size: int = 256, optimizer: str = "sgd") -> None:
        self.model = meta_build(spec)
        self.batch_size, self.optimizer = batch_size, optimizer

    @cached_property
    def params(self) -> int:
        return count_params(self.model)

    @cached_property
    def forward(self) -> tuple[Cost, list[StageRow]]:
        net = self.model.spec
        return profile(self.model, net.in_channels, net.input_size)

    @property
    def cost(self) -> Cost:
        return self.forward[0]

    @cached_property
    def training(self) -> TrainingMemory:
        net = self.model.spec
        return training_memory(self.model, net.in_channels, net.input_size, self.batch_size,
                               self.optimizer)

    def figures(self, measure_all: bool = False) -> dict[str, int]:
        """The parameters and the figures measured so far (or all, measuring the rest), as
        TrialRecord fields."""
        done = self.__dict__  # where cached_property keeps what it measured
        out = {"params": self.params}  # the build has been paid for: counting is free
        if measure_all or "forward" in done:
            out |= self.cost.as_dict()
        if measure_all or "training" in done:
            out["training_memory_bytes"] = self.training.total
        return out


def estimate(spec: Any, batch_size: int = 256, optimizer: str = "sgd") -> CostEstimate:
    """Every cost of a spec (anything `build` takes) without allocating: per image as `measure`
    gives on the CPU, per stage, and training memory at `batch_size` (nas train's default)."""
    costs = MetaCost(spec, batch_size, optimizer)
    return CostEstimate(costs.cost, tuple(costs.forward[1]), costs.training)


def check_training(source: str, training: TrainingMemory, limit: MemoryLimit | None) -> None:
    """Raises OverMemory, naming the figure and the limit, when training cannot fit."""
    if limit is not None and training.total > limit.bytes:
        raise OverMemory(f"{source}: training needs {training.describe()}; limit "
                         f"{format_bytes(limit.bytes)} ({limit.source}); lower --batch-size or "
                         "the spec's size")


def check_forward(source: str, cost: Cost, limit: MemoryLimit | None) -> None:
    """Raises OverMemory when even a batch-1 forward cannot fit."""
    if limit is not None and cost.peak_memory_bytes > limit.bytes:
        raise OverMemory(f"{source}: a forward of one image needs "
                         f"{format_bytes(cost.peak_memory_bytes)} ({cost.params:,} parameters); "
                         f"limit {format_bytes(limit.bytes)} ({limit.source}); lower the spec's "
                         "size")


@dataclass(frozen=True)
class LimitCheck:
    """One cost against its limit (the search's gate)."""

    name: str  # params, macs or memory
    excess: int  # value - limit: <= 0 within it (Optuna's constraint convention)
    text: str  # 'params 1,234 > max 1,000'


def limit_steps(costs: MetaCost, max_params: int | None, max_macs: int | None,
                memory: MemoryLimit | None) -> Iterator[LimitCheck]:
    """Each given limit's check, cheapest first; a generator, so a figure is measured only
    when its check is reached."""
    if max_params is not None:
        params = costs.params
        yield LimitCheck("params", params - max_params, f"params {params:,} > max {max_params:,}")
    if max_macs is not None:
        macs = costs.cost.macs
        yield LimitCheck("macs", macs - max_macs, f"macs {macs:,} > max {max_macs:,}")
    if memory is not None:
        need = costs.training.total
        yield LimitCheck("memory", need - memory.bytes,
                         f"memory {format_bytes(need)} at batch {costs.batch_size} > "
                         f"{format_bytes(memory.bytes)} ({memory.source})")


def check_limits(costs: MetaCost, max_params: int | None = None, max_macs: int | None = None,
                 memory: MemoryLimit | None = None) -> list[LimitCheck]:
    """The given limits checked cheapest first, stopping at the first one exceeded: an
    over-budget spec costs only what it took to refuse it (params: the meta build alone)."""
    checks: list[LimitCheck] = []
    for check in limit_steps(costs, max_params, max_macs, memory):
        checks.append(check)
        if check.excess > 0:
            break
    return checks
