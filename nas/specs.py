"""The generic network description every family lowers to: stages then a head; pure pydantic."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from nas.hashing import content_hash

Activation = Literal["relu", "relu6", "hardswish", "silu", "sigmoid", "none"]
Gate = Literal["sigmoid", "hardsigmoid"]  # squeeze-and-excitation gates

# Upper bounds on sizes. Each is far above what real networks use (the largest shipped preset
# value in brackets: torchvision's CNNs up to regnet_y_128gf at 384 px, the book's networks) and
# low enough that any spec within them is checked from the spec alone, and costed on the meta
# device, without allocating: an absurd value is refused at validation, with the bound.
MAX_WIDTH = 16_384  # channels of any layer, widths, growth rates, hidden units [7,392]
MAX_DEPTH = 1_024  # blocks or layers in one stage [48; ResNet-1202 on CIFAR: 200]
MAX_BLOCKS = 1_024  # in the whole network: stage depths summed, 1 per other stage [104]
MAX_STAGES = 64  # entries of a per-stage list, hidden layers [5]; lowered stages: 4x [16]
MAX_INPUT_SIZE = 4_096  # pixels a side: the input, every stage's output, pool sizes [600]
MAX_KERNEL = 64  # kernel, stride and padding, in pixels [11]
MAX_CLASSES = 100_000  # [1,000]


def at_most(bound: int, unit: str) -> AfterValidator:
    """Refuses values above `bound` with 'at most <bound> <unit>' (pydantic's `le` would not
    name the unit)."""

    def check(value: int) -> int:
        if value > bound:
            raise ValueError(f"at most {bound} {unit}")
        return value

    return AfterValidator(check)


def schema_max(bound: int) -> Any:
    return Field(json_schema_extra={"maximum": bound})  # editors see the bound too


Width = Annotated[int, Field(gt=0), schema_max(MAX_WIDTH), at_most(MAX_WIDTH, "channels")]
Units = Annotated[int, Field(gt=0), schema_max(MAX_WIDTH), at_most(MAX_WIDTH, "units")]
Depth = Annotated[int, Field(gt=0), schema_max(MAX_DEPTH), at_most(MAX_DEPTH, "blocks")]
Layers = Annotated[int, Field(gt=0), schema_max(MAX_DEPTH), at_most(MAX_DEPTH, "layers")]
Pixels = Annotated[int, Field(gt=0), schema_max(MAX_INPUT_SIZE),
                   at_most(MAX_INPUT_SIZE, "pixels")]
Kernel = Annotated[int, Field(gt=0), schema_max(MAX_KERNEL), at_most(MAX_KERNEL, "pixels")]
Padding = Annotated[int, Field(ge=0), schema_max(MAX_KERNEL), at_most(MAX_KERNEL, "pixels")]
Classes = Annotated[int, Field(gt=0), schema_max(MAX_CLASSES), at_most(MAX_CLASSES, "classes")]


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
NormMomentum = Annotated[float, Field(gt=0, le=1)]


def odd(value: int) -> int:
    """Refuses an even kernel: with padding k // 2 it would change the size by one."""
    if value % 2 == 0:
        raise ValueError(f"kernel {value} must be odd to keep the size")
    return value


