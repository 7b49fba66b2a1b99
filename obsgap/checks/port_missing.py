"""port-missing-from-metrics: a port that carries traffic but is absent from request metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from obsgap.analysis.reconcile import REQ_COLS, PortTraffic, ServiceTraffic
from obsgap.charts import Chart
from obsgap.checks.base import Check, CheckInputs, Skip, severity_for_missed
from obsgap.checks.traffic import TrafficEvidence, traffic_charts
from obsgap.model import TCP_PROXIED, Finding, FindingEvidence, Pod, ServicePort, ServiceTimeline, Severity, Suggestion
from obsgap.names import host_of
from obsgap.text import pct
from obsgap.witness import SERVER_LOGS

DOC_PROTOCOL = "https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/"
DOC_ANNOTATIONS = "https://istio.io/latest/docs/reference/config/annotations/"
DOC_SCRAPE = "https://istio.io/latest/docs/ops/integrations/prometheus/"


class PortMissingFromMetrics(Check):
    """What it does: finds service and container ports whose traffic never reaches Istio's request
    metrics, and says why: the port is proxied as TCP (its name or appProtocol says `tcp`, `tls`,
    `https`, `mongo`, `redis`, `mysql`, or sniffing failed) while the logs show HTTP requests on it;
    the pods exclude it with `traffic.sidecar.istio.io/excludeInboundPorts`; no Service declares it
    (Envoy sends it to InboundPassthroughCluster); or the app's own metrics port is annotated for
    scraping but no Prometheus target covers it.

    Why is this bad? Request rate, error rate and latency for that port are simply absent: HTTP on a
    TCP-proxied port yields only `istio_tcp_*`, with no response codes or durations.

    Example: `orders` names port 9000 `tcp-api`, but its logs show `GET /orders` requests on it.

    Use instead: name the port `http-api` (or set `appProtocol: http`), declare every served port in the
    Service, and drop ports from the exclusion annotation unless you mean it.
    """

    id = "port-missing-from-metrics"
    title = "Ports whose traffic is missing from request metrics"
    needs = ("topology",)
    kinds = ("Service", "Pod")
    queries = ("mesh_requests", "mesh_tcp_connections", "scrape_targets")
    doc_url = DOC_PROTOCOL
    causes = ("port-treated-as-tcp", "port-excluded", "port-not-declared", "metrics-port-not-scraped")

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The services a witness of their pods (their logs, their own metrics, an eBPF agent) saw serve on known
        ports (the ports run() judges), those among them whose mesh counts were measured too (failed protocol
        sniffing shows only there), the namespaces such a witness was read in with the mesh measured (a port no
        Service declares), every namespace for what only the mesh saw (InboundPassthroughCluster) and, with `up`
        series, the namespaces whose pods' scraping was judged."""
        keys: set[str] = set()
        rec = inputs.analysis.traffic
        witnessed = {str(ns) for ns in inputs.logs.inbound["namespace"].dropna()} \
            if inputs.logs is not None and not inputs.logs.inbound.empty else set()
        for (ns, name), st in rec.services.items():
            if st.served:
                witnessed.add(ns)
            if st.primary is not None and st.primary.knows_ports:
                keys.add(f"port:{ns}/{name}")
                if st.mesh_measured:
                    keys.add(f"sniff:{ns}/{name}")
        if rec.mesh_unmeasured is None:  # the mesh counts undeclared ports server side: not where that is off
            off = _metrics_off_namespaces(inputs)
            keys |= {f"undeclared:{ns}" for ns in witnessed - off}
            keys |= {f"undeclared-mesh:{ns}" for ns in inputs.in_scope_namespaces() - off}
        metrics = inputs.metrics
        if metrics is not None and metrics.has("scrape_targets"):
            keys |= {f"scrape:{ns}" for ns in inputs.in_scope_namespaces()}
        return frozenset(keys)

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        """A port's traffic is judged on its service's logs, failed sniffing on its mesh counts too, an undeclared
        port on its namespace's logs and mesh counts; a metrics port's scraping on the `up` series."""
        ns = str(finding.get("namespace") or "")
        cause = finding.get("cause")
        if cause == "metrics-port-not-scraped":
            return (f"scrape:{ns}",)
        if cause == "port-not-declared":
            logged = (finding.get("evidence") or {}).get("observed_requests")
            return (f"undeclared:{ns}",) if logged else (f"undeclared-mesh:{ns}",)
        if (finding.get("evidence") or {}).get("istio_protocol") == "unknown":
            return (f"sniff:{ns}/{finding.get('service')}",)
        return (f"port:{ns}/{finding.get('service')}",)

    @classmethod
    def charts(cls, finding: Finding, timeline: ServiceTimeline | None) -> tuple[Chart, ...]:
        return traffic_charts(finding, timeline) if isinstance(finding.evidence, TrafficEvidence) else ()

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        if inputs.logs is None and inputs.metrics is None:
            raise Skip("needs logs or metrics: give --logs and/or --prometheus-url")
        rec = inputs.analysis.traffic
        out: list[Finding] = []
        for st in rec.services.values():
            for pt in st.ports.values():
                if pt.service_port is None or pt.requests < inputs.settings.min_requests:
                    continue
                f = _treated_as_tcp(st, pt, inputs) or _excluded(st, pt, inputs)
                if f:
                    out.append(f)
        out.extend(_undeclared(inputs))
        out.extend(_not_scraped(inputs))
        return out


