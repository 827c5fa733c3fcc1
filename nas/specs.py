"""The generic network description every family lowers to: stages then a head; pure pydantic."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from nas.hashing import content_hash

Activation = Literal["relu", "sigmoid", "none"]


class Frozen(BaseModel):
    """Base of every spec: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def added_field(default: Any, description: str, **constraints: Any) -> Any:
    """A field added after studies began to store content hashes.

    It is left out of dumps while it holds its default, so every network that does not use it
    keeps the hash (and the saved form) it had before the field existed.
    """
    return Field(
        default=default, description=description, exclude_if=lambda v: v == default, **constraints
    )


NormEps = Annotated[float, Field(gt=0, lt=1)]


def conv_out(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool = False) -> int:
    """Output size of a conv or pool along one axis (PyTorch's formula)."""
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class ConvStage(Frozen):
    """`depth` repeats of conv -> [norm] -> act (or norm -> act -> conv with `preact`)."""

    kind: Literal["conv"] = "conv"
    width: PositiveInt
    depth: PositiveInt = 1
    kernel: PositiveInt = 3
    stride: PositiveInt = 1
    padding: int | None = Field(default=None, ge=0, description="default: kernel // 2")
    groups: PositiveInt = 1
    bias: bool = False
    norm: bool = True
    act: Activation = "relu"
    preact: bool = False
    norm_eps: NormEps = added_field(1e-5, "batch norm epsilon (torchvision's GoogLeNet: 0.001)")

    def out_size(self, size: int) -> int:
        pad = self.kernel // 2 if self.padding is None else self.padding
        for i in range(self.depth):
            size = conv_out(size, self.kernel, self.stride if i == 0 else 1, pad)
        return size

    def out_channels(self, in_channels: int) -> int:
        return self.width


class PoolStage(Frozen):
    """Max or average pooling."""

    kind: Literal["pool"] = "pool"
    mode: Literal["max", "avg"] = "max"
    kernel: PositiveInt = 2
    stride: PositiveInt | None = Field(default=None, description="default: kernel")
    padding: int = Field(default=0, ge=0)
    ceil_mode: bool = added_field(
        False, "round the output size up, not down (torchvision's GoogLeNet pools)"
    )

    @model_validator(mode="after")
    def _padding_fits(self) -> PoolStage:
        if 2 * self.padding > self.kernel:  # PyTorch's pools refuse this only at forward time
            raise ValueError(
                f"pool padding {self.padding} is more than half the kernel {self.kernel}"
            )
        return self

    def out_size(self, size: int) -> int:
        return conv_out(
            size, self.kernel, self.stride or self.kernel, self.padding, self.ceil_mode
        )

    def out_channels(self, in_channels: int) -> int:
        return in_channels


class ResidualStage(Frozen):
    """`depth` residual blocks (basic or bottleneck); the first block carries the stride."""

    kind: Literal["residual"] = "residual"
    depth: PositiveInt
    width: PositiveInt
    stride: PositiveInt = 1
    block: Literal["basic", "bottleneck"] = "basic"
    bottleneck_ratio: float = Field(default=1.0, gt=0, le=8)
    group_width: PositiveInt | None = Field(default=None, description="None: one group")
    se_ratio: float = Field(default=0.0, ge=0, lt=1)
    bias: bool = False
    shortcut_norm: bool = True
    shortcut_first: bool = added_field(
        False,
        "register each block's shortcut before its branch, so the state_dict lists the "
        "projection first (torchvision's RegNet); outputs are the same either way",
    )

    @property
    def bottleneck_width(self) -> int:
        return max(1, int(round(self.width * self.bottleneck_ratio)))

    @property
    def groups(self) -> int:
        return 1 if self.group_width is None else self.bottleneck_width // self.group_width

    @model_validator(mode="after")
    def _groups_divide(self) -> ResidualStage:
        gw, wb = self.group_width, self.bottleneck_width
        if gw is not None and wb % gw:
            raise ValueError(
                f"bottleneck width {wb} (width {self.width} x ratio {self.bottleneck_ratio}) "
                f"is not divisible by group_width {gw}"
            )
        if self.block == "basic" and self.group_width is not None:
            raise ValueError("group_width needs block 'bottleneck'")
        return self

    def out_size(self, size: int) -> int:
        return conv_out(size, 3, self.stride, 1)

    def out_channels(self, in_channels: int) -> int:
        return self.width


class DenseStage(Frozen):
    """A dense block: `depth` pre-activation layers, each adding `growth_rate` channels."""

    kind: Literal["dense"] = "dense"
    depth: PositiveInt
    growth_rate: PositiveInt
    bottleneck_width: PositiveInt | None = Field(
        default=None, description="1x1 conv width before the 3x3 (DenseNet-BC); None: no 1x1"
    )
    bias: bool = False

    def out_size(self, size: int) -> int:
        return size

    def out_channels(self, in_channels: int) -> int:
        return in_channels + self.depth * self.growth_rate


class TransitionStage(Frozen):
    """DenseNet transition: norm -> act -> 1x1 conv to `width` -> 2x2 average pool."""

    kind: Literal["transition"] = "transition"
    width: PositiveInt
    bias: bool = False

    def out_size(self, size: int) -> int:
        return conv_out(size, 2, 2, 0)

    def out_channels(self, in_channels: int) -> int:
        return self.width


