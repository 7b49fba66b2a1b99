"""Typed, frozen data shared by every layer: topology objects, findings and the scan result."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal

# --- Kubernetes / Istio topology -------------------------------------------------------------

#: Protocols whose traffic Envoy proxies as opaque TCP: no request metrics, only istio_tcp_*.
TCP_PROXIED: frozenset[str] = frozenset({"tcp", "tls", "https", "mongo", "redis", "mysql"})


@dataclass(frozen=True)
class ServicePort:
    name: str
    """Port name as declared (may be empty)."""
    port: int
    """The Service port callers address."""
    target_port: int | str | None
    """Container port number or named container port."""
    transport: str = "TCP"
    """Kubernetes `protocol` (TCP, UDP, SCTP)."""
    app_protocol: str | None = None
    istio_protocol: str = "unknown"
    """Protocol Istio selects: appProtocol, else name prefix, else `unknown` (sniffed)."""
    protocol_source: Literal["appProtocol", "name", "sniffed", "well-known-port"] = "sniffed"


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str]
    cluster_ip: str | None = None
    type: str = "ClusterIP"
    labels: Mapping[str, str] = field(default_factory=dict)
    export_to: tuple[str, ...] = ()
    """From the networking.istio.io/exportTo annotation; empty means every namespace."""

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


SidecarMode = Literal["sidecar", "native-sidecar", "ambient", "none"]


@dataclass(frozen=True)
class SidecarState:
    mode: SidecarMode
    reason: str | None = None
    """When mode is `none`: a `no-sidecar/*` cause code, or `not-expected` when nothing asked for one."""
    expected: bool = False
    """Whether the namespace/pod labels ask for injection."""
    evidence: str = ""
    """The label, annotation or field that decided it, in words."""
    placeholder: bool = False
    """istio-proxy is there only as the injector's `image: auto` placeholder (never injected; IST0147)."""

    @property
    def present(self) -> bool:
        return self.mode in ("sidecar", "native-sidecar")


@dataclass(frozen=True)
class TrafficExclusions:
    exclude_inbound_ports: frozenset[int] = frozenset()
    include_inbound_ports: str | None = None
    """Raw includeInboundPorts: `*` (default) or a list; ports outside it bypass Envoy."""
    exclude_outbound_ports: frozenset[int] = frozenset()
    exclude_outbound_ip_ranges: tuple[str, ...] = ()
    include_outbound_ip_ranges: str | None = None

    def inbound_port_excluded(self, port: int) -> bool:
        if port in self.exclude_inbound_ports:
            return True
        inc = (self.include_inbound_ports or "*").strip()
        if inc in ("*", ""):
            return False
        return str(port) not in {p.strip() for p in inc.split(",")}


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    containers: tuple[str, ...]
    container_ports: tuple[tuple[str, int, str], ...]
    """(container, port, port name) for every declared containerPort."""
    init_containers: tuple[str, ...]
    workload: str
    """Owning workload name (Deployment, StatefulSet, ...) or the pod name."""
    workload_kind: str
    sidecar: SidecarState
    exclusions: TrafficExclusions
    host_network: bool = False
    phase: str = "Running"
    node: str | None = None
    """spec.nodeName."""
    subset_labels: Mapping[str, str] = field(default_factory=dict)
    """The labels DestinationRule subsets match: the pod's own plus its Node's locality and hostname (as pilot
    augments them). Empty when built without nodes: then the pod's labels apply."""
    agent_paths: tuple[str, ...] = ()
    """HTTP paths kubelet probes (and, with metrics merging, Prometheus scrapes) reach through pilot-agent, not
    Envoy: the app logs them, no mesh metric ever counts them."""
    uid: str | None = None
    started_ms: int | None = None
    """status.startTime (epoch ms): no log or metric of the pod can be older."""
    restarts: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    """container -> (restartCount, when its last run ended in epoch ms, if it did)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class WorkloadTemplate:
    """A controller's pod template: the labels its pods will carry, even when no pod is in the snapshot."""

    namespace: str
    kind: str
    name: str
    labels: Mapping[str, str]
    replicas: int | None = None
    uninjected_placeholder: bool = False
    """Its pod template has the injector's `image: auto` istio-proxy, but no injection rule selects it (IST0146)."""


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    declared: bool = True
    """False when only implied by the objects in it (the snapshot has no Namespace object)."""


