"""fit(model, data, budget, config) -> FitResult: brief, fast, reproducible training on CPU or CUDA.

The dataset lives as uint8 tensors on the training device (nas.data); each step indexes a
batch there, then normalises, resizes and augments it in batch. No DataLoader, no per-sample
Python. Shuffling and augmentation draw from a torch.Generator seeded from (seed, epoch); the
global RNG (dropout) is forked and seeded from `config.seed`, so fit leaves the caller's RNG as
it was. The model's initial weights are the caller's: seed before building (`seeded_build`).
Knows nothing of Optuna: the search sees each epoch through `on_epoch`.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from nas.data import BatchMaker, DataSplits
from nas.errors import UserError

OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["cosine", "onecycle", "constant"]
StopReason = Literal["on_epoch", "time_limit", "max_steps", "non_finite_loss"]
CHECKPOINT_FORMAT = 1
# Peak learning rates at batch 256 (scaled linearly with the batch size), by optimiser and by
# whether the network normalises (BN nets take far larger steps than the book's plain convnets).
DEFAULT_LR = {("sgd", True): 0.4, ("sgd", False): 0.01,
              ("adamw", True): 4e-3, ("adamw", False): 1e-3}


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
    augment: bool | None = None  # None: the dataset's default (random crop + flip for cifar10)
    compile: bool = False
    channels_last: bool | None = None  # None: on CUDA; on CPU when every conv is >= 16 wide
    amp: bool | None = None  # None: bf16 autocast on CUDA only
    seed: int = 0
    threads: int | None = None  # CPU threads while training; None: leave torch's setting
    eval_batch_size: int = 1024

    def check(self) -> None:
        """Raises TrainError on a value that cannot be used."""
        if self.optimizer not in ("sgd", "adamw"):
            raise TrainError(f"unknown optimizer {self.optimizer!r}; one of sgd, adamw")
        if self.schedule not in ("cosine", "onecycle", "constant"):
            raise TrainError(f"unknown schedule {self.schedule!r}; one of cosine, onecycle, "
                             "constant")
        if self.lr is not None and not self.lr > 0:
            raise TrainError(f"learning rate must be positive, not {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise TrainError(f"label smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.threads is not None and self.threads < 1:
            raise TrainError(f"threads must be at least 1, not {self.threads}")


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
    peak_memory_bytes: int = 0
    memory_source: str = ""  # "cuda_max_allocated" or "cpu_estimate"
    config: dict[str, Any] = field(default_factory=dict)  # budget and config, lr resolved
    resumed_from_epoch: int = 0

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


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N'; asking for CUDA without one is a TrainError."""
    if name is None or str(name) == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TrainError(f"unknown device {name!r}; one of auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device {name!r} asked for, but torch sees no CUDA device here "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise TrainError(f"device {name!r} is not supported; one of auto, cpu, cuda")
    return device


def seeded_build(spec: object, seed: int = 0) -> nn.Module:
    """nas.build(spec) with weights drawn from `seed`, leaving the global RNG untouched."""
    from nas.builder import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(spec)


def default_lr(model: nn.Module, optimizer: str = "sgd", batch_size: int = 256) -> float:
    """The default peak learning rate: by optimiser and normalisation, scaled to the batch."""
    norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return DEFAULT_LR[optimizer, norm] * batch_size / 256


def learning_rate(model: nn.Module, config: TrainConfig, batch_size: int) -> float:
    """`config.lr`, or the default for this model."""
    return config.lr if config.lr is not None else default_lr(model, config.optimizer, batch_size)


def use_channels_last(model: nn.Module, device: torch.device, wanted: bool | None) -> bool:
    """channels_last as asked; by default on CUDA, and on CPU unless some conv is narrow.

    On CPU, batch norm and pooling kernels vectorise over channels in channels_last; with
    fewer than 16 channels (LeNet's 6) they ran 1.3-2x slower than in NCHW here, while 16-128
    channel ResNets ran 1.3-1.6x faster (docs/training.md).
    """
    if wanted is not None:
        return wanted
    if device.type == "cuda":
        return True
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    return bool(widths) and min(widths) >= 16


def model_input_size(model: nn.Module, data: DataSplits) -> int:
    """The size batches are resized to; refuses channel or class mismatches in one line."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return data.image_size
    if spec.in_channels != data.in_channels:
        raise TrainError(
            f"the spec takes {spec.in_channels}-channel input but {data.name} images have "
            f"{data.in_channels} channel(s); set in_channels: {data.in_channels} in the spec")
    if spec.num_classes != data.num_classes:
        raise TrainError(
            f"the spec has {spec.num_classes} classes but {data.name} has "
            f"{data.num_classes}; set num_classes: {data.num_classes} in the spec")
    return spec.input_size


def make_optimizer(model: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW; weight decay on weights of rank > 1 only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    nesterov = config.nesterov and config.momentum > 0
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=nesterov)


def lr_factor(schedule: str, step: int, total: int, warmup: float = 0.0) -> float:
    """Multiplier of the peak learning rate at 0-based `step` of `total`."""
    if schedule == "constant":
        return 1.0
    if schedule == "onecycle":  # torch's OneCycleLR shape: cosine up over 25%, then down
        up = max(1, round(0.25 * total))
        start, end = 1 / 25, 1 / 25e4
        if step < up:
            return start + (1 - start) * (1 - math.cos(math.pi * step / up)) / 2
        t = (step - up) / max(1, total - up)
        return end + (1 - end) * (1 + math.cos(math.pi * t)) / 2
    warm = round(warmup * total)
    if step < warm:
        return (step + 1) / warm
    return (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))) / 2


def plan_steps(n_train: int, budget: Budget) -> tuple[int, int]:
    """(steps per epoch, total steps): full batches only, at least one per epoch."""
    per_epoch = max(1, n_train // budget.batch_size)
    total = per_epoch * budget.epochs
    return per_epoch, min(total, budget.max_steps or total)


def subset_indices(n: int, fraction: float, seed: int) -> torch.Tensor:
    """The training subset: the same `fraction` of the split for the same seed."""
    if fraction >= 1:
        return torch.arange(n)
    keep = max(1, round(n * fraction))
    generator = torch.Generator().manual_seed(seed + 7919)
    return torch.randperm(n, generator=generator)[:keep].sort().values


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling/augmentation stream of one epoch: a resumed run draws the same."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, maker: BatchMaker,
             batch_size: int = 1024, amp: bool = False) -> float:
    """Top-1 accuracy over uint8 images `x`, in eval mode, in large batches."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    try:
        for i in range(0, x.shape[0], batch_size):
            with autocast(x.device, amp):
                logits = model(maker(x[i:i + batch_size]))
            correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    finally:
        model.train(was_training)
    return correct.item() / max(1, x.shape[0])


def evaluate(model: nn.Module, data: DataSplits, split: Literal["val", "test"] = "val",
             batch_size: int = 1024, channels_last: bool | None = None,
             amp: bool | None = None) -> float:
    """Accuracy on the validation or test split (resized to the model's input), on its device."""
    model.to(data.device)
    layout = use_channels_last(model, data.device, channels_last)
    maker = BatchMaker(data, model_input_size(model, data), layout)
    x, y = (data.val_x, data.val_y) if split == "val" else (data.test_x, data.test_y)
    use_amp = data.device.type == "cuda" if amp is None else amp
    return accuracy(model, x, y, maker, batch_size, use_amp)


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


class SavedBytes:
    """Bytes of the tensors autograd saves for backward (the CPU memory estimate)."""

    def __init__(self, exclude: list[torch.Tensor]) -> None:
        self.total = 0
        self.seen = {t.untyped_storage().data_ptr() for t in exclude}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.seen:
            self.seen.add(storage.data_ptr())
            self.total += storage.nbytes()
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


def state_bytes(model: nn.Module, optimizer_name: str) -> int:
    """Parameters, gradients and optimiser state (1 slot for SGD momentum, 2 for AdamW)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return params * (2 + (2 if optimizer_name == "adamw" else 1)) + buffers


def cpu_name() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device and threads: what a result was measured with."""
    import torchvision

    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
    }


