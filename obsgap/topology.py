"""The one name resolver over a Topology: IP -> pod, pod -> services, a caller's address -> service (as Kubernetes
DNS resolves it), a config host -> Service or ServiceEntry (as Istio resolves it).

Built once per run; every source, analysis and check reads names through it so they all agree. The string rules
(cluster domain, host:port, wildcards, exportTo) live in obsgap.names.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from obsgap import ambient, istio
from obsgap.model import (
    GATEWAY_API_GROUP,
    DestinationRule,
    KubeGateway,
    Pod,
    ReferenceGrant,
    Route,
    RouteRef,
    Service,
    ServiceEntry,
    ServicePort,
    Telemetry,
    Topology,
)
from obsgap.names import CLUSTER_DOMAIN, host_matches, is_ip, split_host_port, to_fqdn, visible

Dataplane = Literal["sidecar", "waypoint", "ztunnel", "none"]
AddressKind = Literal["fqdn", "short-name", "namespace-qualified", "pod-ip", "service-ip",
                      "wrong-namespace", "external", "unknown"]


@dataclass(frozen=True)
class HostTarget:
    """What an Istio config host reaches: a Service, a ServiceEntry, or nothing."""

    service: Service | None = None
    entry: ServiceEntry | None = None

    @property
    def ports(self) -> tuple[int, ...] | None:
        if self.service is not None:
            return tuple(p.port for p in self.service.ports)
        if self.entry is not None and self.entry.ports:
            return self.entry.ports
        return None


@dataclass(frozen=True)
class Resolved:
    kind: AddressKind
    service: Service | None
    pod: Pod | None = None
    port: int | None = None


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True)
class MetricOff:
    """Why a Service's metric cannot be counted (TopologyIndex.metric_off: by the proxies that serve it;
    TopologyIndex.callers_metric_off: by the sidecars of the workloads that call it)."""

    why: str
    everywhere: bool
    """On every proxy that serves the Service, or every caller's (none of its series can exist)."""
    share: float | None = None
    """The share of the Service's requests (as the server side counted them) those proxies sent; None where not
    weighed."""


