"""Spec files: load from a path, dict or preset name; save YAML/JSON; presets; JSON schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nas.errors import SpecError, describe
from nas.families import ARCH_ADAPTER, FAMILIES, FamilySpec
from nas.resources import preset_names, presets_dir

FAMILY_TAGS = tuple(f.model_fields["family"].default for f in FAMILIES)


def read_document(path: Path) -> Any:
    """YAML or JSON content of a file, through a safe loader only."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read: {e}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        line = str(e).replace("\n", " ")
        raise SpecError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {line}") from None


def parse_spec(data: Any, source: str = "spec") -> FamilySpec:
    """A validated family spec from plain data; SpecError names the source and field."""
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(f"{source}: expected a mapping with a 'family' field, got {kind}")
    if "family" not in data:
        raise SpecError(f"{source}: family: missing; one of {', '.join(FAMILY_TAGS)}")
    try:
        return ARCH_ADAPTER.validate_python(data)
    except ValidationError as e:
        raise SpecError(f"{source}: {describe(e, FAMILY_TAGS)}") from None


def resolve_spec_path(name: str) -> Path:
    """A preset name or a path to a spec file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        return path
    preset = presets_dir() / f"{name}.yaml"
    if preset.exists():
        return preset
    raise SpecError(
        f"{name}: neither a spec file nor a preset; presets: {', '.join(preset_names())}"
    )


def load_spec(source: str | Path | dict | FamilySpec) -> FamilySpec:
    """A spec from a path, a dict, a preset name, or a spec (returned as is)."""
    if isinstance(source, FamilySpec):
        return source
    if isinstance(source, dict):
        return parse_spec(source)
    path = resolve_spec_path(str(source))
    return parse_spec(read_document(path), str(path))


def dump_spec(spec: FamilySpec) -> dict[str, Any]:
    """Every field written out (so later default changes cannot alter a saved spec)."""
    return spec.model_dump(mode="json")


class SpecDumper(yaml.SafeDumper):
    """Spec files as people write them: one field a line, a list of values on one line."""


def represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    """A list in flow style (`[1, 2]`, `[[1, 64], [2, 128]]`) unless it holds mappings."""
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                     flow_style=not holds_mapping(data))


def holds_mapping(value: Any) -> bool:
    """Whether a mapping is anywhere inside `value`."""
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and any(holds_mapping(v) for v in value)


SpecDumper.add_representer(list, represent_list)


def spec_yaml(data: dict[str, Any]) -> str:
    """A spec's fields as block YAML, in field order; lists of values in flow style."""
    return yaml.dump(data, Dumper=SpecDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1_000_000)


def save_spec(spec: FamilySpec, path: str | Path, overwrite: bool = False) -> Path:
    """Writes a spec as YAML or JSON (by suffix); refuses to overwrite unless asked."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SpecError(f"{path}: already exists; not overwriting")
    data = dump_spec(spec)
    if path.suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = spec_yaml(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def spec_schema() -> dict[str, Any]:
    """JSON Schema of spec files, for editors."""
    schema = ARCH_ADAPTER.json_schema()
    schema["title"] = "nas architecture spec"
    return schema
