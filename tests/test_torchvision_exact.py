"""Presets named after torchvision models are those models: parameters, state_dict, outputs, MACs.

Every torchvision CNN of our families has a preset. For each, nas's model and torchvision's
have the same parameter count (torchvision's published figure), the same state_dict shapes in
torchvision's own order (as is: no re-ordering), and the same outputs when torchvision's model
is given nas's tensors position by position; `build(name, weights=checkpoint)` loads
torchvision's checkpoints the same way.

Cost: models are made on the meta device; nas's gets storage filled from a small pool of random
numbers (a copy, not a random draw per weight) and torchvision's shares those tensors; outputs
are compared at 64x64 (every torchvision CNN here ends in an adaptive pool, and a structural
difference shows at any size); one pair of models is alive at a time. Every model's outputs are
compared, the largest included: at 64x64 EfficientNet-B7 (66M parameters) costs 0.43 GMACs a
forward and EfficientNetV2-L (119M) 1.0, about a second each on one thread; their parameters and
shapes are checked on the meta device like every other's.

Training-time settings that outputs in eval mode cannot show (batch norm momentum, dropout and
stochastic-depth rates) are compared module by module.
"""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch
import torchvision
from conftest import count_params, randomise_batch_norm, state_shapes
from safetensors.torch import save_file
from torch import nn

from nas import build, load_spec
from nas.builder import load_weights
from nas.cost import count_macs
from nas.errors import UserError, WeightsError
from nas.io import dump_spec, preset_names

# Golden figures published by torchvision for each model's default weights (Weights.meta
# "num_params" and "_ops", GMACs), written out so a change in torchvision or nas shows up.
PUBLISHED = {
    "alexnet": (61_100_840, 0.714),
    "vgg11": (132_863_336, 7.609),
    "vgg11_bn": (132_868_840, 7.609),
    "vgg13": (133_047_848, 11.308),
    "vgg13_bn": (133_053_736, 11.308),
    "vgg16": (138_357_544, 15.47),
    "vgg16_bn": (138_365_992, 15.47),
    "vgg19": (143_667_240, 19.632),
    "vgg19_bn": (143_678_248, 19.632),
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
    "wide_resnet50_2": (68_883_240, 11.398),
    "wide_resnet101_2": (126_886_696, 22.753),
    "resnext50_32x4d": (25_028_904, 4.23),
    "resnext101_32x8d": (88_791_336, 16.414),
    "resnext101_64x4d": (83_455_272, 15.46),
    "densenet121": (7_978_856, 2.834),
    "densenet161": (28_681_000, 7.728),
    "densenet169": (14_149_480, 3.36),
    "densenet201": (20_013_928, 4.291),
    "googlenet": (6_624_904, 1.498),  # without the aux heads
    "regnet_x_400mf": (5_495_976, 0.414),
    "regnet_x_800mf": (7_259_656, 0.8),
    "regnet_x_1_6gf": (9_190_136, 1.603),
    "regnet_x_3_2gf": (15_296_552, 3.177),
    "regnet_x_8gf": (39_572_648, 7.995),
    "regnet_x_16gf": (54_278_536, 15.941),
    "regnet_x_32gf": (107_811_560, 31.736),
    "regnet_y_400mf": (4_344_144, 0.402),
    "regnet_y_800mf": (6_432_512, 0.834),
    "regnet_y_1_6gf": (11_202_430, 1.612),
    "regnet_y_3_2gf": (19_436_338, 3.176),
    "regnet_y_8gf": (39_381_472, 8.473),
    "regnet_y_16gf": (83_590_140, 15.912),
    "regnet_y_32gf": (145_046_770, 32.28),
    "regnet_y_128gf": (644_812_894, 374.57),  # default weights: SWAG at 384x384
    "mobilenet_v2": (3_504_872, 0.301),
    "mobilenet_v3_small": (2_542_856, 0.057),
    "mobilenet_v3_large": (5_483_032, 0.217),
    "mnasnet0_5": (2_218_512, 0.104),
    "mnasnet0_75": (3_170_208, 0.215),
    "mnasnet1_0": (4_383_312, 0.314),
    "mnasnet1_3": (6_282_256, 0.526),
    "efficientnet_b0": (5_288_548, 0.386),
    "efficientnet_b1": (7_794_184, 0.687),
    "efficientnet_b2": (9_109_994, 1.088),
    "efficientnet_b3": (12_233_232, 1.827),
    "efficientnet_b4": (19_341_616, 4.394),
    "efficientnet_b5": (30_389_784, 10.266),
    "efficientnet_b6": (43_040_704, 19.068),
    "efficientnet_b7": (66_347_960, 37.746),
    "efficientnet_v2_s": (21_458_488, 8.366),
    "efficientnet_v2_m": (54_139_356, 24.582),
    "efficientnet_v2_l": (118_515_272, 56.08),
}
# Every preset named after a torchvision model is checked, including ones added later.
TORCHVISION_PRESETS = sorted(set(preset_names()) & set(torchvision.models.list_models()))
SIZE = 64  # outputs are compared at SIZE x SIZE


