"""The coverage table and its headline: per service, what its best witness observed against what the mesh counted.

Unknown is a value: a side that was not measured gives no ratio and the row says why; the headline is computed over
the measured services only and says how many those are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from obsgap.analysis.reconcile import Reconciliation
from obsgap.model import CoverageRow


@dataclass(frozen=True)
class Headline:
    """Of the requests the witnesses observed for the measured, comparable services, the share the mesh counted."""

    share: float | None
    """None when no service was measured on both sides."""
    measured: int
    """Services the share rests on."""
    services: int
    """Services in the coverage table."""

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
            cmp.reason, st.coverage_text(), None if interval is None else (interval.start_ms, interval.end_ms)))
    rows.sort(key=lambda r: (r.ratio if r.ratio is not None else 2.0, -(r.observed or 0), r.namespace, r.service))
    return tuple(rows)


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
    share, measured = coverage_share((r.observed, r.mesh, r.comparable) for r in rows)
    return Headline(share, measured, len(rows))
