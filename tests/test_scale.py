"""Compound scaling: the library function and `nas scale` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CliRunner

from nas import load_spec
from nas.errors import SpecError, UserError
from nas.families.scaling import Scaling, scale
from nas.io import dump_spec

# torchvision's published (width_mult, depth_mult, crop size) of B1..B7: efficientnet.py.
TORCHVISION_B = {1: (1.0, 1.1, 240), 2: (1.1, 1.2, 288), 3: (1.2, 1.4, 300),
                 4: (1.4, 1.8, 380), 5: (1.6, 2.2, 456), 6: (1.8, 2.6, 528),
                 7: (2.0, 3.1, 600)}
# Fields of a B preset that compound scaling does not set: its dropout, and for B5..B7 the
# batch norm's epsilon and momentum.
TRAINING_FIELDS = ("dropout", "norm_eps", "norm_momentum")


@pytest.mark.parametrize("k", sorted(TORCHVISION_B))
def test_b0_scaled_by_torchvisions_multipliers_is_the_preset(k: int) -> None:
    width, depth, size = TORCHVISION_B[k]
    preset = load_spec(f"efficientnet_b{k}")
    scaled = scale(load_spec("efficientnet_b0"), Scaling(width, depth, size / 224))
    same = scaled.model_copy(update={f: getattr(preset, f) for f in TRAINING_FIELDS})
    assert dump_spec(same) == dump_spec(preset)
    assert same.content_hash() == preset.content_hash()


def test_the_compound_rule_multiplies_each_dimension() -> None:
    base = load_spec("efficientnet_b0")
    one = scale(base, Scaling.compound(1))
    assert (one.width_mult, one.depth_mult, one.input_size) == (1.1, 1.2, 258)
    two = scale(one, Scaling.compound(1))  # twice by 1 is by 2, but for the rounded size
    assert (two.width_mult, two.depth_mult) == (1.1 * 1.1, 1.2 * 1.2)
    assert (two.input_size, scale(base, Scaling.compound(2)).input_size) == (297, 296)
    assert scale(base, Scaling.compound(0)) == base
    assert Scaling.compound(2, alpha=1.0, beta=2.0, gamma=1.5) == Scaling(4.0, 1.0, 2.25)


def test_scaling_refuses_a_family_without_multipliers_and_bad_constants() -> None:
    with pytest.raises(SpecError, match="family resnet has no width_mult and depth_mult"):
        scale(load_spec("resnet18"), Scaling.compound(1))
    with pytest.raises(UserError, match="--beta 0: must be above 0"):
        Scaling.compound(1, beta=0)
    with pytest.raises(SpecError, match="scaled spec: input_size: at most 4096 pixels"):
        scale(load_spec("efficientnet_b0"), Scaling.compound(30))


def test_nas_scale_json_gives_the_scaled_spec_with_its_params_and_macs(
        run_nas: CliRunner) -> None:
    result = run_nas("scale", "efficientnet_b0", "--phi", "1", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["multipliers"] == {"width": 1.1, "depth": 1.2, "resolution": 1.15}
    assert data["base"]["params"] == 5_288_548
    # width 1.1 and depth 1.2 are torchvision's B2 multipliers: B2's parameters, at 258 px
    assert data["scaled"]["params"] == 9_109_994 and data["scaled"]["input_size"] == 258
    assert data["scaled"]["stages"][:3] == [[2, 16], [3, 24], [3, 48]]
    assert load_spec(data["scaled"]["spec"]).content_hash() == data["scaled"]["hash"]
    assert data["scaled"]["macs"] > 2 * data["base"]["macs"]


def test_nas_scale_prints_a_table_and_the_spec(run_nas: CliRunner) -> None:
    result = run_nas("scale", "efficientnet_b0", "--phi", "2", "--alpha", "1.1")
    assert result.code == 0, result.err
    assert "depth x1.21, width x1.21, resolution x1.322" in result.out
    assert "family: efficientnet" in result.out and "width_mult: 1.21" in result.out


def test_nas_scale_out_writes_once_and_refuses_to_overwrite(run_nas: CliRunner,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "b1ish.yaml"
    result = run_nas("scale", "efficientnet_b0", "--phi", "1", "--out", str(out))
    assert result.code == 0, result.err
    assert f"wrote {out}" in result.out
    written = out.read_text()
    assert load_spec(out).input_size == 258
    again = run_nas("scale", "efficientnet_b0", "--phi", "3", "--out", str(out))
    assert again.code == 2
    assert again.err_lines == [f"nas: error: {out}: already exists; not overwriting"]
    assert out.read_text() == written


@pytest.mark.parametrize(("args", "message"), [
    (["resnet18", "--phi", "1"], "family resnet has no width_mult and depth_mult to scale"),
    (["efficientnet_b0", "--phi", "1", "--gamma", "-1"], "--gamma -1: must be above 0"),
    (["efficientnet_b0"], "Missing option '--phi'"),
])
def test_nas_scale_refusals_are_one_line(run_nas: CliRunner, args: list[str],
                                         message: str) -> None:
    result = run_nas("scale", *args)
    assert result.code == 2
    assert len(result.err_lines) == 1 and message in result.err
