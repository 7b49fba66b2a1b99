"""Istio's host resolution for config objects: short names, FQDNs, wildcards, exportTo visibility.

Follows istio's ResolveShortnameToFQDN: a host without a dot is expanded with the config's
namespace (`reviews` in `default` -> `reviews.default.svc.cluster.local`); a host with a dot is
taken as written (so `reviews.default` matches no Kubernetes service).
"""

from __future__ import annotations

from dataclasses import dataclass

from obsgap.model import DestinationRule, Service, ServiceEntry
from obsgap.topology import CLUSTER_DOMAIN, TopologyIndex, is_ip


def to_fqdn(host: str, namespace: str) -> str:
    if host == "*" or is_ip(host) or "." in host:
        return host.lower()
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}".lower()


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: exact, or `*.suffix` wildcards on either side."""
    pattern, host = pattern.lower(), host.lower()
    if pattern == host or pattern == "*":
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) or (host.startswith("*.") and host[1:].endswith(suffix))
    return False


def visible(export_to: tuple[str, ...], owner_ns: str, from_ns: str) -> bool:
    if not export_to or "*" in export_to:
        return True
    return from_ns in export_to or ("." in export_to and from_ns == owner_ns)


@dataclass(frozen=True)
class HostTarget:
    service: Service | None = None
    entry: ServiceEntry | None = None

    @property
    def ports(self) -> tuple[int, ...] | None:
        if self.service is not None:
            return tuple(p.port for p in self.service.ports)
        if self.entry is not None and self.entry.ports:
            return self.entry.ports
        return None


class HostResolver:
    def __init__(self, index: TopologyIndex) -> None:
        self.index = index
        self.by_fqdn: dict[str, Service] = {s.fqdn: s for s in index.topo.services}

    def resolve(self, fqdn: str, from_ns: str) -> HostTarget | None:
        """The Service or ServiceEntry a fully qualified host reaches from a namespace, if any."""
        svc = self.by_fqdn.get(fqdn.lower())
        if svc is not None and visible(svc.export_to, svc.namespace, from_ns):
            return HostTarget(service=svc)
        if "*" in fqdn and fqdn != "*":
            for s in self.index.topo.services:
                if host_matches(fqdn, s.fqdn) and visible(s.export_to, s.namespace, from_ns):
                    return HostTarget(service=s)
        for se in self.index.topo.service_entries:
            if not visible(se.export_to, se.namespace, from_ns):
                continue
            if any(host_matches(h, fqdn) for h in se.hosts):
                return HostTarget(entry=se)
        return None

    def destination_rules_for(self, fqdn: str, from_ns: str) -> list[DestinationRule]:
        out = []
        for dr in self.index.topo.destination_rules:
            if not visible(dr.export_to, dr.namespace, from_ns):
                continue
            if host_matches(to_fqdn(dr.host, dr.namespace), fqdn):
                out.append(dr)
        return out
