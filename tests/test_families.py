"""Every family: any spec is either refused with a clear validation error, or it builds and trains.

Property tests draw specs (small sizes, some of them invalid on purpose) from each family's
fields; a spec that validates must build and run forward and backward at its declared input size
with the right output shape and finite values. Nothing else may escape from torch.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nas import build
from nas.errors import SpecError, describe
from nas.families import ARCH_ADAPTER, FAMILIES
from nas.io import FAMILY_TAGS, load_spec, preset_names
from nas.specs import (
    MAX_BLOCKS,
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_INPUT_SIZE,
    MAX_KERNEL,
    MAX_STAGES,
    MAX_WIDTH,
    NetworkSpec,
    count_blocks,
)

SIZES = st.integers(8, 64)
WIDTHS = st.integers(4, 32)
SMALL = st.integers(1, 3)
BOOLS = st.booleans()


# Channel and class fields every family shares; `input_size` is always drawn (kept small).
COMMON = {"in_channels": st.integers(1, 3), "num_classes": st.integers(1, 10)}


@st.composite
def per_stage(draw: st.DrawFn, **fields: st.SearchStrategy[Any]) -> dict[str, list[Any]]:
    """Per-stage lists of one length, or (one draw in five) of mismatched lengths."""
    n = draw(st.integers(1, 3))
    lengths = {k: n for k in fields}
    if draw(st.integers(0, 4)) == 0:
        lengths[next(iter(fields))] = draw(st.integers(1, 4))
    return {k: draw(st.lists(s, min_size=lengths[k], max_size=lengths[k]))
            for k, s in fields.items()}


def family_dict(family: str, required: dict[str, st.SearchStrategy[Any]],
                optional: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A spec as plain data: required fields always, the others sometimes (else defaults)."""
    return st.fixed_dictionaries(
        {"family": st.just(family), **required}, optional={**COMMON, **optional}
    )


