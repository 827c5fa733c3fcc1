"""nas.data: sources, seeded splits, caches, and the on-device batch pipeline."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

import nas.data as nd
import nas.data.builtin as builtin
from nas.data import BatchMaker, DataError, RawData, load_data, make_splits, random_crop_flip

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
have_data = pytest.mark.skipif(
    not DEBIAN.is_dir() and not nd.cache_file(nd.DATASETS["fashion-mnist"]).exists(),
    reason="needs Fashion-MNIST: apt install dataset-fashion-mnist",
)
needs_debian = pytest.mark.skipif(not DEBIAN.is_dir(),
                                  reason="needs /usr/share/datasets/fashion-mnist "
                                         "(apt install dataset-fashion-mnist)")


def synthetic(n_train: int = 120, n_test: int = 20) -> RawData:
    """Images whose first pixel encodes their index (to check splits)."""
    x = torch.zeros(n_train, 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n_train) % 256
    x[:, 0, 0, 1] = torch.arange(n_train) // 256
    y = torch.arange(n_train) % 10
    return RawData(x, y, x[:n_test].clone(), y[:n_test].clone(), source="synthetic")


def ids(x: torch.Tensor) -> set[int]:
    return set((x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist())


def test_split_is_seeded_disjoint_and_complete() -> None:
    info = nd.DATASETS["fashion-mnist"]
    a = make_splits(info, synthetic(), torch.device("cpu"), 0.25, seed=0)
    b = make_splits(info, synthetic(), torch.device("cpu"), 0.25, seed=0)
    c = make_splits(info, synthetic(), torch.device("cpu"), 0.25, seed=1)
    assert len(a.val_y) == 30 and len(a.train_y) == 90
    assert ids(a.val_x) == ids(b.val_x) != ids(c.val_x)
    assert not ids(a.val_x) & ids(a.train_x)
    assert ids(a.val_x) | ids(a.train_x) == set(range(120))
    labels = synthetic().train_y
    first = a.train_x[:, 0, 0, 0].long() + 256 * a.train_x[:, 0, 0, 1].long()
    assert torch.equal(a.train_y, labels[first])  # images keep their labels


@have_data
def test_fashion_mnist_splits() -> None:
    data = load_data()
    assert data.train_x.shape == (55000, 1, 28, 28) and data.val_x.shape == (5000, 1, 28, 28)
    assert data.test_x.shape == (10000, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    mean = data.train_x.float().mean().item() / 255
    assert abs(mean - data.mean[0]) < 0.005
    assert load_data() is data  # loaded once per process


@needs_debian
def test_data_dir_read_through_torchvision(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path / "cache"))
    raw = nd.load_raw(nd.DATASETS["fashion-mnist"], DEBIAN)
    assert raw.source == str(DEBIAN)
    with gzip.open(DEBIAN / "t10k-labels-idx1-ubyte.gz") as f:
        labels = torch.tensor(list(f.read()[8:]))
    assert torch.equal(raw.test_y, labels)
    staged = list((tmp_path / "cache" / "staged").glob("*/FashionMNIST/raw/*"))
    assert len(staged) == 4


def test_cache_round_trip(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path))
    info = nd.DATASETS["mnist"]
    nd.write_cache(info, synthetic())
    back = nd.read_cache(info)
    assert back is not None and torch.equal(back.train_x, synthetic().train_x)
    nd.cache_file(info).write_bytes(b"not a tensor file")
    assert nd.read_cache(info) is None  # a corrupt cache is rebuilt, not fatal


def test_empty_data_dir_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no fashion-mnist files found") as e:
        load_data(data_dir=tmp_path)
    assert "\n" not in str(e.value)


def test_no_source_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(builtin, "debian_dir", lambda info: tmp_path / "absent")

    def offline(info: object, root: object, download: bool) -> RawData:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors")

    monkeypatch.setattr(builtin, "read_torchvision", offline)
    monkeypatch.setattr(builtin, "_RAW", {})
    with pytest.raises(DataError) as e:
        nd.load_raw(nd.DATASETS["fashion-mnist"])
    message = str(e.value)
    assert "\n" not in message
    assert "dataset-fashion-mnist" in message and "--data-dir" in message


def test_unknown_dataset_and_bad_fraction() -> None:
    with pytest.raises(DataError, match="one of fashion-mnist, mnist, cifar10"):
        load_data("imagenet")
    with pytest.raises(DataError, match="val_fraction"):
        load_data(val_fraction=0)


def splits_of(raw: RawData, channels: int = 1) -> nd.DataSplits:
    info = nd.DATASETS["fashion-mnist" if channels == 1 else "cifar10"]
    return make_splits(info, raw, torch.device("cpu"), 0.25, 0)


def test_batch_maker_normalises_and_resizes() -> None:
    x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    data = splits_of(RawData(x, torch.zeros(8, dtype=torch.int64), x, x[:, 0, 0, 0], "t"))
    out = BatchMaker(data, 28, channels_last=False)(x)
    expected = (x.float() / 255 - data.mean[0]) / data.std[0]
    assert torch.allclose(out, expected, atol=1e-5)
    big = BatchMaker(data, 96, channels_last=True)(x)
    assert big.shape == (8, 1, 96, 96) and big.is_contiguous(memory_format=torch.channels_last)
    assert abs(big.mean().item() - out.mean().item()) < 0.05


def test_random_crop_flip_matches_a_per_image_reference() -> None:
    x = torch.randint(1, 256, (6, 3, 16, 16), dtype=torch.uint8)
    out = random_crop_flip(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 5, (2, 6), generator=g)
    flips = torch.rand(6, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        top, left = offsets[0, i].item(), offsets[1, i].item()
        crop = padded[i, :, top:top + 16, left:left + 16]
        assert torch.equal(out[i], crop.flip(2) if flips[i] else crop)
    assert not torch.equal(out, x)
