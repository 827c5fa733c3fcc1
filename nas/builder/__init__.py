"""Spec -> torch module."""

from nas.builder.layers import eval_mode
from nas.builder.network import Head, Network, build
from nas.builder.stages import STAGE_BUILDERS, register

__all__ = ["STAGE_BUILDERS", "Head", "Network", "build", "eval_mode", "register"]
