"""Search commands: search, spaces (dashboard, report, compare, export live in study_cmds)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nas.cli.app import app, console, err_console
from nas.cli.progress import interruptible
from nas.cli.train_cmds import Channels, DataPath
from nas.errors import UserError
from nas.search.samplers import SAMPLERS

if TYPE_CHECKING:
    import optuna

    from nas.pool import TrialEvent
    from nas.search.request import SearchRequest


@app.command()
def search(
    space: Annotated[str, typer.Option(help="A shipped space name (nas spaces) or a path.")],
    trials: Annotated[int | None, typer.Option(
        help="Target of trained trials in the study (a rerun resumes up to it; default: 50, "
             "or none with --time).")] = None,
    time: Annotated[str | None, typer.Option(
        "--time", help="Search time of the study, e.g. 90s, 30m, 2h: no trial starts after it, "
                       "running ones stop at their next epoch and are continued by the next "
                       "run (runs add up; a rerun with more time resumes).")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: the space's).")] = None,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL (default sqlite:///studies/<study>.db).")] = None,
    sampler: Annotated[str, typer.Option(help=f"One of {', '.join(SAMPLERS)}. tpe fits "
                                         "past 400 finished trials to a uniform sample of 400 "
                                         "and the Pareto front (its cost stays flat).")] = "tpe",
    objectives: Annotated[str, typer.Option(
        help="accuracy or balanced_accuracy (mean per-class recall, for imbalanced classes), "
             "then any of params, macs, latency (comma-separated).")] = "accuracy,params",
    max_params: Annotated[int | None, typer.Option(help="Infeasible above this.")] = None,
    max_macs: Annotated[int | None, typer.Option(help="Infeasible above this.")] = None,
    max_memory: Annotated[str | None, typer.Option(
        help="Infeasible when a trial's training memory is above this (e.g. 2GiB, 500MB); "
             "default: what the device has free.")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", "--max-epochs", help="Epochs per trial (with --min-epochs: the last rung).")
    ] = None,
    min_epochs: Annotated[int | None, typer.Option(
        help="Multi-fidelity: judge trials at rungs of min-epochs x eta^k epochs and stop all "
             "but the top 1/eta there (MOASHA's rule on accuracy and cost).")] = None,
    eta: Annotated[int | None, typer.Option(
        help="Multi-fidelity: each rung keeps 1/eta of the trials (default: 3).")] = None,
    brackets: Annotated[int | None, typer.Option(
        help="Multi-fidelity: Hyperband brackets, each starting one rung later (default: 1)."
    )] = None,
    subset: Annotated[float | None, typer.Option(help="Fraction of the training split.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="fashion-mnist (default), mnist or cifar10.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where the dataset files are.")] = None,
    data: DataPath = None,
    input_size: Annotated[int | None, typer.Option(
        help="The side images are prepared at and networks take (default: the space's, the "
             "dataset's, or your images' median shorter side within the space's input_sizes; "
             "printed).")] = None,
    channels: Channels = None,
    augment: Annotated[str | None, typer.Option(
        help="none, flip or crop-flip, on the device (default: the data's: crop-flip for your "
             "images up to 64 px, flip above; none for Fashion-MNIST).")] = None,
    stem: Annotated[str | None, typer.Option(
        help="Replace the space's stem (simple, imagenet, small) to search inputs of another "
             "size: the space becomes <space>-<stem>-stem, a study of its own.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of data split, init, sampler.")] = None,
    sampler_seed: Annotated[int | None, typer.Option(
        help="Seed of the sampler alone (default: --seed): other searches of the same "
             "networks, data split and initial weights.")] = None,
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
    proxies: Annotated[bool, typer.Option(
        help="Record each trained trial's zero-cost proxies (synflow, naswot, jacob_cov, snip, "
             "grad_norm) from one batch before training; see nas proxies.")] = True,
    prescreen: Annotated[int | None, typer.Option(
        help="Each trial draws K new candidates and trains the one --prescreen-proxy ranks "
             "best.")] = None,
    prescreen_proxy: Annotated[str, typer.Option(
        help="The zero-cost proxy that ranks --prescreen candidates.")] = "naswot",
    as_json: Annotated[bool, typer.Option(
        "--json", help="The outcome as one JSON object on stdout (progress on stderr).")] = False,
) -> None:
    """Search a space: sample specs, train each briefly, record all in an Optuna study.

    --trials counts trials that trained a model of their own (to the end or stopped early);
    trials refused by a cost limit and reused results are counted apart."""
    from nas.device import auto_jobs, resolve_device
    from nas.search.request import SearchRequest, check_request
    from nas.search.space import load_space
    from nas.sizes import parse_duration, parse_memory_option

    time_s = None if time is None else parse_duration(time)
    trials = 50 if trials is None and time_s is None else trials
    if data is not None and dataset is not None:
        raise UserError("give --data or --dataset, not both (--data also takes a built-in name)")
    searched = load_space(space)
    if stem is not None:
        searched = searched.with_stem(stem)
    req = SearchRequest(
        space=searched, trials=trials, study=study, storage=storage, sampler=sampler,
        objectives=tuple(o.strip() for o in objectives.split(",") if o.strip()),
        dataset=data or dataset, data_dir=data_dir, input_size=input_size, channels=channels,
        augment=augment, epochs=epochs, subset=subset,
        batch_size=batch_size, lr=lr, seed=seed, sampler_seed=sampler_seed,
        max_params=max_params, max_macs=max_macs,
        max_memory=parse_memory_option(max_memory),
        device=str(resolve_device(device)), early_stop=early_stop, max_failures=max_failures,
        threads=threads, storage_retry=storage_retry, time_s=time_s, min_epochs=min_epochs,
        eta=eta, brackets=brackets, proxies=proxies, prescreen=prescreen,
        prescreen_proxy=prescreen_proxy,
    )
    check_request(req)  # before the progress bar, the storage or any worker
    jobs = auto_jobs(req.device) if jobs is None else jobs
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    with interruptible("the running trial is marked failed; the same command resumes the "
                       "study"):
        result = run_with_progress(req, jobs, quiet=as_json)
    if as_json:
        print(json.dumps(outcome(result, req)))
        return
    print_front(result, req)


def run_with_progress(req: SearchRequest, jobs: int, quiet: bool = False) -> optuna.Study:
    """Runs the search under a progress bar (on stderr when `quiet`); a line per trial that
    failed, or did not train a model of its own."""
    from nas.search.request import describe_settings
    from nas.search.work import SearchClock, search

    shown = err_console if quiet else console
    clock: list[SearchClock] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=shown, transient=quiet) as progress:
        task = progress.add_task("starting", total=req.trials)

        def poll(st: optuna.Study) -> None:
            from nas.study import study_trials, trained_count

            trials = study_trials(st)
            done = trained_count(st)
            left = clock[0].left() if clock else None
            progress.update(task, completed=min(done, req.trials or done),
                            description=progress_line(trials, left))

        def on_start(st: optuna.Study, settings: dict[str, Any]) -> None:
            say(progress, f"study {req.study_name}  space {req.space.name}  objectives "
                          f"{','.join(req.objectives)}  sampler {req.sampler}  workers {jobs}")
            say(progress, f"settings {describe_settings(settings, req)}")
            poll(st)

        def on_event(event: TrialEvent) -> None:
            line = event_line(event)
            if line:
                say(progress, line)

        def notify(text: str) -> None:  # a storage outage, once however many workers see it
            say(progress, f"  {text}")

        preparing: dict[str, Any] = {}

        def prepare(phase: str, done: int, total: int) -> None:  # user images, decoded once
            if "task" not in preparing:
                preparing["task"] = progress.add_task(phase, total=total or None)
            progress.update(preparing["task"], description=phase, completed=done,
                            total=total or None)
            if total and done >= total:
                progress.remove_task(preparing.pop("task"))

        return search(req, jobs, on_start=on_start, on_event=on_event, poll=poll,
                      notify=notify, clock=clock, progress=prepare)


def say(progress: Progress, text: str) -> None:
    """A line above the progress bar, as is (no markup, never wrapped inside a word)."""
    progress.console.print(text, markup=False, highlight=False, soft_wrap=True)


def event_line(event: TrialEvent) -> str:
    """The line a trial earns as it ends: failures with their reason, and trials that trained
    no model of their own; nothing for a trial that trained (the bar shows those)."""
    if event.state == "FAIL":
        detail = f": {event.detail}" if event.detail and event.detail not in event.reason else ""
        return f"  trial {event.number}: failed ({event.reason or 'unknown'}{detail})"
    if event.reused:
        return f"  trial {event.number}: {event.reason}"
    return ""


KIND_LABELS = {"trained": "trained", "early_stopped": "early stopped",
               "time_up": "cut by time",
               "over_budget": "over budget", "reused": "reused", "failed": "failed",
               "running": "running", "waiting": "queued"}


def progress_line(trials: list[Any], left: float | None = None) -> str:
    """'best acc 0.8730 (trial 12) | over budget 3 | 12m00s left' for the progress bar."""
    from nas.sizes import format_duration
    from nas.study import best, count_kinds

    found = best(trials)
    head = "trials" if found is None else \
        f"best acc {found.record.val_accuracy:.4f} (trial {found.number})"
    counts = count_kinds(trials)
    extra = [f"{KIND_LABELS[kind]} {counts[kind]}"
             for kind in ("early_stopped", "time_up", "over_budget", "reused", "failed")
             if counts[kind]]
    if left is not None:
        extra.append(f"{format_duration(left)} left" if left > 0 else "time up")
    return " | ".join([head, *extra])


def outcome(study: optuna.Study, req: SearchRequest) -> dict[str, Any]:
    """The search's outcome for --json: counts by kind, the front, the best trial."""
    from nas.study import best, count_kinds, mask_url, study_front, study_trials, trained_count

    trials = study_trials(study)
    found = best(trials)

    def row(t: Any) -> dict[str, Any]:
        r = t.record
        return {"trial": t.number, "family": r.family, "val_accuracy": r.val_accuracy,
                "params": r.params, "macs": r.macs, "latency_ms": r.latency_ms,
                "epochs": r.epochs_run, "hash": r.spec_hash}

    from nas.study.record import search_spans, spent_seconds

    return {"study": study.study_name, "storage": mask_url(req.storage_url),
            "target": req.trials, "trained": trained_count(study), "counts": count_kinds(trials),
            "time_s": req.time_s,
            "search_seconds": round(spent_seconds(search_spans(study.user_attrs)), 1),
            "front": [row(t) for t in study_front(study)],
            "best": None if found is None else row(found)}


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
    console.print(counts_line(study, req.trials), markup=False, highlight=False,
                  soft_wrap=True)
    where = "" if req.storage is None else f" --storage '{mask_url(req.storage_url)}'"
    name = study.study_name
    out = f"studies/{name}-pareto"
    for line in (f"dashboard: nas dashboard --study {name}{where}",
                 f"report:    nas report --study {name}{where}",
                 f"export:    nas export --study {name}{where} --pareto --out {out}",
                 *([f"confirm:   nas confirm --study {name}{where}  (the front retrained at a "
                    "larger budget with several seeds)"] if confirmation is None else [])):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def counts_line(study: optuna.Study, target: int | None) -> str:
    """'trained 41 of 50 | early stopped 9 | over budget 4 | failed 2 (invalid_spec 2)'."""
    from nas.study import count_kinds, study_trials, trained_count

    counts = count_kinds(study_trials(study))
    of = "" if target is None else f" of {target}"
    parts = [f"trained {trained_count(study)}{of} (to the end {counts['trained']}, "
             f"early stopped {counts['early_stopped']})"]
    if counts["time_up"]:
        parts.append(f"cut by time {counts['time_up']} (the next run of the search continues "
                     f"them)")
    parts += [f"{KIND_LABELS[kind]} {counts[kind]}"
              for kind in ("over_budget", "reused", "running", "waiting") if counts[kind]]
    if counts["failed"]:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(counts["failed_by_reason"].items()))
        parts.append(f"failed {counts['failed']} ({reasons})")
    return " | ".join(parts)


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
    for col in ("space", "family", "input px", "points", "dimensions", "description"):
        table.add_column(col)
    for name in space_files():
        s = load_space(name)
        size = s.size()
        shown = "continuous" if math.isinf(size) else f"{size:,.0f}"
        sizes = "any" if s.input_sizes is None else f"{s.input_sizes[0]}-{s.input_sizes[1]}"
        table.add_row(name, s.family, sizes, shown, ", ".join(s.dimensions), s.description)
    console.print(table)
