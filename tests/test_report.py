"""nas report and nas compare: the frames behind each figure, then the HTML that draws them.

The studies here are written the way `nas search` writes them (same user attributes, real specs
sampled from the shipped spaces, parameters counted on the built model); only the accuracies
are synthetic, so these tests need no training. test_export and test_dashboard reuse
`make_study`.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from nas.builder import build
from nas.errors import UserError
from nas.report import (
    compare_frames,
    edf_frame,
    evaluated,
    front_frame,
    history_frame,
    importance_data,
    trials_frame,
)
from nas.report.figures import importance_figure
from nas.report.frames import TRIAL_COLUMNS, Importances
from nas.search.space import load_space
from nas.study import study_front as front
from nas.study import study_trials

DATA = {"in_channels": 1, "num_classes": 10, "input_size": 28}
BUDGET = {"dataset": "fashion-mnist", "epochs": 1, "subset": 0.05, "batch_size": 128,
          "lr": None, "seed": 0}
# What happens to trial i (the rest complete, trained): the kinds `nas search` records.
SPECIAL = {3: "over_budget", 5: "pruned", 7: "failed", 9: "reused"}
MAX_PARAMS = 5_000_000  # above every sampled model; trial 3 is made to exceed it


def complete(trial: optuna.Trial, acc: float, params: int) -> None:
    trial.set_user_attr("trained", True)
    trial.set_user_attr("val_accuracy", acc)
    trial.set_user_attr("curve", [acc - 0.05, acc])
    trial.set_user_attr("epochs_run", 2)


def add_trial(study: optuna.Study, space: Any, kind: str, acc: float,
              done: list[optuna.trial.FrozenTrial]) -> None:
    """One trial as the objective records it; `kind` as in SPECIAL, else complete."""
    trial = study.ask()
    spec = space.suggest(trial, DATA)
    params = sum(p.numel() for p in build(spec).parameters())
    attrs = {"spec": spec.model_dump(mode="json"), "spec_hash": spec.content_hash(),
             "family": spec.family, "budget_key": "k", "params": params, "macs": 40 * params,
             "latency_ms": 0.2 + params / 1e5, "seed": 0, "device": "cpu",
             "environment": {"device": "cpu", "threads": 1}}
    if kind == "over_budget":  # as if sampled from a larger space
        attrs["params"] = params = MAX_PARAMS + params
    if kind == "reused":
        source = done[-1]
        attrs = {**{k: source.user_attrs[k] for k in attrs}, "reused_from": source.number}
        params, acc = attrs["params"], source.user_attrs["val_accuracy"]
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    trial.set_constraint("max_params", params - MAX_PARAMS)
    values = [acc] + [float(attrs[c]) for c in ("params", "macs")][:len(study.directions) - 1]
    if kind == "over_budget":
        trial.set_user_attr("trained", False)
        trial.set_user_attr("reason", "over_budget: params")
        study.tell(trial, [0.0] + values[1:])
    elif kind == "pruned":
        trial.set_user_attr("trained", True)
        trial.set_user_attr("val_accuracy", acc - 0.2)
        study.tell(trial, state=TrialState.PRUNED)
    elif kind == "failed":
        trial.set_user_attr("reason", "oom")
        study.tell(trial, state=TrialState.FAIL)
    else:
        complete(trial, acc, params)
        study.tell(trial, values)
    done.append(study.get_trials(deepcopy=False)[-1])


def make_study(path: Path, name: str = "synth", spaces: tuple[str, ...] = ("resnext", "vgg"),
               n: int = 14, objectives: tuple[str, ...] = ("accuracy", "params"),
               seed: int = 0, shift: float = 0.0) -> optuna.Study:
    """A study in a SQLite file at `path`, as `nas search` leaves it (built in memory, then
    written in one go: SQLite commits per attribute would make the tests slow)."""
    directions = ["maximize"] + ["minimize"] * (len(objectives) - 1)
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed),
                                  directions=directions)
    loaded = [load_space(s) for s in spaces]
    rng, done = random.Random(seed), []
    for i in range(n):
        acc = min(0.99, 0.55 + shift + 0.06 * math.log10(10 + 7 * i) + rng.uniform(-0.03, 0.03))
        add_trial(scratch, loaded[i % len(loaded)], SPECIAL.get(i, "complete"), acc, done)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{path}",
                                directions=directions)
    for key, value in {"space": "+".join(spaces), "space_hash": "h" * 16,
                       "objectives": list(objectives), "nas_version": "0.1.0", **BUDGET}.items():
        study.set_user_attr(key, value)
    study.add_trials(scratch.get_trials(deepcopy=False))
    return study


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite file of the shared synthetic study `synth`."""
    return tmp_path_factory.mktemp("study") / "synth.db"


