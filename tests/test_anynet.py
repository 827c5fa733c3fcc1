"""AnyNet: the family lowers as the paper's network, and every shipped AnyNet space is valid."""

from __future__ import annotations

import itertools

import optuna
import pytest
import torch
from conftest import count_params

from nas import build
from nas.families import AnyNetSpec, RegNetSpec
from nas.search.space import load_space, space_files
from nas.specs import ResidualStage

DATA = {"in_channels": 1, "num_classes": 10, "input_size": 28}
ANYNET_SPACES = [n for n in sorted(space_files()) if load_space(n).family == "anynet"]


def test_the_paper_spaces_a_to_e_are_shipped() -> None:
    assert ANYNET_SPACES == ["anynet", "anynet_b", "anynet_c", "anynet_d", "anynet_e"]


def test_regnet_x_400mf_as_anynet_is_torchvisions_network() -> None:
    # RegNet only computes AnyNet's per-stage lists: written out, they give the same network,
    # and so torchvision's published parameter count.
    anynet = AnyNetSpec(depths=(1, 2, 7, 12), widths=(32, 64, 160, 400),
                        bottleneck_ratios=(1.0,) * 4, group_widths=(16,) * 4)
    regnet = RegNetSpec(depth=22, w0=24, wa=24.48, wm=2.54, group_width=16)
    assert anynet.lower() == regnet.lower()
    assert count_params(build(anynet)) == 5_495_976


def test_ratios_multiply_strides_and_stem_follow_the_fields() -> None:
    spec = AnyNetSpec(depths=(1, 2), widths=(32, 64), bottleneck_ratios=(0.25, 0.5),
                      group_widths=(4, 8), first_stride=1, stem_width=16, se_ratio=0.25, **DATA)
    stem, *stages = spec.lower().stages
    assert (stem.kind, stem.kernel, stem.stride, stem.width) == ("conv", 3, 2, 16)
    assert all(isinstance(s, ResidualStage) and s.block == "bottleneck" for s in stages)
    assert [s.stride for s in stages] == [1, 2]
    assert [s.bottleneck_width for s in stages] == [8, 32]  # width x ratio: b = 4 and b = 2
    assert [s.groups for s in stages] == [2, 4]
    assert [s.se_ratio for s in stages] == [0.25, 0.25]
    assert [size for _, size in spec.lower().trace()] == [14, 14, 7]


@pytest.mark.parametrize("name", ANYNET_SPACES)
def test_every_point_of_the_grid_is_valid(name: str) -> None:
    # Stages are checked one by one, so every per-stage combination being valid (and the image
    # not collapsing at the deepest point) makes every point of the space valid.
    space = load_space(name)
    grids = [space.dimensions[k].grid() for k in
             ("depths", "widths", "bottleneck_ratios", "group_widths")]
    for depth, width, ratio, group_width in itertools.product(*grids):
        ResidualStage(depth=depth, width=width, bottleneck_ratio=ratio, group_width=group_width,
                      block="bottleneck")
    for corner in space.corners():
        assert space.to_spec(corner, DATA).lower().trace()[-1][1] == 2


@pytest.mark.parametrize("name", ANYNET_SPACES)
def test_sampled_specs_build_and_run_forward_at_28x28(name: str) -> None:
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    x = torch.randn(2, 1, 28, 28)
    for _ in range(3):
        spec = space.suggest(study.ask(), DATA)
        assert isinstance(spec, AnyNetSpec) and len(spec.depths) == 4
        with torch.no_grad():
            out = build(spec).eval()(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()
