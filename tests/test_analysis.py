"""nas.analysis: normalised error EDFs, bootstrap intervals, the rule language and rule tests.

Statistics are checked on inputs whose answers are known: a small example worked out by hand,
the plain EDF of nas.report, and synthetic studies whose errors are generated from a known rule
effect plus a known cost effect plus noise.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import nas.analysis
from nas.analysis import (
    EDF_COLUMNS,
    EFFECT_COLUMNS,
    RuleError,
    bootstrap_ci,
    builtin_rules,
    check_fields,
    compare_spaces,
    edf_area,
    edf_statistic,
    load_rules,
    normalized_weights,
    parse_rules,
    rule_edf_figure,
    rule_effect_figure,
    rule_effects,
    space_edf_figure,
    weighted_edf,
    weighted_mean,
    weighted_quantile,
)
from nas.errors import UserError
from nas.report import edf_frame

# ---------------------------------------------------------------- the hand-computed example
# Group A: costs 1, 2, 20 with errors .30, .20, .10; group B: costs 5, 30, 500, 1000 with errors
# .40, .25, .15, .05. Pooled log10 costs span [0, 3]; 3 bins have edges 0, 1, 2, 3 (costs 1, 10,
# 100, 1000; 1000 is the top edge, so in the last bin):
#   A: 1 -> bin 0, 2 -> bin 0, 20 -> bin 1           (A has no model in bin 2)
#   B: 5 -> bin 0, 30 -> bin 1, 500 -> bin 2, 1000 -> bin 2
# Shared bins: 0 and 1 (k = 2). Uniform reference: mass 1/2 per shared bin.
#   A: bin 0 holds 2 models -> 1/4 each; bin 1 holds 1 -> 1/2.   weights .25, .25, .5
#   B: bin 0 holds 1 -> 1/2; bin 1 holds 1 -> 1/2; bin 2 unshared -> 0.   weights .5, .5, 0, 0
# A's EDF: errors sorted .10 (w .5), .20 (.25), .30 (.25) -> fractions .5, .75, 1
# B's EDF: .25 (w .5), .40 (.5) -> fractions .5, 1   (.15 and .05 weigh 0 and drop out)
# Means: A = .5*.1 + .25*.2 + .25*.3 = .175; B = .5*.25 + .5*.4 = .325; B - A = .15.
# 25th percentile (smallest e with F(e) >= .25): A .10, B .25. Area under A's EDF on [0, .5]:
# .5*(.5-.1) + .25*(.5-.2) + .25*(.5-.3) = .2 + .075 + .05 = .325 = .5 - mean.
# Pooled reference: shared bins hold 2+1 = 3 and 1+1 = 2 models -> masses .6, .4:
#   A: .3, .3, .4 (mean .09 + .06 + .04 = .19); B: .6, .4, 0, 0 (mean .24 + .10 = .34).
COST_A, ERR_A = [1.0, 2.0, 20.0], [0.30, 0.20, 0.10]
COST_B, ERR_B = [5.0, 30.0, 500.0, 1000.0], [0.40, 0.25, 0.15, 0.05]


def test_normalized_weights_match_the_hand_example() -> None:
    wa, wb = normalized_weights(COST_A, COST_B, bins=3)
    assert wa == pytest.approx([0.25, 0.25, 0.5])
    assert wb == pytest.approx([0.5, 0.5, 0.0, 0.0])
    pa, pb = normalized_weights(COST_A, COST_B, bins=3, reference="pooled")
    assert pa == pytest.approx([0.3, 0.3, 0.4])
    assert pb == pytest.approx([0.6, 0.4, 0.0, 0.0])


def test_weighted_edf_and_its_statistics_match_the_hand_example() -> None:
    wa, wb = normalized_weights(COST_A, COST_B, bins=3)
    edf_a = weighted_edf(ERR_A, wa)
    assert list(edf_a.columns) == ["error", "fraction"]
    assert edf_a["error"].tolist() == pytest.approx([0.10, 0.20, 0.30])
    assert edf_a["fraction"].tolist() == pytest.approx([0.5, 0.75, 1.0])
    edf_b = weighted_edf(ERR_B, wb)
    assert edf_b["error"].tolist() == pytest.approx([0.25, 0.40])
    assert edf_b["fraction"].tolist() == pytest.approx([0.5, 1.0])
    assert weighted_mean(ERR_A, wa) == pytest.approx(0.175)
    assert weighted_mean(ERR_B, wb) == pytest.approx(0.325)
    assert weighted_quantile(ERR_A, wa, 0.25) == pytest.approx(0.10)
    assert edf_statistic(ERR_B, wb, "q25") == pytest.approx(0.25)
    assert edf_area(ERR_A, wa, 0.0, 0.5) == pytest.approx(0.325)
    pa, pb = normalized_weights(COST_A, COST_B, bins=3, reference="pooled")
    assert weighted_mean(ERR_A, pa) == pytest.approx(0.19)
    assert weighted_mean(ERR_B, pb) == pytest.approx(0.34)


def test_bootstrap_estimate_is_the_hand_difference() -> None:
    diff = bootstrap_ci(ERR_A, COST_A, ERR_B, COST_B, bins=3, n_boot=200, seed=1)
    assert diff.estimate == pytest.approx(0.15)
    assert diff.low <= diff.high
    assert 0 < diff.resamples < 200  # some resamples lose every shared bin and are skipped


def test_equal_weights_give_the_plain_edf() -> None:
    errors = np.random.default_rng(3).choice([0.1, 0.15, 0.2, 0.3, 0.45], size=40)  # with ties
    weighted = weighted_edf(errors, np.full(40, 2.5))
    plain = edf_frame(errors)
    assert weighted["error"].tolist() == plain["error"].tolist()
    assert np.allclose(weighted["fraction"], plain["fraction"])
    assert np.allclose(weighted_edf(errors)["fraction"], plain["fraction"])


def test_one_bin_is_no_matching_and_equal_costs_are_one_bin() -> None:
    wa, wb = normalized_weights(COST_A, COST_B, bins=1)
    assert wa == pytest.approx([1 / 3] * 3) and wb == pytest.approx([0.25] * 4)
    same = normalized_weights([7.0, 7.0], [7.0], bins=5)
    assert same[0] == pytest.approx([0.5, 0.5]) and same[1] == pytest.approx([1.0])


def test_explicit_edges_leave_out_costs_outside_them() -> None:
    wa, wb = normalized_weights(COST_A, COST_B, bins=[1.5, 10, 100])
    assert wa == pytest.approx([0.0, 0.5, 0.5])  # cost 1 lies below the first edge
    assert wb == pytest.approx([0.5, 0.5, 0.0, 0.0])


def test_area_under_the_edf_is_high_minus_the_mean() -> None:
    rng = np.random.default_rng(5)
    errors, weights = rng.uniform(0.1, 0.6, 30), rng.uniform(0.0, 2.0, 30)
    mean = weighted_mean(errors, weights)
    assert edf_area(errors, weights, 0.0, 1.0) == pytest.approx(1.0 - mean)
    assert edf_area(errors, weights, 0.05, 0.7) == pytest.approx(0.7 - mean)


def test_bad_statistics_and_costs_are_refused() -> None:
    with pytest.raises(ValueError, match="statistic"):
        edf_statistic(ERR_A, None, "median")
    with pytest.raises(ValueError, match="positive"):
        normalized_weights([1.0, 0.0], [2.0])
    with pytest.raises(ValueError, match="reference"):
        normalized_weights([1.0], [2.0], reference="flat")  # type: ignore[arg-type]


def groups(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Two groups of n models from fixed distributions: group b errs 0.02 more at equal cost."""
    rng = np.random.default_rng(seed)
    cost_a, cost_b = 10 ** rng.uniform(4, 6, n), 10 ** rng.uniform(4, 6, n)
    err_a = 0.8 - 0.1 * np.log10(cost_a) + rng.normal(0, 0.02, n)
    err_b = 0.82 - 0.1 * np.log10(cost_b) + rng.normal(0, 0.02, n)
    return err_a, cost_a, err_b, cost_b


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    data = groups(40, 0)
    first = bootstrap_ci(*data, n_boot=300, seed=7)
    assert bootstrap_ci(*data, n_boot=300, seed=7) == first
    assert bootstrap_ci(*data, n_boot=300, seed=8) != first