@pytest.fixture(scope="module")
def study(db: Path) -> optuna.Study:
    return make_study(db)


@pytest.fixture(scope="module")
def frame(study: optuna.Study) -> pd.DataFrame:
    return trials_frame(study)


def rows(values: list[tuple[int, float, float]]) -> pd.DataFrame:
    """A trials frame of evaluated trials from (number, params, val_accuracy)."""
    data = [{c: None for c in TRIAL_COLUMNS} | {
        "number": n, "state": "COMPLETE", "family": "vgg", "val_accuracy": acc,
        "error": 1 - acc, "params": params, "macs": params, "latency_ms": 1.0, "trained": True,
        "feasible": True, "reused_from": math.nan, "on_front": False} for n, params, acc in values]
    return pd.DataFrame(data, columns=list(TRIAL_COLUMNS))


# ---- frames ---------------------------------------------------------------------------------


def test_trials_frame_has_one_row_per_trial_with_the_recorded_facts(
        study: optuna.Study, frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(TRIAL_COLUMNS)
    assert frame["number"].tolist() == list(range(14))
    by_number = frame.set_index("number")
    assert by_number.loc[3, "feasible"] == False  # noqa: E712  over budget
    assert by_number.loc[3, "trained"] == False  # noqa: E712
    assert math.isnan(by_number.loc[3, "val_accuracy"])
    assert by_number.loc[5, "state"] == "PRUNED" and by_number.loc[7, "state"] == "FAIL"
    assert by_number.loc[9, "reused_from"] == 8
    assert by_number.loc[9, "spec_hash"] == by_number.loc[8, "spec_hash"]
    assert set(frame.loc[frame["on_front"], "number"]) == {t.number for t in front(study)}
    spec = by_number.loc[0, "spec"]
    assert spec["family"] == by_number.loc[0, "family"]


def test_evaluated_keeps_distinct_complete_trained_feasible_trials(frame: pd.DataFrame) -> None:
    assert evaluated(frame)["number"].tolist() == [0, 1, 2, 4, 6, 8, 10, 11, 12, 13]


def test_front_frame_is_exactly_the_non_dominated_set(frame: pd.DataFrame) -> None:
    points = evaluated(frame)
    expected = {
        int(p.number) for p in points.itertuples()
        if not any(q.params <= p.params and q.val_accuracy >= p.val_accuracy
                   and (q.params < p.params or q.val_accuracy > p.val_accuracy)
                   for q in points.itertuples())}
    got = front_frame(frame, "params")
    assert set(got["number"]) == expected and len(expected) >= 2
    assert got["params"].is_monotonic_increasing and got["val_accuracy"].is_monotonic_increasing


def test_front_frame_on_known_points() -> None:
    frame = rows([(0, 10, 0.5), (1, 20, 0.7), (2, 15, 0.4), (3, 30, 0.7), (4, 5, 0.3)])
    assert front_frame(frame, "params")["number"].tolist() == [4, 0, 1]


def test_history_frame_tracks_the_best_so_far(frame: pd.DataFrame) -> None:
    history = history_frame(frame)
    assert 9 in history["number"].tolist()  # a reused trial is still a result at its time
    best = [max(history["val_accuracy"][: i + 1]) for i in range(len(history))]
    assert history["best_so_far"].tolist() == best


def test_edf_frame_on_known_errors() -> None:
    edf = edf_frame([0.3, 0.1, 0.2, 0.2])
    assert edf["error"].tolist() == [0.1, 0.2, 0.2, 0.3]
    assert edf["fraction"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert edf_frame([]).empty


def test_importances_name_the_sampled_parameters(study: optuna.Study,
                                                 frame: pd.DataFrame) -> None:
    importances = importance_data(study_trials(study), frame)
    assert importances.note is None
    sampled = set().union(*(t.params for t in study.trials if t.params))
    assert set(importances.frame["param"]) <= sampled and len(importances.frame) >= 3
    assert importances.frame["importance"].sum() == pytest.approx(1.0)


def test_importances_skip_with_a_note_when_too_few_trials(tmp_path: Path) -> None:
    small = make_study(tmp_path / "small.db", n=3)
    importances = importance_data(study_trials(small), trials_frame(small))
    assert importances.frame.empty and "at least 5" in importances.note


def importances_of(n: int) -> Importances:
    """n parameters with descending importances, named as a space's dimensions are."""
    weights = [2.0 ** -i for i in range(n)]
    frame = pd.DataFrame({"param": [f"widths_{i}" for i in range(n)],
                          "importance": [w / sum(weights) for w in weights]})
    return Importances(frame, None, 0.1)


@pytest.mark.parametrize("n", [1, 4, 12, 40])
def test_importance_chart_labels_every_bar_most_important_on_top(n: int) -> None:
    fig = importance_figure(importances_of(n)).to_plotly_json()
    names = [f"widths_{i}" for i in range(n)]
    axis = fig["layout"]["yaxis"]
    assert axis["tickmode"] == "array" and list(axis["ticktext"]) == names[::-1]
    assert list(axis["tickvals"]) == list(fig["data"][0]["y"]) == names[::-1]  # top: widths_0
    plot_height = fig["layout"]["height"] - fig["layout"]["margin"]["t"] - \
        fig["layout"]["margin"]["b"]
    assert plot_height / n >= 20, "room for a 12 px label per bar"


def test_importance_chart_grows_with_the_number_of_parameters() -> None:
    heights = [importance_figure(importances_of(n)).layout.height for n in (4, 12, 40)]
    assert heights[0] >= 300 and heights[0] < heights[1] < heights[2]


def test_compare_restricts_each_study_to_the_common_cost_range() -> None:
    a = rows([(0, 1, 0.5), (1, 5, 0.6), (2, 10, 0.7), (3, 20, 0.8)])
    b = rows([(0, 4, 0.55), (1, 8, 0.65), (2, 30, 0.9)])
    comparison = compare_frames({"a": a, "b": b}, "params")
    assert (comparison.low, comparison.high) == (4, 20)
    assert comparison.counts.to_dict("records") == [
        {"study": "a", "in_range": 3, "total": 4}, {"study": "b", "in_range": 2, "total": 3}]
    errors_a = comparison.edf[comparison.edf["study"] == "a"]["error"].tolist()
    assert errors_a == pytest.approx([0.2, 0.3, 0.4])


def test_compare_refuses_disjoint_cost_ranges() -> None:
    a, b = rows([(0, 1, 0.5), (1, 2, 0.6)]), rows([(0, 5, 0.5)])
    with pytest.raises(UserError, match="do not overlap"):
        compare_frames({"a": a, "b": b}, "params")


# ---- HTML -------------------------------------------------------------------------------------


def figures_in(html: str) -> dict[str, dict[str, Any]]:
    """The plotly figures embedded in a page, by key (fig-<key>-data script tags)."""
    found = re.findall(r'<script type="application/json" class="nas-figure" '
                       r'id="fig-([a-z]+)-data"[^>]*>(.*?)</script>', html, flags=re.S)
    return {key: decoded(json.loads(text)) for key, text in found}


def decoded(value: Any) -> Any:
    """Plotly's typed arrays ({"dtype": "f8", "bdata": base64}) as lists, everywhere."""
    if isinstance(value, dict) and set(value) >= {"dtype", "bdata"}:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if isinstance(shape, str):  # "rows, cols"
            shape = [int(n) for n in shape.split(",")]
        return array.reshape(shape).tolist() if shape else array.tolist()
    if isinstance(value, dict):
        return {k: decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def test_report_html_holds_the_frames_points(run_nas: Any, db: Path, frame: pd.DataFrame,
                                             study: optuna.Study, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = run_nas("report", "--study", "synth", "--storage", f"sqlite:///{db}",
                     "--out", str(out))
    assert result.code == 0, result.err
    html = out.read_text()
    assert "<script src" not in html and "Plotly.newPlot" in html  # plotly.js inline
    figs = figures_in(html)
    assert set(figs) == {"pareto", "history", "importance", "edf"}
    traces = figs["pareto"]["data"]
    fronts = [t for t in traces if t["name"] == "Pareto front"]
    expected = front_frame(frame, "params")
    assert len(fronts) == 1 and fronts[0]["x"] == expected["params"].tolist()
    assert fronts[0]["y"] == expected["val_accuracy"].tolist()
    families = {t["name"]: len(t["x"]) for t in traces if t["name"] != "Pareto front"}
    assert families == evaluated(frame)["family"].value_counts().to_dict()
    assert "stem_width" in fronts[0]["customdata"][0][1]  # hover shows the spec
    assert len(figs["edf"]["data"][0]["x"]) == len(evaluated(frame))
    assert figs["edf"]["data"][0]["mode"] == "lines" and \
        figs["history"]["data"][1]["line"]["shape"] == "hv"  # steps, as drawn
    assert len(figs["history"]["data"][0]["x"]) == len(history_frame(frame))
    importances = importance_data(study_trials(study), frame)
    ticks = figs["importance"]["layout"]["yaxis"]["ticktext"]  # every bar labelled
    assert sorted(ticks) == sorted(importances.frame["param"]) and len(ticks) >= 3


def test_report_of_a_three_objective_study_has_a_panel_per_cost(
        run_nas: Any, tmp_path: Path) -> None:
    make_study(tmp_path / "s3.db", name="s3", objectives=("accuracy", "params", "macs"), n=6)
    out = tmp_path / "r3.html"
    result = run_nas("report", "--storage", f"sqlite:///{tmp_path}/s3.db", "--out", str(out))
    assert result.code == 0, result.err
    figs = figures_in(out.read_text())
    assert [t["xaxis"] for t in figs["pareto"]["data"] if t["name"] == "Pareto front"] == \
        ["x", "x2"]
    assert "importance" not in figs  # 5 trained trials at most: a note instead
    assert "parameter importances need at least 5" in out.read_text()


def test_report_default_path_and_overwrite_rules(run_nas: Any, study: optuna.Study, db: Path,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("studies").mkdir()
    Path("studies/synth.db").write_bytes(db.read_bytes())
    assert run_nas("report", "--study", "synth").code == 0
    out = Path("studies/synth-report.html")
    out.write_text(out.read_text() + "<!-- sentinel -->")  # still a nas page by its start
    assert run_nas("report", "--study", "synth").code == 0  # an earlier report is replaced
    assert "sentinel" not in out.read_text()
    other = Path("notes.html")
    other.write_text("<p>mine</p>")
    result = run_nas("report", "--study", "synth", "--out", "notes.html")
    assert result.code == 2 and len(result.err_lines) == 1 and "not a nas report" in result.err
    assert other.read_text() == "<p>mine</p>"
    assert run_nas("report", "--study", "synth", "--out", "notes.html", "--overwrite").code == 0


def test_report_on_a_missing_database_creates_nothing(run_nas: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_nas("report", "--study", "nope")
    assert result.code == 2 and len(result.err_lines) == 1 and "no such file" in result.err
    result = run_nas("report", "--storage", f"sqlite:///{tmp_path}/absent.db")
    assert result.code == 2 and len(result.err_lines) == 1
    assert list(tmp_path.iterdir()) == []


def test_report_names_the_studies_when_the_choice_is_ambiguous(run_nas: Any,
                                                               tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    make_study(db, name="one", n=2)
    make_study(db, name="two", n=2)
    result = run_nas("report", "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "x.html"))
    assert result.code == 2 and "one, two" in result.err and "--study" in result.err
    result = run_nas("report", "--study", "three", "--storage", f"sqlite:///{db}")
    assert result.code == 2 and "no study 'three'" in result.err


def test_compare_overlays_edfs_with_counts_in_range(run_nas: Any, tmp_path: Path) -> None:
    a = make_study(tmp_path / "a.db", name="a", n=12)
    b = make_study(tmp_path / "b.db", name="b", n=12, seed=1, shift=0.05)
    out = tmp_path / "c.html"
    result = run_nas("compare", "--study", "a", "--study", "b",
                     "--storage", f"sqlite:///{tmp_path}/a.db",
                     "--storage", f"sqlite:///{tmp_path}/b.db", "--out", str(out))
    comparison = compare_frames({"a": trials_frame(a), "b": trials_frame(b)}, "params")
    assert result.code == 0, result.err
    assert comparison.counts["in_range"].min() >= 2
    assert (comparison.counts["in_range"] < comparison.counts["total"]).any()  # restricted
    traces = figures_in(out.read_text())["compare"]["data"]
    assert len(traces) == len(comparison.counts) == 2
    for trace, row in zip(traces, comparison.counts.itertuples()):
        assert trace["name"] == f"{row.study} ({row.in_range} of {row.total} trials in range)"
        assert len(trace["x"]) == row.in_range
    assert f"{comparison.counts.iloc[0].in_range} of" in result.out


def test_compare_needs_two_studies(run_nas: Any) -> None:
    result = run_nas("compare", "--study", "a")
    assert result.code == 2 and "two or more" in result.err


def test_report_of_a_single_objective_study_plots_params_and_macs(
        run_nas: Any, tmp_path: Path) -> None:
    single = make_study(tmp_path / "one.db", name="one", objectives=("accuracy",), n=8)
    out = tmp_path / "one.html"
    result = run_nas("report", "--storage", f"sqlite:///{tmp_path}/one.db", "--out", str(out))
    assert result.code == 0, result.err
    fronts = [t for t in figures_in(out.read_text())["pareto"]["data"]
              if t["name"] == "Pareto front"]
    frame = trials_frame(single)
    assert [f["x"] for f in fronts] == [front_frame(frame, c)[c].tolist()
                                        for c in ("params", "macs")]
    assert frame.loc[frame["on_front"], "number"].tolist() == [
        int(frame.loc[frame["val_accuracy"].idxmax(), "number"])]