def with_lists(base: st.SearchStrategy[dict[str, Any]],
               lists: st.SearchStrategy[dict[str, list[Any]]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda a, b: {**a, **b}, base, lists)


INCEPTION = st.fixed_dictionaries({
    "c1": st.integers(1, 8), "c2": st.tuples(st.integers(1, 8), st.integers(1, 8)),
    "c3": st.tuples(st.integers(1, 8), st.integers(1, 8)), "c4": st.integers(1, 8),
})
STEMS = st.sampled_from(["imagenet", "simple", "small"])
# ResNeXt's grouping: one of cardinality or group width, or (wrongly) both or neither.
GROUPING = st.one_of(
    st.fixed_dictionaries({"cardinality": st.sampled_from([1, 2, 4, 32])}),
    st.fixed_dictionaries({"group_width": st.sampled_from([1, 2, 4, 3])}),
    st.fixed_dictionaries({"cardinality": st.just(2), "group_width": st.just(2)}),
    st.just({}),
)

STRATEGIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "vgg": family_dict(
        "vgg",
        {"conv_arch": st.lists(st.tuples(st.integers(0, 2), WIDTHS), min_size=1, max_size=3),
         "input_size": SIZES, "hidden": st.lists(WIDTHS, max_size=2)},
        {"batch_norm": BOOLS, "conv_bias": BOOLS, "head": st.sampled_from(["fc", "gap"]),
         "dropout": st.sampled_from([0.0, 0.5]),
         "pool_size": st.none() | SMALL},
    ),
    "resnet": with_lists(
        family_dict(
            "resnet", {"input_size": SIZES},
            {"block": st.sampled_from(["basic", "bottleneck"]),
             "bottleneck_ratio": st.sampled_from([0.25, 0.5, 1.0]), "stem": STEMS,
             "stem_width": st.integers(4, 16), "conv_bias": BOOLS, "shortcut_norm": BOOLS},
        ),
        per_stage(depths=st.integers(0, 2), widths=WIDTHS),
    ),
    "resnext": with_lists(
        with_lists(
            family_dict(
                "resnext", {"input_size": SIZES},
                {"bottleneck_ratio": st.sampled_from([0.25, 0.5, 1.0]), "stem": STEMS,
                 "stem_width": st.integers(4, 16), "conv_bias": BOOLS},
            ),
            per_stage(depths=st.integers(1, 2), widths=st.sampled_from([8, 16, 24, 32])),
        ),
        GROUPING,
    ),
    "densenet": family_dict(
        "densenet",
        {"block_sizes": st.lists(st.integers(0, 3), min_size=1, max_size=3), "input_size": SIZES},
        {"growth_rate": st.integers(1, 8), "init_channels": st.integers(4, 16),
         "compression": st.sampled_from([0.25, 0.5, 1.0]), "bottleneck": BOOLS,
         "bn_size": st.integers(1, 4), "stem": STEMS, "conv_bias": BOOLS},
    ),
    "regnet": family_dict(
        "regnet",
        {"depth": st.integers(1, 6), "w0": st.integers(8, 32),
         "wa": st.floats(1.0, 16.0).map(lambda v: round(v, 2)),
         "wm": st.floats(1.1, 3.0).map(lambda v: round(v, 2)),
         "group_width": st.integers(1, 16), "input_size": SIZES},
        {"bottleneck_ratio": st.sampled_from([0.25, 0.5, 1.0, 2.0]),
         "se_ratio": st.sampled_from([0.0, 0.25]), "stem": STEMS,
         "stem_width": st.integers(4, 16)},
    ),
    "anynet": with_lists(
        family_dict(
            "anynet", {"input_size": SIZES},
            {"se_ratio": st.sampled_from([0.0, 0.25]), "stem": STEMS,
             "stem_width": st.integers(4, 16), "first_stride": st.integers(1, 2)},
        ),
        per_stage(depths=st.integers(1, 2), widths=st.sampled_from([8, 16, 24, 32]),
                  bottleneck_ratios=st.sampled_from([0.25, 0.5, 1.0]),
                  group_widths=st.sampled_from([1, 2, 4, 8])),
    ),
    "alexnet": family_dict(
        "alexnet",
        {"input_size": st.integers(8, 128), "hidden": st.lists(WIDTHS, max_size=2)},
        {"widths": st.tuples(WIDTHS, WIDTHS, WIDTHS, WIDTHS, WIDTHS),
         "dropout": st.sampled_from([0.0, 0.5]), "batch_norm": BOOLS,
         "first_padding": st.integers(0, 3), "pool_size": st.none() | SMALL,
         "dropout_before": BOOLS},
    ),
    "nin": family_dict(
        "nin",
        {"blocks": st.lists(
            st.tuples(WIDTHS, st.integers(1, 5), st.integers(1, 2), st.integers(0, 2)),
            min_size=1, max_size=3),
         "input_size": st.integers(8, 96)},
        {"dropout": st.sampled_from([0.0, 0.5])},
    ),
    "googlenet": family_dict(
        "googlenet",
        {"input_size": SIZES, "stem_widths": st.tuples(WIDTHS, WIDTHS, WIDTHS),
         "groups": st.lists(st.lists(INCEPTION, min_size=1, max_size=2), min_size=1, max_size=3)},
        {"batch_norm": BOOLS, "conv_bias": BOOLS, "norm_eps": st.sampled_from([1e-5, 1e-3]),
         "c3_kernel": st.sampled_from([3, 5]),
         "pool_style": st.sampled_from(["book", "torchvision"]),
         "dropout": st.sampled_from([0.0, 0.2])},
    ),
    "mobilenet_v2": with_lists(
        family_dict(
            "mobilenet_v2", {"input_size": SIZES},
            {"width_mult": st.sampled_from([0.1, 0.25, 0.5]),
             "round_nearest": st.sampled_from([1, 8]), "stem_width": WIDTHS,
             "head_width": WIDTHS, "dropout": st.sampled_from([0.0, 0.2])},
        ),
        per_stage(expansions=st.sampled_from([1, 2.5, 6, 6, 0]), widths=WIDTHS,
                  depths=st.sampled_from([1, 2, 1, 2, 0]), strides=st.integers(1, 2)),
    ),
    "mobilenet_v3": with_lists(
        family_dict(
            "mobilenet_v3", {"input_size": SIZES},
            {"width_mult": st.sampled_from([0.25, 0.5, 1.0]), "stem_width": WIDTHS,
             "last_channel": WIDTHS, "dropout": st.sampled_from([0.0, 0.2])},
        ),
        per_stage(kernels=st.sampled_from([3, 4, 5]), expanded_widths=WIDTHS, widths=WIDTHS,
                  se=BOOLS, acts=st.sampled_from(["relu", "hardswish"]),
                  strides=st.integers(1, 2)),
    ),
    "mnasnet": with_lists(
        family_dict(
            "mnasnet", {"input_size": SIZES},
            {"alpha": st.sampled_from([0.1, 0.25, 0.5]), "stem_width": WIDTHS,
             "separable_width": WIDTHS, "head_width": WIDTHS},
        ),
        per_stage(expansions=st.sampled_from([1, 3, 6]), kernels=st.sampled_from([3, 5, 3, 5, 6]),
                  depths=st.sampled_from([1, 2, 1, 2, 0]), widths=WIDTHS,
                  strides=st.integers(1, 2)),
    ),
    "mbconv": with_lists(
        family_dict(
            "mbconv", {"input_size": SIZES},
            {"act": st.sampled_from(["relu", "relu6", "hardswish", "silu"]),
             "se_act": st.none() | st.sampled_from(["relu", "silu"]),
             "se_gate": st.sampled_from(["sigmoid", "hardsigmoid"]), "stem_width": WIDTHS,
             "stem_stride": st.integers(1, 2), "head_width": st.none() | WIDTHS,
             "width_mult": st.sampled_from([0.5, 1.0]), "depth_mult": st.sampled_from([0.5, 1.0]),
             "divisor": st.sampled_from([1, 8]),
             "stochastic_depth": st.sampled_from([0.0, 0.2])},
        ),
        per_stage(depths=st.integers(1, 2), widths=WIDTHS,
                  expansions=st.sampled_from([1, 3, 6, 6, 3, 0.01]),
                  kernels=st.sampled_from([3, 5, 3, 5, 7, 4]),
                  strides=st.integers(1, 2), se_ratios=st.sampled_from([0, 0.25, 0, 0.25, 1.5]),
                  blocks=st.sampled_from(["mbconv", "fused"]),
                  acts=st.sampled_from(["relu", "silu"])),
    ),
    "efficientnet": family_dict(
        "efficientnet", {"input_size": SIZES, "width_mult": st.sampled_from([0.1, 0.25]),
                         "depth_mult": st.sampled_from([0.1, 0.3])},
        {"stem_stride": st.integers(1, 2), "dropout": st.sampled_from([0.0, 0.2]),
         "stochastic_depth": st.sampled_from([0.0, 0.2, 1.0])},
    ),
    "lenet": family_dict(
        "lenet", {"input_size": SIZES},
        {"widths": st.lists(st.integers(2, 16), min_size=1, max_size=3),
         "kernel": st.integers(1, 5), "hidden": st.lists(WIDTHS, max_size=2),
         "act": st.sampled_from(["sigmoid", "relu"]), "batch_norm": BOOLS,
         "pool": st.sampled_from(["avg", "max"]), "conv_bias": BOOLS},
    ),
}


