"""Training: budgets and config (config), the loop (loop.fit), evaluation and latency
(evaluate), checkpoints, and `nas train`'s run folder (run). Knows nothing of Optuna."""

from nas.train.config import (
    DEFAULT_LR,
    OPTIMIZERS,
    SCHEDULES,
    Budget,
    TrainConfig,
    TrainError,
    default_lr,
    learning_rate,
    search_budget,
)
from nas.train.evaluate import accuracy, evaluate, latency_ms
from nas.train.loop import FitProgress, fit, seeded_build
from nas.train.policy import lr_factor, plan_steps, use_channels_last
from nas.train.results import EpochStats, FitResult, StopReason

__all__ = ["DEFAULT_LR", "OPTIMIZERS", "SCHEDULES", "Budget", "EpochStats", "FitProgress",
           "FitResult", "StopReason", "TrainConfig", "TrainError", "accuracy", "default_lr",
           "evaluate", "fit", "latency_ms", "learning_rate", "lr_factor", "plan_steps",
           "search_budget", "seeded_build", "use_channels_last"]
