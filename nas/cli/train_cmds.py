"""Training commands: train (a spec on real data, into a run directory) and bench."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nas.cli.app import app, console, err_console
from nas.cli.progress import data_bar, epoch_bar
from nas.cli.spec_cmds import SpecArg, check_batch_size, with_input_size
from nas.errors import Terminated, UserError

Epochs = Annotated[int, typer.Option(help="Training epochs.")]
Dataset = Annotated[str | None, typer.Option(
    help="fashion-mnist, mnist or cifar10 (default: fashion-mnist).")]
DataDir = Annotated[Path | None, typer.Option(help="Read the dataset from this folder.")]
DataPath = Annotated[str | None, typer.Option(
    "--data", help="Your images: a folder (PATH/<class>/..., or PATH/train/<class>/... with "
                   "val/ and test/), a .csv/.tsv of path,label[,split], or a built-in name.")]
Channels = Annotated[int | None, typer.Option(
    help="Read your images as 1 (grey) or 3 (colour) channels (default: 3 when any image "
         "has colour).")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")]
BatchSize = Annotated[int, typer.Option(help="Training batch size.")]
Threads = Annotated[int | None, typer.Option(help="CPU threads (default: torch's).")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


def spec_name(spec: str) -> str:
    """A preset's name, or a spec file's stem."""
    path = Path(spec)
    return path.stem if path.suffix in (".yaml", ".yml", ".json") else path.name


def chosen_data(dataset: str | None, data: str | None) -> str:
    """--data when given (a path or a built-in name), else --dataset; both is refused."""
    if data is not None and dataset is not None:
        raise UserError("give --data or --dataset, not both (--data also takes a built-in name)")
    return data or dataset or "fashion-mnist"


def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def result_table(r: Any) -> Table:
    """The final figures of a run (a nas.train.run.RunResult), one per row."""
    table = Table(title=f"{r.spec} on {r.dataset} (seed {r.seed})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("val accuracy", figure(r.val_accuracy)),
        ("val balanced accuracy", figure(r.val_balanced_accuracy)),
        ("test accuracy", "-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}"),
        ("params", f"{r.params:,}"), ("MACs", f"{r.macs:,}"),
        (f"latency (batch {r.latency_batch_size})", f"{r.latency_ms:.2f} ms"),
        ("training images/s", f"{r.images_per_second:,.0f}"),
        ("peak training memory", f"{r.peak_memory_bytes / 2**20:,.1f} MiB "
                                 f"({r.memory_source})"),
        ("epochs / steps", f"{r.epochs_run} / {r.steps}"),
        ("wall time", f"{r.wall_time_s:.1f} s"),
        ("stopped", r.stopped or "-"), ("device", r.device),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@contextmanager
def interrupt_line(folder: Any) -> Iterator[None]:
    """Ctrl-C or SIGTERM during a run (a nas.train.run.RunFolder): one line saying where its
    checkpoint is and that the same command resumes, then exit 130 (143 for SIGTERM)."""

    def terminate(_signum: int, _frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except KeyboardInterrupt as e:
        code, word = (143, "terminated") if isinstance(e, Terminated) else (130, "interrupted")
        if folder.checkpoint.exists():
            line = (f"nas: {word}: the checkpoint of the last finished epoch is "
                    f"{folder.checkpoint}; the same command resumes from it")
        else:
            line = (f"nas: {word} before the first epoch ended: nothing saved; the same command "
                    f"starts the run again")
        err_console.print(line, markup=False, highlight=False)
        raise typer.Exit(code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def train(
    spec: SpecArg,
    epochs: Epochs = 2,
    dataset: Dataset = None,
    subset: Annotated[float, typer.Option(help="Fraction of the training split used.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of initial weights, order, augmentation.")] = 0,
    split_seed: Annotated[int, typer.Option(
        help="Seed of the validation split (fixed, so runs compare on the same images).")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Run directory (default studies/runs/<spec>-<hash>-e<epochs>[-sub<subset>]-s<seed>-"
             "<settings hash>).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run in --out.")] = False,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: by "
                                                  "optimizer, scaled with batch size).")] = None,
    batch_size: BatchSize = 256,
    optimizer: Annotated[str, typer.Option(help="sgd (Nesterov momentum) or adamw.")] = "sgd",
    schedule: Annotated[str, typer.Option(help="onecycle, cosine or constant.")] = "onecycle",
    weight_decay: Annotated[float, typer.Option(help="On conv/linear weights.")] = 5e-4,
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy smoothing.")] = 0.0,
    augment: Annotated[str | None, typer.Option(
        help="none, flip or crop-flip (default: crop-flip for cifar10, none for the other "
             "built-ins; your images: crop-flip up to 64 px, flip above).")] = None,
    data: DataPath = None,
    channels: Channels = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    time_limit: Annotated[float | None, typer.Option(help="Training wall-time limit, s.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    input_size: Annotated[int | None, typer.Option(
        help="Override the spec's input size (built-ins: batches are resized to it; your "
             "images are prepared at it).")] = None,
    threads: Threads = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile.")] = False,
    weights: Annotated[Path | None, typer.Option(
        help="Start from these weights: a torchvision checkpoint (.pth) or a nas "
             "model.safetensors, loaded by order and checked by shape.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    max_memory: Annotated[str | None, typer.Option(
        help="Refuse when training needs more memory than this (e.g. 2GiB, 500MB) (default: "
             "what the device has free).")] = None,
    as_json: AsJson = False,
) -> None:
    """Train a spec, write DIR/result.json, spec.yaml, data.json and model.safetensors; resumes
    a run interrupted in the same DIR. Refuses first a spec whose training cannot fit in
    memory, or whose channels or classes do not fit the data."""
    from nas.io import load_spec
    from nas.sizes import parse_memory_option

    source = chosen_data(dataset, data)

    arch = with_input_size(load_spec(spec), input_size)
    limit_bytes = parse_memory_option(max_memory)
    check_batch_size(batch_size)
    from nas.cost import check_training, estimate
    from nas.device import memory_limit, resolve_device
    from nas.train import OPTIMIZERS, SCHEDULES, Budget, TrainConfig
    from nas.train.config import check_choice
    from nas.train.run import DataSource, RunFolder, default_run_path, train_run

    optimizer = check_choice(optimizer, "optimizer", OPTIMIZERS)
    training = estimate(arch, batch_size, optimizer).training  # before any allocation
    check_training(spec, training, memory_limit(resolve_device(device), limit_bytes))
    name = spec_name(spec)
    budget = Budget(epochs=epochs, max_steps=max_steps, subset=subset, time_limit_s=time_limit,
                    batch_size=batch_size)
    config = TrainConfig(optimizer=optimizer,
                         lr=lr, schedule=check_choice(schedule, "schedule", SCHEDULES),
                         weight_decay=weight_decay, label_smoothing=label_smoothing,
                         augment=augment, compile=compile_model, seed=seed, threads=threads)
    config.check()
    source = DataSource(source, data_dir, split_seed, channels=channels)
    path = out or default_run_path(name, arch, budget, config, source, weights)
    with interrupt_line(RunFolder(path)), RunFolder.claim(path, overwrite) as folder:
        if folder.checkpoint.exists() and progress:
            err_console.print(f"checkpoint {folder.checkpoint} found: resuming from it",
                              markup=False, highlight=False)
        with data_bar(progress) as prepare_bar, epoch_bar(progress) as bar:
            result = train_run(arch, name, folder, source, device, budget, config, bar, weights,
                               prepare_bar)
    if as_json:
        print(json.dumps(result.model_dump(mode="json")))
        return
    console.print(result_table(result))
    console.print(f"wrote {folder.path}/result.json, model.safetensors, spec.yaml, data.json")


@app.command()
def bench(
    spec: SpecArg,
    steps: Annotated[int, typer.Option(help="Timed training steps on each side.")] = 100,
    batch_size: BatchSize = 256,
    dataset: Dataset = None,
    data: DataPath = None,
    channels: Channels = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    book_workers: Annotated[int, typer.Option(
        help="DataLoader workers of the book's loop (the seed code uses 3).")] = 0,
    warmup: Annotated[int, typer.Option(help="Untimed steps before each timing.")] = 5,
    repeats: Annotated[int, typer.Option(help="Alternating runs of each; the best counts.")] = 3,
    threads: Threads = None,
    as_json: AsJson = False,
) -> None:
    """Training throughput of the nas engine against the book's DataLoader loop, same model."""
    from nas.bench import bench as run_bench
    from nas.device import cpu_threads, resolve_device
    from nas.io import load_spec
    from nas.train import TrainConfig

    if steps < 1 or repeats < 1 or warmup < 0 or book_workers < 0:
        raise UserError("--steps and --repeats must be at least 1, --warmup and "
                        "--book-workers at least 0")
    source = chosen_data(dataset, data)
    arch = load_spec(spec)
    with cpu_threads(threads), data_bar() as prepare_bar:
        result = run_bench(arch, steps, batch_size, source, data_dir, resolve_device(device),
                           book_workers, warmup, repeats, TrainConfig(), name=spec_name(spec),
                           channels=channels, progress=prepare_bar)
    if as_json:
        print(json.dumps(result.as_dict()))
        return
    table = Table(title=f"{result.spec}: {result.steps} steps of {result.batch_size} on "
                        f"{result.environment['device']} ({result.environment['threads']} "
                        f"threads)")
    for col in ("loop", "images/s"):
        table.add_column(col, justify="right" if col == "images/s" else "left")
    table.add_row("nas engine", f"{result.nas_images_per_second:,.0f}")
    table.add_row(f"book (DataLoader, {result.book_workers} workers)",
                  f"{result.book_images_per_second:,.0f}")
    table.add_section()
    table.add_row("speedup", f"{result.speedup:.2f}x")
    console.print(table)


__all__ = ["bench", "spec_name", "train"]