class TopologyIndex:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.services_by_key: dict[tuple[str, str], Service] = {s.key: s for s in topo.services}
        every = (*topo.context_pods, *topo.pods)  # scoped pods last: they win an IP both claim
        self._context = {p.key for p in topo.context_pods}
        self.pods_by_key: dict[tuple[str, str], Pod] = {p.key: p for p in every}
        self.pods_by_ip: dict[str, Pod] = {p.ip: p for p in every if p.ip and not p.host_network}
        self.services_by_ip: dict[str, Service] = {s.cluster_ip: s for s in topo.services
                                                   if s.cluster_ip and s.cluster_ip != "None"}
        self.services_by_name: dict[str, list[Service]] = defaultdict(list)
        for s in topo.services:
            self.services_by_name[s.name].append(s)
        self.services_by_fqdn: dict[str, Service] = {s.fqdn: s for s in topo.services}
        # sorted: a name several Services answer to (a wildcard, a job's name) gives the same one in scope or not
        self._config_services = tuple(sorted((*topo.context_services, *topo.services), key=lambda s: s.key))
        self._config_services_by_key = {s.key: s for s in self._config_services}
        self._config_services_by_fqdn = {s.fqdn: s for s in self._config_services}
        self._config_services_by_name: dict[str, list[Service]] = defaultdict(list)
        for s in self._config_services:
            self._config_services_by_name[s.name].append(s)
        self._resolved: dict[tuple[str, str | None], Resolved] = {}  # the checks ask of the same addresses often
        self._metrics_off: dict[tuple[str, str, str, tuple[str, ...], str], str | None] = {}

    @cached_property
    def gateways_by_key(self) -> dict[tuple[str, str], KubeGateway]:
        return {g.key: g for g in self.topo.kube_gateways}

    @cached_property
    def _gateway_pods(self) -> tuple[dict[tuple[str, str], int], frozenset[str]]:
        """Running pods per Gateway, and the namespaces the topology holds pods of."""
        every = (*self.topo.context_pods, *self.topo.pods)
        return ambient.gateway_pods(every), frozenset(p.namespace for p in every)

    def waypoint_of(self, svc: Service) -> ambient.WaypointResolution | None:
        """The waypoint a Service asks for (its label, else its namespace's) and whether it can serve it; None when
        it asks for none."""
        ns = self.topo.namespaces.get(svc.namespace)
        request = ambient.service_waypoint(svc, ns.labels if ns else {})
        if request is None:
            return None
        return ambient.resolve(request, self.gateways_by_key, *self._gateway_pods, svc)

    def pod_waypoint_of(self, pod: Pod) -> ambient.WaypointResolution | None:
        request = ambient.pod_waypoint(pod)
        if request is None:
            return None
        return ambient.resolve(request, self.gateways_by_key, *self._gateway_pods)

    def dataplane(self, svc: Service) -> Dataplane:
        """How the mesh sees a Service's requests: `sidecar` (a sidecar on some pod), `waypoint` (ambient pods
        behind a waypoint that serves the Service: reporter="waypoint"), `ztunnel` (ambient pods and no waypoint that
        serves it: connections only, istio_tcp_*), `none` (no pod in the mesh, or no pods known)."""
        pods = self.pods_of_service(svc)
        if any(p.sidecar.present for p in pods):
            return "sidecar"
        if any(p.sidecar.mode == "ambient" for p in pods):
            waypoint = self.waypoint_of(svc)
            return "waypoint" if waypoint is not None and waypoint.serves else "ztunnel"
        return "none"

    def request_metrics_off(self, svc: Service, metric: str = "REQUEST_COUNT") -> str | None:
        """Why one of the mesh's server-side metrics of a Service (`metric`, an istio.TELEMETRY_METRICS key: by
        default the request count, istio_requests_total, reporter=destination from its sidecars, reporter=waypoint
        from the waypoint that serves it) is not the whole of its traffic: Telemetry resources (or the MeshConfig)
        turn it off, or strip a label it is counted by, on some of its pods or on its waypoint (istio.metric_off);
        None when none does, and for a Service the mesh counts otherwise."""
        off = self.metric_off(svc, metric)
        return None if off is None else off.why

    def metric_off(self, svc: Service, metric: str = "REQUEST_COUNT",
                   labels: tuple[str, ...] = istio.ATTRIBUTION_LABELS) -> MetricOff | None:
        """request_metrics_off, with whether it is off for every proxy that serves the Service; `labels`: those whose
        removal or rewrite makes the metric unreadable (a query's matchers)."""
        if self._telemetry_defaults:
            return None
        dataplane = self.dataplane(svc)
        what, prometheus = istio.TELEMETRY_METRICS[metric].words, istio.TELEMETRY_METRICS[metric].prometheus
        if dataplane == "waypoint":
            waypoint = self.serving_waypoint(svc)
            why = None if waypoint is None else istio.metric_off(
                self._waypoint_telemetries(waypoint, svc), self.topo.mesh_metric_providers, self.topo.mesh_providers,
                metric=metric, labels=labels)
            return None if why is None or waypoint is None else MetricOff(
                f"the {what} of its waypoint {waypoint.namespace}/{waypoint.name} ({prometheus}, "
                f"reporter=\"waypoint\") cannot be counted for it: {why}", True)
        if dataplane != "sidecar":
            return None
        pods = [p for p in self.pods_of_service(svc) if p.sidecar.present]
        off = [why for p in pods if (why := self.pod_request_metrics_off(p, metric, labels)) is not None]
        if not off:
            return None
        return MetricOff(f"the sidecars' {what} ({prometheus}, server side) cannot be counted for {len(off)} of its "
                         f"{len(pods)} pods with a sidecar: {'; '.join(sorted(set(off)))}", len(off) == len(pods))

    def serving_waypoint(self, svc: Service) -> KubeGateway | None:
        """The waypoint that serves the Service's requests, where one does (dataplane `waypoint`)."""
        if self.dataplane(svc) != "waypoint":
            return None
        resolution = self.waypoint_of(svc)
        return resolution.gateway if resolution is not None else None

    def _waypoint_telemetries(self, waypoint: KubeGateway, svc: Service) -> list[Telemetry]:
        return istio.waypoint_telemetries((waypoint.namespace, waypoint.name), svc, self.topo.telemetries,
                                          self.topo.mesh_root_namespace)

    @cached_property
    def _telemetry_defaults(self) -> bool:
        """No Telemetry resource, and the chart's default metrics provider, Istio's own `prometheus` (a MeshConfig
        may define a provider of that name of another type): every proxy reports the request count (the common
        case, and a fast one)."""
        return not self.topo.telemetries and self.topo.mesh_metric_providers == ("prometheus",) \
            and self.topo.mesh_providers.get("prometheus") == "prometheus"

    def pod_request_metrics_off(self, pod: Pod, metric: str = "REQUEST_COUNT",
                                labels: tuple[str, ...] = istio.ATTRIBUTION_LABELS, mode: str = "SERVER") -> str | None:
        """Why the pod's `metric` (by default the request count) cannot be counted (istio.metric_off) as its sidecar
        reports it for the requests it serves (mode SERVER) or sends (CLIENT, reporter="source"); None for a pod
        without a sidecar, or where it can."""
        if not pod.sidecar.present or self._telemetry_defaults:
            return None
        key = (*pod.key, metric, labels, mode)
        if key not in self._metrics_off:  # asked per service, and per namespace by port-missing-from-metrics
            self._metrics_off[key] = istio.metric_off(
                istio.applicable_telemetries(pod, self.topo.telemetries, self.topo.mesh_root_namespace),
                self.topo.mesh_metric_providers, self.topo.mesh_providers, mode=mode, metric=metric, labels=labels)
        return self._metrics_off[key]

    def callers_metric_off(self, callers: Mapping[tuple[str, str], float], metric: str = "REQUEST_COUNT",
                           labels: tuple[str, ...] = istio.ATTRIBUTION_LABELS,
                           total: float | None = None) -> MetricOff | None:
        """Why the callers' sidecars cannot count `metric` for their requests (reporter="source"): `callers`, the
        (namespace, workload) that call a Service with the requests the server side counted from each; `total`, all
        the requests it counted (callers outside the mesh included; by default the callers' sum). A caller is off
        where every one of its pods with a sidecar is (a caller whose pods obsgap does not know, or that has none,
        is not); None where none is."""
        if self._telemetry_defaults or not callers:
            return None
        off: dict[tuple[str, str], str] = {}
        for caller in callers:
            pods = [p for p in self.workload_pods.get(caller, ()) if p.sidecar.present]
            whys = [self.pod_request_metrics_off(p, metric, labels, mode="CLIENT") for p in pods]
            if pods and all(whys):
                off[caller] = str(whys[0])
        if not off:
            return None
        what, prometheus = istio.TELEMETRY_METRICS[metric].words, istio.TELEMETRY_METRICS[metric].prometheus
        total = sum(callers.values()) if total is None else total
        share = sum(callers[c] for c in off) / total if total > 0 else None
        names = ", ".join(f"{ns}/{wl}" for ns, wl in sorted(off)[:3]) + (" and more" if len(off) > 3 else "")
        reasons = "; ".join(sorted(set(off.values())))
        return MetricOff(f"the {what} of the sidecars of {len(off)} of its {len(callers)} calling workloads ({names}; "
                         f"{prometheus}, reporter=\"source\") cannot be counted: {reasons}",
                         len(off) == len(callers), share)

    @cached_property
    def workload_pods(self) -> dict[tuple[str, str], tuple[Pod, ...]]:
        """(namespace, workload) -> its pods, as Istio's source_workload label names the workload; those of the
        namespaces out of scope too (callers of the Services in scope)."""
        out: dict[tuple[str, str], list[Pod]] = defaultdict(list)
        for p in (*self.topo.context_pods, *self.topo.pods):
            out[(p.namespace, p.workload)].append(p)
        return {k: tuple(v) for k, v in out.items()}

    def access_log_note(self, svc: Service) -> str:
        """access_log_limits in words, to end a finding's detail with ("" where none limits them)."""
        limits, applies_to = self.access_log_limits(svc)
        return f" {'; '.join(limit.text() for limit in limits)} for {applies_to}." if limits else ""

    def access_log_limits(self, svc: Service) -> tuple[list[istio.AccessLogLimit], str]:
        """How Telemetry resources limit the access logs the proxies that serve a Service write to stdout for its
        requests (its sidecars, or the waypoint that serves it): (the limits, one per resource and kind; which of
        its proxies they apply to, in words)."""
        if not self.topo.telemetries:
            return [], ""
        waypoint = self.serving_waypoint(svc)
        if waypoint is not None:
            limit = istio.access_log_limit(self._waypoint_telemetries(waypoint, svc), self.topo.mesh_log_providers,
                                           self.topo.mesh_providers)
            return ([limit], f"its waypoint {waypoint.namespace}/{waypoint.name}") if limit else ([], "")
        pods = [p for p in self.pods_of_service(svc) if p.sidecar.present]
        limits = [limit for p in pods
                  if (limit := istio.access_log_limit(
                      istio.applicable_telemetries(p, self.topo.telemetries, self.topo.mesh_root_namespace),
                      self.topo.mesh_log_providers, self.topo.mesh_providers)) is not None]
        distinct = {(limit.telemetry.key, limit.what, limit.expression): limit for limit in limits}
        return list(distinct.values()), f"{len(limits)} of its {len(pods)} sidecars"

    def in_scope(self, pod: Pod) -> bool:
        """False for pods outside the -n scope (known only to name callers and addresses)."""
        return pod.key not in self._context

    @cached_property
    def pod_services(self) -> dict[tuple[str, str], tuple[Service, ...]]:
        """Services whose selector picks each pod."""
        # A Service can pick only pods that carry its selector's first label: the candidates of a pod are found
        # by its labels (not every Service of its namespace tried against every pod), in the topology's order.
        services = self.topo.services
        by_label: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for i, s in enumerate(services):
            if s.selector:
                by_label[(s.namespace, *next(iter(s.selector.items())))].append(i)
        out: dict[tuple[str, str], tuple[Service, ...]] = {}
        for p in self.topo.pods:
            candidates = sorted({i for item in p.labels.items() for i in by_label.get((p.namespace, *item), ())})
            out[p.key] = tuple(services[i] for i in candidates if selects(services[i].selector, p.labels))
        return out

    @cached_property
    def service_pods(self) -> dict[tuple[str, str], tuple[Pod, ...]]:
        out: dict[tuple[str, str], list[Pod]] = defaultdict(list)
        for pod_key, services in self.pod_services.items():
            for s in services:
                out[s.key].append(self.pods_by_key[pod_key])
        return {k: tuple(v) for k, v in out.items()}

    def services_of_pod(self, namespace: str, pod: str) -> tuple[Service, ...]:
        return self.pod_services.get((namespace, pod), ())

    def pods_of_service(self, svc: Service) -> tuple[Pod, ...]:
        return self.service_pods.get(svc.key, ())

    def service_port_for_target(self, svc: Service, pod: Pod | None, container_port: int) -> ServicePort | None:
        """The Service port whose targetPort (number or named container port) is `container_port`."""
        for sp in svc.ports:
            if sp.target_port == container_port:
                return sp
            if isinstance(sp.target_port, str) and pod is not None:
                for _, num, name in pod.container_ports:
                    if name == sp.target_port and num == container_port:
                        return sp
        return None

    def service_port(self, svc: Service, port: int) -> ServicePort | None:
        for sp in svc.ports:
            if sp.port == port:
                return sp
        return None

    def config_service(self, namespace: str, name: str) -> Service | None:
        """The Service of that name, in the -n scope or not: what config (a route's parent or backend) names."""
        return self._config_services_by_key.get((namespace, name))

    def config_services_named(self, name: str) -> list[Service]:
        """The Services of that name in any namespace, in the -n scope or not (what a job may be named after)."""
        return self._config_services_by_name.get(name, [])

    def resolve_service_name(self, host: str, from_namespace: str | None,
                             among: Mapping[tuple[str, str], Service] | None = None) -> Service | None:
        """How Kubernetes DNS (search path of the caller's namespace) resolves a name, without the port, among the
        Services in scope (or `among`)."""
        services = self.services_by_key if among is None else among
        host = host.rstrip(".").lower()
        parts = host.split(".")
        if host.endswith("." + CLUSTER_DOMAIN) and len(parts) == 5:
            return services.get((parts[1], parts[0]))
        if len(parts) == 1 and from_namespace:
            return services.get((from_namespace, parts[0]))
        if len(parts) == 2:
            return services.get((parts[1], parts[0]))
        if len(parts) == 3 and parts[2] == "svc":
            return services.get((parts[1], parts[0]))
        return None

    def resolve(self, authority: str, from_namespace: str | None) -> Resolved:
        """Classify an address a caller used: FQDN, short name, pod IP, wrong namespace, external."""
        key = (authority, from_namespace)
        known = self._resolved.get(key)
        if known is None:
            known = self._resolved[key] = self._resolve(authority, from_namespace)
        return known

    def _resolve(self, authority: str, from_namespace: str | None) -> Resolved:
        host, port = split_host_port(authority)
        host_l = host.rstrip(".").lower()
        if is_ip(host_l):
            if host_l in self.pods_by_ip:
                pod = self.pods_by_ip[host_l]
                services = self.services_of_pod(pod.namespace, pod.name)
                svc = services[0] if services else None
                if port is not None and services:
                    for s in services:
                        if self.service_port_for_target(s, pod, port):
                            svc = s
                            break
                return Resolved("pod-ip", svc, pod, port)
            if host_l in self.services_by_ip:
                return Resolved("service-ip", self.services_by_ip[host_l], None, port)
            if host_l in self.topo.endpoint_ips:
                ns, name = self.topo.endpoint_ips[host_l]
                return Resolved("pod-ip", self.services_by_key.get((ns, name)), None, port)
            return Resolved("external", None, None, port)
        svc = self.resolve_service_name(host_l, from_namespace)
        parts = host_l.split(".")
        # a name of a Service outside the -n scope resolves too, to nothing judged here
        if svc is not None or self.resolve_service_name(host_l, from_namespace, self._config_services_by_key):
            kind: AddressKind = ("fqdn" if host_l.endswith("." + CLUSTER_DOMAIN) else
                                 "short-name" if len(parts) == 1 else "namespace-qualified")
            return Resolved(kind, svc, None, port)
        # The name does not resolve where the caller looks; does a service of that name live elsewhere?
        looks_internal = len(parts) <= 2 or host_l.endswith(".svc") or host_l.endswith("." + CLUSTER_DOMAIN)
        candidates = self.services_by_name.get(parts[0], [])
        if looks_internal and candidates:
            return Resolved("wrong-namespace", candidates[0], None, port)
        return Resolved("external" if "." in host_l else "unknown", None, None, port)

    def config_host(self, host: str, config_ns: str) -> HostTarget | None:
        """The Service or ServiceEntry a config host (VirtualService, DestinationRule, route) written in
        `config_ns` reaches, if any: Istio's short-name expansion, wildcards and exportTo."""
        fqdn = to_fqdn(host, config_ns)
        svc = self._config_services_by_fqdn.get(fqdn)
        if svc is not None and visible(svc.export_to, svc.namespace, config_ns):
            return HostTarget(service=svc)
        if "*" in fqdn and fqdn != "*":
            for s in self._config_services:
                if host_matches(fqdn, s.fqdn) and visible(s.export_to, s.namespace, config_ns):
                    return HostTarget(service=s)
        for se in self.topo.service_entries:
            if visible(se.export_to, se.namespace, config_ns) and any(host_matches(h, fqdn) for h in se.hosts):
                return HostTarget(entry=se)
        return None

    def destination_rules_for(self, fqdn: str, from_ns: str) -> list[DestinationRule]:
        """The DestinationRules visible from `from_ns` whose host matches a fully qualified host."""
        return [dr for dr in (*self.topo.destination_rules, *self.topo.context_destination_rules)
                if visible(dr.export_to, dr.namespace, from_ns) and host_matches(to_fqdn(dr.host, dr.namespace), fqdn)]


def reference_granted(route: Route, ref: RouteRef, grants: Iterable[ReferenceGrant]) -> bool:
    """Whether a ReferenceGrant in a backend's namespace lets the route's kind, from its namespace, refer to that
    Service (the Gateway API's rule for a cross-namespace backendRef)."""
    for grant in grants:
        if grant.namespace != ref.namespace:
            continue
        if not any(g == GATEWAY_API_GROUP and k == route.kind and ns == route.namespace for g, k, ns in grant.from_):
            continue
        if any(g == "" and k == "Service" and (name is None or name == ref.name) for g, k, name in grant.to):
            return True
    return False
