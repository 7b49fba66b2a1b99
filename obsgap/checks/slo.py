"""slo-untrustworthy: SLOs whose SLI the logs, the histograms or Prometheus itself contradict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from obsgap.checks.base import Check, CheckInputs, Skip
from obsgap.model import Finding, FindingEvidence, ObjectRef, Severity, Suggestion
from obsgap.slo.assess import SloAssessment
from obsgap.slo.grpc import GRPC_CAUSE
from obsgap.slo.promql import shape
from obsgap.slo.websockets import WEBSOCKET_CAUSE

DOC = "https://sre.google/workbook/implementing-slos/"


@dataclass(frozen=True, eq=False)
class SloEvidence(FindingEvidence):
    """The SLO's assessment: its SLI by the metrics and by the logs, the verdict and why (findings.json `slos`)."""

    assessment: SloAssessment

    def as_dict(self) -> dict[str, Any]:
        return self.assessment.as_dict()

    @property
    def impact(self) -> int:
        return self.assessment.requests_logs or 0


LOG_CAUSES = ("sli-misses-traffic", "error-ratio-differs")
"""Causes judged on the logs of the SLO's services (and a waypoint's sli-misses-traffic: judged again only with
logs, which errs on the side of not calling it resolved)."""
OWN_KEYS = {**{c: "logs" for c in LOG_CAUSES}, GRPC_CAUSE: "grpc", WEBSOCKET_CAUSE: "websockets"}
"""Causes judged on more than the SLI (its services' logs, the grpc_failures or upgraded_requests query), each
under its own key `slo:<key>:<suffix>`: not re-checked where that evidence is missing."""


class SloUntrustworthy(Check):
    """What it does: reads each SLO (Sloth, Pyrra, OpenSLO, PrometheusRule recording rules), parses its SLI's
    PromQL with a real parser, runs it over the report's window, and holds it against the logs of the services
    it selects and the histogram it reads. A latency SLI (a bucket at a bound against the histogram's count, or a
    quantile) is judged on the logged requests' durations, an availability SLI on their status codes. What the logs
    cannot contradict is read from Prometheus: gRPC calls that failed with HTTP 200 (their grpc_response_status)
    and WebSocket connections (HTTP 101) counted among a latency SLI's events.

    Why is this bad? An SLO review spends or saves an error budget on its SLI. An SLI on the mesh's metrics
    misses the traffic that bypasses Envoy; a selector naming a renamed job returns no data and the SLO shows
    nothing (or, on its good-events side, reads 0% and pages); a latency threshold that is no bucket bound selects
    nothing (`le="0.3"`) or is interpolated; a threshold above the top bucket can never be breached; an SLI that
    classifies by response_code counts a gRPC Service's failures as good; a WebSocket connection is recorded when it
    closes, with its lifetime as its duration, and spends a latency SLI's budget.

    Example: checkout's SLO counts istio_requests_total, but one of its two pods has no sidecar: the SLI sees
    half of the requests, and none of that pod's errors.

    Use instead: fix the gap the finding names (the selector, the buckets, the bypass; grpc_response_status for
    gRPC failures; response_code!="101" for WebSockets), or measure the SLO where every request is seen.
    """

    id = "slo-untrustworthy"
    title = "SLOs whose numbers cannot be trusted"
    needs = ("metrics",)
    queries = ("scrape_targets",)
    doc_url = DOC
    causes = ("sli-misses-traffic", "threshold-not-a-bucket-bound", "latency-saturated", "error-ratio-differs",
              "selector-matches-nothing", GRPC_CAUSE, WEBSOCKET_CAUSE, "sli-failed")

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The SLOs whose SLI could be run and, among them, those held against the logs of their services."""
        ran = [a for a in inputs.analysis.slos if not a.measured.error]
        def judged(a: SloAssessment) -> dict[str, bool]:
            return {"logs": a.requests_logs is not None, "grpc": a.grpc_judged, "websockets": a.websockets_judged}

        return frozenset([*(f"slo:{a.measured.spec.key}" for a in ran),
                          *(f"slo:{a.measured.spec.key}:{suffix}" for a in ran
                            for suffix, yes in judged(a).items() if yes)])

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        """An SLO's findings are judged on its SLI; the traffic it misses and its error ratio on the logs too."""
        ev = finding.get("evidence")
        if not isinstance(ev, Mapping):
            return ()
        key = f"slo:{ev.get('tool')}:{ev.get('origin')}:{ev.get('slo')}"
        suffix = OWN_KEYS.get(str(finding.get("cause")))
        return (f"{key}:{suffix}",) if suffix else (key,)

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        if inputs.slos is None:
            rules = inputs.metrics.rules if inputs.metrics is not None else None
            raise Skip("no SLOs given (--slo FILE|FOLDER, or the cluster's Sloth/Pyrra/PrometheusRule objects), and "
                       + ("Prometheus evaluates no recording rule of Sloth's (slo:sli_error:ratio_rate*)"
                          if rules is not None else "Prometheus's rules (/api/v1/rules) could not be read"))
        if not inputs.slos:
            raise Skip("the SLOs given (files, cluster objects, Prometheus's recording rules) hold none obsgap can "
                       "measure (see sources.slos.gaps)")
        out = []
        for a in inputs.analysis.slos:
            spec = a.measured.spec
            common: dict[str, Any] = dict(namespace=a.namespace, service=a.service, metric=_metric(a),
                                          evidence=SloEvidence(a), refs=(ObjectRef("slo", "", spec.key),))
            if a.measured.error:
                out.append(Finding(
                    check=cls.id, severity=Severity.WARNING, title=f"SLO {a.label} ({spec.tool}): its SLI could not "
                    "be run", detail=f"{spec.origin}: {a.measured.error}", subject=f"{spec.key}/error",
                    cause="sli-failed", **common))
                continue
            for p in a.problems:
                out.append(Finding(
                    check=cls.id, severity=Severity.CRITICAL if p.broken else Severity.WARNING,
                    title=f"SLO {a.label} ({spec.tool}) is {a.verdict}: {p.cause.replace('-', ' ')}",
                    detail=f"{spec.origin}: {p.reason}", subject=f"{spec.key}/{p.cause}", cause=p.cause,
                    suggestion=Suggestion(p.fix, None, DOC), **common))
        return out


def _metric(a: SloAssessment) -> str | None:
    """The metric the SLI reads (a histogram's family)."""
    selectors = [s for q in a.measured.spec.queries for s in shape(q).selectors]
    return selectors[0].family if selectors else None
