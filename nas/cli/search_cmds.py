"""Search commands: search, spaces (dashboard, report, compare, export live in study_cmds)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nas.cli.app import app, console, err_console
from nas.errors import Terminated, UserError
from nas.search.samplers import SAMPLERS

if TYPE_CHECKING:
    import optuna

    from nas.search.run import SearchRequest


@app.command()
def search(
    space: Annotated[str, typer.Option(help="A shipped space name (nas spaces) or a path.")],
    trials: Annotated[int, typer.Option(help="Target of finished trials in the study.")] = 50,
    study: Annotated[str | None, typer.Option(help="Study name (default: the space's).")] = None,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL (default sqlite:///studies/<study>.db).")] = None,
    sampler: Annotated[str, typer.Option(help=f"One of {', '.join(SAMPLERS)}.")] = "tpe",
    objectives: Annotated[str, typer.Option(
        help="accuracy, then any of params, macs, latency (comma-separated).")] = "accuracy,params",
    max_params: Annotated[int | None, typer.Option(help="Infeasible above this.")] = None,
    max_macs: Annotated[int | None, typer.Option(help="Infeasible above this.")] = None,
    max_memory: Annotated[str | None, typer.Option(
        help="Infeasible when a trial's training memory is above this (e.g. 2GiB, 500MB); "
             "default: what the device has free.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per trial.")] = None,
    subset: Annotated[float | None, typer.Option(help="Fraction of the training split.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="fashion-mnist (default), mnist or cifar10.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where the dataset files are.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of data split, init, sampler.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    early_stop: Annotated[bool, typer.Option(help="Stop clearly worse trials early.")] = True,
    max_failures: Annotated[int, typer.Option(
        help="Stop after this many consecutive failed trials.")] = 5,
    jobs: Annotated[int | None, typer.Option(
        help="Worker processes (default: one per GPU, or one per CPU core up to 4).")] = None,
    threads: Annotated[int, typer.Option(
        help="CPU threads per worker; separate workers use cores better than threads "
             "for small networks.")] = 1,
    storage_retry: Annotated[float, typer.Option(
        help="Seconds to wait out a lost storage connection (server restart, network blip) "
             "before stopping; 0: stop at once.")] = 300.0,
) -> None:
    """Search a space: sample specs, train each briefly, record all in an Optuna study."""
    from nas.device import auto_jobs, resolve_device
    from nas.search.run import SearchRequest, check_request
    from nas.search.space import load_space
    from nas.search.workers import unwind_on_sigterm
    from nas.sizes import parse_memory_option

    req = SearchRequest(
        space=load_space(space), trials=trials, study=study, storage=storage, sampler=sampler,
        objectives=tuple(o.strip() for o in objectives.split(",") if o.strip()),
        dataset=dataset, data_dir=data_dir, epochs=epochs, subset=subset,
        batch_size=batch_size, lr=lr, seed=seed, max_params=max_params, max_macs=max_macs,
        max_memory=parse_memory_option(max_memory),
        device=str(resolve_device(device)), early_stop=early_stop, max_failures=max_failures,
        threads=threads, storage_retry=storage_retry,
    )
    check_request(req)  # before the progress bar, the storage or any worker
    jobs = auto_jobs(req.device) if jobs is None else jobs
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    unwind_on_sigterm()
    try:
        run_with_progress(req, jobs)
    except KeyboardInterrupt as e:  # click would turn it into exit 1; the user wants 130/143
        terminated = isinstance(e, Terminated)
        err_console.print(f"nas: {'terminated' if terminated else 'interrupted'}: the running "
                          "trial is marked failed; the same command resumes the study")
        raise typer.Exit(143 if terminated else 130) from None


def run_with_progress(req: SearchRequest, jobs: int) -> None:
    """Runs the search under a progress bar, then prints the front."""
    from nas.search.run import describe_budget, run_search, trial_reason
    from nas.search.workers import run_workers
    from nas.study import FINISHED, TrialRecord, finished_count

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("starting", total=req.trials)

        def poll(st: optuna.Study) -> None:
            progress.update(task, completed=min(finished_count(st), req.trials),
                            description=best_line(st))

        def on_start(st: optuna.Study, budget: dict[str, Any]) -> None:
            progress.console.print(f"[bold]study[/] {req.study_name}  [bold]space[/] "
                                   f"{req.space.name}  [bold]objectives[/] "
                                   f"{','.join(req.objectives)}  [bold]sampler[/] {req.sampler}"
                                   f"  [bold]workers[/] {jobs}")
            progress.console.print(f"[bold]budget[/] {describe_budget(budget, req)}")
            poll(st)

        def on_trial(st: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            poll(st)
            reused = TrialRecord.from_trial(trial).reused_from is not None
            if trial.state not in FINISHED or reused:
                progress.console.print(f"  trial {trial.number}: {trial.state.name.lower()} "
                                       f"({trial_reason(trial)})", markup=False,
                                       highlight=False)

        def notify(text: str) -> None:  # a storage outage, once however many workers see it
            progress.console.print(f"  {text}", markup=False, highlight=False)

        if jobs == 1:
            result = run_search(req, on_trial=on_trial, on_start=on_start, notify=notify)
        else:
            result = run_workers(req, jobs, poll=poll, on_start=on_start, notify=notify)
    print_front(result, req)


def best_line(study: optuna.Study) -> str:
    """'best acc 0.873 (trial 12)' for the progress bar."""
    from nas.study import best, study_trials

    found = best(study_trials(study))
    if found is None:
        return "trials"
    return f"best acc {found.record.val_accuracy:.4f} (trial {found.number})"


def print_front(study: optuna.Study, req: SearchRequest) -> None:
    """The Pareto front (or best trials) as a table, then what to run next."""
    from nas.report.confirmation import linked_summary, within_noise
    from nas.study import mask_url, study_front

    rows = study_front(study)
    confirmation = linked_summary(study)  # the seed noise, once `nas confirm` measured it
    noise = confirmation.noise if confirmation else None
    close = within_noise([t.record.val_accuracy or 0.0 for t in rows], noise)
    multi = len(study.directions) > 1
    table = Table(title=f"{'Pareto front' if multi else 'Best trials'} of {study.study_name}")
    columns = ("trial", "family", "val acc", *(("≈",) if noise is not None else ()), "params",
               "MACs", "latency ms", "epochs", "hash")  # ≈ once nas confirm measured the noise
    for col in columns:
        table.add_column(col, justify="left" if col in ("family", "hash") else "right",
                         no_wrap=True)
    for t, near in zip(rows, close):
        r = t.record
        mark = ("≈" if near else "",) if noise is not None else ()
        table.add_row(str(t.number), r.family or "?", f"{r.val_accuracy or 0:.4f}", *mark,
                      human(r.params or 0), human(r.macs or 0),
                      f"{r.latency_ms if r.latency_ms is not None else math.nan:.2f}",
                      str(r.epochs_run or ""), (r.spec_hash or "")[:8])
    console.print(table)
    if noise is not None:
        console.print(f"≈: within the seed noise ({noise.pooled:.4f}, measured by nas confirm) "
                      f"of a neighbour: the search cannot order them")
    states = [t.state for t in study.get_trials(deepcopy=False)]
    console.print(" ".join(f"{s.name.lower()} {states.count(s)}" for s in sorted(
        set(states), key=lambda s: s.value)))
    where = "" if req.storage is None else f" --storage '{mask_url(req.storage_url)}'"
    name = study.study_name
    console.print(f"dashboard: nas dashboard --study {name}{where}")
    console.print(f"report:    nas report --study {name}{where}")
    out = f"studies/{name}-pareto"
    console.print(f"export:    nas export --study {name}{where} --pareto --out {out}")
    if confirmation is None:
        console.print(f"confirm:   nas confirm --study {name}{where}  (the front retrained at a "
                      f"larger budget with several seeds)")


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


@app.command()
def spaces() -> None:
    """List the shipped search spaces with family, size and description."""
    from nas.search.space import load_space, space_files

    table = Table()
    for col in ("space", "family", "size", "dimensions", "description"):
        table.add_column(col)
    for name in space_files():
        s = load_space(name)
        size = s.size()
        shown = "continuous" if math.isinf(size) else f"{size:,.0f}"
        table.add_row(name, s.family, shown, ", ".join(s.dimensions), s.description)
    console.print(table)
