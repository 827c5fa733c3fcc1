"""nas.train.checkpoint: atomic, durable, checksummed checkpoints, and a damaged one that costs
the run its earlier epochs but never the run (one warning, a fresh start, the file replaced).

Real training on a small slice of Fashion-MNIST (600 validation images keep each fit short)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas.data import load_data
from nas.train import Budget, FitResult, TrainConfig, fit, seeded_build
from nas.train import checkpoint as checkpoint_module
from nas.train.checkpoint import (
    HEADER_SIZE,
    CheckpointError,
    CheckpointUnusable,
    read_checkpoint,
)

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST: "
                                "apt install dataset-fashion-mnist")
LENET = "d2l_lenet_bn"
OTHER = {"family": "resnet", "in_channels": 1, "num_classes": 10, "input_size": 28,
         "depths": [1], "widths": [8], "stem": "small", "stem_width": 8}
BUDGET = Budget(epochs=2, subset=0.01, batch_size=64)


@pytest.fixture(scope="module")
def data():
    return load_data("fashion-mnist", val_fraction=0.01)


def run(data, path: Path | None, spec: object = LENET, stop_after_one: bool = False,
        budget: Budget = BUDGET) -> FitResult:
    """A fit of `spec` (seed 0) checkpointing to `path`; stopped after epoch 1 if asked."""
    return fit(seeded_build(spec, 0), data, budget, TrainConfig(seed=0), checkpoint_path=path,
               on_epoch=(lambda s: True) if stop_after_one else None)


@pytest.fixture(scope="module")
def made(data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """An uninterrupted run, the checkpoint after its first epoch, and one of another model."""
    folder = tmp_path_factory.mktemp("made")
    run(data, folder / "lenet.pt", stop_after_one=True)
    run(data, folder / "other.pt", spec=OTHER, stop_after_one=True)
    return {"whole": run(data, None), "lenet": (folder / "lenet.pt").read_bytes(),
            "other": (folder / "other.pt").read_bytes()}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "nas.train" and r.levelno == logging.WARNING]


def curve(result: FitResult) -> list[float]:
    return [s.val_accuracy for s in result.curve]


def test_a_good_checkpoint_resumes_to_the_uninterrupted_result(
        data, made, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "lenet.pt"  # the name it was written as
    path.write_bytes(made["lenet"])
    resumed = run(data, path)
    assert resumed.resumed_from_epoch == 1 and curve(resumed) == curve(made["whole"])
    assert warnings_of(caplog) == []
    blob = read_checkpoint(path)  # the final epoch's, verified
    assert blob["state"]["epoch"] == 2 and blob["format"] == 2


def flip_middle(good: bytes, other: bytes) -> bytes:
    middle = HEADER_SIZE + (len(good) - HEADER_SIZE) // 2
    return good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1:]


DAMAGE = {  # what a torn write, a full disk, a bad copy or a user leaves; and what nas says
    "truncated": (lambda good, other: good[:len(good) // 3], "truncated"),
    "cut_in_header": (lambda good, other: good[:100], "truncated"),
    "empty": (lambda good, other: b"", "truncated"),
    "random_bytes": (lambda good, other: os.urandom(len(good)), "not a nas checkpoint"),
    "zeros": (lambda good, other: b"\0" * 4096, "not a nas checkpoint"),
    "flipped_byte": (flip_middle, "checksum mismatch"),
    "appended": (lambda good, other: good + b"more", "longer than written"),
    "damaged_header": (lambda good, other: good[:20] + b"#" + good[21:], "damaged header"),
    "other_trial": (lambda good, other: other, "another file"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_checkpoint_is_one_warning_and_a_fresh_start(
        kind: str, data, made, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "lenet.pt"
    damage, says = DAMAGE[kind]
    path.write_bytes(damage(made["lenet"], made["other"]))
    result = run(data, path)
    assert result.resumed_from_epoch == 0 and result.epochs_run == 2
    assert curve(result) == curve(made["whole"]), "as if there had been no file"
    [line] = warnings_of(caplog)
    assert line.startswith(f"{path}: checkpoint not resumed, ") and says in line
    assert line.endswith("training from the first epoch") and "\n" not in line
    assert "weights_only" not in line
    assert read_checkpoint(path)["state"]["epoch"] == 2, "replaced by the next good write"


def test_another_models_checkpoint_under_this_name_is_refused_by_its_fingerprint(
        data, made, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "other.pt"  # the name it was written as: only the fingerprint differs
    path.write_bytes(made["other"])
    result = run(data, path)
    assert result.resumed_from_epoch == 0 and curve(result) == curve(made["whole"])
    [line] = warnings_of(caplog)
    assert "written by another run (differs in model)" in line


def test_another_budgets_checkpoint_is_not_resumed(
        data, made, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "lenet.pt"
    path.write_bytes(made["lenet"])
    longer = run(data, path, budget=Budget(epochs=3, subset=0.01, batch_size=64))
    assert longer.resumed_from_epoch == 0 and longer.epochs_run == 3
    [line] = warnings_of(caplog)
    assert "differs in budget" in line


def test_a_nas_0_1_0_checkpoint_still_resumes(data, made, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Format 1 was the bare torch.save blob: a study killed under nas 0.1.0 resumes."""
    blob = blob_of(made["lenet"], tmp_path / "source")
    path = tmp_path / "legacy" / "lenet.pt"
    path.parent.mkdir()
    torch.save({**blob, "format": 1}, path)
    resumed = run(data, path)
    assert resumed.resumed_from_epoch == 1 and curve(resumed) == curve(made["whole"])
    assert warnings_of(caplog) == []
    torch.save({**blob, "format": 1}, path)
    path.write_bytes(path.read_bytes()[:-200])  # a torn legacy file: no checksum, torch says
    assert run(data, path).resumed_from_epoch == 0
    [line] = warnings_of(caplog)
    assert "nas 0.1.0 checkpoint" in line and "weights_only" not in line


