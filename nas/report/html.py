"""Self-contained HTML pages: plotly.js inline, each figure's JSON in its own script tag."""

from __future__ import annotations

import datetime as dt
import html
import math
import shlex
from pathlib import Path

import optuna
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from nas.analysis.confirmation import ConfirmSummary
from nas.analysis.figures import rule_edf_figure, rule_effect_figure
from nas.errors import UserError
from nas.report import figures
from nas.report.confirmation import confirmation_frame, linked_summary, within_noise
from nas.report.frames import (
    Comparison,
    edf_frame,
    evaluated,
    format_cost,
    history_frame,
    importance_data,
    study_costs,
    study_info,
    trials_frame,
)
from nas.study import StudySettings, StudyTrial, study_trials
from nas.study.storage import default_storage, mask_url

GENERATOR = "nas report"
MARKER = f'<meta name="generator" content="{GENERATOR}">'
STYLE = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;"
         "border-bottom:1px solid #ddd;text-align:right}th{background:#f4f4f4}"
         ".note{color:#555;font-style:italic}")
BOOT = ("document.querySelectorAll('script.nas-figure').forEach(function(s){"
        "var f=JSON.parse(s.textContent);"
        "Plotly.newPlot(s.dataset.target,f.data,f.layout,{responsive:true,displaylogo:false});});")
EDF_NOTE = ("Each point is a distinct architecture trained to the full budget (pruned, failed, "
            "over-budget and reused trials left out). The RegNet EDF assumes random sampling; "
            "a TPE or NSGA-II study over-samples good regions, so compare studies run with the "
            "same sampler.")


def figure_block(fig: go.Figure, key: str) -> str:
    """A div and the figure's JSON in a script tag (parsed and drawn by BOOT)."""
    data = pio.to_json(fig, validate=False).replace("</", "<\\/")
    return (f'<div id="fig-{key}" class="nas-plot"></div>\n<script type="application/json" '
            f'class="nas-figure" id="fig-{key}-data" data-target="fig-{key}">{data}</script>')


def page(title: str, body: list[str]) -> str:
    """A whole HTML document with plotly.js inline (opens offline)."""
    stamp = dt.datetime.now().isoformat(timespec="seconds")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', MARKER,
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>',
        f"<h1>{html.escape(title)}</h1>", *body,
        f'<p class="note">written by nas on {stamp}</p>', f"<script>{BOOT}</script>",
        "</body></html>", ""])


def table(frame: pd.DataFrame) -> str:
    """A small HTML table (values escaped; floats to 4 significant digits)."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:,.4g}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r) + "</tr>"
                   for r in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{rows}</table>"


def summary_block(study: optuna.Study, trials: list[StudyTrial]) -> str:
    """The study's space, objectives, budget and trial counts."""
    info = study_info(study, trials)
    rows = [("space", info["space"]), ("objectives", ", ".join(info["objectives"])),
            *info["budget"].items(), ("nas version", info["nas_version"]),
            ("trials", ", ".join(f"{s} {n}" for s, n in info["states"].items()) or "none"),
            ("of which", f"over budget {info['over_budget']}, reused {info['reused']}")]
    return table(pd.DataFrame(rows, columns=["setting", "value"]))


def front_table(frame: pd.DataFrame, summary: ConfirmSummary | None = None) -> str:
    """The study's own Pareto front (over all its objectives) as a table; once a confirmation
    measured the seed noise, neighbours it cannot tell apart are marked."""
    front = frame[frame["on_front"]].sort_values("val_accuracy", ascending=False)
    if front.empty:
        return '<p class="note">no trained feasible trial yet: no front</p>'
    cols = ["number", "family", "val_accuracy", "params", "macs", "latency_ms", "spec_hash"]
    shown = front[cols].rename(columns={"number": "trial", "val_accuracy": "val acc",
                                        "latency_ms": "latency ms", "spec_hash": "hash"})
    shown = shown.astype({"params": "Int64", "macs": "Int64"}).astype(object)
    note = ""
    if summary is not None and summary.noise is not None:
        close = within_noise(front["val_accuracy"].tolist(), summary.noise)
        shown["≈ neighbour"] = ["≈" if c else "" for c in close]
        note = (f'<p class="note">≈: within the seed noise of a neighbour on the front (noise '
                f"{summary.noise_std:.4f} from {html.escape(summary.confirm_study)}): the "
                f"search cannot order these two.</p>")
    return table(shown.where(shown.notna(), "")) + note