OddKernel = Annotated[Kernel, AfterValidator(odd)]
Expansion = Annotated[float, Field(gt=0, le=64)]
SERatio = Annotated[float, Field(ge=0, le=1)]
DropRate = Annotated[float, Field(ge=0, lt=1)]


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
    width: Width
    depth: Layers = 1
    kernel: Kernel = 3
    stride: Kernel = 1
    padding: Padding | None = Field(default=None, description="default: kernel // 2")
    groups: Width = 1
    bias: bool = False
    norm: bool = True
    act: Activation = "relu"
    preact: bool = False
    norm_eps: NormEps = added_field(1e-5, "batch norm epsilon (torchvision's GoogLeNet: 0.001)")
    norm_momentum: NormMomentum = added_field(
        0.1, "batch norm momentum of the running statistics (torchvision's MobileNetV3: 0.01)"
    )

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
    kernel: Kernel = 2
    stride: Kernel | None = Field(default=None, description="default: kernel")
    padding: Padding = 0
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
    depth: Depth
    width: Width
    stride: Kernel = 1
    block: Literal["basic", "bottleneck"] = "basic"
    bottleneck_ratio: float = Field(default=1.0, gt=0, le=8)
    group_width: Width | None = Field(default=None, description="None: one group")
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
    def _bottleneck_fits(self) -> ResidualStage:
        gw, wb = self.group_width, self.bottleneck_width
        if wb > MAX_WIDTH:
            raise ValueError(f"bottleneck width {wb} (width {self.width} x ratio "
                             f"{self.bottleneck_ratio}): at most {MAX_WIDTH} channels")
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
    depth: Layers
    growth_rate: Width
    bottleneck_width: Width | None = Field(
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
    width: Width
    bias: bool = False

    def out_size(self, size: int) -> int:
        return conv_out(size, 2, 2, 0)

    def out_channels(self, in_channels: int) -> int:
        return self.width


class InceptionStage(Frozen):
    """GoogLeNet inception block: 1x1 | 1x1->3x3 | 1x1->5x5 | 3x3 pool->1x1, concatenated."""

    kind: Literal["inception"] = "inception"
    c1: Width
    c2: tuple[Width, Width]
    c3: tuple[Width, Width]
    c4: Width
    bias: bool = True
    norm: bool = False
    c3_kernel: Kernel = added_field(
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
    width: Width
    kernel: Kernel
    stride: Kernel = 1
    padding: Padding = 0

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


class MBConvStage(Frozen):
    """`depth` inverted residual blocks (MobileNetV2's MBConv): 1x1 expansion -> depthwise kxk
    -> [squeeze-and-excitation] -> 1x1 projection, plus the input when shapes allow.

    The expansion conv is left out when the expanded width equals the block's input width
    (expansion 1), as torchvision does; the first block carries the stride.
    """

    kind: Literal["mbconv"] = "mbconv"
    depth: Depth = 1
    width: Width
    stride: Kernel = 1
    kernel: OddKernel = 3
    expansion: Expansion = Field(
        default=6.0, description="expanded width = round(expansion x the block's input width)"
    )
    expanded_width: Width | None = Field(
        default=None, description="every block's expanded width, instead of the expansion "
        "(MobileNetV3 lists them)",
    )
    se_ratio: SERatio = Field(
        default=0.0, description="squeeze width = max(1, floor(se_ratio x the block's input "
        "width)), torchvision's EfficientNet rule; 0: no squeeze-and-excitation",
    )
    se_width: Width | None = Field(
        default=None, description="every block's squeeze width, instead of se_ratio "
        "(MobileNetV3: a quarter of the expanded width, rounded to 8)",
    )
    act: Activation = "relu6"
    se_act: Activation = "relu"
    se_gate: Gate = "sigmoid"
    residual: bool = Field(
        default=True, description="add the block's input when stride and widths allow"
    )
    stochastic_depth: tuple[DropRate, ...] = Field(
        default=(), max_length=MAX_DEPTH,
        description="per block, the probability of dropping its residual branch for a sample "
        "in training (identity in eval); empty: none",
    )
    norm_eps: NormEps = 1e-5
    norm_momentum: NormMomentum = 0.1

    @model_validator(mode="after")
    def _one_rate_per_block(self) -> MBConvStage:
        rates = len(self.stochastic_depth)
        if rates not in (0, self.depth):
            raise ValueError(f"stochastic_depth has {rates} rates for {self.depth} blocks; "
                             "give one per block or none")
        return self

    def expanded(self, w_in: int) -> int:
        """The expanded width of a block whose input has `w_in` channels."""
        if self.expanded_width is not None:
            return self.expanded_width
        return int(round(w_in * self.expansion))

    def squeeze(self, w_in: int) -> int:
        """The squeeze width of a block's SE (0: none)."""
        if self.se_width is not None:
            return self.se_width
        return max(1, int(w_in * self.se_ratio)) if self.se_ratio > 0 else 0

    def drop_rate(self, block: int) -> float:
        return self.stochastic_depth[block] if self.stochastic_depth else 0.0

    def check_input(self, in_channels: int, index: int) -> None:
        """Expanded widths within 1..MAX_WIDTH for the first block's input and the others'."""
        for w_in in {in_channels, self.width}:
            wide = self.expanded(w_in)
            if wide < 1:
                raise ValueError(f"stage {index} ({self.kind}): expanded width rounds to "
                                 f"{wide} channels (expansion {self.expansion:g} x {w_in} "
                                 "input channels)")
            if wide > MAX_WIDTH:
                raise ValueError(f"stage {index} ({self.kind}): expanded width {wide} "
                                 f"(expansion {self.expansion:g} x {w_in}): at most "
                                 f"{MAX_WIDTH} channels")

    def out_size(self, size: int) -> int:
        return conv_out(size, self.kernel, self.stride, self.kernel // 2)

    def out_channels(self, in_channels: int) -> int:
        return self.width


class FusedMBConvStage(MBConvStage):
    """`depth` fused inverted residual blocks (EfficientNetV2): kxk expansion ->
    [squeeze-and-excitation] -> 1x1 projection; with expansion 1, one kxk conv."""

    kind: Literal["fused_mbconv"] = "fused_mbconv"  # type: ignore[assignment]


StageSpec = Annotated[
    ConvStage | PoolStage | ResidualStage | DenseStage | TransitionStage
    | InceptionStage | MLPConvStage | NormActStage | DropoutStage | MBConvStage
    | FusedMBConvStage,
    Field(discriminator="kind"),
]


class HeadSpec(Frozen):
    """Pool, flatten, then hidden Linear -> [BN1d] -> act -> [dropout] layers and the classifier."""

    pool: Literal["avg", "flatten"] | Pixels = Field(
        default="avg",
        description="'avg': global average pool; 'flatten': flatten as is; N: adaptive avg to NxN",
    )
    hidden: tuple[Units, ...] = Field(default=(), max_length=MAX_STAGES)
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

    in_channels: Width = 3
    num_classes: Classes = 1000
    input_size: Pixels = 224
    stages: tuple[StageSpec, ...] = Field(min_length=1, max_length=4 * MAX_STAGES)
    head: HeadSpec = HeadSpec()

    @model_validator(mode="after")
    def _shapes_hold(self) -> NetworkSpec:
        blocks = count_blocks(self.stages)
        if blocks > MAX_BLOCKS:  # checked before any stage is built: each block is a module
            raise ValueError(f"the network has {blocks} blocks and layers (stage depths summed): "
                             f"at most {MAX_BLOCKS}")
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
            check_output(stage, index, channels, size)
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


def count_blocks(stages: tuple[StageSpec, ...]) -> int:
    """Blocks and layers in a network: each stage's depth, 1 for a stage without one."""
    return sum(getattr(stage, "depth", 1) for stage in stages)


def check_output(stage: BaseModel, index: int, channels: int, size: int) -> None:
    """A stage's output within the bounds on widths and sizes (a dense stage's widths grow)."""
    kind = getattr(stage, "kind", "?")
    if channels > MAX_WIDTH:
        raise ValueError(f"stage {index} ({kind}) gives {channels} channels: at most {MAX_WIDTH}")
    if size > MAX_INPUT_SIZE:  # padding can grow a size
        raise ValueError(f"stage {index} ({kind}) gives {size}x{size} pixels: at most "
                         f"{MAX_INPUT_SIZE} a side")


def check_stage(stage: BaseModel, in_channels: int, index: int) -> None:
    """Checks that need the incoming channel count (group divisibility, expanded widths)."""
    check_input = getattr(stage, "check_input", None)
    if check_input is not None:
        check_input(in_channels, index)
    groups = getattr(stage, "groups", 1)
    if isinstance(stage, ConvStage) and (in_channels % groups or stage.width % groups):
        raise ValueError(
            f"stage {index} (conv): channels {in_channels}->{stage.width} "
            f"are not divisible by groups={groups}"
        )
