"""nas scale: EfficientNet's compound scaling of a spec's depth, width and resolution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nas.cli.app import app, console
from nas.cli.spec_cmds import SpecArg
from nas.compound import ALPHA, BETA, GAMMA
from nas.errors import SpecError


def costed(spec: Any) -> dict[str, Any]:
    """A spec's multipliers, input size, stages (depth, width), params and MACs (meta device)."""
    from nas.cost import MetaCost

    costs = MetaCost(spec)
    stages = [(getattr(s, "depth", 1), s.width) for s in spec.lower().stages
              if s.kind in ("mbconv", "fused_mbconv")]
    return {"width_mult": spec.width_mult, "depth_mult": spec.depth_mult,
            "input_size": spec.input_size, "stages": stages, "params": costs.params,
            "macs": costs.cost.macs}


@app.command()
def scale(
    spec: SpecArg,
    phi: Annotated[float, typer.Option(help="Compound coefficient: how many steps to scale.")],
    alpha: Annotated[float, typer.Option(help="Depth grows by alpha^phi.")] = ALPHA,
    beta: Annotated[float, typer.Option(help="Width grows by beta^phi.")] = BETA,
    gamma: Annotated[float, typer.Option(help="Resolution grows by gamma^phi.")] = GAMMA,
    out: Annotated[Path | None, typer.Option(
        help="Write the scaled spec here (.yaml or .json); never overwrites.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """The compound-scaled spec (depth x alpha^phi, width x beta^phi, resolution x gamma^phi,
    rounded as EfficientNet rounds: depths up, widths to multiples of 8) with its params and
    MACs beside the base spec's. The defaults are the paper's alpha 1.2, beta 1.1, gamma 1.15."""
    from nas.families.scaling import Scaling
    from nas.families.scaling import scale as compound_scale
    from nas.io import dump_spec, load_spec, save_spec

    if out is not None and out.exists():
        raise SpecError(f"{out}: already exists; not overwriting")
    base = load_spec(spec)
    scaling = Scaling.compound(phi, alpha, beta, gamma)
    scaled = compound_scale(base, scaling)
    result = {"spec": spec, "family": base.family, "phi": phi, "alpha": alpha, "beta": beta,
              "gamma": gamma, "multipliers": vars(scaling), "base": costed(base),
              "scaled": {**costed(scaled), "hash": scaled.content_hash(),
                         "spec": dump_spec(scaled)}}
    if out is not None:
        result["out"] = str(save_spec(scaled, out))
    if as_json:
        print(json.dumps(result))
        return
    print_scaling(result)


def print_scaling(result: dict[str, Any]) -> None:
    """The multipliers, a before/after table, and the spec (or where it was written)."""
    import yaml

    m, base, new = result["multipliers"], result["base"], result["scaled"]
    console.print(f"{result['spec']} scaled at phi {result['phi']:g} (alpha {result['alpha']:g}, "
                  f"beta {result['beta']:g}, gamma {result['gamma']:g}): depth x{m['depth']:.4g}, "
                  f"width x{m['width']:.4g}, resolution x{m['resolution']:.4g}",
                  soft_wrap=True, highlight=False)
    table = Table()
    for col in ("", "base", "scaled"):
        table.add_column(col, justify="left" if not col else "right")
    for key in ("width_mult", "depth_mult", "input_size"):
        table.add_row(key, f"{base[key]:.6g}", f"{new[key]:.6g}")
    table.add_row("stages (depth x width)", stages_text(base["stages"]),
                  stages_text(new["stages"]))
    table.add_row("params", f"{base['params']:,}", f"{new['params']:,}")
    table.add_row("MACs", f"{base['macs']:,}", f"{new['macs']:,}")
    console.print(table)
    if "out" in result:
        console.print(f"wrote {result['out']}", highlight=False)
        return
    print(yaml.safe_dump(new["spec"], sort_keys=False, default_flow_style=None), end="")


def stages_text(stages: list[tuple[int, int]]) -> str:
    return " ".join(f"{depth}x{width}" for depth, width in stages)


__all__ = ["scale"]