def check(data: dict[str, Any]) -> str:
    """'rejected' with a one-line reason, or 'built' after forward and backward succeed."""
    try:
        spec = ARCH_ADAPTER.validate_python(data)
    except ValidationError as error:
        with pytest.raises(SpecError) as loaded:
            load_spec(data)
        reason = describe(error, FAMILY_TAGS)
        assert reason and "\n" not in reason
        assert str(loaded.value) == f"spec: {reason}"
        return "rejected"
    assert load_spec(data) == spec
    model = build(spec).train()
    x = torch.randn(2, spec.in_channels, spec.input_size, spec.input_size)
    out = model(x)
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} takes no part in the forward pass"
        assert torch.isfinite(p.grad).all(), name
    with torch.no_grad():  # the spec's shape trace is what the modules really produce
        h = x
        for stage, (channels, size) in zip(model.eval().stages, spec.lower().trace(), strict=True):
            h = stage(h)
            assert tuple(h.shape) == (2, channels, size, size)
        assert torch.isfinite(model.head(h)).all()
    return "built"


def test_every_family_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(FAMILY_TAGS) == {f.model_fields["family"].default
                                                   for f in FAMILIES}


@pytest.mark.parametrize("family", sorted(STRATEGIES))
def test_specs_are_refused_or_build_forward_and_backward(family: str) -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=25)
    @given(STRATEGIES[family])
    def run(data: dict[str, Any]) -> None:
        assert data["family"] == family
        outcomes[check(data)] += 1

    run()
    # Both paths are exercised: the strategies reach valid and invalid corners of the family.
    assert outcomes["built"] >= 5, outcomes
    assert sum(outcomes.values()) >= 25


