"""Shipped data: preset spec files and search spaces (package data, read without pydantic or
torch so that `nas presets` answers at once)."""

from __future__ import annotations

import os
from pathlib import Path


def spaces_dir() -> Path:
    """The shipped search spaces (one YAML file each); presets are in its `presets/`."""
    env = os.environ.get("NAS_HOME")
    return Path(env) / "spaces" if env else Path(__file__).resolve().parents[1] / "spaces"


def presets_dir() -> Path:
    return spaces_dir() / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets (file stems)."""
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def space_files() -> dict[str, Path]:
    """Shipped spaces by name."""
    return {p.stem: p for p in sorted(spaces_dir().glob("*.yaml"))}


def description(path: Path) -> str:
    """A shipped file's first comment line, without the '#'."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ")
