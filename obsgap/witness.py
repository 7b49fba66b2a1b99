"""Witnesses: who counted the real traffic obsgap holds the mesh's metrics against, and the one rule for a request
two of them saw.

Every observed count names its witness (docs/findings.md, "Witnesses"): coverage rows say it in `observed_by`,
findings in `evidence.witness`. A request seen by two witnesses of the same side (the application's log line and its
sidecar's access-log line for the same inbound request; the caller's app and its sidecar for the same call) is one
request: per cell (pod and port, or caller and address) the witness that saw more is taken, and everything computed
from that cell (totals, time bins, errors) comes from the same witness, so a chart and its table always agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pandas as pd

SERVER_LOGS = "server-logs"
"""The served pods' own logs: the application's lines and its sidecar's inbound access-log lines."""
CALLER_LOGS = "caller-logs"
"""The calling pods' logs: the URLs the applications called, their sidecars' outbound access-log lines."""
CALLER_SIDECARS = "caller-sidecar-metrics"
"""istio_requests_total{reporter="source"}: what the callers' own sidecars counted."""

ZTUNNEL_LOGS = "ztunnel-logs"
"""ztunnel's access logs (ambient mode): one line per connection, for the pods it names. Connections, not requests."""
ZTUNNEL_METRICS = "ztunnel-metrics"
"""istio_tcp_connections_opened_total as ztunnel reports it (ambient mode): the mesh's own count of connections."""

WITNESS_WORDS: Mapping[str, str] = {
    SERVER_LOGS: "server logs",
    CALLER_LOGS: "caller logs",
    CALLER_SIDECARS: "caller sidecar metrics (reporter=source)",
    ZTUNNEL_LOGS: "ztunnel's access logs",
    ZTUNNEL_METRICS: "ztunnel's metrics (istio_tcp_connections_opened_total)",
}


def witness_words(witness: str | None) -> str:
    """A witness in the words of a sentence ("server logs", "the app's metric http_server_requests_seconds")."""
    if witness is None:
        return "no witness"
    kind, _, detail = witness.partition(":")
    if kind == "app-metrics":
        return f"the services' own metric {detail}"
    if kind == "ebpf":
        return f"the eBPF agent {detail}"
    return WITNESS_WORDS.get(witness, witness)


@dataclass(frozen=True)
class Interval:
    """The part of the window a count covers, in epoch milliseconds [start, end)."""

    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> float:
        return max(0, self.end_ms - self.start_ms) / 1000


def same_request(by_origin: Mapping[str, int]) -> tuple[str | None, int]:
    """(the origin whose count stands for the cell, its count): two witnesses of one side saw the same requests,
    so the one that saw more is the count; a tie keeps the sidecar's (`envoy`) count. (None, 0) for no count."""
    best: tuple[str | None, int] = (None, 0)
    for origin, n in sorted(by_origin.items(), key=lambda kv: kv[0] != "envoy"):
        if best[0] is None or n > best[1]:
            best = (origin, int(n))
    return best


StatusForm = Literal["code", "class"]


@dataclass(frozen=True)
class WitnessFamily:
    """One metric that counts served HTTP requests, and what its labels mean."""

    name: str
    """The family as obsgap names it (its witness is `app-metrics:<name>` or `ebpf:<agent>`)."""
    series: str
    """The request counter whose increase over the window is the count (a counter, or a histogram's `_count`)."""
    kind: Literal["app-metrics", "ebpf"]
    namespace_label: str = "namespace"
    pod_label: str = "pod"
    """Labels naming the observed pod; `pod_label` may hold `namespace/pod` (pod_form)."""
    pod_form: Literal["name", "namespace/pod"] = "name"
    port_label: str | None = None
    status_label: str | None = None
    status_form: StatusForm = "code"
    route_label: str | None = None
    route_is_path: bool = True
    """False when the route names a view, not a path: kubelet's probes cannot be told apart from traffic by it."""
    excluded_routes: tuple[str, ...] = ()
    """Routes that are the exporter's own (its metrics view), never traffic."""
    sees_probes: Literal["always", "without-sidecar"] = "always"
    """When kubelet's probes reach it: an in-app metric sees them all; Hubble only those that do not pass through
    pilot-agent over localhost (pods without a sidecar)."""
    matchers: tuple[tuple[str, str, str], ...] = ()
    """What tells this family's series apart from another's of the same name (OBI's k8s labels, Hubble's reporter)."""
    agent: str | None = None
    framework: str = ""
    """Who exports it, in words."""

    @property
    def witness(self) -> str:
        return f"ebpf:{self.agent}" if self.kind == "ebpf" and self.agent else f"{self.kind}:{self.name}"

    @property
    def probes_by_path(self) -> bool:
        """Whether its route tells kubelet's probes and the scrapes that pass through pilot-agent from traffic."""
        return self.route_label is not None and self.route_is_path

    @property
    def group_by(self) -> tuple[str, ...]:
        """The labels the family's query keeps: pod, port, status, route (what each of its counts stands for)."""
        labels = [self.namespace_label, self.pod_label, self.port_label, self.status_label, self.route_label]
        return tuple(dict.fromkeys(label for label in labels if label))

    def is_error(self, status: str) -> bool:
        s = status.strip().lower()
        return s.startswith("5") and (s[1:] == "xx" if self.status_form == "class" else s.isdigit())


