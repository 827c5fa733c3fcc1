"""The samplers a search can use, by name: one registered factory each, seeded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nas.errors import UserError

if TYPE_CHECKING:  # the registry is read by `nas --help`, which must not wait for optuna
    import optuna

SamplerFactory = Callable[[int], "optuna.samplers.BaseSampler"]
SAMPLERS: dict[str, SamplerFactory] = {}


def register(name: str) -> Callable[[SamplerFactory], SamplerFactory]:
    """Registers the factory of sampler `name` (seed -> sampler)."""

    def wrap(factory: SamplerFactory) -> SamplerFactory:
        SAMPLERS[name] = factory
        return factory

    return wrap


@register("tpe")
def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE that lies about running trials (parallel workers spread out)."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=10)


@register("nsga2")
def _nsga2(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)


@register("random")
def _random(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


@register("gp")
def _gp(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)


def check_sampler(name: str) -> str:
    """`name` if registered, else a one-line UserError."""
    if name not in SAMPLERS:
        raise UserError(f"--sampler {name}: one of {', '.join(SAMPLERS)}")
    return name


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The registered sampler `name`, seeded."""
    return SAMPLERS[check_sampler(name)](seed)


__all__ = ["SAMPLERS", "check_sampler", "make_sampler", "register"]
