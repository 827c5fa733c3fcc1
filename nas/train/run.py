"""`nas train`'s library half: a spec trained on real data into a run folder (result.json,
model.safetensors, spec.yaml, data.json: the data card with the label map and normalisation;
checkpoint.pt while it runs, so an interrupted run resumes)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from nas.errors import UserError
from nas.hashing import content_hash
from nas.train.config import Budget, TrainConfig
from nas.train.loop import FitProgress

if TYPE_CHECKING:
    from nas.data import Progress


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run."""

    path: Path

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def spec(self) -> Path:
        return self.path / "spec.yaml"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    @property
    def data_card(self) -> Path:
        return self.path / "data.json"

    @classmethod
    @contextmanager
    def claim(cls, path: Path, overwrite: bool) -> Iterator[RunFolder]:
        """The folder of a run, held by this process until the block ends.

        Refused in one line when it holds a result (unless `overwrite`, which clears the run
        files) or another process holds it. A folder this run created is removed when the run
        ends without leaving anything in it (interrupted or failed before its first
        checkpoint); a folder that existed before is never removed.
        """
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: exists and is not a directory")
        try:
            path.mkdir(parents=True)
            created = True
        except FileExistsError:
            created = False
        folder = cls(path)
        try:
            fd = hold_lock(folder.lock, path)
        except BaseException:
            if created:
                remove_if_empty(path)
            raise
        try:
            folder.clear_for_run(overwrite)
            yield folder
        finally:
            folder.lock.unlink(missing_ok=True)  # before the lock is let go: see hold_lock
            os.close(fd)
            if created:
                remove_if_empty(path)

    def clear_for_run(self, overwrite: bool) -> None:
        """Refuses a folder holding a result unless `overwrite`, which removes the run files."""
        if self.result.exists() and not overwrite:
            raise UserError(f"{self.path}: already holds a result; pass --overwrite or --out DIR")
        if overwrite:
            for file in (self.result, self.weights, self.spec, self.checkpoint,
                         self.data_card):
                file.unlink(missing_ok=True)


