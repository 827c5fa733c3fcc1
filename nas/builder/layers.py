"""Conv-norm-act written once; activations by name."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": nn.Hardsigmoid,
    "none": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module for `name`."""
    return ACTIVATIONS[name]()


class ConvNormAct(nn.Sequential):
    """conv -> [BN] -> act, or with `preact` BN -> act -> conv (DenseNet's order)."""

    def __init__(
        self,
        w_in: int,
        w_out: int,
        kernel: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act: str = "relu",
        preact: bool = False,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ) -> None:
        pad = kernel // 2 if padding is None else padding
        conv = nn.Conv2d(w_in, w_out, kernel, stride, pad, groups=groups, bias=bias)
        if preact:
            layers = [nn.BatchNorm2d(w_in, eps, momentum)] if norm else []
            super().__init__(*layers, activation(act), conv)
        else:
            layers = [nn.BatchNorm2d(w_out, eps, momentum)] if norm else []
            super().__init__(conv, *layers, activation(act))


class StochasticDepth(nn.Module):
    """In training, zeroes a whole sample's residual branch with probability `p` and scales the
    others by 1 / (1 - p) (torchvision's "row" mode); identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        noise = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * noise.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
