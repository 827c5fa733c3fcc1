"""nas.bench: the book's loop reads the same images; both loops report a throughput."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nas.data as nd
from nas.bench import bench, book_loader
from nas.cli import main

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST: "
                                "apt install dataset-fashion-mnist")


def test_book_loader_reads_the_same_images_as_the_engine() -> None:
    raw = nd.load_raw(nd.DATASETS["fashion-mnist"])
    loader = book_loader("fashion-mnist", nd.torchvision_root(), 28, 16, workers=0)
    for i in (0, 1234, 59999):
        image, label = loader.dataset[i]
        assert torch.allclose(image, raw.train_x[i].float() / 255) and label == raw.train_y[i]
    x, y = next(iter(book_loader("fashion-mnist", nd.torchvision_root(), 96, 16, workers=0)))
    assert x.shape == (16, 1, 96, 96) and y.shape == (16,)


def test_bench_times_both_loops() -> None:
    result = bench("d2l_lenet_bn", steps=3, batch_size=64, warmup=1, repeats=2, name="lenet")
    assert result.nas_images_per_second > 0 and result.book_images_per_second > 0
    assert len(result.nas_runs) == len(result.book_runs) == 2, "alternating repeats, all kept"
    assert result.nas_images_per_second == max(result.nas_runs)
    assert result.book_images_per_second == max(result.book_runs)
    expected = result.nas_images_per_second / result.book_images_per_second
    assert result.speedup == pytest.approx(expected)
    assert result.steps == 3 and result.spec == "lenet"


def test_cli_bench_json(capsys) -> None:
    try:
        main(["bench", "d2l_lenet_bn", "--steps", "2", "--warmup", "1", "--batch-size", "32",
              "--json"])
    except SystemExit as e:
        assert not e.code
    out = json.loads(capsys.readouterr().out)
    assert {"nas_images_per_second", "book_images_per_second", "speedup"} <= out.keys()
