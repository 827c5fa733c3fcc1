"""nas: a neural architecture design-space explorer."""

from nas.builder import build, load_weights
from nas.cost import Cost, measure
from nas.families import FAMILIES, ArchSpec, FamilySpec
from nas.io import load_spec, save_spec
from nas.specs import NetworkSpec

__all__ = ["FAMILIES", "ArchSpec", "Cost", "FamilySpec", "NetworkSpec", "build", "load_spec",
           "load_weights", "measure", "save_spec"]
__version__ = "0.1.0"
