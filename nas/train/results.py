"""What a fit reports: per-epoch figures and the result of the whole run (JSON-safe)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StopReason = Literal["on_epoch", "time_limit", "max_steps", "non_finite_loss"]


@dataclass
class EpochStats:
    """One epoch (the last may be partial when a limit stops it mid-way)."""

    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float  # on the (augmented) batches as they were trained
    val_accuracy: float
    seconds: float  # training plus validation
    images_per_second: float  # training only
    steps: int = 0  # steps run so far in the whole fit
    lr: float = 0.0  # at the epoch's last step
    val_balanced_accuracy: float | None = None  # mean per-class recall (None: not measured)


@dataclass
class FitResult:
    """What a fit did and reached; `as_dict()` is JSON-safe."""

    val_accuracy: float
    test_accuracy: float | None
    curve: list[EpochStats]
    epochs_run: int
    steps: int
    wall_time_s: float
    images_per_second: float
    stopped: StopReason | None
    seed: int
    device: str
    environment: dict[str, Any]
    peak_memory_bytes: int = 0  # training: weights, gradients, optimiser state, activations
    memory_source: str = ""  # "cuda_max_allocated" or "cpu_estimate"
    config: dict[str, Any] = field(default_factory=dict)  # budget and config, lr resolved
    resumed_from_epoch: int = 0
    val_balanced_accuracy: float | None = None  # the last epoch's mean per-class recall

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become None)."""
        return json_safe(asdict(self))


def json_safe(value: Any) -> Any:
    """Nested data with NaN/inf as None and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
