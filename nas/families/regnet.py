"""RegNet design space (Radosavovic et al. 2020): widths from a quantised linear rule."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, PositiveInt

from nas.families.base import FamilySpec, StemKind, stem
from nas.specs import Kernel, NetworkSpec, ResidualStage, Width, added_field


def regnet_stages(
    depth: int, w0: int, wa: float, wm: float, group_width: int, ratio: float, q: int = 8
) -> list[tuple[int, int, int]]:
    """(depth, width, group_width) per stage: the quantised linear rule of pycls/torchvision."""
    widths = []
    for j in range(depth):
        exponent = round(math.log((w0 + wa * j) / w0) / math.log(wm))
        widths.append(int(round(w0 * wm**exponent / q)) * q)
    runs: list[list[int]] = []
    for w in widths:
        if runs and runs[-1][0] == w:
            runs[-1][1] += 1
        else:
            runs.append([w, 1])
    out = []
    for w, d in runs:  # group compatibility as torchvision's _adjust_widths_groups_compatibilty
        wb = int(w * ratio)
        if wb < 1:
            raise ValueError(f"stage width {w} x bottleneck_ratio {ratio} is below one channel")
        gw = min(group_width, wb)
        fitted = max(gw, int(wb + gw / 2) // gw * gw)
        fitted += gw if fitted < 0.9 * wb else 0
        out.append((d, int(fitted / ratio), gw))
    return out


class RegNetSpec(FamilySpec):
    """RegNetX (se_ratio 0) or RegNetY (se_ratio 0.25): depth, w0, wa, wm, group width."""

    family: Literal["regnet"] = "regnet"
    depth: PositiveInt = Field(le=64)
    w0: Width = Field(ge=8)
    wa: float = Field(gt=0, le=256, description="slope; the RegNet paper samples 0 < wa < 256")
    wm: float = Field(gt=1, le=4)
    group_width: Width
    bottleneck_ratio: float = Field(default=1.0, gt=0, le=8)
    se_ratio: float = Field(default=0.0, ge=0, lt=1)
    stem: StemKind = Field(default="simple", description="simple: 3x3/2 (RegNet's own)")
    stem_width: Width = 32
    first_stride: Kernel = added_field(
        2, "stride of the first stage (the later ones have 2); 1 keeps a small input's size, "
        "as AnyNet's first_stride"
    )

    def lower(self) -> NetworkSpec:
        stages = stem(self.stem, self.stem_width)
        plan = regnet_stages(
            self.depth, self.w0, self.wa, self.wm, self.group_width, self.bottleneck_ratio
        )
        for i, (d, w, gw) in enumerate(plan):
            stages.append(
                ResidualStage(
                    depth=d, width=w, stride=self.first_stride if i == 0 else 2,
                    block="bottleneck",
                    bottleneck_ratio=self.bottleneck_ratio, group_width=gw, se_ratio=self.se_ratio,
                    shortcut_first=True,  # pycls's and torchvision's layout: `proj` before `f`
                )
            )
        return self.network(stages, pool="avg")
