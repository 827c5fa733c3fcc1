"""Spec -> torch module."""

from nas.builder.network import Head, Network, build
from nas.builder.stages import STAGE_BUILDERS, register

__all__ = ["STAGE_BUILDERS", "Head", "Network", "build", "register"]