@dataclass(frozen=True)
class RouteDestination:
    host: str
    subset: str | None
    port: int | None
    weight: int | None
    kind: Literal["route", "mirror"] = "route"


@dataclass(frozen=True)
class VirtualService:
    namespace: str
    name: str
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]
    destinations: tuple[RouteDestination, ...]
    export_to: tuple[str, ...] = ()
    weighted_routes: tuple[tuple[RouteDestination, ...], ...] = ()
    """Each route with two or more weighted destinations (a canary split)."""


@dataclass(frozen=True)
class Subset:
    name: str
    labels: Mapping[str, str]
    has_outlier_detection: bool


@dataclass(frozen=True)
class DestinationRule:
    namespace: str
    name: str
    host: str
    subsets: tuple[Subset, ...]
    has_outlier_detection: bool
    export_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceEntry:
    namespace: str
    name: str
    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    export_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    namespaces: Mapping[str, Namespace]
    services: tuple[Service, ...]
    pods: tuple[Pod, ...]
    virtual_services: tuple[VirtualService, ...] = ()
    destination_rules: tuple[DestinationRule, ...] = ()
    service_entries: tuple[ServiceEntry, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    workloads: tuple[WorkloadTemplate, ...] = ()
    endpoint_ips: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """IP -> (namespace, service) from Endpoints/EndpointSlices (covers selector-less services)."""
    access_log_formats: tuple[Any, ...] = ()
    """The mesh's own Envoy access-log formats (envoy_format.AccessFormat), from its MeshConfig."""
    context_pods: tuple[Pod, ...] = ()
    """Pods outside the -n scope: never subjects of a finding, but callers and addresses are named by them."""
    nodes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Node name -> its labels."""
    object_counts: Mapping[str, int] = field(default_factory=dict)
    gaps: tuple[str, ...] = ()
    """Objects that could not be read (403, missing CRD, unparsable file), in words."""

    @staticmethod
    def empty() -> Topology:
        return Topology(namespaces={}, services=(), pods=())


# --- Findings --------------------------------------------------------------------------------


class Severity(str, Enum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 3, "warning": 2, "info": 1}[self.value]


@dataclass(frozen=True)
class Snippet:
    """One ready-to-paste form of a fix (a Service port, a pod annotation, a client library call)."""

    label: str
    text: str


@dataclass(frozen=True)
class Suggestion:
    text: str
    config: str | None = None
    """Every form of the fix as one text (findings.json `suggestion.config`)."""
    doc_url: str | None = None
    snippets: tuple[Snippet, ...] = ()
    """The same forms one by one, each copied on its own; empty when `config` is a single form."""

    @staticmethod
    def of(text: str, snippets: tuple[Snippet, ...], doc_url: str | None = None) -> Suggestion:
        return Suggestion(text, "\n\n".join(s.text for s in snippets) or None, doc_url, snippets)

    @property
    def forms(self) -> tuple[Snippet, ...]:
        if self.snippets:
            return self.snippets
        return (Snippet("config", self.config),) if self.config else ()


@dataclass(frozen=True)
class ObjectRef:
    """A named object a finding is about: a Kubernetes/Istio object, or a Prometheus job (kind `job`)."""

    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    title: str
    detail: str
    subject: str
    """What makes this finding unique within its check; hashed into the stable id."""
    namespace: str | None = None
    service: str | None = None
    workload: str | None = None
    pod: str | None = None
    port: int | None = None
    job: str | None = None
    metric: str | None = None
    cause: str | None = None
    resource: str | None = None
    istio_code: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    suggestion: Suggestion | None = None
    refs: tuple[ObjectRef, ...] = ()
    """The objects the finding is about, for tables that link to it (the name contract)."""

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.check}\x00{self.subject}".encode()).hexdigest()[:16]


CheckState = Literal["ran", "skipped", "error"]


@dataclass(frozen=True)
class CheckRun:
    check: str
    status: CheckState
    reason: str | None = None
    findings: int = 0


@dataclass(frozen=True)
class CoverageRow:
    namespace: str
    service: str
    log_requests: int
    mesh_requests: int
    tcp_connections: int = 0
    observed_by: str = "server logs"
    """Where `log_requests` comes from: server logs, caller logs, or caller sidecar metrics."""
    comparable: bool = True
    """False when the metrics cannot be narrowed to the pods or callers the evidence covers (no ratio then)."""
    basis: str = ""
    """What was compared, in words (e.g. "logs of 2 of 3 pods")."""
    logs_cover: str = ""
    """How much of the window the service's logs cover, when some pod's are partial (empty: all of it)."""

    @property
    def ratio(self) -> float | None:
        if self.log_requests <= 0 or not self.comparable:
            return None
        return round(min(self.mesh_requests / self.log_requests, 9.99), 4)

    @property
    def missed(self) -> float | None:
        """The share of observed requests the mesh did not count (0 when it counted as many or more)."""
        return None if self.ratio is None else max(0.0, 1.0 - min(1.0, self.ratio))


@dataclass(frozen=True)
class NameLink:
    """One name a service goes by, in the name-contract table."""

    kind: str
    """service, virtualservice, destinationrule, subset, metric, job, caller."""
    name: str
    ref: ObjectRef
    how: str = ""
    broken: bool = False
    note: str = ""
    finding_ids: tuple[str, ...] = ()
    """The findings about this name (a link is broken when one exists, or for the reason in `note`)."""


@dataclass(frozen=True)
class ContractRow:
    namespace: str
    service: str
    fqdn: str
    links: tuple[NameLink, ...]

    @property
    def broken(self) -> int:
        return sum(1 for link in self.links if link.broken)


@dataclass(frozen=True)
class Series:
    """Counts per time bin: (bin start in epoch ms, count), every bin `step_ms` long."""

    step_ms: int
    points: tuple[tuple[int, int], ...]

    @property
    def total(self) -> int:
        return sum(v for _, v in self.points)


@dataclass(frozen=True)
class ServiceTimeline:
    """A service's requests over the window: as its logs show them and as the mesh metrics counted them."""

    logged: Series
    mesh: Series | None
    """None when no metrics were read; an empty or all-zero series when the mesh counted nothing."""


@dataclass(frozen=True)
class SourceReport:
    """What each source delivered; rendered as findings.json `sources`."""

    prometheus: Mapping[str, Any]
    kubernetes: Mapping[str, Any]
    logs: Mapping[str, Any]
    slos: Mapping[str, Any] = field(default_factory=dict)
    """SLO files and cluster objects read (empty when none were given)."""


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return max(1, int((self.end - self.start).total_seconds()))


@dataclass(frozen=True)
class ScanResult:
    generated_at: datetime
    window: Window
    sources: SourceReport
    checks: tuple[CheckRun, ...]
    coverage: tuple[CoverageRow, ...]
    findings: tuple[Finding, ...]
    timelines: Mapping[tuple[str, str], ServiceTimeline] = field(default_factory=dict)
    """(namespace, service) -> requests over time, for the services findings name."""
    contract: tuple[ContractRow, ...] = ()
    slos: tuple[Any, ...] = ()
    """Each SLO's assessment (slo.assess.SloAssessment): the "Can these SLOs be trusted?" table."""
    status: Literal["complete", "partial"] = "complete"
    status_reasons: tuple[str, ...] = ()
    """Why the run is partial: a source failed or answered in part, inputs were unreadable, a check failed."""
