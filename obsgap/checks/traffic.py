"""The evidence of the coverage checks (envoy-bypass, port-missing-from-metrics, metrics-exceed-logs) and how it is
drawn: what a witness observed against what the mesh counted, in the window and per time bin."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from obsgap.analysis.reconcile import ServiceTraffic
from obsgap.charts import INK, PURPLE, RED, Bars, Chart, Line, Lines
from obsgap.model import FLATTEN, OMIT_NONE, Finding, FindingEvidence, ServiceTimeline
from obsgap.text import iso_ms


@dataclass(frozen=True, eq=False)
class TrafficEvidence(FindingEvidence):
    """Requests a witness observed against what the mesh's metrics counted for the same pods, port or callers."""

    log_requests: int | None
    """The witness's count (kept under this name for the contract; equal to `observed_requests`)."""
    mesh_requests: int | None
    """What the mesh counted for the same requests; None when the metrics were not measured."""
    ratio: float | None
    witness: str | None
    """Who observed them (obsgap.witness: server-logs, caller-logs, caller-sidecar-metrics, ...); None: no witness
    was read (a finding on the mesh's own labels), and the count is null."""
    observed_requests: int | None
    tcp_connections: int | None = field(default=None, metadata=OMIT_NONE)
    interval: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    """The part of the window the comparison rests on, when logs cover only part of it."""
    details: Mapping[str, Any] = field(default_factory=dict, metadata=FLATTEN)
    """What the check adds (the pods without sidecar, the annotation, the tolerance, ...)."""

    @property
    def impact(self) -> int:
        return max(0, (self.observed_requests or 0) - (self.mesh_requests or 0))

    @staticmethod
    def of(observed: int | None, mesh: float | None, witness: str | None, st: ServiceTraffic | None = None, *,
           tcp_connections: float | None = None, ratio: float | None = None, **details: Any) -> TrafficEvidence:
        """One comparison; `st` adds the interval partial logs cover."""
        interval = None
        if st is not None and st.covered:
            iv = st.interval()
            interval = {"start": iso_ms(iv.start_ms), "end": iso_ms(iv.end_ms), "pods": sorted(st.covered)}
        if ratio is None and mesh is not None and observed:
            ratio = round(mesh / observed, 4)
        return TrafficEvidence(observed, None if mesh is None else int(mesh), ratio, witness, observed,
                               None if tcp_connections is None else int(tcp_connections), interval, details)


def traffic_chart(t: TrafficEvidence) -> Bars:
    labels = ["observed (logs/callers)", "counted by mesh metrics"]
    values = [float(t.observed_requests or 0), float(t.mesh_requests or 0)]
    if t.tcp_connections:
        labels.append("TCP connections (istio_tcp_*)")
        values.append(float(t.tcp_connections))
    notes: tuple[str, ...] = ()
    if t.observed_requests is None:
        notes = ("no witness of these requests (logs, callers' sidecars) was read in this run",)
    elif t.mesh_requests is None:
        notes = ("the mesh's metrics were not measured in this run",)
    elif t.mesh_requests == 0 and t.observed_requests:
        notes = ("the mesh metrics counted none of these requests",)
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


def traffic_charts(finding: Finding, timeline: ServiceTimeline | None) -> tuple[Chart, ...]:
    """The coverage checks' charts: the window's totals, then the service's requests per time bin."""
    ev = finding.evidence
    out: list[Chart] = [traffic_chart(ev)] if isinstance(ev, TrafficEvidence) else []
    line = timeline_chart(timeline) if timeline is not None else None
    if line is not None:
        out.append(line)
    return tuple(out)
