"""Plotly figures, each drawn from one frame of nas.report.frames (no study access here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from nas.report.frames import (
    COST_COLUMNS,
    Comparison,
    Importances,
    evaluated,
    format_cost,
    front_frame,
    spec_text,
)
from nas.study import COST_LABELS

FRONT_TRACE = "Pareto front"
HOVER = ("trial %{{customdata[0]}}<br>val acc %{{y:.4f}}<br>{cost} %{{x:,.4g}}"
         "<br><br>%{{customdata[1]}}<extra>%{{fullData.name}}</extra>")


def family_colors(families: list[str]) -> dict[str, str]:
    """A stable colour per family (sorted order)."""
    palette = qualitative.Plotly
    return {f: palette[i % len(palette)] for i, f in enumerate(sorted(families))}


def scatter(points: pd.DataFrame, cost: str, name: str, **style: object) -> go.Scatter:
    """Accuracy against one cost, hover with trial number and spec. Columns go in as arrays:
    plotly validates and copies a list element by element (seconds at 5,000 trials)."""
    texts = points["spec_text"] if "spec_text" in points else points["spec"].map(spec_text)
    custom = np.empty((len(points), 2), dtype=object)
    custom[:, 0] = points["number"].astype(int).tolist()
    custom[:, 1] = texts.tolist()
    return go.Scatter(x=points[COST_COLUMNS[cost]].to_numpy(dtype=float),
                      y=points["val_accuracy"].to_numpy(dtype=float), name=name,
                      customdata=custom, hovertemplate=HOVER.format(cost=COST_LABELS[cost]),
                      **style)


def pareto_figure(frame: pd.DataFrame, costs: list[str]) -> go.Figure:
    """Accuracy against each cost: evaluated trials by family, and the 2-D Pareto front."""
    fig = make_subplots(rows=1, cols=len(costs), shared_yaxes=True, horizontal_spacing=0.04)
    points = evaluated(frame)
    points = points.assign(spec_text=points["spec"].map(spec_text))  # once, not per cost
    colors = family_colors(points["family"].unique().tolist())
    for col, cost in enumerate(costs, start=1):
        for family, group in points.groupby("family", sort=True):
            fig.add_trace(scatter(group, cost, str(family), mode="markers", legendgroup=family,
                                  showlegend=col == 1, marker={"color": colors[family]}),
                          row=1, col=col)
        fig.add_trace(scatter(front_frame(frame, cost), cost, FRONT_TRACE, mode="lines+markers",
                              line={"shape": "hv", "color": "black"}, legendgroup="front",
                              showlegend=col == 1, marker={"symbol": "circle-open", "size": 11}),
                      row=1, col=col)
        fig.update_xaxes(title_text=COST_LABELS[cost], type="log", row=1, col=col)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(title="Accuracy against cost (Pareto front per cost)", height=480,
                      hoverlabel={"align": "left"})
    return fig


def history_figure(history: pd.DataFrame) -> go.Figure:
    """Validation accuracy by trial number, and the best so far."""
    fig = go.Figure()
    numbers = history["number"].to_numpy()  # arrays: plotly checks a list item by item
    fig.add_trace(go.Scatter(x=numbers, y=history["val_accuracy"].to_numpy(dtype=float),
                             mode="markers", name="trial"))
    fig.add_trace(go.Scatter(x=numbers, y=history["best_so_far"].to_numpy(dtype=float),
                             mode="lines", line={"shape": "hv"}, name="best so far"))
    fig.update_layout(title="Optimisation history", xaxis_title="trial",
                      yaxis_title="validation accuracy", height=420)
    return fig


def importance_figure(importances: Importances) -> go.Figure:
    """Horizontal bars, most important parameter on top, every bar labelled: the height grows
    with the number of parameters (plotly would otherwise skip every other label)."""
    frame = importances.frame.iloc[::-1]
    params = frame["param"].tolist()
    fig = go.Figure(go.Bar(x=frame["importance"].tolist(), y=params, orientation="h",
                           name="importance"))
    fig.update_yaxes(tickmode="array", tickvals=params, ticktext=params, automargin=True)
    fig.update_layout(title=f"Parameter importances for validation accuracy (PED-ANOVA: top "
                            f"{importances.top:.0%} of trials against all)",
                      xaxis_title="importance (normalised)", margin={"t": 80, "b": 60},
                      height=importance_height(len(params)))
    return fig


def importance_height(bars: int) -> int:
    """Pixels for `bars` labelled bars: 24 each (a 12 px label with room) plus the title and
    axis margins, at least 300."""
    return max(300, 80 + 60 + 24 * bars)


def edf_trace(edf: pd.DataFrame, name: str) -> go.Scatter:
    """One EDF as a step line."""
    return go.Scatter(x=edf["error"].to_numpy(dtype=float),
                      y=edf["fraction"].to_numpy(dtype=float), mode="lines",
                      line={"shape": "hv"}, name=name,
                      hovertemplate="error %{x:.4f}<br>fraction %{y:.3f}<extra>%{fullData.name}"
                                    "</extra>")


def edf_figure(edf: pd.DataFrame, name: str) -> go.Figure:
    """EDF of errors of one study's trained models."""
    fig = go.Figure(edf_trace(edf, f"{name} (n={len(edf)})"))
    fig.update_layout(title="Error EDF (fraction of trained models with error <= x)",
                      xaxis_title="validation error (1 - accuracy)",
                      yaxis_title="cumulative fraction", yaxis_range=[0, 1.02], height=420)
    return fig


