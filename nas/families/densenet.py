"""DenseNet: dense blocks joined by compressing transitions (DenseNet-BC with bottleneck)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt

from nas.families.base import FamilySpec, NonEmpty, StemKind, stem
from nas.specs import (
    MAX_STAGES,
    DenseStage,
    Layers,
    NetworkSpec,
    NormActStage,
    StageSpec,
    TransitionStage,
    Width,
)


class DenseNetSpec(FamilySpec):
    """DenseNet: growth rate, block sizes, initial channels, transition compression."""

    family: Literal["densenet"] = "densenet"
    growth_rate: Width = 32
    block_sizes: Annotated[tuple[Layers, ...], Field(max_length=MAX_STAGES)] = NonEmpty
    init_channels: Width = 64
    compression: float = Field(default=0.5, gt=0, le=1)
    bottleneck: bool = Field(default=True, description="DenseNet-BC: 1x1 conv before each 3x3")
    bn_size: PositiveInt = Field(default=4, description="bottleneck width = bn_size x growth_rate")
    stem: StemKind = "imagenet"
    conv_bias: bool = False

    def lower(self) -> NetworkSpec:
        stages: list[StageSpec] = list(stem(self.stem, self.init_channels, bias=self.conv_bias))
        channels = self.init_channels
        width = self.bn_size * self.growth_rate if self.bottleneck else None
        for i, depth in enumerate(self.block_sizes):
            stages.append(
                DenseStage(
                    depth=depth, growth_rate=self.growth_rate, bottleneck_width=width,
                    bias=self.conv_bias,
                )
            )
            channels += depth * self.growth_rate
            if i < len(self.block_sizes) - 1:
                channels = max(1, int(channels * self.compression))
                stages.append(TransitionStage(width=channels, bias=self.conv_bias))
        stages.append(NormActStage())
        return self.network(stages, pool="avg")
