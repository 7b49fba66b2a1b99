"""gRPC failures an SLI counts as good: it classifies Istio's request count by `response_code`, and a gRPC call's HTTP
status is 200 whatever its outcome (its status travels in the grpc-status trailer, as grpc_response_status)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from obsgap.evidence import Evidence
from obsgap.istio import GRPC_STATUSES, grpc_status
from obsgap.model import Service
from obsgap.names import service_fqdn
from obsgap.slo.promql import Matcher, Selector, shape
from obsgap.slo.spec import Measured
from obsgap.text import full_match

GRPC_CAUSE = "grpc-errors-unseen"
QUERY = "grpc_failures"
_COLUMNS = ["reporter", "destination_service_name", "destination_service_namespace", "response_code",
            "grpc_response_status"]
_FOLLOWED = frozenset({"reporter", "destination_service_name", "destination_service_namespace",
                       "destination_service", "request_protocol", "response_code"})
"""The labels a classifying selector may match on for its gRPC failures to be counted as it counts them: those the
query keeps (and request_protocol, which is `grpc` on every row). Any other (`destination_workload`,
`response_flags`, `source_workload`) picks series the query does not tell apart: not judged."""
_CODE = re.compile(r"[0-9]{1,3}")


@dataclass(frozen=True)
class Unseen:
    """gRPC failures an SLI counts as good."""

    selector: Selector
    """The selector that classifies its events by response_code (its bad events', else its good events')."""
    matcher: Matcher
    """Its response_code matcher."""
    failures: dict[str, float]
    """grpc status (digits) -> the calls that failed with it, as the selector counts them (its reporters)."""
    bad: bool
    """The selector is the SLI's bad events' (else its good events')."""

    @property
    def calls(self) -> float:
        return sum(self.failures.values())

    @property
    def meant(self) -> list[int]:
        """The gRPC statuses the matcher means to count as bad: those whose HTTP equivalent it classifies so."""
        return [code for code, (_, http) in GRPC_STATUSES.items() if _counts_bad(self.matcher, self.bad, str(http))]


def _counts_bad(matcher: Matcher, bad: bool, response_code: str) -> bool:
    """Whether an SLI counts an event with this response_code as bad: its bad selector's matcher admits it, or its
    good selector's does not."""
    return matcher.matches(response_code) if bad else not matcher.matches(response_code)


@dataclass(frozen=True)
class Judgement:
    """What was found of an SLI's gRPC failures: None (`judged` False) where it could not be told."""

    unseen: Unseen | None
    judged: bool
    grpc_traffic: bool = False
    """The Services it selects serve gRPC calls (Istio's request count labels some request_protocol="grpc"); read
    where it was not judged, the only place it matters."""


def unseen_failures(m: Measured, ev: Evidence, services: list[Service]) -> Judgement:
    """The gRPC failures of the Services an SLI selects that it counts as good. Judged where the SLI classifies
    Istio's request count by response_code alone (no selector of its classifies grpc_response_status), its Services
    are known and the grpc_failures query answered."""
    spec = m.spec
    if spec.kind != "ratio" or ev.metrics is None or not services:
        return Judgement(None, False)
    classifier = _classifier(spec.bad, bad=True) or _classifier(spec.good, bad=False)
    if classifier is None or any(sel.label("grpc_response_status") for q in spec.queries
                                 for sel in shape(q).selectors):
        return Judgement(None, True)  # it does not classify by response_code, or it classifies gRPC statuses too
    sel, matcher, bad = classifier
    keys = {(s.namespace, s.name) for s in services}
    if any(x.name not in _FOLLOWED or (x.op in ("=~", "!~") and full_match(x.value, "") is None)
           for x in sel.matchers) \
            or QUERY in ev.metrics.failed or QUERY not in ev.metrics.frames:
        # a label the query does not keep, a regex RE2 reads otherwise, no answer: whether it matters is told by
        # the mesh's request count (read only here: it is the largest frame)
        return Judgement(None, False, _serves_grpc(ev, keys))
    missed: dict[str, float] = defaultdict(float)
    for row in ev.metrics.frame(QUERY, _COLUMNS).itertuples(index=False):
        code = str(row.grpc_response_status)
        labels = {"reporter": str(row.reporter), "destination_service_name": str(row.destination_service_name),
                  "destination_service_namespace": str(row.destination_service_namespace),
                  "destination_service": service_fqdn(str(row.destination_service_name),
                                                      str(row.destination_service_namespace)),
                  "request_protocol": "grpc", "response_code": "200"}
        if (labels["destination_service_namespace"], labels["destination_service_name"]) not in keys \
                or not _CODE.fullmatch(code) or not all(x.matches(labels[x.name]) for x in sel.matchers
                                                       if x.name != "response_code"):
            continue
        stands_for = str(grpc_status(code)[1])
        if _counts_bad(matcher, bad, stands_for) and not _counts_bad(matcher, bad, str(row.response_code)):
            missed[code] += float(row.value)
    return Judgement(Unseen(sel, matcher, dict(missed), bad) if missed else None, True, bool(missed))


def _serves_grpc(ev: Evidence, keys: set[tuple[str, str]]) -> bool:
    frame = ev.metrics.frame("mesh_requests", ["destination_service_namespace", "destination_service_name",
                                               "request_protocol"]) if ev.metrics is not None else pd.DataFrame()
    if frame.empty:
        return False
    grpc = frame[frame["request_protocol"] == "grpc"]
    return any(p in keys for p in zip(grpc["destination_service_namespace"], grpc["destination_service_name"],
                                      strict=True))


def _classifier(query: str | None, bad: bool) -> tuple[Selector, Matcher, bool] | None:
    """The selector over istio_requests_total of a bad (or good) events query that picks events by response_code."""
    if not query:
        return None
    for sel in shape(query).selectors:
        codes = sel.label("response_code")
        if sel.metric == "istio_requests_total" and len(codes) == 1:
            return sel, codes[0], bad
    return None
