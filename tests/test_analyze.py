"""nas analyze, nas refine, nas fit-regnet and the report's design-rules section.

The studies are real SQLite files written as `nas search` writes them (typed records, recorded
settings, the sampler among them); their AnyNet specs are drawn at random and their errors come
from a planted rule: models whose stage widths never decrease err 0.04 less, plus noise and a
cost trend. No training, so every test takes a second or less.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from nas.analysis import RuleEffects, builtin_rules, parse_rules
from nas.analysis.models import stage_lists
from nas.analysis.refine import compact, refine_space, space_form
from nas.io import load_spec, parse_spec
from nas.report import report_html
from nas.resources import preset_names
from nas.search.space import load_space
from nas.study import StudySettings, TrialRecord

DATA = {"in_channels": 1, "num_classes": 10, "input_size": 28}
ANYNET = {"family": "anynet", **DATA, "stem": "simple", "stem_width": 16, "first_stride": 1}
PLANTED = 0.04  # error removed by non-decreasing widths


def anynet_spec(rng: random.Random, increasing: bool) -> dict[str, Any]:
    """An AnyNetX_A point; widths sorted when `increasing`."""
    widths = [rng.choice([32, 64, 96, 128]) for _ in range(4)]
    return {**ANYNET, "depths": [rng.randint(1, 3) for _ in range(4)],
            "widths": sorted(widths) if increasing else widths,
            "bottleneck_ratios": [rng.choice([1.0, 0.5, 0.25]) for _ in range(4)],
            "group_widths": [rng.choice([1, 2, 4, 8]) for _ in range(4)]}


def cost(spec: dict[str, Any]) -> int:
    """A stand-in for the parameter count (the tests need a positive cost, not the real one)."""
    return 2000 + sum(d * w * w * r for d, w, r in
                      zip(spec["depths"], spec["widths"], spec["bottleneck_ratios"]))


def record(spec: dict[str, Any], acc: float | None, **extra: Any) -> dict[str, Any]:
    parsed = parse_spec(spec)
    params = cost(spec)
    return TrialRecord(spec=parsed.model_dump(mode="json"), spec_hash=parsed.content_hash(),
                       family=parsed.family, params=params, macs=30 * params,
                       trained=acc is not None, val_accuracy=acc, **extra).to_attrs()


def planted_trials(n: int, seed: int, planted: float = PLANTED,
                   ) -> list[optuna.trial.FrozenTrial]:
    """n complete trials, half with widths sorted; errors from the planted rule."""
    rng, out = random.Random(seed), []
    for i in range(n):
        spec = anynet_spec(rng, increasing=i % 2 == 0)
        increasing = all(b >= a for a, b in zip(spec["widths"], spec["widths"][1:]))
        error = (0.30 - 0.02 * math.log10(cost(spec)) - planted * increasing
                 + rng.gauss(0, 0.012))
        attrs = record(spec, 1 - error)
        out.append(optuna.trial.create_trial(values=[1 - error, float(attrs["params"])],
                                             user_attrs=attrs))
    return out


def write_study(path: Path, name: str, trials: list[optuna.trial.FrozenTrial],
                sampler: str | None = "random") -> str:
    """A study in a SQLite file, its settings as `nas search` records them; its URL."""
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name=name, storage=url,
                                directions=["maximize", "minimize"])
    space = load_space("anynet")
    StudySettings(space="anynet", space_hash=space.content_hash(),
                  space_definition=space.model_dump(mode="json"), sampler=sampler,
                  objectives=["accuracy", "params"], nas_version="0.1.0", dataset="fashion-mnist",
                  epochs=2, subset=0.25, batch_size=128, seed=0).write(study)
    study.add_trials(trials)
    return url


STUDIES = {  # name: (trials, recorded sampler)
    "planted": (lambda: planted_trials(64, seed=1), "random"),
    "small": (lambda: planted_trials(16, seed=5, planted=0.0), "random"),
    "tpe": (lambda: planted_trials(16, seed=3), "tpe"),
    "old": (lambda: planted_trials(16, seed=4), None),
    "three": (lambda: planted_trials(3, seed=2), "random"),
    "empty": (lambda: [optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=record(
        anynet_spec(random.Random(0), True), None, reason="oom"))], "random"),
    "regnets": (lambda: regnet_trials(5, seed=0), "random"),
    "pruned": (lambda: planted_trials(16, seed=6) + [optuna.trial.create_trial(
        state=TrialState.PRUNED, user_attrs=record(anynet_spec(random.Random(i), False), 0.5,
                                                   reason="early_stopped")) for i in range(2)],
               "random"),
}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite file holding every study of STUDIES (its schema is made once: seconds)."""
    path = tmp_path_factory.mktemp("studies") / "studies.db"
    for name, (trials, sampler) in STUDIES.items():
        storage = write_study(path, name, trials(), sampler)
    return storage


