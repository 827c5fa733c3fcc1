"""The MBConv spaces and their design rules (spaces/rules/mbconv.yaml) under `nas analyze`.

A random study of spaces/mbconv.yaml is written as `nas search` writes one, with errors from a
planted rule (models whose kernels never shrink err 0.04 less, plus noise and a cost trend), so
no training is needed.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import CliRunner

from nas.analysis.rules import load_rules
from nas.cost import MetaCost
from nas.io import load_spec, parse_spec
from nas.resources import spaces_dir
from nas.search.space import load_space
from nas.study import StudySettings, TrialRecord

RULES = spaces_dir() / "rules" / "mbconv.yaml"
DATA = {"in_channels": 1, "num_classes": 10, "input_size": 28}
PLANTED = 0.04


def test_the_rules_file_evaluates_on_mbconv_specs() -> None:
    rules = {r.name: r for r in load_rules(RULES)}
    b0 = load_spec("efficientnet_b0").model_dump(mode="json")  # kernels 3 3 5 3 5 5 3
    v2 = load_spec("efficientnet_v2_s").model_dump(mode="json")  # kernels all 3, SE late
    assert {n: r.status(b0) for n, r in rules.items()} == {
        "increasing_kernels": "violated", "shared_kernel": "violated",
        "shared_expansion": "violated", "increasing_expansions": "satisfied",
        "large_last_kernel": "violated", "late_se": "violated", "se_everywhere": "satisfied"}
    assert {n: r.status(v2) for n, r in rules.items()} == {
        "increasing_kernels": "satisfied", "shared_kernel": "satisfied",
        "shared_expansion": "violated", "increasing_expansions": "satisfied",
        "large_last_kernel": "violated", "late_se": "satisfied", "se_everywhere": "violated"}
    assert rules["increasing_kernels"].status(load_spec("resnet18").model_dump()) == "missing"


@pytest.mark.parametrize(("name", "data", "size"), [
    ("mbconv", DATA, (28, 32)), ("mbconv_224", {"in_channels": 3, "num_classes": 1000}, (64, 224)),
])
def test_every_corner_of_the_mbconv_spaces_builds_at_the_sizes_it_is_for(
        name: str, data: dict[str, int], size: tuple[int, int]) -> None:
    space = load_space(name)
    space.check()
    for values in space.corners():
        for input_size in size:
            spec = space.to_spec(values, {**data, "input_size": input_size})
            assert MetaCost(spec).params > 0


def sample(space: Any, rng: random.Random, increasing: bool) -> dict[str, Any]:
    """A random point of the space; kernels sorted when `increasing`."""
    values = {name: [rng.choice(dim.grid()) for _ in range(4)]
              for name, dim in space.dimensions.items()}
    if increasing:
        values["kernels"] = sorted(values["kernels"])
    return {"family": "mbconv", **DATA, **space.fixed, **values}


def planted_trials(n: int, seed: int) -> list[optuna.trial.FrozenTrial]:
    space, rng, out = load_space("mbconv"), random.Random(seed), []
    for i in range(n):
        spec = parse_spec(sample(space, rng, increasing=i % 2 == 0))
        kernels = spec.kernels  # type: ignore[attr-defined]
        increasing = all(b >= a for a, b in zip(kernels, kernels[1:]))
        params = 10_000 + sum(d * w * w * e for d, w, e in zip(
            spec.depths, spec.widths, spec.expansions))  # type: ignore[attr-defined]
        error = 0.30 - 0.02 * math.log10(params) - PLANTED * increasing + rng.gauss(0, 0.012)
        attrs = TrialRecord(spec=spec.model_dump(mode="json"), spec_hash=spec.content_hash(),
                            family="mbconv", params=params, macs=30 * params, trained=True,
                            val_accuracy=1 - error).to_attrs()
        out.append(optuna.trial.create_trial(values=[1 - error, float(params)], user_attrs=attrs))
    return out


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("studies") / "mbconv.db"
    storage = f"sqlite:///{path}"
    study = optuna.create_study(study_name="mbconv", storage=storage,
                                directions=["maximize", "minimize"])
    space = load_space("mbconv")
    StudySettings(space="mbconv", space_hash=space.content_hash(),
                  space_definition=space.model_dump(mode="json"), sampler="random",
                  objectives=["accuracy", "params"], nas_version="0.1.0",
                  dataset="fashion-mnist", epochs=2, subset=0.25, batch_size=128,
                  seed=0).write(study)
    study.add_trials(planted_trials(64, seed=1))
    return storage


def test_analyze_with_the_mbconv_rules_finds_the_planted_rule(run_nas: CliRunner,
                                                               url: str) -> None:
    result = run_nas("analyze", "--storage", url, "--study", "mbconv", "--rules", str(RULES),
                     "--json")
    assert result.code == 0, result.err
    rows = {r["rule"]: r for r in json.loads(result.out)["rules"]}
    assert {r.name for r in load_rules(RULES)} <= set(rows)
    assert rows["increasing_kernels"]["verdict"] == "helps"
    assert rows["increasing_kernels"]["effect"] == pytest.approx(PLANTED, abs=0.02)
    assert rows["shared_bottleneck_ratio"]["verdict"] == "not testable"  # no such field here
