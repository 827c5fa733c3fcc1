"""MobileNetV2 (Sandler et al. 2018) and MobileNetV3 (Howard et al. 2019), as torchvision builds
them: inverted residual tables scaled by a width multiplier and rounded to multiples of 8."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from nas.families.base import Depths, FamilySpec, Widths
from nas.families.mbconv import (
    Expansions,
    Kernels,
    Multiplier,
    Strides,
    lists_match,
    make_divisible,
)
from nas.specs import (
    MAX_STAGES,
    ConvStage,
    DropRate,
    MBConvStage,
    NetworkSpec,
    NormEps,
    NormMomentum,
    StageSpec,
    Width,
)

V2_LISTS = ("expansions", "widths", "depths", "strides")
V3_LISTS = ("kernels", "expanded_widths", "widths", "se", "acts", "strides")


class MobileNetV2Spec(FamilySpec):
    """MobileNetV2: a 3x3/2 stem, stages of (expansion t, width c, depth n, stride s) with
    ReLU6 and 3x3 depthwise convs, a 1x1 head conv, dropout, the classifier.

    Widths are `make_divisible(c x width_mult, round_nearest)`; the head conv's is
    `make_divisible(head_width x max(1, width_mult), round_nearest)` (it never shrinks).
    """

    family: Literal["mobilenet_v2"] = "mobilenet_v2"
    expansions: Expansions = (1.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0)
    widths: Widths = (16, 24, 32, 64, 96, 160, 320)
    depths: Depths = (1, 2, 3, 4, 3, 3, 1)
    strides: Strides = (1, 2, 2, 2, 1, 2, 1)
    width_mult: Multiplier = 1.0
    round_nearest: Width = Field(default=8, description="1: no rounding")
    stem_width: Width = 32
    head_width: Width = 1280
    dropout: DropRate = 0.2

    @model_validator(mode="before")
    @classmethod
    def _lists_match(cls, data: object) -> object:
        return lists_match(cls, data, V2_LISTS)

    def lower(self) -> NetworkSpec:
        def rounded(width: float) -> int:
            return make_divisible(width, self.round_nearest)

        stages: list[StageSpec] = [ConvStage(
            width=rounded(self.stem_width * self.width_mult), stride=2, act="relu6")]
        for t, c, n, s in zip(self.expansions, self.widths, self.depths, self.strides,
                              strict=True):
            stages.append(MBConvStage(depth=n, width=rounded(c * self.width_mult), stride=s,
                                      expansion=t, act="relu6"))
        head = rounded(self.head_width * max(1.0, self.width_mult))
        stages.append(ConvStage(width=head, kernel=1, act="relu6"))
        return self.network(stages, pool="avg", classifier_dropout=self.dropout)


V3Act = Literal["relu", "hardswish"]


class MobileNetV3Spec(FamilySpec):
    """MobileNetV3: a 3x3/2 hard-swish stem, one inverted residual block per table row
    (kernel, expanded width, width, SE, activation, stride), a 1x1 head conv 6 x the last
    width, pooling, a hidden Linear with hard-swish and dropout, the classifier.

    Every width is `make_divisible(w x width_mult, 8)`; SE squeezes to
    `make_divisible(expanded // 4, 8)` with ReLU and a hard-sigmoid gate. The presets
    `mobilenet_v3_large` and `mobilenet_v3_small` hold torchvision's two tables.
    """

    family: Literal["mobilenet_v3"] = "mobilenet_v3"
    kernels: Kernels = Field(min_length=1)
    expanded_widths: Widths = Field(min_length=1)
    widths: Widths = Field(min_length=1)
    se: Annotated[tuple[bool, ...], Field(max_length=MAX_STAGES)] = Field(min_length=1)
    acts: Annotated[tuple[V3Act, ...], Field(max_length=MAX_STAGES)] = Field(min_length=1)
    strides: Strides = Field(min_length=1)
    width_mult: Multiplier = 1.0
    stem_width: Width = 16
    last_channel: Width = Field(default=1280, description="the hidden Linear's width")
    dropout: DropRate = 0.2
    norm_eps: NormEps = 0.001
    norm_momentum: NormMomentum = 0.01

    @model_validator(mode="before")
    @classmethod
    def _lists_match(cls, data: object) -> object:
        return lists_match(cls, data, V3_LISTS)

    def adjust(self, width: int) -> int:
        return make_divisible(width * self.width_mult, 8)

    def lower(self) -> NetworkSpec:
        norm = {"norm_eps": self.norm_eps, "norm_momentum": self.norm_momentum}
        stages: list[StageSpec] = [ConvStage(
            width=self.adjust(self.stem_width), stride=2, act="hardswish", **norm)]
        rows = zip(self.kernels, self.expanded_widths, self.widths, self.se, self.acts,
                   self.strides, strict=True)
        for kernel, expanded, width, se, act, stride in rows:
            wide = self.adjust(expanded)
            stages.append(MBConvStage(
                width=self.adjust(width), stride=stride, kernel=kernel, expanded_width=wide,
                se_width=make_divisible(wide // 4, 8) if se else None, act=act, se_act="relu",
                se_gate="hardsigmoid", **norm))
        head = 6 * self.adjust(self.widths[-1])
        stages.append(ConvStage(width=head, kernel=1, act="hardswish", **norm))
        return self.network(stages, pool="avg", hidden=(self.adjust(self.last_channel),),
                            act="hardswish", dropout=self.dropout)


__all__ = ["MobileNetV2Spec", "MobileNetV3Spec"]
