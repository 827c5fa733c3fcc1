"""The classic networks: LeNet (with BN), AlexNet, NiN and GoogLeNet, as in the book by default.

AlexNet and GoogLeNet also take the fields that make them torchvision's (see the presets).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from nas.families.base import FamilySpec
from nas.specs import (
    MAX_STAGES,
    ConvStage,
    DropoutStage,
    Frozen,
    InceptionStage,
    Kernel,
    MLPConvStage,
    NetworkSpec,
    Padding,
    Pixels,
    PoolStage,
    StageSpec,
    Units,
    Width,
)

Hidden = Annotated[tuple[Units, ...], Field(max_length=MAX_STAGES)]


class LeNetSpec(FamilySpec):
    """LeNet-5: two 5x5 conv + pool layers, then fully connected layers; BN optional."""

    family: Literal["lenet"] = "lenet"
    input_size: Pixels = 28
    widths: tuple[Width, ...] = Field(default=(6, 16), min_length=1, max_length=MAX_STAGES)
    kernel: Kernel = 5
    hidden: Hidden = (120, 84)
    act: Literal["sigmoid", "relu"] = "sigmoid"
    batch_norm: bool = True
    pool: Literal["avg", "max"] = "avg"
    conv_bias: bool = True

    def lower(self) -> NetworkSpec:
        stages: list[StageSpec] = []
        for width in self.widths:
            stages.append(
                ConvStage(
                    width=width, kernel=self.kernel, padding=0, bias=self.conv_bias,
                    norm=self.batch_norm, act=self.act,
                )
            )
            stages.append(PoolStage(mode=self.pool, kernel=2))
        return self.network(
            stages, pool="flatten", hidden=self.hidden, norm=self.batch_norm, act=self.act
        )


class AlexNetSpec(FamilySpec):
    """AlexNet: five convs (11x11/4, 5x5, 3x3 x3), three max-pools, 2 FC layers (the book's)."""

    family: Literal["alexnet"] = "alexnet"
    widths: tuple[Width, Width, Width, Width, Width] = (
        96, 256, 384, 384, 256,
    )
    hidden: Hidden = (4096, 4096)
    dropout: float = Field(default=0.5, ge=0, lt=1)
    batch_norm: bool = False
    first_padding: int = Field(
        default=1, ge=0, le=5, description="padding of the 11x11/4 conv (torchvision: 2)"
    )
    pool_size: Pixels | None = Field(
        default=None, description="adaptive average pool to NxN before the fc head (torchvision: 6)"
    )
    dropout_before: bool = Field(
        default=False,
        description="dropout before each hidden Linear (torchvision) instead of after its ReLU",
    )

    def lower(self) -> NetworkSpec:
        w, bn = self.widths, self.batch_norm
        pool = PoolStage(mode="max", kernel=3, stride=2)
        stages: list[StageSpec] = [
            ConvStage(
                width=w[0], kernel=11, stride=4, padding=self.first_padding, bias=True, norm=bn
            ),
            pool,
            ConvStage(width=w[1], kernel=5, padding=2, bias=True, norm=bn),
            pool,
            *(ConvStage(width=c, kernel=3, bias=True, norm=bn) for c in w[2:]),
            pool,
        ]
        before = self.dropout_before and self.dropout > 0  # else the same network: same hash
        return self.network(
            stages, pool=self.pool_size or "flatten", hidden=self.hidden, dropout=self.dropout,
            dropout_before=before,
        )


class NiNSpec(FamilySpec):
    """Network in Network: mlpconv blocks (width, kernel, stride, padding), max-pools between."""

    family: Literal["nin"] = "nin"
    blocks: tuple[tuple[Width, Kernel, Kernel, Padding], ...] = Field(
        default=((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1)), min_length=1,
        max_length=MAX_STAGES,
    )
    dropout: float = Field(default=0.5, ge=0, lt=1)

    def lower(self) -> NetworkSpec:
        stages: list[StageSpec] = []
        for width, kernel, stride, padding in self.blocks:
            stages.append(
                MLPConvStage(width=width, kernel=kernel, stride=stride, padding=padding)
            )
            stages.append(PoolStage(mode="max", kernel=3, stride=2))
        stages.append(DropoutStage(p=self.dropout))
        stages.append(MLPConvStage(width=self.num_classes, kernel=3, padding=1))
        return self.network(stages, pool="avg", linear=False)


class InceptionWidths(Frozen):
    """Branch widths of one inception block: c1, (c2 reduce, c2), (c3 reduce, c3), c4."""

    c1: Width
    c2: tuple[Width, Width]
    c3: tuple[Width, Width]
    c4: Width


BOOK_INCEPTION = (
    ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64)),
    (
        (192, (96, 208), (16, 48), 64),
        (160, (112, 224), (24, 64), 64),
        (128, (128, 256), (24, 64), 64),
        (112, (144, 288), (32, 64), 64),
        (256, (160, 320), (32, 128), 128),
    ),
    ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)),
)


