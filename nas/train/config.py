"""How much and how to train: budgets, the training config, and every default in one place
(the learning rates by optimiser, and the search's budgets per device derived from them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from torch import nn

from nas.data.pipeline import AUGMENTS
from nas.errors import UserError

OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["cosine", "onecycle", "constant"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)
# Peak learning rates at batch 256 (scaled linearly with the batch size), by optimiser and by
# whether the network normalises (BN nets take far larger steps than the book's plain convnets).
DEFAULT_LR = {("sgd", True): 0.4, ("sgd", False): 0.01,
              ("adamw", True): 4e-3, ("adamw", False): 1e-3}
REFERENCE_BATCH = 256


class TrainError(UserError):
    """A budget, config, device or checkpoint that cannot be used as asked."""


@dataclass
class Budget:
    """How much training a run gets; the first limit reached ends it."""

    epochs: int = 2
    max_steps: int | None = None
    subset: float = 1.0  # fraction of the training split, chosen once by the seed
    time_limit_s: float | None = None  # training wall time; checked after every step
    batch_size: int = 256

    def check(self) -> None:
        """Raises TrainError on a value that cannot be used."""
        if self.epochs < 1:
            raise TrainError(f"epochs must be at least 1, not {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainError(f"max_steps must be at least 1, not {self.max_steps}")
        if not 0 < self.subset <= 1:
            raise TrainError(f"subset must be in (0, 1], not {self.subset}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise TrainError(f"time limit must be positive, not {self.time_limit_s}")
        if self.batch_size < 1:
            raise TrainError(f"batch size must be at least 1, not {self.batch_size}")


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, regularisation, device features, seed."""

    optimizer: OptimizerName = "sgd"
    lr: float | None = None  # None: default_lr(model, optimizer, batch size)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # on conv and linear weights only, not on norms and biases
    schedule: ScheduleName = "onecycle"
    warmup: float = 0.0  # cosine only: fraction of the steps spent warming up linearly
    label_smoothing: float = 0.0
    # none, flip or crop-flip; None: the dataset's default (crop-flip for cifar10, none for the
    # other built-ins; user data: crop-flip up to 64 px, flip above). Old booleans are mapped
    # (True: crop-flip, False: none); None stays None, so existing budget keys do not change.
    augment: bool | str | None = None
    compile: bool = False
    channels_last: bool | None = None  # None: on CUDA; on CPU when every conv is >= 16 wide
    amp: bool | None = None  # None: bf16 autocast on CUDA only
    seed: int = 0
    threads: int | None = None  # CPU threads while training; None: leave torch's setting
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):
            self.augment = "crop-flip" if self.augment else "none"

    def check(self) -> None:
        """Raises TrainError on a value that cannot be used."""
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        if self.augment is not None:
            check_choice(self.augment, "augmentation", AUGMENTS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        if self.lr is not None and not self.lr > 0:
            raise TrainError(f"learning rate must be positive, not {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise TrainError(f"label smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.threads is not None and self.threads < 1:
            raise TrainError(f"threads must be at least 1, not {self.threads}")


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices`, else a one-line TrainError."""
    if value not in choices:
        raise TrainError(f"unknown {name} {value!r}; one of {', '.join(choices)}")
    return value


def has_norm(model: nn.Module) -> bool:
    """Whether the network has batch norm (its default learning rate is far larger)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def default_lr(model: nn.Module, optimizer: str = "sgd", batch_size: int = REFERENCE_BATCH,
               ) -> float:
    """The default peak learning rate: by optimiser and normalisation, scaled to the batch."""
    return DEFAULT_LR[optimizer, has_norm(model)] * batch_size / REFERENCE_BATCH


def learning_rate(model: nn.Module, config: TrainConfig, batch_size: int) -> float:
    """`config.lr`, or the default for this model."""
    return config.lr if config.lr is not None else default_lr(model, config.optimizer, batch_size)


def search_budget(device: str) -> dict[str, Any]:
    """The budget every search trial gets by default on `device` (cpu or cuda[:N]).

    CPU (measured on a 2-core machine): a mid-size ResNeXt at 28 px reaches ~0.86 validation
    accuracy in ~14 s with 2 epochs on a quarter of the training split at batch 128. The
    learning rate is the default SGD rate of a batch-norm network at that batch size.
    """
    cuda = device.startswith("cuda")
    epochs, subset, batch = (10, 1.0, 256) if cuda else (2, 0.25, 128)
    lr = DEFAULT_LR["sgd", True] * batch / REFERENCE_BATCH
    return {"epochs": epochs, "subset": subset, "batch_size": batch, "lr": lr}


__all__ = ["DEFAULT_LR", "OPTIMIZERS", "SCHEDULES", "Budget", "TrainConfig", "TrainError",
           "check_choice", "default_lr", "learning_rate", "search_budget"]
