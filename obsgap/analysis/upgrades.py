"""Requests that upgraded their connection (HTTP 101: WebSocket) among Istio's duration histogram's observations,
bound by bound: Envoy records such a request when its connection closes, with the connection's lifetime as its
duration (istio/proxy istio_stats.cc logs a request once, when its stream completes; istio#17424)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

from obsgap.evidence import MetricsEvidence

QUERY = "upgraded_requests"
DURATION = "istio_request_duration_milliseconds"
_SERVER = ("destination", "waypoint")


def upgrades_by_service(metrics: MetricsEvidence) -> Mapping[tuple[str, str], dict[float, float]] | None:
    """(namespace, service) -> cumulative HTTP 101 observations per bound, as the server side counted them; None
    where the query failed or was not run."""
    if QUERY in metrics.failed or QUERY not in metrics.frames:
        return None
    frame = metrics.frame(QUERY, ["le", "reporter", "destination_service_namespace", "destination_service_name"])
    out: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for row in frame.itertuples(index=False):
        try:
            le = float(row.le)
        except ValueError:
            continue
        if row.reporter in _SERVER and not math.isnan(le):
            out[(str(row.destination_service_namespace), str(row.destination_service_name))][le] += float(row.value)
    return out
