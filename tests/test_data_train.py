"""Training on a user's images: every layout of the same Fashion-MNIST images learns what the
built-in loader learns; a colour JPEG folder at 64 px goes end to end (train, predict, ONNX and
TorchScript export checked against PyTorch on real images); bench on user data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CliRunner
from datakit import CLASSES, colour_jpegs, fashion_folders

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST: apt install "
                                 "dataset-fashion-mnist")]
BUDGET = ("--epochs", "1", "--batch-size", "64", "--seed", "0", "--augment", "none",
          "--no-progress", "--device", "cpu")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAS_DATA_DIR", str(folder))
    return folder


def trained(run_nas: CliRunner, out: Path, *args: str) -> dict:
    """result.json of `nas train ARGS --out OUT`."""
    result = run_nas("train", *args, "--out", str(out))
    assert result.code == 0, result
    return json.loads((out / "result.json").read_text())


def test_every_layout_learns_what_the_builtin_loader_learns(run_nas: CliRunner,
                                                            tmp_path: Path) -> None:
    """Same images, same split, same order, same budget: within 0.02 of --dataset."""
    folders = fashion_folders()
    reference = trained(run_nas, tmp_path / "reference", "d2l_lenet_bn", "--dataset",
                        "fashion-mnist", "--data-dir", str(folders.reference), *BUDGET)
    assert reference["val_accuracy"] > 0.5  # it learned (chance is 0.1)
    card = json.loads((tmp_path / "reference" / "data.json").read_text())
    assert card["kind"] == "builtin" and card["classes"][0] == "T-shirt/top"
    assert card["counts"] == {"train": 3300, "val": 300, "test": 600}
    layouts = {"tree": folders.tree, "flat": folders.flat, "table": folders.table,
               "unsplit": folders.table_unsplit}
    for name, path in layouts.items():
        result = trained(run_nas, tmp_path / name, "d2l_lenet_bn", "--data", str(path),
                         *BUDGET)
        assert abs(result["val_accuracy"] - reference["val_accuracy"]) <= 0.02, name
        if name in ("tree", "table"):  # the layouts with a test split
            assert abs(result["test_accuracy"] - reference["test_accuracy"]) <= 0.02, name
        else:
            assert result["test_accuracy"] is None
        card = json.loads((tmp_path / name / "data.json").read_text())
        assert card["classes"] == list(CLASSES) and card["counts"]["val"] == 300


def colour_spec(folder: Path) -> Path:
    path = folder / "colour.yaml"
    path.write_text(yaml.safe_dump({
        "family": "resnet", "in_channels": 3, "num_classes": 5, "input_size": 64,
        "depths": [1, 1], "widths": [8, 16], "stem": "small", "stem_width": 8}))
    return path


def test_colour_jpegs_end_to_end(run_nas: CliRunner, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    from nas.deploy import image_files, load_run, preprocess

    jpegs = colour_jpegs()
    run = tmp_path / "run"
    result = trained(run_nas, run, str(colour_spec(tmp_path)), "--data", str(jpegs),
                     "--epochs", "3", "--batch-size", "32", "--no-progress")
    assert result["val_accuracy"] > 0.4 and result["val_balanced_accuracy"] > 0.4  # chance 0.2
    card = json.loads((run / "data.json").read_text())
    assert (card["input_size"], card["channels"], card["augment"]) == (64, 3, "crop-flip")
    predicted = json.loads(run_nas("predict", str(run), str(jpegs / "test"), "--top", "2",
                                   "--json").out)["predictions"]
    assert len(predicted) == 50 and all(len(p["top"]) == 2 for p in predicted)
    right = sum(p["top"][0]["label"] == Path(p["path"]).parent.name for p in predicted)
    assert right / 50 == pytest.approx(result["test_accuracy"])  # read as training read them
    model = load_run(run)
    x, kept, skipped = preprocess(model, image_files([jpegs / "test"])[:16])
    assert x.shape == (16, 3, 64, 64) and not skipped
    with torch.inference_mode():
        expected = model.model(x).numpy()
    assert run_nas("export-model", str(run)).code == 0
    session = onnxruntime.InferenceSession(str(run / "model.onnx"))
    got = session.run(None, {"images": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4
    one = session.run(None, {"images": x[:1].numpy()})[0]  # the batch axis is dynamic
    assert np.abs(one - expected[:1]).max() < 1e-4
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["nas.classes"]) == card["classes"]
    assert json.loads(meta["nas.mean"]) == card["mean"]
    again = run_nas("export-model", str(run))
    assert again.code == 2 and "already exists" in again.err
    assert run_nas("export-model", str(run), "--format", "torchscript").code == 0
    scripted = torch.jit.load(str(run / "model.torchscript.pt"))
    assert torch.allclose(scripted(x), torch.from_numpy(expected), atol=1e-5)


def test_bench_on_user_images(run_nas: CliRunner, tmp_path: Path) -> None:
    result = run_nas("bench", str(colour_spec(tmp_path)), "--data", str(colour_jpegs()),
                     "--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "16",
                     "--json")
    assert result.code == 0, result
    figures = json.loads(result.out)
    assert figures["nas_images_per_second"] > 0 and figures["book_images_per_second"] > 0
    assert figures["dataset"] == "jpegs"
