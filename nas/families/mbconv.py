"""MBConv networks: a stem, stages of inverted residual blocks, a 1x1 head conv, a classifier.

The generic family of MobileNetV2's and EfficientNet's blocks as data: per stage a block kind
(MBConv or EfficientNetV2's fused MBConv), depth, width, stride, kernel, expansion, SE ratio and
activation; width and depth multipliers rounded as EfficientNet rounds them (widths to a
multiple of `divisor` by `make_divisible`, depths up). EfficientNet is this family with B0's
table as defaults (nas/families/efficientnet.py); `nas scale` multiplies its multipliers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, model_validator

from nas.families.base import Depths, FamilySpec, NonEmpty, Widths, same_length
from nas.specs import (
    MAX_STAGES,
    Activation,
    ConvStage,
    DropRate,
    Expansion,
    FusedMBConvStage,
    Gate,
    Kernel,
    MBConvStage,
    NetworkSpec,
    NormEps,
    NormMomentum,
    OddKernel,
    SERatio,
    StageSpec,
    Width,
)

BlockKind = Literal["mbconv", "fused"]
BLOCK_STAGES: dict[str, type[MBConvStage]] = {"mbconv": MBConvStage, "fused": FusedMBConvStage}
Multiplier = Annotated[float, Field(gt=0, le=64)]
PER_STAGE = ("depths", "widths", "expansions", "kernels", "strides", "se_ratios", "blocks", "acts")


# One value per stage, at most MAX_STAGES of them.
Expansions = Annotated[tuple[Expansion, ...], Field(max_length=MAX_STAGES)]
Kernels = Annotated[tuple[OddKernel, ...], Field(max_length=MAX_STAGES)]
Strides = Annotated[tuple[Kernel, ...], Field(max_length=MAX_STAGES)]
SERatios = Annotated[tuple[SERatio, ...], Field(max_length=MAX_STAGES)]
Blocks = Annotated[tuple[BlockKind, ...], Field(max_length=MAX_STAGES)]
Activations = Annotated[tuple[Activation, ...], Field(max_length=MAX_STAGES)]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """The nearest multiple of `divisor` to `value`, at least `min_value` (default: divisor)
    and never more than 10% below `value` (torchvision's `_make_divisible`, from TensorFlow's
    MobileNet). MnasNet's `_round_to_multiple_of` with its 0.9 bias is the same rule."""
    low = divisor if min_value is None else min_value
    rounded = max(low, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def block_rates(depths: list[int], rate: float) -> list[tuple[float, ...]]:
    """Per stage, each block's stochastic-depth probability: `rate` x the block's index in the
    network / the number of blocks (torchvision's EfficientNet); () everywhere for rate 0."""
    if rate == 0:
        return [() for _ in depths]
    total, out, start = sum(depths), [], 0
    for depth in depths:
        out.append(tuple(rate * float(start + j) / total for j in range(depth)))
        start += depth
    return out


def lists_match(family: type[FamilySpec], data: object, names: tuple[str, ...]) -> object:
    """Raises when the per-stage lists of `data` (given, or else the family's defaults)
    differ in length."""
    if isinstance(data, dict):
        values = {k: data[k] if k in data else family.model_fields[k].default for k in names}
        # other types are left to field validation, which names the field
        lists = {k: tuple(v) for k, v in values.items() if isinstance(v, (list, tuple))}
        if len(lists) > 1:
            same_length(**lists)
    return data


class MBConvNetSpec(FamilySpec):
    """A generic MBConv network: stem conv, one stage per entry of the per-stage lists, a 1x1
    head conv, global pooling, dropout and the classifier.

    `blocks` (default: all `mbconv`) and `acts` (default: `act` everywhere) are optional
    per-stage lists; `se_ratios` 0 means no squeeze-and-excitation in that stage. Widths
    (stem, stages, head) are `make_divisible(width x width_mult, divisor)`, depths
    `ceil(depth x depth_mult)`.
    """

    family: Literal["mbconv"] = "mbconv"
    depths: Depths = NonEmpty
    widths: Widths = NonEmpty
    expansions: Expansions = NonEmpty
    kernels: Kernels = NonEmpty
    strides: Strides = NonEmpty
    se_ratios: SERatios = NonEmpty
    blocks: Blocks | None = Field(
        default=None, description="mbconv or fused per stage; None: all mbconv")
    acts: Activations | None = Field(
        default=None, description="activation per stage; None: `act` everywhere")
    act: Activation = Field(default="silu", description="stem and head (and stages by default)")
    se_act: Activation | None = Field(
        default=None, description="inside squeeze-and-excitation; None: the stage's activation")
    se_gate: Gate = "sigmoid"
    stem_width: Width = 32
    stem_stride: Kernel = Field(default=2, description="1 keeps small images' resolution")
    head_width: Width | None = Field(
        default=None, description="the 1x1 conv before pooling; None: 4 x the last stage's "
        "width (EfficientNet-B)")
    width_mult: Multiplier = 1.0
    depth_mult: Multiplier = 1.0
    divisor: Width = Field(default=8, description="widths are rounded to multiples of this")
    dropout: DropRate = Field(default=0.2, description="before the classifier")
    stochastic_depth: DropRate = Field(
        default=0.0, description="the last block's rate; block i of n drops with rate x i / n")
    norm_eps: NormEps = 1e-5
    norm_momentum: NormMomentum = 0.1

    @model_validator(mode="before")
    @classmethod
    def _lists_match(cls, data: object) -> object:
        return lists_match(cls, data, PER_STAGE)

    def scaled_width(self, width: int) -> int:
        """A width after the width multiplier and the rounding."""
        return make_divisible(width * self.width_mult, self.divisor)

    def scaled_depths(self) -> list[int]:
        return [int(math.ceil(depth * self.depth_mult)) for depth in self.depths]

    def stage_rows(self) -> Iterator[tuple[str, int, int, int, int, float, float, str]]:
        """(block, depth, width, stride, kernel, expansion, se_ratio, act) per stage."""
        n = len(self.depths)
        return zip(self.blocks or ("mbconv",) * n, self.scaled_depths(),
                   [self.scaled_width(w) for w in self.widths], self.strides, self.kernels,
                   self.expansions, self.se_ratios, self.acts or (self.act,) * n, strict=True)

    def lower(self) -> NetworkSpec:
        norm = {"norm_eps": self.norm_eps, "norm_momentum": self.norm_momentum}
        stages: list[StageSpec] = [ConvStage(
            width=self.scaled_width(self.stem_width), kernel=3, stride=self.stem_stride,
            act=self.act, **norm)]
        rates = block_rates(self.scaled_depths(), self.stochastic_depth)
        for (block, depth, width, stride, kernel, expansion, se, act), rate in zip(
                self.stage_rows(), rates):
            stages.append(BLOCK_STAGES[block](
                depth=depth, width=width, stride=stride, kernel=kernel, expansion=expansion,
                se_ratio=se, act=act, se_act=self.se_act or act, se_gate=self.se_gate,
                stochastic_depth=rate, **norm))
        last = stages[-1].width  # type: ignore[union-attr]
        head = 4 * last if self.head_width is None else self.scaled_width(self.head_width)
        stages.append(ConvStage(width=head, kernel=1, act=self.act, **norm))
        return self.network(stages, pool="avg", classifier_dropout=self.dropout)