def analyze(run_nas: Any, url: str, study: str, *args: str) -> Any:
    return run_nas("analyze", "--storage", url, "--study", study, *args)


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def table_rows(out: str) -> dict[str, list[str]]:
    """The rule table's rows by rule name (the words of each line)."""
    rules = {r.name for r in builtin_rules()} | {"wide_last_stage"}
    return {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in rules}


# ---- nas analyze ----------------------------------------------------------------------------

def test_analyze_finds_the_planted_rule_and_ranks_it_first(run_nas: Any, url: str) -> None:
    result = analyze(run_nas, url, "planted")
    assert result.code == 0, result.err
    assert result.err == ""  # a random study: no warning
    lines = result.out.splitlines()
    assert lines[0].startswith("study planted: 64 models trained to the full budget, "
                               "sampler random")
    rows = table_rows(result.out)
    assert set(rows) == {r.name for r in builtin_rules()}  # every rule in one table
    first = lines[2].split()
    assert first[:2] == ["increasing_widths", "helps"]
    effect = float(first[2])
    low, high = float(first[3].strip("[,")), float(first[4].strip("]"))
    assert low < PLANTED < high and low > 0
    assert abs(effect - PLANTED) < 0.015
    # the other rules have no effect planted: none may be reported as helping or hurting
    assert all(row[1] != "helps" and row[1] != "hurts" for name, row in rows.items()
               if name != "increasing_widths")
    assert rows["width_ratio_band"][1:3] == ["not", "testable"]  # no AnyNetX_A point has it


def test_analyze_json_is_one_object_with_the_table(run_nas: Any, url: str) -> None:
    result = analyze(run_nas, url, "planted", "--json", "--cost", "macs")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert set(data) == {"study", "sampler", "warning", "stopped_early", "cost", "statistic",
                         "confidence", "n_boot", "seed", "n_models", "rules"}
    assert (data["study"], data["sampler"], data["cost"], data["n_models"]) == (
        "planted", "random", "macs", 64)
    first = data["rules"][0]
    assert first["rule"] == "increasing_widths" and first["verdict"] == "helps"
    assert first["n_satisfied"] + first["n_violated"] == 64
    untested = [r for r in data["rules"] if r["verdict"] == "not testable"]
    assert untested and all(r["effect"] is None and r["reason"] for r in untested)


def test_analyze_tests_user_rules_beside_the_built_in_ones(run_nas: Any, url: str,
                                                          tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: wide_last_stage\n"
                     "    all: [{field: widths, index: -1, ge: 96}]\n")
    result = analyze(run_nas, url, "planted", "--rules", str(rules))
    assert result.code == 0, result.err
    assert "wide_last_stage" in table_rows(result.out)


def one_line_refusal(result: Any, *words: str) -> None:
    assert result.code == 2
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("nas: error: ")
    for word in words:
        assert word in result.err


