"""Design-space commands: analyze (rule tests), refine (a space with the rules that help),
fit-regnet (RegNet's width rule fitted to specs or to a study's models)."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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


def stages_text(stages: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> str:
    """'2x32 1x64 3x96' (depth x width per stage)."""
    return " ".join(f"{d}x{w}" for d, w in stages)


def fit_json(label: str, fit: RegNetFit, source: tuple[tuple[int, int], ...],
             accuracy: float | None) -> dict[str, Any]:
    return {"source": label, "val_accuracy": accuracy, **fit.model_dump(mode="json"),
            "source_stages": [list(s) for s in source]}


def fit_sources(sources: list[str], study: str | None, storage: str | None,
                top: int | None) -> list[tuple[str, Any, float | None]]:
    """(label, spec, val accuracy) of each model to fit: a spec, or a study's trials."""
    from nas.io import load_spec

    if study is None and storage is None:
        if top is not None:
            raise UserError("--top picks a study's models: give --study (or --storage)")
        if len(sources) != 1:
            raise UserError(f"give one spec file or preset to fit (got {len(sources)}), or "
                            f"--study with trial numbers or --top K")
        return [(sources[0], load_spec(sources[0]), None)]
    from nas.analysis.study import pick_trials
    from nas.study import open_located

    numbers: list[int] = []
    for s in sources:
        if not s.isdigit():
            raise UserError(f"{s}: with --study, give trial numbers (or --top K)")
        if int(s) not in numbers:  # a number given twice is fitted once
            numbers.append(int(s))
    _, loaded = open_located(study, storage)
    out = []
    for t in pick_trials(loaded, numbers, top):
        spec = load_spec(t.record.spec)  # type: ignore[arg-type]
        acc = t.record.val_accuracy if t.trained else None
        out.append((f"trial {t.number}", spec, acc))
    return out


@app.command("fit-regnet")
def fit_regnet(
    source: Annotated[list[str] | None, typer.Argument(
        help="A spec file or preset; with --study, trial numbers.", show_default=False)] = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    top: Annotated[int | None, typer.Option(
        help="With --study: the K models of highest validation accuracy.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the fitted regnet spec to this file; with several models, a folder that "
             "gets one file per model (trial-N-regnet.yaml).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Fit RegNet's width rule to a spec, or to each of a study's chosen models."""
    from nas.analysis.regnet_fit import fit_spec, regnet_spec, stage_plan
    from nas.io import parse_spec, save_spec

    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"{out}: already exists; not overwriting")
    fits = []
    for label, spec, acc in fit_sources(source or [], study, storage, top):
        fit = fit_spec(spec)
        fits.append((label, fit, stage_plan(spec), acc, regnet_spec(fit, spec)))
    targets = fit_files(out, [label for label, *_ in fits])
    written = [save_spec(parse_spec(data, f"the regnet fitted to {label}"), path)
               for (label, *_, data), path in zip(fits, targets)]
    if as_json:
        print(json.dumps({"fits": [fit_json(label, fit, plan, acc)
                                   for label, fit, plan, acc, _ in fits],
                          "out": [str(path) for path in written]}))
        return
    for label, fit, plan, acc, _ in fits:
        shown = "" if acc is None else f" (val acc {acc:.4f})"
        print(f"{label}{shown}: w0 {fit.w0}  wa {fit.wa:g}  wm {fit.wm:g}  depth {fit.depth}  "
              f"group width {fit.group_width}  bottleneck ratio {fit.bottleneck_ratio:g}  "
              f"e_fit {fit.e_fit:.4f}")
        print(f"  stages (depth x width): source {stages_text(plan)}")
        print(f"                          regnet {stages_text(fit.stages)}")
    for (label, *_), path in zip(fits, written):
        console.print(f"wrote {path} (the regnet fitted to {label})", markup=False,
                      highlight=False)


def fit_files(out: Path | None, labels: list[str]) -> list[Path]:
    """Where each fitted spec goes: `out` itself for one model, else one file per model in the
    folder `out`; refuses (before anything is written) a file that exists."""
    if out is None:
        return []
    if len(labels) == 1:
        if out.exists():
            raise UserError(f"{out}: already exists; not overwriting (one model: --out is the "
                            f"spec file to write)")
        return [out]
    if (out.exists() and not out.is_dir()) or out.suffix.lower() in (".yaml", ".yml", ".json"):
        raise UserError(f"--out {out}: {len(labels)} models need a folder (one spec file each), "
                        f"not a file")
    paths = [out / f"{label.replace(' ', '-')}-regnet.yaml" for label in labels]
    taken = [p for p in paths if p.exists()]
    if taken:
        raise UserError(f"{taken[0]}: already exists; not overwriting")
    return paths


__all__ = ["analyze", "fit_regnet", "refine"]
