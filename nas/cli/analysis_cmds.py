"""Design-space commands: analyze (rule tests), refine (a space with the rules that help),
fit-regnet (RegNet's width rule fitted to specs or to a study's models)."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from nas.cli.app import app, console, err_console
from nas.cli.study_cmds import StorageOpt, StudyOpt
from nas.errors import UserError

if TYPE_CHECKING:
    from nas.analysis.compare import RuleEffects
    from nas.analysis.regnet_fit import RegNetFit
    from nas.analysis.rules import Rule
    from nas.analysis.study import StudyAnalysis

CostOpt = Annotated[str, typer.Option(help="Match costs on: params or macs.")]
RulesOpt = Annotated[Path | None, typer.Option(
    help="A YAML file of your own rules, tested beside the built-in ones (docs/analysis.md).")]
NonRandomOpt = Annotated[bool, typer.Option(
    help="Analyse a study sampled by TPE, NSGA-II... (a warning instead of a refusal).")]


def warn(message: str | None) -> None:
    """One line on stderr."""
    if message:
        err_console.print(f"nas: warning: {message}", markup=False, highlight=False,
                          soft_wrap=True)


def user_rules(path: Path | None) -> list[Rule]:
    """The rules of --rules FILE, or none."""
    from nas.analysis.rules import load_rules

    return [] if path is None else load_rules(path)


def run_analysis(study: str | None, storage: str | None, cost: str, rules: list[Rule],
                 allow_nonrandom: bool) -> tuple[Any, StudyAnalysis]:
    """Open the study, check its sampler, test the rules; the study and the analysis."""
    from nas.analysis.study import analyse_study
    from nas.study import open_located

    _, loaded = open_located(study, storage)
    analysis = analyse_study(loaded, cost, rules)
    warn(analysis.sampler.require(allow_nonrandom))
    warn(analysis.stopped_warning())
    return loaded, analysis


def number(value: float) -> float | None:
    """A float for JSON: NaN becomes null."""
    return None if value is None or math.isnan(value) else float(value)


def effects_json(analysis: StudyAnalysis) -> dict[str, Any]:
    """The analysis as one JSON object."""
    effects = analysis.effects
    rows = []
    for row in effects.table.to_dict(orient="records"):
        rows.append({k: number(v) if isinstance(v, float) else v for k, v in row.items()})
    return {"study": analysis.study, "sampler": analysis.sampler.sampler,
            "warning": analysis.sampler.message, "stopped_early": analysis.stopped,
            "cost": effects.cost,
            "statistic": effects.statistic, "confidence": effects.confidence,
            "n_boot": effects.n_boot, "seed": effects.seed, "n_models": effects.n_models,
            "rules": rows}


def signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.4f}"


def effects_lines(effects: RuleEffects) -> list[str]:
    """The ranked rule table as fixed-width lines, then why untested rules were not tested."""
    table = effects.table
    width = max([len("rule"), *table["rule"].map(len)])
    level = f"{effects.confidence:.0%}"
    lines = [f"{'rule':<{width}}  {'verdict':<14}  {'effect':>8}  {level + ' interval':<20}  "
             f"{'satisfy':>7}  {'violate':>7}"]
    for r in table.itertuples():
        interval = "-" if math.isnan(r.low) else f"[{r.low:+.4f}, {r.high:+.4f}]"
        lines.append(f"{r.rule:<{width}}  {r.verdict:<14}  {signed(r.effect):>8}  "
                     f"{interval:<20}  {r.n_satisfied:>7}  {r.n_violated:>7}")
    what = "mean error" if effects.statistic == "mean" else f"error at {effects.statistic}"
    lines.append(f"effect: {what} of the models that violate a rule minus that of those that "
                 f"satisfy it, at matched {effects.cost}; positive: the rule's models err less.")
    lines += [f"{r.rule}: {r.verdict}: {r.reason}" for r in table.itertuples() if r.reason]
    return lines


@app.command()
def analyze(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    cost: CostOpt = "params",
    rules: RulesOpt = None,
    allow_nonrandom: NonRandomOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Which design rules help: errors of models that keep or break each, at matched cost."""
    extra = user_rules(rules)
    _, analysis = run_analysis(study, storage, cost, extra, allow_nonrandom)
    if as_json:
        print(json.dumps(effects_json(analysis)))
        return
    effects = analysis.effects
    print(f"study {analysis.study}: {effects.n_models} models trained to the full budget, "
          f"sampler {analysis.sampler.sampler or 'unknown'}; {effects.n_boot} bootstrap "
          f"resamples, seed {effects.seed}")
    print("\n".join(effects_lines(effects)))


