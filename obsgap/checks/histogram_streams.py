"""Latency histograms whose +Inf holds WebSocket connections, not slow requests: Envoy records a request that upgraded
its connection (HTTP 101) when the connection closes, with the connection's lifetime as its duration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from obsgap.bounds import exposition
from obsgap.evidence import MetricsEvidence
from obsgap.model import Finding, FindingEvidence, Severity, Suggestion
from obsgap.text import pct

QUERY = "upgraded_requests"
DURATION = "istio_request_duration_milliseconds"
CAUSE = "long-lived-streams"
DOC = "https://github.com/istio/istio/issues/17424"
_SERVER = ("destination", "waypoint")


@dataclass(frozen=True, eq=False)
class StreamsEvidence(FindingEvidence):
    """A duration histogram whose observations above its top bound are mostly upgraded connections."""

    share_above_top: float
    """Share of the observations above the top finite bound (0..1); not a saturation: no bucket layout helps."""
    top_finite_bound: float
    unit: str
    observations: int
    above_top: int
    """Observations above the top finite bound."""
    upgraded: int
    """Requests the server side counted with HTTP 101 in the window."""

    @property
    def impact(self) -> int:
        return self.above_top


def upgraded_by_service(metrics: MetricsEvidence) -> Mapping[tuple[str, str], float] | None:
    """(namespace, service) -> upgraded requests the server side counted; None where the query failed."""
    if QUERY in metrics.failed:
        return None
    frame = metrics.frame(QUERY, ["reporter", "destination_service_namespace", "destination_service_name"])
    out: dict[tuple[str, str], float] = {}
    for row in frame.itertuples(index=False):
        if row.reporter in _SERVER:
            key = (str(row.destination_service_namespace), str(row.destination_service_name))
            out[key] = out.get(key, 0.0) + float(row.value)
    return out


def streams(family: str, group: tuple[str, ...], bounds: list[float], cumulative: list[float],
            upgraded: Mapping[tuple[str, str], float] | None) -> Finding | None:
    """The finding where at least half the observations above the top bound can be the Service's upgraded
    connections (each is one observation, of its lifetime); None otherwise."""
    if family != DURATION or upgraded is None or len(cumulative) < 2:
        return None
    ns, name = group[0], group[1]
    above = cumulative[-1] - cumulative[-2]
    count = upgraded.get((ns, name), 0.0)
    if above <= 0 or count < 0.5 * above:
        return None
    top, share = bounds[-1], above / cumulative[-1]
    return Finding(
        check="histogram-inf-saturation", severity=Severity.WARNING,
        title=f"{ns}/{name}: {pct(share)} of {family} above {exposition(top)} ms are WebSocket connections, not slow "
              "requests",
        detail=(f"{above:,.0f} of {cumulative[-1]:,.0f} observations of {family} for {ns}/{name} are above the top "
                f"finite bucket ({top:g} ms), and the mesh counted {count:,.0f} of its requests upgrading their "
                "connection (HTTP 101: WebSocket) in the window. Envoy records such a request when its connection "
                "closes, with the connection's lifetime as its duration: they land in +Inf whatever the buckets, "
                "and a latency panel or SLI over this histogram reports connection lifetimes, not request latency. "
                "Larger buckets would only measure the lifetimes."),
        subject=f"{family}/{ns}/{name}", namespace=ns or None, service=name, metric=family, cause=CAUSE,
        resource=f"Service {ns}/{name}",
        evidence=StreamsEvidence(round(share, 4), top, "ms", int(cumulative[-1]), int(above), int(count)),
        suggestion=Suggestion(f"Leave upgraded connections out of latency queries and SLIs over {family}: add "
                              'response_code!="101" to their selectors (Istio labels the histogram with the '
                              "response code); measure the WebSocket's own messages in the application.", None, DOC))
