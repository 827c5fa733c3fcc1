"""`nas train`'s library half: a spec trained on real data into a run folder (result.json,
model.safetensors, spec.yaml, data.json: the data card with the label map and normalisation;
checkpoint.pt while it runs, so an interrupted run resumes)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from nas.errors import UserError
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
    def data_card(self) -> Path:
        return self.path / "data.json"

    @classmethod
    def prepare(cls, path: Path, overwrite: bool) -> RunFolder:
        """Refuses a folder holding a result unless `overwrite` (which clears the run files)."""
        folder = cls(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: exists and is not a directory")
        if folder.result.exists() and not overwrite:
            raise UserError(f"{path}: already holds a result; pass --overwrite or --out DIR")
        if overwrite:
            for file in (folder.result, folder.weights, folder.spec, folder.checkpoint,
                         folder.data_card):
                file.unlink(missing_ok=True)
        path.mkdir(parents=True, exist_ok=True)
        return folder


def default_run_path(name: str, arch: Any, seed: int) -> Path:
    """studies/runs/<spec-name>-<hash>-s<seed>, relative to the working directory (as the
    search's studies/ is)."""
    return Path("studies") / "runs" / f"{name}-{arch.content_hash()[:8]}-s{seed}"


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
