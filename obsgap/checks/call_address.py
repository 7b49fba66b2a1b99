"""call-address-not-fqdn: callers that address a service by pod IP, short name or the wrong namespace."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from obsgap.analysis.reconcile import caller_calls
from obsgap.checks.base import Check, CheckInputs, Skip
from obsgap.model import Finding, FindingEvidence, ObjectRef, Service, Severity, Suggestion
from obsgap.names import service_fqdn, split_host_port
from obsgap.text import pct

DOC = "https://istio.io/latest/docs/ops/configuration/traffic-management/dns/"
_SEVERITY = {"pod-ip": Severity.WARNING, "wrong-namespace": Severity.CRITICAL, "short-name": Severity.INFO}
_WHY = {
    "pod-ip": ("calls a pod IP directly: the caller's sidecar matches no service (PassthroughCluster), so "
               "routing rules, retries, mTLS policy and destination metrics keyed on the service miss them, "
               "and the call breaks when the pod is rescheduled"),
    "wrong-namespace": ("uses a name that does not resolve from the caller's namespace (the service lives in "
                        "another one): these calls fail with a DNS error or reach nothing"),
    "short-name": ("uses a short name that only resolves inside the caller's namespace: it works today, "
                   "but breaks if either side moves, and it hides which namespace is meant"),
}


@dataclass(frozen=True, eq=False)
class CallEvidence(FindingEvidence):
    """The calls one workload made to a service by an address that is not its FQDN."""

    caller: str
    requests: int
    share: float
    """Of the caller's calls to that service."""
    addresses: tuple[str, ...]
    fqdn: str

    @property
    def impact(self) -> int:
        return self.requests


@dataclass
class _Calls:
    requests: int = 0
    failed: int = 0
    addresses: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class CallAddressNotFqdn(Check):
    """What it does: resolves every address callers use (the URL host in application logs, the
    `:authority` in client-side Envoy logs) the way Kubernetes DNS would from the caller's namespace,
    and reports callers that use a pod IP, a short name, or a name that only exists in another
    namespace, with their share of the calls to that service.

    Why is this bad? The name contract breaks: VirtualService hosts, DestinationRules and
    destination-keyed dashboards all assume the service name; pod-IP calls land in
    PassthroughCluster, and wrong-namespace names simply fail.

    Example: `web` in namespace `frontend` calls `http://catalog:8080`, but `catalog` lives in `shop`.

    Use instead: call `catalog.shop.svc.cluster.local:8080`.
    """

    id = "call-address-not-fqdn"
    title = "Callers that do not use the service FQDN"
    needs = ("topology", "logs")
    kinds = ("Service", "Pod")
    doc_url = DOC
    causes = ("pod-ip", "short-name", "wrong-namespace")

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """Each caller's calls to each service, where that caller's own logs show them."""
        return frozenset(_key(svc.namespace, svc.name, f"{ns}/{workload}")
                         for ns, workload, svc, *_ in _service_calls(inputs))

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        """A caller's address for a service is judged on that caller's own logs (another caller's say nothing)."""
        evidence = finding.get("evidence") or {}
        return (_key(str(finding.get("namespace")), str(finding.get("service")), str(evidence.get("caller"))),)

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        logs = inputs.logs
        assert logs is not None
        if logs.outbound.empty:
            raise Skip("the logs hold no outbound calls (no application lines with full URLs and no client-side "
                       "Envoy lines)")
        groups: dict[tuple[str, str, str, str, str], _Calls] = defaultdict(_Calls)
        totals: dict[tuple[str, str, str, str], int] = defaultdict(int)
        for ns, workload, svc, kind, authority, n in _service_calls(inputs):
            totals[(ns, workload, svc.namespace, svc.name)] += n
            if kind not in _SEVERITY:
                continue
            g = groups[(ns, workload, svc.namespace, svc.name, kind)]
            g.requests += n
            g.addresses[authority] += n
        out = []
        for (ns, workload, sns, sname, kind), g in groups.items():
            if g.requests < inputs.settings.min_requests:
                continue
            total = totals[(ns, workload, sns, sname)]
            share = g.requests / total if total else 1.0
            fqdn = service_fqdn(sname, sns)
            addresses = sorted(g.addresses, key=lambda a: -g.addresses[a])
            out.append(Finding(
                check="call-address-not-fqdn", severity=_SEVERITY[kind],
                title=f"{workload} calls {sname} by {kind.replace('-', ' ')} ({pct(share)} of its calls)",
                detail=(f"{ns}/{workload} made {g.requests:,} calls to {sns}/{sname} as "
                        f"{', '.join(addresses[:3])}: it {_WHY[kind]}."),
                subject=f"{ns}/{workload}->{sns}/{sname}/{kind}", namespace=sns, service=sname,
                workload=workload, cause=kind, resource=f"Deployment {ns}/{workload}",
                refs=(ObjectRef("Deployment", ns, workload),
                      *(ObjectRef("address", sns, a) for a in addresses[:10])),
                evidence=CallEvidence(f"{ns}/{workload}", g.requests, round(share, 4), tuple(addresses[:10]), fqdn),
                suggestion=Suggestion(f"Configure {workload} to call {fqdn} (port as before).",
                                      f"# e.g. the caller's environment\n{sname.upper().replace('-', '_')}_URL="
                                      f"http://{fqdn}:{_port(addresses[0])}", DOC)))
        return out


def _service_calls(inputs: CheckInputs) -> Iterator[tuple[str, str, Service, str, str, int]]:
    """The calls of caller pods to Services in their logs: (caller namespace, its workload, the Service, how the
    address resolved, the address, calls)."""
    idx = inputs.index
    for (ns, pod_name, authority), n in caller_calls(inputs.logs) if inputs.logs is not None else ():
        if not pod_name:
            continue
        resolved = idx.resolve(authority, ns)
        if resolved.service is not None:
            pod = idx.pods_by_key.get((ns, pod_name))
            yield ns, pod.workload if pod else pod_name, resolved.service, resolved.kind, authority, n


def _key(namespace: str, service: str, caller: str) -> str:
    return f"call:{namespace}/{service}<-{caller}"


def _port(address: str) -> str:
    port = split_host_port(address)[1]
    return str(port) if port is not None else "80"
