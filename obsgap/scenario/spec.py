"""What a simulated mesh looks like: namespaces, services, who calls whom, and which gaps are planted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

ENVOY_DEFAULT_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                         300000, 600000, 1800000, 3600000)
PROM_CLIENT_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

AppLogStyle = Literal["flat", "ecs", "otel", "none"]
Addressing = Literal["fqdn", "short-name", "namespace-qualified", "pod-ip", "wrong-namespace"]


@dataclass(frozen=True)
class PortSpec:
    name: str
    port: int
    target: int
    app_protocol: str | None = None
    declared: bool = True
    """False: the container listens on it but no Service declares it (InboundPassthroughCluster)."""


@dataclass(frozen=True)
class ServiceSpec:
    namespace: str
    name: str
    ports: tuple[PortSpec, ...] = (PortSpec("http", 8080, 8080),)
    replicas: int = 2
    inject: Literal["default", "false", "true"] = "default"
    """`false` plants sidecar.istio.io/inject: "false"; `default` follows the namespace label."""
    host_network: bool = False
    init_failed: bool = False
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    """Planted traffic.sidecar.istio.io/excludeOutboundPorts: this workload's calls skip its own sidecar."""
    proxy_missing: bool = False
    """Injection is enabled but the pods have no istio-proxy (created before the namespace label)."""
    ambient: bool = False
    """Pod label istio.io/dataplane-mode=ambient (its namespace may enrol it too: ScenarioSpec.ambient_namespaces):
    ztunnel reports only istio_tcp_*, unless a waypoint serves the Service."""
    ambient_opt_out: bool = False
    """Pod label istio.io/dataplane-mode=none: out of its ambient namespace's mesh."""
    use_waypoint: str | None = None
    """Service label istio.io/use-waypoint (a waypoint of ScenarioSpec.waypoints, or one that does not exist)."""
    headless: bool = False
    """clusterIP: None."""
    ingress_use_waypoint: bool = False
    """Service label istio.io/ingress-use-waypoint: "true": ingress gateways send its requests through its waypoint."""
    ingress_gateway: bool = False
    """Its pods are an Istio ingress gateway (label istio: ingressgateway, an Envoy reporting reporter="source")."""
    pods_without_proxy: int = 0
    """The first N replicas lack istio-proxy although injection is enabled (the rest have it)."""
    restart_at: float | None = None
    """Fraction of the window at which the pods restart: their counters reset to zero."""
    metrics_loss: float = 0.0
    """Share of this service's requests its sidecar (or the waypoint that serves it) silently leaves out of
    istio_requests_total and the duration histogram (e.g. a relabel rule, or a Telemetry resource)."""
    latency_median_ms: float = 20.0
    latency_sigma: float = 0.5
    error_rate: float = 0.01
    websocket_share: float = 0.0
    """Share of its requests that upgrade to a WebSocket (HTTP 101), each lasting `websocket_minutes` (median): Envoy
    records them when the connection closes, with its lifetime as their duration."""
    websocket_minutes: float = 5.0
    grpc_errors: tuple[tuple[int, float], ...] = ()
    """(gRPC status, share of the requests) a gRPC service (a port named `grpc`) fails with: the HTTP status stays
    200 (the status travels in the grpc-status trailer), and Istio labels the call grpc_response_status."""
    app_logs: AppLogStyle = "flat"
    app_clock_offset_s: float = 0.0
    """How far the app's own log timestamps are off (-3600: local time one hour east of UTC, logged as UTC);
    kubelet's CRI timestamps stay right."""
    log_outbound_calls: bool = True
    envoy_access_logs: bool = True
    metrics_port: int | None = None
    """Port of the app's own /metrics (prometheus.io/port); None: the app exposes none."""
    metrics_scraped: bool = True
    """False plants an app metrics port that no Prometheus job scrapes."""
    sidecar_scraped: bool = True
    """False: no Prometheus job scrapes its pods' sidecars (a PodMonitor that misses its namespace, say): no `up`
    series and no istio_* series of theirs (their callers' and their own witnesses are unchanged)."""
    job: str = "kubernetes-pods"
    """The Prometheus job that scrapes this workload's pods."""
    istio_histogram: bool = True
    """Emit istio_request_duration_milliseconds for this service (big meshes drop most for cost)."""
    istio_buckets: tuple[float, ...] | None = None
    """Custom Istio duration buckets (planted as the statsHistogramBuckets annotation)."""
    app_histogram: str | None = None
    """Name of an application latency histogram in seconds (prometheus_client default buckets)."""
    app_buckets: tuple[float, ...] = PROM_CLIENT_DEFAULT_BUCKETS
    extra_annotations: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    probe_interval_s: int | None = 10
    """kubelet HTTP readiness probe period (GET /healthz): with a sidecar, pilot-agent calls the app directly,
    so the app logs it and Envoy never sees it; None for no probe."""
    also_selected_by: tuple[str, ...] = ()
    """More Services (same namespace and ports) selecting these pods, e.g. a StatefulSet's headless Service."""
    app_metrics: str | None = None
    """The request metric the service's own framework exports (scenario.witnesses.APP_FAMILIES): a witness in
    Prometheus; its metrics port defaults to 9090."""

    app_metrics_loss: float = 0.0
    """Share of requests the app's own metric misses (its middleware registered after some routers)."""

    @property
    def metrics_port_used(self) -> int | None:
        """The app's own /metrics port, if it exposes one."""
        return self.metrics_port or (9090 if self.app_metrics else None)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class WaypointSpec:
    """A waypoint (Gateway of class istio-waypoint) and its pod."""

    namespace: str
    name: str
    waypoint_for: str | None = None
    """istio.io/waypoint-for label; None: unlabelled (service traffic, Istio's default)."""
    programmed: bool = True
    """Its Programmed condition (False: not ready, and no pod runs)."""
    scraped: bool = True
    """Whether Prometheus scrapes its pod (False: no target on it, and what it counts never reaches Prometheus)."""