def test_every_torchvision_model_of_our_families_has_a_preset() -> None:
    regnets = {n for n in torchvision.models.list_models() if n.startswith("regnet_")}
    assert len(regnets) == 15
    assert regnets <= set(PUBLISHED)
    mobile = {n for n in torchvision.models.list_models()
              if n.startswith(("mobilenet_", "mnasnet", "efficientnet_"))}
    assert len(mobile) == 18 and mobile <= set(PUBLISHED)
    assert sorted(PUBLISHED) == TORCHVISION_PRESETS


def torchvision_model(name: str, **kwargs: object) -> nn.Module:
    """torchvision's model on the meta device: no storage, no initialisation."""
    if name == "googlenet":
        kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
    if not name.startswith("regnet_"):
        with torch.device("meta"):
            return torchvision.models.get_model(name, **kwargs)
    regnet = torchvision.models.regnet.RegNet

    def regnet_on_meta(*args: object, **kw: object) -> nn.Module:
        with torch.device("meta"):
            return regnet(*args, **kw)

    # RegNet's builder computes its widths with real tensors (.tolist()), so only the module
    # itself is made on the meta device.
    with mock.patch.object(torchvision.models.regnet, "RegNet", regnet_on_meta):
        return torchvision.models.get_model(name, **kwargs)


def nas_model(name: str) -> nn.Module:
    """nas's model on the meta device."""
    with torch.device("meta"):
        return build(name)


def fill(model: nn.Module, generator: torch.Generator) -> None:
    """Every tensor from a pool of random numbers at Kaiming's scale; BN stats randomised.

    Copying from a pool of a prime number of values costs far less than a random draw per
    weight (regnet_y_128gf has 645M); each tensor starts at its own offset in the pool.
    """
    pool = torch.randn(1_048_573, generator=generator)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if not tensor.is_floating_point():
                tensor.zero_()  # BN's step counters
                continue
            fan_in = tensor[0].numel() if tensor.dim() > 1 else 0
            scale = math.sqrt(2 / fan_in) if fan_in else 0.1  # weights; biases small
            flat, done = tensor.view(-1), 0
            offset = int(torch.randint(len(pool), (1,), generator=generator))
            while done < flat.numel():  # the pool from `offset` on, round and round
                take = min(len(pool) - offset, flat.numel() - done)
                torch.mul(pool[offset:offset + take], scale, out=flat[done:done + take])
                done, offset = done + take, 0
    randomise_batch_norm(model, generator)


def share_in_order(source: nn.Module, target: nn.Module) -> None:
    """target (on the meta device) gets source's tensors, position by position; shapes checked.

    The tensors are shared, not copied: the same values at no cost in time or memory.
    """
    theirs = target.state_dict()
    values = list(source.state_dict().values())
    assert len(theirs) == len(values), f"{len(values)} tensors in nas, {len(theirs)} in torchvision"
    state = OrderedDict(zip(theirs, values))
    state._metadata = theirs._metadata  # type: ignore[attr-defined]  # MNASNet reads its version
    target.load_state_dict(state, strict=True, assign=True)