def hold_lock(lock: Path, folder: Path) -> int:
    """An exclusive flock on `lock` (created, holding this pid); UserError naming `folder` when
    another process holds it. The holder unlinks the file before closing it, so a lock taken on
    a file no longer at that path is let go and taken again on the new one."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"{folder}: another nas train (pid {holder}) is writing this "
                            f"folder; wait for it to end, or pass another --out") from None
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def remove_if_empty(path: Path) -> None:
    """Removes a folder only when nothing is in it."""
    try:
        path.rmdir()
    except OSError:  # not empty (a checkpoint, the user's files), or already gone
        pass


def default_run_path(name: str, arch: Any, budget: Budget, config: TrainConfig,
                     source: DataSource, weights: Path | None = None) -> Path:
    """studies/runs/<spec>-<hash>-e<epochs>[-sub<subset>][-steps<n>]-s<seed>-<settings>,
    relative to the working directory (as the search's studies/ is): the spec, the budget and
    the seed in words, and a hash of every other setting that changes the result (the time
    limit left out, as the checkpoint leaves it: a run may resume with more time)."""
    budget_words = f"-e{budget.epochs}"
    if budget.subset < 1:
        budget_words += f"-sub{budget.subset:g}"
    if budget.max_steps is not None:
        budget_words += f"-steps{budget.max_steps}"
    settings = {
        "budget": {k: v for k, v in asdict(budget).items() if k != "time_limit_s"},
        "config": {k: v for k, v in asdict(config).items()
                   if k not in ("compile", "threads", "eval_batch_size")},
        "data": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(source).items()
                 if k != "data_dir"},
        "weights": None if weights is None else str(weights),
    }
    return Path("studies") / "runs" / (f"{name}-{arch.content_hash()[:8]}{budget_words}"
                                       f"-s{config.seed}-{content_hash(settings, 6)}")


@dataclass(frozen=True)
class DataSource:
    """Which data (a built-in name, or a folder or CSV/TSV path), where a built-in's files
    are, the seed of its validation split, and how user images are prepared."""

    dataset: str = "fashion-mnist"
    data_dir: Path | None = None
    split_seed: int = 0
    input_size: int | None = None  # user data: the prepared size (None: the spec's)
    channels: int | None = None  # user data: 1 or 3 (None: 3 when any image has colour)


class RunResult(BaseModel):
    """result.json: what a run reached, what the model costs, and how it was trained."""

    model_config = ConfigDict(extra="forbid")

    spec: str
    family: str
    hash: str
    dataset: str
    val_accuracy: float | None
    val_balanced_accuracy: float | None
    test_accuracy: float | None
    epochs_run: int
    steps: int
    wall_time_s: float
    images_per_second: float
    stopped: str | None
    seed: int
    device: str
    environment: dict[str, Any]
    params: int
    macs: int
    activations: int
    peak_memory_bytes: int  # training: weights, gradients, optimiser state, activations
    memory_source: str  # cuda_max_allocated, or cpu_estimate
    forward_peak_memory_bytes: int  # one image, no grad (nas summary's figure)
    latency_ms: float
    latency_batch_size: int
    config: dict[str, Any]
    resumed_from_epoch: int
    curve: list[dict[str, Any]]
    budget: dict[str, Any]
    weights: str
    created: str


def train_run(arch: Any, name: str, folder: RunFolder, source: DataSource, device_name: str,
              budget: Budget, config: TrainConfig, progress: FitProgress | None = None,
              weights: Path | None = None, data_progress: Progress | None = None) -> RunResult:
    """Loads data, builds (optionally loading `weights`), trains, measures; writes the folder."""
    from nas.cost import measure
    from nas.data import describe
    from nas.device import resolve_device
    from nas.io import save_spec
    from nas.train.evaluate import latency_ms
    from nas.train.loop import fit, seeded_build
    from nas.train.policy import model_input_size

    device = resolve_device(device_name)
    data = load_run_data(arch, source, device, data_progress)
    model = seeded_build(arch, config.seed)
    if weights is not None:
        from nas.builder.weights import load_weights

        load_weights(model, weights)
    model_input_size(model, data)  # channel/class mismatches fail before any work
    cost = measure(model, arch.in_channels, arch.input_size)
    fitted = fit(model, data, budget, config, evaluate_test=True, progress=progress,
                 checkpoint_path=folder.checkpoint)
    latency = latency_ms(model, (arch.in_channels, arch.input_size, arch.input_size), device)
    fields = fitted.as_dict()
    result = RunResult(
        spec=name, family=arch.family, hash=arch.content_hash(), dataset=data.name,
        **{k: v for k, v in fields.items() if k != "peak_memory_bytes"},
        params=cost.params, macs=cost.macs, activations=cost.activations,
        peak_memory_bytes=fitted.peak_memory_bytes,
        forward_peak_memory_bytes=cost.peak_memory_bytes, latency_ms=latency,
        latency_batch_size=1, budget=asdict(budget), weights=folder.weights.name,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    save_weights(model, folder.weights)
    save_spec(arch, folder.spec, overwrite=True)
    write_json(folder.data_card, describe(data))
    folder.result.write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    folder.checkpoint.unlink(missing_ok=True)
    return result


def load_run_data(arch: Any, source: DataSource, device: Any,
                  progress: Progress | None = None) -> Any:
    """The run's DataSplits; user data prepared at the spec's size, and the spec checked
    against it (channels, classes) from the headers, before any image is decoded."""
    from nas.data import is_builtin, load_data, peek
    from nas.data.user import check_options
    from nas.train.policy import check_spec_fits

    check_options(source.input_size, source.channels)
    if is_builtin(source.dataset):
        return load_data(source.dataset, source.data_dir, device, seed=source.split_seed,
                         channels=source.channels)
    summary = peek(source.dataset, progress)
    check_spec_fits(arch, summary.name, source.channels or summary.channels,
                    summary.num_classes, user_data=True)
    return load_data(source.dataset, None, device, seed=source.split_seed,
                     input_size=source.input_size or arch.input_size,
                     channels=source.channels, progress=progress)


def write_json(path: Path, blob: dict[str, Any]) -> None:
    """Indented JSON, written whole (a temporary file renamed into place)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(blob, indent=2) + "\n")
    tmp.replace(path)


def save_weights(model: Any, path: Path) -> None:
    """The state_dict as safetensors (contiguous CPU copies; channels_last undone)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
