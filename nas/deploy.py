"""A trained run folder taken out: predictions on new images, and the model exported to ONNX or
TorchScript. Images are read exactly as training prepared them (the run's data.json: size,
channels, resize and crop, normalisation); the exported model takes the normalised batch."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import BatchMaker, builtin_card, decode, is_builtin, is_image_name
from nas.data.images import ImageReadError
from nas.errors import UserError

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
ONNX_OPSET = 18


@dataclass
class TrainedModel:
    """A run folder's model in eval mode on the CPU, its spec, and its data card."""

    path: Path
    model: nn.Module
    spec: Any
    card: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"]) or [str(i) for i in range(self.spec.num_classes)]

    def maker(self) -> BatchMaker:
        """Normalises prepared images and resizes them to the model's input, as in training."""
        return BatchMaker.for_stats(self.card["mean"], self.card["std"], torch.device("cpu"),
                                    self.spec.input_size)


@dataclass
class Prediction:
    """One image's most likely labels, best first."""

    path: str
    top: list[tuple[str, int, float]]  # (label, class index, probability)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "top": [{"label": label, "index": index,
                                            "probability": p} for label, index, p in self.top]}


def load_run(run_dir: str | Path) -> TrainedModel:
    """The model, spec and data card of a `nas train` run folder; one line when unusable."""
    from nas.builder import build
    from nas.io import load_spec

    path = Path(run_dir)
    for name in ("spec.yaml", "model.safetensors"):
        if not (path / name).is_file():
            raise UserError(f"{path}: no {name}; expected a run folder written by nas train")
    spec = load_spec(path / "spec.yaml")
    card = read_card(path)
    if card["channels"] != spec.in_channels or card["num_classes"] != spec.num_classes:
        raise UserError(f"{path}: data.json ({card['channels']} channel(s), "
                        f"{card['num_classes']} classes) does not match spec.yaml")
    model = build(spec, weights=path / "model.safetensors").eval()
    return TrainedModel(path, model, spec, card)


def read_card(path: Path) -> dict[str, Any]:
    """data.json; for runs trained before it existed, a built-in dataset's card from
    result.json's dataset name."""
    card_file = path / "data.json"
    if card_file.is_file():
        try:
            return json.loads(card_file.read_text())
        except ValueError as e:
            raise UserError(f"{card_file}: not valid JSON ({e})") from None
    result_file = path / "result.json"
    dataset = json.loads(result_file.read_text()).get("dataset") if result_file.is_file() \
        else None
    if isinstance(dataset, str) and is_builtin(dataset):
        return builtin_card(dataset)
    raise UserError(f"{path}: no data.json (the label map and normalisation); train the run "
                    f"again with this version of nas")


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The files named, and the image files below each folder named (sorted)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
            if not found:
                raise UserError(f"{path}: no image files in this folder")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return files


def preprocess(trained: TrainedModel, paths: Sequence[Path],
               ) -> tuple[torch.Tensor, list[Path], list[tuple[Path, str]]]:
    """(normalised batch [N, C, S, S], the paths read, (path, reason) of the unreadable)."""
    size, channels = trained.card["input_size"], trained.card["channels"]
    pixels, kept, skipped = [], [], []
    for path in paths:
        try:
            pixels.append(decode(path, size, channels))
            kept.append(path)
        except ImageReadError as e:
            skipped.append((path, e.reason))
    if not pixels:
        return torch.empty(0, channels, trained.spec.input_size, trained.spec.input_size), [], \
            skipped
    return trained.maker()(torch.from_numpy(np.stack(pixels))), kept, skipped


@torch.inference_mode()
def predict(trained: TrainedModel, paths: Sequence[Path], top: int = 5, batch_size: int = 64,
            ) -> tuple[list[Prediction], list[tuple[Path, str]]]:
    """Each readable image's `top` labels with their probabilities; and the unreadable ones."""
    if top < 1:
        raise UserError(f"--top must be at least 1, not {top}")
    classes, k = trained.classes, min(top, len(trained.classes))
    found: list[Prediction] = []
    skipped: list[tuple[Path, str]] = []
    for start in range(0, len(paths), batch_size):
        x, kept, missed = preprocess(trained, paths[start:start + batch_size])
        skipped += missed
        if not kept:
            continue
        probs = torch.softmax(trained.model(x).float(), dim=1)
        values, indices = probs.topk(k, dim=1)
        for path, v, i in zip(kept, values.tolist(), indices.tolist()):
            found.append(Prediction(str(path), [(classes[c], c, p) for c, p in zip(i, v)]))
    return found, skipped


def default_export_path(run_dir: Path, fmt: str) -> Path:
    return run_dir / f"model{FORMATS[fmt]}"


def export_model(trained: TrainedModel, fmt: str, out: Path | None = None) -> Path:
    """Writes the model as ONNX or TorchScript (input: the normalised float batch [N, C, S, S],
    any N; output: logits [N, classes]); refuses to overwrite a file."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    out = out or default_export_path(trained.path, fmt)
    if out.exists():
        raise UserError(f"{out}: already exists; remove it or pass another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    example = torch.zeros(2, trained.spec.in_channels, trained.spec.input_size,
                          trained.spec.input_size)
    try:
        if fmt == "onnx":
            write_onnx(trained, example, tmp)
        else:
            write_torchscript(trained, example, tmp)
        os.link(tmp, out)  # fails rather than replace a file made meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return out


def metadata(trained: TrainedModel) -> dict[str, str]:
    """What a user outside PyTorch needs to feed the model: labels and preprocessing."""
    card = trained.card
    return {"nas.classes": json.dumps(trained.classes), "nas.mean": json.dumps(card["mean"]),
            "nas.std": json.dumps(card["std"]), "nas.channels": str(card["channels"]),
            "nas.data_size": str(card["input_size"]), "nas.resize": card.get("resize", ""),
            "nas.input_size": str(trained.spec.input_size),
            "nas.spec_hash": trained.spec.content_hash()}


def write_onnx(trained: TrainedModel, example: torch.Tensor, path: Path) -> None:
    """torch.onnx's exporter (torch.export based), a dynamic batch axis, metadata props."""
    try:
        import onnx
        import onnxscript  # noqa: F401  the exporter needs it; say so before it fails deep
    except ImportError:
        raise UserError("ONNX export needs the onnx and onnxscript packages: pip install "
                        "'nas[export]' (or pip install onnx onnxscript)") from None
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(trained.model, (example,), str(path), dynamo=True, verbose=False,
                          input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: batch},), external_data=False,
                          opset_version=ONNX_OPSET)
    proto = onnx.load(str(path))
    for key, value in metadata(trained).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def write_torchscript(trained: TrainedModel, example: torch.Tensor, path: Path) -> None:
    """A traced TorchScript module with data.json as an extra file (torch.jit is deprecated in
    recent PyTorch but still the format C++ libtorch loads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(trained.model, example)
        torch.jit.save(traced, str(path),
                       _extra_files={"data.json": json.dumps(trained.card),
                                     "metadata.json": json.dumps(metadata(trained))})


__all__ = ["FORMATS", "Prediction", "TrainedModel", "export_model", "image_files", "load_run",
           "predict", "preprocess"]
