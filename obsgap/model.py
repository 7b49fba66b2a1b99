"""Typed, frozen data shared by every layer: topology objects, findings and the scan result."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from obsgap.names import service_fqdn

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
    conditions: tuple[Condition, ...] = ()
    """status.conditions (Istio writes istio.io/WaypointBound in ambient meshes)."""
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def fqdn(self) -> str:
        return service_fqdn(self.name, self.namespace)

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
    probes_per_second: float = 0.0
    """kubelet's HTTP probes of the pod's containers, per second (1 / periodSeconds each, 10 s by default): what a
    witness that cannot tell them by their path counts beside the traffic."""
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
    annotations: Mapping[str, str] = field(default_factory=dict)
    """The controller's own annotations (not its pod template's)."""


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    declared: bool = True
    """False when only implied by the objects in it (the snapshot has no Namespace object)."""
    annotations: Mapping[str, str] = field(default_factory=dict)


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
class Condition:
    """One status condition a controller wrote (Programmed, Accepted, ResolvedRefs, istio.io/WaypointBound)."""

    type: str
    status: str
    """True, False or Unknown."""
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Listener:
    """One listener of a Gateway API Gateway, with the routes it admits."""

    name: str
    port: int | None
    protocol: str
    hostname: str | None = None
    allowed_from: str = "Same"
    """allowedRoutes.namespaces.from: Same (the default), All or Selector."""
    allowed_selector: Mapping[str, str] = field(default_factory=dict)
    """allowedRoutes.namespaces.selector.matchLabels, when `from` is Selector."""
    allowed_kinds: tuple[str, ...] = ()
    """allowedRoutes.kinds; empty: the kinds the protocol takes."""


@dataclass(frozen=True)
class KubeGateway:
    """A Gateway API Gateway (gateway.networking.k8s.io): an ingress or egress gateway, or an ambient waypoint
    (class `istio-waypoint`)."""

    namespace: str
    name: str
    class_name: str
    listeners: tuple[Listener, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    conditions: tuple[Condition, ...] | None = None
    """status.conditions; None when the object carries no status (a manifest, not a cluster's object)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions or () if c.type == kind), None)


GATEWAY_API_GROUP = "gateway.networking.k8s.io"
BUILTIN_MESH_PROVIDERS = {"prometheus": "prometheus", "stackdriver": "other", "envoy": "stdout"}
"""The extension providers every MeshConfig has (istio/istio pkg/config/mesh/mesh.go DefaultMeshConfig), by kind."""


@dataclass(frozen=True)
class RouteRef:
    """A parentRef or backendRef of a route, with the API's defaults applied (a parent: group
    gateway.networking.k8s.io, kind Gateway; a backend: group "" (core), kind Service; namespace: the route's)."""

    group: str
    kind: str
    namespace: str
    name: str
    port: int | None = None
    section_name: str | None = None
    group_given: bool = True
    """Whether the reference spelled its group (a Service parent needs `group: ""` spelled out)."""

    @property
    def text(self) -> str:
        where = f"{self.kind} {self.namespace}/{self.name}"
        return where + (f":{self.port}" if self.port else "") + (f" ({self.section_name})" if self.section_name
                                                                  else "")


@dataclass(frozen=True)
class Route:
    """A Gateway API route (HTTPRoute, GRPCRoute): where it attaches and where it sends requests."""

    kind: str
    namespace: str
    name: str
    hostnames: tuple[str, ...]
    parents: tuple[RouteRef, ...]
    backends: tuple[RouteRef, ...]
    parent_status: tuple[tuple[str, str, tuple[Condition, ...]], ...] = ()
    """status.parents: (the parent's namespace, its name, its conditions) as the controller wrote them."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class ReferenceGrant:
    """Lives in the namespace it opens: `from` (group, kind, namespace) may refer to `to` (group, kind, name or
    None for every object of the kind) here."""

    namespace: str
    name: str
    from_: tuple[tuple[str, str, str], ...]
    to: tuple[tuple[str, str, str | None], ...]


@dataclass(frozen=True)
class MetricOverride:
    """One `metrics[].overrides[]` entry of a Telemetry resource, with the API's defaults applied."""

    metric: str
    """A standard metric (`REQUEST_COUNT`...), `ALL_METRICS` (also when the match names none), or a custom one."""
    custom: bool
    mode: str
    """`CLIENT`, `SERVER` or `CLIENT_AND_SERVER` (the default)."""
    disabled: bool | None
    tags: tuple[tuple[str, str], ...] = ()
    """tagOverrides: (label, `REMOVE` or `UPSERT`), UPSERT when no operation is given."""


@dataclass(frozen=True)
class MetricsRule:
    """One `metrics[]` entry of a Telemetry resource: its providers (none: the parent level's) and overrides."""

    providers: tuple[str, ...]
    overrides: tuple[MetricOverride, ...]


@dataclass(frozen=True)
class AccessLogRule:
    """One `accessLogging[]` entry of a Telemetry resource."""

    providers: tuple[str, ...]
    """None given: the parent level's (the MeshConfig's defaultProviders.accessLogging at the top)."""
    mode: str
    disabled: bool | None
    filter: str | None
    """The CEL expression a request must match to be logged."""


@dataclass(frozen=True)
class PolicyTarget:
    """One targetRef of an Istio policy (the Gateway API's PolicyTargetReference)."""

    group: str
    """`core` for the core group (written `""` or `core`)."""
    kind: str
    name: str
    namespace: str = ""
    """A Gateway in another namespace than the policy's is never attached; for a Service istiod ignores it."""


@dataclass(frozen=True)
class Telemetry:
    """An Istio Telemetry resource (telemetry.istio.io): what it says about the proxies' metrics and access logs."""

    namespace: str
    name: str
    created: str
    """metadata.creationTimestamp: istiod orders a namespace's Telemetries by it (then by name)."""
    selector: Mapping[str, str]
    targets: tuple[PolicyTarget, ...]
    """targetRefs (or the older single targetRef): the gateways, waypoints and Services of waypoints it configures;
    a resource that names any does not apply to sidecars."""
    metrics: tuple[MetricsRule, ...]
    access_logging: tuple[AccessLogRule, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def targeted(self) -> bool:
        return bool(self.targets)

    @property
    def namespace_wide(self) -> bool:
        """Neither a selector nor targetRefs: it configures every proxy of its namespace (the root namespace's,
        every proxy of the mesh)."""
        return not self.selector and not self.targets


@dataclass(frozen=True)
class Topology:
    namespaces: Mapping[str, Namespace]
    services: tuple[Service, ...]
    pods: tuple[Pod, ...]
    virtual_services: tuple[VirtualService, ...] = ()
    destination_rules: tuple[DestinationRule, ...] = ()
    service_entries: tuple[ServiceEntry, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    kube_gateways: tuple[KubeGateway, ...] = ()
    """Gateway API Gateways, waypoints among them."""
    routes: tuple[Route, ...] = ()
    reference_grants: tuple[ReferenceGrant, ...] = ()
    workloads: tuple[WorkloadTemplate, ...] = ()
    endpoint_ips: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """IP -> (namespace, service) from Endpoints/EndpointSlices (covers selector-less services)."""
    access_log_formats: tuple[Any, ...] = ()
    """The mesh's own Envoy access-log formats (envoy_format.AccessFormat), from its MeshConfig."""
    telemetries: tuple[Telemetry, ...] = ()
    """Istio Telemetry resources, in istiod's order (creation time, then name); never scoped by -n (the root
    namespace's apply everywhere)."""
    mesh_root_namespace: str = "istio-system"
    """MeshConfig rootNamespace: its selector-less Telemetry applies to the whole mesh."""
    mesh_metric_providers: tuple[str, ...] = ("prometheus",)
    """MeshConfig defaultProviders.metrics (Istio's default since 1.18 when the MeshConfig was not read)."""
    mesh_log_providers: tuple[str, ...] = ()
    """MeshConfig defaultProviders.accessLogging (none by default: access logs come from accessLogFile)."""
    mesh_providers: Mapping[str, str] = field(default_factory=lambda: dict(BUILTIN_MESH_PROVIDERS))
    """MeshConfig extension providers, by lower-case name -> kind: `prometheus`, `stdout` (a file access log on the
    sidecar's stdout or stderr, which kubelet's files and pods/log hold), `access-log` (sent elsewhere), `other`."""
    context_pods: tuple[Pod, ...] = ()
    """Pods outside the -n scope: never subjects of a finding, but callers and addresses are named by them."""
    context_services: tuple[Service, ...] = ()
    """Services outside the -n scope: never subjects of a finding, but the hosts and backends of config in scope
    resolve to them (a DestinationRule in scope for a Service of another namespace is not 'unknown')."""
    context_destination_rules: tuple[DestinationRule, ...] = ()
    """DestinationRules outside the -n scope: the subsets and policies config in scope may use."""
    context_workloads: tuple[WorkloadTemplate, ...] = ()
    """Pod templates outside the -n scope: what a subset of a Service there may select."""
    context_virtual_services: tuple[VirtualService, ...] = ()
    """VirtualServices outside the -n scope: never judged, but the name contract of a Service in scope lists them."""
    context_routes: tuple[Route, ...] = ()
    """Gateway API routes outside the -n scope: as context_virtual_services."""
    nodes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Node name -> its labels."""
    object_counts: Mapping[str, int] = field(default_factory=dict)
    gaps: tuple[str, ...] = ()
    """Objects that could not be read (403, missing CRD, unparsable file), in words."""
    unread: Mapping[str, str] = field(default_factory=dict)
    """Kinds the API server refused or failed to list (`Service`, or `group/Kind` for a custom resource) -> why, in
    words. Unlike a missing CRD (no object of that kind can exist), objects of these kinds may exist unseen: a check
    whose verdicts rest on one of them does not run (Check.kinds)."""

    @staticmethod
    def empty() -> Topology:
        return Topology(namespaces={}, services=(), pods=())


# --- Dashboards ---------------------------------------------------------------------------

_JOB_MATCHER = re.compile(r'\bjob\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL expression people read: a Grafana dashboard's (a panel target or a template variable), or a rule
    Prometheus evaluates (an alerting or recording rule of a rule group)."""

    dashboard: str
    """The dashboard's title, or the rule group's name."""
    panel: str
    """The panel's title (`variable $name` for a template variable), or `alert <name>` / `record <name>`."""
    expr: str
    rule_file: str | None = None
    """The file Prometheus loaded the rule group from; None for a dashboard's query."""

    def job_matchers(self) -> list[tuple[str, str]]:
        return [(m.group(1), m.group(2)) for m in _JOB_MATCHER.finditer(self.expr)]


_OPERATOR_UID = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\.ya?ml)$")


def rule_file_key(path: str) -> str:
    """A rule file as it identifies its groups across reloads: its name without the folder and without the
    Prometheus Operator's `-<uid>` (`/etc/prometheus/rules/prometheus-k8s-rulefiles-0/monitoring-istio-<uid>.yaml`
    is `monitoring-istio.yaml`): the folder's shard number and the uid change when the rules are sharded again or
    the PrometheusRule is recreated, and the same rules would read as new."""
    return _OPERATOR_UID.sub(r"\1", path.rsplit("/", 1)[-1])


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


def plain(value: Any) -> Any:
    """A value as JSON holds it: dataclasses by their fields, tuples as lists, NaN/Infinity as null, numpy scalars
    as numbers."""
    if isinstance(value, FindingEvidence):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return plain(value.item())
    return value


class FindingEvidence(Mapping[str, Any]):
    """The base of every check's evidence: a frozen dataclass its check defines (docs/findings.md lists the fields
    per check). findings.json carries `as_dict()`; a field with metadata {"flatten": True} (a mapping) puts its keys
    beside the others. Read-only mapping access (evidence["log_requests"]) reads the same dict."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("flatten"):
                out.update({str(k): plain(v) for k, v in (value or {}).items() if k not in out})
            elif not (value is None and f.metadata.get("omit_none")):
                out[f.name] = plain(value)
        return out

    @property
    def impact(self) -> int:
        """How much traffic the finding is about (requests, or observations): how the report ranks findings."""
        return 0

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())


OMIT_NONE = {"omit_none": True}
FLATTEN = {"flatten": True}


@dataclass(frozen=True, eq=False)
class Facts(FindingEvidence):
    """Evidence with no typed shape of its own (kept for findings read back from another run)."""

    facts: Mapping[str, Any] = field(default_factory=dict, metadata=FLATTEN)


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
    evidence: FindingEvidence = field(default_factory=Facts)
    suggestion: Suggestion | None = None
    refs: tuple[ObjectRef, ...] = ()
    """The objects the finding is about, for tables that link to it (the name contract)."""

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.check}\x00{self.subject}".encode()).hexdigest()[:16]


CheckState = Literal["ran", "skipped", "error"]


NAMESPACED_KEY_KINDS = ("port", "sniff", "undeclared", "undeclared-mesh", "scrape", "outside", "caller", "call",
                        "server-logs", "caller-logs")
"""The kinds of subject key (`<kind>:<namespace>[/<name>]`) that name a namespace."""
GLOBAL_KEY_KINDS = ("metric", "job", "slo", "waste", "websockets", "dashboard", "rules")
"""The kinds of subject key that name no namespace (a metric family, a job, an SLO, a dashboard, a rule group). A
check that keys its subjects by a new kind adds it to one of the two lists (tests.helpers.unexamined holds every run
to it)."""


def key_kind(key: str) -> str | None:
    """The kind of a typed subject key (`port` of `port:shop/api`); None for `ns`, `ns/name` and the keys that
    begin with one (`ns/svc/ebpf:obi`)."""
    kind, sep, _ = key.partition(":")
    return kind if sep and "/" not in kind else None


def key_namespace(key: str) -> str | None:
    """The namespace a subject key names (`ns`, `ns/name`, `port:ns/name`, `scrape:ns`...); None for a metric, job,
    SLO, dashboard or histogram key."""
    kind = key_kind(key)
    if kind is not None and kind not in NAMESPACED_KEY_KINDS:
        return None
    return (key.partition(":")[2] if kind is not None else key).split("/")[0]


@dataclass(frozen=True)
class CheckRun:
    check: str
    status: CheckState
    reason: str | None = None
    findings: int = 0
    examined: frozenset[str] | None = None
    """What the check judged this run with the evidence it needs (subject keys: `namespace`, `namespace/name`,
    `metric:<family>`, `job:<job>`, `slo:<key>`, and `<kind>:<namespace>[/<name>]` for the kinds key_namespace
    knows); None: everything in scope. A finding of an earlier run is resolved
    only when its check ran and examined its subject (report.history)."""


@dataclass(frozen=True)
class CoverageRow:
    """One service of the coverage table (findings.json `coverage`; docs/findings.md)."""

    namespace: str
    service: str
    observed: int | None
    """Requests its best witness observed (findings.json `log_requests`, `observed_requests`); None: no witness."""
    mesh: int | None
    """What the mesh counted for the same pods or callers (`mesh_requests`); None: the metrics were not measured."""
    tcp_connections: int | None = None
    witness: str | None = None
    """The witness `observed` rests on (obsgap.witness; `observed_by`)."""
    comparable: bool = True
    """False when the two sides cannot be narrowed to the same pods or callers, or one was not measured."""
    basis: str = ""
    """What was compared, in words (e.g. "logs of 2 of 3 pods")."""
    reason: str | None = None
    """Why there is no ratio, in words; None when there is one."""
    logs_cover: str = ""
    """How much of the window the service's logs cover, when some pod's are partial (empty: all of it)."""
    interval: tuple[int, int] | None = None
    """The part of the window (epoch ms) the observed count covers."""
    witnesses: Mapping[str, int] = field(default_factory=dict)
    """Every witness that saw the service, with its count (the served pods' and the callers')."""
    unit: str = "requests"
    """What `observed` and `mesh` count: requests, or connections where the mesh sees the service at L4 only
    (ambient mode without a waypoint; ztunnel's logs against ztunnel's metrics)."""
    dataplane: str = "sidecar"
    """How the mesh sees the service: sidecar, waypoint, ztunnel (L4 only) or none."""

    @property
    def ratio(self) -> float | None:
        if not self.comparable or not self.observed or self.mesh is None:
            return None
        return round(min(self.mesh / self.observed, 9.99), 4)

    @property
    def missed(self) -> float | None:
        """The share of observed requests the mesh did not count (0 when it counted as many or more)."""
        return None if self.ratio is None else max(0.0, 1.0 - min(1.0, self.ratio))


@dataclass(frozen=True)
class NameLink:
    """One name a service goes by, in the name-contract table."""

    kind: str
    """service, virtualservice, destinationrule, subset, httproute, grpcroute, waypoint, metric, job, caller."""
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
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return max(1, int((self.end - self.start).total_seconds()))
