"""Istio's own rules, restated as pure functions: protocol selection, injection, exclusions.

Each rule follows Istio's behaviour as docs/design.md ("Istio facts") records it, with its sources.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from obsgap.ambient import DATAPLANE_MODE, REDIRECTION, ambient_namespace
from obsgap.model import GATEWAY_API_GROUP, Pod, PolicyTarget, Service, SidecarState, Telemetry, TrafficExclusions

PROTOCOL_PREFIXES = ("http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp",
                     "mongo", "redis", "mysql", "http_proxy")
# Kubernetes' standard appProtocol values that Istio maps.
_K8S_APP_PROTOCOLS = {"kubernetes.io/h2c": "http2", "kubernetes.io/ws": "http", "kubernetes.io/wss": "https"}
# Ports Istio never sniffs on: server-first protocols, treated as TCP.
SERVER_FIRST_PORTS = {25: "tcp", 53: "tcp", 3306: "mysql", 27017: "mongo"}

SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
INJECT_KEY = "sidecar.istio.io/inject"
PROXY_CONTAINER = "istio-proxy"
IMAGE_AUTO = "auto"
INIT_CONTAINERS = ("istio-init", "istio-validation")
NO_SIDECAR_CAUSES = ("no-sidecar/inject-annotation", "no-sidecar/host-network", "no-sidecar/namespace-not-enabled",
                     "no-sidecar/init-container", "no-sidecar/unknown")
"""Why a pod runs no istio-proxy (SidecarState.reason): the envoy-bypass and sidecar-missing causes."""

EXCLUDE_INBOUND = "traffic.sidecar.istio.io/excludeInboundPorts"
INCLUDE_INBOUND = "traffic.sidecar.istio.io/includeInboundPorts"
EXCLUDE_OUTBOUND = "traffic.sidecar.istio.io/excludeOutboundPorts"
EXCLUDE_OUTBOUND_IPS = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
INCLUDE_OUTBOUND_IPS = "traffic.sidecar.istio.io/includeOutboundIPRanges"


def port_protocol(name: str | None, app_protocol: str | None, port: int,
                  transport: str = "TCP") -> tuple[str, str]:
    """Return (istio protocol, how it was decided) for a Service port."""
    if transport.upper() == "UDP":
        return "udp", "name"
    if app_protocol:
        ap = app_protocol.lower()
        if ap in _K8S_APP_PROTOCOLS:
            return _K8S_APP_PROTOCOLS[ap], "appProtocol"
        if ap in PROTOCOL_PREFIXES:
            return ap, "appProtocol"
        if ap == "hbone":  # ambient waypoint/ztunnel tunnel port: HTTP/2 CONNECT carrying opaque TCP
            return "tcp", "appProtocol"
    if name:
        lowered = name.lower()
        if lowered in PROTOCOL_PREFIXES:
            return lowered, "name"
        prefix = lowered.split("-", 1)[0]
        if prefix in PROTOCOL_PREFIXES and "-" in lowered:
            return prefix, "name"
        if lowered.startswith("grpc-web"):
            return "grpc-web", "name"
    if port in SERVER_FIRST_PORTS:
        return SERVER_FIRST_PORTS[port], "well-known-port"
    return "unknown", "sniffed"


def mesh_is_ambient(namespace_labels: Iterable[Mapping[str, str]]) -> bool:
    """Whether the mesh is mostly ambient: at least as many namespaces enrolled in ambient as labelled for
    injection, and one at least. An unlabelled namespace's pods then miss ambient enrolment, not injection."""
    ambient = injected = 0
    for labels in namespace_labels:
        ambient += ambient_namespace(labels)
        injected += namespace_injection_enabled(labels)
    return ambient > 0 and ambient >= injected


def namespace_injection_enabled(labels: Mapping[str, str]) -> bool:
    if labels.get("istio-injection") == "enabled":
        return True
    return "istio-injection" not in labels and bool(labels.get("istio.io/rev"))


