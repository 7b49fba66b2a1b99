"""job-name-mismatch: Prometheus `job` values that name no service of the pods they scrape."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from obsgap.checks.base import Check, CheckInputs, Skip
from obsgap.checks.dashboard_queries import Board
from obsgap.model import Finding, FindingEvidence, ObjectRef, Pod, Severity, Suggestion
from obsgap.names import host_of
from obsgap.text import full_match

DOC = "https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1.ServiceMonitorSpec"
# Jobs of Istio's sample Prometheus config (samples/addons/prometheus.yaml) and other well-known
# discovery jobs: they are named after the discovery role, not a service, by design.
GENERIC_JOBS = frozenset({
    "kubernetes-api-servers", "kubernetes-apiservers", "kubernetes-nodes", "kubernetes-nodes-cadvisor",
    "kubernetes-cadvisor", "kubernetes-pods", "kubernetes-pods-slow", "kubernetes-service-endpoints",
    "kubernetes-service-endpoints-slow", "kubernetes-services", "prometheus", "prometheus-pushgateway",
    "kubelet", "node-exporter", "kube-state-metrics", "envoy-stats", "istio-mesh", "istiod", "pilot",
    "istio-policy", "istio-telemetry", "pushgateway",
})
_SUFFIXES = re.compile(r"([-_.]?(svc|service|metrics|monitor|servicemonitor|podmonitor|exporter|scrape))+$")


def normalize(name: str, namespace: str | None = None) -> str:
    n = name.lower()
    if namespace:
        for sep in ("/", "-", ".", "_"):
            if n.startswith(namespace + sep):
                n = n[len(namespace) + 1:]
                break
    n = n.rsplit("/", 1)[-1]
    n = _SUFFIXES.sub("", n)
    return re.sub(r"[-_.]", "", n)


def closest(job: str, namespace: str | None, names: Sequence[str]) -> str | None:
    if not names:
        return None
    target = normalize(job, namespace)
    for n in names:
        if normalize(n, namespace) == target:
            return n
    by_norm = {normalize(n, namespace): n for n in names}
    match = difflib.get_close_matches(target, list(by_norm), n=1, cutoff=0.0)
    return by_norm[match[0]] if match else sorted(names)[0]


@dataclass(frozen=True, eq=False)
class JobEvidence(FindingEvidence):
    """A job, what it scrapes, and the name people expect (docs/findings.md: job-name-mismatch)."""

    suggested_service: str | None
    targets: tuple[str, ...]
    pods: tuple[str, ...]
    services_of_targets: tuple[str, ...]
    service_discovery: tuple[str, ...]
    """The Service names the targets API's discovered labels give (Prometheus only)."""
    dashboards: tuple[str, ...]
    """Dashboard panels (`dashboard / panel`) and rules (`rule group <name> / alert <name>`, `/ record <name>`) that
    filter on the expected name and show nothing."""


class JobNameMismatch(Check):
    """What it does: maps every scrape target of every Prometheus `job` to its pod (from the `up`
    series' `namespace`/`pod` labels, else its `instance` IP) and compares the job name with the
    Services those pods belong to. Discovery-role jobs (`kubernetes-pods`,
    `kubernetes-service-endpoints`, ... as in Istio's sample config) are fine; ServiceMonitor jobs
    must equal the Service name; PodMonitor jobs (`namespace/name`) must not name another service. A
    mismatch names the job, its targets, the closest real service, and the dashboard panels
    (`--dashboards`) and the rules Prometheus evaluates that filter on the name people expect and therefore show
    nothing.

    Why is this bad? Dashboards, recording rules and SLO queries written as `job="cart"` return no
    data when the job is really `cart-svc`, and nobody notices an empty panel at 3 a.m.

    Example: a ServiceMonitor whose `jobLabel` yields `checkout-metrics` for Service `checkout`.

    Use instead: name the job after the Service (ServiceMonitor default), or fix the queries.
    """

    id = "job-name-mismatch"
    title = "Prometheus job names that match no service"
    needs = ("topology", "metrics")
    kinds = ("Service", "Pod")
    queries = ("scrape_targets",)
    doc_url = DOC

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """Every job the `up` series name in the window."""
        metrics = inputs.metrics
        if metrics is None or not metrics.has("scrape_targets"):
            return frozenset()
        return frozenset(f"job:{j}" for j in metrics.frame("scrape_targets", ["job"])["job"])

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        metrics = inputs.metrics
        assert metrics is not None
        if not metrics.has("scrape_targets"):
            raise Skip("no `up` series in the window: cannot see which jobs scrape what")
        pods_by_job, instances = _targets(inputs)
        sd_service = _discovered_services(inputs)
        out = []
        for job, pods in sorted(pods_by_job.items()):
            if job in GENERIC_JOBS or job.startswith("kubernetes-"):
                continue
            found = _mismatch(inputs, job, pods, sorted(set(instances[job])), sd_service)
            if found is not None:
                out.append(found)
        return out