def _m(label: str, op: Literal["=", "!=", "=~", "!~"], value: str) -> tuple[str, str, str]:
    return label, op, value


# OpenTelemetry's Prometheus exporters name resources on target_info, not on each series; OBI and Beyla put
# k8s_* labels on every series: an empty k8s_pod_name is an SDK's series, a set one the agent's.
_SDK = (_m("k8s_pod_name", "=", ""),)
KNOWN_FAMILIES: tuple[WitnessFamily, ...] = (
    WitnessFamily("http_server_request_duration_seconds", "http_server_request_duration_seconds_count",
                  "app-metrics", port_label="server_port", status_label="http_response_status_code",
                  route_label="http_route", matchers=_SDK,
                  framework="OpenTelemetry SDKs (semantic conventions 1.23+, http.server.request.duration)"),
    WitnessFamily("http_server_duration_milliseconds", "http_server_duration_milliseconds_count", "app-metrics",
                  port_label="net_host_port", status_label="http_status_code", route_label="http_route",
                  framework="OpenTelemetry SDKs before semantic conventions 1.21 (http.server.duration, ms)"),
    WitnessFamily("http_server_requests_seconds", "http_server_requests_seconds_count", "app-metrics",
                  status_label="status", route_label="uri",
                  framework="Spring Boot / Micrometer (http.server.requests)"),
    WitnessFamily("http_requests_total", "http_requests_total", "app-metrics", status_label="status",
                  status_form="class", route_label="handler", matchers=(_m("handler", "!=", ""),),
                  framework="prometheus-fastapi-instrumentator"),
    WitnessFamily("django_http_responses_total_by_status_view_method_total",
                  "django_http_responses_total_by_status_view_method_total", "app-metrics", status_label="status",
                  route_label="view", route_is_path=False, excluded_routes=("prometheus-django-metrics",),
                  framework="django-prometheus"),
    WitnessFamily("flask_http_request_duration_seconds", "flask_http_request_duration_seconds_count", "app-metrics",
                  status_label="status", route_label="path", framework="prometheus-flask-exporter"),
    WitnessFamily("echo_requests_total", "echo_requests_total", "app-metrics", status_label="code",
                  route_label="url", framework="echo (echoprometheus, echo-prometheus)"),
    WitnessFamily("gin_uri_request_total", "gin_uri_request_total", "app-metrics", status_label="code",
                  route_label="uri", framework="gin (penglongli/gin-metrics)"),
    WitnessFamily("gin_requests_total", "gin_requests_total", "app-metrics", status_label="code", route_label="url",
                  framework="gin (zsais/go-gin-prometheus)"),
    WitnessFamily("obi", "http_server_request_duration_seconds_count", "ebpf", namespace_label="k8s_namespace_name",
                  pod_label="k8s_pod_name", port_label="server_port", status_label="http_response_status_code",
                  route_label="http_route", agent="obi",
                  matchers=(_m("k8s_pod_name", "!=", ""), _m("k8s_container_name", "!=", "istio-proxy")),
                  framework="OpenTelemetry eBPF Instrumentation (OBI) / Grafana Beyla"),
    WitnessFamily("hubble", "hubble_http_requests_total", "ebpf", namespace_label="destination_namespace",
                  pod_label="destination", pod_form="namespace/pod", status_label="status", agent="hubble",
                  matchers=(_m("reporter", "=", "server"),), sees_probes="without-sidecar",
                  framework="Cilium Hubble (http, httpV2)"),
)


@dataclass(frozen=True)
class WitnessCounts:
    """What one family counted over the window, per observed pod, port, status and route."""

    family: WitnessFamily
    rows: pd.DataFrame
    """namespace, pod, port (nullable int), route (str, "" when none), requests, errors."""

    @property
    def witness(self) -> str:
        return self.family.witness
