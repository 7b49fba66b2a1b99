"""Requests that upgraded their connection (HTTP 101: WebSocket) among Istio's duration histogram's observations,
bound by bound: Envoy records such a request when its connection closes, with the connection's lifetime as its
duration (istio/proxy istio_stats.cc logs a request once, when its stream completes; istio#17424)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping

from obsgap.evidence import MetricsEvidence
from obsgap.istio import SERVER_REPORTERS, TELEMETRY_METRICS

QUERY = "upgraded_requests"
DURATION = TELEMETRY_METRICS["REQUEST_DURATION"].prometheus


def upgrades_by_service(metrics: MetricsEvidence, reads: Callable[[str], bool] | None = None,
                        ) -> Mapping[tuple[str, str], dict[float, float]] | None:
    """(namespace, service) -> cumulative HTTP 101 observations per bound, as the reporters `reads` admits counted
    them (by default the server side: its sidecar or waypoint); None where the query failed or was not run."""
    if QUERY in metrics.failed or QUERY not in metrics.frames:
        return None
    frame = metrics.frame(QUERY, ["le", "reporter", "destination_service_namespace", "destination_service_name"])
    out: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for row in frame.itertuples(index=False):
        try:
            le = float(row.le)
        except ValueError:
            continue
        if (reads(str(row.reporter)) if reads is not None else row.reporter in SERVER_REPORTERS) and not math.isnan(le):
            out[(str(row.destination_service_namespace), str(row.destination_service_name))][le] += float(row.value)
    return out
