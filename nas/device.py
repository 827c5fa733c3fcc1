"""Devices, CPU threads and the environment a result was measured in (train, search, bench)."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.errors import UserError


class DeviceError(UserError):
    """A device that is unknown or not present here."""


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N'; asking for CUDA without one is a DeviceError."""
    if name is None or str(name) == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; one of auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for, but torch sees no CUDA device here "
                          f"(torch {torch.__version__}); use --device cpu or auto")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} asked for, but torch sees "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {name!r} is not supported; one of auto, cpu, cuda")
    return device


def auto_jobs(device: str) -> int:
    """Worker processes for a search: one per GPU; on CPU one single-threaded worker per core
    (at most 4).

    Small networks use several cores poorly within one batch, and OpenMP threads stall badly
    when the machine is shared; separate processes keep every core busy instead.
    """
    if device.startswith("cuda"):
        return max(1, torch.cuda.device_count()) if device == "cuda" else 1
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def worker_device(device: str, index: int) -> str:
    """Workers rotate over the visible GPUs; CPU workers share the CPU."""
    if device == "cuda" and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return device


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set for the block, then restored."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_name() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Versions (nas and its pinned dependencies, as installed), device and threads: what a
    result was measured with."""
    from nas import __version__

    cuda = device.type == "cuda"
    return {
        "nas": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": installed("torchvision"), "optuna": installed("optuna"),
        "platform": platform.platform(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
    }


def installed(distribution: str) -> str | None:
    """A distribution's installed version, read from its metadata (importing torchvision costs
    ~3 s of torch._dynamo, optuna ~1 s); None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class MemoryLimit:
    """Bytes a run may use, and where the figure comes from (for the refusal message)."""

    bytes: int
    source: str  # --max-memory, available memory, cgroup limit, free memory on cuda:N


# cgroup v2, then v1: (limit, usage) files; a limit of 2**62 or more (or "max") means none
CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                 "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def memory_limit(device: str | torch.device, max_memory: int | None = None,
                 ) -> MemoryLimit | None:
    """`max_memory` when given; else what `device` has free now: CUDA's free memory, or on the
    CPU MemAvailable of /proc/meminfo, or the cgroup's room when lower. None if unknown."""
    if max_memory is not None:
        return MemoryLimit(max_memory, "--max-memory")
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return MemoryLimit(free, f"free memory on {device}")
    host = host_available()
    room = cgroup_room()
    if room is not None and (host is None or room < host):
        return MemoryLimit(room, "cgroup limit")
    return None if host is None else MemoryLimit(host, "available memory")


def host_available() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), in bytes."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def cgroup_room() -> int | None:
    """This process's cgroup memory limit less its usage, when it has a limit."""
    for limit_file, usage_file in CGROUP_FILES:
        with contextlib.suppress(OSError, ValueError):
            limit = Path(limit_file).read_text().strip()
            if limit == "max" or int(limit) >= 2**62:
                return None
            return max(0, int(limit) - int(Path(usage_file).read_text()))
    return None


def synchronize(device: torch.device) -> None:
    """Waits for queued CUDA work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


__all__ = ["DeviceError", "MemoryLimit", "auto_jobs", "cpu_threads", "default_device",
           "environment", "memory_limit", "resolve_device", "synchronize", "worker_device"]
