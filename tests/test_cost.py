"""Costs measured on the built module and estimated on the meta device: hand-counted cases,
totals that add up, memory bounds, the meta estimate against the CPU, the gate."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import count_params
from torch import nn

from nas import build, load_spec
from nas.cost import (
    MetaCost,
    OverMemory,
    check_forward,
    check_limits,
    count_activations,
    count_macs,
    estimate,
    measure,
    stage_table,
)
from nas.data import DATASETS, DataSplits, RawData, make_splits
from nas.device import MemoryLimit
from nas.io import preset_names
from nas.memory import OPTIMIZER_SLOTS
from nas.train import Budget, TrainConfig, fit, seeded_build

# Presets named after torchvision models repeat the same stages at larger sizes, and
# test_torchvision_exact.py measures all of them; here one or two per family is enough.
FAMILY_EXAMPLES = {"alexnet", "vgg11", "vgg16", "resnet18", "resnet50", "resnext50_32x4d",
                   "densenet121", "googlenet", "regnet_x_400mf", "regnet_y_400mf"}
PRESETS = [n for n in preset_names()
           if n in FAMILY_EXAMPLES or n not in torchvision.models.list_models()]


def on_meta(name: str) -> nn.Module:
    """A preset's network without storage: shapes, parameters and MACs cost nothing to get."""
    with torch.device("meta"):
        return build(name).eval()


def meta_input(name: str) -> torch.Tensor:
    spec = load_spec(name)
    return torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size, device="meta")


# Presets cheap enough to run for real (under ~3 GMACs); the rest are checked on the meta device.
CHEAP = [n for n in PRESETS if count_macs(on_meta(n), meta_input(n)) < 3e9]


@pytest.mark.parametrize(
    ("module", "size", "macs"),
    [
        (nn.Conv2d(3, 8, 3, padding=1, bias=False), 16, 3 * 8 * 9 * 16 * 16),
        (nn.Conv2d(3, 8, 3, padding=1), 16, 3 * 8 * 9 * 16 * 16),  # biases are not MACs
        (nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4), 8, (8 // 4) * 16 * 9 * 4 * 4),
        (nn.Sequential(nn.Conv2d(2, 4, 1), nn.ReLU(), nn.MaxPool2d(2)), 4, 2 * 4 * 16),
    ],
)
def test_macs_of_single_layers_are_counted_by_hand(module: nn.Module, size: int, macs: int) -> None:
    x = torch.zeros(1, module.in_channels if hasattr(module, "in_channels") else 2, size, size)
    assert count_macs(module, x) == macs


def test_lenet_costs_match_a_hand_count() -> None:
    model = build("d2l_lenet_bn")
    cost = measure(model, 1, 28)
    # conv 1->6 5x5 at 24x24, conv 6->16 5x5 at 8x8, then 256->120->84->10
    assert cost.macs == 6 * 25 * 24 * 24 + 6 * 16 * 25 * 8 * 8 + 256 * 120 + 120 * 84 + 84 * 10
    assert cost.activations == 6 * 24 * 24 + 16 * 8 * 8 + 120 + 84 + 10  # conv and linear outputs
    assert cost.params == 44_878 == count_params(model)


@pytest.mark.parametrize("name", PRESETS)
def test_stage_table_adds_up_to_the_totals(name: str) -> None:
    spec, model = load_spec(name), on_meta(name)
    rows = stage_table(model, spec.in_channels, spec.input_size)
    x = meta_input(name)
    assert sum(r.params for r in rows) == count_params(model)
    assert sum(r.macs for r in rows) == count_macs(model, x)
    assert [r.kind for r in rows] == [s.kind for s in spec.lower().stages] + ["head"]
    assert [r.index for r in rows] == list(range(len(rows)))
    trace = spec.lower().trace()
    assert [r.output_shape for r in rows[:-1]] == [(1, c, s, s) for c, s in trace]
    assert rows[-1].output_shape == (1, spec.num_classes)
    assert count_activations(model, x) > 0
    assert all(r.macs >= 0 and r.params >= 0 for r in rows)


@pytest.mark.parametrize("name", CHEAP)
def test_peak_memory_lies_between_what_must_and_what_could_be_alive(name: str) -> None:
    spec, model = load_spec(name), build(name).eval()
    cost = measure(model, spec.in_channels, spec.input_size)
    x = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    outputs = leaf_outputs(model, x)
    kept = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in outputs}
    activation_peak = cost.peak_memory_bytes - weights - x.numel() * x.element_size()
    assert cost.activations > 0 and cost.params == count_params(model)
    assert cost.peak_memory_bytes >= weights >= 4 * cost.params
    # the largest output of one layer must be alive at once ...
    assert activation_peak >= max(t.numel() * t.element_size() for t in outputs)
    # ... but a no-grad forward frees as it goes: less than every output kept alive
    assert activation_peak < sum(kept.values())


def leaf_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every leaf module's output of one forward, all kept alive (so storages are distinct)."""
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out))
               for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return outputs


def test_measure_leaves_the_model_as_it_found_it() -> None:
    model = build("d2l_resnet18").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure(model, 1, 96)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched
    model.eval()
    stage_table(model, 1, 96)
    assert not model.training


