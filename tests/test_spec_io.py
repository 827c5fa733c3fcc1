"""Spec files: loading from every kind of source, exact YAML/JSON round trips, the content hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import SHIPPED_PRESETS, count_params

import nas
from nas import build, load_spec, save_spec
from nas.errors import SpecError
from nas.io import dump_spec, preset_names, presets_dir
from nas.specs import NetworkSpec

PRESETS = preset_names()


def test_the_shipped_presets_are_all_there() -> None:
    assert set(SHIPPED_PRESETS) <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_then_load_round_trips_exactly(name: str, suffix: str, tmp_path: Path) -> None:
    spec = load_spec(name)
    first = save_spec(spec, tmp_path / f"first{suffix}")
    again = load_spec(first)
    assert again == spec
    assert again.content_hash() == spec.content_hash()
    second = save_spec(again, tmp_path / f"second{suffix}")
    assert second.read_text() == first.read_text()  # byte-identical: nothing drifts on re-save
    if suffix == ".json":
        assert json.loads(first.read_text()) == dump_spec(spec)
    else:
        assert yaml.safe_load(first.read_text()) == dump_spec(spec)


def test_saved_yaml_has_one_field_a_line_and_each_list_on_one(tmp_path: Path) -> None:
    regnet = load_spec("regnet_x_400mf")  # no lists: it used to be one flow mapping `{...}`
    text = save_spec(regnet, tmp_path / "regnet.yaml").read_text()
    assert text.splitlines()[0] == "family: regnet" and "{" not in text
    assert len(text.splitlines()) == len(dump_spec(regnet))
    vgg = save_spec(load_spec("vgg11"), tmp_path / "vgg.yaml").read_text()
    assert "\nconv_arch: [[1, 64], [1, 128], [2, 256], [2, 512], [2, 512]]\n" in vgg
    assert "\nhidden: [4096, 4096]\n" in vgg


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_loads_the_same_by_name_path_and_dict(name: str) -> None:
    path = presets_dir() / f"{name}.yaml"
    by_name = load_spec(name)
    assert load_spec(path) == by_name
    assert load_spec(str(path)) == by_name
    assert load_spec(yaml.safe_load(path.read_text())) == by_name
    assert load_spec(by_name) is by_name
    assert by_name.family == yaml.safe_load(path.read_text())["family"]


def test_public_api_loads_and_builds_from_a_path_a_dict_and_a_preset(tmp_path: Path) -> None:
    data = {"family": "lenet", "num_classes": 7, "widths": [4, 8]}
    path = tmp_path / "lenet.yaml"
    path.write_text(yaml.safe_dump(data))
    models = [nas.build(path), nas.build(str(path)), nas.build(data),
              nas.build(nas.load_spec(path)), nas.build(nas.load_spec(data).lower())]
    counts = {count_params(m) for m in models}
    assert len(counts) == 1
    # 5x5 convs 3->4 and 4->8 with BN; 8*4*4 -> 120 -> 84 with BN1d; -> 7
    assert counts == {(75 * 4 + 4 + 8) + (100 * 8 + 8 + 16) + (128 * 120 + 120 + 240)
                      + (120 * 84 + 84 + 168) + (84 * 7 + 7)}
    assert count_params(build("d2l_lenet_bn")) == 44_878
    assert {"load_spec", "build", "save_spec"} <= set(nas.__all__)


def test_yml_suffix_and_files_without_a_suffix_load(tmp_path: Path) -> None:
    text = (presets_dir() / "resnet18.yaml").read_text()
    (tmp_path / "a.yml").write_text(text)
    (tmp_path / "spec").write_text(text)
    assert load_spec(tmp_path / "a.yml") == load_spec(tmp_path / "spec") == load_spec("resnet18")


# Content hash: same network, same hash; different network, different hash.

def test_hash_ignores_key_order_and_written_out_defaults() -> None:
    minimal = {"family": "resnet", "depths": [2, 2, 2, 2], "widths": [64, 128, 256, 512]}
    reordered = dict(reversed(list(minimal.items())))
    full = dump_spec(load_spec(minimal))
    assert len(full) > len(minimal)  # the defaults really are written out
    full_reordered = dict(sorted(full.items()))
    hashes = {load_spec(d).content_hash() for d in (minimal, reordered, full, full_reordered)}
    assert hashes == {load_spec("resnet18").content_hash()}


def test_hash_is_of_the_network_not_of_unused_fields() -> None:
    # bottleneck_ratio only matters for bottleneck blocks: a basic ResNet ignores it
    base = {"family": "resnet", "depths": [1, 1], "widths": [8, 16], "input_size": 32}
    assert (load_spec({**base, "bottleneck_ratio": 0.5}).content_hash()
            == load_spec(base).content_hash())
    assert load_spec(base).content_hash() == load_spec(base).lower().content_hash()
    # a BN epsilon without BN, dropout placement without dropout
    for data, unused in [({"family": "googlenet"}, {"norm_eps": 0.001}),
                         ({"family": "alexnet", "dropout": 0.0}, {"dropout_before": True})]:
        assert load_spec({**data, **unused}).content_hash() == load_spec(data).content_hash()


@pytest.mark.parametrize(
    "change",
    [{"widths": [8, 24]}, {"depths": [1, 2]}, {"input_size": 64}, {"num_classes": 9},
     {"in_channels": 1}, {"block": "bottleneck"}, {"stem": "small"}, {"conv_bias": True}],
    ids=lambda c: next(iter(c)),
)
def test_hash_changes_with_the_architecture(change: dict[str, object]) -> None:
    base = {"family": "resnet", "depths": [1, 1], "widths": [8, 16], "input_size": 32}
    assert load_spec({**base, **change}).content_hash() != load_spec(base).content_hash()


def test_every_preset_has_its_own_hash() -> None:
    hashes = {load_spec(n).content_hash() for n in PRESETS}
    assert len(hashes) == len(PRESETS)
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes)


def test_hash_is_stable_across_versions() -> None:
    """Studies store hashes: changing them (e.g. a new stage field) must be a deliberate act."""
    assert load_spec("resnet18").content_hash() == "7e2bbd2112cbf441", (
        "the content hash of resnet18 changed; every stored hash changes with it"
    )


def test_fields_added_later_enter_the_hash_only_when_used() -> None:
    """Stage fields added after hashes were stored are left out of dumps at their defaults."""
    spec = load_spec("resnet18").lower()
    data = spec.model_dump(mode="json")
    assert "ceil_mode" not in data["stages"][1] and "shortcut_first" not in data["stages"][2]
    assert "norm_eps" not in data["stages"][0] and "classifier_dropout" not in data["head"]
    data["stages"][2]["shortcut_first"] = True
    changed = NetworkSpec.model_validate(data)
    assert changed.stages[2].shortcut_first  # type: ignore[union-attr]
    assert changed.content_hash() != spec.content_hash()
    assert NetworkSpec.model_validate(changed.model_dump(mode="json")) == changed


def test_generic_spec_hash_is_stable_within_a_process() -> None:
    spec = load_spec("densenet121").lower()
    rebuilt = NetworkSpec.model_validate(json.loads(spec.model_dump_json()))
    assert rebuilt.content_hash() == spec.content_hash()


# Saving never clobbers.

def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("precious\n")
    with pytest.raises(SpecError, match="already exists"):
        save_spec(load_spec("vgg11"), path)
    assert path.read_text() == "precious\n"
    save_spec(load_spec("vgg11"), path, overwrite=True)
    assert load_spec(path) == load_spec("vgg11")


# Reading is safe and its errors are SpecErrors naming the file.

def test_yaml_python_tags_are_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SpecError, match="evil.yaml"):
        load_spec(path)
    assert not marker.exists()
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        f"family: vgg\nconv_arch: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(SpecError, match="nested.yaml"):
        load_spec(nested)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("list.yaml", "- family: vgg\n", "expected a mapping with a 'family' field, got list"),
        ("empty.yaml", "", "expected a mapping with a 'family' field, got NoneType"),
        ("broken.yaml", "family: [vgg\n", "not valid yaml"),
        ("broken.json", '{"family": "vgg",', "not valid json"),
        ("nofamily.yaml", "widths: [1]\n", "family: missing"),
    ],
)
def test_unreadable_files_are_spec_errors(
    name: str, text: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert message in str(refused.value)


def test_missing_files_and_unknown_names_are_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(SpecError, match="neither a spec file nor a preset; presets: .*resnet18"):
        load_spec("resnet19")