def blob_of(content: bytes, folder: Path) -> dict:
    """The blob of checkpoint bytes written as lenet.pt (read back from `folder`)."""
    folder.mkdir(exist_ok=True)
    (folder / "lenet.pt").write_bytes(content)
    return read_checkpoint(folder / "lenet.pt")


def test_a_failed_write_keeps_the_last_good_checkpoint_and_no_temporary_file(
        made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lenet.pt"
    path.write_bytes(made["lenet"])
    blob = read_checkpoint(path)

    def torn_save(obj: object, f) -> None:  # noqa: ANN001  the disk fills mid-write
        f.write(b"x" * 1000)
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    with pytest.raises(CheckpointError, match="cannot write checkpoint: PytorchStreamWriter"):
        checkpoint_module.write_checkpoint(path, blob)
    assert path.read_bytes() == made["lenet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.pt"]


def test_a_write_syncs_the_file_before_the_rename_and_then_the_folder(
        made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lenet.pt"
    blob = blob_of(made["lenet"], tmp_path / "source")
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "fsync", fsync)
    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    checkpoint_module.write_checkpoint(path, blob)
    assert events == ["fsync file", "rename", "fsync folder"]
    assert read_checkpoint(path)["state"] == blob["state"]


def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_kept(
        made, tmp_path: Path) -> None:
    path = tmp_path / "lenet.pt"
    blob = blob_of(made["lenet"], tmp_path / "source")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    left = tmp_path / f".lenet.pt.{host}.{dead}.tmp"
    live = tmp_path / f".lenet.pt.{host}.{os.getppid()}.tmp"
    for tmp in (left, live):
        tmp.write_bytes(b"half a checkpoint")
    checkpoint_module.write_checkpoint(path, blob)
    assert not left.exists() and live.exists()


def test_read_checkpoint_names_what_is_wrong(made, tmp_path: Path) -> None:
    path = tmp_path / "lenet.pt"
    path.write_bytes(made["lenet"][:-1])
    with pytest.raises(CheckpointUnusable, match="truncated: .* of .* bytes"):
        read_checkpoint(path)
    path.write_bytes(made["lenet"])
    shutil.copy(path, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointUnusable, match=r"another file \(lenet.pt\)"):
        read_checkpoint(tmp_path / "renamed.pt")


def test_nas_train_starts_over_from_a_damaged_checkpoint(data, made, tmp_path: Path) -> None:
    """`nas train` into a folder whose checkpoint.pt is random bytes: one line, a fresh run."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(os.urandom(5000))
    done = subprocess.run(
        [sys.executable, "-m", "nas", "train", LENET, "--epochs", "1", "--subset", "0.01",
         "--batch-size", "64", "--out", str(out), "--no-progress", "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines == [f"{out / 'checkpoint.pt'}: checkpoint not resumed, not a nas checkpoint "
                     "(no nas header); training from the first epoch"], done.stderr
    assert '"resumed_from_epoch": 0' in done.stdout
    assert not (out / "checkpoint.pt").exists()