def test_costs_are_per_image_and_scale_with_input_size() -> None:
    model = build("resnet18").eval()
    small, large = measure(model, 3, 64), measure(model, 3, 128)  # every size halves evenly
    assert small.params == large.params
    assert large.macs == pytest.approx(4 * small.macs, rel=0.02)
    assert large.activations == pytest.approx(4 * small.activations, rel=0.05)
    assert large.peak_memory_bytes > small.peak_memory_bytes


# One small network per family (the book's, or a dict at 32 px where the preset is large).
SMALL = {
    "lenet": "d2l_lenet_bn", "nin": "d2l_nin", "vgg": "d2l_vgg11_small", "alexnet": "d2l_alexnet",
    "resnet": "resnet_small", "resnext": "resnext_small", "densenet": "d2l_densenet",
    "googlenet": "d2l_googlenet",
    "regnet": {"family": "regnet", "depth": 4, "w0": 16, "wa": 8.0, "wm": 2.0, "group_width": 8,
               "se_ratio": 0.25, "input_size": 32, "num_classes": 10},
    "anynet": {"family": "anynet", "depths": [1, 2], "widths": [16, 32],
               "bottleneck_ratios": [1.0, 0.5], "group_widths": [8, 8], "input_size": 32},
}


@pytest.mark.parametrize("family", sorted(SMALL))
def test_the_meta_estimate_equals_the_cpu_measurement(family: str) -> None:
    spec = load_spec(SMALL[family])
    assert spec.family == family
    est = estimate(spec)
    real = build(spec)
    assert est.cost == measure(real, spec.in_channels, spec.input_size)  # to the byte
    assert list(est.stages) == stage_table(real, spec.in_channels, spec.input_size)
    assert est.cost.params == count_params(real) > 0


def synthetic_data() -> DataSplits:
    """96 random 28x28 grey images in 10 classes: enough for one training step."""
    x = torch.randint(0, 256, (96, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(96) % 10
    raw = RawData(x, y, x[:8].clone(), y[:8].clone(), source="synthetic")
    return make_splits(DATASETS["fashion-mnist"], raw, torch.device("cpu"), 0.25, seed=0)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("name", ["d2l_lenet_bn", "resnet_small", "resnext_small"])
def test_training_memory_equals_what_nas_train_counts_in_a_real_step(name: str,
                                                                     optimizer: str) -> None:
    """Tolerance: none. Both count what autograd saves in one step, plus weights, gradients,
    optimiser state and the batch; the meta figure agrees with the CPU one to the byte."""
    fitted = fit(seeded_build(name), synthetic_data(), Budget(epochs=1, max_steps=1, batch_size=32),
                 TrainConfig(optimizer=optimizer))
    assert fitted.memory_source == "cpu_estimate"
    training = estimate(name, batch_size=32, optimizer=optimizer).training
    assert training.total == fitted.peak_memory_bytes
    weights = 4 * count_params(build(name))
    assert training.gradients == weights
    assert training.optimiser == OPTIMIZER_SLOTS[optimizer] * weights
    assert training.activations > estimate(name, batch_size=8).training.activations


def test_a_huge_spec_within_the_bounds_is_costed_without_allocating() -> None:
    """16384 channels at 4096 px: a petabyte forward, measured on meta in the test process."""
    spec = load_spec({"family": "vgg", "conv_arch": [[1, 16384]], "in_channels": 1,
                      "num_classes": 10, "input_size": 4096})
    est = estimate(spec, batch_size=1024)
    assert est.cost.params > 2.8e14 and est.cost.peak_memory_bytes > 2**50  # weights alone
    assert est.training.total > 1024 * 4 * 16384 * 4096**2
    refusal = r"^big: a forward of one image needs 1\.0 PiB .*; limit 1\.0 GiB \(--max-memory\)"
    with pytest.raises(OverMemory, match=refusal):
        check_forward("big", est.cost, MemoryLimit(2**30, "--max-memory"))


def test_the_gate_measures_only_up_to_the_first_limit_exceeded() -> None:
    over_params = MetaCost("resnext_small", batch_size=64)
    checks = check_limits(over_params, max_params=10, max_macs=1, memory=MemoryLimit(1, "x"))
    assert [c.name for c in checks] == ["params"] and checks[0].excess == over_params.params - 10
    assert over_params.figures() == {"params": over_params.params}  # no forward was run
    assert "forward" not in over_params.__dict__ and "training" not in over_params.__dict__
    fits = MetaCost("resnext_small", batch_size=64)
    checks = check_limits(fits, max_params=10**9, max_macs=10**12, memory=MemoryLimit(1, "x"))
    assert [(c.name, c.excess > 0) for c in checks] == [
        ("params", False), ("macs", False), ("memory", True)]
    assert checks[-1].text.startswith("memory ") and "at batch 64 > 1 B (x)" in checks[-1].text
    est = estimate("resnext_small", batch_size=64)
    assert fits.figures() == {**est.cost.as_dict(), "training_memory_bytes": est.training.total}
