"""`nas data`, and `nas train --data` on bad input: each mistake is one line `nas: error: ...`
with exit code 2, or a counted skip that `nas data` names; odd but valid names work."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml
from conftest import CliResult, CliRunner
from datakit import small_folder, write_table


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAS_DATA_DIR", str(folder))
    return folder


def refused(result: CliResult, *fragments: str) -> None:
    """Exit code 2 and one line naming the problem."""
    assert result.code == 2, result
    lines = result.err_lines
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def report(run_nas: CliRunner, *args: str) -> dict:
    result = run_nas("data", *args, "--json")
    assert result.out, result
    return json.loads(result.out)


def tiny_spec(folder: Path, channels: int = 1, classes: int = 2, size: int = 8) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "family": "resnet", "in_channels": channels, "num_classes": classes,
        "input_size": size, "depths": [1], "widths": [4], "stem": "small", "stem_width": 4}))
    return path


def train(run_nas: CliRunner, spec: Path, data: Path, out: Path, *extra: str) -> CliResult:
    return run_nas("train", str(spec), "--data", str(data), "--epochs", "1", "--batch-size",
                   "4", "--no-progress", "--out", str(out), *extra)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_missing_and_empty_folders(run_nas: CliRunner, tmp_path: Path) -> None:
    refused(run_nas("data", str(tmp_path / "absent")), "absent: no such file or folder")
    (tmp_path / "empty").mkdir()
    refused(run_nas("data", str(tmp_path / "empty")), "empty: no class folders")
    (tmp_path / "notes.txt").write_text("x")
    refused(run_nas("data", str(tmp_path / "notes.txt")), "not a folder, .csv or .tsv file")
    refused(run_nas("data", "imagenet"), "unknown dataset 'imagenet'")


def test_one_class_only(run_nas: CliRunner, tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d", {"cat": 3})
    refused(run_nas("data", str(root)), "only one class ('cat')", "at least two")
    refused(train(run_nas, tiny_spec(tmp_path), root, tmp_path / "run"), "only one class")


def test_class_folder_without_images(run_nas: CliRunner, tmp_path: Path, cache: Path) -> None:
    root = small_folder(tmp_path / "d")
    (root / "bird").mkdir()
    (root / "bird" / "notes.txt").write_text("no pictures here")
    refused(run_nas("data", str(root)), "bird: no image files (class 'bird')")
    shutil.rmtree(root / "bird")
    (root / "bird").mkdir()
    for i in range(2):  # image names, but not images
        (root / "bird" / f"{i}.png").write_bytes(b"not a png at all")
    result = run_nas("data", str(root))
    assert "bird/0.png: not an image Pillow can read" in result.out
    refused(result, "class 'bird' has no readable training image")
    refused(train(run_nas, tiny_spec(tmp_path, classes=3), root, tmp_path / "run"),
            "class 'bird' has no readable training image")
    assert not (cache / "prepared").exists() or not list((cache / "prepared").iterdir())


def test_truncated_images_skipped_counted_named_then_refused_when_a_class_empties(
        run_nas: CliRunner, tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d", {"cat": 6, "dog": 6}, size=(64, 64), mode="RGB")
    truncate(root / "cat" / "cat-002.png")
    plain = report(run_nas, str(root))
    assert plain["unreadable"] == [] and plain["read"]["images_decoded"] == 0  # headers only
    prepared = report(run_nas, str(root), "--prepare")
    assert prepared["read"]["images_decoded"] == 12 and prepared["cache"]["exists"]
    assert len(prepared["unreadable"]) == 1
    name, reason = prepared["unreadable"][0]
    assert name == "cat/cat-002.png" and reason.startswith("truncated")
    result = train(run_nas, tiny_spec(tmp_path, channels=3), root, tmp_path / "run")
    assert result.code == 0, result
    card = json.loads((tmp_path / "run" / "data.json").read_text())
    assert card["unreadable"] == 1 and sum(card["counts"].values()) == 11
    text = run_nas("data", str(root)).out  # the cache names what decoding found
    assert "unreadable: 1 file(s), skipped" in text and "cat/cat-002.png: truncated" in text
    for picture in (root / "cat").iterdir():
        truncate(picture)
    refused(train(run_nas, tiny_spec(tmp_path, channels=3), root, tmp_path / "run2"),
            "class 'cat' has no readable training image", "failed to decode")


def test_non_image_files_ignored_and_counted(run_nas: CliRunner, tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d")
    (root / "cat" / "readme.md").write_text("x")
    (root / "cat" / "labels.json").write_text("{}")
    (root / "dog" / "dog.xcf").write_bytes(b"x")
    (root / "index.html").write_text("x")
    (root / ".DS_Store").write_bytes(b"x")
    found = report(run_nas, str(root))
    assert found["images"] == 12 and found["unreadable"] == []
    assert found["ignored"] == {"non-image files (.md)": 1, "non-image files (.json)": 1,
                                "non-image files (.xcf)": 1, "files outside class folders": 1,
                                "hidden files and folders": 1}
    assert "ignored: " in run_nas("data", str(root)).out


def bomb_png(path: Path, width: int, height: int) -> None:
    """A valid 1-bit PNG of width x height zeros, compressed in pieces (never held whole)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" * (1 + (width + 7) // 8)
    squeeze = zlib.compressobj(9)
    body = b"".join(squeeze.compress(row * 1000) for _ in range(height // 1000))
    body += squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))


