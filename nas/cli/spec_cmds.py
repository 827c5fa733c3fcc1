"""Spec commands: summary, presets, schema, validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nas.cli.app import app, console
from nas.errors import SpecError, UserError

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
    batch_size: Annotated[int | None, typer.Option(
        help="Check training at this batch size against the memory limit (default: 256, as "
             "nas train).")] = None,
    max_memory: Annotated[str | None, typer.Option(
        help="Memory limit to check training against (e.g. 2GiB, 500MB; default: what "
             "--device has free).")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd or adamw (its state counts).")] = "sgd",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]: whose memory.")] = "auto",
    weights: Annotated[Path | None, typer.Option(
        help="Check that a weights file fits the spec: a torchvision checkpoint (.pth) or a "
             "nas model.safetensors, matched by order and shape.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Per-stage output shapes, parameters and MACs of a spec, totals and memory, all computed
    on the meta device (nothing allocated); refuses what cannot fit, in one line."""
    from nas.io import load_spec
    from nas.sizes import parse_memory_option

    arch = with_input_size(load_spec(spec), input_size)  # validated before torch is imported
    limit_bytes = parse_memory_option(max_memory)
    check_batch_size(batch_size)
    from nas.cost import check_forward, check_training, estimate
    from nas.device import memory_limit, resolve_device
    from nas.train import OPTIMIZERS, Budget
    from nas.train.config import check_choice

    est = estimate(arch, batch_size or Budget().batch_size,
                   check_choice(optimizer, "optimizer", OPTIMIZERS))
    limit = memory_limit(resolve_device(device), limit_bytes)
    if batch_size is None and max_memory is None:
        check_forward(spec, est.cost, limit)  # checking training was not asked for
    else:
        check_training(spec, est.training, limit)
    result = summary_result(spec, arch, est, limit)
    if weights is not None:
        from nas.builder.weights import match_weights
        from nas.cost import meta_build

        match_weights(meta_build(arch), weights)  # names and shapes checked, nothing loaded
        result["weights"] = str(weights)
    if as_json:
        print(json.dumps(result))
        return
    print_summary(spec, result, est)


def check_batch_size(batch_size: int | None) -> None:
    """--batch-size between 1 and 2**20 (beyond, byte counts of one tensor near int64's end)."""
    if batch_size is not None and not 1 <= batch_size <= 2**20:
        raise UserError(f"--batch-size {batch_size}: between 1 and {2**20}")


def summary_result(spec: str, arch: Any, est: Any, limit: Any) -> dict[str, Any]:
    """`nas summary --json`'s object."""
    return {
        "spec": spec, "family": arch.family, "hash": arch.content_hash(),
        "input_shape": [1, arch.in_channels, arch.input_size, arch.input_size],
        "output_shape": list(est.stages[-1].output_shape), **est.cost.as_dict(),
        "training_memory": est.training.as_dict(),
        "memory_limit": None if limit is None else {"bytes": limit.bytes, "source": limit.source},
        "stages": [{"index": r.index, "kind": r.kind, "output_shape": list(r.output_shape),
                    "params": r.params, "macs": r.macs} for r in est.stages],
    }


def print_summary(spec: str, result: dict[str, Any], est: Any) -> None:
    """The stage table, then the activations and memory figures."""
    from nas.sizes import format_bytes

    table = Table(title=f"{spec} ({result['family']}, hash {result['hash']})")
    for col in ("#", "stage", "output shape", "params", "MACs"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "#") else "left")
    for r in est.stages:
        table.add_row(str(r.index), r.kind, "x".join(map(str, r.output_shape)),
                      f"{r.params:,}", f"{r.macs:,}")
    table.add_section()
    table.add_row("", "total", "x".join(map(str, result["output_shape"])),
                  f"{est.cost.params:,}", f"{est.cost.macs:,}")
    console.print(table)
    acts = est.cost.activations  # a count of values, as pycls and fvcore count them
    lines = [f"activations {acts:,} values (conv and linear outputs of one image, "
             f"{format_bytes(4 * acts)} as fp32)   peak forward memory "
             f"{format_bytes(est.cost.peak_memory_bytes)} (batch 1)",
             f"training memory ({est.training.optimizer}) {est.training.describe()}"]
    limit = result["memory_limit"]
    if limit is not None:
        lines.append(f"memory limit {format_bytes(limit['bytes'])} ({limit['source']})")
    if "weights" in result:
        lines.append(f"weights {result['weights']}: every tensor fits, in order")
    for line in lines:  # one line each, however narrow the terminal
        console.print(line, soft_wrap=True, highlight=False)


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


__all__ = ["check_batch_size", "presets", "schema", "summary", "validate", "with_input_size"]