def test_analyze_refuses_a_rule_over_an_unknown_field(run_nas: Any, url: str,
                                                      tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- name: typo\n  all: [{field: widthz, index: 0, ge: 64}]\n")
    one_line_refusal(analyze(run_nas, url, "planted", "--rules", str(rules)), "rule typo",
                     "'widthz'")
    one_line_refusal(analyze(run_nas, url, "planted", "--cost", "latency"),
                     "--cost latency: one of params, macs")


def test_analyze_refuses_a_study_without_trained_trials(run_nas: Any, url: str) -> None:
    one_line_refusal(analyze(run_nas, url, "empty"), "study empty has no trained trials")


def test_analyze_refuses_a_study_too_small_for_any_rule(run_nas: Any, url: str) -> None:
    one_line_refusal(analyze(run_nas, url, "three"), "study three has 3 trained models",
                     "at least 16")


def test_analyze_refuses_a_tpe_study_unless_allowed(run_nas: Any, url: str) -> None:
    one_line_refusal(analyze(run_nas, url, "tpe"), "sampled by tpe", "--allow-nonrandom")
    allowed = analyze(run_nas, url, "tpe", "--allow-nonrandom")
    assert allowed.code == 0
    assert len(allowed.err_lines) == 1 and allowed.err.startswith("nas: warning: ")
    assert "sampled by tpe" in allowed.err and "increasing_widths" in allowed.out


def test_analyze_warns_when_an_older_study_does_not_record_its_sampler(
        run_nas: Any, url: str) -> None:
    result = analyze(run_nas, url, "old")
    assert result.code == 0
    assert len(result.err_lines) == 1 and "does not record its sampler" in result.err
    assert "sampler unknown" in result.out


def test_analyze_warns_that_early_stopping_left_models_out(run_nas: Any, url: str) -> None:
    result = analyze(run_nas, url, "pruned")
    assert result.code == 0
    assert result.err_lines == ["nas: warning: 2 trials of study pruned were stopped early and "
                                "are left out, so the EDFs describe the models that survived; "
                                "search with --no-early-stop for a whole random population"]
    assert result.out.startswith("study pruned: 16 models")


# ---- per-stage lists for every residual family ----------------------------------------------

def test_stage_lists_come_from_the_lowered_stages_when_a_spec_does_not_state_them() -> None:
    regnet = load_spec("regnet_x_400mf").model_dump(mode="json")
    derived = stage_lists(regnet)
    assert (derived["depths"], derived["widths"]) == ([1, 2, 7, 12], [32, 64, 160, 400])
    assert "group_widths" not in derived  # the spec states group_width once: trivial, as before
    resnext = load_spec({"family": "resnext", **DATA, "stem": "simple", "depths": [1, 2],
                         "widths": [32, 64], "cardinality": 4}).model_dump(mode="json")
    assert stage_lists(resnext)["group_widths"] == [4, 8]  # bottleneck 16, 32 in 4 groups
    resnet = stage_lists(load_spec("resnet18").model_dump(mode="json"))
    assert resnet["depths"] == [2, 2, 2, 2] and "group_widths" not in resnet  # basic blocks
    vgg = load_spec("vgg11").model_dump(mode="json")
    assert stage_lists(vgg) == vgg
    rules = {r.name: r for r in builtin_rules()}
    assert rules["increasing_widths"].status(derived) == "satisfied"
    assert rules["increasing_depths"].status(regnet) == "missing"  # without the derived lists


# ---- nas refine ------------------------------------------------------------------------------

def test_refine_writes_a_space_with_the_rule_that_helps(run_nas: Any, url: str,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "anynet_refined.yaml"
    result = run_nas("refine", "--storage", url, "--study", "planted", "--out", str(out))
    assert result.code == 0, result.err
    assert "applied increasing: widths (increasing_widths)" in result.out
    space = load_space(out)
    assert space.name == "anynet_refined" and space.increasing == ("widths",)
    assert space.shared == () and space.dimensions == load_space("anynet").dimensions
    head = out.read_text().splitlines()[:4]
    assert head[0].startswith("# Refined by `nas refine`") and "study planted" in head[0]
    assert any("increasing: widths  <- increasing_widths, effect +" in line for line in head)
    before = out.read_text()
    again = run_nas("refine", "--storage", url, "--study", "planted", "--out", str(out))
    one_line_refusal(again, "already exists")
    assert out.read_text() == before


def test_refine_refuses_when_no_rule_helps(run_nas: Any, url: str, tmp_path: Path) -> None:
    out = tmp_path / "small.yaml"
    one_line_refusal(run_nas("refine", "--storage", url, "--study", "small", "--out", str(out)),
                     "none helps", "no file written")
    assert not out.exists()


def effects(verdicts: dict[str, str]) -> RuleEffects:
    """A rule table with the given verdicts (effects made up)."""
    table = pd.DataFrame([{"rule": r, "verdict": v, "effect": 0.02, "low": 0.01, "high": 0.03}
                          for r, v in verdicts.items()])
    return RuleEffects(table, pd.DataFrame(), "params", "mean", 0.95, 2000, 0, 40)


def test_refine_leaves_out_contradicted_rules_and_those_without_a_space_form() -> None:
    users = parse_rules([{"name": "shrinking_widths", "non_increasing": "widths"},
                         {"name": "both_shared", "all": [{"shared": "bottleneck_ratios"},
                                                         {"shared": "group_widths"}]}])
    rules = builtin_rules() + users
    definition = load_space("anynet").model_dump(mode="json")
    verdicts = {"increasing_widths": "helps", "shrinking_widths": "helps",
                "width_ratio_band": "helps", "increasing_depths": "helps",
                "both_shared": "helps", "shared_group_width": "no evidence"}
    refined = refine_space(definition, effects(verdicts), rules, "x")
    assert refined.applied == [("increasing_depths", "increasing", "depths"),
                               ("both_shared", "shared", "bottleneck_ratios"),
                               ("both_shared", "shared", "group_widths")]
    why = dict(refined.left_out)
    assert set(why) == {"increasing_widths", "shrinking_widths", "width_ratio_band"}
    assert "contradicted: shrinking_widths" in why["increasing_widths"]
    assert "no space-rule form" in why["width_ratio_band"]
    assert space_form(users[0]) is None and space_form(rules[0]) == [("shared",
                                                                      "bottleneck_ratios")]
    assert load_space("anynet").model_validate(refined.definition).increasing == ("depths",)


# ---- nas fit-regnet --------------------------------------------------------------------------

REGNET_PRESETS = [n for n in preset_names() if n.startswith("regnet_")]


def test_every_torchvision_regnet_preset_is_shipped() -> None:
    assert len(REGNET_PRESETS) == 15  # regnet_x_* and regnet_y_* of torchvision


@pytest.mark.parametrize("name", REGNET_PRESETS)
def test_fit_regnet_recovers_every_torchvision_regnet(run_nas: Any, tmp_path: Path,
                                                      name: str) -> None:
    out = tmp_path / f"{name}.yaml"
    result = run_nas("fit-regnet", name, "--out", str(out))
    assert result.code == 0, result.err
    assert "e_fit 0.0000" in result.out
    # the same stages, blocks and groups, so the same parameter count, without building it
    assert load_spec(out).lower() == load_spec(name).lower()


def regnet_trials(n: int, seed: int) -> list[optuna.trial.FrozenTrial]:
    """Trials of RegNets at 28x28 sampled from the shipped regnet space."""
    space, scratch = load_space("regnet"), optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed), directions=["maximize", "minimize"])
    out = []
    for i in range(n):
        trial = scratch.ask()
        spec = space.suggest(trial, DATA).model_dump(mode="json")
        parsed = parse_spec(spec)
        attrs = TrialRecord(spec=spec, spec_hash=parsed.content_hash(), family="regnet",
                            params=1000 + i, trained=True, val_accuracy=0.8 + 0.01 * i
                            ).to_attrs()
        out.append(optuna.trial.create_trial(values=[0.8 + 0.01 * i, 1000.0 + i],
                                             user_attrs=attrs))
    return out


