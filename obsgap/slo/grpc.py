"""gRPC failures an SLI counts as good: it classifies Istio's request count by `response_code`, and a gRPC call's HTTP
status is 200 whatever its outcome (its status travels in the grpc-status trailer, as grpc_response_status)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from obsgap.evidence import Evidence
from obsgap.istio import grpc_status
from obsgap.model import Service
from obsgap.slo.promql import Matcher, Selector, shape
from obsgap.slo.spec import Measured

GRPC_CAUSE = "grpc-errors-unseen"
SERVER_SIDE = ("destination", "waypoint")
_COLUMNS = ["reporter", "destination_service_name", "destination_service_namespace", "response_code",
            "grpc_response_status"]


@dataclass(frozen=True)
class Unseen:
    """gRPC failures an SLI counts as good."""

    selector: Selector
    """The selector that classifies its events by response_code (its bad events', else its good events')."""
    matcher: Matcher
    """Its response_code matcher."""
    failures: dict[str, float]
    """grpc status -> the calls that failed with it, as the server side counted them."""
    bad: bool
    """The selector is the SLI's bad events' (else its good events')."""

    @property
    def calls(self) -> float:
        return sum(self.failures.values())


def unseen_failures(m: Measured, ev: Evidence, services: list[Service]) -> Unseen | None:
    """The gRPC failures of the Services an SLI selects that it classifies as good; None where there are none, or
    where it cannot be told (no metrics, an SLI that does not classify Istio's request count by response_code)."""
    spec = m.spec
    if spec.kind != "ratio" or ev.metrics is None or not services:
        return None
    classifier = _classifier(spec.bad, bad=True) or _classifier(spec.good, bad=False)
    if classifier is None:
        return None
    sel, matcher, bad = classifier
    frame = ev.metrics.frame("grpc_failures", _COLUMNS)
    keys = {(s.namespace, s.name) for s in services}
    missed: dict[str, float] = defaultdict(float)
    for row in frame.itertuples(index=False):
        if (row.destination_service_namespace, row.destination_service_name) not in keys \
                or row.reporter not in SERVER_SIDE:
            continue
        code = str(row.grpc_response_status)
        stands_for = str(grpc_status(code)[1])
        means_bad = matcher.matches(stands_for) if bad else not matcher.matches(stands_for)
        counted_bad = matcher.matches(str(row.response_code)) if bad else not matcher.matches(str(row.response_code))
        if means_bad and not counted_bad:
            missed[code] += float(row.value)
    return Unseen(sel, matcher, dict(missed), bad) if missed else None


def _classifier(query: str | None, bad: bool) -> tuple[Selector, Matcher, bool] | None:
    """The selector over istio_requests_total of a bad (or good) events query that picks events by response_code
    and not by grpc_response_status."""
    if not query:
        return None
    for sel in shape(query).selectors:
        codes = sel.label("response_code")
        if sel.metric == "istio_requests_total" and len(codes) == 1 and not sel.label("grpc_response_status"):
            return sel, codes[0], bad
    return None
