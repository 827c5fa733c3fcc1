"""Search spaces: every shipped space samples only valid specs, with a fixed parameter set."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from scipy.stats import chisquare

from nas.errors import SpecError
from nas.io import read_document
from nas.search.resume import same_space
from nas.search.space import (
    SAMPLING,
    Dimension,
    SearchSpace,
    load_space,
    non_decreasing,
    space_files,
)
from nas.study import StudySettings

DATA = {"in_channels": 1, "num_classes": 10, "input_size": 28}
SPACES = sorted(space_files())


def test_one_space_per_family() -> None:
    families = {load_space(n).family for n in SPACES}
    assert {"vgg", "resnet", "resnext", "densenet", "regnet", "anynet"} <= families


@pytest.mark.parametrize("name", SPACES)
def test_random_samples_are_valid_and_use_fixed_params(name: str) -> None:
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    param_sets, hashes = set(), set()
    size = 28 if space.input_sizes[0] <= 28 else space.input_sizes[0]  # type: ignore[index]
    for _ in range(60):
        trial = study.ask()
        # raises SpecError if the space made an invalid spec
        spec = space.suggest(trial, {**DATA, "input_size": size})
        assert spec.family == space.family and spec.input_size == size
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


# A space with per-stage dimensions, for the refusals of design rules below.
STAGED = ("family: resnet\nstages: [1, 2]\ndimensions:\n  stem_width: {choices: [8]}\n"
          "  depths: {low: 1, high: 2, per_stage: true}\n"
          "  widths: {choices: [32, 16], per_stage: true}\n"
          "  blocks: {choices: [basic, bottleneck], per_stage: true}\n")


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
        (f"{STAGED}shared: [colour]\n", "shared: colour is not a dimension of the space; "
                                         "per-stage dimensions: depths, widths, blocks"),
        (f"{STAGED}increasing: [stem_width]\n", "increasing: stem_width is not a per-stage"),
        (f"{STAGED}shared: [widths]\nincreasing: [width]\n", "widths: both shared and incr"),
        (f"{STAGED}increasing: [blocks]\n", "blocks: choices must be numbers in increasing"),
        (f"{STAGED}increasing: [widths]\n", "widths: choices must be numbers in increasing order"),
        (STAGED.replace("[32, 16]", "[16, 16]") + "increasing: [widths]\n", "increasing order"),
        (STAGED.replace("high: 2", "high: 2.5") + "increasing: [depths]\n", "needs a grid"),
        (STAGED.replace("high: 2", "high: 8, log: true") + "increasing: [depth]\n",
         "not a continuous or log range"),
        (f"{STAGED}stage_weights: most\n", "stage_weights"),
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


def test_studies_recorded_before_rules_existed_still_resume() -> None:
    # what a study created by the previous nas recorded: its definition had no rule fields and
    # its hash was written in another JSON layout
    before = {"densenet": "e785ab285ed641fd", "regnet": "1f8199ef817034b1",
              "resnet": "73dd2a87afd5e972", "resnext": "ad4cd92bababe277",
              "vgg": "5391041f62d6bce2"}
    for name, old_hash in before.items():
        space = load_space(name)
        definition = {k: v for k, v in space.model_dump(mode="json").items()
                      if k not in ("shared", "increasing", "stage_weights")}
        recorded = StudySettings(space=name, space_hash=old_hash, space_definition=definition)
        assert same_space(recorded, space), name
        other = load_space("anynet" if name != "anynet" else "vgg")
        assert not same_space(recorded, other)


def test_singular_rule_names_mean_the_per_stage_dimension() -> None:
    plural = small(shared=["depths"], increasing=["widths"])
    singular = small(shared=["depth"], increasing=["width"])
    assert singular.shared == ("depths",) and singular.increasing == ("widths",)
    assert singular.content_hash() == plural.content_hash()
    assert load_space("anynet_e").shared == ("bottleneck_ratios", "group_widths")


def test_anynet_spaces_grow_smaller_with_each_rule() -> None:
    sizes = [load_space(n).size() for n in ("anynet", "anynet_b", "anynet_c", "anynet_d",
                                             "anynet_e")]
    assert sizes == [144**4, 3 * 48**4, 3 * 4 * 12**4, 3 * 4 * 35 * 3**4, 3 * 4 * 35 * 15]


@pytest.mark.parametrize("name", [n for n in SPACES if n.startswith("anynet_")])
def test_rules_hold_in_every_sample_by_construction(name: str) -> None:
    space = load_space(name)
    assert space.shared or space.increasing
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    for _ in range(200):
        values = space.sample(study.ask())
        for dim in space.shared:
            assert len(set(values[dim])) == 1, (dim, values[dim])
        for dim in space.increasing:
            assert values[dim] == sorted(values[dim]), (dim, values[dim])
    space.check()
    for corner in space.corners():
        assert all(len(set(corner[d])) == 1 for d in space.shared)
        space.to_spec(corner, DATA)


def small(stages: tuple[int, int] = (3, 3), **rules: Any) -> SearchSpace:
    """A small grid: 2 stem widths, and per stage 2 depths and 3 widths."""
    return SearchSpace.model_validate({
        "name": "small", "family": "resnet", "stages": list(stages), **rules,
        "dimensions": {"stem_width": {"choices": [8, 16]},
                       "depths": {"low": 1, "high": 2, "per_stage": True},
                       "widths": {"choices": [8, 16, 24], "per_stage": True}},
    })


Key = tuple[tuple[str, Any], ...]


def key(values: dict[str, Any]) -> Key:
    return tuple((k, tuple(v) if isinstance(v, (list, tuple)) else v)
                 for k, v in sorted(values.items()))


def brute_force(space: SearchSpace) -> dict[int, list[Key]]:
    """Every point of each stage count: all value combinations, kept if the rules hold."""
    out = {}
    low, high = space.stages or (0, 0)
    for n in range(low, high + 1):
        grids = [itertools.product(d.grid(), repeat=n) if d.per_stage else d.grid()
                 for d in space.dimensions.values()]
        points = []
        for combo in itertools.product(*grids):
            values = dict(zip(space.dimensions, combo))
            if all(len(set(values[d])) == 1 for d in space.shared) and all(
                list(values[d]) == sorted(values[d]) for d in space.increasing
            ):
                points.append(key(values))
        out[n] = points
    return out


RULE_SETS = [
    {},
    {"shared": ["depths"]},
    {"increasing": ["widths"]},
    {"shared": ["depths"], "increasing": ["widths"]},
    {"increasing": ["widths", "depths"]},
    {"shared": ["widths", "depths"]},
]


@pytest.mark.parametrize("stages", [(1, 1), (3, 3), (2, 4)])
@pytest.mark.parametrize("rules", RULE_SETS, ids=str)
def test_size_under_rules_is_the_number_of_points_by_brute_force(
    rules: dict[str, list[str]], stages: tuple[int, int]
) -> None:
    space = small(stages, **rules)
    points = brute_force(space)
    assert space.size() == sum(len(p) for p in points.values())
    for n, p in points.items():
        assert len(set(p)) == len(p) and space.stage_points(n) * 2 == len(p)


def draws(space: SearchSpace, count: int, seed: int = 0) -> Counter[Key]:
    """Points drawn by Optuna's RandomSampler, as the search draws them."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return Counter(key(space.sample(study.ask())) for _ in range(count))