class InceptionStage(Frozen):
    """GoogLeNet inception block: 1x1 | 1x1->3x3 | 1x1->5x5 | 3x3 pool->1x1, concatenated."""

    kind: Literal["inception"] = "inception"
    c1: PositiveInt
    c2: tuple[PositiveInt, PositiveInt]
    c3: tuple[PositiveInt, PositiveInt]
    c4: PositiveInt
    bias: bool = True
    norm: bool = False
    c3_kernel: PositiveInt = added_field(
        5, "kernel of the third branch's second conv; odd (torchvision's GoogLeNet: 3)"
    )
    norm_eps: NormEps = added_field(1e-5, "batch norm epsilon (torchvision's GoogLeNet: 0.001)")

    @model_validator(mode="after")
    def _kernel_is_odd(self) -> InceptionStage:
        if self.c3_kernel % 2 == 0:  # an even kernel with padding k // 2 changes the size
            raise ValueError(f"c3_kernel {self.c3_kernel} must be odd to keep the size")
        return self

    def out_size(self, size: int) -> int:
        return size

    def out_channels(self, in_channels: int) -> int:
        return self.c1 + self.c2[1] + self.c3[1] + self.c4


class MLPConvStage(Frozen):
    """The mlpconv layer of Network in Network: a k x k conv then two 1x1 convs, each with ReLU."""

    kind: Literal["mlpconv"] = "mlpconv"
    width: PositiveInt
    kernel: PositiveInt
    stride: PositiveInt = 1
    padding: int = Field(default=0, ge=0)

    def out_size(self, size: int) -> int:
        return conv_out(size, self.kernel, self.stride, self.padding)

    def out_channels(self, in_channels: int) -> int:
        return self.width


class NormActStage(Frozen):
    """Batch norm then activation (DenseNet's final norm)."""

    kind: Literal["norm_act"] = "norm_act"
    act: Activation = "relu"

    def out_size(self, size: int) -> int:
        return size

    def out_channels(self, in_channels: int) -> int:
        return in_channels


class DropoutStage(Frozen):
    """Dropout between stages (NiN)."""

    kind: Literal["dropout"] = "dropout"
    p: float = Field(default=0.5, ge=0, lt=1)

    def out_size(self, size: int) -> int:
        return size

    def out_channels(self, in_channels: int) -> int:
        return in_channels


StageSpec = Annotated[
    ConvStage | PoolStage | ResidualStage | DenseStage | TransitionStage
    | InceptionStage | MLPConvStage | NormActStage | DropoutStage,
    Field(discriminator="kind"),
]


class HeadSpec(Frozen):
    """Pool, flatten, then hidden Linear -> [BN1d] -> act -> [dropout] layers and the classifier."""

    pool: Literal["avg", "flatten"] | PositiveInt = Field(
        default="avg",
        description="'avg': global average pool; 'flatten': flatten as is; N: adaptive avg to NxN",
    )
    hidden: tuple[PositiveInt, ...] = ()
    norm: bool = False
    act: Activation = "relu"
    dropout: float = Field(default=0.0, ge=0, lt=1)
    linear: bool = Field(default=True, description="False: the last stage's channels are logits")
    dropout_before: bool = added_field(
        False,
        "hidden layers as dropout -> Linear -> act (torchvision's AlexNet) instead of "
        "Linear -> act -> dropout",
    )
    classifier_dropout: float = added_field(
        0.0, "dropout on the classifier's input (torchvision's GoogLeNet: 0.2)", ge=0, lt=1
    )

    @model_validator(mode="after")
    def _classifier_dropout_needs_a_classifier(self) -> HeadSpec:
        if self.classifier_dropout > 0 and not self.linear:
            raise ValueError("classifier_dropout needs a classifier (linear: true)")
        return self


class NetworkSpec(Frozen):
    """A whole network: input, stages in order, head."""

    in_channels: PositiveInt = 3
    num_classes: PositiveInt = 1000
    input_size: PositiveInt = 224
    stages: tuple[StageSpec, ...] = Field(min_length=1)
    head: HeadSpec = HeadSpec()

    @model_validator(mode="after")
    def _shapes_hold(self) -> NetworkSpec:
        self.trace()
        return self

    def trace(self) -> list[tuple[int, int]]:
        """(channels, size) after each stage; raises ValueError naming where size collapses."""
        channels, size, out = self.in_channels, self.input_size, []
        for index, stage in enumerate(self.stages):
            check_stage(stage, channels, index)
            new = stage.out_size(size)
            if new < 1:
                raise ValueError(
                    f"stage {index} ({stage.kind}) gets a {size}x{size} input and its output "
                    f"collapses to {new}x{new}: input_size {self.input_size} is too small"
                )
            channels, size = stage.out_channels(channels), new
            out.append((channels, size))
        if not self.head.linear and channels != self.num_classes:
            raise ValueError(
                f"head.linear is false, so the last stage must give num_classes="
                f"{self.num_classes} channels, not {channels}"
            )
        return out

    def content_hash(self) -> str:
        """Stable hash of the architecture: canonical JSON of every field, defaults included."""
        return content_hash(self.model_dump(mode="json"))


def check_stage(stage: BaseModel, in_channels: int, index: int) -> None:
    """Checks that need the incoming channel count (group divisibility)."""
    groups = getattr(stage, "groups", 1)
    if isinstance(stage, ConvStage) and (in_channels % groups or stage.width % groups):
        raise ValueError(
            f"stage {index} (conv): channels {in_channels}->{stage.width} "
            f"are not divisible by groups={groups}"
        )