def confirmation_block(summary: ConfirmSummary | None, study: str,
                       storage: str | None = None) -> list[str]:
    """The confirmation section: findings, search against confirmed accuracy, the table.
    `storage`: the study's URL when it is not the default one (shown masked)."""
    if summary is None:
        where = ["--storage", mask_url(storage)] if storage else []
        command = html.escape(shlex.join(["nas", "confirm", "--study", study, *where]),
                              quote=False)
        return ["<h2>Confirmation</h2>", f'<p class="note">not confirmed yet: <code>{command}'
                "</code> retrains the front and a control group at a larger budget with "
                "several seeds, and tells how far this ranking can be trusted.</p>"]
    frame = confirmation_frame(summary)
    findings = [("runs", f"{summary.runs_done} of {summary.runs_total}"),
                ("budget", ", ".join(f"{k} {v}" for k, v in summary.budget.items()))]
    for c in (summary.spearman, summary.kendall):
        if c is not None:
            findings.append((c.statistic, f"{c.value:+.3f} [{c.low:+.3f}, {c.high:+.3f}] "
                                          f"(n={c.n})"))
    if summary.noise_std is not None:
        findings.append(("seed noise", f"{summary.noise_std:.4f} ({summary.noise_dof} dof)"))
    findings += [("front kept", ", ".join(map(str, summary.front_kept)) or "-"),
                 ("front dropped", ", ".join(map(str, summary.front_dropped)) or "-")]
    if summary.best is not None:
        findings.append(("confirmed best", f"trial {summary.best.trial}: "
                                           f"{summary.best.mean:.4f}"))
    blocks = ["<h2>Confirmation</h2>",
              table(pd.DataFrame(findings, columns=["finding", "value"]))]
    if frame["confirmed_accuracy"].notna().any():
        blocks.append(figure_block(figures.confirm_figure(frame, summary.noise_std), "confirm"))
    blocks.append(table(frame.astype(object).where(frame.notna(), "")))
    return blocks


def note(text: str) -> str:
    """A paragraph in the note style (text escaped)."""
    return f'<p class="note">{html.escape(text)}</p>'


def effects_table(frame: pd.DataFrame) -> str:
    """The rule table: rule, verdict, effect and interval, models on each side, why untested."""
    shown = frame[["rule", "verdict", "effect", "low", "high", "n_satisfied", "n_violated",
                   "reason"]].rename(columns={"n_satisfied": "satisfy", "n_violated": "violate",
                                              "reason": "why not tested"})
    return table(shown.astype(object).where(shown.notna(), ""))


def rules_section(study: optuna.Study, trials: list[StudyTrial]) -> list[str]:
    """Design rules: the rule table and its figures, or a note saying why there are none."""
    from nas.analysis.models import sampler_check
    from nas.analysis.study import analyse_study

    check = sampler_check(StudySettings.from_study(study), study.study_name)
    if check.random is False:  # before the bootstrap, which would be thrown away
        return [note(f"No rule tests: {check.message}. Run the space again with "
                     f"--sampler random to test design rules.")]
    cost = next((c for c in study_costs(study) if c in ("params", "macs")), "params")
    try:
        analysis = analyse_study(study, cost, trials=trials)
    except UserError as e:  # too few models: one line, as `nas analyze` says it
        return [note(f"No rule tests: {e}.")]
    check = analysis.sampler
    if check.random is False:
        return [note(f"No rule tests: {check.message}. Run the space again with "
                     f"--sampler random to test design rules.")]
    effects = analysis.effects
    intro = (f"Does following a design rule lower the error at the same {cost}? For each rule, "
             f"the models that keep it and those that break it, reweighted to the same "
             f"{cost} distribution; effect = mean error of violators - of satisfiers, with a "
             f"{effects.confidence:.0%} bootstrap interval ({effects.n_boot} resamples). "
             f"nas analyze prints this table; nas refine writes the space with the rules "
             f"that help. See docs/analysis.md.")
    warnings = [note(f"Warning: {w}.") for w in (check.message, analysis.stopped_warning()) if w]
    return [note(intro), *warnings,
            effects_table(effects.table),
            figure_block(rule_effect_figure(effects), "rule-effects"),
            figure_block(rule_edf_figure(effects), "rule-edfs")]


