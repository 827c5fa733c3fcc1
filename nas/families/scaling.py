"""Compound scaling (Tan & Le 2019): depth x alpha^phi, width x beta^phi, resolution x
gamma^phi, applied to a spec's width and depth multipliers and its input size.

The family rounds as EfficientNet does (depths up, widths by `make_divisible` to multiples of
8), so scaling a spec only changes its three numbers; the rounding happens when it is lowered.
The paper's constants come from a grid search on B0 under alpha x beta^2 x gamma^2 ~ 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from nas.compound import ALPHA, BETA, GAMMA  # Tan & Le 2019, section 4
from nas.errors import SpecError, UserError, describe
from nas.families.base import FamilySpec

SCALED_FIELDS = ("width_mult", "depth_mult")


@dataclass(frozen=True)
class Scaling:
    """The multipliers one compound-scaling step applies."""

    width: float
    depth: float
    resolution: float

    @classmethod
    def compound(cls, phi: float, alpha: float = ALPHA, beta: float = BETA,
                 gamma: float = GAMMA) -> Scaling:
        """depth alpha^phi, width beta^phi, resolution gamma^phi; UserError on a bad constant."""
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if not value > 0:
                raise UserError(f"--{name} {value:g}: must be above 0")
        return cls(width=beta**phi, depth=alpha**phi, resolution=gamma**phi)


def can_scale(spec: FamilySpec) -> bool:
    """Whether the spec's family has width and depth multipliers."""
    return all(name in type(spec).model_fields for name in SCALED_FIELDS)


def scale(spec: FamilySpec, scaling: Scaling) -> FamilySpec:
    """`spec` with its width and depth multipliers and input size multiplied; the input size is
    rounded to the nearest pixel. SpecError when the family has no multipliers or the result is
    not a valid spec."""
    if not can_scale(spec):
        raise SpecError(f"family {spec.family} has no width_mult and depth_mult to scale; "
                        "nas scale takes mbconv and efficientnet specs")
    fields = {
        "width_mult": spec.width_mult * scaling.width,  # type: ignore[attr-defined]
        "depth_mult": spec.depth_mult * scaling.depth,  # type: ignore[attr-defined]
        "input_size": max(1, round(spec.input_size * scaling.resolution)),
    }
    try:
        return type(spec).model_validate({**spec.model_dump(), **fields})
    except ValidationError as e:
        raise SpecError(f"scaled spec: {describe(e)}") from None