def assert_same_outputs(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 1e-5 of the outputs' scale, and not trivially: they depend on the input.

    Random weights in deep residual networks give outputs of any magnitude (resnet152: ~1e7),
    so the tolerance is relative to the largest output. Outputs that no longer depend on the
    input (activations vanished into the classifier's bias) would match whatever the layers;
    here the two inputs' outputs differ by at least 1% of the scale.
    """
    assert actual.shape == expected.shape == (2, 1000)
    scale = expected.abs().max()
    assert torch.isfinite(scale) and scale > 0
    assert (expected[0] - expected[1]).abs().max() > 0.01 * scale
    torch.testing.assert_close(actual / scale, expected / scale, rtol=1e-5, atol=1e-5)


class Pair:
    """nas's model and torchvision's, in eval mode, with the same tensors."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ours = nas_model(name).to_empty(device="cpu").eval()
        fill(self.ours, torch.Generator().manual_seed(1))
        self.theirs = torchvision_model(name).eval()
        share_in_order(self.ours, self.theirs)


@pytest.fixture(scope="module", params=TORCHVISION_PRESETS)
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Built once per preset; module scope keeps only one pair of (large) models alive."""
    made = Pair(request.param)
    yield made
    del made.ours, made.theirs


def test_parameter_count_is_torchvisions(pair: Pair) -> None:
    golden = torchvision.models.get_model_weights(pair.name).DEFAULT.meta["num_params"]
    assert count_params(pair.ours) == count_params(pair.theirs) == golden
    assert golden == PUBLISHED[pair.name][0]


def test_state_dict_shapes_are_torchvisions_in_order(pair: Pair) -> None:
    assert state_shapes(pair.ours.state_dict()) == state_shapes(pair.theirs.state_dict())


def test_outputs_are_torchvisions_with_the_same_weights(pair: Pair) -> None:
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_same_outputs(pair.ours(x), pair.theirs(x))


@pytest.mark.parametrize("name", TORCHVISION_PRESETS)
def test_macs_are_torchvisions_published_figures(name: str) -> None:
    """To the published rounding (0.001 GMACs), at the crop size of each of the model's weights."""
    weights = torchvision.models.get_model_weights(name)
    assert weights.DEFAULT.meta["_ops"] == PUBLISHED[name][1]
    assert load_spec(name).input_size == weights.DEFAULT.transforms().crop_size[0]
    ours = nas_model(name).eval()
    for size, ops in {(w.transforms().crop_size[0], w.meta["_ops"]) for w in weights}:
        x = torch.zeros(1, 3, size, size, device="meta")  # MACs depend on shapes only
        assert count_macs(ours, x) / 1e9 == pytest.approx(ops, abs=0.0005 + 1e-9), size


# Controls: the comparisons above fail for a network that differs from torchvision's.

@pytest.mark.parametrize(
    ("name", "change"),
    [("googlenet", {"pool_style": "book"}), ("googlenet", {"norm_eps": 1e-5}),
     ("alexnet", {"first_padding": 3})],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_outputs_tell_apart_a_network_with_the_same_tensors(
    name: str, change: dict[str, object]
) -> None:
    with torch.device("meta"):
        ours = build({**dump_spec(load_spec(name)), **change})
    ours = ours.to_empty(device="cpu").eval()
    fill(ours, torch.Generator().manual_seed(1))
    theirs = torchvision_model(name).eval()
    share_in_order(ours, theirs)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), pytest.raises(AssertionError, match="not close"):
        assert_same_outputs(ours(x), theirs(x))


@pytest.mark.parametrize(
    ("name", "change"),
    [("efficientnet_b5", {"norm_eps": 1e-5}), ("efficientnet_b0", {"se_gate": "hardsigmoid"}),
     ("efficientnet_b0", {"se_act": "relu"}), ("efficientnet_v2_s", {"act": "relu6"}),
     ("mobilenet_v3_small", {"acts": ["relu"] * 11}),
     ("mnasnet0_5", {"strides": [2, 2, 2, 2, 1, 1]}),
     ("mobilenet_v2", {"strides": [1, 2, 2, 2, 2, 1, 1]})],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_outputs_tell_apart_a_mobile_network_with_the_same_tensors(
    name: str, change: dict[str, object]
) -> None:
    test_outputs_tell_apart_a_network_with_the_same_tensors(name, change)


def training_settings(model: nn.Module) -> list[tuple[str, float, ...]]:
    """In module order: each batch norm's (eps, momentum), each dropout's and stochastic depth's
    p (torchvision's StochasticDepth and nas's have the same name; at p 0 it does nothing, and
    only torchvision's EfficientNet keeps one there)."""
    out: list[tuple[str, float, ...]] = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            out.append(("norm", m.eps, m.momentum))
        elif isinstance(m, nn.Dropout) or (type(m).__name__ == "StochasticDepth" and m.p > 0):
            out.append((type(m).__name__, m.p))
    return out


@pytest.mark.parametrize("name", TORCHVISION_PRESETS)
def test_training_settings_are_torchvisions(name: str) -> None:
    """What eval outputs cannot show: norm momentum, dropout, stochastic depth, in order."""
    ours, theirs = training_settings(nas_model(name)), training_settings(torchvision_model(name))
    assert ours == theirs
    if name.startswith("efficientnet_"):  # rate x block index / blocks, from 0 up to below 0.2
        rates = [s[1] for s in ours if s[0] == "StochasticDepth"]
        assert 0 < rates[0] < rates[-1] < 0.2


def test_state_dict_order_tells_apart_regnet_with_its_branch_first() -> None:
    spec = load_spec("regnet_x_400mf").lower()
    stages = [s.model_copy(update={"shortcut_first": False}) if s.kind == "residual" else s
              for s in spec.stages]
    with torch.device("meta"):
        branch_first = build(spec.model_copy(update={"stages": tuple(stages)}))
    theirs = torchvision_model("regnet_x_400mf")
    assert count_params(branch_first) == count_params(theirs)
    assert state_shapes(branch_first.state_dict()) != state_shapes(theirs.state_dict())


# Loading torchvision's checkpoints: state_dicts of its (randomly initialised) models.

def saved_torchvision_state(name: str, path: Path) -> nn.Module:
    """torchvision's model for `name` (GoogLeNet with its aux heads), filled, saved to path.

    Filled rather than left at torchvision's initialisation: GoogLeNet's (std 0.01) makes
    activations vanish, so its outputs would not depend on the weights that were loaded.
    """
    kwargs = {"aux_logits": True} if name == "googlenet" else {}
    model = torchvision_model(name, **kwargs).to_empty(device="cpu").eval()
    fill(model, torch.Generator().manual_seed(3))
    torch.save(model.state_dict(), path)
    return model


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "regnet_y_400mf", "mobilenet_v2",
                                  "mobilenet_v3_small", "mnasnet0_5", "efficientnet_b0",
                                  "efficientnet_v2_s"])
def test_build_with_a_torchvision_checkpoint_gives_torchvisions_outputs(
    name: str, tmp_path: Path
) -> None:
    theirs = saved_torchvision_state(name, tmp_path / f"{name}.pth")
    if name == "googlenet":  # the checkpoint has aux1/aux2; nas's model has no aux heads
        assert any(k.startswith("aux1.") for k in torch.load(tmp_path / f"{name}.pth"))
    ours = build(name, weights=tmp_path / f"{name}.pth").eval()
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert_same_outputs(ours(x), theirs(x))


def test_a_checkpoint_without_batch_norm_counters_loads(tmp_path: Path) -> None:
    """Checkpoints saved before PyTorch 0.4.1 lack num_batches_tracked; they load, at 0."""
    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    model = build("resnet18")
    model.stages[0][1].num_batches_tracked.fill_(7)
    load_weights(model, tmp_path / "old.pth")
    assert model.stages[0][1].num_batches_tracked == 0
    assert torch.equal(model.stages[0][0].weight, state["conv1.weight"])


def test_a_refused_file_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save(dict(list(state.items())[:-1]), tmp_path / "short.pth")
    model = build("resnet18")
    model.stages[0][1].num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match="101 tensors in the file, 102 in the model"):
        load_weights(model, tmp_path / "short.pth")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_nas_safetensors_load_by_name(tmp_path: Path) -> None:
    """`nas train` writes model.safetensors, which keeps names but not order."""
    source = build("regnet_x_400mf").eval()
    randomise_batch_norm(source, torch.Generator().manual_seed(5))
    save_file(source.state_dict(), tmp_path / "model.safetensors")
    loaded = build("regnet_x_400mf", weights=tmp_path / "model.safetensors").eval()
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def write_bad_file(kind: str, path: Path) -> None:
    """A file that build("resnet18", weights=path) must refuse."""
    resnet18 = torchvision_model("resnet18").to_empty(device="cpu").state_dict()  # any values
    if kind == "other-model":
        torch.save(torchvision.models.squeezenet1_0().state_dict(), path)
    elif kind == "fewer-tensors":
        torch.save(dict(list(resnet18.items())[:-2]), path)
    elif kind == "truncated":
        torch.save(resnet18, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "not-a-dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "pickled-module":
        torch.save(nn.Linear(2, 2), path)
    elif kind == "plain-pickle":
        path.write_bytes(pickle.dumps(print))
    elif kind == "torchvision-safetensors":
        save_file(resnet18, path)
    elif kind == "not-safetensors":
        path.write_text("hello")


BAD_FILES = [
    pytest.param("other-model", "x.pth",
                 "x.pth: tensor 0 is features.0.weight (96, 3, 7, 7) in the file but "
                 "stages.0.0.weight (64, 3, 7, 7) in the model (52 tensors in the file, 102 in "
                 "the model)", id="other-model"),
    pytest.param("fewer-tensors", "x.pth",
                 "x.pth: 120 tensors in the file, 122 in the model (the first 120 match)",
                 id="fewer-tensors"),
    pytest.param("truncated", "x.pth", "x.pth: not a readable weights file (RuntimeError: "
                 "PytorchStreamReader failed reading zip archive", id="truncated"),
    pytest.param("not-a-dict", "x.pth",
                 "x.pth: expected a state_dict (names to tensors), got a list", id="not-a-dict"),
    pytest.param("pickled-module", "x.pth", "x.pth: holds pickled objects other than tensors; "
                 "save model.state_dict() instead", id="pickled-module"),
    pytest.param("plain-pickle", "x.pkl", "x.pkl: holds pickled objects other than tensors",
                 id="plain-pickle"),
    pytest.param("torchvision-safetensors", "x.safetensors",
                 "x.safetensors: its tensor names are not the model's, and a .safetensors file "
                 "does not keep the order of its tensors", id="torchvision-safetensors"),
    pytest.param("not-safetensors", "x.safetensors",
                 "x.safetensors: not a readable weights file (SafetensorError:",
                 id="not-safetensors"),
    pytest.param("missing", "x.pth", "x.pth: no such file", id="missing"),
]


@pytest.mark.parametrize(("kind", "filename", "message"), BAD_FILES)
def test_a_wrong_weights_file_is_one_clear_line(
    kind: str, filename: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / filename
    write_bad_file(kind, path)
    with pytest.raises(WeightsError) as refused:
        build("resnet18", weights=path)
    text = str(refused.value)
    assert isinstance(refused.value, UserError)
    assert text.startswith(f"{tmp_path}/{message}")
    assert "\n" not in text
