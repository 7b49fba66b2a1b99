"""metrics-exceed-logs: the mesh counted clearly more requests than the logs show for the same pods or callers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from obsgap.charts import Chart
from obsgap.checks.base import Check, CheckInputs
from obsgap.checks.traffic import TrafficEvidence, traffic_charts
from obsgap.istio import AccessLogLimit
from obsgap.model import Finding, PolicyTarget, ServiceTimeline, Severity, Suggestion
from obsgap.text import pct
from obsgap.witness import CALLER_LOGS, SERVER_LOGS

DOC = "https://istio.io/latest/docs/tasks/observability/logs/telemetry-api/"


_KIND = {SERVER_LOGS: "server-logs", CALLER_LOGS: "caller-logs"}


class MetricsExceedLogs(Check):
    """What it does: compares, per service, what Istio's destination-side metrics counted with what the logs
    show for the same pods (server logs) or the same calling workloads (caller logs), and reports services
    whose metrics count clearly more, beyond the scrape-edge tolerance. Pods or callers without logs are
    left out of both sides, so partial log collection alone never triggers it.

    Why is this bad? Every coverage figure and gap finding assumes the logs hold every request. When the
    mesh counts more, the logs miss requests (access logging sampled or filtered by a Telemetry resource,
    an app that logs only some routes, log shipping that drops lines), and a real bypass on that service
    could hide behind the missing lines.

    Example: a Telemetry resource with `accessLogging: [{filter: {expression: "response.code >= 400"}}]`:
    Envoy logs only errors, while `istio_requests_total` counts every request.

    Use instead: log every request while auditing (remove the access-log filter or sampling), or collect
    the application's full request log; then compare again.
    """

    id = "metrics-exceed-logs"
    title = "Mesh metrics count more requests than the logs show"
    needs = ("topology", "metrics", "logs")
    kinds = ("Service", "Pod")
    queries = ("mesh_requests", "mesh_tcp_connections")
    doc_url = DOC
    causes = ("server-logs-incomplete", "caller-logs-incomplete")

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The services whose logs and mesh counts were both measured, per kind of logs (their own, or their
        callers'): one kind's agreement says nothing of the other's."""
        compared = ((st, st.comparison()) for st in inputs.analysis.traffic.services.values())
        return frozenset(f"{_KIND[cmp.witness]}:{st.service.namespace}/{st.service.name}" for st, cmp in compared
                         if cmp.witness in _KIND and cmp.ratio is not None)

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        kind = "caller-logs" if finding.get("cause") == "caller-logs-incomplete" else "server-logs"
        return (f"{kind}:{finding.get('namespace')}/{finding.get('service')}",)

    @classmethod
    def charts(cls, finding: Finding, timeline: ServiceTimeline | None) -> tuple[Chart, ...]:
        return traffic_charts(finding, timeline)

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        out = []
        for st in inputs.analysis.traffic.services.values():
            cmp = st.comparison()
            tol = inputs.tolerance(min(c.seconds for c in st.covered.values()) if st.covered else None)
            if not cmp.comparable or cmp.witness not in (SERVER_LOGS, CALLER_LOGS) or cmp.observed is None \
                    or cmp.mesh is None:
                continue
            excess = cmp.mesh - cmp.observed
            if cmp.mesh < inputs.settings.min_requests or excess <= max(tol * cmp.observed, 2.0):
                continue
            svc = st.service
            share = excess / cmp.mesh
            limits = inputs.index.access_log_limits(svc)[0] if cmp.witness == SERVER_LOGS else []
            why = inputs.index.access_log_note(svc) if limits else ""
            named: dict[str, Any] = {"telemetry": [f"{x.telemetry.namespace}/{x.telemetry.name}" for x in limits]} \
                if limits else {}
            out.append(Finding(
                check=cls.id, severity=Severity.WARNING if share >= 0.5 else Severity.INFO,
                title=f"{svc.name}: the mesh counted {pct(share)} more requests than its {cmp.basis} show",
                detail=(f"For {svc.namespace}/{svc.name} the {cmp.basis} ({cmp.note}) show {cmp.observed:,} requests; "
                        f"Istio's metrics counted {int(cmp.mesh):,} for the same "
                        f"{'pods' if cmp.witness == SERVER_LOGS else 'callers'}, beyond the {pct(tol)} tolerance. "
                        "The logs are missing requests, so gaps on this service can hide in them." + why),
                subject=f"{svc.namespace}/{svc.name}/metrics-exceed-logs", namespace=svc.namespace,
                service=svc.name, cause=("server-logs-incomplete" if cmp.witness == SERVER_LOGS
                                         else "caller-logs-incomplete"),
                resource=f"Service {svc.namespace}/{svc.name}",
                evidence=TrafficEvidence.of(cmp.observed, cmp.mesh, cmp.witness, st, ratio=cmp.ratio,
                                            basis=cmp.basis, compared=cmp.note, tolerance=round(tol, 4), **named),
                suggestion=_fix(svc.namespace, limits)))
        return out


def _fix(namespace: str, limits: list[AccessLogLimit]) -> Suggestion:
    """Log every request while auditing: in the resource that limits the log where one does (the same name and
    namespace, so applying it replaces that resource's access logging), else in a namespace-wide one."""
    if limits:
        t = limits[0].telemetry
        return Suggestion(f"Log every request while auditing: {limits[0].text()}; drop that from its "
                          "accessLogging (other fields of the resource stay as they are).",
                          _log_everything(t.name, t.namespace, t.selector, t.targets), DOC)
    return Suggestion("Check access-log filters or sampling (Telemetry API accessLogging, meshConfig.accessLogFile) "
                      "and the log pipeline for this workload.", _log_everything("log-everything", namespace, {}), DOC)


def _log_everything(name: str, namespace: str, selector: Mapping[str, str],
                    targets: Sequence[PolicyTarget] = ()) -> str:
    """A Telemetry resource whose accessLogging logs every request to the proxies' stdout: those it selects, or
    the waypoints and Services it targets (Istio accepts one of the two, and attaches by targetRefs first)."""
    spec: dict[str, Any] = {}
    if targets:
        spec["targetRefs"] = [{"group": "" if t.group == "core" else t.group, "kind": t.kind, "name": t.name,
                               **({"namespace": t.namespace} if t.namespace else {})} for t in targets]
    elif selector:
        spec["selector"] = {"matchLabels": dict(selector)}
    spec["accessLogging"] = [{"providers": [{"name": "envoy"}]}]
    return yaml.safe_dump({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec},
                          sort_keys=False, width=120).rstrip("\n")