@pytest.mark.parametrize("statistic", ["mean", "q25"])
def test_bootstrap_interval_shrinks_as_one_over_root_n(statistic: str) -> None:
    small = bootstrap_ci(*groups(20, 1), statistic=statistic, n_boot=1000, seed=0)
    large = bootstrap_ci(*groups(320, 1), statistic=statistic, n_boot=1000, seed=0)
    ratio = (large.high - large.low) / (small.high - small.low)
    assert 0.12 < ratio < 0.4  # 16x the models: sqrt(1/16) = 0.25
    assert large.low < 0.02 < large.high  # and the large interval covers the true difference


# ---------------------------------------------------------------- the rule language
ANYNET = {"family": "anynet", "depths": [1, 2, 2], "widths": [32, 64, 128],
          "bottleneck_ratios": [1, 1, 1], "group_widths": [4, 8, 8], "stem_width": 16,
          "block": "bottleneck"}
RESNEXT = {"family": "resnext", "depths": [3, 4, 6, 3], "widths": [256, 512, 1024, 2048],
           "group_width": 4, "bottleneck_ratio": 0.5, "cardinality": None, "stem_width": 64}
VGG = {"family": "vgg", "depths": [1, 1, 2, 2, 2], "widths": [64, 128, 256, 512, 512]}


