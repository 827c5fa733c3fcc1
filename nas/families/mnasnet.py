"""MnasNet-B1 (Tan et al. 2019), as torchvision builds it: every width scaled by `alpha` and
rounded up to a multiple of 8 unless that is over 10% above (`_round_to_multiple_of`)."""

from __future__ import annotations

from typing import Literal

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
from nas.specs import ConvStage, DropRate, MBConvStage, NetworkSpec, NormMomentum, StageSpec, Width

PER_STAGE = ("expansions", "kernels", "depths", "widths", "strides")


class MnasNetSpec(FamilySpec):
    """MnasNet: a 3x3/2 stem, a depthwise-separable block, stages of ReLU inverted residuals
    (no SE), a 1280-wide 1x1 head conv (not scaled), dropout, the classifier."""

    family: Literal["mnasnet"] = "mnasnet"
    alpha: Multiplier = Field(default=1.0, description="width multiplier (mnasnet0_5: 0.5)")
    stem_width: Width = 32
    separable_width: Width = Field(default=16, description="output of the first depthwise-"
                                   "separable block")
    expansions: Expansions = (3.0, 3.0, 6.0, 6.0, 6.0, 6.0)
    kernels: Kernels = (3, 5, 5, 3, 5, 3)
    depths: Depths = (3, 3, 3, 2, 4, 1)
    widths: Widths = (24, 40, 80, 96, 192, 320)
    strides: Strides = (2, 2, 2, 1, 2, 1)
    head_width: Width = 1280
    dropout: DropRate = 0.2
    norm_momentum: NormMomentum = Field(default=1 - 0.9997, description="TensorFlow's decay "
                                        "0.9997 (torchvision's _BN_MOMENTUM)")

    @model_validator(mode="before")
    @classmethod
    def _lists_match(cls, data: object) -> object:
        return lists_match(cls, data, PER_STAGE)

    def lower(self) -> NetworkSpec:
        def scaled(width: int) -> int:
            return make_divisible(width * self.alpha, 8)

        momentum = {"norm_momentum": self.norm_momentum}
        stages: list[StageSpec] = [
            ConvStage(width=scaled(self.stem_width), stride=2, **momentum),
            # torchvision's stem ends in a depthwise 3x3 and a 1x1 projection, never residual
            MBConvStage(width=scaled(self.separable_width), expansion=1.0, act="relu",
                        residual=False, **momentum),
        ]
        rows = zip(self.expansions, self.kernels, self.depths, self.widths, self.strides,
                   strict=True)
        for t, k, n, c, s in rows:
            stages.append(MBConvStage(depth=n, width=scaled(c), stride=s, kernel=k, expansion=t,
                                      act="relu", **momentum))
        stages.append(ConvStage(width=self.head_width, kernel=1, **momentum))
        return self.network(stages, pool="avg", classifier_dropout=self.dropout)