def _container_names(spec: Mapping[str, Any], key: str) -> list[str]:
    return [str(c.get("name", "")) for c in spec.get(key) or [] if isinstance(c, Mapping)]


def _native_sidecar(spec: Mapping[str, Any]) -> bool:
    """istio-proxy as an init container (Kubernetes native sidecar; istioctl counts it whatever its restartPolicy)."""
    return any(isinstance(c, Mapping) and c.get("name") == PROXY_CONTAINER and c.get("image") != IMAGE_AUTO
               for c in spec.get("initContainers") or [])


def _real_proxy(spec: Mapping[str, Any]) -> bool:
    return any(isinstance(c, Mapping) and c.get("name") == PROXY_CONTAINER and c.get("image") != IMAGE_AUTO
               for c in spec.get("containers") or [])


def image_auto_placeholder(spec: Mapping[str, Any]) -> bool:
    """An `istio-proxy` container with `image: auto`: the injector's placeholder, replaced only when the pod is
    injected. In a pod that exists it means the pod was never injected (istioctl: IST0147)."""
    return any(isinstance(c, Mapping) and c.get("name") == PROXY_CONTAINER and c.get("image") == IMAGE_AUTO
               for key in ("containers", "initContainers") for c in spec.get(key) or [])


# The labels pilot adds to a workload's own before matching subsets (pilot/pkg/serviceregistry/util/label
# AugmentLabels, used by istioctl's DestinationRule subset analyzer): the Node's locality, non-empty parts only,
# and the node name as kubernetes.io/hostname.
NODE_LOCALITY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")
HOSTNAME_LABEL = "kubernetes.io/hostname"


