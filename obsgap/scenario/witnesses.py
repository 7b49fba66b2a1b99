"""The witnesses a simulated cluster holds in Prometheus beside Istio's metrics: each service's own request metric,
as its framework exports it, and the eBPF agents that watch every node. Names, labels and buckets as upstream
writes them (tests/data/witnesses/PROVENANCE.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

OTEL_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""semconv 1.23 advice for http.server.request.duration"""
OTEL_MILLISECONDS = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
"""the OpenTelemetry SDKs' default explicit buckets (the old http.server.duration gave no advice)"""
OBI_SECONDS = (0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
OTELHTTP = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
PYTHON_CLIENT = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CUSTOM = "shop_http_served_total"
"""A request counter no framework obsgap knows writes (read with --witness-metric)."""
APP_FAMILIES = ("http_server_request_duration_seconds", "http_server_duration_milliseconds",
                "http_server_requests_seconds", "http_requests_total",
                "django_http_responses_total_by_status_view_method_total", "flask_http_request_duration_seconds",
                "echo_requests_total", "gin_uri_request_total", CUSTOM)
AGENTS = {"obi": {"job": "beyla", "namespace": "beyla", "pod": "beyla-7xk2p", "instance": "10.200.0.9:9090"},
          "hubble": {"job": "hubble-metrics", "namespace": "kube-system", "pod": "cilium-x7x2d",
                     "instance": "10.200.0.10:9965"}}
"""The agents' own scrape targets: their series name the observed pod in their own labels."""


class Sink(Protocol):
    def inc(self, family: str, labels: dict[str, str], by: float = 1.0) -> None: ...

    def observe(self, family: str, labels: dict[str, str], bounds: tuple[float, ...], value: float) -> None: ...

    def observe_summary(self, family: str, labels: dict[str, str], value: float) -> None: ...


@dataclass(frozen=True)
class Served:
    """One request a pod served, as every witness inside or beside the pod sees it."""

    namespace: str
    pod: str
    container: str
    service: str
    method: str
    route: str
    status: int
    duration_ms: float
    port: int
    caller: str | None
    """namespace/pod of the caller, when one of the mesh's pods."""
    seq: int = 0
    """The request's number in the simulation (0: a probe)."""


def _app(family: str, r: Served, target: dict[str, str], sink: Sink) -> None:
    s, code = r.duration_ms / 1000.0, str(r.status)
    if family == "http_server_request_duration_seconds":
        sink.observe(family, target | {"http_request_method": r.method, "http_response_status_code": code,
                                       "http_route": r.route, "url_scheme": "http", "otel_scope_name": OTELHTTP,
                                       "otel_scope_version": "0.63.0"}, OTEL_SECONDS, s)
    elif family == "http_server_duration_milliseconds":
        sink.observe(family, target | {"http_method": r.method, "http_status_code": code, "http_route": r.route,
                                       "http_scheme": "http", "net_host_name": r.service}, OTEL_MILLISECONDS,
                     r.duration_ms)
    elif family == "http_server_requests_seconds":
        outcome = "SUCCESS" if r.status < 400 else "CLIENT_ERROR" if r.status < 500 else "SERVER_ERROR"
        sink.observe_summary(family, target | {"error": "none", "exception": "none", "method": r.method,
                                               "outcome": outcome, "status": code, "uri": r.route}, s)
    elif family == "http_requests_total":
        sink.inc("http_requests", target | {"handler": r.route, "method": r.method, "status": f"{code[0]}xx"})
    elif family == "django_http_responses_total_by_status_view_method_total":
        sink.inc("django_http_responses_total_by_status_view_method", target | {
            "method": r.method, "status": code, "view": f"{r.service}.views.{r.route.strip('/') or 'index'}"})
    elif family == "flask_http_request_duration_seconds":
        sink.observe(family, target | {"method": r.method, "path": r.route, "status": code}, PYTHON_CLIENT, s)
    elif family == "echo_requests_total":
        sink.inc("echo_requests", target | {"code": code, "host": f"{r.service}:{r.port}", "method": r.method,
                                            "url": r.route})
    elif family == "gin_uri_request_total":
        sink.inc("gin_uri_request", target | {"code": code, "method": r.method, "uri": r.route})
    elif family == CUSTOM:
        sink.inc(CUSTOM.removesuffix("_total"), target | {"result": f"{code[0]}xx", "route_path": r.route})


def _agent(agent: str, r: Served, sink: Sink) -> None:
    code = str(r.status)
    if agent == "obi":
        sink.observe("http_server_request_duration_seconds", AGENTS["obi"] | {
            "k8s_namespace_name": r.namespace, "k8s_pod_name": r.pod, "k8s_container_name": r.container,
            "k8s_deployment_name": r.service, "k8s_owner_name": r.service, "service_name": r.service,
            "service_namespace": r.namespace, "server_port": str(r.port), "http_request_method": r.method,
            "http_response_status_code": code, "http_route": r.route, "url_scheme": "http",
            "exported_job": f"{r.namespace}/{r.service}",
            "exported_instance": f"{r.namespace}.{r.pod}.{r.container}"}, OBI_SECONDS, r.duration_ms / 1000.0)
    elif agent == "hubble":
        sink.inc("hubble_http_requests", AGENTS["hubble"] | {
            "destination": f"{r.namespace}/{r.pod}", "source": r.caller or "", "method": r.method,
            "protocol": "HTTP/1.1", "reporter": "server", "status": code})


def lost(seq: int, share: float) -> bool:
    """Whether request `seq` is one of the `share` a witness misses (evenly spread, without drawing randomness)."""
    return seq > 0 and (seq * 0.6180339887498949) % 1.0 < share


def emit(r: Served, app_family: str | None, agents: tuple[str, ...], target: dict[str, str], sink: Sink,
         count: Callable[[str], Any], sidecar: bool, probe: bool = False, app_loss: float = 0.0) -> None:
    """Every witness of one served request; `count(witness)` keeps the truth of each. A kubelet probe of a pod with
    a sidecar reaches the app through pilot-agent over localhost: Hubble never sees it. `app_loss`: the share of
    requests the app's metric misses (a middleware registered after some routers)."""
    if app_family and not lost(r.seq, app_loss):
        _app(app_family, r, target, sink)
        count(f"app-metrics:{app_family}")
    for agent in agents:
        if agent == "hubble" and probe and sidecar:
            continue
        _agent(agent, r, sink)
        count(f"ebpf:{agent}")
