"""Shipped data: preset spec files and search spaces, read as package data (so an installed
nas finds them from any folder), without pydantic or torch so that `nas presets` answers at
once. In the source tree `nas/spaces` links to the top-level `spaces/` folder; a wheel carries
the files themselves."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def spaces_dir() -> Path:
    """The shipped search spaces (one YAML file each); presets are in its `presets/`."""
    # a file-system path: nas is installed as files (torch cannot run from a zip anyway)
    return Path(str(resources.files("nas").joinpath("spaces")))


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
