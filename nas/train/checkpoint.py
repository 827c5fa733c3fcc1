"""Per-epoch checkpoints: everything a run needs to resume and give the same result."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas.train.config import TrainError
from nas.train.results import EpochStats

if TYPE_CHECKING:
    from nas.train.loop import Run

CHECKPOINT_FORMAT = 1


class CheckpointError(TrainError):
    """A checkpoint that cannot be written (a full disk, a read-only folder): every later
    epoch would fail the same way, so a search stops on it rather than failing trial after
    trial."""


def fingerprint(run: Run) -> dict[str, Any]:
    """What must match for a checkpoint to resume this run (the time limit may change)."""
    spec = getattr(run.model, "spec", None)
    skip = ("compile", "threads", "eval_batch_size")
    found = {
        "model": spec.content_hash() if spec is not None else type(run.model).__name__,
        "dataset": run.data.name, "val_fraction": run.data.val_fraction,
        "data_seed": run.data.seed, "train_images": int(run.data.train_x.shape[0]),
        "budget": {k: v for k, v in asdict(run.budget).items() if k != "time_limit_s"},
        "config": {k: v for k, v in asdict(run.config).items() if k not in skip},
    }
    if run.data.is_user_data:  # user files can change under a name: resume only the same ones
        found["data_fingerprint"] = run.data.fingerprint
    return found


def save_checkpoint(run: Run, path: Path) -> None:
    """Model, optimiser, schedule position, curve and RNG, written atomically."""
    state = run.state
    rng = {"torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
    blob = {
        "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint(run),
        "state": {"epoch": state.epoch, "steps": state.steps, "images": state.images,
                  "train_seconds": state.train_seconds, "wall_time_s": run.elapsed(),
                  "peak_memory_bytes": state.peak_memory_bytes},
        "curve": [asdict(s) for s in state.curve],
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": {"schedule": run.config.schedule, "step": state.steps,
                      "total": run.total_steps},
        "rng": rng,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(blob, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a failed write as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
        raise CheckpointError(f"{path}: cannot write checkpoint: {reason}") from None


def load_checkpoint(run: Run, path: Path) -> None:
    """Restores a run saved by save_checkpoint; refuses one written for another run."""
    from nas.train.loop import RunState

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  unreadable for any reason: say so in one line
        raise TrainError(f"{path}: cannot read checkpoint: {str(e).splitlines()[0]}") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a nas checkpoint (format {CHECKPOINT_FORMAT})")
    expected = fingerprint(run)
    if blob["fingerprint"] != expected:
        differ = [k for k in expected if blob["fingerprint"].get(k) != expected[k]]
        raise TrainError(f"{path}: checkpoint of another run (differs in {', '.join(differ)}); "
                         "remove it or train into another directory")
    run.model.load_state_dict(blob["model"])
    run.optimizer.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["rng"]["torch"])
    if "cuda" in blob["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state(blob["rng"]["cuda"], run.device)
    saved = blob["state"]
    run.state = RunState(
        epoch=saved["epoch"], steps=saved["steps"],
        curve=[EpochStats(**s) for s in blob["curve"]], train_seconds=saved["train_seconds"],
        images=saved["images"], wall_time_s=saved["wall_time_s"],
        peak_memory_bytes=saved["peak_memory_bytes"],
    )
    run.restart_clock()
