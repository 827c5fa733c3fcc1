"""nas confirm: a real (tiny) confirmation, its resume, its findings, and refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from nas.analysis.confirmation import summarize
from nas.analysis.trust import NoiseFloor
from nas.errors import UserError
from nas.io import parse_spec
from nas.pool import TrialEvent
from nas.report import report_html
from nas.report.confirmation import within_noise
from nas.search.confirm import ConfirmRequest, confirm, confirm_name, plan
from nas.study import StudySettings, TrialRecord, study_trials
from nas.study.locate import StudyRef
from nas.study.storage import open_storage

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
TINY = ["--epochs", "1", "--subset", "0.02", "--seeds", "2"]


def tiny_spec(width: int) -> dict[str, Any]:
    spec = {"family": "resnet", "in_channels": 1, "num_classes": 10, "input_size": 28,
            "depths": [1], "widths": [width], "stem": "simple", "stem_width": 8}
    return parse_spec(spec).model_dump(mode="json")


def source_study(tmp_path: Path, accuracies: list[float]) -> StudyRef:
    """A search study on a real SQLite file: one trained architecture per accuracy, wider is
    costlier, and the first and last form the (accuracy, params) front."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url, heartbeat=False),
                                directions=["maximize", "minimize"])
    StudySettings(space="resnet", objectives=["accuracy", "params"], dataset="fashion-mnist",
                  epochs=1, subset=0.02, batch_size=64, lr=0.2, seed=0).write(study)
    for i, acc in enumerate(accuracies):
        spec = tiny_spec(8 + 8 * i)
        params = 1000 + 1000 * i
        record = TrialRecord(spec=spec, spec_hash=parse_spec(spec).content_hash(),
                             family="resnet", trained=True, val_accuracy=acc, params=params,
                             macs=10 * params)
        study.add_trial(optuna.trial.create_trial(
            params={"w": i}, distributions={"w": IntDistribution(0, 99)},
            values=[acc, params], user_attrs=record.to_attrs()))
    return StudyRef("s", url)


def request(ref: StudyRef, **kw: Any) -> ConfirmRequest:
    fields = {"epochs": 1, "subset": 0.02, "seeds": 2, "device": "cpu", "storage_retry": 5}
    return ConfirmRequest(source=ref, **{**fields, **kw})


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST")
def test_a_tiny_confirmation_runs_resumes_and_summarizes(tmp_path: Path) -> None:
    ref = source_study(tmp_path, [0.5, 0.4, 0.3, 0.6])  # front: trials 0 (cheapest), 3 (best)
    runs: list[int] = []

    def stop_after_first(event: TrialEvent) -> None:
        runs.append(event.number)
        raise KeyboardInterrupt  # as Ctrl-C after one run

    with pytest.raises(KeyboardInterrupt):
        confirm(request(ref, top=2, control=1), on_event=stop_after_first)
    linked, the_plan = confirm(request(ref, top=2, control=1))
    assert the_plan.front == [3, 0] and len(the_plan.control) == 1
    trials = study_trials(linked)
    done = [(t.record.source_trial, t.record.seed) for t in trials
            if t.state == TrialState.COMPLETE]
    assert sorted(done) == sorted((n, s) for n, s, _ in the_plan.jobs()), "each run once"
    assert len(done) == 6 and runs == [0]
    summary = summarize(optuna.load_study(study_name="s", storage=ref.url), linked)
    assert summary.runs_done == summary.runs_total == 6
    assert summary.noise_std is not None and summary.noise_std >= 0
    assert summary.spearman is not None and -1 <= summary.spearman.value <= 1
    assert set(summary.front_kept) | set(summary.front_dropped) == {3, 0}
    assert summary.best is not None and len(summary.best.confirm_accuracies) == 2


def runs_study(tmp_path: Path, ref: StudyRef, results: dict[int, list[float]]) -> optuna.Study:
    """A linked study holding finished runs with these accuracies (no training)."""
    storage = open_storage(ref.url, heartbeat=False)
    linked = optuna.create_study(study_name=confirm_name(ref.name), storage=storage,
                                 directions=["maximize", "minimize"])
    StudySettings(objectives=["accuracy", "params"], source_study=ref.name, epochs=4,
                  selection={"front": [3, 0], "control": [1, 2], "seeds": [1, 2]}).write(linked)
    for number, accs in results.items():
        for seed, acc in enumerate(accs, start=1):
            record = TrialRecord(source_trial=number, seed=seed, trained=True, val_accuracy=acc,
                                 group="front" if number in (0, 3) else "control")
            linked.add_trial(optuna.trial.create_trial(values=[acc, 1000 + 1000 * number],
                                                       user_attrs=record.to_attrs()))
    return linked


def test_the_findings_on_known_runs(tmp_path: Path) -> None:
    ref = source_study(tmp_path, [0.5, 0.4, 0.3, 0.6])
    linked = runs_study(tmp_path, ref, {0: [0.70, 0.72], 1: [0.66, 0.66], 2: [0.60, 0.62],
                                        3: [0.65, 0.67]})
    s = summarize(optuna.load_study(study_name="s", storage=ref.url), linked)
    # search ranks 3 > 0 > 1 > 2; confirmed means 0.71 (0) > 0.66 (1, 3) > 0.61 (2)
    assert [a.mean for a in sorted(s.architectures, key=lambda a: a.trial)] == \
        pytest.approx([0.71, 0.66, 0.61, 0.66])
    assert s.noise_std == pytest.approx((3 * 0.0002 / 4) ** 0.5)  # three pairs differ by 0.02
    assert s.confirmed_front == [0], "trial 0 is now both cheapest and most accurate"
    assert s.front_kept == [0] and s.front_dropped == [3]
    assert s.best is not None and s.best.trial == 0
    # ranks by search 3, 2, 1, 4 and by confirmation 4, 2.5, 1, 2.5 (trials 0..3):
    # sum(dx*dy) = 3, sum(dx^2) = 5, sum(dy^2) = 4.5, so rho = 3 / sqrt(22.5)
    assert s.spearman is not None and s.spearman.value == pytest.approx(3 / 22.5**0.5)


