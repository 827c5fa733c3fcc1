"""nas export: chosen trials as spec files and a manifest whose commands reproduce them."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import optuna
import pytest
from test_report import BUDGET, make_study

from nas.io import load_spec, parse_spec
from nas.study import study_front as front

# `nas train` with the manifest's command repeats the trial's run: same spec, data subset, seed,
# budget, device and CPU threads. On the same machine and torch build the accuracy is expected to
# match exactly; the tolerance allows 10 of the 5,000 validation images.
TOLERANCE = 0.002


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "synth.db"
    make_study(path)
    return path


@pytest.fixture(scope="module")
def study(db: Path) -> optuna.Study:
    return optuna.load_study(study_name="synth", storage=f"sqlite:///{db}")


def export(run_nas: Any, db: Path, out: Path, *selection: str) -> Any:
    return run_nas("export", "--study", "synth", "--storage", f"sqlite:///{db}",
                   "--out", str(out), *selection)


def test_export_best_writes_the_trial_spec_and_its_train_command(
        run_nas: Any, db: Path, study: optuna.Study, tmp_path: Path) -> None:
    result = export(run_nas, db, tmp_path / "best", "--best")
    assert result.code == 0, result.err
    manifest = json.loads((tmp_path / "best" / "manifest.json").read_text())
    best = max((t for t in study.trials if t.state.name == "COMPLETE"
                and t.user_attrs.get("trained")), key=lambda t: t.user_attrs["val_accuracy"])
    [entry] = manifest["trials"]
    assert entry["number"] == best.number and manifest["selection"] == "best"
    assert entry["file"] == f"trial-{best.number:04d}-{best.user_attrs['family']}-" \
                            f"{best.user_attrs['spec_hash']}.yaml"
    for key in ("val_accuracy", "params", "macs", "latency_ms"):
        assert entry[key] == best.user_attrs[key]
    spec = load_spec(tmp_path / "best" / entry["file"])
    assert spec == parse_spec(best.user_attrs["spec"])
    assert spec.content_hash() == best.user_attrs["spec_hash"]
    argv = shlex.split(entry["train_command"])
    assert argv[:3] == ["nas", "train", str(tmp_path / "best" / entry["file"])]
    flags = dict(zip(argv[3::2], argv[4::2]))
    expected = {f"--{k.replace('_', '-')}": str(v) for k, v in BUDGET.items() if v is not None}
    assert flags == {**expected, "--split-seed": str(BUDGET["seed"]), "--device": "cpu",
                     "--threads": "1",
                     "--out": str(tmp_path / "best" / "runs" / Path(entry["file"]).stem)}
    assert manifest["budget"] == BUDGET
    assert f"  retrain: {entry['train_command']}" in result.out.splitlines(), \
        "export prints the command that repeats the trial"


def test_export_pareto_is_the_study_front(run_nas: Any, db: Path, study: optuna.Study,
                                          tmp_path: Path) -> None:
    assert export(run_nas, db, tmp_path / "front", "--pareto").code == 0
    manifest = json.loads((tmp_path / "front" / "manifest.json").read_text())
    numbers = [e["number"] for e in manifest["trials"]]
    assert numbers == sorted(t.number for t in front(study)) and len(numbers) >= 2
    assert sorted(p.name for p in (tmp_path / "front").glob("*.yaml")) == \
        sorted(e["file"] for e in manifest["trials"])


def test_export_by_trial_number(run_nas: Any, db: Path, tmp_path: Path) -> None:
    assert export(run_nas, db, tmp_path / "some", "--trial", "5", "--trial", "0").code == 0
    manifest = json.loads((tmp_path / "some" / "manifest.json").read_text())
    assert [(e["number"], e["state"]) for e in manifest["trials"]] == [(5, "PRUNED"),
                                                                      (0, "COMPLETE")]


@pytest.mark.parametrize("selection, message", [
    (("--trial", "99"), "no trial 99"),
    (("--best", "--pareto"), "choose one of"),
])
def test_export_refuses_bad_selections(run_nas: Any, db: Path, tmp_path: Path,
                                       selection: tuple[str, ...], message: str) -> None:
    result = export(run_nas, db, tmp_path / "x", *selection)
    assert result.code == 2 and len(result.err_lines) == 1 and message in result.err
    assert not (tmp_path / "x").exists()


def test_export_never_overwrites(run_nas: Any, db: Path, tmp_path: Path) -> None:
    assert export(run_nas, db, tmp_path / "out", "--pareto").code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    result = export(run_nas, db, tmp_path / "out", "--best")
    assert result.code == 2 and len(result.err_lines) == 1 and "already exists" in result.err
    assert {p: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_export_overwrite_replaces_the_earlier_export_and_nothing_else(
        run_nas: Any, db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert export(run_nas, db, out, "--pareto").code == 0
    front = [e["file"] for e in json.loads((out / "manifest.json").read_text())["trials"]]
    (out / "notes.txt").write_text("mine")
    (out / "runs" / "a-retrain").mkdir(parents=True)
    (out / "runs" / "a-retrain" / "result.json").write_text("{}")
    (out / "mine.yaml").write_text("family: vgg\n")  # a spec of the user's, not in the manifest
    result = export(run_nas, db, out, "--best", "--overwrite")
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    [best] = [e["file"] for e in manifest["trials"]]
    assert manifest["selection"] == "best" and len(front) >= 2
    assert sorted(p.name for p in out.glob("*.yaml")) == sorted([best, "mine.yaml"])
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "runs" / "a-retrain" / "result.json").read_text() == "{}"
    again = export(run_nas, db, out, "--best", "--overwrite")  # the same files, replaced
    assert again.code == 0 and sorted(p.name for p in out.glob("*.yaml")) == sorted(
        [best, "mine.yaml"])


def test_export_overwrite_refuses_a_manifest_it_did_not_write(run_nas: Any, db: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("my own notes")
    result = export(run_nas, db, out, "--best", "--overwrite")
    assert result.code == 2 and len(result.err_lines) == 1
    assert "manifest.json: not a manifest nas export wrote" in result.err
    assert [p.name for p in out.iterdir()] == ["manifest.json"]


@pytest.mark.slow
def test_search_export_train_round_trip(run_nas: Any, tmp_path: Path) -> None:
    """A real search on Fashion-MNIST, export --best, then the manifest's own command."""
    url = f"sqlite:///{tmp_path}/rt.db"
    result = run_nas("search", "--space", "resnext", "--trials", "2", "--epochs", "1",
                     "--subset", "0.05", "--study", "rt", "--storage", url, "--jobs", "1",
                     "--device", "cpu")
    assert result.code == 0, result.err
    result = run_nas("export", "--study", "rt", "--storage", url, "--best",
                     "--out", str(tmp_path / "best"))
    assert result.code == 0, result.err
    [entry] = json.loads((tmp_path / "best" / "manifest.json").read_text())["trials"]
    argv = shlex.split(entry["train_command"])
    argv[argv.index("--out") + 1] = str(tmp_path / "run")
    result = run_nas(*argv[1:], "--no-progress")
    assert result.code == 0, result.err
    reproduced = json.loads((tmp_path / "run" / "result.json").read_text())["val_accuracy"]
    assert abs(reproduced - entry["val_accuracy"]) <= TOLERANCE, (reproduced, entry)


def test_export_pareto_of_a_single_objective_study_is_its_best(run_nas: Any,
                                                               tmp_path: Path) -> None:
    single = make_study(tmp_path / "one.db", name="one", objectives=("accuracy",), n=6)
    result = run_nas("export", "--storage", f"sqlite:///{tmp_path}/one.db",
                     "--out", str(tmp_path / "out"))
    assert result.code == 0, result.err
    [entry] = json.loads((tmp_path / "out" / "manifest.json").read_text())["trials"]
    assert entry["number"] == single.best_trial.number
