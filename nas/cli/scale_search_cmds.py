"""`nas scale-search`: the grid search for the compound scaling constants (alpha, beta, gamma)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nas.cli.app import app, console, err_console
from nas.cli.progress import interruptible
from nas.cli.search_cmds import human
from nas.errors import UserError

GridValues = Annotated[str | None, typer.Option(
    help="Values on the grid: a list (1.1,1.2) or a range START:STOP:STEP, ends included.",
    show_default=False)]


@app.command("scale-search")
def scale_search(
    study: Annotated[str, typer.Option(help="The study holding one trial per triple.")],
    base: Annotated[str | None, typer.Option(
        help="The spec to scale (file or preset; mbconv or efficientnet family); a rerun may "
             "leave it out.")] = None,
    phi: Annotated[float | None, typer.Option(
        help="Scale each triple's network at this phi (default: 1, as in the paper).")] = None,
    alphas: GridValues = None,
    betas: GridValues = None,
    gammas: GridValues = None,
    grid: Annotated[str | None, typer.Option(
        help="Explicit triples instead: 'alpha,beta,gamma;alpha,beta,gamma'.")] = None,
    tolerance: Annotated[float | None, typer.Option(
        help="Keep triples with |alpha x beta^2 x gamma^2 - 2| at most this (default: 0.1).")
    ] = None,
    points: Annotated[int | None, typer.Option(
        help="Train at most this many of the kept triples, evenly spread over them.")] = None,
    family_up_to: Annotated[int, typer.Option(
        help="Show the best triple's family for phi 0 (the base) to this.")] = 3,
    epochs: Annotated[int | None, typer.Option(
        help="Epochs per triple (default: nas search's: 2 on a CPU, 10 on a GPU).")] = None,
    subset: Annotated[float | None, typer.Option(
        help="Fraction of the training split (default: 0.25 on a CPU, all on a GPU).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the data split and init.")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="fashion-mnist (default), mnist or cifar10; batches are resized to each "
             "network's input size.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where the dataset files are.")] = None,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL (default sqlite:///studies/<study>.db).")] = None,
    jobs: Annotated[int | None, typer.Option(
        help="Worker processes (default: one per GPU, or one per CPU core up to 4).")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads per worker.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    storage_retry: Annotated[float, typer.Option(
        help="Seconds to wait out a lost storage connection before stopping.")] = 300.0,
    max_failures: Annotated[int, typer.Option(
        help="Stop after this many consecutive failed trials.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="The results as one JSON object.")] = (
        False),
) -> None:
    """Grid search for the compound scaling constants (Tan & Le 2019): each triple (alpha,
    beta, gamma) with alpha x beta^2 x gamma^2 close to 2 scales --base at --phi and is trained
    as one trial of STUDY (resumable: a rerun trains only what is missing; parallel: --jobs);
    ends with the table of triples, the best (accuracy, then fewer MACs) and the scaled family
    it implies."""
    from nas.device import auto_jobs, resolve_device
    from nas.search.scale_search import (
        ScaleRequest,
        family,
        make_plan,
        recorded_settings,
        summarize,
    )
    from nas.study import mask_url

    if family_up_to < 0:
        raise UserError(f"--family-up-to must be 0 or more, got {family_up_to}")
    req = ScaleRequest(study=study, storage=storage, base=base, phi=phi, alphas=alphas,
                       betas=betas, gammas=gammas, grid=grid, tolerance=tolerance,
                       points=points, dataset=dataset, data_dir=data_dir, epochs=epochs,
                       subset=subset, batch_size=batch_size, lr=lr, seed=seed,
                       device=str(resolve_device(device)), threads=threads,
                       storage_retry=storage_retry, max_failures=max_failures)
    req.check()
    jobs = auto_jobs(req.device) if jobs is None else jobs
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    make_plan(req, recorded_settings(req))  # what cannot be run is refused before anything starts
    with interruptible("the running trials are marked failed; the same command resumes the "
                       "scale search"):
        found, the_plan = run_with_progress(req, jobs, quiet=as_json)
    from nas.cli.scale_cmds import costed

    result = summarize(found, the_plan)
    result["storage"] = mask_url(req.storage_url)
    result["base_costs"] = costed(_spec(the_plan.base))
    result["family"], result["family_note"] = ([], None) if result["best"] is None else \
        family(the_plan, result["best"], family_up_to, costed)
    if as_json:
        print(json.dumps(result))
        return
    print_result(result, req)


def _spec(data: dict[str, Any]) -> Any:
    from nas.io import parse_spec

    return parse_spec(data, "the base")


def run_with_progress(req: Any, jobs: int, quiet: bool) -> tuple[Any, Any]:
    """Runs the scale search under a progress bar of triples; returns (study, plan)."""
    from nas.search.scale_search import scale_search, triple_of
    from nas.study import study_trials

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console if quiet else console,
                  transient=quiet) as progress:
        task = progress.add_task("training triples", total=None)
        wanted: set[Any] = set()

        def poll(study: Any) -> None:
            done = {triple_of(t.record) for t in study_trials(study)
                    if t.state.name == "COMPLETE"}
            progress.update(task, completed=len(done & wanted))

        def say(text: str) -> None:
            progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

        def on_start(study: Any, the_plan: Any, queued: int) -> None:
            g, b = the_plan.grid, the_plan.budget
            wanted.update(t.key for t in the_plan.triples)
            say(f"scale-search {study.study_name}  base {the_plan.base_name}  phi "
                f"{the_plan.phi:g}  workers {jobs}")
            capped = f", {len(g.triples)} spread over them (--points)" \
                if len(g.triples) < g.kept else ""
            say(f"grid: {g.kept} of {g.candidates} triples have |alpha x beta^2 x gamma^2 - 2| "
                f"<= {g.tolerance:g}{capped}: " + " ".join(t.text() for t in g.triples))
            say(f"budget dataset={b['dataset']} epochs={b['epochs']} subset={b['subset']} "
                f"batch_size={b['batch_size']} lr={b['lr']:g} seed={b['seed']} "
                f"device={req.device}")
            say(f"queued {queued} triple(s); {len(g.triples) - queued} already trained, queued "
                f"or running")
            progress.update(task, total=len(g.triples))
            poll(study)

        def on_event(event: Any) -> None:
            if event.state == "FAIL":
                say(f"  trial {event.number}: failed ({event.reason or 'unknown'})")
            elif event.reused:
                say(f"  trial {event.number}: {event.reason}")

        return scale_search(req, jobs, notify=lambda text: say(f"  {text}"),
                            on_event=on_event, poll=poll, on_start=on_start)


def print_result(result: dict[str, Any], req: Any) -> None:
    """The triples, the best, the family it implies, then what to run next."""
    b, counts = result["budget"], result["counts"]
    table = Table(title=f"{result['study']}: {counts['trained']} of {counts['triples']} triples "
                        f"trained ({result['base']} at phi {result['phi']:g}; epochs "
                        f"{b['epochs']}, subset {b['subset']})")
    for col in ("trial", "alpha", "beta", "gamma", "a·b²·g²", "input px", "val acc", "params",
                "MACs", ""):
        table.add_column(col, justify="left" if not col else "right", no_wrap=True)
    best = result["best"]
    for row in sorted(result["triples"], key=lambda r: -(r["val_accuracy"] or -1)):
        acc = row["val_accuracy"]
        shown = f"{acc:.4f}" if row["state"] == "COMPLETE" and acc is not None else \
            row["state"].lower() + (f" ({row['reason']})" if row["reason"] else "")
        note = "best" if best is not None and row["trial"] == best["trial"] else \
            (f"same network as trial {row['reused_from']}" if row["reused_from"] is not None
             else "")
        table.add_row("-" if row["trial"] is None else str(row["trial"]), f"{row['alpha']:g}",
                      f"{row['beta']:g}", f"{row['gamma']:g}", f"{row['product']:.3f}",
                      str(row["input_size"]), shown,
                      "-" if row["params"] is None else human(row["params"]),
                      "-" if row["macs"] is None else human(row["macs"]), note)
    console.print(table)
    if best is None:
        console.print("no triple trained yet: nothing to scale", markup=False)
        return
    console.print(f"best: alpha {best['alpha']:g}, beta {best['beta']:g}, gamma "
                  f"{best['gamma']:g} (trial {best['trial']}): val acc "
                  f"{best['val_accuracy']:.4f}, {human(best['params'] or 0)} params, "
                  f"{human(best['macs'] or 0)} MACs", markup=False, highlight=False)
    fam = Table(title=f"the family of {result['base']} by ({best['alpha']:g}, {best['beta']:g}, "
                      f"{best['gamma']:g}): depth x alpha^phi, width x beta^phi, resolution x "
                      f"gamma^phi")
    for col in ("phi", "width_mult", "depth_mult", "input px", "stages (depth x width)",
                "params", "MACs"):
        fam.add_column(col, justify="left" if col.startswith("stages") else "right")
    for m in result["family"]:
        fam.add_row(str(m["phi"]), f"{m['width_mult']:.4g}", f"{m['depth_mult']:.4g}",
                    str(m["input_size"]), " ".join(f"{d}x{w}" for d, w in m["stages"]),
                    f"{m['params']:,}", f"{m['macs']:,}")
    console.print(fam)
    if result["family_note"]:
        console.print(f"the family ends at {result['family_note']}", markup=False,
                      highlight=False, soft_wrap=True)
    where = "" if req.storage is None else f" --storage '{result['storage']}'"
    name = result["study"]
    for line in (f"report: nas report --study {name}{where}",
                 f"export: nas export --study {name}{where} --best --out studies/{name}-best",
                 f"scale:  nas scale {result['base']} --phi 2 --alpha {best['alpha']:g} --beta "
                 f"{best['beta']:g} --gamma {best['gamma']:g}"):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


__all__ = ["scale_search"]
