"""nas.data on a user's images: discovery as torchvision and timm find files, decoding as
torchvision's transforms do, the prepared cache (once, shared, memory-mapped, re-prepared on a
change), stratified splits, statistics, scores and augmentation settings."""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from datakit import small_folder, write_table
from PIL import Image

import nas.data as nd
import nas.data.prepared as prepared_module
from nas.data.discover import discover
from nas.data.images import decode, read_header
from nas.data.user import stratified_split
from nas.train import TrainConfig, TrainError
from nas.train.evaluate import Scores, scores_from_counts, split_scores


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own data cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAS_DATA_DIR", str(folder))
    return folder


def test_imagefolder_classes_and_order_match_torchvision(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    root = small_folder(tmp_path / "d", {"b": 2, "A": 2, "a": 1, "B10": 1, "B9": 1})
    small_folder(tmp_path / "d" / "b" / "Z", {"deep": 2})  # nested: b/Z/deep/...
    (tmp_path / "d" / "b" / "b-x").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "d" / "b" / "b-x" / "0.png")
    listing = discover(root)
    theirs = ImageFolder(str(root))
    assert listing.classes == tuple(theirs.classes)
    index = {c: i for i, c in enumerate(listing.classes)}
    assert [(e.path, index[e.label]) for e in listing.entries] == theirs.samples