@app.command()
def refine(
    out: Annotated[Path, typer.Option(help="The refined space file to write (.yaml).")],
    study: StudyOpt = None,
    storage: StorageOpt = None,
    cost: CostOpt = "params",
    rules: RulesOpt = None,
    allow_nonrandom: NonRandomOpt = False,
) -> None:
    """Write the study's space with the design rules that help applied as space rules."""
    from nas.analysis.refine import refine_space, refuse_existing, space_text, write_space
    from nas.analysis.rules import builtin_rules
    from nas.study import StudySettings

    refuse_existing(out)
    extra = user_rules(rules)
    loaded, analysis = run_analysis(study, storage, cost, extra, allow_nonrandom)
    definition = StudySettings.from_study(loaded).space_definition
    if definition is None:
        raise UserError(f"study {analysis.study} does not record its space definition (made by "
                        f"an older nas): nothing to refine")
    refinement = refine_space(definition, analysis.effects, builtin_rules() + extra, out.stem)
    name = analysis.study
    if not refinement.applied:
        left = "; ".join(f"{r}: {why}" for r, why in refinement.left_out)
        raise UserError(f"no rule that helps in study {name} can be applied to its space "
                        f"({left or 'none helps: see nas analyze'}); no file written")
    space = write_space(space_text(refinement, analysis.effects, f"study {name}"), out)
    for rule, kind, dim in refinement.applied:
        print(f"applied {kind}: {dim} ({rule})")
    for rule, why in refinement.left_out:
        print(f"left out {rule}: {why}")
    print(f"wrote {out} (space {space.name}, {space.size():,.0f} points)")
    where = f" --storage {shlex.quote(storage)}" if storage else ""
    print(f"next: nas search --space {out} --sampler random --no-early-stop --trials "
          f"{analysis.effects.n_models} --study {space.name}{where}")
    print(f"then: nas compare --study {name} --study {space.name}{where}")


class FitSource(NamedTuple):
    """A model to fit: how it is named on the terminal and in file names, its spec."""

    label: str  # "trial 4", or the spec as given
    file_stem: str  # "trial-0004", or the spec's name (as `nas export` names files)
    spec: Any
    accuracy: float | None


class Fitted(NamedTuple):
    """A model, its fit, the fitted RegNet spec and what the fit changed."""

    source: FitSource
    fit: RegNetFit
    regnet: Any
    changes: list[str]
    costs: tuple[tuple[int, int], tuple[int, int]]  # (params, MACs) of the source, the RegNet


def fit_json(fitted: Fitted) -> dict[str, Any]:
    """One fit as `nas fit-regnet --json` gives it."""
    from nas.analysis.regnet_fit import stage_plan

    (params, macs), (fit_params, fit_macs) = fitted.costs
    return {"source": fitted.source.label, "val_accuracy": fitted.source.accuracy,
            **fitted.fit.model_dump(mode="json"), "first_stride": fitted.regnet.first_stride,
            "source_stages": [list(s) for s in stage_plan(fitted.source.spec)],
            "source_params": params, "source_macs": macs, "params": fit_params,
            "macs": fit_macs, "changes": fitted.changes}


def fit_sources(sources: list[str], study: str | None, storage: str | None,
                top: int | None) -> list[FitSource]:
    """Each model to fit: a spec, or a study's trials."""
    from nas.cli.train_cmds import spec_name
    from nas.io import load_spec

    if study is None and storage is None:
        if top is not None:
            raise UserError("--top picks a study's models: give --study (or --storage)")
        if len(sources) != 1:
            raise UserError(f"give one spec file or preset to fit (got {len(sources)}), or "
                            f"--study with trial numbers or --top K")
        return [FitSource(sources[0], spec_name(sources[0]), load_spec(sources[0]), None)]
    from nas.analysis.study import pick_trials
    from nas.study import open_located

    numbers: list[int] = []
    for s in sources:
        if not s.isdigit():
            raise UserError(f"{s}: with --study, give trial numbers (or --top K)")
        if int(s) not in numbers:  # a number given twice is fitted once
            numbers.append(int(s))
    _, loaded = open_located(study, storage)
    return [FitSource(f"trial {t.number}", f"trial-{t.number:04d}",
                      load_spec(t.record.spec),  # type: ignore[arg-type]
                      t.record.val_accuracy if t.trained else None)
            for t in pick_trials(loaded, numbers, top)]


