"""The one list of families; `ArchSpec` is the union discriminated on `family`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from nas.families.anynet import AnyNetSpec
from nas.families.base import FamilySpec
from nas.families.classic import AlexNetSpec, GoogLeNetSpec, LeNetSpec, NiNSpec
from nas.families.densenet import DenseNetSpec
from nas.families.efficientnet import EfficientNetSpec
from nas.families.mbconv import MBConvNetSpec
from nas.families.mnasnet import MnasNetSpec
from nas.families.mobilenet import MobileNetV2Spec, MobileNetV3Spec
from nas.families.regnet import RegNetSpec
from nas.families.resnet import ResNetSpec, ResNeXtSpec
from nas.families.vgg import VGGSpec

FAMILIES: tuple[type[FamilySpec], ...] = (
    VGGSpec,
    ResNetSpec,
    ResNeXtSpec,
    DenseNetSpec,
    RegNetSpec,
    AnyNetSpec,
    AlexNetSpec,
    NiNSpec,
    GoogLeNetSpec,
    LeNetSpec,
    MobileNetV2Spec,
    MobileNetV3Spec,
    MnasNetSpec,
    MBConvNetSpec,
    EfficientNetSpec,
)

ArchSpec = Annotated[
    VGGSpec | ResNetSpec | ResNeXtSpec | DenseNetSpec | RegNetSpec | AnyNetSpec
    | AlexNetSpec | NiNSpec | GoogLeNetSpec | LeNetSpec | MobileNetV2Spec | MobileNetV3Spec
    | MnasNetSpec | MBConvNetSpec | EfficientNetSpec,
    Field(discriminator="family"),
]
ARCH_ADAPTER: TypeAdapter[FamilySpec] = TypeAdapter(ArchSpec)

__all__ = ["ARCH_ADAPTER", "FAMILIES", "ArchSpec", "FamilySpec", *(f.__name__ for f in FAMILIES)]
