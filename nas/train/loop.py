"""fit(model, data, budget, config) -> FitResult: brief, fast, reproducible training on CPU or CUDA.

The dataset lives as uint8 tensors on the training device, or as index views of a memory-mapped
cache (nas.data); each step gathers a batch there, then augments, normalises and resizes it in
batch. No DataLoader, no per-sample
Python. Shuffling and augmentation draw from a torch.Generator seeded from (seed, epoch); the
global RNG (dropout) is forked and seeded from `config.seed`, so fit leaves the caller's RNG as
it was. The model's initial weights are the caller's: seed before building (`seeded_build`).
Knows nothing of Optuna or terminals: the search sees each epoch through `on_epoch`, a progress
bar sees each step through a `FitProgress`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from nas.data import BatchMaker, DataSplits, augment_mode
from nas.device import cpu_threads, environment
from nas.memory import StorageBytes, saved_for_backward, state_bytes
from nas.train.checkpoint import load_checkpoint, save_checkpoint
from nas.train.config import Budget, TrainConfig, learning_rate
from nas.train.evaluate import split_scores
from nas.train.policy import (
    autocast,
    epoch_generator,
    lr_factor,
    make_optimizer,
    model_input_size,
    plan_steps,
    subset_indices,
    use_channels_last,
)
from nas.train.results import EpochStats, FitResult, StopReason

Totals = Callable[[], tuple[float, float]]  # (loss sum, correct) so far in the epoch; syncs


class FitProgress(Protocol):
    """What a progress display is told while a fit runs (nas.cli draws a bar from it)."""

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None: ...

    def step_done(self, seen: int, seconds: float, totals: Totals) -> None: ...

    def epoch_done(self, stats: EpochStats) -> None: ...


def seeded_build(spec: object, seed: int = 0) -> nn.Module:
    """nas.build(spec) with weights drawn from `seed`, leaving the global RNG untouched."""
    from nas.builder import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(spec)


@dataclass
class RunState:
    """What a checkpoint restores: progress so far."""

    epoch: int = 0
    steps: int = 0
    curve: list[EpochStats] = field(default_factory=list)
    train_seconds: float = 0.0
    images: int = 0
    wall_time_s: float = 0.0
    peak_memory_bytes: int = 0


@dataclass
class Run:
    """Everything one fit works with, so the loop's functions stay small."""

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    data: DataSplits
    budget: Budget
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    maker: BatchMaker
    train_index: torch.Tensor
    steps_per_epoch: int
    total_steps: int
    lr: float
    amp: bool
    augment: str  # none, flip or crop-flip
    state: RunState
    started: float = field(default_factory=time.perf_counter)
    progress: FitProgress | None = None

    @property
    def device(self) -> torch.device:
        return self.data.device

    def elapsed(self) -> float:
        """Wall time of the whole fit, earlier (checkpointed) sessions included."""
        return self.state.wall_time_s + time.perf_counter() - self.started

    def restart_clock(self) -> None:
        """After a resume: this session's time counts from now."""
        self.started = time.perf_counter()


def fit(
    model: nn.Module,
    data: DataSplits,
    budget: Budget | None = None,
    config: TrainConfig | None = None,
    on_epoch: Callable[[EpochStats], bool | None] | None = None,
    evaluate_test: bool = False,
    progress: FitProgress | None = None,
    checkpoint_path: str | Path | None = None,
) -> FitResult:
    """Trains `model` on `data` within `budget`; validation accuracy after every epoch."""
    budget, config = budget or Budget(), config or TrainConfig()
    budget.check()
    config.check()
    devices = [data.device] if data.device.type == "cuda" else []
    with cpu_threads(config.threads), torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        run = start_run(model, data, budget, config, checkpoint_path)
        run.progress = progress
        resumed = run.state.epoch
        stopped = train_epochs(run, on_epoch, checkpoint_path)
        test = None
        if evaluate_test and data.test_y.numel():  # user data may have no test split
            test = split_scores(model, data.test_x, data.test_y, run.maker,
                                config.eval_batch_size, run.amp, data.num_classes).accuracy
        return make_result(run, stopped, test, resumed)


def start_run(model: nn.Module, data: DataSplits, budget: Budget, config: TrainConfig,
              checkpoint_path: str | Path | None) -> Run:
    """Model on the device, optimiser, training subset and plan; resumed when a checkpoint is."""
    size = model_input_size(model, data)
    model.to(data.device)
    channels_last = use_channels_last(model, data.device, config.channels_last)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    lr = learning_rate(model, config, budget.batch_size)
    index = subset_indices(data.train_x.shape[0], budget.subset, config.seed)
    per_epoch, total = plan_steps(index.numel(), budget)
    augment = augment_mode(config.augment, data.augment)
    run = Run(
        model=model, forward=torch.compile(model) if config.compile else model, data=data,
        budget=budget, config=config, optimizer=make_optimizer(model, config, lr),
        maker=BatchMaker(data, size, channels_last, augment), train_index=index,
        steps_per_epoch=per_epoch, total_steps=total, lr=lr,
        amp=data.device.type == "cuda" if config.amp is None else config.amp,
        augment=augment, state=RunState(),
    )
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        load_checkpoint(run, Path(checkpoint_path))
    return run


def train_epochs(run: Run, on_epoch: Callable[[EpochStats], bool | None] | None,
                 checkpoint_path: str | Path | None) -> StopReason | None:
    """Epochs until the budget ends, a limit is hit or `on_epoch` returns True."""
    stopped: StopReason | None = None
    if run.data.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    while stopped is None and run.state.epoch < run.budget.epochs:
        if run.state.steps >= run.total_steps:
            stopped = "max_steps"
            break
        stats, stopped = train_epoch(run)
        run.state.curve.append(stats)
        run.state.epoch = stats.epoch
        if checkpoint_path is not None and stopped != "non_finite_loss":
            save_checkpoint(run, Path(checkpoint_path))
        if stopped is None and on_epoch is not None and on_epoch(stats) is True:
            stopped = "on_epoch"
    if stopped == "max_steps" and run.state.steps >= run.steps_per_epoch * run.budget.epochs:
        stopped = None  # the step cap and the epochs ended together: nothing was cut short
    return stopped