def test_fit_regnet_fits_each_of_a_studys_best_models(run_nas: Any, url: str,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "fits"
    result = run_nas("fit-regnet", "--storage", url, "--study", "regnets", "--top", "2",
                     "--out", str(out), "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert [f["source"] for f in data["fits"]] == ["trial 4", "trial 3"]  # best first
    assert all(f["e_fit"] == 0.0 and f["stages"] == f["source_stages"] for f in data["fits"])
    trials = load(url, "regnets").trials
    # named as `nas export` names its files: trial number, family, spec hash
    files = [out / f"trial-{n:04d}-regnet-{load_spec(trials[n].user_attrs['spec']).content_hash()}"
                   ".yaml" for n in (4, 3)]
    assert data["out"] == [str(f) for f in files], "several models: one file each in --out"
    for number, file in zip((4, 3), files):
        assert load_spec(file).lower() == load_spec(trials[number].user_attrs["spec"]).lower()
        assert file.read_text().startswith("family: regnet\n"), "block YAML, as export writes"
    assert all(f["params"] == f["source_params"] and f["macs"] == f["source_macs"]
               and f["changes"] == [] for f in data["fits"])
    again = run_nas("fit-regnet", "--storage", url, "--study", "regnets", "--top", "2",
                    "--out", str(out))
    assert again.code == 2 and f"{files[0].name}: already exists" in again.err
    as_file = run_nas("fit-regnet", "--storage", url, "--study", "regnets", "--top", "2",
                      "--out", str(tmp_path / "best.yaml"))
    assert as_file.code == 2 and "2 models need a folder" in as_file.err
    twice = run_nas("fit-regnet", "1", "1", "--storage", url, "--study", "regnets", "--out",
                    str(tmp_path / "one.yaml"))
    assert twice.code == 0 and (tmp_path / "one.yaml").is_file(), "a number given twice: once"
    chosen = run_nas("fit-regnet", "1", "0", "--storage", url, "--study", "regnets")
    assert chosen.code == 0
    assert [line.split(" (")[0] for line in chosen.out.splitlines()
            if line.startswith("trial")] == ["trial 1", "trial 0"]


def test_fit_regnet_refusals(run_nas: Any, url: str, tmp_path: Path) -> None:
    one_line_refusal(run_nas("fit-regnet", "7", "--storage", url, "--study", "regnets"),
                     "no trial 7")
    one_line_refusal(run_nas("fit-regnet", "regnet_x_400mf", "--top", "2"), "--study")
    one_line_refusal(run_nas("fit-regnet", "vgg11"), "no residual stages")
    out = tmp_path / "taken.yaml"
    out.write_text("x")
    one_line_refusal(run_nas("fit-regnet", "regnet_x_400mf", "--out", str(out)), "exists")


# ---- nas report -------------------------------------------------------------------------------

def test_report_carries_the_rule_table_for_a_random_study(url: str) -> None:
    page = report_html(load(url, "planted"))
    section = page[page.index("<h2>Design rules</h2>"):]
    assert "<td>increasing_widths</td><td>helps</td>" in section
    assert 'id="fig-rule-effects"' in section and 'id="fig-rule-edfs"' in section


def test_report_says_why_a_tpe_study_has_no_rule_tests(url: str) -> None:
    section = report_html(load(url, "tpe")).split("<h2>Design rules</h2>")[1]
    assert "sampled by tpe, not at random" in section and "--sampler random" in section
    assert "fig-rule-effects" not in section


def test_report_and_analysis_import_no_torch() -> None:
    code = ("import sys, nas.report, nas.analysis.study, nas.analysis.refine, "
            "nas.analysis.regnet_fit; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_new_search_study_records_its_sampler(tmp_path: Path) -> None:
    from nas.search.request import SearchRequest
    from nas.search.resume import open_search_study

    for sampler in ("random", "tpe"):
        req = SearchRequest(space=load_space("anynet"), trials=1, study=sampler,
                            storage=f"sqlite:///{tmp_path / 's.db'}", sampler=sampler)
        study, _ = open_search_study(req)
        assert StudySettings.from_study(study).sampler == sampler


def test_a_written_space_keeps_zero_bounds_and_drops_only_defaults() -> None:
    definition = {"family": "anynet", "dimensions": {
        "se_ratio": {"low": 0.0, "high": 0.25, "step": 0.25, "log": False, "choices": None},
        "depths": {"low": 1, "high": 3, "per_stage": True}}}
    dims = compact(definition)["dimensions"]
    assert dims["se_ratio"] == {"low": 0.0, "high": 0.25, "step": 0.25}
    assert dims["depths"] == {"low": 1, "high": 3, "per_stage": True}
