"""What every family spec shares: input, classes, lowering and validation through lowering."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from nas.errors import describe
from nas.specs import (
    MAX_STAGES,
    Classes,
    ConvStage,
    Depth,
    Frozen,
    NetworkSpec,
    Pixels,
    PoolStage,
    StageSpec,
    Width,
)


class FamilySpec(Frozen):
    """A point in one family's design space; `lower()` gives the generic network."""

    family: str
    in_channels: Width = 3
    num_classes: Classes = 1000
    input_size: Pixels = 224

    def lower(self) -> NetworkSpec:
        """The generic network this spec describes."""
        raise NotImplementedError

    def network(self, stages: list[StageSpec], **head: object) -> NetworkSpec:
        """Wraps stages and head fields with this spec's input and classes."""
        return NetworkSpec(
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            input_size=self.input_size,
            stages=tuple(stages),
            head=head,  # type: ignore[arg-type]
        )

    @classmethod
    def from_sample(cls, values: dict[str, object]) -> dict[str, object]:
        """Spec fields from sampled search dimensions; families derive dependent fields here."""
        return dict(values)

    def content_hash(self) -> str:
        """Hash of the lowered network: same network, same hash."""
        return self.lower().content_hash()

    @model_validator(mode="after")
    def _lowers(self) -> FamilySpec:
        try:
            self.lower()  # shape and group checks live in NetworkSpec; errors name the stage
        except ValidationError as e:  # a field of a lowered stage: say so, not the family's
            first = e.errors()[0]["loc"]
            raise ValueError(f"lowered {e.title}.{describe(e)}" if first else describe(e)) \
                from None
        return self


StemKind = Literal["imagenet", "simple", "small"]


def stem(kind: StemKind, width: int, bias: bool = False, norm: bool = True) -> list[StageSpec]:
    """imagenet: 7x7/2 conv + 3x3/2 max-pool; simple: 3x3/2 conv (RegNet); small: 3x3/1 conv."""
    if kind == "imagenet":
        return [
            ConvStage(width=width, kernel=7, stride=2, padding=3, bias=bias, norm=norm),
            PoolStage(mode="max", kernel=3, stride=2, padding=1),
        ]
    stride = 2 if kind == "simple" else 1
    return [ConvStage(width=width, kernel=3, stride=stride, bias=bias, norm=norm)]


def same_length(**lists: tuple) -> None:
    """Raises when per-stage lists differ in length."""
    lengths = {name: len(v) for name, v in lists.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise ValueError(f"per-stage lists must have the same length: {shown}")


Depths = Annotated[tuple[Depth, ...], Field(max_length=MAX_STAGES)]  # one per stage
Widths = Annotated[tuple[Width, ...], Field(max_length=MAX_STAGES)]
NonEmpty = Field(min_length=1)
