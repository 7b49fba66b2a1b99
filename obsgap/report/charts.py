"""The charts of a finding, as typed data: the page draws them with Plotly, sized to their box.

A series with nothing in it is not drawn as a missing line on a zoomed axis: it becomes a sentence (`notes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from obsgap.model import Finding, ServiceTimeline
from obsgap.report.evidence import HistogramEvidence, TrafficEvidence

TIMELINE_CHECKS = frozenset({"envoy-bypass", "port-missing-from-metrics"})
GREY, ORANGE, RED, GREEN, INK, PURPLE = "#7f8c8d", "#e67e22", "#c0392b", "#1e8449", "#34495e", "#8e44ad"


@dataclass(frozen=True)
class Bars:
    title: str
    labels: tuple[str, ...]
    values: tuple[float, ...]
    colors: tuple[str, ...]
    value_name: str
    """what one unit is (observations, requests), for the hover text"""
    notes: tuple[str, ...] = ()
    kind: str = "bars"


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    points: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Lines:
    title: str
    step_ms: int
    lines: tuple[Line, ...]
    notes: tuple[str, ...] = ()
    kind: str = "lines"


Chart = Bars | Lines


def _per_bucket(cumulative: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(max(0.0, c - (cumulative[i - 1] if i else 0.0)) for i, c in enumerate(cumulative))


def _bound(b: float) -> str:
    return f"{b:g}"


def histogram_charts(h: HistogramEvidence) -> tuple[Bars, ...]:
    labels = (*(f"≤{_bound(b)}" for b in h.buckets), f">{_bound(h.buckets[-1])} (+Inf)")
    n = len(labels)
    colors = tuple(RED if i == n - 1 else ORANGE if i == n - 2 else GREY for i in range(n))
    current = Bars(f"Observations per bucket ({h.unit}); red: above the top bound", labels,
                   _per_bucket(h.cumulative), colors, "observations",
                   (f"suggested bounds: {', '.join(map(_bound, h.suggested_buckets))}",) if h.suggested_buckets else ())
    if h.suggested_cumulative is None:
        return (current,)
    s_labels = (*(f"≤{_bound(b)}" for b in h.suggested_buckets), f">{_bound(h.suggested_buckets[-1])}")
    return current, Bars(f"The same observations in the suggested buckets ({h.unit})", s_labels,
                         _per_bucket(h.suggested_cumulative), (GREEN,) * len(s_labels), "observations")


def traffic_chart(t: TrafficEvidence) -> Bars:
    labels = ["observed (logs/callers)", "counted by mesh metrics"]
    values = [float(t.log_requests), float(t.mesh_requests)]
    if t.tcp_connections:
        labels.append("TCP connections (istio_tcp_*)")
        values.append(float(t.tcp_connections))
    notes = ("the mesh metrics counted none of these requests",) if t.mesh_requests == 0 and t.log_requests else ()
    return Bars("Requests in the window", tuple(labels), tuple(values), (INK, RED, PURPLE)[:len(values)], "requests",
                notes)


def timeline_chart(t: ServiceTimeline) -> Lines | None:
    if not t.logged.points:
        return None
    lines = [Line("logged", INK, t.logged.points)]
    notes = []
    if t.mesh is None:
        notes.append("no mesh metrics were read for this window")
    elif t.mesh.total == 0:
        notes.append("the mesh counted nothing for this service in the window")
    else:
        lines.append(Line("counted by mesh metrics", RED, t.mesh.points))
    minutes = t.logged.step_ms // 60000
    return Lines(f"Requests per {minutes} min: logs vs mesh metrics", t.logged.step_ms, tuple(lines), tuple(notes))


def finding_charts(f: Finding, timeline: ServiceTimeline | None) -> tuple[Chart, ...]:
    out: list[Chart] = []
    h = HistogramEvidence.of(f.evidence)
    if h is not None:
        out.extend(histogram_charts(h))
    t = TrafficEvidence.of(f.evidence)
    if t is not None:
        out.append(traffic_chart(t))
    if timeline is not None and f.check in TIMELINE_CHECKS:
        line = timeline_chart(timeline)
        if line is not None:
            out.append(line)
    return tuple(out)
