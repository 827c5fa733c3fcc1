"""Spec -> torch module."""

from nas.builder.network import Head, Network, build
from nas.builder.stages import STAGE_BUILDERS, register
from nas.builder.weights import load_weights

__all__ = ["STAGE_BUILDERS", "Head", "Network", "build", "load_weights", "register"]