def rule(clause: dict[str, Any], name: str = "r") -> nas.analysis.Rule:
    return parse_rules([{"name": name, **clause}])[0]


def builtin(name: str) -> nas.analysis.Rule:
    return next(r for r in builtin_rules() if r.name == name)


def test_builtin_rules_on_anynet_resnext_and_vgg_specs() -> None:
    status = {r.name: (r.status(ANYNET), r.status(RESNEXT), r.status(VGG))
              for r in builtin_rules()}
    assert status == {
        "shared_bottleneck_ratio": ("satisfied", "trivial", "missing"),
        "shared_group_width": ("violated", "trivial", "missing"),
        "increasing_widths": ("satisfied", "satisfied", "satisfied"),
        "increasing_depths": ("satisfied", "violated", "satisfied"),
        "width_ratio_band": ("satisfied", "satisfied", "violated"),  # VGG: 512 -> 512 is 1
    }
    assert builtin("width_ratio_band").fields == ("widths",)


@pytest.mark.parametrize(("name", "config"), [
    ("RegNetX-400MF", (22, 24, 24.48, 2.54, 16)), ("RegNetX-3.2GF", (25, 88, 26.31, 2.25, 48)),
    ("RegNetY-800MF", (14, 56, 38.84, 2.4, 16)), ("RegNetY-3.2GF", (21, 80, 42.63, 2.66, 24)),
])
def test_published_regnets_lie_in_the_default_width_band(name: str, config: tuple) -> None:
    from nas.families.regnet import regnet_stages  # torchvision's (depth, w0, wa, wm, gw)

    widths = [w for _, w, _ in regnet_stages(*config, ratio=1.0)]
    assert builtin("width_ratio_band").status({"widths": widths}) == "satisfied", (name, widths)
    assert builtin("width_ratio_band").status({"widths": [64, 96, 128, 192]}) == "violated"


@pytest.mark.parametrize(("clause", "expected"), [
    ({"field": "stem_width", "eq": 16}, "satisfied"),
    ({"field": "stem_width", "eq": 32}, "violated"),
    ({"field": "block", "ne": "basic"}, "satisfied"),
    ({"field": "widths", "index": 0, "lt": 32}, "violated"),
    ({"field": "widths", "index": 0, "le": 32}, "satisfied"),
    ({"field": "widths", "index": -1, "gt": 128}, "violated"),
    ({"field": "widths", "index": -1, "ge": 128}, "satisfied"),
    ({"field": "depths", "index": 1, "in": [2, 3]}, "satisfied"),
    ({"field": "family", "in": ["resnet", "vgg"]}, "violated"),
    ({"field": "depths", "eq": [1, 2, 2]}, "satisfied"),
    ({"all": [{"field": "stem_width", "eq": 16}, {"field": "depths", "index": 0, "le": 1}]},
     "satisfied"),
    ({"all": [{"field": "stem_width", "eq": 16}, {"field": "depths", "index": 0, "gt": 1}]},
     "violated"),
    ({"any": [{"field": "stem_width", "eq": 8}, {"field": "depths", "index": 0, "gt": 1}]},
     "violated"),
    ({"any": [{"field": "stem_width", "eq": 8}, {"field": "depths", "index": 0, "eq": 1}]},
     "satisfied"),
    ({"not": {"field": "stem_width", "eq": 16}}, "violated"),
    ({"non_decreasing": "group_widths"}, "satisfied"),
    ({"non_increasing": "group_widths"}, "violated"),
    ({"non_increasing": "bottleneck_ratios"}, "satisfied"),
    ({"shared": "group_widths"}, "violated"),
    ({"ratio_band": {"field": "widths", "low": 2, "high": 2}}, "satisfied"),
    ({"ratio_band": {"field": "group_widths", "low": 1.5, "high": 3}}, "violated"),  # 8/8 = 1
    ({"field": "widths", "index": 3, "ge": 1}, "missing"),  # no fourth stage
    ({"field": "se_ratio", "eq": 0.25}, "missing"),
    ({"all": [{"field": "se_ratio", "eq": 0.25}, {"field": "stem_width", "eq": 16}]},
     "missing"),
])
def test_each_operator_and_clause(clause: dict[str, Any], expected: str) -> None:
    assert rule(clause).status(ANYNET) == expected