def augment_labels(labels: Mapping[str, str], node_name: str | None,
                   node_labels: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(labels)
    for key in NODE_LOCALITY_LABELS:
        value = (node_labels or {}).get(key)
        if value:
            out[key] = value
    if node_name:
        out[HOSTNAME_LABEL] = node_name
    return out


def _init_failed(status: Mapping[str, Any]) -> str | None:
    """Name of an Istio init container that did not complete, if any."""
    for cs in status.get("initContainerStatuses") or []:
        if not isinstance(cs, Mapping) or cs.get("name") not in INIT_CONTAINERS:
            continue
        state = cs.get("state") or {}
        term = state.get("terminated") or {}
        if "waiting" in state or (term and term.get("exitCode", 0) != 0):
            return str(cs.get("name"))
    return None


def sidecar_state(namespace: str, ns_labels: Mapping[str, str], metadata: Mapping[str, Any],
                  spec: Mapping[str, Any], status: Mapping[str, Any], mesh_ambient: bool = False) -> SidecarState:
    """Decide whether a pod runs istio-proxy, and if not, why (a `no-sidecar/*` cause). An `image: auto`
    istio-proxy is the injector's placeholder, not a sidecar: the pod's real state applies, and says so."""
    state = _sidecar_state(namespace, ns_labels, metadata, spec, status, mesh_ambient)
    if state.present or not image_auto_placeholder(spec):
        return state
    return replace(state, placeholder=True, evidence=state.evidence + "; its istio-proxy container still has the "
                   "injector's placeholder image `auto`, so the pod was never injected")


def _sidecar_state(namespace: str, ns_labels: Mapping[str, str], metadata: Mapping[str, Any],
                   spec: Mapping[str, Any], status: Mapping[str, Any], mesh_ambient: bool) -> SidecarState:
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    has_proxy = _real_proxy(spec)
    native = _native_sidecar(spec)
    ns_enabled = namespace_injection_enabled(ns_labels)
    pod_opt = labels.get(INJECT_KEY, annotations.get(INJECT_KEY))
    pod_opt = pod_opt.lower() if isinstance(pod_opt, str) else None
    ns_disabled = ns_labels.get("istio-injection") == "disabled"
    expected = (not spec.get("hostNetwork") and namespace not in SYSTEM_NAMESPACES and pod_opt != "false"
                and not ns_disabled
                and (ns_enabled or pod_opt == "true" or bool(labels.get("istio.io/rev"))))

    if has_proxy or native:
        failed_init = _init_failed(status)
        if failed_init:
            return SidecarState("none", "no-sidecar/init-container", expected,
                                f"init container {failed_init} did not complete, so istio-proxy never started")
        return SidecarState("native-sidecar" if native else "sidecar", None, expected, "istio-proxy container")

    ambient = _ambient_state(namespace, ns_labels, labels, annotations, spec)
    if ambient is not None:
        return ambient
    if spec.get("hostNetwork"):
        return SidecarState("none", "no-sidecar/host-network", False, "hostNetwork: true pods are never injected")
    if namespace in SYSTEM_NAMESPACES:
        return SidecarState("none", "no-sidecar/namespace-not-enabled", False,
                            f"{namespace} is a system namespace Istio never injects")
    if pod_opt == "false":
        where = "label" if INJECT_KEY in labels else "annotation"
        return SidecarState("none", "no-sidecar/inject-annotation", False,
                            f'{where} {INJECT_KEY}: "false"')
    if expected:
        return SidecarState("none", "no-sidecar/unknown", True,
                            "injection is enabled for this pod but it has no istio-proxy "
                            "(created before the label, or the injector webhook was unavailable)")
    if ns_disabled:
        return SidecarState("none", "no-sidecar/namespace-not-enabled", False,
                            f"namespace {namespace} has istio-injection=disabled")
    if mesh_ambient:
        return SidecarState("none", "ambient/namespace-not-enrolled", False,
                            f"namespace {namespace} has no {DATAPLANE_MODE}=ambient label (nor an injection label), "
                            "in a mesh whose namespaces are mostly ambient")
    return SidecarState("none", "no-sidecar/namespace-not-enabled", False,
                        f"namespace {namespace} has no istio-injection=enabled or istio.io/rev label")


def _ambient_state(namespace: str, ns_labels: Mapping[str, str], labels: Mapping[str, str],
                   annotations: Mapping[str, str], spec: Mapping[str, Any]) -> SidecarState | None:
    """A pod without a sidecar in ambient mode: captured by ztunnel, or why not; None when ambient does not apply.
    The pod's own istio.io/dataplane-mode wins over its namespace's (`none` opts out)."""
    own = labels.get(DATAPLANE_MODE)
    ns_ambient = ns_labels.get(DATAPLANE_MODE) == "ambient"
    if own == "none" and ns_ambient:
        return SidecarState("none", "ambient/pod-opted-out", False,
                            f'pod label {DATAPLANE_MODE}: "none" in namespace {namespace}, which is ambient')
    if own != "ambient" and not (ns_ambient and own is None):
        return None
    where = "its own label" if own == "ambient" else f"namespace {namespace}'s label"
    if spec.get("hostNetwork"):
        return SidecarState("none", "ambient/host-network", False,
                            f"{DATAPLANE_MODE}=ambient ({where}), but hostNetwork: true pods are never captured by "
                            "ztunnel")
    redirection = annotations.get(REDIRECTION)
    if redirection == "disabled":  # the CNI's own record of an opt-out (istio/istio cni/pkg/util/podutil.go)
        return SidecarState("none", "ambient/pod-opted-out", False,
                            f'{REDIRECTION}: "disabled": the pod asked not to be redirected to ztunnel')
    if redirection is not None and redirection != "enabled":
        return SidecarState("none", "ambient/not-captured", True,
                            f'{REDIRECTION}: "{redirection}": the CNI has not redirected the pod\'s traffic to ztunnel')
    return SidecarState("ambient", None, False, f"{DATAPLANE_MODE}=ambient ({where}): ztunnel, TCP metrics only "
                        "unless a waypoint serves it")


def _ports(raw: str | None) -> frozenset[int]:
    out: set[int] = set()
    for part in (raw or "").split(","):
        part = part.strip()
        if part.isdigit():
            out.add(int(part))
    return frozenset(out)


def traffic_exclusions(annotations: Mapping[str, str]) -> TrafficExclusions:
    ranges: Sequence[str] = [r.strip() for r in (annotations.get(EXCLUDE_OUTBOUND_IPS) or "").split(",")
                             if r.strip()]
    return TrafficExclusions(
        exclude_inbound_ports=_ports(annotations.get(EXCLUDE_INBOUND)),
        include_inbound_ports=annotations.get(INCLUDE_INBOUND),
        exclude_outbound_ports=_ports(annotations.get(EXCLUDE_OUTBOUND)),
        exclude_outbound_ip_ranges=tuple(ranges),
        include_outbound_ip_ranges=annotations.get(INCLUDE_OUTBOUND_IPS),
    )


def applicable_telemetries(pod: Pod, telemetries: Sequence[Telemetry], root_namespace: str) -> list[Telemetry]:
    """The Telemetry resources that configure a sidecar, least specific first (istiod's applicableTelemetries,
    pilot/pkg/model/telemetry.go): the root namespace's namespace-wide one, the pod's namespace's, then those of its
    namespace whose selector matches the pod's labels. Each namespace's first namespace-wide resource counts
    (istiod's order: creation time, then name); resources with targetRefs configure gateways and waypoints, not
    sidecars: a Gateway API gateway's pod takes those of its namespace that name its Gateway."""
    out = _namespace_wide(telemetries, root_namespace)
    if pod.namespace != root_namespace:
        out += _namespace_wide(telemetries, pod.namespace)
    labels = pod.subset_labels or pod.labels  # istiod matches the proxy's labels with its node's topology added
    gateway = pod.labels.get(GATEWAY_NAME_LABEL)
    out += [t for t in telemetries if t.namespace == pod.namespace and (
        any(_names_gateway(target, pod.namespace, gateway) for target in t.targets) if t.targeted
        else bool(t.selector) and all(labels.get(k) == v for k, v in t.selector.items()))]
    return out


GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
"""The label of a Gateway API gateway's pods naming their Gateway: a policy of their namespace whose targetRefs name
that Gateway configures them (pilot/pkg/model/policyattachment.go, workloadGatewayName, ShouldAttachPolicy)."""


def _names_gateway(target: PolicyTarget, namespace: str, gateway: str | None) -> bool:
    return gateway is not None and (target.group, target.kind) == (GATEWAY_API_GROUP, "Gateway") \
        and target.name == gateway and target.namespace in ("", namespace)


def waypoint_telemetries(waypoint: tuple[str, str], svc: Service, telemetries: Sequence[Telemetry],
                         root_namespace: str) -> list[Telemetry]:
    """The Telemetry resources that configure a waypoint (namespace, Gateway name) for the requests of one Service
    it serves, least specific first (istiod's applicableTelemetries for a waypoint proxy building that Service's
    chain): the root namespace's namespace-wide one, the waypoint's namespace's, the Service's namespace's where
    it differs; then, among the resources of the Service's namespace, those whose targetRefs name the Service, the
    waypoint's Gateway (a resource of the waypoint's own namespace) or, in the root namespace, the `istio-waypoint`
    GatewayClass (pilot/pkg/model/policyattachment.go, ShouldAttachPolicy). A waypoint ignores selectors."""
    wp_namespace, wp_name = waypoint
    out = _namespace_wide(telemetries, root_namespace)
    if wp_namespace != root_namespace:
        out += _namespace_wide(telemetries, wp_namespace)
    if svc.namespace != wp_namespace:
        out += _namespace_wide(telemetries, svc.namespace)
    return out + [t for t in telemetries if t.namespace == svc.namespace and t.targeted
                  and any(_attaches(target, t.namespace, wp_namespace, wp_name, svc, root_namespace)
                          for target in t.targets)]


WAYPOINT_GATEWAY_CLASS = "istio-waypoint"


def _attaches(target: PolicyTarget, policy_namespace: str, wp_namespace: str, wp_name: str, svc: Service,
              root_namespace: str) -> bool:
    kind = (target.group, target.kind)
    if kind == ("core", "Service"):
        return target.name == svc.name and policy_namespace == svc.namespace
    if kind == (GATEWAY_API_GROUP, "GatewayClass"):
        return policy_namespace == root_namespace and target.name == WAYPOINT_GATEWAY_CLASS
    return kind == (GATEWAY_API_GROUP, "Gateway") and target.name == wp_name and policy_namespace == wp_namespace \
        and target.namespace in ("", wp_namespace)


def _namespace_wide(telemetries: Sequence[Telemetry], namespace: str) -> list[Telemetry]:
    return [t for t in telemetries if t.namespace == namespace and t.namespace_wide][:1]


class IstioMetric(NamedTuple):
    prometheus: str
    """Its name in Prometheus (a histogram's family)."""
    words: str


TELEMETRY_METRICS = {
    "REQUEST_COUNT": IstioMetric("istio_requests_total", "request count"),
    "REQUEST_DURATION": IstioMetric("istio_request_duration_milliseconds", "request durations"),
    "REQUEST_SIZE": IstioMetric("istio_request_bytes", "request sizes"),
    "RESPONSE_SIZE": IstioMetric("istio_response_bytes", "response sizes"),
    "TCP_OPENED_CONNECTIONS": IstioMetric("istio_tcp_connections_opened_total", "opened connections"),
    "TCP_CLOSED_CONNECTIONS": IstioMetric("istio_tcp_connections_closed_total", "closed connections"),
    "TCP_SENT_BYTES": IstioMetric("istio_tcp_sent_bytes_total", "bytes sent"),
    "TCP_RECEIVED_BYTES": IstioMetric("istio_tcp_received_bytes_total", "bytes received"),
    "GRPC_REQUEST_MESSAGES": IstioMetric("istio_request_messages_total", "gRPC request messages"),
    "GRPC_RESPONSE_MESSAGES": IstioMetric("istio_response_messages_total", "gRPC response messages"),
}
"""The Telemetry API's standard metrics and the names Prometheus holds them by (istiod's metricToPrometheusMetric,
pilot/pkg/model/telemetry.go, with the `istio_` prefix the proxies export them with)."""

_METRIC_OF_FAMILY = {m.prometheus: name for name, m in TELEMETRY_METRICS.items()}


def telemetry_metric(family: str) -> str | None:
    """The Telemetry API's name of the Istio standard metric a Prometheus metric (or histogram family) is."""
    return _METRIC_OF_FAMILY.get(family)


GRPC_STATUSES = {1: ("CANCELLED", 499), 2: ("UNKNOWN", 500), 3: ("INVALID_ARGUMENT", 400),
                 4: ("DEADLINE_EXCEEDED", 504), 5: ("NOT_FOUND", 404), 6: ("ALREADY_EXISTS", 409),
                 7: ("PERMISSION_DENIED", 403), 8: ("RESOURCE_EXHAUSTED", 429), 9: ("FAILED_PRECONDITION", 400),
                 10: ("ABORTED", 409), 11: ("OUT_OF_RANGE", 400), 12: ("UNIMPLEMENTED", 501), 13: ("INTERNAL", 500),
                 14: ("UNAVAILABLE", 503), 15: ("DATA_LOSS", 500), 16: ("UNAUTHENTICATED", 401)}
"""gRPC status -> (its name, the HTTP status it stands for): Envoy's Grpc::Utility::grpcToHttpStatus
(source/common/grpc/status.cc, after Google's API design guide); any other code stands for 500. A gRPC call's own
HTTP status is 200 whatever its outcome: Istio labels it response_code="200" and grpc_response_status="<code>"."""


def grpc_status(code: str) -> tuple[str, int]:
    """(name, HTTP status it stands for) of a grpc_response_status label value."""
    number = int(code) if code.isascii() and code.isdigit() else -1
    return GRPC_STATUSES.get(number, (f"code {code}", 500))


SERVER_REPORTERS = ("destination", "waypoint")
"""The reporters of a request's server side: the server's sidecar, or the waypoint in front of ambient pods (each
request counted once, where the caller's sidecar also reports it as reporter="source")."""

UNKNOWN = "unknown"
"""What Istio's labels say where the proxy could not tell (`source_workload` of a caller without a sidecar)."""

ATTRIBUTION_LABELS = ("reporter", "destination_service_name", "destination_service_namespace")
"""The labels of istio_requests_total obsgap counts a service's requests by: a Telemetry tag override that removes
or rewrites one leaves the count unattributable."""


def metric_off(levels: Sequence[Telemetry], default_providers: Sequence[str], providers: Mapping[str, str],
               mode: str = "SERVER", metric: str = "REQUEST_COUNT",
               labels: Collection[str] = ATTRIBUTION_LABELS) -> str | None:
    """Why a proxy configured by the Telemetry resources `levels` (applicable_telemetries, waypoint_telemetries)
    does not export one of Istio's standard metrics (`metric`, a TELEMETRY_METRICS key) to Prometheus as the server
    (reporter=destination, a waypoint's reporter=waypoint) or the client (reporter=source) in a form obsgap can
    count by service, in words naming the Telemetry resource or the MeshConfig; None when it does. Besides turning
    the metric off, a resource may remove or rewrite a label it is read by (`labels`: by default ATTRIBUTION_LABELS,
    those obsgap attributes the count to a service by). istiod's mergeMetrics for the Prometheus-type providers
    (`providers`: the MeshConfig's, by lower-case name, as istiod looks them up): a level's providers replace its
    parent's (none given: the parent's), the providers of the most specific rule that names any are the ones
    configured, and overrides apply in order, least specific first: ALL_METRICS disabled drops the mode's whole
    filter until a later override of that mode names a metric (re-enabling it); an override of the metric's (or
    ALL_METRICS) `disabled` is the metric's last word, and a label's last tag override its."""
    def prometheus(names: Sequence[str]) -> bool:
        return any(providers.get(n.lower()) == "prometheus" for n in names)

    rules = [(t, rule) for t in levels for rule in t.metrics]
    in_scope: tuple[str, ...] = tuple(default_providers)
    last_setter: Telemetry | None = None
    for t, rule in rules:
        if rule.providers:
            in_scope, last_setter = rule.providers, t
    if not prometheus(in_scope):
        return f"{_who(last_setter)} configures no Prometheus provider" if last_setter else \
            (f"the MeshConfig's defaultProviders.metrics ({', '.join(default_providers) or 'none'}) names no "
             "provider of Prometheus type, nor does any Telemetry resource")
    parent = tuple(default_providers)
    all_off: Telemetry | None = None
    disabled_by: Telemetry | None = None
    tags: dict[str, tuple[str, Telemetry]] = {}
    for t, rule in rules:
        names = rule.providers or parent
        parent = names
        if not prometheus(names):
            continue
        for o in rule.overrides:
            if o.mode not in (mode, "CLIENT_AND_SERVER"):
                continue
            if o.metric == "ALL_METRICS" and not o.custom and o.disabled:
                all_off = t
                continue
            all_off = None  # an override naming metrics for this mode puts its filter back
            if o.custom or o.metric not in ("ALL_METRICS", metric):
                continue
            if o.disabled is not None:
                disabled_by = t if o.disabled else None
            tags.update({label: (op, t) for label, op in o.tags})  # a label's last override wins
    off = all_off or disabled_by
    if off:
        return f"{_who(off)} disables it"
    rewritten = sorted((label, op, t) for label, (op, t) in tags.items() if label in labels)
    if rewritten:
        label, op, t = rewritten[0]
        return f"{_who(t)} {'removes' if op == 'REMOVE' else 'rewrites'} its {label} label"
    return None


def _who(t: Telemetry) -> str:
    return f"Telemetry {t.namespace}/{t.name}"


@dataclass(frozen=True)
class AccessLogLimit:
    """What a Telemetry resource does to a sidecar's access log on stdout (what kubelet's files hold)."""

    telemetry: Telemetry
    what: str
    """`disabled`, `filtered` (only requests matching `expression`), or `elsewhere` (sent to other providers)."""
    expression: str | None = None

    def text(self) -> str:
        where = f"Telemetry {self.telemetry.namespace}/{self.telemetry.name}"
        if self.what == "filtered":
            return f"{where} logs only requests matching `{self.expression}`"
        if self.what == "disabled":
            return f"{where} turns the access log off"
        return f"{where} sends the access log to other providers than stdout"


def _mode_matches(rule_mode: str, mode: str) -> bool:
    return rule_mode in (mode, "CLIENT_AND_SERVER")


def access_log_limit(levels: Sequence[Telemetry], default_providers: Sequence[str], providers: Mapping[str, str],
                     mode: str = "SERVER") -> AccessLogLimit | None:
    """How the Telemetry resources that configure a proxy (`levels`: applicable_telemetries,
    waypoint_telemetries) limit the access log it writes to stdout for the requests it serves (mode SERVER), or
    None when no resource limits it (where none configures an access-log provider for this side, the MeshConfig's
    accessLogFile decides)."""
    levels = [t for t in levels if t.access_logging]
    if not levels:
        return None
    result, named_by = _merge_logs(levels, default_providers, mode)
    # istiod keeps the providers the MeshConfig defines as access logs (by lower-case name); with none left it falls
    # back to the MeshConfig's accessLogFile, which Telemetry does not limit
    logs = {p: limit for p, limit in result.items() if providers.get(p.lower()) in ("stdout", "access-log")}
    if not logs:
        return None
    stdout = {p: limit for p, limit in logs.items() if providers.get(p.lower()) == "stdout"}
    if not stdout:
        return AccessLogLimit(named_by or levels[-1], "elsewhere")
    limits = [limit for limit in stdout.values() if limit is not None]
    if len(limits) < len(stdout):
        return None  # one provider logs every request to stdout
    return next((limit for limit in limits if limit.what == "filtered"), limits[0])


def _merge_logs(levels: Sequence[Telemetry], default_providers: Sequence[str],
                mode: str) -> tuple[dict[str, AccessLogLimit | None], Telemetry | None]:
    """istiod's mergeLogs (pilot/pkg/model/telemetry.go): (provider -> its limit, None where it logs every
    request; the resource that named the providers in scope). The providers named by the most specific level that
    names any are the ones in scope; a rule that names none inherits its parent's; a provider's filter is the last
    one given by a rule naming it; a rule marked disabled turns its providers off, and a later one turns them back
    on."""
    in_scope: tuple[str, ...] = tuple(default_providers)
    filters: dict[str, tuple[str | None, Telemetry]] = {}
    named_by: Telemetry | None = None
    for t in levels:
        rules = [rule for rule in t.access_logging if _mode_matches(rule.mode, mode)]
        for rule in rules:
            filters.update({p: (rule.filter, t) for p in rule.providers})
        names = [p for rule in rules for p in rule.providers]
        if names:
            in_scope, named_by = tuple(dict.fromkeys(names)), t
    result: dict[str, AccessLogLimit | None] = {}
    parent = tuple(default_providers)
    for t in levels:
        for rule in t.access_logging:
            names_given = rule.providers or parent
            parent = names_given
            if not _mode_matches(rule.mode, mode):
                continue
            for provider in (p for p in names_given if p in in_scope):
                expression, setter = filters.get(provider, (None, t))
                result[provider] = AccessLogLimit(t, "disabled") if rule.disabled else \
                    AccessLogLimit(setter, "filtered", expression) if expression else None
    return result, named_by
