"""slo-untrustworthy: SLOs whose SLI the logs, the histograms or Prometheus itself contradict."""

from __future__ import annotations

from collections.abc import Sequence

from obsgap.checks.base import Check, Skip
from obsgap.evidence import CheckInputs
from obsgap.model import Finding, ObjectRef, Severity, Suggestion
from obsgap.slo.assess import SloAssessment, assess
from obsgap.slo.promql import shape

DOC = "https://sre.google/workbook/implementing-slos/"


def assessments(inputs: CheckInputs) -> tuple[SloAssessment, ...]:
    """Every SLO's assessment, computed once per run (the report's table reads the same)."""
    cached = inputs.memo.get("slo_assessments")
    if cached is None:
        cached = inputs.memo["slo_assessments"] = tuple(assess(m, inputs) for m in inputs.slos or ())
    return tuple(cached)


class SloUntrustworthy(Check):
    """What it does: reads each SLO (Sloth, Pyrra, OpenSLO, PrometheusRule recording rules), parses its SLI's
    PromQL with a real parser, runs it over the report's window, and holds it against the logs of the services
    it selects and the histogram it reads.

    Why is this bad? An SLO review spends or saves an error budget on its SLI. An SLI on the mesh's metrics
    misses the traffic that bypasses Envoy; a selector naming a renamed job returns no data and the SLO stays
    green forever; a latency threshold that is no bucket bound selects nothing (`le="0.3"`) or is interpolated;
    a threshold above the top bucket can never be breached.

    Example: checkout's SLO counts istio_requests_total, but one of its two pods has no sidecar: the SLI sees
    half of the requests, and none of that pod's errors.

    Use instead: fix the gap the finding names (the selector, the buckets, the bypass), or measure the SLO
    where every request is seen.
    """

    id = "slo-untrustworthy"
    title = "SLOs whose numbers cannot be trusted"
    needs = ("metrics",)
    queries = ("scrape_targets",)
    doc_url = DOC

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        if inputs.slos is None:
            raise Skip("no SLOs given (--slo FILE|FOLDER, or the cluster's Sloth/Pyrra/PrometheusRule objects)")
        if not inputs.slos:
            raise Skip("the SLO files given hold no SLO obsgap can measure (see sources.slos.gaps)")
        out = []
        for a in assessments(inputs):
            spec = a.measured.spec
            if a.measured.error:
                out.append(Finding(
                    check=cls.id, severity=Severity.WARNING, title=f"SLO {spec.name}: its SLI could not be run",
                    detail=f"{spec.origin}: {a.measured.error}", subject=f"{spec.key}/error",
                    cause="selector-matches-nothing", evidence=a.as_dict(),
                    refs=(ObjectRef("slo", "", spec.key),)))
                continue
            ns, _, svc = (a.services[0].partition("/") if a.services else ("", "", ""))
            for p in a.problems:
                out.append(Finding(
                    check=cls.id, severity=Severity.CRITICAL if p.broken else Severity.WARNING,
                    title=f"SLO {spec.name} ({spec.tool}) is {a.verdict}: {p.cause.replace('-', ' ')}",
                    detail=f"{spec.origin}: {p.reason}", subject=f"{spec.key}/{p.cause}",
                    namespace=ns or None, service=svc or None, metric=_metric(a), cause=p.cause,
                    evidence=a.as_dict(), suggestion=Suggestion(p.fix, None, DOC),
                    refs=(ObjectRef("slo", "", spec.key),)))
        return out


def _metric(a: SloAssessment) -> str | None:
    """The metric the SLI reads (a histogram's family)."""
    selectors = [s for q in a.measured.spec.queries for s in shape(q).selectors]
    return selectors[0].family if selectors else None