def _targets(inputs: CheckInputs) -> tuple[dict[str, list[Pod]], dict[str, list[str]]]:
    """Per job, the pods its targets are (by the `namespace`/`pod` labels, else the instance's IP) and its
    instances."""
    assert inputs.metrics is not None
    up = inputs.metrics.frame("scrape_targets", ["job", "namespace", "pod", "instance"])
    idx = inputs.index
    pods_by_job: dict[str, list[Pod]] = defaultdict(list)
    instances: dict[str, list[str]] = defaultdict(list)
    for row in up.itertuples(index=False):
        job = str(row.job)
        pod = idx.pods_by_key.get((str(row.namespace), str(row.pod))) or idx.pods_by_ip.get(host_of(str(row.instance)))
        instances[job].append(str(row.instance))
        if pod is not None:
            pods_by_job[job].append(pod)
    return pods_by_job, instances


def _mismatch(inputs: CheckInputs, job: str, pods: list[Pod], instances: list[str],
              sd_service: dict[str, str]) -> Finding | None:
    idx = inputs.index
    pod_monitor = "/" in job
    name_part = job.rsplit("/", 1)[-1]
    wanted = name_part if pod_monitor else job
    # pods of the service the job is named after are fine; any other pod under this job is a mismatch
    pods = [p for p in pods if wanted not in {s.name for s in idx.services_of_pod(p.namespace, p.name)}]
    if not pods:
        return None
    services = {s.key: s for p in pods for s in idx.services_of_pod(p.namespace, p.name)}
    names = sorted({s.name for s in services.values()})
    ns = pods[0].namespace
    elsewhere = [s for s in idx.config_services_named(name_part) if s.key not in services]
    if pod_monitor and not elsewhere:
        return None  # PodMonitor names are free-form unless they name another service
    suggested = closest(job, ns, names or sorted({p.workload for p in pods}))
    if elsewhere:
        why = (f"is named after Service {elsewhere[0].namespace}/{elsewhere[0].name}, but scrapes pods of "
               f"{', '.join(names) or 'no service'}")
    else:
        why = f"names no Service; its targets belong to {', '.join(names) or 'pods with no Service'}"
    damage = _damage(inputs, job, suggested)
    detail = f"Prometheus job {job!r} {why}."
    if damage:
        detail += (f" {len(damage)} dashboard queries or Prometheus rules filter on job={suggested!r} and read no "
                   "series of it.")
    return Finding(
        check=JobNameMismatch.id, severity=Severity.WARNING, title=f"job {job!r} should be {suggested!r}",
        detail=detail, subject=job, namespace=ns, service=suggested, job=job,
        resource=f"Service {ns}/{suggested}" if suggested in names else None,
        refs=(ObjectRef("job", "", job),),
        evidence=JobEvidence(suggested, tuple(instances[:20]), tuple(sorted({p.name for p in pods})[:20]),
                             tuple(names), tuple(sorted({sd_service[i] for i in instances if i in sd_service})),
                             tuple(damage[:20])),
        suggestion=Suggestion(
            f"Make the job {suggested!r} (ServiceMonitor: drop jobLabel or set the label to the Service "
            f"name), or change queries from job={suggested!r} to job={job!r}.",
            f"# ServiceMonitor for {suggested}: with no spec.jobLabel the job is the Service name\n"
            f"spec:\n  selector:\n    matchLabels:\n      app: {suggested}", DOC))


def _discovered_services(inputs: CheckInputs) -> dict[str, str]:
    """instance -> Service name from the targets API, where the backend has one."""
    targets = inputs.metrics.targets if inputs.metrics else None
    out = {}
    for t in targets or []:
        labels = t.get("labels") or {}
        found = (t.get("discoveredLabels") or {}).get("__meta_kubernetes_service_name")
        if found and labels.get("instance"):
            out[str(labels["instance"])] = str(found)
    return out


def _damage(inputs: CheckInputs, job: str, expected: str | None) -> list[str]:
    """Dashboard queries that filter on the name people expect instead of the real job."""
    out = []
    for q in inputs.dashboards:
        for op, value in q.job_matchers():
            exact = op == "=" and value == expected and value != job
            regex = op == "=~" and bool(expected) and _full(value, expected or "") and not _full(value, job)
            if exact or regex:
                out.append(f"{Board.of(q).name} / {q.panel}")
    return sorted(set(out))


def _full(pattern: str, text: str) -> bool:
    if "$" in pattern:  # a Grafana variable: its value is unknown here
        return False
    return bool(full_match(pattern, text))