@torch.inference_mode()
def latency_ms(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device | None
               = None, batch_size: int = 1, warmup: int = 10, repeats: int = 50) -> float:
    """Median forward time in ms of one batch, after warm-up, synchronised on CUDA.

    `input_shape` is (C, H, W) (a leading batch dimension is ignored); the model is moved to
    `device` when one is given, and measured in eval mode with no autograd.
    """
    if device is not None:
        model.to(device)
    first = next(model.parameters())
    x = torch.randn(batch_size, *input_shape[-3:], device=first.device)
    if any(p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last)
           and not p.is_contiguous() for p in model.parameters()):
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if first.is_cuda else (lambda *_: None)
    was_training = model.training
    model.eval()
    times = []
    try:
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times) * 1e3


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
    augment: bool
    state: RunState
    started: float = field(default_factory=time.perf_counter)
    progress: Any = None

    @property
    def device(self) -> torch.device:
        return self.data.device

    def elapsed(self) -> float:
        """Wall time of the whole fit, earlier (checkpointed) sessions included."""
        return self.state.wall_time_s + time.perf_counter() - self.started


def fit(
    model: nn.Module,
    data: DataSplits,
    budget: Budget | None = None,
    config: TrainConfig | None = None,
    on_epoch: Callable[[EpochStats], bool | None] | None = None,
    evaluate_test: bool = False,
    progress: bool = True,
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
        resumed = run.state.epoch
        stopped = train_epochs(run, on_epoch, progress, checkpoint_path)
        test = None
        if evaluate_test:
            test = accuracy(model, data.test_x, data.test_y, run.maker,
                            config.eval_batch_size, run.amp)
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
    run = Run(
        model=model, forward=torch.compile(model) if config.compile else model, data=data,
        budget=budget, config=config, optimizer=make_optimizer(model, config, lr),
        maker=BatchMaker(data, size, channels_last), train_index=index,
        steps_per_epoch=per_epoch, total_steps=total, lr=lr,
        amp=data.device.type == "cuda" if config.amp is None else config.amp,
        augment=data.augment if config.augment is None else config.augment, state=RunState(),
    )
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        load_checkpoint(run, Path(checkpoint_path))
    return run


def train_epochs(run: Run, on_epoch: Callable[[EpochStats], bool | None] | None,
                 progress: bool, checkpoint_path: str | Path | None) -> StopReason | None:
    """Epochs until the budget ends, a limit is hit or `on_epoch` returns True."""
    stopped: StopReason | None = None
    if run.data.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    with progress_bar(progress) as bar:
        run.progress = bar
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
    task = run.progress.start(epoch, run) if run.progress else None
    start, seen, stopped = time.perf_counter(), 0, None
    for b in range(run.steps_per_epoch):
        idx = order[b * bs:(b + 1) * bs]
        x = run.maker(run.data.train_x[idx], generator if run.augment else None)
        train_step(run, x, run.data.train_y[idx], sums)
        seen += idx.numel()
        stopped = check_limits(run, sums, b)
        if task is not None:
            run.progress.update(task, run, sums, seen, time.perf_counter() - start)
        if stopped is not None:
            break
    stats = finish_epoch(run, epoch, sums, seen, start)
    if task is not None:
        run.progress.done(task, stats)
    return stats, stopped


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor, sums: torch.Tensor) -> None:
    """Forward, loss, backward and update at the scheduled learning rate."""
    factor = lr_factor(run.config.schedule, run.state.steps, run.total_steps, run.config.warmup)
    for group in run.optimizer.param_groups:
        group["lr"] = run.lr * factor
    hooks = None
    if run.state.steps == 0 and run.device.type == "cpu":
        hooks = SavedBytes([*run.model.parameters(), x])
    with autocast(run.device, run.amp), (torch.autograd.graph.saved_tensors_hooks(
            hooks.pack, hooks.unpack) if hooks else contextlib.nullcontext()):
        logits = run.forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=run.config.label_smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.state.steps += 1
    with torch.no_grad():
        sums[0] += loss.detach().double() * y.numel()
        sums[1] += (logits.argmax(1) == y).sum()
    if hooks is not None:
        total = hooks.total + state_bytes(run.model, run.config.optimizer) + x.nbytes
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
    val = accuracy(run.model, run.data.val_x, run.data.val_y, run.maker,
                   run.config.eval_batch_size, run.amp)
    run.state.train_seconds += train_seconds
    run.state.images += seen
    group = run.optimizer.param_groups[0]
    return EpochStats(
        epoch=epoch, train_loss=loss_sum / max(1, seen), train_accuracy=correct / max(1, seen),
        val_accuracy=val, seconds=time.perf_counter() - epoch_start,
        images_per_second=seen / max(train_seconds, 1e-9), steps=run.state.steps,
        lr=float(group["lr"]),
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
        test_accuracy=test, curve=list(state.curve), epochs_run=len(state.curve),
        steps=state.steps, wall_time_s=run.elapsed(),
        images_per_second=state.images / max(state.train_seconds, 1e-9), stopped=stopped,
        seed=run.config.seed, device=str(device), environment=environment(device),
        peak_memory_bytes=int(peak), memory_source=source, resumed_from_epoch=resumed,
        config={"budget": asdict(run.budget),
                "train": {**asdict(run.config), "lr": run.lr, "augment": run.augment,
                          "amp": run.amp, "channels_last": run.maker.channels_last},
                "dataset": run.data.name, "val_fraction": run.data.val_fraction,
                "data_seed": run.data.seed, "data_source": run.data.source},
    )


