"""Data commands: `nas data` (what nas sees in a data set), `nas predict` and `nas export-model`
(a trained run folder used on new images, or outside PyTorch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nas.cli.app import app, console, err_console
from nas.cli.progress import data_bar
from nas.errors import UserError

AsJson = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
SHOWN = 10  # unreadable files and duplicate groups listed by name (--json lists all)


@app.command("data")
def data_command(
    path: Annotated[str, typer.Argument(
        help="A folder (PATH/<class>/... or PATH/train/<class>/... with val/, test/), a "
             ".csv/.tsv of path,label[,split], or a built-in dataset's name.")],
    input_size: Annotated[int | None, typer.Option(
        help="The size to prepare the images at (default: their median shorter side, at most "
             "224).")] = None,
    channels: Annotated[int | None, typer.Option(
        help="1 (grey) or 3 (colour) (default: 3 when any image has colour).")] = None,
    prepare: Annotated[bool, typer.Option(
        help="Also decode every image now into the prepared cache (finds truncated files; "
             "later runs start without decoding).")] = False,
    as_json: AsJson = False,
) -> None:
    """What nas sees in a data set: classes and images per split, image sizes and modes,
    unreadable and ignored files, duplicates across splits, the input size and channels it
    would use, and whether the prepared cache exists. Reads file headers, not pixels."""
    from nas.data import inspect

    with data_bar(not as_json) as bar:
        report = inspect(path, input_size, channels, prepare, bar)
    if as_json:
        print(json.dumps(report))
    elif report["kind"] == "builtin":
        print_builtin(report)
    else:
        print_report(report)
    if report["problems"]:
        raise UserError(report["problems"][0])


def print_builtin(card: dict[str, Any]) -> None:
    """A built-in dataset's card."""
    console.print(f"{card['name']}: built-in, {card['num_classes']} classes "
                  f"({', '.join(card['classes'])}); {card['channels']} channel(s) at "
                  f"{card['input_size']} px; train {card['counts']['train']:,}, val "
                  f"{card['counts']['val']:,} (drawn by the split seed), test "
                  f"{card['counts']['test']:,}")


def print_report(r: dict[str, Any]) -> None:
    """The `nas data` report for people."""
    console.print(f"[bold]{r['source']}[/]: {r['layout']}, {r['num_classes']} classes, "
                  f"{r['images']:,} readable images", highlight=False)
    console.print(class_table(r))
    console.print(f"validation: {r['val']}", highlight=False)
    sizes = r["sizes"]
    if sizes.get("width"):
        console.print(f"image sizes (width x height): min {sizes['width'][0]}x"
                      f"{sizes['height'][0]}, median {sizes['width'][1]}x{sizes['height'][1]}"
                      f", max {sizes['width'][2]}x{sizes['height'][2]}; modes "
                      + ", ".join(f"{m} {n:,}" for m, n in r["modes"].items()), highlight=False)
    print_files(r)
    ch = "grey" if r["channels"] == 1 else "colour"
    console.print(f"would use: input size {r['input_size']} px (default {r['input_size_default']}"
                  f"), {r['channels']} channel(s) ({ch}; default {r['channels_default']})",
                  highlight=False)
    cache = r["cache"]
    if cache["exists"]:
        console.print(f"prepared cache: yes, {cache['path']} ({cache['bytes'] / 2**20:,.1f} MiB)",
                      highlight=False)
    else:
        console.print("prepared cache: no (the first search, train or `nas data --prepare` "
                      "decodes the images once)", highlight=False)
    read = r["read"]
    headers = f"{read['headers_read']:,} headers read" if read["headers_read"] else \
        "headers from the cache"
    hashed = f"{read['files_hashed']:,} files hashed (same byte size as another)" \
        if read["files_hashed"] else "duplicates from the cache or none to look for"
    console.print(f"read: {read['files_listed']:,} files listed, {headers}, {hashed}, "
                  f"{read['images_decoded']:,} images decoded", highlight=False)