# Stages of the generic spec as plain data, for specs that no family writes (e.g. pool padding).
STAGES = st.one_of(
    st.fixed_dictionaries({
        "kind": st.just("conv"), "width": WIDTHS, "depth": SMALL, "kernel": st.integers(1, 5),
        "stride": st.integers(1, 2), "padding": st.none() | st.integers(0, 2),
        "groups": st.sampled_from([1, 2, 4]), "preact": BOOLS, "norm": BOOLS}),
    st.fixed_dictionaries({
        "kind": st.just("pool"), "mode": st.sampled_from(["max", "avg"]),
        "kernel": st.integers(1, 3), "stride": st.none() | st.integers(1, 2),
        "padding": st.integers(0, 2), "ceil_mode": BOOLS}),
    st.fixed_dictionaries({
        "kind": st.just("residual"), "depth": SMALL, "width": st.sampled_from([8, 16]),
        "stride": st.integers(1, 2), "block": st.sampled_from(["basic", "bottleneck"]),
        "bottleneck_ratio": st.sampled_from([0.5, 1.0]), "se_ratio": st.sampled_from([0, 0.25]),
        "shortcut_first": BOOLS}),
    st.fixed_dictionaries({
        "kind": st.just("inception"), "c1": SMALL, "c2": st.tuples(SMALL, SMALL),
        "c3": st.tuples(SMALL, SMALL), "c4": SMALL, "c3_kernel": st.integers(1, 5),
        "norm": BOOLS, "norm_eps": st.sampled_from([1e-5, 1e-3])}),
)


def test_generic_specs_are_refused_or_build_forward_and_backward() -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=25)
    @given(st.lists(STAGES, min_size=1, max_size=4), SIZES)
    def run(stages: list[dict[str, Any]], size: int) -> None:
        try:
            spec = NetworkSpec(in_channels=4, input_size=size, num_classes=5, stages=stages)
        except ValidationError:
            outcomes["rejected"] += 1
            return
        out = build(spec)(torch.randn(2, 4, size, size))
        assert out.shape == (2, 5) and torch.isfinite(out).all()
        out.sum().backward()
        outcomes["built"] += 1

    run()
    assert outcomes["built"] >= 5, outcomes


