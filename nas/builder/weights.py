"""Weights from a state_dict file (a torch checkpoint or safetensors), loaded by order and shape.

A nas network and the torchvision model it describes register their tensors in the same order
with different names, so a checkpoint is matched position by position and every shape checked.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from nas.errors import WeightsError

# torchvision's GoogLeNet checkpoints carry two auxiliary classifiers that only training uses.
OPTIONAL_PREFIXES = ("aux1.", "aux2.")
# Batch norm's step counter; checkpoints saved before PyTorch 0.4.1 have none (and torch's own
# BatchNorm loading fills it in for them too).
COUNTER = "num_batches_tracked"


def load_file(path: Path) -> object:
    """What the file holds, read without running pickled code."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        return load_safetensors(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping stored in a .safetensors file or a torch.save'd state_dict."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on pickle protocols: the error says it
            warnings.simplefilter("ignore")
            state = load_file(path)
    except pickle.UnpicklingError:  # weights_only refuses anything but tensors and containers
        raise WeightsError(
            f"{path}: holds pickled objects other than tensors; save model.state_dict() instead"
        ) from None
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes a reader raise
        reason = str(e).splitlines()[0].split(". ")[0] if str(e) else ""
        raise WeightsError(
            f"{path}: not a readable weights file ({type(e).__name__}: {reason})"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        kind = type(state).__name__
        raise WeightsError(f"{path}: expected a state_dict (names to tensors), got a {kind}")
    return dict(state)


def mismatch(path: Path, source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> str:
    """'' when source fits target position by position, else one line naming the first misfit."""
    counts = f"{len(source)} tensors in the file, {len(target)} in the model"
    for i, ((name, tensor), (ours, want)) in enumerate(zip(source.items(), target.items())):
        if tensor.shape != want.shape:
            return (
                f"{path}: tensor {i} is {name} {tuple(tensor.shape)} in the file but "
                f"{ours} {tuple(want.shape)} in the model"
                + ("" if len(source) == len(target) else f" ({counts})")
            )
    if len(source) != len(target):
        return f"{path}: {counts} (the first {min(len(source), len(target))} match)"
    return ""


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Copies a state_dict file's tensors into `model` in order; WeightsError on any misfit.

    A file with exactly the model's names (nas's own, e.g. `nas train`'s model.safetensors) is
    matched by name, since a .safetensors file does not keep the order of its tensors.
    """
    target, values, counters = match_weights(model, path)
    model.load_state_dict(dict(zip(target, values)), strict=False)
    with torch.no_grad():  # the file predates BN's counters: a fresh start
        for name in counters:
            model.get_buffer(name).zero_()


def match_weights(model: nn.Module, path: str | Path,
                  ) -> tuple[list[str], list[torch.Tensor], list[str]]:
    """The model's state names, the file's tensors for them in order, and the BN counters the
    file lacks; WeightsError on any misfit. Nothing is loaded (a meta model will do)."""
    path = Path(path).expanduser()
    source = read_state(path)
    target = model.state_dict()
    if not any(k.startswith(OPTIONAL_PREFIXES) for k in target):
        source = {k: v for k, v in source.items() if not k.startswith(OPTIONAL_PREFIXES)}
    counters = [] if any(k.endswith(COUNTER) for k in source) else [
        k for k in target if k.endswith(COUNTER)
    ]
    target = {k: v for k, v in target.items() if k not in counters}
    if set(source) == set(target):
        source = {k: source[k] for k in target}
    elif path.suffix == ".safetensors":
        raise WeightsError(
            f"{path}: its tensor names are not the model's, and a .safetensors file does not "
            "keep the order of its tensors, so they cannot be matched; use a torch.save'd file"
        )
    problem = mismatch(path, source, target)
    if problem:
        raise WeightsError(problem)
    return list(target), list(source.values()), counters