def _port_fix(sp: ServicePort, svc_name: str) -> str:
    rest = sp.name.split("-", 1)[1] if "-" in sp.name else (sp.name or "api")
    return (f"# Service {svc_name}: let Istio see HTTP on port {sp.port}\nports:\n"
            f"- name: http-{rest}\n  port: {sp.port}\n  targetPort: {sp.target_port}\n  appProtocol: http")


def _treated_as_tcp(st: ServiceTraffic, pt: PortTraffic, inputs: CheckInputs) -> Finding | None:
    sp = pt.service_port
    assert sp is not None
    sniff_failed = (sp.istio_protocol == "unknown" and st.mesh_measured and st.tcp_connections > 0
                    and st.mesh_requests == 0)
    if sp.istio_protocol not in TCP_PROXIED and not sniff_failed:
        return None
    if pt.http_lines < inputs.settings.min_requests:
        return None  # no HTTP on it: a real TCP protocol, correctly proxied as TCP
    svc = st.service
    why = (f"its appProtocol is {sp.app_protocol!r}" if sp.protocol_source == "appProtocol"
           else f"its name {sp.name!r} selects {sp.istio_protocol!r}" if sp.protocol_source == "name"
           else "protocol sniffing failed and Envoy fell back to TCP")
    return Finding(
        check="port-missing-from-metrics", severity=severity_for_missed(1.0 * pt.requests / max(1, st.observed)),
        title=f"{svc.name}:{sp.port} carries HTTP that Istio proxies as TCP",
        detail=(f"The logs show {pt.http_lines:,} HTTP requests on {svc.namespace}/{svc.name} port {sp.port} "
                f"(container port {pt.container_port}), but Istio treats the port as {sp.istio_protocol}: {why}. "
                + (f"Envoy counted only {int(st.tcp_connections):,} TCP connections (istio_tcp_*), with no "
                   "request count, response codes or latency." if st.mesh_measured else
                   "Envoy can count only TCP connections (istio_tcp_*) there, with no request count, response codes "
                   f"or latency (the mesh's metrics were not measured in this run: {st.mesh_unmeasured}).")),
        subject=f"{svc.namespace}/{svc.name}:{sp.port}/tcp", namespace=svc.namespace, service=svc.name,
        port=sp.port, cause="port-treated-as-tcp", resource=f"Service {svc.namespace}/{svc.name}",
        evidence=TrafficEvidence.of(pt.requests, 0 if st.mesh_measured else None, SERVER_LOGS,
                                    tcp_connections=st.tcp_connections if st.mesh_measured else None,
                                    http_log_lines=pt.http_lines, port_name=sp.name, app_protocol=sp.app_protocol,
                                    istio_protocol=sp.istio_protocol),
        suggestion=Suggestion(f"Rename port {sp.port} to http-… or set appProtocol: http.",
                              _port_fix(sp, svc.name), DOC_PROTOCOL))


