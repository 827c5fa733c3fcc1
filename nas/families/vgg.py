"""VGG: blocks of 3x3 convs then a 2x2 max-pool, and the 4096-4096 head (or global pooling)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nas.families.base import FamilySpec
from nas.specs import MAX_STAGES, ConvStage, Layers, NetworkSpec, Pixels, PoolStage, Units, Width


class VGGSpec(FamilySpec):
    """VGG as in the book: `conv_arch` is ((num_convs, channels), ...)."""

    family: Literal["vgg"] = "vgg"
    conv_arch: tuple[tuple[Layers, Width], ...] = Field(min_length=1, max_length=MAX_STAGES)
    batch_norm: bool = False
    conv_bias: bool = True
    head: Literal["fc", "gap"] = "fc"
    hidden: tuple[Units, ...] = Field(default=(4096, 4096), max_length=MAX_STAGES)
    dropout: float = Field(default=0.5, ge=0, lt=1)
    pool_size: Pixels | None = Field(
        default=None, description="adaptive average pool to NxN before the fc head (torchvision: 7)"
    )

    @classmethod
    def from_sample(cls, values: dict[str, object]) -> dict[str, object]:
        """Per-stage `num_convs` and `channels` make `conv_arch`."""
        out = dict(values)
        if "num_convs" in out and "channels" in out:
            pairs = zip(out.pop("num_convs"), out.pop("channels"))  # type: ignore[call-overload]
            out["conv_arch"] = [list(p) for p in pairs]
        return out

    def lower(self) -> NetworkSpec:
        stages = []
        for num_convs, channels in self.conv_arch:
            conv = ConvStage(width=channels, depth=num_convs, bias=self.conv_bias,
                             norm=self.batch_norm)
            stages.append(conv)
            stages.append(PoolStage(mode="max", kernel=2))
        if self.head == "gap":
            return self.network(stages, pool="avg", dropout=self.dropout)
        return self.network(
            stages, pool=self.pool_size or "flatten", hidden=self.hidden, dropout=self.dropout
        )