def report_html(study: optuna.Study, storage: str | None = None) -> str:
    """The whole report of one study; `storage`, its URL, is named in the commands it suggests
    when it is not the study's default."""
    trials = study_trials(study)  # read once; every section is drawn from these
    frame = trials_frame(study, trials)
    importances = importance_data(trials, frame)
    done = evaluated(frame)
    imp = (f'<p class="note">{html.escape(importances.note)}</p>' if importances.note
           else figure_block(figures.importance_figure(importances), "importance"))
    confirmation = linked_summary(study)
    return page(f"nas study {study.study_name}", [
        summary_block(study, trials),
        "<h2>Pareto front</h2>",
        '<p class="note">Lines: for each cost, the trials no other trial beats on both accuracy '
        "and that cost. Hover a point for its spec. The table lists the study's front over "
        "all its objectives.</p>",
        figure_block(figures.pareto_figure(frame, study_costs(study)), "pareto"),
        front_table(frame, confirmation),
        *confirmation_block(confirmation, study.study_name,
                            None if storage in (None, default_storage(study.study_name))
                            else storage),
        "<h2>Optimisation history</h2>",
        figure_block(figures.history_figure(history_frame(frame)), "history"),
        "<h2>Parameter importances</h2>", imp,
        "<h2>EDF of errors</h2>", f'<p class="note">{EDF_NOTE}</p>',
        figure_block(figures.edf_figure(edf_frame(done["error"]), study.study_name), "edf"),
        "<h2>Design rules</h2>", *rules_section(study, trials),
    ])


def compare_html(comparison: Comparison, urls: dict[str, str]) -> str:
    """The EDF comparison page of several studies."""
    counts = comparison.counts.rename(columns={"in_range": "trials in range",
                                               "total": "trained trials"})
    counts.insert(1, "storage", [urls[s] for s in counts["study"]])
    span = f"[{format_cost(comparison.low)}, {format_cost(comparison.high)}]"
    caveat = (" Latency was measured on each study's own machine; compare only studies run on "
              "the same one." if comparison.cost == "latency" else "")
    return page("nas compare: " + ", ".join(comparison.counts["study"]), [
        table(counts),
        f'<p class="note">Each study is restricted to the {comparison.cost} range all studies '
        f"cover, {span}, as in Radosavovic et al. 2020; a curve further up and left is a better "
        f"design space.{caveat} {EDF_NOTE}</p>",
        figure_block(figures.compare_figure(comparison), "compare"),
    ])


def is_nas_page(path: Path) -> bool:
    """Whether a file starts like a page this module wrote."""
    try:
        with path.open("rb") as f:
            return MARKER.encode() in f.read(512)
    except OSError:
        return False


def write_page(text: str, out: Path, overwrite: bool = False) -> Path:
    """Writes the page; replaces an earlier nas page, refuses any other file unless asked."""
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give a file name ending in .html")
    if out.exists() and not overwrite and not is_nas_page(out):
        raise UserError(f"{out}: exists and is not a nas report; not overwriting "
                        f"(use --overwrite or another --out)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror}") from None
    return out
