"""The samplers a search can use, by name: one registered factory each, seeded, and whether a
search asks it again when it proposes an architecture the study already has (nas.search.fresh)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nas.errors import UserError

if TYPE_CHECKING:  # the registry is read by `nas --help`, which must not wait for optuna
    import optuna

SamplerFactory = Callable[[int], "optuna.samplers.BaseSampler"]
ArchitectureKey = Callable[[dict[str, Any]], "str | None"]
SAMPLERS: dict[str, SamplerFactory] = {}
FRESH: set[str] = set()  # samplers asked again for a new architecture (FreshSampler)


def register(name: str, fresh: bool = True) -> Callable[[SamplerFactory], SamplerFactory]:
    """Registers the factory of sampler `name` (seed -> sampler); `fresh`: wrap it in
    FreshSampler when the search gives an architecture key."""

    def wrap(factory: SamplerFactory) -> SamplerFactory:
        SAMPLERS[name] = factory
        if fresh:
            FRESH.add(name)
        else:
            FRESH.discard(name)
        return factory

    return wrap


@register("tpe")
def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE that lies about running trials (parallel workers spread out), fitted
    to a bounded history past 400 finished trials (nas.search.history)."""
    import optuna

    from nas.search.history import BoundedHistory

    return BoundedHistory(optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True, n_startup_trials=10), seed=seed)


@register("nsga2")
def _nsga2(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)


@register("random", fresh=False)  # plain random search: the baseline, and TPE's start-up stream
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


def make_sampler(name: str, seed: int, key: ArchitectureKey | None = None,
                 ) -> optuna.samplers.BaseSampler:
    """The registered sampler `name`, seeded; asked again for a new architecture (by `key`)
    when registered so."""
    sampler = SAMPLERS[check_sampler(name)](seed)
    if key is None or name not in FRESH:
        return sampler
    from nas.search.fresh import FreshSampler

    return FreshSampler(sampler, key, seed=seed + 104729)  # not the base's own random stream


__all__ = ["FRESH", "SAMPLERS", "check_sampler", "make_sampler", "register"]