# Validation a person understands: the message names the field or the stage and the problem.
REFUSALS = [
    pytest.param(
        {"family": "resnext", "depths": [1], "widths": [100], "cardinality": 32},
        "stage 0: bottleneck width 50 is not divisible by cardinality 32",
        id="channels-not-divisible-by-cardinality",
    ),
    pytest.param(
        {"family": "resnext", "depths": [1], "widths": [100], "group_width": 3},
        "bottleneck width 50 (width 100 x ratio 0.5) is not divisible by group_width 3",
        id="channels-not-divisible-by-group-width",
    ),
    pytest.param(
        {"family": "lenet", "input_size": 8},
        "stage 2 (conv) gets a 2x2 input and its output collapses to 0x0: "
        "input_size 8 is too small",
        id="size-collapses",
    ),
    pytest.param(
        {"family": "vgg", "conv_arch": [[1, 8]] * 6, "input_size": 32},
        "stage 11 (pool) gets a 1x1 input and its output collapses to 0x0: "
        "input_size 32 is too small",
        id="size-collapses-late",
    ),
    pytest.param(
        {"family": "resnet", "depths": [2, 0], "widths": [8, 16]},
        "depths.1: Input should be greater than 0", id="zero-depth",
    ),
    pytest.param(
        {"family": "densenet", "block_sizes": [2], "growth_rate": -4},
        "growth_rate: Input should be greater than 0", id="negative-width",
    ),
    pytest.param(
        {"family": "vgg", "conv_arch": [[1, 8]], "colour": "red"},
        "colour: unknown field", id="unknown-field",
    ),
    pytest.param(
        {"family": "mobilenet", "width": 1.0},
        "unknown 'family' mobilenet; expected one of 'vgg', 'resnet', 'resnext', 'densenet', "
        "'regnet', 'anynet', 'alexnet', 'nin', 'googlenet', 'lenet', 'mobilenet_v2', "
        "'mobilenet_v3', 'mnasnet', 'mbconv', 'efficientnet'",
        id="unknown-family",
    ),
    pytest.param({"conv_arch": [[1, 8]]}, "family: missing", id="no-family"),
    pytest.param(
        {"family": "vgg", "conv_arch": [[1, 8]], "input_size": "big"},
        "input_size: Input should be a valid integer", id="wrong-type-int",
    ),
    pytest.param(
        {"family": "resnet", "depths": 2, "widths": [8]},
        "depths: Input should be a valid tuple", id="wrong-type-list",
    ),
    pytest.param(
        {"family": "lenet", "batch_norm": "maybe"},
        "batch_norm: Input should be a valid boolean", id="wrong-type-bool",
    ),
    pytest.param(
        {"family": "resnet", "depths": [2, 2], "widths": [8, 16, 32]},
        "per-stage lists must have the same length: depths has 2, widths has 3",
        id="mismatched-lengths",
    ),
    pytest.param(
        {"family": "anynet", "depths": [1, 1], "widths": [32, 64], "bottleneck_ratios": [1.0],
         "group_widths": [8, 8]},
        "per-stage lists must have the same length: depths has 2, widths has 2, "
        "bottleneck_ratios has 1, group_widths has 2",
        id="anynet-mismatched-lengths",
    ),
    pytest.param(
        {"family": "anynet", "depths": [1], "widths": [24], "bottleneck_ratios": [0.25],
         "group_widths": [4]},
        "bottleneck width 6 (width 24 x ratio 0.25) is not divisible by group_width 4",
        id="anynet-groups-do-not-divide",
    ),
    pytest.param(
        {"family": "resnext", "depths": [1], "widths": [64]},
        "give exactly one of cardinality or group_width", id="resnext-grouping",
    ),
    pytest.param(
        {"family": "regnet", "depth": 3, "w0": 8, "wa": 1e308, "wm": 2.0, "group_width": 8},
        "wa: Input should be less than or equal to 256", id="regnet-huge-slope",
    ),
    pytest.param(
        {"family": "regnet", "depth": 3, "w0": 8, "wa": float("inf"), "wm": 2.0,
         "group_width": 8},
        "wa: Input should be less than or equal to 256", id="regnet-infinite-slope",
    ),
    pytest.param(  # was a ZeroDivisionError
        {"family": "regnet", "depth": 1, "w0": 8, "wa": 1, "wm": 2, "group_width": 8,
         "bottleneck_ratio": 0.1},
        "stage width 8 x bottleneck_ratio 0.1 is below one channel", id="regnet-no-channel",
    ),
    # upper bounds (nas.specs): the field and the bound, before anything is built
    pytest.param(
        {"family": "vgg", "conv_arch": [[1, 200000]], "in_channels": 1, "num_classes": 10,
         "input_size": 28},
        "conv_arch.0.1: at most 16384 channels", id="bound-vgg-channels",
    ),
    pytest.param(
        {"family": "resnet", "depths": [1_000_000], "widths": [64]},
        "depths.0: at most 1024 blocks", id="bound-stage-depth",
    ),
    pytest.param(
        {"family": "resnet", "depths": [600, 600], "widths": [8, 16]},
        "the network has 1202 blocks and layers (stage depths summed): at most 1024",
        id="bound-total-blocks",
    ),
    pytest.param(
        {"family": "densenet", "block_sizes": [400], "growth_rate": 48},
        "stage 2 (dense) gives 19264 channels: at most 16384", id="bound-dense-growth",
    ),
    pytest.param(
        {"family": "densenet", "block_sizes": [2], "bn_size": 1000, "growth_rate": 32},
        "lowered DenseStage.bottleneck_width: at most 16384 channels",
        id="bound-lowered-field",
    ),
    pytest.param(
        {"family": "resnet", "depths": [1], "widths": [8192], "block": "bottleneck",
         "bottleneck_ratio": 4},
        "bottleneck width 32768 (width 8192 x ratio 4.0): at most 16384 "
        "channels", id="bound-bottleneck-width",
    ),
    pytest.param(
        {"family": "vgg", "conv_arch": [[1, 8]], "hidden": [10**9]},
        "hidden.0: at most 16384 units", id="bound-hidden",
    ),
    pytest.param(
        {"family": "lenet", "input_size": 10**6}, "input_size: at most 4096 pixels",
        id="bound-input-size",
    ),
    pytest.param(
        {"family": "lenet", "kernel": 999}, "kernel: at most 64 pixels", id="bound-kernel",
    ),
    pytest.param(
        {"family": "nin", "blocks": [[8, 1, 1, 64]] * 40, "input_size": 4096},
        "stage 0 (mlpconv) gives 4224x4224 pixels: at most 4096 a side", id="bound-growing-size",
    ),
    pytest.param(
        {"family": "lenet", "num_classes": 10**8}, "num_classes: at most 100000 classes",
        id="bound-classes",
    ),
    pytest.param(
        {"family": "resnet", "depths": [1] * 65, "widths": [8] * 65},
        "depths: Tuple should have at most 64 items", id="bound-stage-count",
    ),
]