class ProgressBar:
    """A rich progress bar per epoch on stderr: loss, accuracy, images/s, then validation."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                            console=Console(stderr=True))
        self.last_text = 0.0

    def start(self, epoch: int, run: Run) -> int:
        return self.bar.add_task(f"epoch {epoch}/{run.budget.epochs}",
                                 total=run.steps_per_epoch, info="")

    def update(self, task: int, run: Run, sums: torch.Tensor, seen: int, seconds: float) -> None:
        """Advances the bar; the figures (a device sync) at most twice a second."""
        now = time.perf_counter()
        if now - self.last_text < 0.5:
            self.bar.update(task, advance=1)
            return
        self.last_text = now
        loss, correct = sums.tolist()
        info = f"loss {loss / seen:.3f}  acc {correct / seen:.3f}  {seen / seconds:,.0f} img/s"
        self.bar.update(task, advance=1, info=info)

    def done(self, task: int, stats: EpochStats) -> None:
        info = (f"loss {stats.train_loss:.3f}  acc {stats.train_accuracy:.3f}  "
                f"{stats.images_per_second:,.0f} img/s  val {stats.val_accuracy:.4f}")
        self.bar.update(task, info=info)


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressBar | None]:
    """A live ProgressBar when enabled, else None."""
    if not enabled:
        yield None
        return
    bar = ProgressBar()
    with bar.bar:
        yield bar


def fingerprint(run: Run) -> dict[str, Any]:
    """What must match for a checkpoint to resume this run (the time limit may change)."""
    spec = getattr(run.model, "spec", None)
    skip = ("compile", "threads", "eval_batch_size")
    return {
        "model": spec.content_hash() if spec is not None else type(run.model).__name__,
        "dataset": run.data.name, "val_fraction": run.data.val_fraction,
        "data_seed": run.data.seed, "train_images": int(run.data.train_x.shape[0]),
        "budget": {k: v for k, v in asdict(run.budget).items() if k != "time_limit_s"},
        "config": {k: v for k, v in asdict(run.config).items() if k not in skip},
    }


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_checkpoint(run: Run, path: Path) -> None:
    """Restores a run saved by save_checkpoint; refuses one written for another run."""
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
    run.started = time.perf_counter()


__all__ = ["Budget", "EpochStats", "FitResult", "TrainConfig", "TrainError", "default_device",
           "environment", "evaluate", "fit", "latency_ms", "lr_factor", "resolve_device",
           "seeded_build"]
