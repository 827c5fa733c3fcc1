"""nas.deploy and `nas predict` / `nas export-model`: images read exactly as training read them,
old run folders, unreadable images, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CliRunner
from datakit import small_folder, write_png

import nas.data as nd
from nas.deploy import image_files, load_run, preprocess

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST: apt "
                                   "install dataset-fashion-mnist")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAS_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet briefly trained on Fashion-MNIST, named by --data (a few steps: enough to
    differ from its initial weights)."""
    from nas.cli import main

    out = tmp_path_factory.mktemp("run") / "lenet"
    try:
        main(["train", "d2l_lenet_bn", "--data", "fashion-mnist", "--epochs", "1",
              "--max-steps", "5", "--batch-size", "64", "--no-progress", "--out", str(out),
              "--device", "cpu"])
    except SystemExit as e:
        assert not e.code
    return out


@needs_fashion
def test_predictions_read_images_as_training_read_them(run_nas: CliRunner, tmp_path: Path,
                                                       fashion_run: Path) -> None:
    data = nd.load_data("fashion-mnist")
    files = []
    for i in range(6):
        files.append(tmp_path / f"{i}.png")
        write_png(files[-1], data.test_x[i, 0].numpy())
    out = run_nas("predict", str(fashion_run), *map(str, files), "--top", "10", "--json").out
    predicted = json.loads(out)["predictions"]
    trained = load_run(fashion_run)
    maker = nd.BatchMaker(data, trained.spec.input_size, channels_last=False)
    with torch.inference_mode():
        expected = torch.softmax(trained.model(maker(data.test_x[:6])), dim=1)
    for i, p in enumerate(predicted):
        assert p["path"] == str(files[i]) and len(p["top"]) == 10
        assert p["top"][0]["label"] == data.classes[p["top"][0]["index"]]
        got = torch.zeros(10)
        for t in p["top"]:
            got[t["index"]] = t["probability"]
        assert torch.allclose(got, expected[i], atol=1e-5)
    text = run_nas("predict", str(fashion_run), str(files[0])).out
    assert text.startswith(f"{files[0]}: ") and text.count(" 0.") == 3  # --top 3 by default


@needs_fashion
def test_a_run_folder_without_data_json(run_nas: CliRunner, tmp_path: Path,
                                        fashion_run: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for name in ("spec.yaml", "model.safetensors", "result.json"):
        (old / name).write_bytes((fashion_run / name).read_bytes())
    picture = tmp_path / "x.png"
    write_png(picture, nd.load_data("fashion-mnist").test_x[0, 0].numpy())
    assert run_nas("predict", str(old), str(picture)).code == 0  # the built-in's card
    result = json.loads((old / "result.json").read_text())
    (old / "result.json").write_text(json.dumps({**result, "dataset": "photos"}))
    refused = run_nas("predict", str(old), str(picture))
    assert refused.code == 2 and "no data.json" in refused.err


@needs_fashion
def test_unreadable_images_skipped_and_refusals(run_nas: CliRunner, tmp_path: Path,
                                                fashion_run: Path) -> None:
    folder = small_folder(tmp_path / "imgs", {"any": 3}, size=(28, 28))
    (folder / "any" / "broken.png").write_bytes(b"no image")
    result = run_nas("predict", str(fashion_run), str(folder), "--json")
    assert result.code == 0 and len(json.loads(result.out)["predictions"]) == 3
    assert "nas: skipped" in result.err and "broken.png: not an image Pillow can read" in \
        result.err
    only_broken = run_nas("predict", str(fashion_run), str(folder / "any" / "broken.png"))
    assert only_broken.code == 2 and "no image could be read" in only_broken.err
    for args, message in (
        (("predict", str(tmp_path), str(folder)), "no spec.yaml"),
        (("predict", str(fashion_run), str(tmp_path / "absent.png")), "no such file or folder"),
        (("predict", str(fashion_run), str(folder), "--top", "0"), "--top must be at least 1"),
        (("export-model", str(fashion_run), "--format", "coreml"), "unknown format 'coreml'"),
        (("export-model", str(fashion_run), "--out", str(fashion_run / "spec.yaml")),
         "already exists"),
    ):
        refused = run_nas(*args)
        assert refused.code == 2 and message in refused.err, (args, refused)
        assert len(refused.err_lines) == 1


@needs_fashion
def test_export_to_a_chosen_file(run_nas: CliRunner, tmp_path: Path, fashion_run: Path) -> None:
    out = tmp_path / "deep" / "lenet.pt"
    result = run_nas("export-model", str(fashion_run), "--format", "torchscript", "--out",
                     str(out))
    assert result.code == 0 and f"wrote {out}" in result.out.replace("\n", " ")
    trained = load_run(fashion_run)
    x, _, _ = preprocess(trained, image_files([small_folder(tmp_path / "i", {"a": 4},
                                                            size=(28, 28))]))
    with torch.inference_mode():
        assert torch.allclose(torch.jit.load(str(out))(x), trained.model(x), atol=1e-5)
    extra = {"data.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["data.json"])["classes"][1] == "Trouser"
