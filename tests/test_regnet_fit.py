"""Fitting RegNet's width rule: RegNets come back exactly, other networks get their best fit."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import count_params
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torchvision.models.regnet import BlockParams

from nas import build
from nas.analysis.regnet_fit import (
    block_widths,
    fit_changes,
    fit_regnet,
    fit_spec,
    params_and_macs,
    regnet_spec,
)
from nas.errors import SpecError
from nas.families import RegNetSpec
from nas.families.regnet import regnet_stages
from nas.io import load_spec
from nas.specs import MAX_INPUT_SIZE, ResidualStage

# torchvision's RegNets (models/regnet.py): depth, w0, wa, wm, group width, SE ratio.
TORCHVISION = {
    "regnet_x_400mf": (22, 24, 24.48, 2.54, 16, 0.0),
    "regnet_x_800mf": (16, 56, 35.73, 2.28, 16, 0.0),
    "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24, 0.0),
    "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48, 0.0),
    "regnet_x_8gf": (23, 80, 49.56, 2.88, 120, 0.0),
    "regnet_x_16gf": (22, 216, 55.59, 2.1, 128, 0.0),
    "regnet_x_32gf": (23, 320, 69.86, 2.0, 168, 0.0),
    "regnet_y_400mf": (16, 48, 27.89, 2.09, 8, 0.25),
    "regnet_y_800mf": (14, 56, 38.84, 2.4, 16, 0.25),
    "regnet_y_1_6gf": (27, 48, 20.71, 2.65, 24, 0.25),
    "regnet_y_3_2gf": (21, 80, 42.63, 2.66, 24, 0.25),
    "regnet_y_8gf": (17, 192, 76.82, 2.19, 56, 0.25),
    "regnet_y_16gf": (18, 200, 106.23, 2.48, 112, 0.25),
    "regnet_y_32gf": (20, 232, 115.89, 2.53, 232, 0.25),
    "regnet_y_128gf": (27, 456, 160.83, 2.52, 264, 0.25),
}


def torchvision_regnet(name: str) -> RegNetSpec:
    depth, w0, wa, wm, group_width, se_ratio = TORCHVISION[name]
    return RegNetSpec(depth=depth, w0=w0, wa=wa, wm=wm, group_width=group_width,
                      se_ratio=se_ratio)


def stages(spec: object) -> list[tuple[int, int]]:
    return [(s.depth, s.width) for s in spec.lower().stages if isinstance(s, ResidualStage)]


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_the_table_is_torchvisions(name: str) -> None:
    depth, w0, wa, wm, group_width, _ = TORCHVISION[name]
    theirs = BlockParams.from_init_params(depth=depth, w_0=w0, w_a=wa, w_m=wm,
                                          group_width=group_width)
    assert stages(torchvision_regnet(name)) == list(zip(theirs.depths, theirs.widths))


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_every_torchvision_regnet_comes_back_with_the_same_stages(name: str) -> None:
    source = torchvision_regnet(name)
    fit = fit_spec(source)
    assert fit.e_fit == 0.0
    assert list(fit.stages) == stages(source)
    again = load_spec(regnet_spec(fit, source))
    assert again.lower() == source.lower()  # the same network, so the same parameter count
    if name == "regnet_x_400mf":
        assert count_params(build(again)) == 5_495_976  # torchvision's published count


@st.composite
def regnets(draw: st.DrawFn) -> RegNetSpec:
    """RegNets whose stages can be told apart from their block widths (no two equal in a row)."""
    try:
        spec = RegNetSpec(
            depth=draw(st.integers(1, 40)), w0=draw(st.integers(8, 256)),
            wa=draw(st.floats(0.5, 256).map(lambda v: round(v, 2))),
            wm=draw(st.floats(1.1, 4.0).map(lambda v: round(v, 3))),
            group_width=draw(st.sampled_from([1, 2, 4, 8, 16, 24, 32, 48, 64, 128])),
            bottleneck_ratio=draw(st.sampled_from([0.25, 0.5, 1.0])),
            se_ratio=draw(st.sampled_from([0.0, 0.25])), input_size=MAX_INPUT_SIZE,
        )
    except ValidationError:
        assume(False)
    widths = [w for _, w in stages(spec)]
    assume(all(a != b for a, b in zip(widths, widths[1:])))
    return spec


@settings(max_examples=100)
@given(regnets())
def test_random_regnets_come_back_with_the_same_stages(source: RegNetSpec) -> None:
    fit = fit_spec(source)
    assert fit.e_fit == 0.0, (fit, stages(source))
    assert RegNetSpec(**regnet_spec(fit, source)).lower() == source.lower()


def e_fit(observed: list[int], fitted: list[int]) -> float:
    """The paper's fit error, written out independently: mean |log w_j - log w'_j|."""
    return sum(abs(math.log(a) - math.log(b)) for a, b in zip(observed, fitted, strict=True)) \
        / len(observed)


def grid_e_fit(widths: list[int], group_width: int, ratio: float) -> float:
    """The best e_fit on a plain grid of (w0, wa, wm), through the family's own rule."""
    best = math.inf
    for w0 in range(16, 513, 16):
        for wm in np.arange(1.2, 3.01, 0.1):
            for wa in range(8, 257, 8):
                plan = regnet_stages(len(widths), w0, float(wa), float(wm), group_width, ratio)
                best = min(best, e_fit(widths, [w for d, w, _ in plan for _ in range(d)]))
    return best


