"""The coverage table and its headline: per service, what its best witness observed against what the mesh counted.

Unknown is a value: a side that was not measured gives no ratio and the row says why; the headline is computed over
the measured services only and says how many those are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from obsgap.analysis.reconcile import Reconciliation, ServiceTraffic
from obsgap.model import CoverageRow
from obsgap.witness import CALLER_LOGS, CALLER_SIDECARS, ZTUNNEL_LOGS, ZTUNNEL_METRICS


@dataclass(frozen=True)
class Headline:
    """Of the requests the witnesses observed for the measured, comparable services, the share the mesh counted."""

    share: float | None
    """None when no service was measured on both sides."""
    measured: int
    """Services the share rests on."""
    services: int
    """Services in the coverage table whose requests the mesh counts."""
    l4_services: int = 0
    """Services the mesh sees at L4 only (ambient without a waypoint): their rows count connections."""

    @property
    def unmeasured(self) -> int:
        return self.services - self.measured


def coverage_rows(rec: Reconciliation) -> tuple[CoverageRow, ...]:
    rows = []
    for st in rec.services.values():
        cmp = st.comparison()
        if not cmp.observed and not cmp.mesh and not st.tcp_connections:
            continue
        interval = st.interval() if cmp.observed is not None else None
        rows.append(CoverageRow(
            st.service.namespace, st.service.name, cmp.observed, None if cmp.mesh is None else round(cmp.mesh),
            None if not st.mesh_measured else round(st.tcp_connections), cmp.witness, cmp.comparable, cmp.note,
            cmp.reason, st.coverage_text(), None if interval is None else (interval.start_ms, interval.end_ms),
            witnesses_of(st), cmp.unit, st.dataplane))
    rows.sort(key=lambda r: (r.ratio if r.ratio is not None else 2.0, -(r.observed or 0), r.namespace, r.service))
    return tuple(rows)


def witnesses_of(st: ServiceTraffic) -> dict[str, int]:
    """Every witness of a service with what it counted: its served pods' witnesses, then its callers'."""
    out = {w.witness: w.total_all_ports for w in sorted(st.served.values(), key=lambda w: -w.total_all_ports)}
    if st.client_logs:
        out[CALLER_LOGS] = st.client_logs
    if st.source_reported:
        out[CALLER_SIDECARS] = round(st.source_reported)
    if st.connections_logged:
        out[ZTUNNEL_LOGS] = sum(st.connections_logged.values())
    if st.dataplane in ("ztunnel", "waypoint") and st.mesh_measured and st.tcp_connections:
        out[ZTUNNEL_METRICS] = round(st.tcp_connections)
    return out


def coverage_share(rows: Iterable[tuple[int | None, int | None, bool]]) -> tuple[float | None, int]:
    """(share, services it rests on): of the requests observed for comparable services measured on both sides, the
    share the mesh counted, each service's count capped at what was observed, so one over-counting service cannot
    hide another's loss. Rows are (observed, mesh counted, comparable), either side None when not measured."""
    logged = counted = measured = 0
    for observed, mesh, comparable in rows:
        if comparable and observed and mesh is not None:
            logged += observed
            counted += min(mesh, observed)
            measured += 1
    return (counted / logged if logged else None), measured


def headline(rows: tuple[CoverageRow, ...]) -> Headline:
    """Over the services whose requests the mesh counts; those it sees at L4 only (ambient without a waypoint) are
    counted apart: their connections are no share of requests."""
    requests = [r for r in rows if r.unit == "requests"]
    share, measured = coverage_share((r.observed, r.mesh, r.comparable) for r in requests)
    return Headline(share, measured, len(requests), len(rows) - len(requests))
