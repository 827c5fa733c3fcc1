"""Presets named after torchvision models are those models, to the parameter and to the output."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torchvision
from conftest import count_params, randomise_batch_norm, state_shapes
from torch import nn

from nas import build, load_spec
from nas.cost import count_macs
from nas.io import preset_names

# Golden figures published by torchvision (Weights.meta "num_params" and "_ops", GMACs), written
# out here so a change in either torchvision or nas shows up as a mismatch.
PUBLISHED = {
    "vgg11": (132_863_336, 7.609),
    "vgg16": (138_357_544, 15.470),
    "resnet18": (11_689_512, 1.814),
    "resnet50": (25_557_032, 4.089),
    "resnext50_32x4d": (25_028_904, 4.230),
    "densenet121": (7_978_856, 2.834),
}
# Every preset named after a torchvision model is checked, including ones added later.
TORCHVISION_PRESETS = sorted(set(preset_names()) & set(torchvision.models.list_models()))


def test_every_required_torchvision_preset_is_shipped() -> None:
    assert set(PUBLISHED) <= set(TORCHVISION_PRESETS)


def torchvision_model(name: str) -> nn.Module:
    """torchvision's model without initialising it: on the meta device where its builder allows."""
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name)
    except NotImplementedError:  # RegNet's builder computes widths with tensors (.tolist())
        return torchvision.models.get_model(name)


class Pair:
    """The nas model (initialised by nas) and torchvision's model (storage only), in eval mode.

    torchvision's model is made on the meta device and given empty storage: every tensor in it
    is overwritten from the nas model before use, so its own initialisation would be wasted time.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.spec = load_spec(name)
        self.ours = build(name).eval()
        self.theirs = torchvision_model(name).to_empty(device="cpu").eval()
        self.weights = torchvision.models.get_model_weights(name).DEFAULT


@pytest.fixture(scope="module", params=TORCHVISION_PRESETS)
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Built once per preset; module scope keeps only one pair of large models alive."""
    yield Pair(request.param)


def test_parameter_count_is_torchvisions(pair: Pair) -> None:
    golden = pair.weights.meta["num_params"]
    assert count_params(pair.ours) == count_params(pair.theirs) == golden
    if pair.name in PUBLISHED:
        assert golden == PUBLISHED[pair.name][0]


def test_state_dict_shapes_are_torchvisions_in_order(pair: Pair) -> None:
    theirs = pair.theirs.state_dict()
    assert state_shapes(pair.ours.state_dict()) == state_shapes(theirs)


def test_outputs_are_torchvisions_with_the_same_weights(pair: Pair) -> None:
    generator = torch.Generator().manual_seed(1)
    randomise_batch_norm(pair.ours, generator)
    theirs = pair.theirs.state_dict()
    with torch.no_grad():  # nas's tensors into torchvision's, position by position
        for target, source in zip(theirs.values(), pair.ours.state_dict().values(), strict=True):
            target.copy_(source)
    x = torch.randn(2, 3, pair.spec.input_size, pair.spec.input_size, generator=generator)
    with torch.no_grad():
        expected, actual = pair.theirs(x), pair.ours(x)
    assert actual.shape == expected.shape == (2, 1000)
    assert expected.std() > 1e-2  # not a comparison of two constant outputs
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TORCHVISION_PRESETS)
def test_macs_are_torchvisions_published_figure(name: str) -> None:
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]
    if name in PUBLISHED:
        assert published == pytest.approx(PUBLISHED[name][1])
    with torch.device("meta"):  # MACs depend on shapes only
        ours, x = build(name).eval(), torch.zeros(1, 3, 224, 224)
    theirs = torchvision_model(name).to("meta").eval()
    macs = count_macs(ours, x)
    assert macs == pytest.approx(published * 1e9, rel=0.01)
    assert macs == count_macs(theirs, x)