def compare_figure(comparison: Comparison) -> go.Figure:
    """EDFs of several studies over their common cost range, with trial counts in the legend."""
    fig = go.Figure()
    for row in comparison.counts.itertuples():
        edf = comparison.edf[comparison.edf["study"] == row.study]
        fig.add_trace(edf_trace(edf, f"{row.study} ({row.in_range} of {row.total} trials "
                                     f"in range)"))
    label = COST_LABELS[comparison.cost]
    fig.update_layout(
        title=f"Error EDFs at matched cost: {label} in [{format_cost(comparison.low)}, "
              f"{format_cost(comparison.high)}]",
        xaxis_title="validation error (1 - accuracy)", yaxis_title="cumulative fraction",
        yaxis_range=[0, 1.02], height=460)
    return fig


def confirm_figure(frame: pd.DataFrame, noise: float | None) -> go.Figure:
    """Confirmed against search accuracy per architecture (seed spread as error bars), the
    identity line, and the band two single runs cannot be told apart within."""
    fig = go.Figure()
    low = float(min(frame["search_accuracy"].min(), frame["confirmed_accuracy"].min()))
    high = float(max(frame["search_accuracy"].max(), frame["confirmed_accuracy"].max()))
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="identity",
                             line={"dash": "dot", "color": "gray"}))
    for group, part in frame.groupby("group", sort=True):
        fig.add_trace(go.Scatter(
            x=part["search_accuracy"].tolist(), y=part["confirmed_accuracy"].tolist(),
            error_y={"type": "data", "array": part["seed_std"].fillna(0).tolist()},
            mode="markers", name=str(group), customdata=part["trial"].tolist(),
            marker={"symbol": ["star" if f else "circle" for f in part["on_confirmed_front"]],
                    "size": 11},
            hovertemplate="trial %{customdata}<br>search %{x:.4f}<br>confirmed %{y:.4f}"
                          "<extra>%{fullData.name}</extra>"))
    title = "Search against confirmed validation accuracy (stars: confirmed front)"
    if noise is not None:
        title += f"; seed noise {noise:.4f}"
    fig.update_layout(title=title, xaxis_title="accuracy at the search budget",
                      yaxis_title="mean accuracy at the confirmation budget", height=460)
    return fig
