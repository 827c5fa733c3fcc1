"""Conv-norm-act written once; activations by name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "sigmoid": nn.Sigmoid, "none": nn.Identity}


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
    ) -> None:
        pad = kernel // 2 if padding is None else padding
        conv = nn.Conv2d(w_in, w_out, kernel, stride, pad, groups=groups, bias=bias)
        if preact:
            layers = [nn.BatchNorm2d(w_in, eps)] if norm else []
            super().__init__(*layers, activation(act), conv)
        else:
            layers = [nn.BatchNorm2d(w_out, eps)] if norm else []
            super().__init__(conv, *layers, activation(act))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