@pytest.mark.parametrize("name", ["resnet50", "resnet18"])
def test_other_networks_get_a_valid_regnet_at_least_as_close_as_a_grid(name: str) -> None:
    source = load_spec(name)
    widths = block_widths(source)
    assert len(widths) == sum(s.depth for s in source.lower().stages
                              if isinstance(s, ResidualStage))
    fit = fit_spec(source)
    assert fit.e_fit > 0 and fit.depth == len(widths)
    assert fit.group_width == 512  # no groups: the widest bottleneck, one group
    fitted = load_spec(regnet_spec(fit, source))
    assert fitted.stem == source.stem and fitted.input_size == 224
    assert stages(fitted) == list(fit.stages)
    assert fit.e_fit == pytest.approx(e_fit(widths, block_widths(fitted)), abs=1e-12)
    assert fit.e_fit <= grid_e_fit(widths, fit.group_width, fit.bottleneck_ratio) + 1e-12


def test_resnet50_block_widths_are_its_stages_expanded() -> None:
    assert block_widths(load_spec("resnet50")) == [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3


def test_an_anynet_sample_fits_to_a_valid_small_input_regnet() -> None:
    source = load_spec({"family": "anynet", "depths": [1, 1, 2, 3], "widths": [32, 64, 64, 128],
                        "bottleneck_ratios": [0.5] * 4, "group_widths": [8] * 4,
                        "in_channels": 1, "num_classes": 10, "input_size": 28, "stem_width": 16})
    fit = fit_spec(source)
    fitted = load_spec(regnet_spec(fit, source))
    assert (fitted.in_channels, fitted.num_classes, fitted.input_size) == (1, 10, 28)
    assert (fitted.stem_width, fitted.bottleneck_ratio, fitted.group_width) == (16, 0.5, 8)
    assert fit.e_fit == pytest.approx(e_fit(block_widths(source), block_widths(fitted)))


def anynet_28(**fields: Any) -> dict[str, Any]:
    """An AnyNet as the shipped spaces sample it at 28 px: simple stem, first stride 1."""
    return {"family": "anynet", "depths": [1, 2, 2, 3], "widths": [32, 64, 96, 128],
            "bottleneck_ratios": [0.5] * 4, "group_widths": [8] * 4, "in_channels": 1,
            "num_classes": 10, "input_size": 28, "stem": "simple", "stem_width": 16,
            "first_stride": 1, **fields}


def test_a_first_stride_1_anynet_with_shared_b_and_g_keeps_its_network_and_macs(
        run_nas: Any, tmp_path: Path) -> None:
    source = tmp_path / "anynet.yaml"
    source.write_text(yaml.safe_dump(anynet_28()))
    result = run_nas("fit-regnet", str(source), "--out", str(tmp_path), "--json")
    assert result.code == 0, result.err
    fit = json.loads(result.out)["fits"][0]
    assert fit["first_stride"] == 1 and fit["e_fit"] == 0.0 and fit["changes"] == []
    assert fit["macs"] == pytest.approx(fit["source_macs"], rel=0.03)
    assert fit["params"] == pytest.approx(fit["source_params"], rel=0.03)
    regnet = load_spec(json.loads(result.out)["out"][0])
    assert [size for _, size in regnet.lower().trace()] == \
        [size for _, size in load_spec(source).lower().trace()]  # 14, 14, 7, 4, 2
    # the RegNet family used to have no first stride: the fit downsampled a stage earlier
    stride_2 = load_spec({**regnet.model_dump(mode="json"), "first_stride": 2})
    assert params_and_macs(stride_2)[1] < 0.5 * fit["source_macs"]


def test_what_the_fit_changes_is_named_with_the_values_chosen() -> None:
    source = load_spec(anynet_28(bottleneck_ratios=[1.0, 0.5, 0.5, 0.25],
                                 group_widths=[2, 4, 8, 8]))
    regnet = load_spec(regnet_spec(fit_spec(source), source))
    assert fit_changes(source, regnet) == [
        "bottleneck ratio per stage 1, 0.5, 0.5, 0.25 made shared: 0.25 (the deepest stage's)",
        "group width per stage 2, 4, 8, 8 made shared: 8 (the largest; a stage whose bottleneck "
        "is narrower gets its bottleneck width, one group)"]
    merged = load_spec(anynet_28(widths=[32, 64, 64, 128]))
    changes = fit_changes(merged, load_spec(regnet_spec(fit_spec(merged), merged)))
    assert changes == ["stages (depth x width) 1x32 2x64 2x64 3x128 become 1x32 4x64 3x128; "
                       "stages of equal width in a row are one stage to a RegNet (3 stages, "
                       "2 downsamplings after the first, instead of 4 and 3)"]
    book = load_spec("d2l_resnet18")
    changes = fit_changes(book, load_spec(regnet_spec(fit_spec(book), book)))
    assert "basic blocks (two 3x3 convs) become bottleneck blocks (1x1, grouped 3x3, 1x1)" \
        in changes and "conv biases dropped (a RegNet's convs have none)" in changes


def test_first_stride_2_is_left_out_of_regnet_specs_so_their_hashes_stay() -> None:
    spec = torchvision_regnet("regnet_x_400mf")
    assert "first_stride" not in spec.model_dump()
    assert RegNetSpec(**spec.model_dump(), first_stride=2).content_hash() == spec.content_hash()
    assert RegNetSpec(**spec.model_dump(), first_stride=1).content_hash() != spec.content_hash()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fit_spec(load_spec("densenet121")), "no residual stages"),
        (lambda: fit_regnet([], 8), "1 to 64 positive block widths, got 0"),
        (lambda: fit_regnet([64] * 65, 8), "got 65 widths"),
        (lambda: fit_regnet([64], 0), "must be positive"),
    ],
)
def test_what_cannot_be_fitted_is_refused_with_one_line(call: object, message: str) -> None:
    with pytest.raises(SpecError, match=message) as refused:
        call()  # type: ignore[operator]
    assert "\n" not in str(refused.value)