def test_single_values_stand_for_every_stage() -> None:
    assert rule({"field": "group_widths", "index": 2, "eq": 4}).status(RESNEXT) == "satisfied"
    assert rule({"shared": "group_widths"}).status(RESNEXT) == "trivial"
    mixed = {"all": [{"shared": "group_widths"}, {"field": "stem_width", "eq": 64}]}
    assert rule(mixed).status(RESNEXT) == "satisfied"  # one part varies: not trivial
    assert rule({"not": {"shared": "bottleneck_ratios"}}).status(RESNEXT) == "trivial"
    assert rule({"field": "cardinality", "eq": 32}).status(RESNEXT) == "missing"  # null
    assert rule({"non_decreasing": "widths"}).status({"widths": [64]}) == "trivial"
    assert rule({"non_decreasing": "widths"}).status(None) == "missing"


def test_rules_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("""
rules:
  - name: wide_last_stage
    description: the last stage is wide
    all: [{field: widths, index: -1, ge: 64}]
  - name: shallow_first
    all: [{field: depths, index: 0, le: 1}, {field: stem_width, eq: 16}]
  - name: monotone_groups
    non_decreasing: group_widths
""")
    rules = load_rules(path)
    assert [r.name for r in rules] == ["wide_last_stage", "shallow_first", "monotone_groups"]
    assert rules[0].description == "the last stage is wide"
    assert [r.status(ANYNET) for r in rules] == ["satisfied", "satisfied", "satisfied"]
    assert rules[1].fields == ("depths", "stem_width")
    assert not any(r.builtin for r in rules)


@pytest.mark.parametrize(("node", "message"), [
    ({"name": "w", "field": "widths", "index": -1, "gte": 64}, r"rule w: unknown operator 'gte'"),
    ({"name": "w", "field": "widths", "index": "1", "ge": 64}, r"rule w: index .* integer"),
    ({"name": "w", "field": "widths", "index": True, "ge": 64}, r"rule w: index .* integer"),
    ({"name": "w", "field": "stem_width", "lt": "16"}, r"rule w: lt on stem_width needs a number"),
    ({"name": "w", "field": "family", "in": "vgg"}, r"rule w: in on family needs a list"),
    ({"name": "w", "field": "stem_width", "eq": 1, "ne": 2}, r"rule w: .* exactly one operator"),
    ({"name": "w", "field": "stem_width"}, r"rule w: .* exactly one operator"),
    ({"name": "w", "field": 3, "eq": 1}, r"rule w: field needs a field name"),
    ({"name": "w", "sum": "depths"}, r"rule w: .* unknown key 'sum'"),
    ({"name": "w", "shared": "depths", "non_decreasing": "widths"}, r"rule w: .* 2 clause keys"),
    ({"name": "w"}, r"rule w: has no clause"),
    ({"name": "w", "all": []}, r"rule w: all needs a non-empty list"),
    ({"name": "w", "all": ["widths"]}, r"rule w: a clause is a mapping"),
    ({"name": "w", "not": {"field": "widths", "index": 0, "lt": None}}, r"rule w: lt .* number"),
    ({"name": "w", "shared": ["depths"]}, r"rule w: shared needs a field name"),
    ({"name": "w", "ratio_band": {"field": "widths", "low": 3, "high": 2}}, r"0 < low <= high"),
    ({"name": "w", "ratio_band": {"field": "widths", "low": 2}}, r"rule w: ratio_band needs"),
    ({"name": "w", "ratio_band": {"field": "widths", "low": "2", "high": 3}}, r"needs a number"),
    ({"field": "widths", "eq": 1}, r"rule #1: needs a name"),
    ("widths", r"rule #1: a rule is a mapping"),
    ({"name": "w", "description": 3, "shared": "depths"}, r"rule w: description needs text"),
])
def test_bad_rules_are_refused_in_one_line(node: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message) as info:
        parse_rules([node])
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


