"""Each service's requests over the window, as its witness logged them and as the mesh counted them, per time bin.

The logged side counts each request once with the coverage table's rule (reconcile.served_bins): the bins of a
service sum to its coverage count. The mesh's side is None when its metrics were not measured, never zeros.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd

from obsgap.analysis.reconcile import Reconciliation, hourly_by_namespace, served_bins
from obsgap.evidence import Evidence
from obsgap.intervals import time_step_ms
from obsgap.model import Series, ServiceTimeline

TREND_RANGE_QUERY = "mesh_requests_over_time"
"""The range query the mesh's side of the timelines reads (queries/mesh_requests_over_time.promql)."""


def _mesh_bins(ev: Evidence, step: int) -> dict[tuple[str, str], Counter[int]] | None:
    metrics = ev.metrics
    if metrics is None or TREND_RANGE_QUERY in metrics.failed:
        return None
    frame = metrics.frames.get(TREND_RANGE_QUERY)
    counted: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    if frame is None or frame.empty:
        return counted
    for row in frame.fillna("").itertuples(index=False):
        # a range query's point at t counts the bin that ends at t
        key = (str(row.destination_service_namespace), str(row.destination_service_name))
        counted[key][int(row.t * 1000) - step] += round(float(row.value))
    return counted


def timelines(ev: Evidence, rec: Reconciliation) -> dict[tuple[str, str], ServiceTimeline]:
    step = time_step_ms(0, ev.window.seconds * 1000)
    hourly = hourly_by_namespace(ev.logs.hourly if ev.logs is not None else pd.DataFrame())
    mesh = _mesh_bins(ev, step) if rec.mesh_unmeasured is None else None
    out = {}
    for key, st in sorted(rec.services.items()):
        logged = served_bins(st, hourly)
        counted = mesh.get(key, Counter()) if mesh is not None and st.mesh_measured else None
        if not logged and not counted:
            continue
        out[key] = ServiceTimeline(Series(step, tuple(sorted(logged.items()))),
                                   None if counted is None else Series(step, tuple(sorted(counted.items()))))
    return out