def _excluded(st: ServiceTraffic, pt: PortTraffic, inputs: CheckInputs) -> Finding | None:
    if pt.container_port is None:
        return None
    pods: list[Pod] = [p for p in st.pods if p.sidecar.present
                       and p.exclusions.inbound_port_excluded(pt.container_port)]
    if not pods:
        return None
    missed = sum(pt.per_pod.get(p.name, 0) for p in pods)
    if missed < inputs.settings.min_requests:
        return None
    svc, sp = st.service, pt.service_port
    assert sp is not None
    share = missed / max(1, st.observed)
    first = pods[0]
    raw = first.annotations.get("traffic.sidecar.istio.io/excludeInboundPorts") or \
        first.annotations.get("traffic.sidecar.istio.io/includeInboundPorts", "")
    return Finding(
        check="port-missing-from-metrics", severity=severity_for_missed(share),
        title=f"{svc.name}:{sp.port} is excluded from the sidecar",
        detail=(f"{len(pods)} pod(s) of {svc.namespace}/{svc.name} exclude container port {pt.container_port} from "
                f"Envoy (annotation value {raw!r}); the logs show {missed:,} requests on it that no mesh metric "
                f"counts ({pct(share)} of the service's traffic)."),
        subject=f"{svc.namespace}/{svc.name}:{sp.port}/excluded", namespace=svc.namespace, service=svc.name,
        workload=first.workload, port=sp.port, cause="port-excluded",
        resource=f"Deployment {svc.namespace}/{first.workload}",
        evidence=TrafficEvidence.of(missed, 0, SERVER_LOGS, ratio=0.0, annotation=raw, pods=[p.name for p in pods]),
        suggestion=Suggestion(f"Remove {pt.container_port} from traffic.sidecar.istio.io/excludeInboundPorts on "
                              f"{first.workload} (or accept that this port is unmeasured).", None, DOC_ANNOTATIONS))


@dataclass(frozen=True, eq=False)
class ScrapeEvidence(FindingEvidence):
    """metrics-port-not-scraped: pods annotated for scraping that no `up` series names."""

    pods: tuple[str, ...]
    annotated_port: str
    targets_seen: int
    """`up` series in the window (in scope)."""


@dataclass
class _Undeclared:
    requests: int = 0
    mesh: float = 0.0
    pods: set[str] = field(default_factory=set)


def _metrics_off_namespaces(inputs: CheckInputs) -> set[str]:
    """Namespaces where a Telemetry resource (or the MeshConfig) turns off some sidecar's server-side request count:
    what reaches an undeclared port there is not all counted (not judged)."""
    idx = inputs.index
    return {p.namespace for p in idx.topo.pods if idx.pod_request_metrics_off(p) is not None}