def class_table(r: dict[str, Any]) -> Table:
    """Images per class and split, with totals."""
    splits = list(r["counts"])
    table = Table(show_edge=False)
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    for label in r["classes"]:
        table.add_row(label, *(f"{r['counts'][s].get(label, 0):,}" for s in splits))
    table.add_section()
    table.add_row("total", *(f"{sum(r['counts'][s].values()):,}" for s in splits))
    return table


def print_files(r: dict[str, Any]) -> None:
    """Unreadable and ignored files, and duplicates."""
    if r["unreadable"]:
        console.print(f"unreadable: {len(r['unreadable']):,} file(s), skipped", highlight=False)
        for name, reason in r["unreadable"][:SHOWN]:
            console.print(f"  {name}: {reason}", highlight=False, markup=False, soft_wrap=True)
        if len(r["unreadable"]) > SHOWN:
            console.print(f"  ... and {len(r['unreadable']) - SHOWN:,} more (--json lists all)")
    ignored = ", ".join(f"{n:,} {what}" for what, n in r["ignored"].items() if n)
    if ignored:
        console.print(f"ignored: {ignored}", highlight=False, markup=False)
    groups = r["duplicates"]
    if groups:
        what = "in more than one split (leakage)" if r["leaks"] else \
            "with the same content (they may land in both train and val)"
        console.print(f"duplicates: {len(groups):,} group(s) of files {what}", highlight=False)
        for group in groups[:SHOWN]:
            console.print("  " + " = ".join(f"{f} ({s})" for f, s in
                                            zip(group["files"], group["splits"])),
                          highlight=False, markup=False, soft_wrap=True)
    else:
        console.print("duplicates: none", highlight=False)


RunDir = Annotated[Path, typer.Argument(help="A run folder written by nas train.")]


@app.command()
def predict(
    run_dir: RunDir,
    images: Annotated[list[str], typer.Argument(help="Image files, or folders of them.")],
    top: Annotated[int, typer.Option(help="Labels shown per image.")] = 3,
    as_json: AsJson = False,
) -> None:
    """Each image's most likely labels with their probabilities, read exactly as the run's
    training images were (its data.json: size, channels, crop, normalisation)."""
    from nas.deploy import image_files, load_run
    from nas.deploy import predict as run_predict

    trained = load_run(run_dir)
    found, skipped = run_predict(trained, image_files(images), top)
    for path, reason in skipped:
        err_console.print(f"nas: skipped {path}: {reason}", markup=False, highlight=False,
                          soft_wrap=True)
    if as_json:
        print(json.dumps({"predictions": [p.as_dict() for p in found],
                          "skipped": [{"path": str(p), "reason": r} for p, r in skipped]}))
    else:
        for p in found:
            labels = "  ".join(f"{label} {prob:.3f}" for label, _, prob in p.top)
            console.print(f"{p.path}: {labels}", markup=False, highlight=False, soft_wrap=True)
    if not found:
        raise UserError("no image could be read")


@app.command("export-model")
def export_model(
    run_dir: RunDir,
    format_: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    out: Annotated[Path | None, typer.Option(
        help="The file to write (default: RUN_DIR/model.onnx or model.torchscript.pt); an "
             "existing file is never replaced.")] = None,
) -> None:
    """Write the run's model as ONNX or TorchScript: input 'images', the normalised float
    batch [N, C, S, S] (mean and std in data.json and the file's metadata), output 'logits'."""
    from nas.deploy import export_model as run_export
    from nas.deploy import load_run

    trained = load_run(run_dir)
    path = run_export(trained, format_, out)
    card, spec = trained.card, trained.spec
    console.print(f"wrote {path}: input images float32 [N, {spec.in_channels}, "
                  f"{spec.input_size}, {spec.input_size}] normalised with mean "
                  f"{card['mean']} and std {card['std']} (pixels / 255); output logits "
                  f"[N, {spec.num_classes}]", markup=False, highlight=False, soft_wrap=True)


__all__ = ["data_command", "export_model", "predict"]
