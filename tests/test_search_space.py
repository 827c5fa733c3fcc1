"""Search spaces: every shipped space samples only valid specs, with a fixed parameter set."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nas.errors import SpecError
from nas.search.space import load_space, space_files

DATA = {"in_channels": 1, "num_classes": 10, "input_size": 28}
SPACES = sorted(space_files())


def test_one_space_per_family() -> None:
    families = {load_space(n).family for n in SPACES}
    assert {"vgg", "resnet", "resnext", "densenet", "regnet"} <= families


@pytest.mark.parametrize("name", SPACES)
def test_random_samples_are_valid_and_use_fixed_params(name: str) -> None:
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    param_sets, hashes = set(), set()
    for _ in range(60):
        trial = study.ask()
        spec = space.suggest(trial, DATA)  # raises SpecError if the space made an invalid spec
        assert spec.family == space.family and spec.input_size == 28
        hashes.add(spec.content_hash())
        param_sets.add(tuple(sorted(trial.params)))
        study.tell(trial, 0.0)
    assert len(param_sets) == 1, "the set of Optuna parameters must not depend on the sample"
    assert len(hashes) > 20, "the space should yield many distinct architectures"


def test_resnext_widths_are_derived_from_groups() -> None:
    space = load_space("resnext")
    values = {"stem_width": 16, "depths": [1, 2], "groups": [2, 8], "group_width": 4,
              "bottleneck_ratio": 0.5}
    spec = space.to_spec(values, DATA)
    assert spec.widths == (16, 64)
    assert spec.group_widths() == [4, 4]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("family: resnet\ndimensions:\n  stem_width: {low: 32, high: 8}\n", "inverted range"),
        ("family: nope\ndimensions:\n  x: {choices: [1]}\n", "unknown family"),
        ("family: resnet\nstages: [1, 2]\ndimensions:\n"
         "  depths: {low: 1, high: 2, per_stage: true}\n"
         "  widths: {choices: [8], per_stage: true}\n  colour: {choices: [1]}\n", "colour"),
        ("family: resnet\ndimensions:\n  depths: {low: 1, high: 2, per_stage: true}\n",
         "need `stages"),
        ("family: resnet\ndimensions:\n  stem_width: {choices: []}\n", "stem_width"),
        ("family: resnet\ndimensions: {}\n", "dimensions"),
        ("[1, 2", "not valid"),
        ("!!python/object/apply:os.system ['echo pwned']\n", "not valid"),
    ],
)
def test_bad_space_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=message) as info:
        load_space(path).check()
    assert "\n" not in str(info.value)


def test_unknown_space_name_lists_the_shipped_ones() -> None:
    with pytest.raises(SpecError, match="resnext"):
        load_space("no-such-space")


def test_space_size_is_finite_for_discrete_spaces() -> None:
    assert load_space("resnext").size() > 1000
    assert load_space("regnet").size() == float("inf")