class GoogLeNetSpec(FamilySpec):
    """GoogLeNet: a conv stem, groups of inception blocks with max-pools between.

    The defaults are the book's network; torchvision's is `batch_norm: true, conv_bias: false,
    norm_eps: 0.001, c3_kernel: 3, pool_style: torchvision, dropout: 0.2` at 224x224.
    """

    family: Literal["googlenet"] = "googlenet"
    input_size: Pixels = 96
    stem_widths: tuple[Width, Width, Width] = (64, 64, 192)
    groups: tuple[tuple[InceptionWidths, ...], ...] = Field(
        default=tuple(
            tuple(InceptionWidths(c1=a, c2=b, c3=c, c4=d) for a, b, c, d in g)
            for g in BOOK_INCEPTION
        ),
        min_length=1,
    )
    batch_norm: bool = False
    conv_bias: bool = Field(default=True, description="biases on every conv (torchvision: none)")
    norm_eps: float = Field(
        default=1e-5, gt=0, lt=1, description="batch norm epsilon (torchvision: 0.001)"
    )
    c3_kernel: Literal[3, 5] = Field(
        default=5,
        description="kernel of the third branch's second conv: 5 as in the paper; torchvision "
        "keeps a historical 3",
    )
    pool_style: Literal["book", "torchvision"] = Field(
        default="book",
        description="book: 3x3/2 max-pools with padding 1; torchvision: 3x3/2 max-pools with "
        "ceil_mode, except 2x2/2 before the last group",
    )
    dropout: float = Field(
        default=0.0, ge=0, lt=1, description="dropout before the classifier (torchvision: 0.2)"
    )

    def pool(self, last: bool = False) -> PoolStage:
        """The max-pool between stem parts and groups (`last`: the one before the last group)."""
        if self.pool_style == "book":
            return PoolStage(mode="max", kernel=3, stride=2, padding=1)
        return PoolStage(mode="max", kernel=2 if last else 3, stride=2, ceil_mode=True)

    def lower(self) -> NetworkSpec:
        s = self.stem_widths
        conv: dict[str, object] = {"bias": self.conv_bias, "norm": self.batch_norm}
        if self.batch_norm:  # without norms the epsilon is unused: left out of the hash
            conv["norm_eps"] = self.norm_eps
        stages: list[StageSpec] = [
            ConvStage(width=s[0], kernel=7, stride=2, padding=3, **conv),
            self.pool(),
            ConvStage(width=s[1], kernel=1, **conv),
            ConvStage(width=s[2], kernel=3, **conv),
            self.pool(),
        ]
        for i, group in enumerate(self.groups):
            for b in group:
                stages.append(
                    InceptionStage(
                        c1=b.c1, c2=b.c2, c3=b.c3, c4=b.c4, c3_kernel=self.c3_kernel, **conv
                    )
                )
            if i < len(self.groups) - 1:
                stages.append(self.pool(last=i == len(self.groups) - 2))
        return self.network(stages, pool="avg", classifier_dropout=self.dropout)
