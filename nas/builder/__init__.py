"""Spec -> torch module."""

from nas.builder.layers import eval_mode
from nas.builder.network import Head, Network, build
from nas.builder.stages import STAGE_BUILDERS, register
from nas.builder.weights import load_weights

__all__ = ["STAGE_BUILDERS", "Head", "Network", "build", "eval_mode", "load_weights",
           "register"]
