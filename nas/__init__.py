"""nas: a neural architecture design-space explorer.

The names below are imported on first use, so that `import nas` (and `nas --help`) does not
wait for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_EXPORTS = {
    "build": "nas.builder", "load_weights": "nas.builder", "Cost": "nas.cost",
    "measure": "nas.cost",
    "FAMILIES": "nas.families", "ArchSpec": "nas.families", "FamilySpec": "nas.families",
    "load_spec": "nas.io", "save_spec": "nas.io", "NetworkSpec": "nas.specs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