def _undeclared(inputs: CheckInputs) -> list[Finding]:
    """Traffic to container ports no Service declares (Envoy: InboundPassthroughCluster)."""
    rec = inputs.analysis.traffic
    idx = inputs.index
    groups: dict[tuple[str, str, int], _Undeclared] = defaultdict(_Undeclared)
    for u in rec.undeclared:
        g = groups[(u.pod.namespace, u.pod.workload, u.port)]
        g.requests += u.requests
        g.pods.add(u.pod.name)
    if inputs.metrics is not None:
        df = inputs.metrics.frame("mesh_requests", REQ_COLS)
        if not df.empty:
            df = df[df["destination_service_name"].str.startswith("InboundPassthroughCluster")
                    & (df["reporter"] == "destination")]
            for row in df.itertuples(index=False):
                port = int(row.destination_port) if str(row.destination_port).isdigit() else 0
                key = (str(row.destination_workload_namespace), str(row.destination_workload), port)
                if port == 0:
                    key = next((k for k in groups if k[:2] == key[:2]), key)
                groups[key].mesh += float(row.value)
    out = []
    off = _metrics_off_namespaces(inputs)
    for (ns, workload, port), g in groups.items():
        requests = max(g.requests, int(g.mesh))
        if requests < inputs.settings.min_requests or ns in off:
            continue
        pods = sorted(g.pods)
        pod = (idx.pods_by_key.get((ns, pods[0])) if pods  # only the mesh saw it: the workload's pods name it
               else next((p for p in idx.topo.pods if (p.namespace, p.workload) == (ns, workload)), None))
        services = idx.services_of_pod(ns, pod.name) if pod else ()
        svc = services[0] if services else None
        resource = f"Service {ns}/{svc.name}" if svc else f"Deployment {ns}/{workload}"
        where = f"port {port}" if port else "a port (the metrics and logs do not say which)"
        config = (f"# add to Service {svc.name if svc else workload}\nports:\n- name: http-{port}\n"
                  f"  port: {port}\n  targetPort: {port}") if port else None
        out.append(Finding(
            check="port-missing-from-metrics", severity=Severity.WARNING,
            title=f"{workload} serves traffic on {where} that no Service declares",
            detail=(f"{requests:,} requests reached {ns}/{workload} on container {where}. No Service "
                    "declares it, so Envoy handles it as InboundPassthroughCluster: metrics name no service, "
                    "and protocol-specific telemetry, policy and routing do not apply."),
            subject=f"{ns}/{workload}:{port}/undeclared", namespace=ns, service=svc.name if svc else None,
            workload=workload, port=port or None, cause="port-not-declared", resource=resource,
            evidence=TrafficEvidence.of(g.requests, 0, SERVER_LOGS, ratio=0.0,
                                        inbound_passthrough_requests=int(g.mesh), pods=pods[:20]),
            suggestion=Suggestion(f"Declare {'port ' + str(port) if port else 'the port'} in the workload's Service "
                                  "with an http- name.", config, DOC_PROTOCOL)))
    return out


def _not_scraped(inputs: CheckInputs) -> list[Finding]:
    """Pods annotated for scraping that no Prometheus target covered during the window."""
    metrics = inputs.metrics
    if metrics is None or "scrape_targets" in metrics.failed:
        return []
    if not metrics.has("scrape_targets") and not inputs.settings.namespaces:
        return []  # no `up` at all (a federated or remote-write source): scraping cannot be judged
    up = metrics.frame("scrape_targets", ["job", "namespace", "pod", "instance"])
    seen_pods = set(zip(up["namespace"], up["pod"], strict=True))
    seen_ips = {host_of(str(i)) for i in up["instance"]}
    groups: dict[tuple[str, str], list[Pod]] = defaultdict(list)
    for pod in inputs.index.topo.pods:
        if pod.annotations.get("prometheus.io/scrape") != "true" or pod.phase != "Running":
            continue
        if (pod.namespace, pod.name) in seen_pods or (pod.ip and pod.ip in seen_ips):
            continue
        groups[(pod.namespace, pod.workload)].append(pod)
    out = []
    for (ns, workload), pods in groups.items():
        port = pods[0].annotations.get("prometheus.io/port", "")
        out.append(Finding(
            check="port-missing-from-metrics", severity=Severity.WARNING,
            title=f"{workload}: metrics port {port or '(default)'} is never scraped",
            detail=(f"{len(pods)} pod(s) of {ns}/{workload} carry prometheus.io/scrape: \"true\" (port "
                    f"{port or 'unset'}), but no `up` series names them during the window: neither the app's "
                    "own metrics nor, for injected pods, the merged Envoy metrics reach Prometheus."),
            subject=f"{ns}/{workload}/not-scraped", namespace=ns, workload=workload,
            port=int(port) if port.isdigit() else None, cause="metrics-port-not-scraped",
            resource=f"Deployment {ns}/{workload}",
            evidence=ScrapeEvidence(tuple(p.name for p in pods[:20]), port, len(up)),
            suggestion=Suggestion("Check that a scrape job (kubernetes-pods, a ServiceMonitor or a PodMonitor) "
                                  "selects these pods and that no relabel rule drops them.", None, DOC_SCRAPE)))
    return out
