"""WebSocket connections a latency SLI counts among its events: Envoy records a request that upgraded its connection
(HTTP 101) when the connection closes, with the connection's lifetime as its duration, so an SLI over Istio's
duration histogram counts them slow (above its threshold) or caps its quantile (above the top bound)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from obsgap.evidence import Evidence
from obsgap.model import Service
from obsgap.slo.promql import Matcher, Selector, shape
from obsgap.slo.spec import Measured
from obsgap.text import full_match
from obsgap.upgrades import DURATION, upgrades_by_service

WEBSOCKET_CAUSE = "websockets-counted-slow"


@dataclass(frozen=True)
class Upgrades:
    """The WebSocket connections among a latency SLI's events."""

    cumulative: dict[float, float] = field(default_factory=dict)
    """Per bound of the histogram (+Inf last), as the SLI's total counts them (its reporters); empty: none."""
    good_below: bool = True
    """Its good-events selector admits them (those below the threshold count as fast)."""
    judged: bool = True
    unknown: bool = False
    """It counts them, and how many there are could not be told (the query failed or was not run)."""

    def above(self, bound: float) -> float:
        return self.cumulative.get(math.inf, 0.0) - self.cumulative.get(bound, 0.0) if self.cumulative else 0.0


def _unreadable(matcher: Matcher) -> bool:
    """A regex matcher Python cannot read as Prometheus reads it (text.RE2_DIFFERS)."""
    return matcher.op in ("=~", "!~") and full_match(matcher.value, "") is None


def _admits_101(selectors: list[Selector]) -> bool:
    return all(x.matches("101") for s in selectors for x in s.label("response_code"))


def upgrades_read(m: Measured, ev: Evidence, services: list[Service]) -> Upgrades:
    """The WebSocket connections the SLI's total counts, for the Services it selects."""
    spec = m.spec
    total = [s for s in shape(spec.total).selectors if s.family == DURATION] if spec.total else []
    if not total or not m.bounds:
        return Upgrades()  # it reads no duration histogram: no WebSocket among its events
    if ev.metrics is None or not services or any(_unreadable(x) for s in total for x in s.label("response_code")):
        return Upgrades(judged=False)
    if not _admits_101(total):
        return Upgrades()
    buckets = [s for q in spec.queries for s in shape(q).selectors if s.family == DURATION and s.label("le")]
    if any(_unreadable(x) for s in buckets for x in s.label("response_code")):
        return Upgrades(judged=False)
    reporters = [x for s in total for x in s.label("reporter")]
    read = upgrades_by_service(ev.metrics, lambda r: all(x.matches(r) for x in reporters))
    if read is None:
        return Upgrades(judged=False, unknown=True)
    keys = {(s.namespace, s.name) for s in services}
    cumulative: dict[float, float] = {}
    for key, per_le in read.items():
        if key in keys:
            for le, n in per_le.items():
                cumulative[le] = cumulative.get(le, 0.0) + n
    return Upgrades(cumulative, _admits_101(buckets))


def counted_slow(m: Measured, up: Upgrades, threshold: float | None, sli: float | None,
                 ) -> tuple[float, float | None] | None:
    """(the WebSocket connections a latency SLI counts as slow, the share of fast requests it would read without
    them, where that can be told) or None where it counts none (or its threshold is no bound of the histogram)."""
    if m.spec.kind != "latency" or threshold is None or math.inf not in up.cumulative:
        return None
    at = next((n for le, n in up.cumulative.items() if math.isclose(le, threshold, rel_tol=1e-6)), None)
    if at is None:
        return None
    total = up.cumulative[math.inf]
    fast = at if up.good_below else 0.0
    would = None
    if sli is not None and m.total and m.total > total:
        share = (sli * m.total - fast) / (m.total - total)
        would = min(1.0, max(0.0, share)) if -1e-9 <= share <= 1 + 1e-9 else None  # beyond: the counts disagree
    return total - fast, would
