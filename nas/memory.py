"""One tracker of tensor storage bytes: the forward peak (nas.cost) and the activations kept
for backward (nas.train's CPU memory estimate). Storages are keyed by their C++ object, so it
works on the meta device too, where nothing is allocated."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def storage_key(t: torch.Tensor) -> int:
    """One key per storage: views of a tensor share it; meta tensors have distinct ones."""
    return t.untyped_storage()._cdata


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the given tensors' elements (no storage sharing assumed)."""
    return sum(t.numel() * t.element_size() for t in tensors)


class StorageBytes:
    """Bytes of the distinct storages added (`total`) and, when lifetimes are followed, of
    those still alive (`live`) and their most at once (`peak`). `exclude`d storages (weights,
    the input) are never counted."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self.total = self.live = self.peak = 0
        self.seen: set[int] = set()
        self.excluded = {storage_key(t) for t in exclude}

    def add(self, t: torch.Tensor, follow_lifetime: bool = False) -> None:
        """Counts `t`'s storage once; with `follow_lifetime`, uncounts it from `live` when freed."""
        storage = t.untyped_storage()
        key, size = storage._cdata, storage.nbytes()
        if key in self.seen or key in self.excluded or size == 0:
            return
        self.seen.add(key)
        self.total += size
        self.live += size
        self.peak = max(self.peak, self.live)
        if follow_lifetime:
            weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self.seen.discard(key)
        self.live -= size


def eval_norm(func: object, args: tuple) -> bool:
    """Whether an operator is batch norm in eval mode (FlopCounterMode asks for the second)."""
    aten = torch.ops.aten
    return (func is aten.native_batch_norm.default and not args[5]) \
        or func is aten._native_batch_norm_legit_no_training.default


class LiveStorageMode(TorchDispatchMode):
    """Within the block, every tensor an operator returns is added to `tracker` with its
    lifetime followed: `tracker.peak` is then the most activation bytes alive at once."""

    def __init__(self, tracker: StorageBytes) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if eval_norm(func, args):
            # in eval, the CPU kernel returns empty batch statistics; the meta kernel allocates
            # them: counted as on the CPU, so an estimate on meta equals the CPU measurement
            tensors = tensors[:1]
        for t in tensors:
            self.tracker.add(t, follow_lifetime=True)
        return out


OPTIMIZER_SLOTS = {"sgd": 1, "adamw": 2}  # state tensors per parameter: momentum; two moments


def state_parts(model: torch.nn.Module, optimizer: str = "sgd") -> tuple[int, int, int]:
    """(weights, gradients, optimiser state) bytes: parameters and buffers; one gradient per
    parameter; 1 slot per parameter for SGD momentum, 2 for AdamW."""
    params = tensor_bytes(model.parameters())
    return params + tensor_bytes(model.buffers()), params, params * OPTIMIZER_SLOTS[optimizer]


def state_bytes(model: torch.nn.Module, optimizer: str = "sgd") -> int:
    """What training holds besides the activations: the sum of `state_parts`."""
    return sum(state_parts(model, optimizer))


def saved_for_backward(tracker: StorageBytes) -> torch.autograd.graph.saved_tensors_hooks:
    """Within the block, every tensor autograd saves for backward is added to `tracker`."""

    def pack(t: torch.Tensor) -> torch.Tensor:
        tracker.add(t)
        return t

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


__all__ = ["OPTIMIZER_SLOTS", "LiveStorageMode", "StorageBytes", "eval_norm", "saved_for_backward",
           "state_bytes", "state_parts", "storage_key", "tensor_bytes"]
