"""nas search on real Fashion-MNIST and real SQLite files, with tiny budgets."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import CliRunner
from optuna.trial import TrialState

from nas.builder import build
from nas.cost import count_params, estimate
from nas.device import memory_limit
from nas.errors import UserError
from nas.io import parse_spec
from nas.pool import PoolStopped
from nas.report import report_html, trials_frame
from nas.search import work as search_work
from nas.search.request import SearchRequest
from nas.search.resume import open_search_study
from nas.search.space import SAMPLING, load_space, space_files
from nas.search.work import search as run_search
from nas.study import StudySettings
from nas.study import study_front as front
from nas.train import search_budget

TRIAL_ATTRS = {
    "spec", "spec_hash", "family", "params", "macs", "latency_ms", "val_accuracy", "curve",
    "wall_time_s", "images_per_second", "device", "seed", "environment", "budget_key",
}


def request(tmp_path: Path, space: str = "resnext", **kw: object) -> SearchRequest:
    fields: dict = {"space": load_space(space), "trials": 2, "study": "t",
                    "storage": f"sqlite:///{tmp_path / 't.db'}", "epochs": 1, "subset": 0.02,
                    "batch_size": 64, "device": "cpu", **kw}
    return SearchRequest(**fields)


# one shipped space per family (the AnyNet variants differ in their rules only, and every
# shipped space's samples are checked in test_search_space)
ONE_PER_FAMILY = sorted({load_space(n).family: n for n in sorted(space_files(), reverse=True)}
                        .values())


@pytest.mark.parametrize("space", ONE_PER_FAMILY)
def test_every_family_searches_and_records_everything(space: str, tmp_path: Path) -> None:
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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_rerun_fails_the_trial_of_a_dead_worker_when_the_target_is_reached(
        tmp_path: Path) -> None:
    """A worker killed after the others reached the target leaves its trial RUNNING, and no
    worker asks for another trial: the same command run again still fails it (and queues its
    retry), so nothing stays RUNNING."""
    from test_outage import gone_process

    from nas.study import write_trial

    study = run_search(request(tmp_path, trials=2))
    dead = study.ask(study.trials[0].distributions)
    write_trial(dead, worker=gone_process())
    again = run_search(request(tmp_path, trials=2))
    states = {t.number: t.state for t in again.get_trials()}
    assert states[dead.number] == TrialState.FAIL
    assert TrialState.RUNNING not in states.values()
    [retry] = again.get_trials(states=(TrialState.WAITING,))
    assert retry.system_attrs["failed_trial"] == dead.number


def test_resume_with_another_space_or_budget_is_refused(tmp_path: Path) -> None:
    run_search(request(tmp_path, trials=1))
    with pytest.raises(UserError, match="created with space resnext"):
        run_search(request(tmp_path, "vgg", trials=2))
    with pytest.raises(UserError, match="was run with --epochs 1, this run asks for 3"):
        run_search(request(tmp_path, trials=2, epochs=3))
    with pytest.raises(UserError, match="created with --sampler tpe; this run asks for random"):
        run_search(request(tmp_path, trials=2, sampler="random"))  # nas analyze trusts it


def test_same_architecture_and_budget_is_reused_not_retrained(tmp_path: Path) -> None:
    space = tmp_path / "one.yaml"  # a space with one point: every trial is the same network
    space.write_text("family: resnet\nfixed: {stem: simple, depths: [1], widths: [8]}\n"
                     "dimensions:\n  stem_width: {choices: [8]}\n")
    req = request(tmp_path, trials=3)
    req.space = load_space(space)
    with pytest.raises(PoolStopped, match="has 1 point.s., every one trained or invalid: no "
                                          "new architecture is left for --trials"):
        run_search(req)  # --trials counts trained models: the space cannot give a second
    study = optuna.load_study(study_name="t", storage=req.storage_url)
    done = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    assert len(done) == 2 and "reused_from" not in done[0].user_attrs
    assert done[1].user_attrs["reused_from"] == done[0].number
    assert done[1].values == done[0].values


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


def gated_only(req: SearchRequest, monkeypatch: pytest.MonkeyPatch, idle: int) -> optuna.Study:
    """A search whose every trial is over its limits: it stops after `idle` of them."""
    monkeypatch.setattr(search_work, "MAX_IDLE_TRIALS", idle)
    with pytest.raises(PoolStopped, match=f"the last {idle} trials of t trained no model "
                                          f"\\({idle} over the cost limits, 0 reusing"):
        run_search(req)
    return optuna.load_study(study_name="t", storage=req.storage_url)


def test_cost_gate_records_infeasible_trials_untrained(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    study = gated_only(request(tmp_path, trials=2, max_params=10), monkeypatch, 2)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.user_attrs["trained"] is False and "curve" not in t.user_attrs
        assert t.user_attrs["reason"].startswith("over_budget: params")
        assert t.constraints["max_params"] == t.user_attrs["params"] - 10 > 0
    assert front(study) == [], "infeasible trials are not on the front"


@pytest.fixture
def fast_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on tmpfs where there is one (else tmp_path): a SQLite commit there costs no
    fsync, so trial times measure nas's work and Optuna's, not the disk's."""
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="nas-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_trial_over_max_params_is_refused_from_the_meta_build_without_a_forward(
    fast_folder: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    space = fast_folder / "wide.yaml"  # every point has far more than 1,000 parameters
    space.write_text("family: resnet\nfixed: {stem: simple, depths: [1, 1], widths: [64, 128]}\n"
                     "dimensions:\n  stem_width: {low: 8, high: 64}\n")
    req = request(fast_folder, trials=12, max_params=1000, sampler="random")
    req.space = load_space(space)
    study = gated_only(req, monkeypatch, 12)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 12
    for t in trials:
        assert t.user_attrs["reason"].startswith("over_budget: params ")
        assert t.user_attrs["trained"] is False and t.values[1] == t.user_attrs["params"] > 1000
        assert not {"macs", "latency_ms", "training_memory_bytes"} & set(t.user_attrs)  # no forward
    # how fast that is (against building and measuring): python benchmarks/gate.py


