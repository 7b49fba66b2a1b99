"""virtualservice-host-unresolved: VirtualService destinations that reach no service, port or subset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from obsgap.checks.base import Check, CheckInputs
from obsgap.model import Finding, FindingEvidence, ObjectRef, RouteDestination, Severity, Suggestion, VirtualService
from obsgap.names import CLUSTER_DOMAIN, to_fqdn
from obsgap.topology import TopologyIndex

DOC = "https://istio.io/latest/docs/reference/config/networking/virtual-service/#Destination"


def _namespaces(vs: VirtualService) -> list[str]:
    """Namespaces the destination must be visible from: where the VirtualService is exported."""
    out = [vs.namespace if e in (".", "*") else e for e in vs.export_to]
    return sorted(set(out)) or [vs.namespace]


@dataclass(frozen=True, eq=False)
class RouteEvidence(FindingEvidence):
    """The route destination that resolves to nothing, and what it names."""

    kind: str
    """host, subset or port: what does not resolve."""
    host: str
    fqdn: str | None
    subset: str | None
    port: int | None
    route_kind: str
    """route or mirror."""


class VirtualServiceHostUnresolved(Check):
    """What it does: resolves every route and mirror destination of every VirtualService the way
    Istio does (a short name is relative to the VirtualService's namespace, a dotted name is taken as
    written, `*.` wildcards match ServiceEntry hosts, `exportTo` limits visibility) and reports a
    destination whose host matches no Service or ServiceEntry, whose port the service does not
    expose, or whose subset no DestinationRule defines. Same as IST0101.

    Why is this bad? Envoy answers such routes with 503 (NR/UH) or silently drops the mirror, and
    metrics show the traffic under a destination that does not exist.

    Example: `host: reviews.default` (not expanded by Istio) or `subset: v4` with no such subset.

    Use instead: `host: reviews.default.svc.cluster.local` (or `reviews` from the same namespace),
    and define the subset in the DestinationRule.
    """

    id = "virtualservice-host-unresolved"
    title = "VirtualService destinations that resolve to nothing"
    needs = ("topology",)
    kinds = ("Service", "networking.istio.io/VirtualService", "networking.istio.io/DestinationRule",
             "networking.istio.io/ServiceEntry")
    istio_code = "IST0101"
    doc_url = DOC
    causes = ("unresolved-host", "unresolved-subset", "unresolved-port")

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        resolver = inputs.index
        out: list[Finding] = []
        for vs in inputs.index.topo.virtual_services:
            for i, dest in enumerate(vs.destinations):
                for kind, text in _problems(resolver, vs, dest):
                    shown = dest.host or "(empty destination)"
                    out.append(Finding(
                        check=cls.id, severity=Severity.WARNING if dest.kind == "route" else Severity.INFO,
                        title=f"VirtualService {vs.name}: {dest.kind} to {shown} {text}",
                        detail=(f"VirtualService {vs.namespace}/{vs.name} sends {dest.kind} traffic to {shown}"
                                + (f" subset {dest.subset}" if dest.subset else "")
                                + (f" port {dest.port}" if dest.port else "") + f": {text}."),
                        subject=f"{vs.namespace}/{vs.name}#{i}/{kind}", namespace=vs.namespace, port=dest.port,
                        cause=f"unresolved-{kind}", resource=f"VirtualService {vs.namespace}/{vs.name}",
                        refs=(ObjectRef("VirtualService", vs.namespace, vs.name),),
                        istio_code=cls.istio_code,
                        evidence=RouteEvidence(kind, dest.host, to_fqdn(dest.host, vs.namespace) if dest.host else None,
                                               dest.subset, dest.port, dest.kind),
                        suggestion=Suggestion(_fix(kind, dest, vs), None, DOC)))
        return out


def _problems(resolver: TopologyIndex, vs: VirtualService, dest: RouteDestination) -> list[tuple[str, str]]:
    """(kind, text) for the host/port and, independently, the subset of one destination."""
    if not dest.host:
        return [("host", "has no destination host")]
    out: list[tuple[str, str]] = []
    fqdn = to_fqdn(dest.host, vs.namespace)
    for ns in _namespaces(vs):
        target = resolver.config_host(fqdn, ns)
        if target is None:
            where = f" visible from namespace {ns}" if ns != vs.namespace else ""
            out.append(("host", f"matches no Service or ServiceEntry{where}"))
            break
        ports = target.ports
        if dest.port is not None and ports is not None and dest.port not in ports:
            out.append(("port", f"port {dest.port} is not one of {', '.join(map(str, ports))}"))
            break
    if dest.subset:
        rules = resolver.destination_rules_for(fqdn, vs.namespace)
        if not any(s.name == dest.subset for dr in rules for s in dr.subsets):
            why = "no DestinationRule for this host" if not rules else \
                f"DestinationRule {rules[0].name} defines no such subset"
            out.append(("subset", f"subset {dest.subset} is undefined ({why})"))
    return out


def _fix(kind: str, dest: RouteDestination, vs: VirtualService) -> str:
    if kind == "subset":
        return f"Add subset {dest.subset} (with the pod labels it selects) to the DestinationRule for {dest.host}."
    if kind == "port":
        return "Use one of the service's ports in destination.port.number."
    if dest.host and "." in dest.host and not dest.host.endswith("." + CLUSTER_DOMAIN):
        return f"Use the full name (e.g. {dest.host.split('.')[0]}.<namespace>.{CLUSTER_DOMAIN}): Istio does not " \
               "expand dotted short names."
    return "Point the destination at an existing Service (FQDN) or declare the host with a ServiceEntry."