@dataclass(frozen=True)
class FlowSpec:
    caller: str
    """`namespace/service` of a workload in the scenario, or `external` (no sidecar, outside the mesh)."""
    target: str
    """`namespace/service`."""
    port: int
    rps: float
    address: Addressing = "fqdn"
    path: str = "/api"
    via: str | None = None
    """Call the target through another Service that selects the same pods (one of its `also_selected_by`)."""


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    namespaces: tuple[tuple[str, bool], ...]
    """(namespace, injection enabled)."""
    services: tuple[ServiceSpec, ...]
    flows: tuple[FlowSpec, ...]
    end: datetime = field(default_factory=lambda: datetime(2026, 11, 24, tzinfo=UTC))
    hours: float = 1.0
    scrape_interval_s: int = 30
    seed: int = 7
    gzip_rotated: bool = True
    """Write the first half of each log as a rotated, gzipped file (as kubelet does)."""
    extra_objects: tuple[Mapping[str, Any], ...] = ()
    """Further Kubernetes/Istio objects for the topology (VirtualServices, DestinationRules, ...)."""
    access_log_format: str | None = None
    """The sidecars' Envoy TEXT access-log format (a mesh's own accessLogFormat); None: Istio's default."""
    partial_every: int = 0
    """Every Nth app log line is split into CRI partial (P) lines; 0 = never."""
    ebpf: tuple[str, ...] = ()
    """eBPF agents on every node (scenario.witnesses.AGENTS): obi, hubble."""
    ambient_namespaces: tuple[str, ...] = ()
    """Namespaces labelled istio.io/dataplane-mode=ambient (ztunnel on every node writes its access logs)."""
    waypoints: tuple[WaypointSpec, ...] = ()
    prometheus3: bool = False
    """Bucket bounds as Prometheus 3 stores them (`le="500.0"`, `"1.8e+06"`): normalised on ingestion."""

    @property
    def start(self) -> datetime:
        return self.end - timedelta(seconds=int(self.hours * 3600))

    def service(self, key: str) -> ServiceSpec:
        for s in self.services:
            if s.key == key:
                return s
        raise KeyError(key)
