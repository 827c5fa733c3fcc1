"""Spec commands: summary, presets, schema, validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nas.cli.app import app, console
from nas.errors import SpecError

SpecArg = Annotated[str, typer.Argument(help="A spec file (YAML/JSON) or a preset name.")]


def with_input_size(spec, size: int | None):  # noqa: ANN001, ANN201
    """The spec re-validated at another input size (errors name the collapsing stage)."""
    from nas.io import parse_spec

    if size is None:
        return spec
    return parse_spec({**spec.model_dump(mode="json"), "input_size": size}, f"--input-size {size}")


@app.command()
def summary(
    spec: SpecArg,
    input_size: Annotated[int | None, typer.Option(help="Override the spec's input size.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Per-stage output shapes, parameters and MACs of a spec, and totals."""
    from nas.builder import build
    from nas.cost import measure, stage_table
    from nas.io import load_spec

    arch = with_input_size(load_spec(spec), input_size)
    model = build(arch)
    rows = stage_table(model, arch.in_channels, arch.input_size)
    cost = measure(model, arch.in_channels, arch.input_size)
    result = {
        "spec": spec, "family": arch.family, "hash": arch.content_hash(),
        "input_shape": [1, arch.in_channels, arch.input_size, arch.input_size],
        "output_shape": list(rows[-1].output_shape), **cost.as_dict(),
        "stages": [{"index": r.index, "kind": r.kind, "output_shape": list(r.output_shape),
                    "params": r.params, "macs": r.macs} for r in rows],
    }
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{spec} ({arch.family}, hash {result['hash']})")
    for col in ("#", "stage", "output shape", "params", "MACs"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "#") else "left")
    for r in rows:
        table.add_row(str(r.index), r.kind, "x".join(map(str, r.output_shape)),
                      f"{r.params:,}", f"{r.macs:,}")
    table.add_section()
    table.add_row("", "total", "x".join(map(str, result["output_shape"])),
                  f"{cost.params:,}", f"{cost.macs:,}")
    console.print(table)
    console.print(f"activations {cost.activations:,}   peak forward memory "
                  f"{cost.peak_memory_bytes / 2**20:,.1f} MiB (batch 1, CPU estimate)")


@app.command()
def presets() -> None:
    """List the shipped presets, one per line: name, then description."""
    from nas.resources import description, preset_names, presets_dir

    for name in preset_names():
        print(f"{name:<18} {description(presets_dir() / f'{name}.yaml')}")


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Write the JSON Schema of spec files (for editor autocompletion)."""
    from nas.io import spec_schema

    text = json.dumps(spec_schema(), indent=2)
    if out is None:
        print(text)
        return
    try:
        with out.open("x", encoding="utf-8") as f:  # "x": never overwrite, even in a race
            f.write(text + "\n")
    except FileExistsError:
        raise SpecError(f"{out}: already exists; not overwriting") from None
    except OSError as e:
        raise SpecError(f"{out}: cannot write: {e.strerror}") from None
    console.print(f"wrote {out}")


@app.command()
def validate(spec: SpecArg) -> None:
    """Check a spec file; prints its family and hash, or one line saying what is wrong."""
    from nas.io import load_spec

    arch = load_spec(spec)
    print(f"{spec}: ok ({arch.family}, hash {arch.content_hash()})")


__all__ = ["presets", "schema", "summary", "validate", "with_input_size"]
