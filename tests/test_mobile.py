"""MBConv stage kinds and the mobile families: block structure, rounding, stochastic depth,
refusals in one line, `nas summary` and the meta-device cost on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import CliRunner, count_params
from torchvision.models._utils import _make_divisible
from torchvision.models.mnasnet import _round_to_multiple_of

from nas import build, load_spec
from nas.builder.blocks import FusedMBConv, MBConv, SqueezeExcite
from nas.builder.layers import StochasticDepth
from nas.cost import MetaCost, estimate, measure, stage_table
from nas.data import DATASETS, DataSplits, RawData, make_splits
from nas.families.mbconv import block_rates, make_divisible
from nas.specs import NetworkSpec
from nas.train import Budget, TrainConfig, fit, seeded_build

# A small MBConv network at Fashion-MNIST's size: every option of the stage kinds in use.
SMALL = {"family": "mbconv", "in_channels": 1, "num_classes": 10, "input_size": 28,
         "stem_width": 16, "stem_stride": 1, "depths": [1, 2, 2], "widths": [16, 24, 32],
         "expansions": [1, 4, 6], "kernels": [3, 5, 7], "strides": [1, 2, 2],
         "se_ratios": [0, 0.25, 0.25], "blocks": ["fused", "mbconv", "mbconv"],
         "acts": ["relu", "hardswish", "silu"], "se_gate": "hardsigmoid", "head_width": 64,
         "stochastic_depth": 0.2}
V3_SMALL = {"family": "mobilenet_v3", "in_channels": 1, "num_classes": 10, "input_size": 32,
            "kernels": [3, 5], "expanded_widths": [16, 64], "widths": [16, 24],
            "se": [True, True], "acts": ["relu", "hardswish"], "strides": [2, 1],
            "last_channel": 128}


def network(*stages: dict[str, Any], size: int = 16) -> NetworkSpec:
    return NetworkSpec(in_channels=8, input_size=size, num_classes=4, stages=stages)


def blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, (MBConv, FusedMBConv))]


# ---- rounding -------------------------------------------------------------------------------

def test_make_divisible_is_torchvisions_and_mnasnets_rounding() -> None:
    for tenths in range(1, 4000):
        value = tenths / 10
        for divisor in (1, 4, 8, 16):
            assert make_divisible(value, divisor) == _make_divisible(value, divisor)
        assert make_divisible(value, 8) == _round_to_multiple_of(value, 8)


def test_stochastic_depth_rates_grow_with_the_block_index_as_torchvisions() -> None:
    rates = block_rates([1, 2, 3], 0.3)
    flat = [r for stage in rates for r in stage]
    assert [len(r) for r in rates] == [1, 2, 3]
    assert flat == [0.3 * float(i) / 6 for i in range(6)]  # torchvision's expression
    assert block_rates([2, 2], 0.0) == [(), ()]


# ---- block structure ------------------------------------------------------------------------

def test_mbconv_expands_only_when_the_width_changes_and_adds_the_input_when_shapes_allow() -> None:
    model = build(network({"kind": "mbconv", "width": 8, "depth": 2, "expansion": 1.0},
                          {"kind": "mbconv", "width": 16, "stride": 2, "expansion": 3.0}))
    first, second, third = blocks(model)
    convs = [[m for m in b.modules() if isinstance(m, torch.nn.Conv2d)] for b in (first, third)]
    assert [c.groups for c in convs[0]] == [8, 1]  # depthwise, projection: no 1x1 expansion
    assert [(c.in_channels, c.out_channels, c.groups) for c in convs[1]] == [
        (8, 24, 1), (24, 24, 24), (24, 16, 1)]
    assert (first.residual, second.residual, third.residual) == (True, True, False)
    off = build(network({"kind": "mbconv", "width": 8, "expansion": 1.0, "residual": False}))
    assert not blocks(off)[0].residual


def test_squeeze_width_comes_from_the_block_input_unless_given() -> None:
    model = build(network({"kind": "mbconv", "width": 16, "depth": 2, "expansion": 4.0,
                           "se_ratio": 0.25, "se_act": "silu", "se_gate": "hardsigmoid"}))
    se = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert [(s.reduce.in_channels, s.reduce.out_channels) for s in se] == [(32, 2), (64, 4)]
    assert isinstance(se[0].act, torch.nn.SiLU) and isinstance(se[0].gate, torch.nn.Hardsigmoid)
    given = build(network({"kind": "mbconv", "width": 16, "se_width": 8}))
    assert [m.reduce.out_channels for m in given.modules() if isinstance(m, SqueezeExcite)] == [8]


def test_fused_mbconv_is_one_kxk_conv_at_expansion_one_else_kxk_then_1x1() -> None:
    model = build(network({"kind": "fused_mbconv", "width": 8, "expansion": 1.0, "kernel": 5},
                          {"kind": "fused_mbconv", "width": 16, "expansion": 4.0, "stride": 2}))
    one, two = blocks(model)
    shapes = [[tuple(m.weight.shape) for m in b.modules() if isinstance(m, torch.nn.Conv2d)]
              for b in (one, two)]
    assert shapes == [[(8, 8, 5, 5)], [(32, 8, 3, 3), (16, 32, 1, 1)]]
    assert one.residual and not two.residual


def test_stochastic_depth_drops_whole_samples_in_training_and_is_identity_in_eval() -> None:
    drop = StochasticDepth(0.5)
    x = torch.ones(4000, 3, 2, 2)
    assert torch.equal(drop.eval()(x), x)
    out = drop.train()(x)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled
    assert (per_sample == per_sample[:, :1]).all()  # a whole sample at once
    assert abs(out.mean().item() - 1.0) < 0.05  # expectation kept
    model = build(network({"kind": "mbconv", "width": 8, "depth": 2,
                           "stochastic_depth": [0.0, 0.9]}))
    assert [type(b.drop).__name__ for b in blocks(model)] == ["Identity", "StochasticDepth"]


# ---- refusals -------------------------------------------------------------------------------

BAD = [
    pytest.param({"expansions": [0, 4, 6]}, "expansions.0: Input should be greater than 0",
                 id="expansion-0"),
    pytest.param({"kernels": [3, 4, 7]}, "kernels.1: kernel 4 must be odd to keep the size",
                 id="kernel-4"),
    pytest.param({"se_ratios": [0, 1.5, 0.25]},
                 "se_ratios.1: Input should be less than or equal to 1", id="se-ratio-1.5"),
    pytest.param({"expansions": [1, 0.01, 6]},
                 "stage 2 (mbconv): expanded width rounds to 0 channels (expansion 0.01 x 16 "
                 "input channels)", id="width-rounds-to-0"),
    pytest.param({"depths": [1, 2]}, "per-stage lists must have the same length: depths has 2, "
                 "widths has 3, expansions has 3, kernels has 3, strides has 3, se_ratios has 3, "
                 "blocks has 3, acts has 3", id="lists-differ"),
]


@pytest.mark.parametrize("command", ["validate", "summary"])
@pytest.mark.parametrize(("change", "message"), BAD)
def test_a_bad_mbconv_spec_is_one_line_and_exit_2(
    run_nas: CliRunner, tmp_path: Path, command: str, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SMALL, **change}))
    result = run_nas(command, str(path))
    assert result.code == 2
    assert result.err_lines == [f"nas: error: {path}: {message}"]


@pytest.mark.parametrize(("stage", "message"), [
    ({"kind": "mbconv", "width": 512, "depth": 2, "expansion": 64.0},
     r"stage 0 \(mbconv\): expanded width 32768 \(expansion 64 x 512\): at most 16384 channels"),
    ({"kind": "mbconv", "width": 8, "stochastic_depth": [0.1, 0.2]},
     "stochastic_depth has 2 rates for 1 blocks"),
    ({"kind": "fused_mbconv", "width": 8, "kernel": 2}, "kernel 2 must be odd"),
    ({"kind": "mbconv", "width": 8, "stochastic_depth": [1.0]}, "less than 1"),
])
def test_generic_mbconv_stages_are_checked(stage: dict[str, Any], message: str) -> None:
    """Checked from the spec alone: nothing is built."""
    with pytest.raises(ValueError, match=message):
        network(stage)


# ---- nas summary and the meta-device cost ---------------------------------------------------

def test_summary_of_efficientnet_b0_is_torchvisions_and_lists_its_stage_kinds(
        run_nas: CliRunner) -> None:
    result = run_nas("summary", "efficientnet_b0", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["params"], round(data["macs"] / 1e9, 3)) == (5_288_548, 0.386)
    assert [s["kind"] for s in data["stages"]] == ["conv"] + ["mbconv"] * 7 + ["conv", "head"]
    assert data["output_shape"] == [1, 1000]
    table = run_nas("summary", "efficientnet_v2_s")
    assert table.code == 0 and "fused_mbconv" in table.out and "21,458,488" in table.out


@pytest.mark.parametrize("spec", [SMALL, V3_SMALL], ids=["mbconv", "mobilenet_v3"])
def test_the_meta_estimate_equals_the_cpu_measurement(spec: dict[str, Any]) -> None:
    arch = load_spec(spec)
    est = estimate(arch)
    real = build(arch)
    assert est.cost == measure(real, arch.in_channels, arch.input_size)  # to the byte
    assert list(est.stages) == stage_table(real, arch.in_channels, arch.input_size)
    assert est.cost.params == count_params(real) == MetaCost(arch).params


def synthetic_data() -> DataSplits:
    """96 random 28x28 grey images in 10 classes: enough for one training step."""
    x = torch.randint(0, 256, (96, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(96) % 10
    raw = RawData(x, y, x[:8].clone(), y[:8].clone(), source="synthetic")
    return make_splits(DATASETS["fashion-mnist"], raw, torch.device("cpu"), 0.25, seed=0)


def test_training_memory_equals_what_nas_train_counts_with_stochastic_depth() -> None:
    """Stochastic depth draws a mask per block in training: counted the same on meta."""
    fitted = fit(seeded_build(SMALL), synthetic_data(), Budget(epochs=1, max_steps=1,
                                                               batch_size=32), TrainConfig())
    assert fitted.memory_source == "cpu_estimate"
    assert estimate(SMALL, batch_size=32).training.total == fitted.peak_memory_bytes


def test_every_mobile_preset_builds_on_meta_within_its_published_size() -> None:
    for name in ("mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "efficientnet_b0"):
        costs = MetaCost(name)
        assert costs.cost.macs > 0 and costs.params == count_params(build(name))


def test_channels_last_on_the_cpu_ignores_the_narrow_squeeze_convs() -> None:
    """SE's 1x1 convs on pooled maps (4 channels here) do not make the network NCHW."""
    from nas.train.policy import use_channels_last

    cpu = torch.device("cpu")
    with_se = build(SMALL)
    assert min(m.out_channels for m in with_se.modules() if isinstance(m, torch.nn.Conv2d)) < 16
    assert use_channels_last(with_se, cpu, None)
    narrow = build({**SMALL, "stem_width": 8, "divisor": 1})
    assert not use_channels_last(narrow, cpu, None)  # an 8-channel stem conv still counts
