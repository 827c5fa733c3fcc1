"""Study commands: dashboard, report, compare, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nas.cli.app import app, console
from nas.errors import UserError

StudyOpt = Annotated[str | None, typer.Option(
    help="Study name (default: the only study in the storage).")]
StorageOpt = Annotated[str | None, typer.Option(
    help="Optuna storage URL (default sqlite:///studies/<study>.db).")]


@app.command()
def dashboard(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless --expose).")] = (
        "127.0.0.1"),
    expose: Annotated[bool, typer.Option(
        help="Allow a non-loopback --host (the dashboard has no authentication).")] = False,
) -> None:
    """Serve optuna-dashboard on a study's storage and print its URL."""
    from nas.study import locate_study
    from nas.study.dashboard import check_host, serve

    check_host(host, expose)
    ref = locate_study(study, storage)

    def announce(url: str, masked: str) -> None:
        console.print(f"dashboard for study {ref.name} ({masked}): {url}", markup=False,
                      highlight=False, soft_wrap=True)
        console.print("press Ctrl-C to stop", markup=False)

    serve(ref, host, port, expose, announce)


@app.command()
def report(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    out: Annotated[Path | None, typer.Option(
        help="HTML file (default studies/<study>-report.html).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a file that is not a nas report.")] = (
        False),
) -> None:
    """Write a self-contained HTML report: Pareto front, history, importances, error EDF."""
    from nas.report import report_html, write_page
    from nas.study import open_located

    ref, loaded = open_located(study, storage)
    target = out or Path("studies") / f"{loaded.study_name}-report.html"
    write_page(report_html(loaded, ref.url), target, overwrite)
    console.print(f"wrote {target}", markup=False, highlight=False)


@app.command()
def compare(
    study: Annotated[list[str], typer.Option(help="A study to compare; give two or more.")],
    storage: Annotated[list[str] | None, typer.Option(
        help="One storage URL for all studies, or one per --study in order.")] = None,
    cost: Annotated[str, typer.Option(help="Match on: params, macs or latency.")] = "params",
    out: Annotated[Path | None, typer.Option(
        help="HTML file (default studies/compare-<A>-<B>.html).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a file that is not a nas page.")] = (
        False),
) -> None:
    """Overlay the error EDFs of studies, restricted to the cost range they all cover."""
    from nas.report import compare_frames, compare_html, trials_frame, write_page
    from nas.study import load_study, locate_study, mask_url

    refs = [locate_study(name, url) for name, url in zip(study, pair_storages(study, storage))]
    frames = {ref.name: trials_frame(load_study(ref)) for ref in refs}
    comparison = compare_frames(frames, cost)
    masked = {ref.name: mask_url(ref.url) for ref in refs}
    target = out or Path("studies") / f"compare-{'-'.join(study)}.html"
    write_page(compare_html(comparison, masked), target, overwrite)
    for row in comparison.counts.itertuples():
        console.print(f"{row.study}: {row.in_range} of {row.total} trained trials in range",
                      markup=False, highlight=False)
    console.print(f"wrote {target}", markup=False, highlight=False)


def pair_storages(studies: list[str], storages: list[str] | None) -> list[str | None]:
    """One storage per study: none (defaults), one shared, or one each."""
    storages = storages or []
    if len(studies) < 2 or len(set(studies)) != len(studies):
        raise UserError("give two or more different studies (--study A --study B)")
    if len(storages) in (0, 1):
        return [storages[0] if storages else None] * len(studies)
    if len(storages) != len(studies):
        raise UserError(f"{len(storages)} --storage for {len(studies)} --study: give one for "
                        f"all or one per study")
    return list(storages)


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Folder for the spec files and manifest.json.")],
    study: StudyOpt = None,
    storage: StorageOpt = None,
    pareto: Annotated[bool, typer.Option(help="The study's Pareto front (the default).",
                                         show_default=False)] = False,
    best: Annotated[bool, typer.Option(help="The trial of highest accuracy.")] = False,
    trial: Annotated[list[int] | None, typer.Option(help="A trial number (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an earlier export in --out: the spec files its manifest.json lists and "
             "the manifest are removed, files of the same name replaced; nothing else in the "
             "folder (runs/, your own files) is touched.")] = False,
) -> None:
    """Write chosen trials as spec files plus a manifest with the `nas train` command of each."""
    from nas.study import open_located
    from nas.study.export import MANIFEST, export_trials, select_trials

    ref, loaded = open_located(study, storage)
    selection, trials = select_trials(loaded, pareto, best, trial or [])
    manifest = export_trials(loaded, trials, out, selection, ref.url, overwrite)
    for entry in manifest["trials"]:
        acc = entry["val_accuracy"]
        shown = "untrained" if acc is None else f"val acc {acc:.4f}"
        console.print(f"trial {entry['number']}: {out / entry['file']} ({shown})",
                      markup=False, highlight=False)
        # the search's budget, seed and data split: a plain `nas train FILE` uses train's
        # defaults and does not repeat the trial
        console.print(f"  retrain: {entry['train_command']}", markup=False, highlight=False,
                      soft_wrap=True)
    console.print(f"wrote {out / MANIFEST} (the retrain commands are in it too)", markup=False,
                  highlight=False)
