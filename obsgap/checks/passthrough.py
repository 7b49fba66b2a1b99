"""passthrough-traffic: requests counted under PassthroughCluster / BlackHoleCluster, attributed."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from obsgap.analysis.reconcile import Reconciliation
from obsgap.checks.base import Check, CheckInputs, Skip
from obsgap.model import Finding, FindingEvidence, Severity, Suggestion
from obsgap.names import is_ip, service_fqdn, split_host_port
from obsgap.text import pct

DOC = "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-control/"
COLS = ["reporter", "destination_service", "destination_service_name", "source_workload",
        "source_workload_namespace"]


@dataclass(frozen=True, eq=False)
class PassthroughEvidence(FindingEvidence):
    """Requests client sidecars counted under a passthrough cluster, with who sent them and to which address."""

    requests: int
    cluster: str
    """PassthroughCluster or BlackHoleCluster."""
    callers: tuple[str, ...]
    addresses: tuple[str, ...]

    @property
    def impact(self) -> int:
        return self.requests


@dataclass
class _Group:
    requests: float = 0.0
    callers: Counter[str] = field(default_factory=Counter)
    addresses: Counter[str] = field(default_factory=Counter)


class PassthroughTraffic(Check):
    """What it does: reads the requests Istio's client sidecars counted under `PassthroughCluster`
    (no service matched the address) or `BlackHoleCluster` (outbound traffic policy REGISTRY_ONLY
    refused it) and attributes them: an IP that belongs to a pod is mapped back to that pod's
    service; anything else is named as the external host it is.

    Why is this bad? Dashboards keyed on `destination_service_name` show these requests as
    "PassthroughCluster", not as the service they reached: that service's own panels undercount it,
    and routing, retries, mTLS and policies for it do not apply. BlackHoleCluster traffic is being
    dropped.

    Example: `checkout` calls `10.44.1.7:8080` (a pod of `payments`) instead of
    `payments.shop.svc.cluster.local`.

    Use instead: call services by their FQDN; declare external hosts with a ServiceEntry so they get
    their own metrics.
    """

    id = "passthrough-traffic"
    title = "Requests counted under passthrough clusters"
    needs = ("metrics",)
    kinds = ("Service", "Pod")
    queries = ("passthrough_requests", "mesh_requests")
    doc_url = DOC

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str] | None:
        """Everything in scope, once the passthrough query answered; nothing without a topology (an IP is then
        neither a pod of the mesh nor an external host: unknown)."""
        return None if inputs.topology is not None else frozenset()

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        metrics = inputs.metrics
        assert metrics is not None
        if "passthrough_requests" in metrics.failed:
            raise Skip(metrics.failed["passthrough_requests"])
        df = metrics.frame("passthrough_requests", COLS)
        df = df[(df["reporter"] == "source") & df["destination_service_name"].isin(
            ["PassthroughCluster", "BlackHoleCluster"])]
        idx = inputs.index
        groups: dict[tuple[str, str, str], _Group] = defaultdict(_Group)
        for row in df.itertuples(index=False):
            host, _port = split_host_port(str(row.destination_service))
            target, ns = host, ""
            if is_ip(host):
                resolved = idx.resolve(str(row.destination_service), None)
                if resolved.service is not None:
                    target, ns = resolved.service.name, resolved.service.namespace
                elif resolved.pod is not None:
                    target, ns = resolved.pod.workload, resolved.pod.namespace
            g = groups[(str(row.destination_service_name), ns, target)]
            g.requests += float(row.value)
            g.callers[f"{row.source_workload_namespace}/{row.source_workload}"] += int(float(row.value))
            g.addresses[str(row.destination_service)] += int(float(row.value))
        out = []
        scope = set(inputs.settings.namespaces)
        traffic = None if "mesh_requests" in metrics.failed else inputs.analysis.traffic  # else counts unknown
        for (cluster, ns, target), g in groups.items():
            if g.requests < inputs.settings.min_requests:
                continue
            if scope and not (ns in scope or (not ns and any(c.split("/", 1)[0] in scope for c in g.callers))):
                continue  # the query is not scoped (no destination namespace on these series): -n filters here
            out.append(_finding(cluster, ns, target, g, traffic, inputs.topology is not None))
        return out


def _finding(cluster: str, ns: str, target: str, g: _Group, traffic: Reconciliation | None,
             topology: bool) -> Finding:
    callers = [c for c, _ in g.callers.most_common(10)]
    addresses = [a for a, _ in g.addresses.most_common(10)]
    n = round(g.requests)
    if cluster == "BlackHoleCluster":
        sev, title = Severity.WARNING, f"{n:,} requests to {target} dropped by BlackHoleCluster"
        text = ("The outbound traffic policy is REGISTRY_ONLY and no ServiceEntry declares this host, so Envoy "
                "answers 502 without sending anything.")
        fix = Suggestion(f"Declare {target} with a ServiceEntry if the calls are legitimate.",
                         _service_entry(target, addresses), DOC)
    elif ns:
        if traffic is None:  # the service's own count is unknown, and so is the share
            sev = Severity.WARNING
            title = f"{target}: {n:,} of its callers' requests are counted as PassthroughCluster"
        else:
            found = traffic.services.get((ns, target))
            st = found.source_reported if found is not None else 0.0  # its callers' sidecars' count of it
            share = g.requests / (g.requests + st) if (g.requests + st) else 1.0
            sev = Severity.WARNING if share >= 0.1 else Severity.INFO
            title = f"{target}: {pct(share)} of its callers' requests are counted as PassthroughCluster"
        text = (f"Callers reached pods of {ns}/{target} by IP ({', '.join(addresses[:3])}), so their sidecars "
                f"matched no service: these {n:,} requests appear under destination_service_name="
                f"\"PassthroughCluster\", not under {target}, and bypass its routing rules and policies.")
        fix = Suggestion(f"Make the callers use {service_fqdn(target, ns)} instead of pod IPs.", None, DOC)
    elif is_ip(target) and not topology:
        sev, title = Severity.INFO, f"{n:,} requests to {target} pass through undeclared"
        text = (f"No Kubernetes topology was given, so whether {target} is a pod of the mesh (callers using pod "
                "IPs) or an external address is unknown.")
        fix = Suggestion("Run with the cluster's topology (--kube-snapshot, or --kubeconfig) to tell.", None, DOC)
    else:
        sev, title = Severity.INFO, f"{n:,} requests to external host {target} pass through undeclared"
        text = ("No ServiceEntry declares this host, so its traffic has no service-level metrics of its own "
                "(only PassthroughCluster).")
        fix = Suggestion(f"Declare {target} with a ServiceEntry to get per-host metrics and policy.",
                         _service_entry(target, addresses), DOC)
    return Finding(
        check="passthrough-traffic", severity=sev, title=title,
        detail=f"{text} Callers: {', '.join(callers[:5])}.",
        subject=f"{cluster}/{ns}/{target}", namespace=ns or None, service=target if ns else None,
        resource=f"Service {ns}/{target}" if ns else None,
        evidence=PassthroughEvidence(n, cluster, tuple(callers), tuple(addresses)),
        suggestion=fix)


def _k8s_name(host: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-")[:60] or "external"


def _service_entry(host: str, addresses: list[str]) -> str:
    ports = sorted({p for p in (split_host_port(a)[1] for a in addresses) if p})
    port_lines = "\n".join(f"  - number: {p}\n    name: http-{p}\n    protocol: HTTP" for p in ports or [80])
    kind = "STATIC" if is_ip(host) else "DNS"
    return (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {_k8s_name(host)}\n"
            f"spec:\n  hosts:\n  - {host if not is_ip(host) else 'external.example'}\n  location: MESH_EXTERNAL\n"
            f"  resolution: {kind}\n  ports:\n{port_lines}")