def p_value(counts: Counter[Key], expected: dict[Key, float]) -> float:
    """Chi-square test of drawn counts against expected frequencies; no draw off the grid."""
    assert set(counts) <= set(expected), set(counts) - set(expected)
    total = sum(counts.values())
    scale = total / sum(expected.values())
    keys = sorted(expected)
    return chisquare([counts[k] for k in keys], [expected[k] * scale for k in keys]).pvalue


# A fixed seed makes each p-value a fixed number, so the tests cannot flake; a uniform draw
# would fall below 1e-3 once in a thousand seeds, the naive sort falls far below it.
ALPHA, DRAWS = 1e-3, 2000


@pytest.mark.parametrize("rules", RULE_SETS[2:5], ids=str)
def test_random_sampling_is_uniform_over_the_points_under_rules(
    rules: dict[str, list[str]],
) -> None:
    space = small((3, 3), **rules)
    points = brute_force(space)[3]
    assert p_value(draws(space, DRAWS), dict.fromkeys(points, 1.0)) > ALPHA


def test_sorting_independent_draws_is_not_uniform_and_the_same_check_says_so() -> None:
    free, rules = small((3, 3)), small((3, 3), increasing=["widths", "depths"])
    naive: Counter[Key] = Counter()
    for point, count in draws(free, DRAWS).items():
        values = {k: sorted(v) if isinstance(v, tuple) else v for k, v in point}
        naive[key(values)] += count
    assert p_value(naive, dict.fromkeys(brute_force(rules)[3], 1.0)) < ALPHA


