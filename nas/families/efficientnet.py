"""EfficientNet (Tan & Le 2019) and EfficientNetV2 (Tan & Le 2021): the MBConv family with
B0's table as its base spec, scaled by width, depth and resolution multipliers.

B1..B7 are B0 with torchvision's published (width_mult, depth_mult, input_size) triples (see
the presets); `nas scale` applies the paper's compound rule instead. The V2 presets give their
own tables (fused MBConv stages first, a 1280-wide head).
"""

from __future__ import annotations

from typing import Literal

from nas.families.base import Depths, Widths
from nas.families.mbconv import (
    Expansions,
    Kernels,
    MBConvNetSpec,
    SERatios,
    Strides,
)
from nas.specs import Activation, DropRate


class EfficientNetSpec(MBConvNetSpec):
    """EfficientNet: by default B0 (SiLU, SE 0.25 of each block's input, stochastic depth 0.2,
    head 4 x the last width); B1..B7 and V2 change multipliers, tables, dropout and norms."""

    family: Literal["efficientnet"] = "efficientnet"  # type: ignore[assignment]
    depths: Depths = (1, 2, 2, 3, 3, 4, 1)
    widths: Widths = (16, 24, 40, 80, 112, 192, 320)
    expansions: Expansions = (1.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0)
    kernels: Kernels = (3, 3, 5, 3, 5, 5, 3)
    strides: Strides = (1, 2, 2, 2, 1, 2, 1)
    se_ratios: SERatios = (0.25,) * 7
    act: Activation = "silu"
    stochastic_depth: DropRate = 0.2