def test_memory_gate_records_over_budget_untrained_and_reports_cope(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    req = request(tmp_path, trials=2, max_memory=1000, objectives=("accuracy", "params", "latency"))
    study = gated_only(req, monkeypatch, 2)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        attrs = t.user_attrs
        assert attrs["reason"].startswith("over_budget: memory ")
        assert attrs["reason"].endswith("at batch 64 > 1000 B (--max-memory)")
        spec = parse_spec(attrs["spec"])
        assert attrs["training_memory_bytes"] == estimate(spec, 64).training.total
        assert t.constraints["max_memory"] == attrs["training_memory_bytes"] - 1000 > 0
        assert attrs["params"] == count_params(build(spec)) and attrs["trained"] is False
        assert not {"macs", "latency_ms"} & set(attrs)  # no forward of one image, no model
        assert t.values[0] == 0.0 and t.values[2] == math.inf  # never a cheap point
    frame = trials_frame(study)
    assert frame["latency_ms"].isna().all() and not frame["feasible"].any()
    assert "no trained feasible trial yet" in report_html(study)


def test_by_default_trials_must_fit_the_devices_free_memory(tmp_path: Path) -> None:
    now = memory_limit("cpu")
    if now is None:
        pytest.skip("no /proc/meminfo here: the device's free memory is unknown")
    study = run_search(request(tmp_path, trials=1))
    (t,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert t.constraints["max_memory"] < 0  # fits: training memory less the limit then
    limit_then = t.user_attrs["training_memory_bytes"] - t.constraints["max_memory"]
    assert 0.5 < limit_then / now.bytes < 2  # MemAvailable moves a little
    assert t.user_attrs["trained"] is True and t.user_attrs["latency_ms"] > 0


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
    assert "settings dataset=fashion-mnist epochs=1 subset=0.02" in out
    assert "max_params=none max_macs=none max_memory=free" in out
    assert "Pareto front of resnext" in out
    assert "≈" not in out, "no noise column before nas confirm measured the noise"
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
        (["--max-memory", "lots"], "--max-memory lots: not a size above zero"),
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "-3"], "--trials must be at least 1, got -3"),
        (["--trials", "abc"], "Invalid value for '--trials'"),
        (["--bogus"], "No such option: --bogus"),
        (["--subset", "1.5"], "--subset is a fraction of the training split, in (0, 1]"),
        (["--subset", "0"], "--subset is a fraction"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--lr", "0"], "--lr must be positive"),
        (["--max-params", "0"], "--max-params must be at least 1"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--data-dir", "/no/such/folder"], "--data-dir /no/such/folder: no such directory"),
    ],
)
def test_bad_search_values_are_refused_before_the_progress_bar_and_the_study(
    run_nas: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
    message: str,
) -> None:
    """Found by a newcomer: --subset 1.5 made a study whose trials all failed and whose budget
    then refused the corrected command; --trials -3 drew a 0/-3 bar first; a typo'd option
    printed a boxed usage panel."""
    monkeypatch.chdir(tmp_path)
    run = run_nas("search", "--space", "resnext", "--trials", "2", *args)
    assert run.code == 2
    assert len(run.err_lines) == 1 and run.err_lines[0].startswith("nas: error: "), run.err
    assert message in run.err_lines[0]
    assert run.out == "" and not (tmp_path / "studies").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_data_that_is_missing_leaves_no_study_to_refuse_the_next_run(
    run_nas: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    run = run_nas("search", "--space", "resnext", "--trials", "1", "--data-dir", "empty",
                  "--epochs", "1", "--jobs", jobs)
    assert run.code == 2 and "no fashion-mnist files found there" in run.err, run.err
    db = tmp_path / "studies" / "resnext.db"
    assert optuna.get_all_study_names(f"sqlite:///{db}") == [], \
        "the study (and its budget) is created only once the data is found"


def test_a_study_created_elsewhere_while_the_data_loads_is_resumed_on_its_budget(
    tmp_path: Path
) -> None:
    """The same command started on two machines at once: the second finds no study, loads the
    data, and meanwhile the first creates the study; the second resumes it on its budget
    instead of writing its own settings over it (the review found the two budgets mixed)."""
    calls: list[int] = []

    def prepare(budget: dict) -> None:
        calls.append(budget["epochs"])
        if len(calls) == 1:  # the other machine creates the study now, with 3 epochs
            open_search_study(request(tmp_path, epochs=3))

    study, budget = open_search_study(request(tmp_path, epochs=None), prepare=prepare)
    assert search_budget("cpu")["epochs"] != 3
    assert budget["epochs"] == 3 == StudySettings.from_study(study).epochs
    assert calls == [search_budget("cpu")["epochs"], 3], "prepared again on their budget"
    with pytest.raises(UserError, match="study t was run with --epochs 3"):
        open_search_study(request(tmp_path, epochs=1))


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


@pytest.mark.slow
def test_a_resume_keeps_the_recorded_cost_limit_and_refuses_another(tmp_path: Path) -> None:
    """Seen from outside: a resume without --max-params trained models over the study's limit,
    and a third run with another limit was accepted."""
    run_search(request(tmp_path, trials=1, max_params=10_000, sampler="random"))
    study = run_search(request(tmp_path, trials=4, sampler="random"))  # the limit left out
    settings = StudySettings.from_study(study)
    assert settings.max_params == 10_000 and settings.trials == 4
    trained = [t for t in study.trials if t.user_attrs.get("trained")]
    assert len(trained) >= 4 and all(t.user_attrs["params"] <= 10_000 for t in trained)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert {frozenset(t.constraints) for t in finished} == {frozenset({"max_params",
                                                                       "max_memory"})}
    with pytest.raises(UserError, match="was run with --max-params 10000, this run asks for "
                                        "20000: leave --max-params out"):
        run_search(request(tmp_path, trials=5, max_params=20_000, sampler="random"))
    with pytest.raises(UserError, match="was run with --max-macs none"):
        run_search(request(tmp_path, trials=5, max_macs=10**6, sampler="random"))


@pytest.mark.slow
def test_an_older_study_takes_the_limit_its_first_resume_gives(tmp_path: Path) -> None:
    old_study(tmp_path)  # records no limits
    study = run_search(request(tmp_path, trials=2, max_params=10**6))
    assert StudySettings.from_study(study).max_params == 10**6
    with pytest.raises(UserError, match="--max-params 1000000"):
        run_search(request(tmp_path, trials=3, max_params=10**5))


@pytest.mark.slow
def test_trials_counts_trained_models_and_the_outcome_counts_each_kind(
        tmp_path: Path, run_nas: CliRunner) -> None:
    db = tmp_path / "c.db"
    done = run_nas("search", "--space", "resnext", "--trials", "3", "--study", "c", "--storage",
                   f"sqlite:///{db}", "--epochs", "1", "--subset", "0.02", "--batch-size", "64",
                   "--max-params", "10000", "--sampler", "random", "--jobs", "1", "--json")
    assert done.code == 0, done.err
    outcome = json.loads(done.out)
    counts = outcome["counts"]
    assert outcome["trained"] == counts["trained"] + counts["early_stopped"] == 3
    study = optuna.load_study(study_name="c", storage=f"sqlite:///{db}")
    gated = [t for t in study.trials if not t.user_attrs.get("trained")]
    assert counts["over_budget"] == len(gated) and counts["failed"] == 0
    assert len(study.trials) == 3 + len(gated) + counts["reused"]
    assert outcome["best"]["params"] <= 10_000 and outcome["front"]
