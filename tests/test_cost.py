"""Costs measured on the built module: hand-counted cases, totals that add up, memory bounds."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import count_params
from torch import nn

from nas import build, load_spec
from nas.cost import count_activations, count_macs, measure, stage_table
from nas.io import preset_names

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
