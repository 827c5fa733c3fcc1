"""Plotly figures of rule tests, each drawn only from the frames of a RuleEffects."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from nas.analysis.compare import SIDES, TESTED, RuleEffects
from nas.analysis.spaces import SpaceComparison

SIDE_COLORS = dict(zip(SIDES, qualitative.Plotly[:2]))
VERDICT_COLORS = {"helps": "#2ca02c", "hurts": "#d62728", "no evidence": "#7f7f7f"}
STATISTIC_LABELS = {"mean": "mean error"}


def statistic_label(statistic: str) -> str:
    """'mean error', or 'error at percentile 25' for q25."""
    if statistic in STATISTIC_LABELS:
        return STATISTIC_LABELS[statistic]
    return f"error at percentile {statistic[1:]}"


def tested(effects: RuleEffects) -> pd.DataFrame:
    """The table's rows with an effect and an interval."""
    return effects.table[effects.table["verdict"].isin(TESTED)]


def edf_step(edf: pd.DataFrame, name: str, color: str, legend: bool) -> go.Scatter:
    """One normalised EDF as a step line."""
    return go.Scatter(x=edf["error"].tolist(), y=edf["fraction"].tolist(), mode="lines",
                      line={"shape": "hv", "color": color}, name=name, legendgroup=name,
                      showlegend=legend,
                      hovertemplate="error %{x:.4f}<br>fraction %{y:.3f}<extra>%{fullData.name}"
                                    "</extra>")


def empty_figure(title: str, note: str) -> go.Figure:
    """A titled figure that says why it has nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, height=260, xaxis_visible=False, yaxis_visible=False)
    return fig


def height(rows: int) -> int:
    """Pixels for `rows` rows of small multiples (about 90 px between rows for their titles)."""
    return 120 + 300 * rows


def rule_edf_figure(effects: RuleEffects, columns: int = 3) -> go.Figure:
    """Small multiples: per tested rule, the normalised error EDFs of both sides."""
    title = (f"Error EDFs of models that satisfy / violate each rule, reweighted to the same "
             f"{effects.cost} distribution")
    rows = tested(effects)
    if rows.empty:
        return empty_figure(title, "no rule could be tested on these models")
    cols = min(columns, len(rows))
    nrows = math.ceil(len(rows) / cols)
    titles = [f"{r.rule}: {r.verdict} ({r.n_satisfied} vs {r.n_violated})"
              for r in rows.itertuples()]
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.05, vertical_spacing=90 / height(nrows))
    for i, rule in enumerate(rows["rule"]):
        row, col = divmod(i, cols)
        edf = effects.edfs[effects.edfs["rule"] == rule]
        for side in SIDES:
            fig.add_trace(edf_step(edf[edf["side"] == side], side, SIDE_COLORS[side], i == 0),
                          row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="validation error", row=row + 1, col=col + 1)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="cumulative fraction", col=1)
    fig.update_layout(title=title, height=height(nrows), hoverlabel={"align": "left"})
    return fig


def rule_effect_figure(effects: RuleEffects) -> go.Figure:
    """Forest plot: each tested rule's effect with its bootstrap interval, largest on top."""
    label = statistic_label(effects.statistic)
    title = (f"Effect of each rule on the {label} at matched {effects.cost} "
             f"({effects.confidence:.0%} bootstrap interval; > 0: the rule's models err less)")
    rows = tested(effects)
    if rows.empty:
        return empty_figure(title, "no rule could be tested on these models")
    fig = go.Figure()
    for name, group in rows.groupby("verdict", sort=False):
        group = group.iloc[::-1]
        fig.add_trace(go.Scatter(
            x=group["effect"].tolist(), y=group["rule"].tolist(), mode="markers", name=str(name),
            marker={"color": VERDICT_COLORS[str(name)], "size": 10},
            error_x={"type": "data", "symmetric": False,
                     "array": (group["high"] - group["effect"]).tolist(),
                     "arrayminus": (group["effect"] - group["low"]).tolist()},
            customdata=group[["low", "high", "n_satisfied", "n_violated"]].to_numpy().tolist(),
            hovertemplate="%{y}<br>effect %{x:.4f}<br>interval [%{customdata[0]:.4f}, "
                          "%{customdata[1]:.4f}]<br>n %{customdata[2]} satisfy, "
                          "%{customdata[3]} violate<extra>%{fullData.name}</extra>"))
    fig.add_vline(x=0, line={"color": "black", "dash": "dot"})
    fig.update_yaxes(categoryorder="array", categoryarray=rows["rule"].tolist()[::-1])
    fig.update_layout(title=title, xaxis_title=f"{label} of violators - of satisfiers",
                      height=max(300, 120 + 40 * len(rows)))
    return fig


def space_edf_figure(comparison: SpaceComparison) -> go.Figure:
    """Each space's normalised error EDF, on the cost bins every space shares."""
    fig = go.Figure()
    colors = qualitative.Plotly
    means = comparison.summary.set_index("space")
    for i, (space, edf) in enumerate(comparison.edfs.groupby("space", sort=False)):
        row = means.loc[space]
        name = (f"{space}: mean {row['mean_error']:.4f} [{row['low']:.4f}, {row['high']:.4f}], "
                f"{row['matched']} of {row['models']} models")
        fig.add_trace(edf_step(edf, name, colors[i % len(colors)], True))
    fig.update_layout(
        title=f"Normalised error EDFs at matched {comparison.cost} ({comparison.shared_bins} of "
              f"{comparison.bins} log-cost bins shared by every space); up and left is better",
        xaxis_title="validation error", yaxis_title="cumulative fraction", height=520,
        yaxis_range=[0, 1.02], legend={"yanchor": "bottom", "y": 0.02, "xanchor": "right",
                                       "x": 0.98})
    return fig