def test_decompression_bomb_skipped_with_its_reason(run_nas: CliRunner, tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d")
    bomb_png(root / "cat" / "huge.png", 20000, 10000)  # 200 Mpixels, 26 KB on disk
    found = report(run_nas, str(root))
    assert found["images"] == 12
    [(name, reason)] = found["unreadable"]
    assert name == "cat/huge.png" and "decompression-bomb limit" in reason
    assert train(run_nas, tiny_spec(tmp_path), root, tmp_path / "run").code == 0


def test_table_mistakes(run_nas: CliRunner, tmp_path: Path) -> None:
    small_folder(tmp_path / "img")
    rows = [(f"img/{p.parent.name}/{p.name}", p.parent.name, "train")
            for p in sorted((tmp_path / "img").rglob("*.png"))]
    table = tmp_path / "t.csv"
    cases = [
        ([*rows, ("img/cat/gone.png", "cat", "train")], "t.csv line 14: img/cat/gone.png: no "
                                                         "such file"),
        ([*rows[:3], (rows[3][0], "", "train"), *rows[4:]], "t.csv line 5: empty label"),
        ([*rows, (f"./{rows[0][0]}", "cat", "val")], "t.csv lines 2 and 14: the same file"),
        ([*rows[:1], (rows[1][0], rows[1][1], "valid-ish"), *rows[2:]],
         "t.csv line 3: split 'valid-ish' is not train, val or test"),
    ]
    for content, message in cases:
        write_table(table, ["path", "label", "split"], content)
        refused(run_nas("data", str(table)), message)
    write_table(table, ["file", "class"], [r[:2] for r in rows])
    refused(run_nas("data", str(table)), "no path or label column (header: file, class)")
    write_table(table, ["path", "label"], [])
    refused(run_nas("data", str(table)), "no rows after the header")
    write_table(table, ["path", "label", "split"],
                [*rows, ("img/cat/gone.png", "cat", "train"), ("img/x.png", "cat", "train")])
    refused(run_nas("train", str(tiny_spec(tmp_path)), "--data", str(table)),
            "gone.png: no such file (and 1 more missing)")


def test_symbolic_link_loops(run_nas: CliRunner, tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d")
    (root / "cat" / "loop.png").symlink_to("loop.png")  # a file link to itself
    found = report(run_nas, str(root))
    assert found["unreadable"] == [["cat/loop.png", "symbolic link loop"]]
    (root / "dog" / "again").symlink_to("..")  # a folder link back up the tree
    refused(run_nas("data", str(root)), "dog/again: symbolic link loop", "remove the link")
    (root / "dog" / "again").unlink()
    (root / "dog" / "more").symlink_to(root / "cat", target_is_directory=True)  # not a loop
    assert report(run_nas, str(root))["counts"]["train"]["dog"] == 12


def drop_file_permissions() -> list[str] | None:
    """A command prefix under which file permissions apply: none needed for a normal user;
    for root, setpriv without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH; None when unavailable."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    probe = subprocess.run([setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--",
                            "true"], capture_output=True)
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"] \
        if probe.returncode == 0 else None


def test_file_without_read_permission_skipped(tmp_path: Path, cache: Path) -> None:
    prefix = drop_file_permissions()
    if prefix is None:
        pytest.skip("running as root without setpriv: root reads any file whatever its mode")
    root = small_folder(tmp_path / "d")
    (root / "dog" / "dog-003.png").chmod(0)
    env = {**os.environ, "NAS_DATA_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([*prefix, sys.executable, "-m", "nas", "data", str(root), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["unreadable"] == [["dog/dog-003.png", "permission denied"]]
    assert found["counts"]["train"] == {"cat": 6, "dog": 5}


def test_spaces_and_non_ascii_names_work(run_nas: CliRunner, tmp_path: Path) -> None:
    root = small_folder(tmp_path / "mes données", {"Été à Paris": 6, "chat noir 猫": 6},
                        ext=".PNG")
    (root / "Été à Paris" / "Été à Paris-000.PNG").rename(root / "Été à Paris" / "vue n°1 ü.PNG")
    found = report(run_nas, str(root))
    assert found["classes"] == ["chat noir 猫", "Été à Paris"]  # sorted as ImageFolder sorts
    assert found["images"] == 12
    table = tmp_path / "liste.csv"
    write_table(table, ["path", "label"], [(str(p.relative_to(tmp_path)), p.parent.name)
                                           for p in sorted(root.rglob("*.PNG"))])
    assert report(run_nas, str(table))["images"] == 12
    assert train(run_nas, tiny_spec(tmp_path), root, tmp_path / "run é").code == 0
    card = json.loads((tmp_path / "run é" / "data.json").read_text())
    assert card["classes"] == ["chat noir 猫", "Été à Paris"]
    picture = root / "Été à Paris" / "vue n°1 ü.PNG"
    predicted = json.loads(run_nas("predict", str(tmp_path / "run é"), str(picture),
                                   "--json").out)
    assert predicted["predictions"][0]["path"] == str(picture)
    assert {t["label"] for t in predicted["predictions"][0]["top"]} <= set(card["classes"])


def test_leakage_between_splits_reported(run_nas: CliRunner, tmp_path: Path) -> None:
    for split, width in (("train", 12), ("val", 14), ("test", 16)):  # sizes differ by split
        small_folder(tmp_path / "d" / split, size=(width, 10))
    cat = tmp_path / "d" / "train" / "cat" / "cat-001.png"
    shutil.copy(cat, tmp_path / "d" / "val" / "cat" / "copy.png")
    shutil.copy(cat, tmp_path / "d" / "test" / "dog" / "copy.png")
    found = report(run_nas, str(tmp_path / "d"))
    assert found["leaks"] == 1
    [group] = found["duplicates"]
    assert sorted(zip(group["splits"], group["files"])) == [
        ("test", "test/dog/copy.png"), ("train", "train/cat/cat-001.png"),
        ("val", "val/cat/copy.png")]
    # only files whose byte size is found in another split are read: not val's and test's own
    assert found["read"]["files_hashed"] < found["read"]["files_listed"] - 20
    text = run_nas("data", str(tmp_path / "d")).out
    assert "in more than one split (leakage)" in text and "val/cat/copy.png (val)" in text


def test_data_report_fields_and_cache_state(run_nas: CliRunner, tmp_path: Path) -> None:
    root = small_folder(tmp_path / "d", {"cat": 6, "dog": 6}, size=(40, 30), mode="RGB")
    first = report(run_nas, str(root))
    assert first["input_size"] == 30 and first["channels"] == 3 and not first["cache"]["exists"]
    assert first["sizes"]["width"] == [40, 40, 40] and first["modes"] == {"RGB": 12}
    assert first["read"]["headers_read"] == 12
    again = report(run_nas, str(root), "--input-size", "16", "--channels", "1")
    assert again["read"]["headers_read"] == 0  # the headers came from the cache
    assert (again["input_size"], again["channels"]) == (16, 1)
    assert train(run_nas, tiny_spec(tmp_path, size=16), root, tmp_path / "run",
                 "--channels", "1").code == 0
    cached = report(run_nas, str(root), "--input-size", "16", "--channels", "1")
    assert cached["cache"]["exists"] and cached["cache"]["bytes"] == 12 * 16 * 16
    text = run_nas("data", str(root), "--input-size", "16", "--channels", "1").out
    assert "prepared cache: yes" in text and "would use: input size 16 px" in text
    refused(run_nas("data", str(root), "--channels", "2"), "--channels must be 1 or 3")


def test_spec_that_does_not_fit_refused_before_decoding(run_nas: CliRunner, tmp_path: Path,
                                                        cache: Path) -> None:
    root = small_folder(tmp_path / "d", {"a": 4, "b": 4, "c": 4}, mode="RGB")
    refused(train(run_nas, tiny_spec(tmp_path, channels=1, classes=3), root, tmp_path / "r"),
            "the spec takes 1-channel input but d images have 3 channel(s)",
            "set in_channels: 3 in the spec, or pass --channels 1")
    refused(train(run_nas, tiny_spec(tmp_path, channels=3, classes=2), root, tmp_path / "r"),
            "the spec has 2 classes but d has 3; set num_classes: 3 in the spec")
    assert not (cache / "prepared").exists()
    refused(run_nas("train", "d2l_lenet_bn", "--data", str(root), "--dataset", "mnist"),
            "give --data or --dataset, not both")
    refused(train(run_nas, tiny_spec(tmp_path, channels=3, classes=3), root, tmp_path / "r",
                  "--augment", "sometimes"), "unknown augmentation 'sometimes'")


def test_data_on_a_builtin_name(run_nas: CliRunner) -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Fashion-MNIST: apt install dataset-fashion-mnist")
    result = run_nas("data", "fashion-mnist")
    assert result.code == 0 and "T-shirt/top" in result.out and "55,000" in result.out
