"""Training commands: train (a spec on real data, into a run directory) and bench."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nas.cli.app import app, console, err_console
from nas.cli.spec_cmds import SpecArg, with_input_size
from nas.errors import UserError
from nas.io import load_spec, save_spec

RUN_FILES = ("result.json", "model.safetensors", "spec.yaml", "checkpoint.pt")

Epochs = Annotated[int, typer.Option(help="Training epochs.")]
Dataset = Annotated[str, typer.Option(help="fashion-mnist, mnist or cifar10.")]
DataDir = Annotated[Path | None, typer.Option(help="Read the dataset from this folder.")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")]
BatchSize = Annotated[int, typer.Option(help="Training batch size.")]
Threads = Annotated[int | None, typer.Option(help="CPU threads (default: torch's).")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


def spec_name(spec: str) -> str:
    """A preset's name, or a spec file's stem."""
    path = Path(spec)
    return path.stem if path.suffix in (".yaml", ".yml", ".json") else path.name


def default_out(name: str, arch: Any, seed: int) -> Path:
    """studies/runs/<spec-name>-<hash>-s<seed>, relative to the working directory (as search's
    studies/ is)."""
    return Path("studies") / "runs" / f"{name}-{arch.content_hash()[:8]}-s{seed}"


def prepare_out(out: Path, overwrite: bool) -> Path:
    """Refuses a directory holding a result unless `overwrite` (which clears the run files)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if (out / "result.json").exists():
        if not overwrite:
            raise UserError(f"{out}: already holds a result; pass --overwrite or --out DIR")
    if overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_weights(model: Any, path: Path) -> None:
    """The state_dict as safetensors (contiguous CPU copies; channels_last undone)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def result_table(result: dict[str, Any]) -> Table:
    """The final figures of a run, one per row."""
    table = Table(title=f"{result['spec']} on {result['dataset']} (seed {result['seed']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    test = result["test_accuracy"]
    rows = [
        ("val accuracy", f"{result['val_accuracy']:.4f}"),
        ("test accuracy", "-" if test is None else f"{test:.4f}"),
        ("params", f"{result['params']:,}"), ("MACs", f"{result['macs']:,}"),
        (f"latency (batch {result['latency_batch_size']})", f"{result['latency_ms']:.2f} ms"),
        ("training images/s", f"{result['images_per_second']:,.0f}"),
        ("peak training memory", f"{result['peak_memory_bytes'] / 2**20:,.1f} MiB "
                                 f"({result['memory_source']})"),
        ("epochs / steps", f"{result['epochs_run']} / {result['steps']}"),
        ("wall time", f"{result['wall_time_s']:.1f} s"),
        ("stopped", result["stopped"] or "-"), ("device", result["device"]),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@app.command()
def train(
    spec: SpecArg,
    epochs: Epochs = 2,
    dataset: Dataset = "fashion-mnist",
    subset: Annotated[float, typer.Option(help="Fraction of the training split used.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of initial weights, order, augmentation.")] = 0,
    split_seed: Annotated[int, typer.Option(
        help="Seed of the validation split (fixed, so runs compare on the same images).")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Run directory (default studies/runs/<spec>-<hash>-s<seed>).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run in --out.")] = False,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: by "
                                                  "optimizer, scaled with batch size).")] = None,
    batch_size: BatchSize = 256,
    optimizer: Annotated[str, typer.Option(help="sgd (Nesterov momentum) or adamw.")] = "sgd",
    schedule: Annotated[str, typer.Option(help="onecycle, cosine or constant.")] = "onecycle",
    weight_decay: Annotated[float, typer.Option(help="On conv/linear weights.")] = 5e-4,
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy smoothing.")] = 0.0,
    augment: Annotated[bool | None, typer.Option(
        help="Random crop + flip (default: on for cifar10 only).")] = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    time_limit: Annotated[float | None, typer.Option(help="Training wall-time limit, s.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    input_size: Annotated[int | None, typer.Option(help="Override the spec's input size "
                                                        "(batches are resized to it).")] = None,
    threads: Threads = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: AsJson = False,
) -> None:
    """Train a spec, write DIR/result.json, spec.yaml and model.safetensors; resumes a run
    interrupted in the same DIR."""
    from nas.train import Budget, TrainConfig

    arch = with_input_size(load_spec(spec), input_size)
    name = spec_name(spec)
    run_dir = prepare_out(out or default_out(name, arch, seed), overwrite)
    budget = Budget(epochs=epochs, max_steps=max_steps, subset=subset, time_limit_s=time_limit,
                    batch_size=batch_size)
    config = TrainConfig(optimizer=check_choice(optimizer, "optimizer", ("sgd", "adamw")),
                         lr=lr, schedule=check_choice(schedule, "schedule",
                                                      ("onecycle", "cosine", "constant")),
                         weight_decay=weight_decay, label_smoothing=label_smoothing,
                         augment=augment, compile=compile_model, seed=seed, threads=threads)
    result = train_run(arch, name, run_dir, (dataset, data_dir, split_seed), device, budget,
                       config, progress)
    if as_json:
        print(json.dumps(result))
        return
    console.print(result_table(result))
    console.print(f"wrote {run_dir}/result.json, model.safetensors, spec.yaml")


def check_choice(value: str, option: str, choices: tuple[str, ...]) -> Any:
    """`value` if it is one of `choices`, else a one-line UserError."""
    if value not in choices:
        raise UserError(f"--{option} {value}: expected one of {', '.join(choices)}")
    return value


def train_run(arch: Any, name: str, run_dir: Path, source: tuple[str, Path | None, int],
              device_name: str, budget: Any, config: Any, progress: bool) -> dict[str, Any]:
    """Loads data, trains, measures; writes the run directory; returns result.json's content."""
    from nas.cost import measure
    from nas.data import load_data
    from nas.train import fit, latency_ms, model_input_size, resolve_device, seeded_build

    device = resolve_device(device_name)
    dataset, data_dir, split_seed = source
    data = load_data(dataset, data_dir, device, seed=split_seed)
    model = seeded_build(arch, config.seed)
    model_input_size(model, data)  # channel/class mismatches fail before any work
    cost = measure(model, arch.in_channels, arch.input_size)
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists() and progress:
        err_console.print(f"resuming from {checkpoint}")
    fitted = fit(model, data, budget, config, evaluate_test=True, progress=progress,
                 checkpoint_path=checkpoint)
    latency = latency_ms(model, (arch.in_channels, arch.input_size, arch.input_size), device)
    result = {
        "spec": name, "family": arch.family, "hash": arch.content_hash(), "dataset": data.name,
        **{k: v for k, v in fitted.as_dict().items() if k != "curve"},
        **cost.as_dict(), "latency_ms": latency, "latency_batch_size": 1,
        "curve": fitted.as_dict()["curve"], "weights": "model.safetensors",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget": asdict(budget),
    }
    result["peak_memory_bytes"] = fitted.peak_memory_bytes  # training, not cost's forward peak
    result["forward_peak_memory_bytes"] = cost.peak_memory_bytes
    save_weights(model, run_dir / "model.safetensors")
    save_spec(arch, run_dir / "spec.yaml", overwrite=True)
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    checkpoint.unlink(missing_ok=True)
    return result


@app.command()
def bench(
    spec: SpecArg,
    steps: Annotated[int, typer.Option(help="Timed training steps on each side.")] = 100,
    batch_size: BatchSize = 256,
    dataset: Dataset = "fashion-mnist",
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
    from nas.train import TrainConfig, cpu_threads, resolve_device

    if steps < 1 or repeats < 1 or warmup < 0 or book_workers < 0:
        raise UserError("--steps and --repeats must be at least 1, --warmup and "
                        "--book-workers at least 0")
    arch = load_spec(spec)
    with cpu_threads(threads):
        result = run_bench(arch, steps, batch_size, dataset, data_dir, resolve_device(device),
                           book_workers, warmup, repeats, TrainConfig(), name=spec_name(spec))
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


__all__ = ["bench", "default_out", "prepare_out", "spec_name", "train"]
