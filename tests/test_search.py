"""nas search on real Fashion-MNIST and real SQLite files, with tiny budgets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.builder import build
from nas.cost import count_params
from nas.errors import UserError
from nas.io import parse_spec
from nas.search.run import SearchRequest, run_search
from nas.search.space import SAMPLING, load_space, space_files
from nas.study import StudySettings
from nas.study import study_front as front

TRIAL_ATTRS = {
    "spec", "spec_hash", "family", "params", "macs", "latency_ms", "val_accuracy", "curve",
    "wall_time_s", "images_per_second", "device", "seed", "environment", "budget_key",
}


def request(tmp_path: Path, space: str = "resnext", **kw: object) -> SearchRequest:
    fields: dict = {"space": load_space(space), "trials": 2, "study": "t",
                    "storage": f"sqlite:///{tmp_path / 't.db'}", "epochs": 1, "subset": 0.02,
                    "batch_size": 64, "device": "cpu", **kw}
    return SearchRequest(**fields)


@pytest.mark.parametrize("space", sorted(space_files()))
def test_every_shipped_space_searches_and_records_everything(space: str, tmp_path: Path) -> None:
    study = run_search(request(tmp_path, space))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) >= 2
    assert done, "at least one trial completes"
    for t in done:
        assert TRIAL_ATTRS <= set(t.user_attrs), TRIAL_ATTRS - set(t.user_attrs)
        spec = parse_spec(t.user_attrs["spec"])
        assert spec.family == load_space(space).family
        assert count_params(build(spec)) == t.user_attrs["params"] == t.values[1]
        assert 0.0 < t.values[0] == t.user_attrs["val_accuracy"] <= 1.0
        assert t.user_attrs["environment"]["torch"]
    attrs = study.user_attrs
    assert attrs["space"] == space and attrs["epochs"] == 1 and attrs["subset"] == 0.02
    assert study.metric_names == ["accuracy", "params"]


def test_real_data_is_learned(tmp_path: Path) -> None:
    study = run_search(request(tmp_path, trials=1, subset=0.1, epochs=1))
    assert front(study)[0].values[0] > 0.5, "far above chance (0.1) on real Fashion-MNIST"


def test_rerun_resumes_to_the_target(tmp_path: Path) -> None:
    run_search(request(tmp_path, trials=1))
    study = run_search(request(tmp_path, trials=3))
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 3
    again = run_search(request(tmp_path, trials=3))
    assert len(again.trials) == len(study.trials), "target reached: nothing more runs"


def test_resume_with_another_space_or_budget_is_refused(tmp_path: Path) -> None:
    run_search(request(tmp_path, trials=1))
    with pytest.raises(UserError, match="created with space resnext"):
        run_search(request(tmp_path, "vgg", trials=2))
    with pytest.raises(UserError, match="epochs=1"):
        run_search(request(tmp_path, trials=2, epochs=3))


def test_same_architecture_and_budget_is_reused_not_retrained(tmp_path: Path) -> None:
    space = tmp_path / "one.yaml"  # a space with one point: every trial is the same network
    space.write_text("family: resnet\nfixed: {stem: simple, depths: [1], widths: [8]}\n"
                     "dimensions:\n  stem_width: {choices: [8]}\n")
    req = request(tmp_path, trials=3)
    req.space = load_space(space)
    study = run_search(req)
    done = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    assert "reused_from" not in done[0].user_attrs
    assert [t.user_attrs["reused_from"] for t in done[1:]] == [done[0].number] * 2
    assert all(t.values == done[0].values for t in done)


def old_study(tmp_path: Path) -> None:
    """A study as nas created them before sampling schemes: none recorded, choices categorical."""
    req = request(tmp_path)
    study = optuna.create_study(study_name="t", storage=req.storage_url,
                                directions=["maximize", "minimize"])
    StudySettings(space="resnext", space_hash=req.space.content_hash(),
                  space_definition=req.space.model_dump(mode="json"),
                  objectives=["accuracy", "params"], dataset="fashion-mnist", epochs=1,
                  subset=0.02, batch_size=64, seed=0).write(study)
    trial = study.ask()
    req.space.sample(trial, sampling=1)
    study.tell(trial, [0.5, 1000.0])


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the bare ask() at the end
def test_a_study_created_before_sampling_schemes_resumes_with_its_own(tmp_path: Path) -> None:
    old_study(tmp_path)
    study = run_search(request(tmp_path, trials=2))
    last = study.trials[-1]
    assert last.state == TrialState.COMPLETE and last.user_attrs["trained"]
    assert isinstance(last.distributions["groups_0"], optuna.distributions.CategoricalDistribution)
    assert StudySettings.from_study(study).sampling is None
    with pytest.raises(ValueError, match="distribution"):  # what the current scheme would meet
        load_space("resnext").sample(study.ask(), sampling=SAMPLING)


def test_a_new_study_records_the_current_scheme_and_samples_numbers_in_order(
        tmp_path: Path) -> None:
    study = run_search(request(tmp_path, trials=1))
    assert StudySettings.from_study(study).sampling == SAMPLING == 2
    assert isinstance(study.trials[0].distributions["groups_0"],
                      optuna.distributions.IntDistribution)


def test_cost_gate_records_infeasible_trials_untrained(tmp_path: Path) -> None:
    study = run_search(request(tmp_path, trials=2, max_params=10))
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.user_attrs["trained"] is False and "curve" not in t.user_attrs
        assert t.user_attrs["reason"].startswith("over_budget: params")
        assert t.constraints["max_params"] == t.user_attrs["params"] - 10 > 0
    assert front(study) == [], "infeasible trials are not on the front"


def test_single_objective_search_uses_optunas_pruner(tmp_path: Path) -> None:
    study = run_search(request(tmp_path, trials=2, objectives=("accuracy",)))
    assert len(study.directions) == 1
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)
    assert all(t.value > 0 for t in study.get_trials(states=(TrialState.COMPLETE,)))


def nas(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_cli_search_prints_budget_front_and_next_commands(tmp_path: Path) -> None:
    run = nas(tmp_path, "search", "--space", "resnext", "--trials", "2", "--epochs", "1",
              "--subset", "0.02", "--jobs", "1")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "budget dataset=fashion-mnist epochs=1 subset=0.02" in out
    assert "Pareto front of resnext" in out
    assert "nas dashboard --study resnext" in out and "nas export --study resnext" in out
    assert (tmp_path / "studies" / "resnext.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "-3"], "--trials must be at least 1"),
        (["--objectives", "params"], "must start with accuracy"),
        (["--objectives", "accuracy,colour"], "costs are params, macs, latency"),
        (["--sampler", "magic"], "--sampler magic"),
        (["--device", "cuda"], "no CUDA device"),
        (["--device", "tpu"], "one of auto, cpu, cuda"),
        (["--storage", "sqlite:////proc/nope/x.db"], "cannot create"),
        (["--space", "no-such-space"], "neither a space file nor a shipped space"),
    ],
)
def test_bad_search_input_is_one_line_exit_2_and_no_file(
    tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["search", "--space", "resnext", "--trials", "2"]
    run = nas(tmp_path, *base, *args)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run.stderr
    assert not (tmp_path / "studies").exists(), "nothing written for a refused search"


def test_a_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "mine.db"
    db.write_bytes(b"precious bytes, not a database")
    run = nas(tmp_path, "search", "--space", "resnext", "--trials", "1",
              "--storage", f"sqlite:///{db}")
    assert run.returncode == 2 and "not a SQLite database" in run.stderr
    assert db.read_bytes() == b"precious bytes, not a database"


def test_study_records_can_be_read_by_plain_optuna(tmp_path: Path) -> None:
    run_search(request(tmp_path, trials=1))
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 't.db'}")
    assert study.user_attrs["train_config"]["seed"] == 0