def test_bad_requests_are_one_line(tmp_path: Path, run_nas: Any) -> None:
    ref = source_study(tmp_path, [0.5, 0.4, 0.3, 0.6])
    with pytest.raises(UserError, match="has 2 distinct architecture"):
        confirm(request(ref, top=3))
    with pytest.raises(UserError, match="only 2 other trained"):
        confirm(request(ref, top=2, control=5))
    empty = f"sqlite:///{tmp_path / 'e.db'}"
    optuna.create_study(study_name="e", storage=open_storage(empty, heartbeat=False))
    for args, message in [(["--study", "e", "--storage", empty], "no trained trial"),
                          (["--study", "s", "--storage", ref.url, "--top", "9"], "--top 9"),
                          (["--study", "s", "--storage", ref.url, "--seeds", "0"], "--seeds")]:
        result = run_nas("confirm", *args, *TINY[:4])
        assert result.code == 2 and len(result.err_lines) == 1, result.err
        assert message in result.err


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST")
def test_cli_json_holds_the_findings(tmp_path: Path, run_nas: Any) -> None:
    ref = source_study(tmp_path, [0.3, 0.4, 0.5])  # each costlier and better: all on the front
    result = run_nas("confirm", "--study", "s", "--storage", ref.url, "--top", "2",
                     "--control", "1", "--jobs", "1", *TINY, "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    for key in ("spearman", "kendall", "noise_std", "front_kept", "best"):
        assert key in found
    assert found["runs_done"] == 6 and found["best"]["trial"] in (0, 1, 2)
    settings = StudySettings.from_study(optuna.load_study(study_name="s.confirm",
                                                          storage=ref.url))
    assert settings.confirm_summary == found, "stored on the linked study"
    # found by a newcomer: the bare command after a confirmation with other flags was refused
    (tmp_path / "no-data").mkdir()
    again = run_nas("confirm", "--study", "s", "--storage", ref.url, "--json",
                    "--data-dir", str(tmp_path / "no-data"))  # nothing to run: no data loaded
    assert again.code == 0, again.err
    assert json.loads(again.out) == found, "left-out options take what the confirmation recorded"
    top_only = run_nas("confirm", "--study", "s", "--storage", ref.url, "--top", "2", "--json")
    assert top_only.code == 0 and json.loads(top_only.out) == found, "--control as recorded"
    other = run_nas("confirm", "--study", "s", "--storage", ref.url, "--epochs", "2", "--json")
    assert other.code == 2 and "s.confirm was run with epochs=1" in other.err, other.err


def test_a_confirmation_made_for_an_older_study_of_that_name_is_refused(tmp_path: Path) -> None:
    ref = source_study(tmp_path, [0.5, 0.4])  # made again: trials 0 and 1 only
    runs_study(tmp_path, ref, {0: [0.70, 0.72]})  # recorded front [3, 0], control [1, 2]
    source = optuna.load_study(study_name="s", storage=ref.url)
    with pytest.raises(UserError, match="retrained trial 3, which s no longer has"):
        plan(source, ConfirmRequest(source=ref))


def test_front_neighbours_within_the_noise_are_marked() -> None:
    noise = NoiseFloor(per_architecture={}, pooled=0.01, dof=4)  # band 1.96 * sqrt(2) * 0.01
    assert within_noise([0.90, 0.89, 0.80, 0.70, 0.695], noise) == [True, True, False, True,
                                                                     True]
    assert within_noise([0.90, 0.89], None) == [False, False], "unknown noise marks nothing"
    assert within_noise([0.9], noise) == [False]


def test_the_report_carries_the_confirmation(tmp_path: Path) -> None:
    ref = source_study(tmp_path, [0.5, 0.4, 0.3, 0.51])  # front: trials 0 and 3, 0.01 apart
    source = optuna.load_study(study_name="s", storage=ref.url)
    assert "not confirmed yet: <code>nas confirm --study s</code>" in report_html(source)
    elsewhere = "postgresql://nas:secret@db:5432/nas"
    assert "<code>nas confirm --study s --storage 'postgresql://nas:***@db:5432/nas'</code>" \
        in report_html(source, elsewhere), "a study not in its default file names its storage"
    runs_study(tmp_path, ref, {0: [0.70, 0.72], 1: [0.66, 0.66], 2: [0.60, 0.62],
                               3: [0.65, 0.67]})
    page = report_html(source)
    assert "fig-confirm" in page and "front dropped" in page
    assert page.count("<td>≈</td>") == 2, "0.01 apart, inside the band of 0.034 (noise 0.012)"


def test_the_search_summary_marks_noise_once_known(tmp_path: Path, capsys: Any) -> None:
    from nas.cli.search_cmds import print_front
    from nas.search.request import SearchRequest
    from nas.search.space import load_space

    ref = source_study(tmp_path, [0.5, 0.4, 0.3, 0.6])
    source = optuna.load_study(study_name="s", storage=ref.url)
    req = SearchRequest(space=load_space("resnet"), trials=1, study="s", storage=ref.url)
    print_front(source, req)
    assert "nas confirm --study s" in capsys.readouterr().out
    runs_study(tmp_path, ref, {0: [0.70, 0.72], 3: [0.65, 0.67], 1: [0.6, 0.6]})
    print_front(source, req)
    out = capsys.readouterr().out
    assert "measured by nas confirm" in out and "nas confirm --study" not in out
