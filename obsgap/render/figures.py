"""Plotly figures for the report, as plain JSON-ready dicts. Every string from the data is HTML-escaped,
and hover text uses fixed templates with %{...} fields only."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from obsgap.history import RunSummary
from obsgap.model import CoverageRow

LAYOUT = dict(margin=dict(l=10, r=10, t=30, b=10), paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
              font=dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12))


def _e(text: object) -> str:
    """Escaped for plotly's pseudo-HTML; `$` as an entity so no name is mistaken for LaTeX."""
    clean = html.escape(str(text).replace("\u2028", " ").replace("\u2029", " "), quote=True)
    return clean.replace("$", "&#36;")


def coverage_chart(rows: Sequence[CoverageRow], limit: int = 30) -> dict[str, Any]:
    """Worst services first: share of observed requests the mesh metrics counted."""
    worst = [r for r in rows if r.ratio is not None and r.unit == "requests"][:limit]
    names = [_e(f"{r.namespace}/{r.service}") for r in worst][::-1]
    missed = [(r.missed or 0.0) * 100 for r in worst][::-1]
    colors = ["#c0392b" if v >= 50 else "#e67e22" if v >= 10 else "#27ae60" for v in missed]
    fig = go.Figure(go.Bar(x=missed, y=names, orientation="h", marker_color=colors,
                           customdata=[[r.observed, r.mesh] for r in worst][::-1],
                           hovertemplate="%{y}<br>%{x:.1f}% missed<br>observed %{customdata[0]:,}"
                                         "<br>counted by the mesh %{customdata[1]:,}<extra></extra>"))
    measured = sum(1 for r in rows if r.ratio is not None and r.unit == "requests")
    shown = f"worst {len(worst)}" if len(worst) < measured else "every measured service"
    fig.update_layout(**LAYOUT, height=max(160, 22 * len(worst) + 60), xaxis=dict(range=[0, 100], ticksuffix="%"),
                      title=f"Requests the mesh missed ({shown})")
    return fig.to_plotly_json()


def trend_chart(runs: Sequence[RunSummary]) -> dict[str, Any] | None:
    """Coverage and each check's trend over stored runs; a run that did not measure a line leaves a gap in it,
    never a zero."""
    if sum(1 for r in runs if r.coverage is not None or any(v is not None for v in r.trends.values())) < 2:
        return None
    fig = go.Figure()
    dates = [_e(r.date) for r in runs]
    fig.add_trace(go.Scatter(x=dates, y=[None if r.coverage is None else r.coverage * 100 for r in runs],
                             name="coverage %", mode="lines+markers", connectgaps=False,
                             hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    names = sorted({name for r in runs for name in r.trends})
    for name in names:
        fig.add_trace(go.Scatter(x=dates, y=[r.trends.get(name) for r in runs], yaxis="y2", name=_e(name),
                                 mode="lines+markers", connectgaps=False,
                                 hovertemplate="%{x}: %{y}<extra></extra>"))
    fig.update_layout(**LAYOUT, height=220, title="Coverage and histogram saturation over stored runs",
                      yaxis=dict(range=[0, 100], ticksuffix="%"),
                      yaxis2=dict(overlaying="y", side="right", rangemode="tozero", tickformat="d"))
    return fig.to_plotly_json()