def test_duplicate_names_and_files_are_refused_in_one_line(tmp_path: Path) -> None:
    twice = [{"name": "a", "shared": "depths"}, {"name": "a", "shared": "widths"}]
    with pytest.raises(RuleError, match="rule a: another rule has this name"):
        parse_rules(twice)
    with pytest.raises(RuleError, match="expected a list of rules"):
        parse_rules({"rule": []})
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - name: increasing_widths\n    shared: widths\n")
    with pytest.raises(RuleError, match="rule increasing_widths: a built-in rule has this name"):
        load_rules(path)
    path.write_text("rules:\n  - name: [unclosed\n")
    with pytest.raises(RuleError, match=r"r.yaml: not valid YAML at line \d") as info:
        load_rules(path)
    assert "\n" not in str(info.value)
    with pytest.raises(RuleError, match="absent.yaml"):
        load_rules(tmp_path / "absent.yaml")


def test_errors_found_while_evaluating_name_the_rule() -> None:
    with pytest.raises(RuleError, match="rule r: widths is a per-stage list; give an index"):
        rule({"field": "widths", "ge": 64}).status(ANYNET)
    with pytest.raises(RuleError, match="rule r: block is 'bottleneck', which lt cannot"):
        rule({"field": "block", "lt": 3}).status(ANYNET)
    with pytest.raises(RuleError, match="rule r: block holds"):
        rule({"non_decreasing": "block"}).status({"block": ["a", "b"]})


def test_a_user_rule_over_a_field_no_model_has_is_refused() -> None:
    bad = rule({"all": [{"field": "widths", "index": -1, "ge": 64},
                        {"field": "widthz", "eq": 1}]}, name="typo")
    with pytest.raises(RuleError) as info:
        check_fields([bad], [ANYNET, VGG])
    message = str(info.value)
    assert message.startswith("rule typo: no model in this study has field 'widthz'")
    assert message.endswith("(fields: block, bottleneck_ratios, depths, family, group_widths, "
                            "stem_width, widths)")
    check_fields([rule({"shared": "group_widths"})], [RESNEXT])  # found as group_width
    check_fields(builtin_rules(), [{"family": "lenet"}])  # built-ins: reported, not refused


def test_no_eval_or_exec_in_the_analysis_package() -> None:
    builtins = {"eval", "exec", "compile", "__import__"}  # called by bare name
    methods = {"eval", "exec", "query", "load", "unsafe_load", "full_load"}  # pandas, yaml
    files = list(Path(nas.analysis.__file__).parent.glob("*.py"))
    assert {"rules.py", "edf.py", "compare.py"} <= {p.name for p in files}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in builtins, f"{path.name}:{node.lineno} {node.func.id}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in methods, f"{path.name}:{node.lineno} {node.func.attr}"


# ---------------------------------------------------------------- rule tests on synthetic studies
WIDTHS = (16, 32, 64, 128, 256)


