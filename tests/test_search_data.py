"""nas search and nas confirm on a user's images: every layout of the same Fashion-MNIST images
searches as the built-in loader does (the same architectures, each within 0.02), and a colour
JPEG folder at 64 px goes end to end: search, confirm, export, train, predict and ONNX."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from conftest import CliRunner
from datakit import CLASSES, colour_jpegs, fashion_folders

from nas.data.load import load_data
from nas.errors import UserError
from nas.search.request import SearchRequest
from nas.search.space import load_space
from nas.search.work import search
from nas.study import StudySettings, study_trials

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST")]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAS_DATA_DIR", str(folder))
    return folder


def request(tmp_path: Path, name: str, **kw: object) -> SearchRequest:
    fields: dict = {"space": load_space("resnext"), "trials": 2, "study": name,
                    "storage": f"sqlite:///{tmp_path / (name + '.db')}", "epochs": 1,
                    "subset": 1.0, "batch_size": 64, "device": "cpu", "sampler": "random",
                    "seed": 0, "augment": "none", "proxies": False, "early_stop": False, **kw}
    return SearchRequest(**fields)


def accuracies(study: optuna.Study) -> list[tuple[str, float]]:
    """(architecture, validation accuracy) of each trained trial, by number."""
    return [(t.record.spec_hash, t.record.val_accuracy) for t in study_trials(study)
            if t.trained]


# long enough that one run's accuracy settles: after one epoch of 51 steps the normalisation
# figures alone (the training split's, against Fashion-MNIST's published ones) moved a trial's
# accuracy by 0.10
LONGER = {"epochs": 4, "trials": 3}


def test_every_layout_searches_as_the_builtin_loader(tmp_path: Path) -> None:
    """Same images, split and order, same seeds and budget: the same architectures, and the
    search's best and mean validation accuracy within 0.02 of the built-in loader's (what
    differs is the normalisation: the training split's figures against the published ones).
    The folder tree is searched; the flat folder and the CSV give that tree's data to the
    element (so their searches are the tree's: each layout's training is compared with the
    built-in loader's in tests/test_data_train.py)."""
    folders = fashion_folders()
    reference = accuracies(search(request(tmp_path, "ref", dataset="fashion-mnist",
                                          data_dir=str(folders.reference), **LONGER)))
    assert len(reference) == 3 and all(acc > 0.5 for _h, acc in reference)  # chance: 0.1
    study = search(request(tmp_path, "tree", dataset=str(folders.tree), **LONGER))
    got = accuracies(study)
    assert [h for h, _a in got] == [h for h, _a in reference], "the same architectures"
    for summary in (max, np.mean):
        ours, theirs = summary([a for _h, a in got]), summary([a for _h, a in reference])
        assert abs(ours - theirs) <= 0.02, (summary, got, reference)
    settings = StudySettings.from_study(study)
    assert settings.input_size == 28 and settings.channels == 1
    assert settings.data_card["classes"] == list(CLASSES), "the label map travels"
    assert settings.data_fingerprint and settings.augment == "none"
    tree = load_data(str(folders.tree), None, "cpu", seed=0, input_size=28)
    for path in (folders.flat, folders.table):
        other = load_data(str(path), None, "cpu", seed=0, input_size=28)
        for name in ("train_x", "train_y", "val_x", "val_y"):
            assert torch.equal(torch.as_tensor(getattr(other, name)[:]),
                               torch.as_tensor(getattr(tree, name)[:])), (path, name)
        assert (other.mean, other.std, other.classes) == (tree.mean, tree.std, tree.classes)


def test_a_study_keeps_its_version_of_the_images(tmp_path: Path, cache: Path) -> None:
    """Changed files never mix into a study: while its prepared version exists it goes on
    with that one (recorded by fingerprint); where it does not (another machine, a cleared
    cache) the changed images are refused in one line."""
    import shutil

    from datakit import small_folder

    folder = small_folder(tmp_path / "few", {"a": 24, "b": 24}, size=(20, 20))
    search(request(tmp_path, "few", dataset=str(folder), trials=1))
    recorded = StudySettings.from_study(optuna.load_study(
        study_name="few", storage=f"sqlite:///{tmp_path / 'few.db'}")).data_fingerprint
    first = sorted((folder / "a").iterdir())[0]
    first.write_bytes(sorted((folder / "b").iterdir())[0].read_bytes())  # a changed image
    study = search(request(tmp_path, "few", dataset=str(folder), trials=2))
    assert StudySettings.from_study(study).data_fingerprint == recorded
    shutil.rmtree(cache / "prepared")
    with pytest.raises(UserError, match="the images changed since this data was recorded"):
        search(request(tmp_path, "few", dataset=str(folder), trials=3))


def test_a_space_refuses_data_outside_its_input_sizes(tmp_path: Path,
                                                      run_nas: CliRunner) -> None:
    done = run_nas("search", "--space", "resnext", "--data", str(colour_jpegs()),
                   "--input-size", "96", "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.code == 2 and len(done.err_lines) == 1, done.err
    assert "space resnext is for inputs of 16-64 px" in done.err and "96 px" in done.err
    assert not (tmp_path / "x.db").exists() or not optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'x.db'}"), "no study written"


def test_colour_jpegs_search_confirm_export_train_predict_onnx(run_nas: CliRunner,
                                                              tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    jpegs = str(colour_jpegs())
    db = f"sqlite:///{tmp_path / 'c.db'}"
    common = ("--study", "c", "--storage", db)
    found = run_nas("search", "--space", "resnext", *common, "--data", jpegs, "--trials", "2",
                    "--epochs", "2", "--batch-size", "32", "--sampler", "random", "--jobs", "1",
                    "--objectives", "balanced_accuracy,params", "--json")
    assert found.code == 0, found.err
    assert "input_size=64" in found.err, "the chosen input size is printed"
    settings = StudySettings.from_study(optuna.load_study(study_name="c", storage=db))
    assert (settings.input_size, settings.channels, settings.augment) == (64, 3, "crop-flip")
    trials = study_trials(optuna.load_study(study_name="c", storage=db))
    assert all(t.record.val_balanced_accuracy is not None for t in trials if t.trained)
    confirmed = run_nas("confirm", *common, "--top", "1", "--control", "0", "--seeds", "1",
                        "--epochs", "1", "--subset", "1", "--jobs", "1", "--json")
    assert confirmed.code == 0, confirmed.err
    assert json.loads(confirmed.out)["runs_done"] == 1
    exported = run_nas("export", *common, "--best", "--out", str(tmp_path / "best"))
    assert exported.code == 0, exported.err
    entry = json.loads((tmp_path / "best" / "manifest.json").read_text())["trials"][0]
    argv = shlex.split(entry["train_command"])
    assert argv[argv.index("--data") + 1] == jpegs and "--augment" in argv
    run = tmp_path / "run"
    argv[argv.index("--out") + 1] = str(run)
    trained = run_nas(*argv[1:], "--no-progress")
    assert trained.code == 0, trained.err
    result = json.loads((run / "result.json").read_text())
    assert result["val_accuracy"] == pytest.approx(entry["val_accuracy"], abs=0.002), \
        "the retrain command repeats the trial"
    predicted = run_nas("predict", str(run), f"{jpegs}/test", "--json")
    assert predicted.code == 0, predicted.err
    assert len(json.loads(predicted.out)["predictions"]) == 50
    assert run_nas("export-model", str(run)).code == 0
    from nas.deploy import image_files, load_run, preprocess

    model = load_run(run)
    x, _kept, _skipped = preprocess(model, image_files([Path(jpegs) / "test"])[:8])
    with torch.inference_mode():
        expected = model.model(x).numpy()
    got = onnxruntime.InferenceSession(str(run / "model.onnx")).run(
        None, {"images": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4
