"""Multi-fidelity search: MOASHA's rule on hand-made rungs, the schedule, bad options, and a real
tiny search whose trials stop at rungs and record the fidelity they reached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import CliRunner
from optuna.trial import TrialState

from nas.errors import UserError
from nas.search.fidelity import Fidelity, front_ranks, keeps_training, selection_order
from nas.search.request import SearchRequest
from nas.search.space import load_space
from nas.search.work import search
from nas.study import StudySettings, study_trials, trial_kind

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def test_a_dominated_trial_stops_and_a_cheap_accurate_one_trains_on() -> None:
    # (accuracy, params) recorded at the rung by five other trials
    rung = [[0.80, 5000], [0.78, 2000], [0.70, 1000], [0.60, 8000], [0.50, 9000]]
    assert keeps_training([0.85, 900], rung, eta=3), "better and cheaper than all"
    assert not keeps_training([0.55, 9500], rung, eta=3), "dominated by most of the rung"
    assert keeps_training([0.30, 100], rung, eta=3), "the cheapest is on the front"
    assert not keeps_training([0.79, 6000], rung, eta=3), "dominated by (0.80, 5000)"


def test_alone_at_a_rung_a_trial_trains_on_and_one_objective_ranks_by_accuracy() -> None:
    assert keeps_training([0.1, 1e9], [], eta=3)
    accuracies = [[a] for a in (0.9, 0.8, 0.7, 0.6, 0.5)]
    assert keeps_training([0.95], accuracies, eta=3)  # first of 6
    assert keeps_training([0.85], accuracies, eta=3)  # second of 6: the top third is two
    assert not keeps_training([0.75], accuracies, eta=3)  # third of 6
    assert not keeps_training([0.4], accuracies, eta=2)


def test_non_dominated_sorting_and_the_order_within_a_front() -> None:
    points = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [6, 6]], dtype=float)  # minimised
    assert front_ranks(points).tolist() == [0, 0, 0, 1, 2]
    order = selection_order(points)
    assert order[0] == 0, "the front starts from the best first objective"
    assert order[1] == 2, "then the farthest point of the front (an epsilon-net)"
    assert order[3:] == [3, 4], "then the next fronts"


def test_rungs_are_geometric_and_brackets_start_later() -> None:
    f = Fidelity(min_epochs=1, max_epochs=27, eta=3, brackets=3)
    assert f.rungs(0) == [1, 3, 9] and f.rungs(1) == [3, 9] and f.rungs(2) == [9]
    assert [f.bracket(n) for n in range(5)] == [0, 1, 2, 0, 1]
    assert Fidelity(2, 10, 2).rungs() == [2, 4, 8]


@pytest.mark.parametrize("args,message", [
    (["--min-epochs", "5", "--epochs", "3"], "--min-epochs 5 must be below --max-epochs"),
    (["--min-epochs", "3", "--max-epochs", "3"], "--min-epochs 3 must be below --max-epochs"),
    (["--min-epochs", "1", "--epochs", "9", "--eta", "1"], "--eta must be at least 2"),
    (["--eta", "3"], "--eta and --brackets schedule rungs: give --min-epochs too"),
    (["--min-epochs", "1", "--epochs", "9", "--brackets", "4"], "--brackets 4: bracket 3"),
    (["--min-epochs", "1", "--epochs", "3", "--no-early-stop"], "cannot go with --no-early-stop"),
])
def test_bad_schedules_are_one_line_and_exit_2(args: list[str], message: str,
                                               run_nas: CliRunner, tmp_path: Path) -> None:
    done = run_nas("search", "--space", "resnext", "--storage",
                   f"sqlite:///{tmp_path / 'x.db'}", *args)
    assert done.code == 2 and len(done.err_lines) == 1, done.err
    assert message in done.err
    assert not (tmp_path / "x.db").exists(), "refused before anything is written"


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST")
@pytest.mark.slow
def test_a_tiny_multi_fidelity_search_stops_trials_at_rungs(tmp_path: Path) -> None:
    req = SearchRequest(space=load_space("resnext"), trials=6, study="mf",
                        storage=f"sqlite:///{tmp_path / 'mf.db'}", sampler="random", epochs=3,
                        min_epochs=1, eta=3, subset=0.02, batch_size=64, device="cpu")
    study = search(req)
    settings = StudySettings.from_study(study)
    assert (settings.min_epochs, settings.eta, settings.brackets, settings.epochs) == (1, 3, 1, 3)
    trials = [t for t in study_trials(study) if t.trained]
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert stopped, "the rung at epoch 1 stops all but the top third"
    for t in stopped:
        assert trial_kind(t) == "early_stopped" and t.record.epochs_run == 1
        assert t.record.reason.startswith("early_stopped: rung at epoch 1")
    assert all(t.record.epochs_run == 3 and len(t.record.curve) == 3 for t in complete)
    assert {t.record.bracket for t in trials} == {0}
    with pytest.raises(UserError, match="was run with --eta 3, this run asks for 2"):
        search(SearchRequest(**{**req.__dict__, "trials": 7, "eta": 2}))
    resumed = search(SearchRequest(**{**req.__dict__, "trials": 7, "min_epochs": None,
                                      "eta": None}))
    assert StudySettings.from_study(resumed).min_epochs == 1, "the schedule kept on resume"
    assert optuna.load_study(study_name="mf", storage=req.storage_url).trials