def test_hidden_and_non_image_files_ignored_and_counted(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d")
    (root / ".ipynb_checkpoints").mkdir()  # torchvision would take it for a class
    (root / "cat" / "notes.txt").write_text("x")
    (root / "cat" / "Thumbs.db").write_bytes(b"x")
    (root / "README").write_text("x")
    listing = discover(root)
    assert listing.classes == ("cat", "dog") and len(listing.entries) == 12
    assert listing.ignored["hidden files and folders"] == 1
    assert listing.ignored["non-image files (.txt)"] == 1
    assert listing.ignored["non-image files (.db)"] == 1
    assert listing.ignored["files outside class folders"] == 1


def test_split_folders_found_by_timm_names(tmp_path: Path) -> None:
    for split in ("training", "validation", "test"):
        small_folder(tmp_path / "d" / split)
    listing = discover(tmp_path / "d")
    assert listing.layout == "split folders"
    assert [sum(e.split == s for e in listing.entries) for s in ("train", "val", "test")] == \
        [12, 12, 12]
    small_folder(tmp_path / "d" / "val")
    with pytest.raises(nd.DataError, match="both val/ and validation/ hold the val split"):
        discover(tmp_path / "d")
    small_folder(tmp_path / "e" / "val")
    with pytest.raises(nd.DataError, match="no train/ folder"):
        discover(tmp_path / "e")


def test_csv_and_tsv_tables(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "img")
    files = sorted(root.rglob("*.png"))
    rows = [(f"img/{p.parent.name}/{p.name}" if i % 2 else str(p), p.parent.name,
             "val" if i % 4 == 0 else "train") for i, p in enumerate(files)]
    write_table(tmp_path / "t.tsv", ["label", "split", "path"],
                [(label, split, path) for path, label, split in rows])
    listing = discover(tmp_path / "t.tsv")
    assert listing.kind == "csv" and listing.classes == ("cat", "dog")
    assert [e.path for e in listing.entries] == [str(p) for p in files]  # row order kept
    assert [e.split for e in listing.entries] == [r[2] for r in rows]
    bom = tmp_path / "bom.csv"  # as Excel saves it
    bom.write_text("\ufeffPath,Label\n" + "".join(f"{r[0]},{r[1]}\n" for r in rows),
                   encoding="utf-8")
    assert len(discover(bom).entries) == 12


def test_decode_equals_torchvision_resize_and_centre_crop(tmp_path: Path) -> None:
    from torchvision.transforms import CenterCrop, Compose, Resize

    rng = np.random.default_rng(0)
    for (w, h), mode in (((40, 30), "RGB"), ((17, 50), "L"), ((16, 16), "RGB")):
        channels = 3 if mode == "RGB" else 1
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = tmp_path / f"{w}x{h}{mode}.png"
        Image.fromarray(pixels).convert(mode).save(path)
        theirs = Compose([Resize(16), CenterCrop(16)])(Image.open(path).convert(mode))
        expected = np.asarray(theirs)
        ours = decode(path, 16, channels)
        assert ours.shape == (channels, 16, 16)
        assert np.array_equal(ours, expected[None] if channels == 1 else
                              expected.transpose(2, 0, 1))


def test_mixed_modes_one_channel_count(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("L", (10, 10), 90).save(root / "a" / "grey.png")
    Image.new("LA", (10, 10), (90, 128)).save(root / "a" / "grey-alpha.png")
    grey_palette = Image.new("L", (10, 10), 90).convert("P")
    grey_palette.save(root / "a" / "grey-palette.png")
    Image.fromarray(np.full((10, 10), 60000, dtype=np.uint16)).save(root / "a" / "16bit.png")
    Image.new("RGBA", (10, 10), (200, 10, 10, 100)).save(root / "b" / "rgba.png")
    Image.new("RGB", (10, 10), (10, 200, 10)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        root / "b" / "palette.png")
    Image.new("RGB", (10, 10), (10, 10, 200)).save(root / "b" / "rgb.bmp")
    Image.new("RGB", (10, 10), (10, 10, 200)).save(root / "b" / "rgb.webp", lossless=True)
    Image.new("RGB", (10, 10), (10, 10, 200)).save(root / "b" / "rgb.tiff")
    headers = {p.name: read_header(p) for p in root.rglob("*.*")}
    assert not any(headers[n].colour for n in ("grey.png", "grey-alpha.png",
                                               "grey-palette.png", "16bit.png"))
    assert all(headers[n].colour for n in ("rgba.png", "palette.png", "rgb.bmp", "rgb.webp",
                                           "rgb.tiff"))
    summary = nd.peek(root)
    assert summary.channels == 3 and summary.num_classes == 2
    assert decode(root / "a" / "16bit.png", 10, 1).max() == round(60000 / 257)  # not clipped
    assert decode(root / "a" / "grey.png", 10, 3).shape == (3, 10, 10)
    assert tuple(decode(root / "b" / "palette.png", 10, 3)[:, 0, 0]) == (10, 200, 10)
    grey_only = tmp_path / "g"
    shutil.copytree(root / "a", grey_only / "a")
    shutil.copytree(root / "a", grey_only / "c")
    assert nd.peek(grey_only).channels == 1


def test_exif_orientation_applied(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise: the left becomes the top
    path = tmp_path / "turned.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    header = read_header(path)
    assert (header.width, header.height) == (10, 20)
    image = decode(path, 10, 1)[0]  # 10 x 20 upright, centre crop of rows 5..14
    assert image[:5].mean() > 200 and image[5:].mean() < 50


def test_stratified_split_per_class_seeded_and_ordered() -> None:
    labels = torch.tensor([0] * 24 + [1] * 12 + [2] * 1 + [3] * 2)
    train = torch.arange(len(labels))
    kept, val = stratified_split(train, labels, 1 / 12, seed=0)
    assert torch.bincount(labels[val], minlength=4).tolist() == [2, 1, 0, 1]
    assert set(kept.tolist()) | set(val.tolist()) == set(range(len(labels)))
    assert not set(kept.tolist()) & set(val.tolist())
    assert torch.equal(kept, kept.sort().values) and torch.equal(val, val.sort().values)
    again = stratified_split(train, labels, 1 / 12, seed=0)[1]
    other = stratified_split(train, labels, 1 / 12, seed=1)[1]
    assert torch.equal(again, val) and not torch.equal(other, val)


def phases(log: list[str]) -> nd.Progress:
    def report(phase: str, done: int, total: int) -> None:
        log.append(phase)
    return report


def test_prepared_once_reused_and_prepared_again_on_change(tmp_path: Path, cache: Path) -> None:
    root = small_folder(tmp_path / "d", {"cat": 30, "dog": 30}, size=(20, 16), mode="RGB")
    first: list[str] = []
    data = nd.load_data(root, input_size=12, progress=phases(first))
    assert "decoding images" in first and data.image_size == 12 and data.in_channels == 3
    folder = Path(data.extra["cache"])
    assert folder.parent == cache / "prepared" and folder.name == data.fingerprint
    stamp = (folder / "images.u8").stat().st_mtime_ns
    second: list[str] = []
    again = nd.load_data(root, input_size=12, progress=phases(second))
    assert second == [] and again.fingerprint == data.fingerprint  # nothing read or decoded
    assert (folder / "images.u8").stat().st_mtime_ns == stamp
    assert torch.equal(again.val_x.materialize(), data.val_x.materialize())
    changed = root / "cat" / "cat-000.png"
    Image.new("RGB", (20, 16), (255, 0, 0)).save(changed)
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))
    third: list[str] = []
    changed_data = nd.load_data(root, input_size=12, progress=phases(third))
    assert "decoding images" in third and changed_data.fingerprint != data.fingerprint
    other_size = nd.load_data(root, input_size=8)
    assert other_size.fingerprint not in (data.fingerprint, changed_data.fingerprint)


def prepare_in_worker(root: str, cache: str, log: str, barrier: object) -> None:
    """One of several processes loading the same new data set at once."""
    os.environ["NAS_DATA_DIR"] = cache
    os.environ["NAS_DATA_WORKERS"] = "1"
    seen: list[str] = []
    barrier.wait()  # type: ignore[attr-defined]
    data = nd.load_data(root, input_size=16, progress=phases(seen))
    Path(log).write_text(f"{data.fingerprint}\n" + "\n".join(sorted(set(seen))))


def test_processes_starting_together_prepare_once(tmp_path: Path, cache: Path) -> None:
    root = small_folder(tmp_path / "d", {"cat": 150, "dog": 150}, size=(40, 40), mode="RGB")
    nd.peek(root)  # the headers once, so that the race is on decoding
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    logs = [tmp_path / f"log{i}" for i in range(3)]
    procs = [ctx.Process(target=prepare_in_worker, args=(str(root), str(cache), str(log),
                                                         barrier)) for log in logs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    texts = [log.read_text().splitlines() for log in logs]
    assert len({t[0] for t in texts}) == 1  # one fingerprint, one prepared folder
    assert sum("decoding images" in t for t in texts) == 1
    assert len(list((cache / "prepared").glob("*/meta.json"))) == 1
    assert not list((cache / "prepared").glob(".*.tmp"))


def test_splits_are_views_of_the_mapped_file(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d", {"cat": 20, "dog": 20})
    data = nd.load_data(root, input_size=8)
    assert isinstance(data.train_x, nd.IndexView) and isinstance(data.val_x, nd.IndexView)
    base = data.train_x.base
    assert data.val_x.base is base and data.test_x.base is base
    pointer = base.data_ptr()
    file = str(Path(data.extra["cache"]) / "images.u8")
    mapped = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        start, end = (int(v, 16) for v in parts[0].split("-"))
        if len(parts) == 6 and parts[5] == file:
            mapped.append((start, end))
    assert any(start <= pointer < end for start, end in mapped), "not a file mapping"
    x = data.train_x[torch.tensor([0, 2])]
    assert torch.equal(x, base[data.train_x.index[[0, 2]]]) and x.shape == (2, 1, 8, 8)
    assert torch.equal(data.train_x[1:3], base[data.train_x.index[1:3]])
    assert len(data.train_x) + len(data.val_x) == 40 and data.train_x.shape[1:] == (1, 8, 8)


def test_statistics_from_the_training_split_only(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for split, value in (("train", 40), ("val", 250), ("test", 250)):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (6, 6), value + 10 * i).save(root / split / label / f"{i}.png")
    data = nd.load_data(root)
    train = data.train_x.materialize().double() / 255
    assert data.mean[0] == pytest.approx(train.mean().item(), abs=1e-6)
    assert data.std[0] == pytest.approx(train.std(unbiased=False).item(), abs=1e-6)


def test_disk_too_small_refused_before_decoding(tmp_path: Path, cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = small_folder(tmp_path / "d")
    monkeypatch.setattr(prepared_module, "free_bytes", lambda folder: 10 * 2**20)
    log: list[str] = []
    with pytest.raises(nd.DataError) as e:
        nd.load_data(root, input_size=2000, channels=3, progress=phases(log))
    message = str(e.value)
    assert "\n" not in message and "need 137.3 MiB" in message and "10.0 MiB is free" in message
    assert "decoding images" not in log
    assert not list((cache / "prepared").glob("*/meta.json"))


def test_a_recorded_fingerprint_loads_that_version_or_refuses(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d")
    data = nd.load_data(root, input_size=8)
    picture = root / "dog" / "dog-000.png"
    Image.new("L", (12, 10), 7).save(picture)
    os.utime(picture, ns=(1, 1))
    pinned = nd.load_data(root, input_size=8, fingerprint=data.fingerprint)
    assert pinned.fingerprint == data.fingerprint  # the recorded version, not the changed one
    shutil.rmtree(data.extra["cache"])
    with pytest.raises(nd.DataError, match="the images changed since this data was recorded"):
        nd.load_data(root, input_size=8, fingerprint=data.fingerprint)


def test_describe_is_the_data_card(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d", {"cat": 12, "dog": 24}, size=(30, 20), mode="RGB")
    card = nd.describe(nd.load_data(root))
    assert card["kind"] == "folder" and card["classes"] == ["cat", "dog"]
    assert card["input_size"] == 20 and card["channels"] == 3  # the median shorter side
    assert card["counts"] == {"train": 33, "val": 3, "test": 0} and card["val_drawn"]
    assert len(card["mean"]) == len(card["std"]) == 3 and card["augment"] == "crop-flip"
    builtin = nd.builtin_card("fashion-mnist")
    assert builtin["classes"][0] == "T-shirt/top" and builtin["channels"] == 1


def test_default_input_size_from_images_and_a_space(tmp_path: Path) -> None:
    summary = nd.peek(small_folder(tmp_path / "d", size=(100, 120)))
    assert summary.input_size == 100
    assert nd.default_input_size(summary) == 100
    assert nd.default_input_size(summary, [32, 64, 96, 224]) == 96
    assert nd.default_input_size(summary, [28, 32]) == 32
    big = nd.peek(small_folder(tmp_path / "e", size=(640, 480)))
    assert big.input_size == 224  # capped: a search at 480 px is rarely what was meant


def test_unknown_name_and_options() -> None:
    with pytest.raises(nd.DataError, match="unknown dataset 'imagenet'; one of fashion-mnist"):
        nd.load_data("imagenet")
    with pytest.raises(nd.DataError, match="--channels must be 1 or 3"):
        nd.load_data("somewhere/", channels=2)
    assert nd.is_builtin("fashion_mnist") and not nd.is_builtin("./mnist")


class PixelClassifier(torch.nn.Module):
    """Predicts the class written in each image's first pixel (to score known predictions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].round().long(), 3).float()


def test_balanced_accuracy_on_a_known_confusion() -> None:
    assert scores_from_counts(torch.tensor([[2, 18], [4, 1], [0, 0]])) == \
        pytest.approx(Scores(19 / 25, (18 / 20 + 1 / 5) / 2))
    truth = torch.tensor([0] * 20 + [1] * 5)
    predicted = torch.tensor([0] * 18 + [1] * 2 + [1] * 1 + [0] * 4)
    x = predicted.view(-1, 1, 1, 1).to(torch.uint8).expand(-1, 1, 2, 2).contiguous()
    data = nd.DataSplits("t", x, truth, x, truth, x, truth, 3, 1, 2, (0.0,), (1 / 255,),
                         torch.device("cpu"))
    maker = nd.BatchMaker(data, 2, channels_last=False)
    got = split_scores(PixelClassifier(), x, truth, maker, batch_size=7, num_classes=3)
    assert got == pytest.approx(Scores(19 / 25, 0.55))


def test_augment_settings_map_old_booleans_and_keep_none() -> None:
    assert asdict(TrainConfig())["augment"] is None  # existing budget keys unchanged
    assert TrainConfig(augment=True).augment == "crop-flip"
    assert TrainConfig(augment=False).augment == "none"
    assert nd.augment_mode(None, "flip") == "flip" and nd.augment_mode(True) == "crop-flip"
    with pytest.raises(TrainError, match="unknown augmentation 'maybe'"):
        TrainConfig(augment="maybe").check()
    assert nd.default_augment(64) == "crop-flip" and nd.default_augment(96) == "flip"


def test_random_flip_matches_a_per_image_reference() -> None:
    x = torch.randint(0, 256, (8, 3, 5, 7), dtype=torch.uint8)
    out = nd.random_flip(x, torch.Generator().manual_seed(4))
    flips = torch.rand(8, generator=torch.Generator().manual_seed(4)) < 0.5
    for i in range(8):
        assert torch.equal(out[i], x[i].flip(2) if flips[i] else x[i])
    assert 0 < int(flips.sum()) < 8


def test_csv_rows_keep_their_labels(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "img", {"x": 4, "y": 4})
    with open(tmp_path / "t.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for p in sorted(root.rglob("*.png")):  # labels swapped on purpose: the table wins
            writer.writerow([p.relative_to(tmp_path), "y" if p.parent.name == "x" else "x"])
    data = nd.load_data(tmp_path / "t.csv", input_size=8)
    pictures = {decode(p, 8, 1).tobytes(): p.parent.name for p in root.rglob("*.png")}
    for images, labels in ((data.train_x, data.train_y), (data.val_x, data.val_y)):
        for image, label in zip(images.materialize(), labels.tolist()):
            folder = pictures[image.numpy().tobytes()]
            assert data.classes[label] == ("y" if folder == "x" else "x")
