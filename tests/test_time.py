"""nas search --time: no trial starts once the time is up, a running trial stops at its next epoch
and is recorded as cut (never as complete), the next run continues it from its checkpoint, and
the search time of a study adds up over its runs (overlapping runs counted once)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from conftest import CliRunner
from optuna.trial import TrialState

from nas.search import objective as objective_module
from nas.search import work as work_module
from nas.search.request import SearchRequest
from nas.search.space import load_space
from nas.search.work import search
from nas.sizes import parse_duration
from nas.study import StudySettings, trained_count, trial_kind
from nas.study.queries import study_trials
from nas.study.record import search_spans, spent_seconds, write_search_span

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_data = pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST")


def request(tmp_path: Path, **kw: object) -> SearchRequest:
    fields: dict = {"space": load_space("resnext"), "trials": 1, "study": "t",
                    "storage": f"sqlite:///{tmp_path / 't.db'}", "epochs": 3, "subset": 0.02,
                    "batch_size": 64, "device": "cpu", "early_stop": False, "proxies": False,
                    **kw}
    return SearchRequest(**fields)


class JumpingClock:
    """time.time() that jumps `jump` seconds ahead once the first epoch of a trial ends."""

    def __init__(self, jump: float) -> None:
        self.offset, self.jump = 0.0, jump

    def time(self) -> float:
        return time.time() + self.offset

    def after_first_epoch(self) -> None:
        self.offset = self.jump


@needs_data
@pytest.mark.slow
def test_time_up_cuts_the_running_trial_and_the_next_run_continues_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = JumpingClock(jump=7200)
    fake = SimpleNamespace(time=clock.time)
    monkeypatch.setattr(objective_module, "time", fake)
    monkeypatch.setattr(work_module, "time", fake)
    real_on_epoch = objective_module.Objective._on_epoch

    def on_epoch(self, trial, cost, cut):  # type: ignore[no-untyped-def]
        inner = real_on_epoch(self, trial, cost, cut)

        def hook(stats):  # type: ignore[no-untyped-def]
            clock.after_first_epoch()  # the search's hour runs out during the first epoch
            return inner(stats)
        return hook

    monkeypatch.setattr(objective_module.Objective, "_on_epoch", on_epoch)
    study = search(request(tmp_path, time_s=3600.0))
    (cut,) = study_trials(study)
    assert cut.state == TrialState.PRUNED and trial_kind(cut) == "time_up"
    assert cut.record.epochs_run == 1 and cut.record.reason.startswith("time_up: ")
    assert trained_count(study) == 0, "a cut trial is not counted as trained"
    assert cut.values is None, "never counted as complete at a budget it did not reach"
    checkpoints = list((tmp_path / "checkpoints" / "t").glob("trial-0-*.pt"))
    assert len(checkpoints) == 1, "the cut trial's checkpoint is kept for its continuation"
    assert StudySettings.from_study(study).time_s == 3600.0

    monkeypatch.undo()
    again = search(request(tmp_path, trials=1))  # no time limit: the continuation runs
    trials = study_trials(again)
    continuation = [t for t in trials if t.record.continues == 0]
    assert len(continuation) == 1 and continuation[0].state == TrialState.COMPLETE
    c = continuation[0].record
    assert c.resumed_epochs == 1 and c.epochs_run == 3 and len(c.curve or []) == 3
    assert c.curve[0] == cut.record.curve[0], "epoch 1 is the cut trial's, not trained again"
    assert c.spec_hash == cut.record.spec_hash and trained_count(again) == 1
    assert not list((tmp_path / "checkpoints" / "t").glob("*.pt")), "checkpoint removed when done"
    # the same architecture trained without a cut (a new study's first trial, same seeds)
    whole = search(request(tmp_path, study="u", storage=f"sqlite:///{tmp_path / 'u.db'}"))
    (uncut,) = study_trials(whole)
    assert uncut.record.spec_hash == c.spec_hash and uncut.record.resumed_epochs == 0
    assert uncut.record.curve == c.curve and uncut.record.val_accuracy == c.val_accuracy, \
        "continuing from the checkpoint trains the same weights as an uninterrupted run"


@needs_data
@pytest.mark.slow
def test_time_stops_the_search_on_time_from_the_command_line(
        tmp_path: Path, run_nas: CliRunner) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    start = time.monotonic()
    done = run_nas("search", "--space", "resnext", "--study", "c", "--storage", db, "--time",
                   "4s", "--epochs", "40", "--subset", "0.05", "--batch-size", "64",
                   "--no-early-stop", "--jobs", "1", "--json")
    assert done.code == 0, done.err
    assert time.monotonic() - start < 120, "stopped at the trial's next epoch, not its end"
    outcome = json.loads(done.out)
    assert outcome["target"] is None and outcome["time_s"] == 4.0
    assert outcome["counts"]["time_up"] >= 1 and outcome["search_seconds"] >= 4.0
    study = optuna.load_study(study_name="c", storage=db)
    cut = [t for t in study_trials(study) if trial_kind(t) == "time_up"]
    assert all(t.record.epochs_run < 40 for t in cut)
    before = len(study_trials(study))
    rerun = run_nas("search", "--space", "resnext", "--study", "c", "--storage", db, "--time",
                    "4s", "--epochs", "40", "--subset", "0.05", "--batch-size", "64",
                    "--no-early-stop", "--jobs", "1", "--json")
    assert rerun.code == 0, rerun.err
    after = study_trials(optuna.load_study(study_name="c", storage=db))
    assert len(after) == before, "the same --time again: the time is spent, nothing runs"


def test_search_time_is_the_union_of_the_runs_spans(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    write_search_span(study, "a", 100.0, 160.0)
    write_search_span(study, "b", 130.0, 200.0)  # another machine at the same time
    write_search_span(study, "c", 300.0, 310.0)
    write_search_span(study, "a", 100.0, 170.0)  # a run extends its own span
    assert spent_seconds(search_spans(study.user_attrs)) == 110.0
    assert spent_seconds(search_spans(study.user_attrs, but="c")) == 100.0


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("2h", 7200),
                                          ("1h30m", 5400), ("45", 45), ("1.5h", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "abc", "-5", "1h30", "0s", "", "30x"])
def test_bad_time_is_one_line_and_exit_2(text: str, run_nas: CliRunner, tmp_path: Path) -> None:
    done = run_nas("search", "--space", "resnext", "--time", text, "--storage",
                   f"sqlite:///{tmp_path / 'x.db'}")
    assert done.code == 2 and len(done.err_lines) == 1, done.err
    assert done.err.startswith(f"nas: error: --time {text}: not a duration above zero")
    assert not (tmp_path / "x.db").exists(), "nothing written"
