"""What rule tests need of a study's models: per-stage lists, enough of them, random sampling.

Rules read per-stage lists (`depths`, `widths`, `bottleneck_ratios`, `group_widths`); a spec
that does not state them (RegNet's w0/wa/wm, ResNeXt's cardinality) gets them from the residual
stages of its lowered network (`stage_lists`), so the built-in rules can be tested on any
residual family.

The normalised EDFs compare populations of models drawn at random from a space (Radosavovic et
al. 2019); a TPE or NSGA-II study crowds its trials where earlier ones did well, so its EDFs
describe the sampler as much as the space. `sampler_check` says which a study is; commands
refuse or warn. Pure: reads plain specs and recorded settings, imports neither Optuna nor torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from nas.analysis.compare import MIN_MODELS
from nas.analysis.rules import PER_STAGE_ALIASES
from nas.errors import UserError

if TYPE_CHECKING:  # nas.study imports Optuna; this module only reads its settings
    from nas.study import StudySettings

STAGE_FIELDS = ("depths", "widths", "bottleneck_ratios", "group_widths")
RANDOM = "random"


def states(spec: Mapping[str, Any], field: str) -> bool:
    """Whether a spec states a per-stage field itself (or its one-value singular alias)."""
    alias = PER_STAGE_ALIASES.get(field)
    return spec.get(field) is not None or (alias is not None and spec.get(alias) is not None)


def stage_lists(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec, plus the per-stage lists it does not state, read from its residual stages.

    depths and widths come from every residual stage; bottleneck_ratios and group_widths only
    when every stage has bottleneck blocks (a basic block has neither), a stage of one group
    having the group width of its whole bottleneck. A spec that does not validate, or has no
    residual stages (VGG, DenseNet), is returned as it is.
    """
    wanted = [f for f in STAGE_FIELDS if not states(spec, f)]
    if not wanted or "family" not in spec:
        return dict(spec)
    from nas.io import parse_spec
    from nas.specs import ResidualStage

    try:
        network = parse_spec(dict(spec)).lower()
    except UserError:
        return dict(spec)
    stages = [s for s in network.stages if isinstance(s, ResidualStage)]
    if not stages:
        return dict(spec)
    derived: dict[str, list[Any]] = {
        "depths": [s.depth for s in stages], "widths": [s.width for s in stages]}
    if all(s.block == "bottleneck" for s in stages):
        derived["bottleneck_ratios"] = [s.bottleneck_ratio for s in stages]
        derived["group_widths"] = [s.group_width or s.bottleneck_width for s in stages]
    return {**spec, **{f: derived[f] for f in wanted if f in derived}}


def enough_models(count: int, study: str, min_models: int = MIN_MODELS) -> None:
    """Refuse a study too small for any rule test: each side needs `min_models`."""
    if count == 0:
        raise UserError(f"study {study} has no trained trials to analyse (none complete, "
                        f"feasible and trained to the full budget)")
    if count < 2 * min_models:
        raise UserError(f"study {study} has {count} trained models; a rule test needs at least "
                        f"{min_models} on each side, so at least {2 * min_models} models")


class SamplerCheck(NamedTuple):
    """The recorded sampler and what it means for the EDFs: random, unknown or not random."""

    sampler: str | None
    random: bool | None  # None: not recorded (a study made by an older nas)
    message: str | None  # None when random

    def require(self, allow_nonrandom: bool = False) -> str | None:
        """The warning to print; refuses a non-random study unless allowed."""
        if self.random is False and not allow_nonrandom:
            raise UserError(f"{self.message} (run a --sampler random study, or pass "
                            f"--allow-nonrandom)")
        return self.message


def sampler_check(settings: StudySettings, study: str) -> SamplerCheck:
    """Whether a study's models were sampled at random, as the EDF method assumes."""
    sampler = settings.sampler
    if sampler == RANDOM:
        return SamplerCheck(sampler, True, None)
    if sampler is None:
        return SamplerCheck(None, None, f"study {study} does not record its sampler (made by "
                                        f"an older nas); the EDF method assumes random sampling")
    return SamplerCheck(sampler, False, (
        f"study {study} was sampled by {sampler}, not at random: its models crowd where earlier "
        f"trials did well, so the EDFs describe the sampler as much as the space"))


__all__ = ["STAGE_FIELDS", "SamplerCheck", "enough_models", "sampler_check", "stage_lists"]
