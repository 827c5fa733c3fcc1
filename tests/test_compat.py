"""A study written by nas 0.1.0 (tests/data/study-0.1.0.db: `nas search --space resnext
--trials 4 --study old --epochs 2 --subset 0.02 --batch-size 64 --max-params 20000`, made with
that release) opens, resumes, reports, exports and shows its status under today's nas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from conftest import CliRunner

from nas.study import StudySettings, study_trials, trained_count

OLD = Path(__file__).parent / "data" / "study-0.1.0.db"
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def old_study(tmp_path: Path) -> str:
    copy = tmp_path / "old.db"
    shutil.copy(OLD, copy)
    return f"sqlite:///{copy}"


def test_it_reports_exports_and_shows_its_status(old_study: str, run_nas: CliRunner,
                                                 tmp_path: Path) -> None:
    study = optuna.load_study(study_name="old", storage=old_study)
    assert StudySettings.from_study(study).nas_version == "0.1.0"
    common = ("--study", "old", "--storage", old_study)
    report = run_nas("report", *common, "--out", str(tmp_path / "r.html"))
    assert report.code == 0 and "Pareto" in (tmp_path / "r.html").read_text(), report.err
    export = run_nas("export", *common, "--pareto", "--out", str(tmp_path / "front"))
    assert export.code == 0, export.err
    manifest = json.loads((tmp_path / "front" / "manifest.json").read_text())
    assert manifest and all("nas train" in str(entry) for entry in manifest["trials"])
    status = run_nas("status", *common, "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["running"] == []


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST")
@pytest.mark.slow
def test_it_resumes_and_records_the_limit_it_was_run_with(old_study: str,
                                                          run_nas: CliRunner) -> None:
    before = trained_count(optuna.load_study(study_name="old", storage=old_study))
    done = run_nas("search", "--space", "resnext", "--trials", str(before + 1), "--study", "old",
                   "--storage", old_study, "--epochs", "2", "--subset", "0.02", "--batch-size",
                   "64", "--max-params", "20000", "--jobs", "1", "--json")
    assert done.code == 0, done.err
    study = optuna.load_study(study_name="old", storage=old_study)
    assert trained_count(study) == before + 1
    settings = StudySettings.from_study(study)
    assert settings.max_params == 20000 and settings.epochs == 2, "recorded from now on"
    new = [t for t in study_trials(study) if t.record.worker is not None and t.number >= 4]
    assert all(t.record.params <= 20000 for t in new if t.trained)
