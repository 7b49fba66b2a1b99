"""Latency histograms whose +Inf holds WebSocket connections, not slow requests: Envoy records a request that upgraded
its connection (HTTP 101) when the connection closes, with the connection's lifetime as its duration (istio_stats.cc
logs a request once, when its stream completes)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from obsgap.bounds import exposition
from obsgap.model import Finding, FindingEvidence, Severity, Suggestion
from obsgap.upgrades import DURATION

CAUSE = "long-lived-streams"
DOC = "https://github.com/istio/istio/issues/17424"


@dataclass(frozen=True, eq=False)
class StreamsEvidence(FindingEvidence):
    """Upgraded connections among a duration histogram's observations above its top finite bound."""

    websockets_above_top: int
    """Observations with HTTP 101 above the top finite bound: connections that lasted longer than it."""
    above_top: int
    """All the observations above the top finite bound."""
    observations: int
    top_finite_bound: float
    unit: str

    @property
    def impact(self) -> int:
        return self.websockets_above_top


def upgraded_cumulative(family: str, group: tuple[str, ...], bounds: list[float],
                        upgrades: Mapping[tuple[str, str], dict[float, float]] | None) -> list[float] | None:
    """The HTTP 101 observations of a duration histogram, cumulative on its own bounds (+Inf last); None where
    there are none (or the family is not Istio's duration, or they could not be read)."""
    if family != DURATION or upgrades is None:
        return None
    per_le = upgrades.get((group[0], group[1]))
    if not per_le or math.inf not in per_le or not per_le[math.inf]:
        return None
    return [per_le.get(b, 0.0) for b in bounds] + [per_le[math.inf]]


def streams_finding(family: str, group: tuple[str, ...], bounds: list[float], cumulative: list[float],
                    upgraded: list[float], min_requests: int) -> Finding | None:
    """The WebSocket connections above the top bound, where there are at least `min_requests` of them."""
    ns, name = group[0], group[1]
    websockets = upgraded[-1] - upgraded[-2]
    above = cumulative[-1] - cumulative[-2]
    if websockets < min_requests:
        return None
    top = bounds[-1]
    return Finding(
        check="histogram-inf-saturation", severity=Severity.INFO,
        title=f"{ns}/{name}: {websockets:,.0f} WebSocket connections in {family}'s +Inf (above {exposition(top)} "
              "ms), not slow requests",
        detail=(f"{websockets:,.0f} of the {above:,.0f} observations of {family} for {ns}/{name} above the top "
                f"finite bucket ({top:g} ms) are requests that upgraded their connection (HTTP 101: WebSocket). "
                "Envoy records such a request when its connection closes, with the connection's lifetime as its "
                "duration: a latency panel or SLI over this histogram mixes connection lifetimes with request "
                "latency, and larger buckets would only measure the lifetimes. This stays while the Service serves "
                "WebSockets: once its latency queries leave them out, accept it (suppress)."),
        subject=f"{family}/{ns}/{name}/websockets", namespace=ns or None, service=name, metric=family, cause=CAUSE,
        evidence=StreamsEvidence(int(websockets), int(above), int(cumulative[-1]), top, "ms"),
        suggestion=Suggestion(f"Leave upgraded connections out of latency queries and SLIs over {family}: add "
                              'response_code!="101" to their selectors (Istio labels the histogram with the '
                              "response code); measure the WebSocket's own messages in the application.", None, DOC))
