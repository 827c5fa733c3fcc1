"""Per-epoch checkpoints: everything a run needs to resume and give the same result.

A checkpoint file is a fixed-size header (a JSON line: format, length and SHA-256 of the
payload, the file's own name) and then torch.save's payload. It is written to a temporary file
in the same folder, flushed and fsynced, renamed over the old one and the folder fsynced, so a
crash leaves the old checkpoint or the new one, never a mix. A run resumes a file only when the
header, the length, the checksum, the name and the run's fingerprint all match; anything else (a
torn or truncated file, random bytes, another trial's or run's file) costs the run its earlier
epochs but never the run: one warning on the logger "nas.train", the file is removed and the run
trains from its first epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from nas.train.config import TrainError
from nas.train.results import EpochStats

if TYPE_CHECKING:
    from nas.train.loop import Run, RunState

log = logging.getLogger("nas.train")

CHECKPOINT_FORMAT = 2  # 1: nas 0.1.0, a bare torch.save file without a checksum (still read)
HEADER_SIZE = 512
MAGIC = b"nas-checkpoint "
ZIP_MAGIC = b"PK\x03\x04"  # how a bare torch.save file (format 1) starts


class CheckpointError(TrainError):
    """A checkpoint that cannot be written (a full disk, a read-only folder): every later
    epoch would fail the same way, so a search stops on it rather than failing trial after
    trial."""


class CheckpointUnusable(Exception):
    """A checkpoint file this run must not resume; the message says why."""


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


def rng_states(run: Run) -> dict[str, torch.Tensor]:
    """The RNG states a run draws from (the CPU's, and its CUDA device's)."""
    rng = {"torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
    return rng


def save_checkpoint(run: Run, path: Path) -> None:
    """Model, optimiser, schedule position, curve and RNG, written atomically and durably."""
    state = run.state
    rng = rng_states(run)
    write_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint(run),
        "state": {"epoch": state.epoch, "steps": state.steps, "images": state.images,
                  "train_seconds": state.train_seconds, "wall_time_s": run.elapsed(),
                  "peak_memory_bytes": state.peak_memory_bytes},
        "curve": [asdict(s) for s in state.curve],
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": {"schedule": run.config.schedule, "step": state.steps,
                      "total": run.total_steps},
        "rng": rng,
    })


class HashingWriter:
    """A write-only stream into `file` that counts and hashes what passes (torch.save's
    buffer writer needs only write and flush)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.sha256, self.size = file, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += memoryview(data).nbytes
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def write_checkpoint(path: Path, blob: dict[str, Any]) -> None:
    """Header and payload into a temporary file beside `path`, fsynced, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_writers(path)
        with tmp.open("wb") as f:
            f.write(b"\0" * HEADER_SIZE)  # the header, written last, covers the payload
            writer = HashingWriter(f)
            torch.save(blob, writer)
            f.seek(0)
            f.write(header(path.name, writer.size, writer.sha256.hexdigest()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    except (OSError, RuntimeError) as e:  # torch reports a failed write as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
        raise CheckpointError(f"{path}: cannot write checkpoint: {reason}") from None


def header(name: str, size: int, sha256: str) -> bytes:
    """The fixed-size first block: what the payload must be, padded with spaces."""
    fields = {"format": CHECKPOINT_FORMAT, "size": size, "sha256": sha256, "file": name}
    line = MAGIC + json.dumps(fields, ensure_ascii=False).encode()
    if len(line) >= HEADER_SIZE:  # a file name of more than ~350 bytes
        raise OSError(0, f"file name too long for a checkpoint header: {name!r}")
    return line.ljust(HEADER_SIZE - 1) + b"\n"


def sync_folder(folder: Path) -> None:
    """fsync a folder, so the rename survives a power loss (a no-op where folders cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_dead_writers(path: Path) -> None:
    """Removes temporary files of `path` left by killed processes of this host (a live
    writer's, such as a worker still running a trial declared stale, are left alone)."""
    host = socket.gethostname()
    for tmp in path.parent.glob(f".{path.name}.{host}.*.tmp"):
        pid = tmp.name[len(f".{path.name}.{host}."):-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def alive(pid: int) -> bool:
    """Whether a process of this host has that id."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The blob of a checkpoint file, verified; CheckpointUnusable says what is wrong."""
    try:
        with path.open("rb") as f:
            head = f.read(HEADER_SIZE)
            if head.startswith(ZIP_MAGIC):
                f.seek(0)
                return load_payload(f.read(), 1, "a nas 0.1.0 checkpoint (no checksum)")
            fields = parse_header(head)
            payload = f.read(fields["size"] + 1)
    except OSError as e:
        raise CheckpointUnusable(f"cannot read it: {e.strerror or e}") from None
    if len(payload) != fields["size"]:
        raise CheckpointUnusable(f"truncated: {len(payload):,} of {fields['size']:,} bytes"
                                 if len(payload) < fields["size"] else
                                 "longer than written: bytes were appended")
    if hashlib.sha256(payload).hexdigest() != fields["sha256"]:
        raise CheckpointUnusable("checksum mismatch: the file changed after it was written "
                                 "(a torn write or a damaged disk)")
    if fields["file"] != path.name:
        raise CheckpointUnusable(f"it is another file ({fields['file']}) copied over this one")
    return load_payload(payload, CHECKPOINT_FORMAT, "its payload")


def parse_header(head: bytes) -> dict[str, Any]:
    """The header's fields, checked for shape."""
    if not head.startswith(MAGIC[:len(head)]) or (len(head) >= len(MAGIC)
                                                   and not head.startswith(MAGIC)):
        raise CheckpointUnusable("not a nas checkpoint (no nas header)")
    if len(head) < HEADER_SIZE:
        raise CheckpointUnusable(f"truncated: {len(head):,} bytes, shorter than its header")
    try:
        fields = json.loads(head[len(MAGIC):].decode())
        ok = (fields["format"] == CHECKPOINT_FORMAT and isinstance(fields["size"], int)
              and fields["size"] >= 0
              and isinstance(fields["sha256"], str) and isinstance(fields["file"], str))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise CheckpointUnusable(f"damaged header, or not format {CHECKPOINT_FORMAT}")
    return fields


def load_payload(payload: bytes, fmt: int, what: str) -> dict[str, Any]:
    """torch.load of verified bytes (plain tensors, dicts, lists and numbers only) that must
    hold a blob of format `fmt`."""
    try:
        blob = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  torch's own text would advise an unsafe load
        raise CheckpointUnusable(f"{what} cannot be read by torch {torch.__version__} "
                                 f"({type(e).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise CheckpointUnusable(f"{what} is not a nas checkpoint of format {fmt}")
    return blob


def load_checkpoint(run: Run, path: Path) -> bool:
    """Restores a run saved by save_checkpoint; False, with one warning and the file removed,
    when it is unusable (the run then starts from its first epoch, as without one)."""
    rng = rng_states(run)
    try:
        blob = read_checkpoint(path)
        check_belongs(run, blob)
        state = saved_state(blob)
        set_rng(run, blob.get("rng"))
        load_optimizer(run, blob.get("optimizer"))  # it checks the groups before it loads
        run.model.load_state_dict(blob["model"])  # check_belongs compared every shape
    except CheckpointUnusable as e:
        set_rng(run, rng)  # a fresh start draws what it would have without the file
        discard(path, str(e))
        return False
    run.state = state
    run.restart_clock()
    return True


def check_belongs(run: Run, blob: dict[str, Any]) -> None:
    """Refuses a checkpoint of another run, or whose tensors do not fit this model."""
    expected = fingerprint(run)
    saved = blob.get("fingerprint")
    if not isinstance(saved, dict) or saved != expected:
        differ = [k for k in expected if not isinstance(saved, dict) or saved.get(k) != expected[k]]
        raise CheckpointUnusable(f"written by another run (differs in {', '.join(differ)})")
    model, own = blob.get("model"), run.model.state_dict()
    if not isinstance(model, dict) or list(model) != list(own) or any(
            getattr(model[k], "shape", None) != own[k].shape for k in own):
        raise CheckpointUnusable("its tensors do not fit this model")


def saved_state(blob: dict[str, Any]) -> RunState:
    """The progress a checkpoint records."""
    from nas.train.loop import RunState

    try:
        saved = blob["state"]
        return RunState(
            epoch=saved["epoch"], steps=saved["steps"],
            curve=[EpochStats(**s) for s in blob["curve"]],
            train_seconds=saved["train_seconds"], images=saved["images"],
            wall_time_s=saved["wall_time_s"], peak_memory_bytes=saved["peak_memory_bytes"])
    except (KeyError, TypeError) as e:
        raise CheckpointUnusable(f"incomplete: {e}") from None


def set_rng(run: Run, rng: Any) -> None:
    """The RNG states at the end of the saved epoch."""
    try:
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and run.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], run.device)
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointUnusable(f"its RNG state cannot be restored ({type(e).__name__})") from None


def load_optimizer(run: Run, state: Any) -> None:
    """The optimiser's state (momentum buffers, step counts)."""
    try:
        run.optimizer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointUnusable(f"its optimiser state does not fit ({type(e).__name__})") from None


def discard(path: Path, reason: str) -> None:
    """One warning line, and the file removed (else the next good write replaces it)."""
    log.warning("%s: checkpoint not resumed, %s; training from the first epoch", path, reason)
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