def anynet_study(n: int, seed: int, gain: float = 0.03, noise: float = 0.01) -> pd.DataFrame:
    """Random 3-stage AnyNet specs; error falls 0.05 per decade of params, and by `gain` when the
    widths never decrease; `tag` is a coin flip that the error ignores."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        widths = [int(w) for w in rng.choice(WIDTHS, 3)]
        if rng.random() < 0.5:
            widths.sort()
        depths = [int(d) for d in rng.integers(1, 5, 3)]
        params = sum(9 * d * w * w for d, w in zip(depths, widths))
        increasing = widths == sorted(widths)
        error = 0.6 - 0.05 * np.log10(params) - gain * increasing + rng.normal(0, noise)
        spec = {"family": "anynet", "depths": depths, "widths": widths,
                "group_widths": [int(g) for g in rng.choice([4, 8], 3)],
                "bottleneck_ratios": [1.0, 1.0, 1.0], "tag": int(rng.integers(0, 2))}
        rows.append({"spec": spec, "error": error, "params": params, "macs": 40 * params})
    return pd.DataFrame(rows)


TAG = {"name": "tag_is_one", "field": "tag", "eq": 1}


def effect_row(effects: nas.analysis.RuleEffects, name: str) -> pd.Series:
    return effects.table.set_index("rule").loc[name]


def test_a_rule_that_lowers_error_helps_and_a_coin_flip_shows_nothing() -> None:
    models = anynet_study(160, seed=0)
    rules = builtin_rules() + parse_rules([TAG, {"name": "not_increasing",
                                                 "not": {"non_decreasing": "widths"}}])
    effects = rule_effects(models, rules, "params", n_boot=500, seed=0)
    table = effects.table
    assert list(table.columns) == list(EFFECT_COLUMNS)
    helps = effect_row(effects, "increasing_widths")
    assert helps["verdict"] == "helps" and helps["low"] > 0
    assert helps["low"] < 0.03 < helps["high"]  # covers the effect put in
    assert helps["effect"] == pytest.approx(helps["stat_violated"] - helps["stat_satisfied"])
    hurts = effect_row(effects, "not_increasing")
    assert hurts["verdict"] == "hurts" and hurts["high"] < 0
    coin = effect_row(effects, "tag_is_one")
    assert coin["verdict"] == "no evidence" and coin["low"] < 0 < coin["high"]
    assert table["rule"].iloc[0] == "increasing_widths"  # ranked by effect
    assert table["rule"].iloc[-1] == "shared_bottleneck_ratio"  # every model shares it
    assert effect_row(effects, "shared_bottleneck_ratio")["verdict"] == "not testable"
    assert list(effects.edfs.columns) == list(EDF_COLUMNS)
    tested = table[table["verdict"].isin(["helps", "hurts", "no evidence"])]
    assert set(effects.edfs["rule"]) == set(tested["rule"])
    for side in effects.edfs.groupby(["rule", "side"])["fraction"]:
        assert side[1].iloc[-1] == pytest.approx(1.0)


def confounded_study(n: int, seed: int) -> pd.DataFrame:
    """The rule's models are cheaper (log10 params 4-5.6 against 4.4-6) and cheaper models err
    more (0.1 per decade); at equal cost the rule lowers error by 0.02."""
    rng = np.random.default_rng(seed)
    rows = []
    for follows in (1, 0):
        log_cost = rng.uniform(4.0, 5.6, n) if follows else rng.uniform(4.4, 6.0, n)
        error = 0.9 - 0.1 * log_cost - 0.02 * follows + rng.normal(0, 0.005, n)
        rows += [{"spec": {"family": "anynet", "tag": follows}, "error": e, "params": 10 ** c}
                 for e, c in zip(error, log_cost)]
    return pd.DataFrame(rows)


def test_cost_matching_corrects_a_confounded_rule() -> None:
    models, rules = confounded_study(150, seed=2), parse_rules([TAG])
    plain = effect_row(rule_effects(models, rules, bins=1, n_boot=400), "tag_is_one")
    assert plain["verdict"] == "hurts"  # cheapness, not the rule: about -0.1 * 0.4 + 0.02
    matched = effect_row(rule_effects(models, rules, n_boot=400), "tag_is_one")
    assert matched["verdict"] == "helps"
    assert matched["low"] < 0.02 < matched["high"]
    assert matched["matched_satisfied"] < matched["n_satisfied"]  # the cheapest bin dropped out


def test_too_few_models_on_a_side() -> None:
    models = anynet_study(60, seed=1)
    few = parse_rules([{"name": "wide_start", "all": [{"field": "widths", "index": 0, "eq": 256},
                                                      {"field": "widths", "index": 1, "eq": 256}]}])
    row = effect_row(rule_effects(models, few, n_boot=100), "wide_start")
    assert row["n_satisfied"] == 4  # of 60: about 60/25
    assert row["verdict"] == "too few models"
    assert row["reason"] == "only 4 models satisfy it (at least 8 a side)"
    assert np.isnan(row["effect"]) and np.isnan(row["low"])
    # Enough models on each side, but few of one side share a cost bin with the other.
    costly = confounded_study(40, seed=3)
    costly.loc[costly["spec"].map(lambda s: s["tag"] == 1), "params"] *= 10 ** np.linspace(
        -2.0, 0.0, 40)  # spread the rule's models far below the others
    row = effect_row(rule_effects(costly, parse_rules([TAG]), n_boot=100, min_models=12),
                     "tag_is_one")
    assert row["verdict"] == "too few models"
    assert "share a params bin with the other side" in row["reason"]


def test_rules_that_do_not_vary_are_not_testable() -> None:
    rng = np.random.default_rng(4)
    rows = []
    for _ in range(30):
        widths = sorted(int(w) for w in rng.choice(WIDTHS, 4))
        spec = {**RESNEXT, "widths": widths, "depths": [int(d) for d in rng.integers(1, 6, 4)]}
        rows.append({"spec": spec, "error": float(rng.uniform(0.2, 0.4)),
                     "params": float(sum(widths)) * 1000})
    effects = rule_effects(pd.DataFrame(rows), n_boot=100)
    by_rule = effects.table.set_index("rule")
    assert by_rule.loc["shared_group_width", "verdict"] == "not testable"
    assert "single value" in by_rule.loc["shared_group_width", "reason"]
    assert by_rule.loc["shared_group_width", "n_trivial"] == 30
    assert by_rule.loc["increasing_widths", "verdict"] == "not testable"
    assert by_rule.loc["increasing_widths", "reason"] == (
        "every model that can break it satisfies it (30)")
    assert by_rule.loc["increasing_depths", "verdict"] in ("no evidence", "too few models")
    lenet = pd.DataFrame({"spec": [{"family": "lenet"}] * 10, "error": 0.1, "params": 1e5})
    reasons = rule_effects(lenet, n_boot=10).table.set_index("rule")["reason"]
    assert reasons["increasing_widths"] == "no model has widths"
    with pytest.raises(RuleError, match="rule typo: no model in this study has field 'widthz'"):
        rule_effects(lenet, parse_rules([{"name": "typo", "shared": "widthz"}]))


def test_models_without_error_or_cost_are_left_out_and_a_missing_cost_is_refused() -> None:
    models = anynet_study(50, seed=5)
    models.loc[:4, "error"] = np.nan
    models.loc[5:9, "macs"] = 0
    assert rule_effects(models, cost_column="macs", n_boot=50).n_models == 40
    with pytest.raises(UserError, match="no cost column 'latency_ms'"):
        rule_effects(models, cost_column="latency_ms")


def test_rule_effects_are_deterministic() -> None:
    models = anynet_study(200, seed=6)
    rules = builtin_rules() + parse_rules([TAG])
    first = rule_effects(models, rules)  # the default n_boot
    pd.testing.assert_frame_equal(first.table, rule_effects(models, rules).table)


def test_quantile_statistic_runs_through_rule_effects() -> None:
    effects = rule_effects(anynet_study(160, seed=0), statistic="q25", n_boot=300)
    row = effect_row(effects, "increasing_widths")
    assert effects.statistic == "q25" and row["verdict"] == "helps"


# ---------------------------------------------------------------- figures from the frames
def test_figures_draw_the_frames() -> None:
    effects = rule_effects(anynet_study(160, seed=0), n_boot=200)
    tested = effects.table[effects.table["verdict"].isin(["helps", "hurts", "no evidence"])]
    fig = rule_edf_figure(effects)
    assert len(fig.data) == 2 * len(tested)
    first = tested["rule"].iloc[0]
    edf = effects.edfs[(effects.edfs["rule"] == first) & (effects.edfs["side"] == "satisfies")]
    assert list(fig.data[0].x) == edf["error"].tolist()
    assert list(fig.data[0].y) == edf["fraction"].tolist()
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0].startswith(f"{first}: {tested['verdict'].iloc[0]}")
    forest = rule_effect_figure(effects)
    points = {y: (x, plus, minus) for trace in forest.data
              for y, x, plus, minus in zip(trace.y, trace.x, trace.error_x.array,
                                           trace.error_x.arrayminus)}
    for row in tested.itertuples():
        x, plus, minus = points[row.rule]
        assert (x, x + plus, x - minus) == pytest.approx((row.effect, row.high, row.low))
    assert set(points) == set(tested["rule"])


def test_figures_say_when_nothing_was_tested() -> None:
    lenet = pd.DataFrame({"spec": [{"family": "lenet"}] * 10, "error": 0.1, "params": 1e5})
    effects = rule_effects(lenet, n_boot=10)
    for fig in (rule_edf_figure(effects), rule_effect_figure(effects)):
        assert not fig.data
        assert "no rule could be tested" in fig.layout.annotations[0].text


# ---------------------------------------------------------------- spaces side by side
def test_two_spaces_compare_as_the_hand_example() -> None:
    a = pd.DataFrame({"error": ERR_A, "params": COST_A})
    b = pd.DataFrame({"error": ERR_B, "params": COST_B})
    result = compare_spaces({"A": a, "B": b}, bins=3, n_boot=200)
    summary = result.summary.set_index("space")
    assert summary["mean_error"].tolist() == pytest.approx([0.175, 0.325])
    assert summary["matched"].tolist() == [3, 2]  # B's two models in bin 2 share no bin
    assert result.shifts["shift"].tolist() == pytest.approx([0.15])
    assert (result.bins, result.shared_bins) == (3, 2)
    assert result.edfs[result.edfs["space"] == "B"]["error"].tolist() == [0.25, 0.40]


def test_a_planted_shift_between_spaces_is_found_and_a_null_one_is_not() -> None:
    rng = np.random.default_rng(0)
    costs = 10 ** rng.uniform(4, 6, size=(3, 60))
    noise = rng.normal(0, 0.01, size=(3, 60))
    base = 0.3 - 0.02 * np.log10(costs)
    spaces = {name: pd.DataFrame({"error": base[i] + noise[i] - drop, "params": costs[i]})
              for i, (name, drop) in enumerate((("A", 0.0), ("B", 0.0), ("C", 0.03)))}
    result = compare_spaces(spaces, pairs=[("A", "B"), ("B", "C"), ("A", "C")], n_boot=1000)
    shifts = result.shifts.set_index(["from", "to"])
    assert shifts.loc[("A", "B"), "verdict"] == "no evidence"
    for pair in (("B", "C"), ("A", "C")):
        assert shifts.loc[pair, "verdict"] == "better"
        assert shifts.loc[pair, "low"] < -0.03 < shifts.loc[pair, "high"]
    fig = space_edf_figure(result)
    assert len(fig.data) == 3 and fig.data[2].name.startswith("C: mean ")


def test_a_shift_interval_is_the_matched_cost_bootstrap_of_the_pair() -> None:
    """Error trending with cost, few models a bin: each resample of a pair is weighted jointly
    (both means over the same bins), so the interval is bootstrap_ci's, not twice as wide."""
    rng = np.random.default_rng(3)
    pops = {}
    for name in ("A", "B"):
        costs = 10 ** rng.uniform(4, 6, size=24)
        pops[name] = pd.DataFrame({"error": 0.4 - 0.05 * np.log10(costs)
                                   + rng.normal(0, 0.01, 24), "params": costs})
    shift = compare_spaces(pops, n_boot=4000).shifts.iloc[0]
    direct = bootstrap_ci(pops["A"]["error"], pops["A"]["params"], pops["B"]["error"],
                          pops["B"]["params"], n_boot=4000)
    width, expected = shift["high"] - shift["low"], direct.high - direct.low
    assert 0.8 < width / expected < 1.25, (shift.to_dict(), direct)
    assert shift["low"] < shift["shift"] < shift["high"]


def test_a_side_of_one_model_is_said_in_the_singular() -> None:
    from nas.analysis.compare import too_few_reason

    one = {"satisfied": 1, "violated": 40}
    assert too_few_reason(one, one, "params", 8) == "only 1 model satisfies it (at least 8 a side)"
    other = {"satisfied": 20, "violated": 1}
    assert too_few_reason(other, other, "params", 8) == \
        "only 1 model violates it (at least 8 a side)"