def train_epoch(run: Run) -> tuple[EpochStats, StopReason | None]:
    """One pass over the shuffled training subset (or less, when a limit stops it)."""
    epoch, bs, device = run.state.epoch + 1, run.budget.batch_size, run.device
    generator = epoch_generator(run.config.seed, epoch)
    order = run.train_index[torch.randperm(run.train_index.numel(), generator=generator)]
    order = order.to(device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss x n, correct
    if run.progress is not None:
        run.progress.epoch_started(epoch, run.budget.epochs, run.steps_per_epoch)
    start, seen, stopped = time.perf_counter(), 0, None
    for b in range(run.steps_per_epoch):
        idx = order[b * bs:(b + 1) * bs]
        x = run.maker(run.data.train_x[idx], generator if run.augment != "none" else None)
        train_step(run, x, run.data.train_y[idx], sums)
        seen += idx.numel()
        stopped = check_limits(run, sums, b)
        if run.progress is not None:
            run.progress.step_done(seen, time.perf_counter() - start,
                                   lambda: tuple(sums.tolist()))
        if stopped is not None:
            break
    stats = finish_epoch(run, epoch, sums, seen, start)
    if run.progress is not None:
        run.progress.epoch_done(stats)
    return stats, stopped


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor, sums: torch.Tensor) -> None:
    """Forward, loss, backward and update at the scheduled learning rate."""
    factor = lr_factor(run.config.schedule, run.state.steps, run.total_steps, run.config.warmup)
    for group in run.optimizer.param_groups:
        group["lr"] = run.lr * factor
    saved = None  # the first CPU step counts what autograd keeps: the memory estimate
    if run.state.steps == 0 and run.device.type == "cpu":
        saved = StorageBytes([*run.model.parameters(), x])
    with autocast(run.device, run.amp), (
            saved_for_backward(saved) if saved else contextlib.nullcontext()):
        logits = run.forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=run.config.label_smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.state.steps += 1
    with torch.no_grad():
        sums[0] += loss.detach().double() * y.numel()
        sums[1] += (logits.argmax(1) == y).sum()
    if saved is not None:
        total = saved.total + state_bytes(run.model, run.config.optimizer) + x.nbytes
        run.state.peak_memory_bytes = max(run.state.peak_memory_bytes, total)


def check_limits(run: Run, sums: torch.Tensor, batch: int) -> StopReason | None:
    """A non-finite loss, the step cap or the time limit; CUDA syncs only every 16 steps."""
    limit = run.budget.time_limit_s
    capped = run.state.steps >= run.total_steps
    timed = limit is not None and run.elapsed() >= limit
    sync = run.device.type == "cpu" or batch % 16 == 15 or batch == run.steps_per_epoch - 1
    if (sync or capped or timed) and not math.isfinite(sums[0].item()):
        return "non_finite_loss"
    if capped:
        return "max_steps"  # train_epochs clears it when the epochs ended there too
    return "time_limit" if timed else None


def finish_epoch(run: Run, epoch: int, sums: torch.Tensor, seen: int,
                 epoch_start: float) -> EpochStats:
    """Validation accuracy and the epoch's figures."""
    loss_sum, correct = sums.tolist()
    train_seconds = time.perf_counter() - epoch_start
    val = split_scores(run.model, run.data.val_x, run.data.val_y, run.maker,
                       run.config.eval_batch_size, run.amp, run.data.num_classes)
    run.state.train_seconds += train_seconds
    run.state.images += seen
    group = run.optimizer.param_groups[0]
    return EpochStats(
        epoch=epoch, train_loss=loss_sum / max(1, seen), train_accuracy=correct / max(1, seen),
        val_accuracy=val.accuracy, seconds=time.perf_counter() - epoch_start,
        images_per_second=seen / max(train_seconds, 1e-9), steps=run.state.steps,
        lr=float(group["lr"]), val_balanced_accuracy=val.balanced_accuracy,
    )


def make_result(run: Run, stopped: StopReason | None, test: float | None,
                resumed: int) -> FitResult:
    """The FitResult of a finished (or stopped) run."""
    state, device = run.state, run.device
    if device.type == "cuda":
        peak, source = torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    else:
        peak, source = state.peak_memory_bytes, "cpu_estimate"
    return FitResult(
        val_accuracy=state.curve[-1].val_accuracy if state.curve else float("nan"),
        val_balanced_accuracy=state.curve[-1].val_balanced_accuracy if state.curve else None,
        test_accuracy=test, curve=list(state.curve), epochs_run=len(state.curve),
        steps=state.steps, wall_time_s=run.elapsed(),
        images_per_second=state.images / max(state.train_seconds, 1e-9), stopped=stopped,
        seed=run.config.seed, device=str(device), environment=environment(device),
        peak_memory_bytes=int(peak), memory_source=source, resumed_from_epoch=resumed,
        config={"budget": asdict(run.budget),
                "train": {**asdict(run.config), "lr": run.lr, "augment": run.augment,
                          "amp": run.amp, "channels_last": run.maker.channels_last},
                "dataset": run.data.name, "val_fraction": run.data.val_fraction,
                "data_seed": run.data.seed, "data_source": run.data.source,
                **({"data_fingerprint": run.data.fingerprint} if run.data.is_user_data else {})},
    )