def test_stage_weights_points_make_every_point_of_every_stage_count_equally_likely() -> None:
    space = small((2, 3), increasing=["widths"], stage_weights="points")
    points = [p for ps in brute_force(space).values() for p in ps]
    assert len(points) == space.size() == 2 * (4 * 6 + 8 * 10)
    assert p_value(draws(space, DRAWS), dict.fromkeys(points, 1.0)) > ALPHA
    equal = small((2, 3), increasing=["widths"])  # the default: the same check refuses it
    assert p_value(draws(equal, DRAWS), dict.fromkeys(points, 1.0)) < ALPHA


def test_stage_weights_equal_draw_each_count_equally_then_each_of_its_points() -> None:
    space = small((2, 3), increasing=["widths"])
    expected = {p: 1 / len(ps) for ps in brute_force(space).values() for p in ps}
    assert p_value(draws(space, DRAWS), expected) > ALPHA


def test_non_decreasing_is_exactly_uniform_over_multisets() -> None:
    # Quantiles at the centres of m equal cells per slot, m a multiple of every total weight the
    # slot can meet (20; 10, 6, 3, 1; 4, 3, 2, 1), so each cell maps wholly to one value: the
    # counts are the exact probabilities, and each of the C(6, 3) = 20 multisets gets 1/20.
    k, cells = 4, (20, 30, 12)
    counts = Counter(
        tuple(non_decreasing(k, [(c + 0.5) / m for c, m in zip(cell, cells)]))
        for cell in itertools.product(*(range(m) for m in cells))
    )
    assert len(counts) == math.comb(k + 2, 3) == 20
    assert set(counts.values()) == {math.prod(cells) // 20}
    assert all(list(c) == sorted(c) for c in counts)


def suggested(choices: list[Any], sampling: int = SAMPLING) -> tuple[Any, Any]:
    """The distribution Optuna records for a choice dimension, and the value of each index."""
    dim = Dimension(choices=choices)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    dim.suggest(trial, "x", sampling)
    values = [dim.suggest(optuna.trial.FixedTrial({"x": i}), "x", sampling)
              for i in range(len(choices))]
    return trial.distributions["x"], values


@pytest.mark.parametrize("choices", [[1, 2, 4, 8], [32, 16], [0.5, 1.0], [8, 2, 4.5]])
def test_numeric_choices_are_an_integer_over_their_ranks(choices: list[float]) -> None:
    # an integer keeps the order a categorical loses: TPE and GP can tell 2 lies between 1 and 4
    distribution, values = suggested(choices)
    assert distribution == optuna.distributions.IntDistribution(0, len(choices) - 1)
    assert values == sorted(choices)


@pytest.mark.parametrize("choices", [["basic", "bottleneck"], [1, "a"], [True, False],
                                     [[1, 2], [3, 4]]])
def test_other_choices_stay_categorical_over_indices(choices: list[Any]) -> None:
    distribution, values = suggested(choices)
    assert distribution == optuna.distributions.CategoricalDistribution(range(len(choices)))
    assert values == choices


def test_sampling_scheme_1_keeps_every_choice_list_categorical_in_file_order() -> None:
    distribution, values = suggested([8, 2, 4], sampling=1)
    assert distribution == optuna.distributions.CategoricalDistribution([0, 1, 2])
    assert values == [8, 2, 4]


def test_resnext_numeric_choices_reach_every_value_through_optunas_samplers() -> None:
    space = load_space("resnext")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen: dict[str, set[Any]] = {"groups": set(), "stem_width": set()}
    for _ in range(40):
        trial = study.ask()
        values = space.sample(trial)
        seen["groups"].update(values["groups"])
        seen["stem_width"].add(values["stem_width"])
        assert isinstance(trial.distributions["groups_0"], optuna.distributions.IntDistribution)
        study.tell(trial, 0.0)
    assert seen == {"groups": {1, 2, 4, 8}, "stem_width": {16, 24, 32}}


# The load check: a space that can give an invalid spec is refused in one line naming the space,
# the dimension and the value (docs/spaces.md, "What is checked when a space loads").
RESNET = ("family: resnet\nfixed: {stem: simple}\nstages: [2, 3]\ndimensions:\n"
          "  depths: {low: 1, high: 2, per_stage: true}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (RESNET + "  widths: {choices: [8, 16, 0], per_stage: true}\n",
         "space space: dimension widths, value 0 (every stage): widths.0: Input should be "
         "greater than 0"),
        (RESNET + "  widths: {choices: [8, 20000], per_stage: true}\n",
         "dimension widths, value 20000 (every stage): widths.0: at most 16384 channels"),
        (RESNET + "  widths: {choices: [8, 12.5], per_stage: true}\n",
         "dimension widths, value 12.5 (every stage): widths.0: Input should be a valid integer"),
        (RESNET + "  widths: {choices: [8, wide], per_stage: true}\n",
         "dimension widths, value wide (every stage)"),
        (RESNET.replace("low: 1", "low: 0") + "  widths: {choices: [8], per_stage: true}\n",
         "dimension depths, value 0 (every stage): depths.0: Input should be greater than 0"),
        (RESNET.replace("high: 2", "high: 2000") + "  widths: {choices: [8], per_stage: true}\n",
         "dimension depths, value 2000 (every stage): depths.0: at most 1024 blocks"),
        (RESNET + "  widths: {choices: [8], per_stage: true}\n  stem_width: {low: 4, high: 0.5}\n",
         "inverted range"),
        (RESNET.replace("{stem: simple}", "{stem: simple, stem_width: 0}")
         + "  widths: {choices: [8], per_stage: true}\n",
         "space space: fixed stem_width: Input should be greater than 0"),
        (RESNET + "  widths: {choices: [8], per_stage: true}\n", None),
        # a value valid on its own that makes invalid specs with others: all three named
        ("family: anynet\nfixed: {stem: simple, first_stride: 1}\nstages: [4, 4]\n"
         "dimensions:\n  depths: {low: 1, high: 3, per_stage: true}\n"
         "  widths: {choices: [16, 32, 64], per_stage: true}\n"
         "  bottleneck_ratios: {choices: [1.0, 0.25], per_stage: true}\n"
         "  group_widths: {choices: [1, 8], per_stage: true}\n",
         "space space: dimensions widths 16 (every stage), bottleneck_ratios 0.25 (every stage), "
         "group_widths 8 (every stage) together: bottleneck width 4 (width 16 x ratio 0.25) is "
         "not divisible by group_width 8"),
        # a dimension that is no field of the family (resnext derives widths from groups)
        ("family: resnext\nfixed: {stem: simple}\nstages: [1, 2]\ndimensions:\n"
         "  depths: {low: 1, high: 2, per_stage: true}\n"
         "  groups: {choices: [0, 2], per_stage: true}\n  group_width: {choices: [4]}\n",
         "dimension groups, value 0: widths.0: Input should be greater than 0"),
        # a stage count whose images collapse at the smallest input size the space is for
        ("family: vgg\nstages: [2, 5]\ninput_sizes: [16, 64]\ndimensions:\n"
         "  num_convs: {low: 1, high: 2, per_stage: true}\n"
         "  channels: {choices: [16, 32], per_stage: true}\n",
         "space space: 5 stages: stage 9 (pool) gets a 1x1 input and its output collapses to "
         "0x0: input_size 16 is too small"),
        ("family: vgg\nstages: [2, 3]\ninput_sizes: [64, 16]\ndimensions:\n"
         "  num_convs: {low: 1, high: 2, per_stage: true}\n"
         "  channels: {choices: [16, 32], per_stage: true}\n",
         "input_sizes: need [min, max], got [64, 16]"),
    ],
)
def test_a_space_that_can_give_an_invalid_spec_is_refused_on_load(
        tmp_path: Path, text: str, message: str | None) -> None:
    path = write(tmp_path, text)
    if message is None:
        assert load_space(path).exactly_checked()
        return
    with pytest.raises(SpecError) as info:
        load_space(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_check_builds_every_point_whose_stages_agree_and_samples_the_rest() -> None:
    space = load_space("anynet")
    points = list(space.points_to_check())
    uniform = [p for p in points if all(len(set(v)) == 1 for v in p.values())]
    assert len({str(p) for p in uniform}) == 3 * 4 * 3 * 4 == space.uniform_count()
    assert len(points) == 2 + 144 + 32  # corners, stages alike, seeded random points
    assert space.exactly_checked()
    # a continuous range (RegNet's wm) is checked at its ends and middle, and by sample; wa's
    # ends are whole numbers, so it is an integer range: all of its 41 values are tried
    regnet = load_space("regnet")
    assert not regnet.exactly_checked()
    assert regnet.dimensions["wm"].check_values() == [1.5, 2.25, 3.0]
    assert regnet.dimensions["wa"].check_values() == list(range(8, 49))


def test_every_shipped_space_states_its_input_sizes_and_its_corners_build_at_both_ends() -> None:
    for name in SPACES:
        space = load_space(name)
        assert space.input_sizes is not None, name
        for size in space.input_sizes:
            for corner in space.corners():
                space.to_spec(corner, {**DATA, "input_size": size})
            space.check_input_size(size)


def test_shipped_spaces_use_the_dimension_names_in_their_rules() -> None:
    for name in SPACES:
        data = read_document(space_files()[name])
        for rule in ("shared", "increasing"):
            assert set(data.get(rule, [])) <= set(data["dimensions"]), (name, rule)


def test_input_sizes_change_no_hash() -> None:
    space = load_space("resnext")
    definition = space.model_dump(mode="json")
    assert definition["input_sizes"] == [16, 64]
    before = {k: v for k, v in definition.items() if k != "input_sizes"}
    assert SearchSpace.model_validate(before).content_hash() == space.content_hash()
    recorded = StudySettings(space="resnext", space_hash="ad4cd92bababe277",
                             space_definition=before)
    assert same_space(recorded, space)


def test_a_space_refuses_data_outside_its_input_sizes_and_says_what_would_fit() -> None:
    space = load_space("resnext")
    space.check_input_size(28)
    with pytest.raises(SpecError) as info:
        space.check_input_size(96)
    assert str(info.value) == (
        "space resnext is for inputs of 16-64 px (its input_sizes); the data is 96 px: resize "
        "the images to 16-64 px, pass --stem imagenet (the space then takes 32-128 px), or use a "
        "space for 96 px (mbconv_224, resnet_224)")
    with pytest.raises(SpecError, match="^space vgg is for inputs of 16-64 px .*: resize the "
                                        "images to 16-64 px, or use a space for 224 px"):
        load_space("vgg").check_input_size(224)  # no stem to change in a VGG


def test_with_stem_adapts_a_space_to_larger_inputs() -> None:
    space = load_space("resnext")
    adapted = space.with_stem("imagenet")
    assert adapted.name == "resnext-imagenet-stem" and adapted.input_sizes == (32, 128)
    assert adapted.fixed["stem"] == "imagenet" and space.fixed["stem"] == "simple"
    assert adapted.content_hash() != space.content_hash()
    adapted.check_input_size(96)
    for corner in space.corners():  # the stages see at 128 px what they saw at 64 px
        big = adapted.to_spec(corner, {**DATA, "input_size": 128}).lower().trace()
        small = space.to_spec(corner, {**DATA, "input_size": 64}).lower().trace()
        assert big[2:] == small[1:]  # the imagenet stem is a conv and a pool: two stages
    assert space.with_stem("simple") is space
    with pytest.raises(SpecError, match="^space vgg: family vgg has no stem to replace$"):
        load_space("vgg").with_stem("imagenet")
    with pytest.raises(SpecError, match="^--stem huge: the stems of family resnext are "
                                        "imagenet, simple, small$"):
        space.with_stem("huge")


@pytest.mark.parametrize("size", [64, 224])
def test_the_224_space_builds_its_corners_at_64_and_224(size: int) -> None:
    space = load_space("resnet_224")
    assert space.input_sizes == (64, 224)
    for corner in space.corners():
        spec = space.to_spec(corner, {"in_channels": 3, "num_classes": 10, "input_size": size})
        assert spec.stem == "imagenet" and spec.lower().trace()[-1][1] >= 2
    space.check_input_size(size)
    with pytest.raises(SpecError, match="space resnet_224 is for inputs of 64-224 px"):
        space.check_input_size(28)
