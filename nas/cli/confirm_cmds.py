"""`nas confirm`: retrain a study's front and a control group at a larger budget, several seeds."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nas.cli.app import app, console, err_console
from nas.cli.progress import interruptible
from nas.cli.study_cmds import StorageOpt, StudyOpt
from nas.errors import UserError

if TYPE_CHECKING:
    from nas.analysis.confirmation import ConfirmSummary


@app.command()
def confirm(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    top: Annotated[int | None, typer.Option(
        help="Front members to retrain, best first (default: up to 5).")] = None,
    control: Annotated[int | None, typer.Option(
        help="Other trained architectures of the study, chosen at random, as a control group "
             "(default: up to 5).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Epochs of each run (default: 4 on CPU, 30 on a GPU).")] = None,
    subset: Annotated[float | None, typer.Option(
        help="Fraction of the training split (default: 0.5 on CPU, all on a GPU).")] = None,
    seeds: Annotated[int | None, typer.Option(
        help="Training seeds per architecture (default: 2 on CPU, 3 on a GPU).")] = None,
    jobs: Annotated[int | None, typer.Option(
        help="Worker processes (default: one per GPU, or one per CPU core up to 4).")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads per worker.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    data_dir: Annotated[str | None, typer.Option(help="Where the dataset files are.")] = None,
    storage_retry: Annotated[float, typer.Option(
        help="Seconds to wait out a lost storage connection before stopping.")] = 300.0,
    max_failures: Annotated[int, typer.Option(
        help="Stop after this many consecutive failed runs.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="The findings as one JSON object.")] = (
        False),
) -> None:
    """Retrain the front and a control group at a larger budget with several seeds, into
    STUDY.confirm: rank agreement with the search, seed noise, the confirmed front and best."""
    from nas.analysis.confirmation import summarize
    from nas.device import auto_jobs, resolve_device
    from nas.search.confirm import ConfirmRequest, open_source, plan
    from nas.study import StudySettings, locate_study

    ref = locate_study(study, storage)
    req = ConfirmRequest(source=ref, top=top, control=control, epochs=epochs, subset=subset,
                         seeds=seeds, device=str(resolve_device(device)), threads=threads,
                         data_dir=data_dir, storage_retry=storage_retry,
                         max_failures=max_failures)
    jobs = auto_jobs(req.device) if jobs is None else jobs
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    req.check()
    plan(open_source(req), req)  # what cannot be confirmed is refused before anything starts
    with interruptible("the running runs are marked failed; the same command resumes the "
                       "confirmation"):
        linked, the_plan, source = run_with_progress(req, jobs, quiet=as_json)
    summary = summarize(source, linked)
    StudySettings(confirm_summary=summary.model_dump(mode="json")).write(linked)
    if as_json:
        print(json.dumps(summary.model_dump(mode="json")))
        return
    print_summary(summary)


def run_with_progress(req: Any, jobs: int, quiet: bool) -> tuple[Any, Any, Any]:
    """Runs the confirmation under a progress bar of runs; returns (linked, plan, source)."""
    from nas.search.confirm import confirm, open_source
    from nas.study import FINISHED

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console if quiet else console,
                  transient=quiet) as progress:
        task = progress.add_task("confirming", total=None)

        def poll(linked: Any) -> None:
            done = len(linked.get_trials(deepcopy=False, states=FINISHED))
            progress.update(task, completed=done)

        def on_start(linked: Any, the_plan: Any) -> None:
            b = the_plan.budget
            progress.console.print(
                f"[bold]confirm[/] {req.source.name} -> {linked.study_name}  "
                f"[bold]front[/] {len(the_plan.front)}  [bold]control[/] "
                f"{len(the_plan.control)}  [bold]seeds[/] {the_plan.seeds}  [bold]workers[/] "
                f"{jobs}")
            progress.console.print(f"[bold]budget[/] epochs={b['epochs']} subset={b['subset']} "
                                   f"batch_size={b['batch_size']} lr={b['lr']} "
                                   f"device={req.device}")
            progress.update(task, total=len(the_plan.jobs()))
            poll(linked)

        def notify(text: str) -> None:
            progress.console.print(f"  {text}", markup=False, highlight=False, soft_wrap=True)

        def on_event(event: Any) -> None:
            if event.state == "FAIL":
                notify(f"run {event.number}: failed ({event.reason or 'unknown'})")

        linked, the_plan = confirm(req, jobs, notify=notify, on_event=on_event, poll=poll,
                                   on_start=on_start)
    return linked, the_plan, open_source(req)


def print_summary(s: ConfirmSummary) -> None:
    """The architectures, then the findings, then what to run next."""
    table = Table(title=f"{s.confirm_study}: {s.runs_done} of {s.runs_total} runs "
                        f"(epochs {s.budget.get('epochs')}, subset {s.budget.get('subset')})")
    for col in ("trial", "group", "search acc", "confirmed acc", "± seeds", "confirmed front"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for a in sorted(s.architectures, key=lambda a: -(a.mean or 0)):
        table.add_row(str(a.trial), a.group, f"{a.search_accuracy:.4f}",
                      "-" if a.mean is None else f"{a.mean:.4f}",
                      "-" if a.std is None else f"{a.std:.4f}",
                      "yes" if a.on_confirmed_front else "")
    console.print(table)
    for c in (s.spearman, s.kendall):
        if c is not None:
            console.print(f"{c.statistic:<8} {c.value:+.3f}  95% CI [{c.low:+.3f}, "
                          f"{c.high:+.3f}]  (n={c.n}, search vs confirmed accuracy)")
    if s.note:
        console.print(s.note)
    if s.noise_std is not None:
        console.print(f"noise    seed std {s.noise_std:.4f} (pooled, {s.noise_dof} dof): two "
                      f"single runs closer than {1.96 * math.sqrt(2) * s.noise_std:.4f} cannot "
                      f"be told apart")
    console.print(f"front    kept {s.front_kept or '-'}  dropped {s.front_dropped or '-'}")
    if s.best is not None:
        console.print(f"best     trial {s.best.trial}: {s.best.mean:.4f} over "
                      f"{len(s.best.confirm_accuracies)} seed(s)")


__all__ = ["confirm"]
