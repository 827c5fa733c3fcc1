"""ResNet and ResNeXt: residual stages of basic or (grouped) bottleneck blocks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from nas.families.base import Depths, FamilySpec, NonEmpty, StemKind, Widths, same_length, stem
from nas.specs import NetworkSpec, ResidualStage, Width


class ResNetSpec(FamilySpec):
    """ResNet: per-stage depths and output widths; stages after the first halve the size."""

    family: Literal["resnet"] = "resnet"
    depths: Depths = NonEmpty
    widths: Widths = NonEmpty
    block: Literal["basic", "bottleneck"] = "basic"
    bottleneck_ratio: float = Field(default=0.25, gt=0, le=8, description="bottleneck only")
    stem: StemKind = "imagenet"
    stem_width: Width = 64
    conv_bias: bool = Field(default=False, description="the book's convs have biases")
    shortcut_norm: bool = Field(default=True, description="BN after the 1x1 projection")

    @model_validator(mode="before")
    @classmethod
    def _lists_match(cls, data: object) -> object:
        if isinstance(data, dict) and all(
            isinstance(data.get(k), (list, tuple)) for k in ("depths", "widths")
        ):  # other types are left to field validation, which names the field
            same_length(depths=tuple(data["depths"]), widths=tuple(data["widths"]))
        return data

    def group_widths(self) -> list[int | None]:
        return [None] * len(self.depths)

    def lower(self) -> NetworkSpec:
        ratio = self.bottleneck_ratio if self.block == "bottleneck" else 1.0
        stages = stem(self.stem, self.stem_width, bias=self.conv_bias)
        for i, (depth, width, gw) in enumerate(zip(self.depths, self.widths, self.group_widths())):
            stages.append(
                ResidualStage(
                    depth=depth,
                    width=width,
                    stride=1 if i == 0 else 2,
                    block=self.block,
                    bottleneck_ratio=ratio,
                    group_width=gw,
                    bias=self.conv_bias,
                    shortcut_norm=self.shortcut_norm,
                )
            )
        return self.network(stages, pool="avg")


class ResNeXtSpec(ResNetSpec):
    """ResNeXt: bottleneck blocks with grouped 3x3 convs, by cardinality or by group width.

    `cardinality` fixes the number of groups in every stage (torchvision's 32x4d);
    `group_width` fixes the channels per group (the book's `ResNeXtBlock(groups=...)`, RegNet).
    """

    family: Literal["resnext"] = "resnext"  # type: ignore[assignment]
    block: Literal["bottleneck"] = "bottleneck"
    bottleneck_ratio: float = Field(default=0.5, gt=0, le=8)
    cardinality: Width | None = None
    group_width: Width | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_grouping(cls, data: object) -> object:
        if isinstance(data, dict):
            given = [k for k in ("cardinality", "group_width") if data.get(k) is not None]
            if len(given) != 1:
                raise ValueError("give exactly one of cardinality or group_width")
        return data

    @classmethod
    def from_sample(cls, values: dict[str, object]) -> dict[str, object]:
        """Per-stage `groups` and a `group_width` give the widths, valid by construction."""
        out = dict(values)
        groups = out.pop("groups", None)
        if groups is not None:
            gw, ratio = out["group_width"], float(out.get("bottleneck_ratio", 0.5))  # type: ignore[arg-type]
            out["widths"] = [int(round(g * gw / ratio)) for g in groups]  # type: ignore[union-attr,operator]
        return out

    def group_widths(self) -> list[int | None]:
        if self.group_width is not None:
            return [self.group_width] * len(self.depths)
        out = []
        for i, width in enumerate(self.widths):
            bottleneck = max(1, int(round(width * self.bottleneck_ratio)))
            if bottleneck % self.cardinality:  # type: ignore[operator]
                raise ValueError(
                    f"stage {i}: bottleneck width {bottleneck} is not divisible by "
                    f"cardinality {self.cardinality}"
                )
            out.append(bottleneck // self.cardinality)  # type: ignore[operator]
        return out
