"""One registered builder per stage kind: (in_channels, stage) -> (module, out_channels)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from nas.builder.blocks import DenseBlock, FusedMBConv, Inception, MBConv, ResidualBlock
from nas.builder.layers import ConvNormAct, activation
from nas.specs import (
    ConvStage,
    DenseStage,
    DropoutStage,
    FusedMBConvStage,
    InceptionStage,
    MBConvStage,
    MLPConvStage,
    NormActStage,
    PoolStage,
    ResidualStage,
    TransitionStage,
)

StageBuilder = Callable[[int, object], nn.Module]
STAGE_BUILDERS: dict[str, StageBuilder] = {}


def register(kind: str) -> Callable[[StageBuilder], StageBuilder]:
    """Registers the module builder of one stage kind."""

    def wrap(fn: StageBuilder) -> StageBuilder:
        STAGE_BUILDERS[kind] = fn
        return fn

    return wrap


@register("conv")
def _conv(w_in: int, s: ConvStage) -> nn.Module:
    layers = []
    for i in range(s.depth):
        layers.append(
            ConvNormAct(
                w_in if i == 0 else s.width, s.width, s.kernel, s.stride if i == 0 else 1,
                s.padding, s.groups, s.bias, s.norm, s.act, s.preact, s.norm_eps,
                s.norm_momentum,
            )
        )
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


@register("pool")
def _pool(w_in: int, s: PoolStage) -> nn.Module:
    pool = nn.MaxPool2d if s.mode == "max" else nn.AvgPool2d
    return pool(s.kernel, s.stride or s.kernel, s.padding, ceil_mode=s.ceil_mode)


@register("residual")
def _residual(w_in: int, s: ResidualStage) -> nn.Module:
    blocks = [ResidualBlock(w_in if i == 0 else s.width, s, s.stride if i == 0 else 1)
              for i in range(s.depth)]
    return nn.Sequential(*blocks)


@register("dense")
def _dense(w_in: int, s: DenseStage) -> nn.Module:
    return DenseBlock(w_in, s)


@register("transition")
def _transition(w_in: int, s: TransitionStage) -> nn.Module:
    return nn.Sequential(ConvNormAct(w_in, s.width, 1, bias=s.bias, preact=True), nn.AvgPool2d(2))


@register("inception")
def _inception(w_in: int, s: InceptionStage) -> nn.Module:
    return Inception(w_in, s)


@register("mlpconv")
def _mlpconv(w_in: int, s: MLPConvStage) -> nn.Module:
    return nn.Sequential(
        ConvNormAct(w_in, s.width, s.kernel, s.stride, s.padding, bias=True, norm=False),
        ConvNormAct(s.width, s.width, 1, bias=True, norm=False),
        ConvNormAct(s.width, s.width, 1, bias=True, norm=False),
    )


@register("norm_act")
def _norm_act(w_in: int, s: NormActStage) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(w_in), activation(s.act))


@register("dropout")
def _dropout(w_in: int, s: DropoutStage) -> nn.Module:
    return nn.Dropout(s.p)


@register("mbconv")
def _mbconv(w_in: int, s: MBConvStage) -> nn.Module:
    return nn.Sequential(*(MBConv(w_in if i == 0 else s.width, s, s.stride if i == 0 else 1,
                                  s.drop_rate(i)) for i in range(s.depth)))


@register("fused_mbconv")
def _fused_mbconv(w_in: int, s: FusedMBConvStage) -> nn.Module:
    return nn.Sequential(*(FusedMBConv(w_in if i == 0 else s.width, s, s.stride if i == 0 else 1,
                                       s.drop_rate(i)) for i in range(s.depth)))