def fit_one(source: FitSource) -> Fitted:
    """The fit of one model, its RegNet spec, what changed and both costs."""
    from nas.analysis.regnet_fit import fit_changes, fit_spec, params_and_macs, regnet_spec
    from nas.io import parse_spec

    fit = fit_spec(source.spec)
    regnet = parse_spec(regnet_spec(fit, source.spec), f"the regnet fitted to {source.label}")
    costs = (params_and_macs(source.spec), params_and_macs(regnet))
    return Fitted(source, fit, regnet, fit_changes(source.spec, regnet), costs)


def change(before: int, after: int) -> str:
    """'same', or the relative change '+12.3 %'."""
    return "same" if before == after else f"{(after - before) / before:+.1%}"


def fit_lines(fitted: Fitted) -> list[str]:
    """What `nas fit-regnet` prints about one fit."""
    from nas.analysis.regnet_fit import stage_plan, stages_text

    f, acc = fitted.fit, fitted.source.accuracy
    (params, macs), (fit_params, fit_macs) = fitted.costs
    shown = "" if acc is None else f" (val acc {acc:.4f})"
    lines = [f"{fitted.source.label}{shown}: w0 {f.w0}  wa {f.wa:g}  wm {f.wm:g}  depth "
             f"{f.depth}  group width {f.group_width}  bottleneck ratio {f.bottleneck_ratio:g}  "
             f"first stride {fitted.regnet.first_stride}  e_fit {f.e_fit:.4f}",
             f"  stages (depth x width): source {stages_text(stage_plan(fitted.source.spec))}",
             f"                          regnet {stages_text(f.stages)}",
             f"  params:  source {params:,}  regnet {fit_params:,} ({change(params, fit_params)})",
             f"  MACs:    source {macs:,}  regnet {fit_macs:,} ({change(macs, fit_macs)})"]
    if not fitted.changes:
        return [*lines, "  changed: nothing (the RegNet is the same network)"]
    return lines + [f"  changed: {c}" for c in fitted.changes]


@app.command("fit-regnet")
def fit_regnet(
    source: Annotated[list[str] | None, typer.Argument(
        help="A spec file or preset; with --study, trial numbers.", show_default=False)] = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    top: Annotated[int | None, typer.Option(
        help="With --study: the K models of highest validation accuracy.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the fitted regnet spec to this file (or into this folder); with several "
             "models, a folder that gets one file per model, named as nas export names them "
             "(trial-0004-regnet-<hash>.yaml).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Fit RegNet's width rule to a spec, or to each of a study's chosen models; print the fit,
    both networks' params and MACs, and what the RegNet had to change."""
    from nas.io import save_spec

    if out is not None and out.exists() and not out.is_dir():  # refused before any fitting
        raise UserError(f"{out}: already exists; not overwriting")
    fits = [fit_one(s) for s in fit_sources(source or [], study, storage, top)]
    targets = fit_files(out, fits)
    written = [save_spec(f.regnet, path) for f, path in zip(fits, targets)]
    if as_json:
        print(json.dumps({"fits": [fit_json(f) for f in fits],
                          "out": [str(path) for path in written]}))
        return
    for f in fits:
        print("\n".join(fit_lines(f)))
    for f, path in zip(fits, written):
        console.print(f"wrote {path} (the regnet fitted to {f.source.label})", markup=False,
                      highlight=False)


def fit_file(fitted: Fitted) -> str:
    """trial-0004-regnet-<hash>.yaml, or <spec name>-regnet-<hash>.yaml (as `nas export`)."""
    return f"{fitted.source.file_stem}-regnet-{fitted.regnet.content_hash()}.yaml"


def fit_files(out: Path | None, fits: list[Fitted]) -> list[Path]:
    """Where each fitted spec goes: `out` itself for one model (or a file in it, when it is a
    folder), else one file per model in the folder `out`; refuses (before anything is written)
    a file that exists."""
    if out is None:
        return []
    if len(fits) == 1 and not out.is_dir():
        if out.exists():
            raise UserError(f"{out}: already exists; not overwriting (one model: --out is the "
                            f"spec file to write, or a folder)")
        return [out]
    if (out.exists() and not out.is_dir()) or out.suffix.lower() in (".yaml", ".yml", ".json"):
        raise UserError(f"--out {out}: {len(fits)} models need a folder (one spec file each), "
                        f"not a file")
    paths = [out / fit_file(f) for f in fits]
    taken = [p for p in paths if p.exists()]
    if taken:
        raise UserError(f"{taken[0]}: already exists; not overwriting")
    return paths


__all__ = ["analyze", "fit_regnet", "refine"]
