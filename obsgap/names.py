"""The rules for names and addresses, written once: the cluster domain, host:port, FQDNs, Istio host matching.

Every module that builds or splits a service name or an address goes through these functions, so the report, the
checks and the log readers agree on what `reviews`, `reviews.default`, `10.44.1.7:8080` and `[fd00::7]:8080` mean.

Istio's short names (ResolveShortnameToFQDN): a host without a dot is expanded with the config's namespace
(`reviews` in `default` -> `reviews.default.svc.cluster.local`); a host with a dot is taken as written (so
`reviews.default` matches no Kubernetes service in a VirtualService, while Kubernetes DNS resolves it for a caller).
"""

from __future__ import annotations

import ipaddress

CLUSTER_DOMAIN = "svc.cluster.local"
"""The Service DNS suffix (`<name>.<namespace>.svc.cluster.local`)."""


def service_fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.{CLUSTER_DOMAIN}"


def split_host_port(authority: str) -> tuple[str, int | None]:
    """`host:port` -> (host, port); IPv6 in brackets (`[fd00::1]:8080`) or bare (`fd00::1`, no port)."""
    host = authority.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        rest = host[end + 1:]
        return host[1:end], int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and name.count(":") == 0:
        return name, int(port)
    return host, None


def host_of(address: str) -> str:
    """The host part of an address, whatever its form (see split_host_port)."""
    return split_host_port(address)[0]


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def to_fqdn(host: str, namespace: str) -> str:
    """Istio's expansion of a config host written in `namespace`."""
    if host == "*" or is_ip(host) or "." in host:
        return host.lower()
    return service_fqdn(host, namespace).lower()


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
    """Istio's exportTo: empty or `*` is every namespace, `.` the owner's own."""
    if not export_to or "*" in export_to:
        return True
    return from_ns in export_to or ("." in export_to and from_ns == owner_ns)
