"""AnyNet (Radosavovic et al. 2020): free per-stage depth, width, bottleneck ratio, group width."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from nas.families.base import Depths, FamilySpec, NonEmpty, StemKind, Widths, same_length, stem
from nas.specs import MAX_STAGES, Kernel, NetworkSpec, ResidualStage, Width

Ratio = Annotated[float, Field(gt=0, le=8)]
PER_STAGE = ("depths", "widths", "bottleneck_ratios", "group_widths")


class AnyNetSpec(FamilySpec):
    """AnyNetX: a stem, stages of residual bottleneck blocks with grouped 3x3 convs, a head.

    Stage i has `depths[i]` blocks of output width `widths[i]`, bottleneck width
    `widths[i] x bottleneck_ratios[i]` and 3x3 groups of `group_widths[i]` channels each.
    The ratios are multipliers, as `ResidualStage` takes them: the paper's divisors
    b = 1, 2, 4 are ratios 1, 0.5, 0.25. Each stage's first block has stride 2 (pycls);
    `first_stride` 1 keeps the first stage at the stem's resolution, which a 28x28 input
    needs for four stages to keep more than 1x1 pixels (simple stem 14, then 14, 7, 4, 2).
    """

    family: Literal["anynet"] = "anynet"
    depths: Depths = NonEmpty
    widths: Widths = NonEmpty
    bottleneck_ratios: Annotated[tuple[Ratio, ...], Field(max_length=MAX_STAGES)] = NonEmpty
    group_widths: Widths = NonEmpty
    se_ratio: float = Field(default=0.0, ge=0, lt=1, description="AnyNetY: 0.25")
    stem: StemKind = Field(default="simple", description="simple: 3x3/2 conv (the paper's)")
    stem_width: Width = 32
    first_stride: Kernel = Field(
        default=2, description="stride of the first stage; the later ones have stride 2"
    )

    @model_validator(mode="before")
    @classmethod
    def _lists_match(cls, data: object) -> object:
        lists = isinstance(data, dict) and all(
            isinstance(data.get(k), (list, tuple)) for k in PER_STAGE
        )  # other types are left to field validation, which names the field
        if lists:
            same_length(**{k: tuple(data[k]) for k in PER_STAGE})
        return data

    def lower(self) -> NetworkSpec:
        stages = stem(self.stem, self.stem_width)
        per_stage = zip(self.depths, self.widths, self.bottleneck_ratios, self.group_widths)
        for i, (depth, width, ratio, group_width) in enumerate(per_stage):
            stages.append(
                ResidualStage(
                    depth=depth, width=width, stride=self.first_stride if i == 0 else 2,
                    block="bottleneck", bottleneck_ratio=ratio, group_width=group_width,
                    se_ratio=self.se_ratio, shortcut_first=True,  # pycls's block order
                )
            )
        return self.network(stages, pool="avg")
