"""Plotly figures for the report, as plain JSON-ready dicts. Every string from the data is HTML-escaped,
and hover text uses fixed templates with %{...} fields only."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from obsgap.model import CoverageRow, Finding

LAYOUT = dict(margin=dict(l=10, r=10, t=30, b=10), paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
              font=dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12))


def _e(text: object) -> str:
    """Escaped for plotly's pseudo-HTML; `$` as an entity so no name is mistaken for LaTeX."""
    clean = html.escape(str(text).replace("\u2028", " ").replace("\u2029", " "), quote=True)
    return clean.replace("$", "&#36;")


def coverage_chart(rows: Sequence[CoverageRow], limit: int = 30) -> dict[str, Any]:
    """Worst services first: share of observed requests the mesh metrics counted."""
    worst = [r for r in rows if r.ratio is not None][:limit]
    names = [_e(f"{r.namespace}/{r.service}") for r in worst][::-1]
    ratios = [min(1.0, r.ratio or 0.0) * 100 for r in worst][::-1]
    colors = ["#c0392b" if v < 50 else "#e67e22" if v < 90 else "#27ae60" for v in ratios]
    fig = go.Figure(go.Bar(x=ratios, y=names, orientation="h", marker_color=colors,
                           customdata=[[r.log_requests, r.mesh_requests] for r in worst][::-1],
                           hovertemplate="%{y}<br>%{x:.1f}% counted<br>observed %{customdata[0]:,}"
                                         "<br>mesh %{customdata[1]:,}<extra></extra>"))
    fig.update_layout(**LAYOUT, height=max(160, 22 * len(worst) + 60), xaxis=dict(range=[0, 100], ticksuffix="%"),
                      title="Share of real requests the mesh metrics counted (worst first)")
    return fig.to_plotly_json()


def counts_chart(f: Finding) -> dict[str, Any] | None:
    ev = f.evidence
    if "log_requests" not in ev or "mesh_requests" not in ev:
        return None
    labels = ["observed (logs/callers)", "counted by mesh metrics"]
    values = [ev.get("log_requests") or 0, ev.get("mesh_requests") or 0]
    if ev.get("tcp_connections"):
        labels.append("TCP connections (istio_tcp_*)")
        values.append(ev["tcp_connections"])
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=["#34495e", "#c0392b", "#8e44ad"][: len(values)],
                           hovertemplate="%{x}: %{y:,}<extra></extra>"))
    fig.update_layout(**LAYOUT, height=220, title="Requests in the window")
    return fig.to_plotly_json()


def timeline_chart(f: Finding, hourly: Mapping[str, Sequence[tuple[int, int]]]) -> dict[str, Any] | None:
    series = hourly.get(f"{f.namespace}/{f.service}") if f.service else None
    if not series:
        return None
    xs = [_iso(ms) for ms, _ in series]
    fig = go.Figure(go.Scatter(x=xs, y=[n for _, n in series], mode="lines+markers", name="logged requests",
                               hovertemplate="%{x}: %{y:,} requests<extra></extra>"))
    step = (series[1][0] - series[0][0]) // 60000 if len(series) > 1 else 60
    fig.update_layout(**LAYOUT, height=200, title=f"Logged inbound requests per {step} min")
    return fig.to_plotly_json()


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def histogram_chart(f: Finding) -> dict[str, Any] | None:
    ev = f.evidence
    bounds, cum = ev.get("buckets"), ev.get("cumulative")
    if not bounds or not cum:
        return None
    unit = _e(ev.get("unit", ""))
    labels = [f"≤{b:g}" for b in bounds] + [f">{bounds[-1]:g} (+Inf)"]
    counts = [cum[0]] + [max(0.0, cum[i] - cum[i - 1]) for i in range(1, len(cum))]
    colors = ["#7f8c8d"] * len(bounds) + ["#c0392b"]
    if len(bounds) > 0:
        colors[-2] = "#e67e22"
    fig = go.Figure(go.Bar(x=labels, y=counts, marker_color=colors, name="current buckets",
                           hovertemplate="%{x} " + unit + ": %{y:,.0f} observations<extra></extra>"))
    suggested = ev.get("suggested_buckets") or []
    fig.update_layout(**LAYOUT, height=260, title=f"Observations per bucket ({unit}); red = above the top bound",
                      annotations=[dict(text="suggested bounds: " + ", ".join(f"{b:g}" for b in suggested),
                                        xref="paper", yref="paper", x=0, y=1.02, showarrow=False,
                                        font=dict(size=11, color="#2c3e50"))])
    return fig.to_plotly_json()


def trend_chart(history: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    points = [h for h in history if h.get("coverage") is not None]
    if len(points) < 2:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[_e(h["date"]) for h in points], y=[h["coverage"] * 100 for h in points],
                             name="coverage %", mode="lines+markers", hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    fig.add_trace(go.Scatter(x=[_e(h["date"]) for h in points], y=[h["saturated"] for h in points], yaxis="y2",
                             name="saturated histograms", mode="lines+markers",
                             hovertemplate="%{x}: %{y} saturated<extra></extra>"))
    fig.update_layout(**LAYOUT, height=220, title="Coverage and histogram saturation over stored runs",
                      yaxis=dict(range=[0, 100], ticksuffix="%"), yaxis2=dict(overlaying="y", side="right"))
    return fig.to_plotly_json()


def finite(x: object) -> bool:
    return isinstance(x, int | float) and not (isinstance(x, float) and math.isnan(x))