@pytest.mark.parametrize(("data", "message"), REFUSALS)
def test_invalid_specs_are_refused_with_a_message_naming_the_problem(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as refused:
        load_spec(data)
    text = str(refused.value)
    assert text.startswith(f"spec: {message}")
    assert "\n" not in text


def largest_sizes(net: NetworkSpec) -> dict[str, tuple[int, int]]:
    """A network's largest value of each bounded kind, with its bound."""
    widths, pixels = [], []
    for stage in net.stages:
        for name in ("width", "growth_rate", "bottleneck_width", "c1", "c2", "c3", "c4"):
            value = getattr(stage, name, None)  # c2, c3: (reduce, out) pairs
            widths += list(value) if isinstance(value, tuple) else [value] if value else []
        if hasattr(stage, "expanded"):  # inverted residuals: the widest layer is the expanded one
            widths.append(stage.expanded(stage.width))
        pixels += [getattr(stage, name, None) or 0 for name in ("kernel", "stride", "padding")]
    return {
        "channels": (max(widths + [c for c, _ in net.trace()] + list(net.head.hidden)), MAX_WIDTH),
        "depth": (max(getattr(s, "depth", 1) for s in net.stages), MAX_DEPTH),
        "blocks": (count_blocks(net.stages), MAX_BLOCKS),
        "stages": (len(net.stages), 4 * MAX_STAGES),
        "input_size": (net.input_size, MAX_INPUT_SIZE),
        "kernel": (max(pixels), MAX_KERNEL),
        "classes": (net.num_classes, MAX_CLASSES),
    }


def test_every_preset_is_far_within_the_bounds() -> None:
    largest: Counter[str] = Counter()
    for name in preset_names():  # torchvision's CNNs up to regnet_y_128gf, the book's
        for kind, (value, bound) in largest_sizes(load_spec(name).lower()).items():
            largest[kind] = max(largest[kind], value)
            assert 2 * value <= bound, f"{name}: {kind} {value} is not far below {bound}"
    assert largest["channels"] == 7392 and largest["blocks"] == 104  # regnet_y_128gf, densenet201
    assert largest["input_size"] == 600 and largest["kernel"] == 11  # efficientnet_b7


def test_grouped_conv_channels_must_divide() -> None:
    with pytest.raises(ValidationError, match=r"stage 1 \(conv\): channels 6->8 are not "
                                              r"divisible by groups=4"):
        NetworkSpec(stages=[{"kind": "conv", "width": 6},
                            {"kind": "conv", "width": 8, "groups": 4}])


def test_pool_padding_over_half_the_kernel_is_refused() -> None:
    with pytest.raises(ValidationError, match="pool padding 2 is more than half the kernel 2"):
        NetworkSpec(input_size=8, stages=[{"kind": "pool", "kernel": 2, "padding": 2}])


# Arbitrary data in a family's fields: validation answers with a SpecError and nothing else.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                   max_size=3),
    max_leaves=8,
)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.model_fields["family"].default)
def test_arbitrary_field_values_are_valid_or_a_spec_error(family: type) -> None:
    tag = family.model_fields["family"].default
    keys = st.sampled_from(sorted(set(family.model_fields) - {"family"}) + ["extra"])
    outcomes: Counter[str] = Counter()

    @settings(max_examples=60)
    @given(st.dictionaries(keys, JSON_VALUES, max_size=6))
    def run(fields: dict[str, Any]) -> None:
        try:
            load_spec({**fields, "family": tag})
            outcomes["valid"] += 1
        except SpecError as error:
            assert "\n" not in str(error)
            outcomes["refused"] += 1

    run()
    assert outcomes["refused"] > 0, outcomes


def test_inception_third_branch_kernel_must_be_odd() -> None:
    with pytest.raises(ValidationError, match="c3_kernel 4 must be odd to keep the size"):
        NetworkSpec(input_size=8, stages=[{"kind": "inception", "c1": 1, "c2": [1, 1],
                                           "c3": [1, 1], "c4": 1, "c3_kernel": 4}])


def test_classifier_dropout_needs_a_classifier() -> None:
    with pytest.raises(ValidationError, match="classifier_dropout needs a classifier"):
        NetworkSpec(num_classes=4, stages=[{"kind": "conv", "width": 4}],
                    head={"linear": False, "classifier_dropout": 0.2})
