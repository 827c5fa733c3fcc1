"""nas scale-search: the grid and its constraint, refusals, the recorded grid, the summary and
the family (no training), and a real (tiny) scale search that resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import CliRunner
from optuna.trial import TrialState

from nas.errors import UserError
from nas.families.scaling import Scaling, scale
from nas.io import load_spec, parse_spec
from nas.pool import TrialEvent
from nas.search.scale_search import (
    ScaleRequest,
    Triple,
    enqueue_missing,
    family,
    make_grid,
    make_plan,
    open_scale_study,
    parse_values,
    recorded_settings,
    scale_search,
    spread,
    summarize,
)
from nas.study import StudySettings, TrialRecord, study_trials

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
# A small MBConv for Fashion-MNIST: two stages of depth 2, so that alpha changes the depths.
SMALL = {"family": "mbconv", "in_channels": 1, "num_classes": 10, "input_size": 28,
         "stem_width": 16, "stem_stride": 2, "depths": [2, 2], "widths": [16, 24],
         "expansions": [3, 3], "kernels": [3, 3], "strides": [2, 2], "se_ratios": [0.0, 0.0],
         "head_width": 64, "dropout": 0.0}
THREE = "1.2,1.1,1.15;1.1,1.2,1.1;1.4,1.1,1.1"
# and (1.21, 1.1, 1.15): the same network as (1.2, 1.1, 1.15) once depths are rounded up
FOUR = f"{THREE};1.21,1.1,1.15"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(json.dumps(SMALL))  # JSON is YAML
    return path


def request(tmp_path: Path, base: Path, **kw: Any) -> ScaleRequest:
    fields = {"study": "s", "storage": f"sqlite:///{tmp_path / 's.db'}", "base": str(base),
              "grid": THREE, "epochs": 1, "subset": 0.02, "storage_retry": 5}
    return ScaleRequest(**{**fields, **kw})


# ---- the grid ------------------------------------------------------------------------------

def test_the_papers_triple_meets_the_constraint_within_0_1_not_0_05() -> None:
    t = Triple(1.2, 1.1, 1.15)
    assert t.product == pytest.approx(1.2 * 1.21 * 1.3225) == pytest.approx(1.92027)
    assert make_grid(grid="1.2,1.1,1.15", tolerance=0.1).triples == [t]
    with pytest.raises(UserError, match=r"closest is \(1.2, 1.1, 1.15\) at 1.920"):
        make_grid(grid="1.2,1.1,1.15", tolerance=0.05)


def test_the_default_grid_counts() -> None:
    g = make_grid()
    # alpha 1.0..2.0 by 0.1, beta and gamma 1.0..1.5 by 0.05: 11 values each
    assert (g.candidates, g.kept, len(g.triples), g.tolerance) == (1331, 61, 61, 0.1)
    assert Triple(1.2, 1.1, 1.15) in g.triples
    assert all(abs(t.product - 2) <= 0.1 + 1e-9 for t in g.triples)
    assert make_grid(tolerance=0.05).kept == 26


def test_a_small_explicit_grid_keeps_what_the_tolerance_allows() -> None:
    # products: 1.1*1.21*1.21 = 1.611, 1.1*1.21*1.3225 = 1.760, 1.2*1.21*1.21 = 1.757,
    # 1.2*1.21*1.3225 = 1.920
    g = make_grid(alphas="1.1,1.2", betas="1.1", gammas="1.1,1.15")
    assert (g.candidates, g.triples) == (4, [Triple(1.2, 1.1, 1.15)])
    wide = make_grid(alphas="1.1,1.2", betas="1.1", gammas="1.1,1.15", tolerance=0.25)
    assert wide.triples == [Triple(1.1, 1.1, 1.15), Triple(1.2, 1.1, 1.1),
                            Triple(1.2, 1.1, 1.15)]
    assert make_grid(alphas="1.1,1.2", betas="1.1", gammas="1.1,1.15", tolerance=0.4).kept == 4


def test_values_are_lists_or_inclusive_ranges() -> None:
    assert parse_values("1.0:1.2:0.1", "--alphas") == [1.0, 1.1, 1.2]
    assert parse_values("1.0:1.5:0.05", "--betas")[3] == 1.15  # rounded, not 1.1500000000000001
    assert parse_values("1.2, 1.1,1.2", "--alphas") == [1.1, 1.2]
    for text, message in (("1.0:0.5:0.1", "ends below its start"), ("1:2", "START:STOP:STEP"),
                          ("1.1,x", "'x' is not a number"), ("0,1.1", "0 must be above 0"),
                          ("1:2:0", "0 must be above 0"), ("1:1000:0.1", "at most 1000")):
        with pytest.raises(UserError, match=message):
            parse_values(text, "--alphas")


def test_points_spread_evenly_over_the_kept_triples() -> None:
    kept = make_grid().triples
    two = make_grid(points=2)
    assert (two.kept, two.triples) == (61, [kept[15], kept[45]])
    assert make_grid(points=1).triples == [kept[30]]
    assert make_grid(points=100).triples == kept
    assert spread(kept, 61) == kept and len(set(spread(kept, 7))) == 7


# ---- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--base", "nope.yaml"], "--base: nope.yaml: no such file"),
    (["--base", "resnet18"], "--base resnet18: family resnet has no width_mult and depth_mult"),
    (["--base", "efficientnet_b0"], "--base takes 3-channel images in 1000 classes; "
                                    "fashion-mnist has 1 channel(s)"),
    (["--alphas", "-1,1.2"], "--alphas: -1 must be above 0"),
    (["--alphas", "1", "--betas", "1", "--gammas", "1"], "no triple of the grid has alpha x "
                                                         "beta^2 x gamma^2 within 0.1 of 2"),
    (["--grid", "1,2"], "--grid 1,2: a triple is alpha,beta,gamma"),
    (["--grid", THREE, "--alphas", "1.2"], "give --grid (explicit triples) or --alphas"),
    (["--tolerance", "-0.1"], "--tolerance must be 0 or more"),
    (["--points", "0"], "--points must be at least 1"),
    (["--phi", "0"], "--phi must be above 0"),
    (["--phi", "200"], "at phi 200: scaled spec: input_size: at most 4096 pixels"),
    (["--dataset", "."], "takes a built-in dataset"),
    (["--subset", "2"], "--subset must be in (0, 1]"),
    (["--family-up-to", "-1"], "--family-up-to must be 0 or more"),
])
def test_bad_input_is_one_line_exit_2_and_no_file(run_nas: CliRunner, base: Path,
                                                  tmp_path: Path, monkeypatch: Any,
                                                  args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    if "--base" not in args:
        args = ["--base", str(base), *args]
    result = run_nas("scale-search", "--study", "s", *args)
    assert result.code == 2, result.out
    assert len(result.err_lines) == 1 and message in result.err, result.err
    assert not (tmp_path / "studies").exists()


def test_without_base_a_new_study_asks_for_one(run_nas: CliRunner, tmp_path: Path,
                                               monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_nas("scale-search", "--study", "s")
    assert result.code == 2 and result.err_lines == [
        "nas: error: give --base SPEC: the spec (file or preset) to scale, of the mbconv or "
        "efficientnet family"]


def queued_study(tmp_path: Path, base: Path, **kw: Any) -> optuna.Study:
    """The study a scale search makes, with its triples queued (nothing trained)."""
    req = request(tmp_path, base, **kw)
    study = open_scale_study(req, make_plan(req, recorded_settings(req)))
    enqueue_missing(study, make_plan(req, recorded_settings(req)))
    return study


def test_the_study_records_its_grid_and_queues_each_triple_once(tmp_path: Path,
                                                                base: Path) -> None:
    study = queued_study(tmp_path, base)
    settings = StudySettings.from_study(study)
    grid = settings.scale_search
    assert grid is not None and grid["phi"] == 1.0 and grid["tolerance"] == 0.1
    assert grid["triples"] == [[1.1, 1.2, 1.1], [1.2, 1.1, 1.15], [1.4, 1.1, 1.1]]
    assert settings.objectives == ["accuracy", "macs"] and settings.epochs == 1
    trials = study_trials(study)
    assert [t.state for t in trials] == [TrialState.WAITING] * 3
    first = trials[0].record
    assert first.scaling == {"alpha": 1.1, "beta": 1.2, "gamma": 1.1, "phi": 1.0,
                             "product": 1.91664}
    spec = parse_spec(first.spec)
    assert spec == scale(load_spec(base), Scaling.compound(1, 1.1, 1.2, 1.1))
    assert first.spec_hash == spec.content_hash() and spec.input_size == 31
    assert trials[0].trial.system_attrs["fixed_params"] == {"alpha": 1.1, "beta": 1.2,
                                                            "gamma": 1.1}
    # queued again: nothing added; a rerun leaving every option out takes the recorded ones
    req = request(tmp_path, base)
    assert enqueue_missing(study, make_plan(req, recorded_settings(req))) == 0
    bare = ScaleRequest(study="s", storage=req.storage)
    assert make_plan(bare, recorded_settings(bare)).triples == make_plan(
        req, recorded_settings(req)).triples


@pytest.mark.parametrize(("args", "message"), [
    (["--grid", "1.2,1.1,1.15"], "study s was made with a grid of 3 triples (this run's has 1"),
    (["--points", "2"], "a grid of 3 triples (this run's has 2"),
    (["--phi", "2"], "study s was made with phi 1 (not 2)"),
    (["--epochs", "3"], "study s was made with epochs 1 (not 3)"),
    (["--base", "BASE2"], "study s was made with base "),
])
def test_another_grid_phi_base_or_budget_on_the_study_is_refused(
        run_nas: CliRunner, tmp_path: Path, base: Path, args: list[str], message: str) -> None:
    study = queued_study(tmp_path, base)
    other = tmp_path / "other.yaml"
    other.write_text(json.dumps({**SMALL, "widths": [16, 32]}))
    args = [str(other) if a == "BASE2" else a for a in args]
    result = run_nas("scale-search", "--study", "s", "--storage", f"sqlite:///{tmp_path}/s.db",
                     *args)
    assert result.code == 2
    assert len(result.err_lines) == 1 and message in result.err, result.err
    assert "leave those options out to resume it as it was, or use another --study" in result.err
    assert len(study_trials(study)) == 3, "nothing queued"


def test_a_study_that_is_not_a_scale_search_is_refused(run_nas: CliRunner, tmp_path: Path,
                                                       base: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name="s", storage=url)
    result = run_nas("scale-search", "--study", "s", "--storage", url, "--base", str(base))
    assert result.code == 2 and "study s in" in result.err and "is not a scale search" in \
        result.err


# ---- the summary and the family (finished trials made by hand, nothing trained) ------------

def finish(study: optuna.Study, accuracies: dict[tuple[float, ...], tuple[float, int]]) -> None:
    """Finishes the queued trials with these (accuracy, MACs) by triple."""
    storage = study._storage
    for t in study_trials(study, (TrialState.WAITING,)):
        s = t.record.scaling
        assert s is not None
        acc, macs = accuracies[(s["alpha"], s["beta"], s["gamma"])]
        for key, value in TrialRecord(trained=True, val_accuracy=acc, macs=macs,
                                      params=macs // 10).to_attrs().items():
            storage.set_trial_user_attr(t.trial._trial_id, key, value)
        storage.set_trial_state_values(t.trial._trial_id, TrialState.RUNNING)
        storage.set_trial_state_values(t.trial._trial_id, TrialState.COMPLETE, [acc, macs])


def test_the_best_is_the_most_accurate_then_the_cheapest_and_implies_a_family(
        tmp_path: Path, base: Path) -> None:
    from nas.cli.scale_cmds import costed

    study = queued_study(tmp_path, base)
    finish(study, {(1.1, 1.2, 1.1): (0.80, 900), (1.2, 1.1, 1.15): (0.80, 700),
                   (1.4, 1.1, 1.1): (0.75, 500)})
    req = request(tmp_path, base)
    the_plan = make_plan(req, recorded_settings(req))
    result = summarize(study, the_plan)
    assert result["counts"] == {"triples": 3, "trained": 3, "failed": 0, "not_done": 0}
    best = result["best"]
    assert (best["alpha"], best["beta"], best["gamma"], best["macs"]) == (1.2, 1.1, 1.15, 700)
    fam, note = family(the_plan, best, 3, costed)
    assert note is None and [m["phi"] for m in fam] == [0, 1, 2, 3]
    assert fam[0]["input_size"] == 28 and fam[0]["params"] == costed(load_spec(base))["params"]
    assert (fam[2]["width_mult"], fam[2]["depth_mult"], fam[2]["input_size"]) == (
        pytest.approx(1.1**2), pytest.approx(1.2**2), round(28 * 1.15**2))
    assert fam[1]["hash"] == parse_spec(the_plan.specs[(1.2, 1.1, 1.15)]).content_hash()
    assert fam[3]["macs"] > fam[2]["macs"] > fam[1]["macs"] > fam[0]["macs"]
    # a phi whose network is not valid ends the family with a note
    fam, note = family(the_plan, {"alpha": 5.0, "beta": 1.0, "gamma": 1.0}, 3, costed)
    assert len(fam) == 3 and note == "phi 3: scaled spec: depth_mult: Input should be less " \
                                     "than or equal to 64"  # 5^3 = 125


# ---- a real scale search -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST")
def test_a_tiny_scale_search_runs_resumes_and_ends_with_the_best_and_its_family(
        run_nas: CliRunner, tmp_path: Path, base: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    req = request(tmp_path, base, grid=FOUR)
    runs: list[int] = []

    def stop_after_two(event: TrialEvent) -> None:
        runs.append(event.number)
        if len(runs) == 2:
            raise KeyboardInterrupt  # as Ctrl-C after two triples

    with pytest.raises(KeyboardInterrupt):
        scale_search(req, on_event=stop_after_two)
    assert runs == [0, 1]
    argv = ["scale-search", "--study", "s", "--storage", req.storage_url, "--base", str(base),
            "--grid", FOUR, "--epochs", "1", "--subset", "0.02", "--jobs", "2", "--json"]
    result = run_nas(*argv)  # the other two, in two workers
    assert result.code == 0, result.err
    first = json.loads(result.out)
    study = optuna.load_study(study_name="s", storage=req.storage_url)
    done = study_trials(study, (TrialState.COMPLETE,))
    assert sorted(t.number for t in done) == [0, 1, 2, 3], "each triple once"
    assert len(study.trials) == 4
    assert first["counts"] == {"triples": 4, "trained": 4, "failed": 0, "not_done": 0}
    rows = {(r["alpha"], r["beta"], r["gamma"]): r for r in first["triples"]}
    same, twin = rows[(1.21, 1.1, 1.15)], rows[(1.2, 1.1, 1.15)]
    assert (same["trial"], same["reused_from"], twin["trial"]) == (2, 1, 1), "not retrained"
    assert same["val_accuracy"] == twin["val_accuracy"] and same["hash"] == twin["hash"]
    assert (same["depth_mult"], twin["depth_mult"]) == (1.21, 1.2)
    assert all(row["val_accuracy"] is not None and row["macs"] > 0 for row in first["triples"])
    best = first["best"]
    assert best["val_accuracy"] == max(row["val_accuracy"] for row in first["triples"])
    assert [m["phi"] for m in first["family"]] == [0, 1, 2, 3]
    assert first["family"][1]["hash"] == best["hash"], "phi 1 of the family is the best's net"
    assert first["family"][0]["params"] == first["base_costs"]["params"]

    again = run_nas(*argv[:-1])  # the same command: nothing retrains, the table and the family
    assert again.code == 0, again.err
    assert len(optuna.load_study(study_name="s", storage=req.storage_url).trials) == 4
    assert "queued 0 triple(s); 4 already trained" in again.out
    assert "same network as trial 1" in again.out
    assert f"best: alpha {best['alpha']:g}, beta {best['beta']:g}, gamma {best['gamma']:g} " \
           f"(trial {best['trial']})" in again.out
    assert "the family of" in again.out and "a·b²·g²" in again.out

    report = run_nas("report", "--study", "s", "--storage", req.storage_url,
                     "--out", str(tmp_path / "r.html"))
    assert report.code == 0, report.err
    exported = run_nas("export", "--study", "s", "--storage", req.storage_url, "--best",
                       "--out", str(tmp_path / "best"))
    assert exported.code == 0, exported.err
    files = list((tmp_path / "best").glob("*.yaml"))
    assert len(files) == 1 and load_spec(files[0]).content_hash() == best["hash"]
