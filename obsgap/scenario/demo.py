"""The demo mesh: one instance of most gaps obsgap finds, next to healthy services that must stay silent."""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from obsgap import engine
from obsgap.checks import CHECK_IDS
from obsgap.config import RunPlan
from obsgap.evidence import CheckSettings
from obsgap.model import Window
from obsgap.publish import write_outputs
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, PortSpec, ScenarioSpec, ServiceSpec, WaypointSpec
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.suggest.configs import STATS_BUCKETS_ANNOTATION as STATS_BUCKETS
from obsgap.suppress import parse_config
from obsgap.testbed.promserver import serve_openmetrics

DEMO_SLOS_MS = (300.0, 30000.0)
"""The demo's SLO thresholds: 300 ms for the shop, 30 s for inference."""


def demo_spec(end: datetime, hours: float = 2.0) -> ScenarioSpec:
    s = ServiceSpec
    return ScenarioSpec(
        name="demo",
        namespaces=(("shop", True), ("payments", True), ("legacy", False), ("web", True), ("ai", True)),
        services=(
            s("shop", "frontend", replicas=3),
            s("shop", "catalog"),                                   # healthy control
            s("payments", "payments", app_logs="ecs", job="payments-svc"),  # job-name-mismatch; pod-IP callers
            s("shop", "recommend", inject="false"),                 # no-sidecar/inject-annotation
            s("legacy", "billing", app_logs="otel"),                # no-sidecar/namespace-not-enabled
            s("shop", "node-agent", host_network=True, replicas=1),  # no-sidecar/host-network
            s("shop", "checkout", app_clock_offset_s=-3600),            # logs local time as UTC: retimed, reported
            s("shop", "orders", ports=(PortSpec("tcp-api", 9000, 9000),)),            # port-treated-as-tcp
            s("shop", "inventory", exclude_inbound_ports=(8080,)),                  # port-excluded
            s("shop", "search", ports=(PortSpec("http", 8080, 8080),
                                       PortSpec("http-admin", 9090, 9090, declared=False)),  # port-not-declared
              extra_annotations=((STATS_BUCKETS, '{"istiocustom": [100, 50, 10]'),)),    # malformed annotation
            # slow inference: app histogram with prometheus_client defaults and custom Istio buckets topping at 10 s
            s("ai", "inference", latency_median_ms=12000, latency_sigma=0.6, metrics_port=8000,
              app_histogram="inference_request_duration_seconds", error_rate=0.02,
              istio_buckets=(5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)),
            # saturated Istio buckets and no access logs: the suggestion is extrapolated
            s("ai", "embedder", latency_median_ms=1800, latency_sigma=0.4, app_logs="none", envoy_access_logs=False,
              istio_buckets=(1, 5, 10, 50, 100, 500, 1000)),
            s("legacy", "ledger", ports=(PortSpec("web", 8080, 8080),),   # port-name-convention
              metrics_port=9102, metrics_scraped=False, replicas=1),  # metrics port not scraped
            s("web", "storefront"),                                 # calls catalog in the wrong namespace
        ),
        flows=(
            FlowSpec("external", "shop/frontend", 8080, 4.0),       # caller-outside-mesh
            FlowSpec("shop/frontend", "shop/catalog", 8080, 3.0),
            FlowSpec("shop/frontend", "shop/recommend", 8080, 1.5),
            FlowSpec("shop/frontend", "shop/node-agent", 8080, 0.5),
            FlowSpec("shop/frontend", "shop/checkout", 8080, 1.0),
            FlowSpec("shop/checkout", "legacy/billing", 8080, 0.8),
            FlowSpec("shop/checkout", "payments/payments", 8080, 0.6),
            FlowSpec("shop/checkout", "payments/payments", 8080, 0.4, address="pod-ip"),  # pod-ip, passthrough
            FlowSpec("shop/checkout", "shop/orders", 9000, 1.0),
            FlowSpec("shop/frontend", "shop/inventory", 8080, 1.0),
            FlowSpec("shop/frontend", "shop/search", 8080, 1.0),
            FlowSpec("shop/frontend", "shop/search", 9090, 0.3, address="pod-ip"),
            FlowSpec("web/storefront", "shop/catalog", 8080, 0.2, address="wrong-namespace"),
            FlowSpec("web/storefront", "shop/catalog", 8080, 0.5, address="namespace-qualified"),
            FlowSpec("shop/frontend", "ai/inference", 8080, 0.5),
            FlowSpec("ai/inference", "ai/embedder", 8080, 0.5),
        ),
        extra_objects=_name_contract_objects(),
        end=end, hours=hours, scrape_interval_s=30, partial_every=97,
    )


FRAMEWORKS = ("http_server_request_duration_seconds", "http_server_requests_seconds", "http_requests_total",
              "django_http_responses_total_by_status_view_method_total", "flask_http_request_duration_seconds",
              "echo_requests_total", "gin_uri_request_total", "http_server_duration_milliseconds")


def witnesses_spec(end: datetime, hours: float = 2.0) -> ScenarioSpec:
    """The demo mesh as Istio's default profile leaves it: no access logs, applications that log nothing, but each
    service exports its own request metric (one framework after another) and OBI watches every node. Coverage comes
    from those witnesses alone."""
    base = demo_spec(end, hours)
    services = tuple(replace(svc, app_logs="none", envoy_access_logs=False, app_histogram=None,
                             app_metrics=FRAMEWORKS[i % len(FRAMEWORKS)] if svc.metrics_scraped else None)
                     for i, svc in enumerate(base.services))
    return replace(base, name="witnesses", services=services, ebpf=("obi",), partial_every=0)


def ambient_spec(end: datetime, hours: float = 2.0) -> ScenarioSpec:
    """Today's mesh: a sidecar namespace calling an ambient one (ztunnel on the node, writing its access logs), a
    waypoint serving one Service, a Service asking for a waypoint that was never applied, a pod opted out of
    ambient, GAMMA routes (one whose Service parent lacks `group: ""`), and a Prometheus 3 storing bucket bounds
    normalised (`le="500.0"`)."""
    bank = (ServiceSpec("bank", "accounts", use_waypoint="bank-waypoint"),
            ServiceSpec("bank", "ledger", use_waypoint="ledger-waypoint"),
            ServiceSpec("bank", "payments"), ServiceSpec("bank", "audit", ambient_opt_out=True),
            ServiceSpec("bank", "scoring", use_waypoint="bank-waypoint", latency_median_ms=4_000_000,
                        latency_sigma=0.2))
    flows = tuple(FlowSpec("shop/web", s.key, 8080, 1.0 if s.name != "scoring" else 0.3) for s in bank)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute"}
    routes = (route | {"metadata": {"name": "accounts", "namespace": "bank"}, "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "accounts", "port": 8080}],
        "rules": [{"backendRefs": [{"name": "accounts", "port": 8080}]}]}},
              route | {"metadata": {"name": "payments", "namespace": "bank"}, "spec": {
                  "parentRefs": [{"kind": "Service", "name": "payments", "port": 8080}],
                  "rules": [{"backendRefs": [{"name": "payments", "port": 8080}]}]}})
    return ScenarioSpec("ambient", (("shop", True), ("bank", False)), (ServiceSpec("shop", "web"), *bank),
                        (FlowSpec("external", "shop/web", 8080, 2.0), *flows), end=end, hours=hours,
                        ambient_namespaces=("bank",), waypoints=(WaypointSpec("bank", "bank-waypoint"),),
                        prometheus3=True, extra_objects=routes)


def ambient_dashboard() -> dict[str, Any]:
    """A service dashboard written as Istio's own (reporter="destination"): blind to what the waypoint serves."""
    expr = 'sum(rate(istio_requests_total{reporter="destination",destination_service_name="accounts"}[5m]))'
    return {"title": "Bank services", "panels": [{"title": "accounts requests", "targets": [{"expr": expr}]}]}


def _name_contract_objects() -> tuple[dict[str, Any], ...]:
    """A canary on catalog whose v2 subset selects nothing and has no outlier detection, and a VirtualService
    whose host is a dotted short name Istio does not expand."""
    net = "networking.istio.io/v1"
    return (
        {"apiVersion": net, "kind": "DestinationRule", "metadata": {"name": "catalog", "namespace": "shop"},
         "spec": {"host": "catalog", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                 {"name": "v2", "labels": {"version": "v2"}}]}},
        {"apiVersion": net, "kind": "VirtualService", "metadata": {"name": "catalog", "namespace": "shop"},
         "spec": {"hosts": ["catalog"], "http": [{"route": [
             {"destination": {"host": "catalog", "subset": "v1"}, "weight": 90},
             {"destination": {"host": "catalog", "subset": "v2"}, "weight": 10}]}]}},
        {"apiVersion": net, "kind": "VirtualService", "metadata": {"name": "storefront-to-catalog", "namespace": "web"},
         "spec": {"hosts": ["catalog.shop"], "http": [{"route": [{"destination": {"host": "catalog.shop"}}]}]}},
    )




def demo_dashboard() -> dict[str, Any]:
    """A Grafana dashboard (export format) whose panels filter on the job name people expect, one that adds up every
    reporter's count, as guides write it (checkout's sidecar and payments' both count each call), and one that
    selects a bucket bound Istio's histogram does not have."""
    return {"title": "Payments SLO", "uid": "payments-slo", "schemaVersion": 39, "panels": [
        {"type": "timeseries", "title": "Payments availability", "targets": [
            {"refId": "A", "expr": 'sum(rate(http_requests_total{job="payments",code!~"5.."}[5m])) / '
                                   'sum(rate(http_requests_total{job="payments"}[5m]))'}]},
        {"type": "timeseries", "title": "Mesh request rate", "targets": [
            {"refId": "A", "expr": 'sum(rate(istio_requests_total{reporter="destination",'
                                   'destination_service_name="payments"}[5m]))'}]},
        {"type": "stat", "title": "Payments requests per second", "targets": [
            {"refId": "A", "expr": 'sum(rate(istio_requests_total{destination_service_name="payments"}[5m]))'}]},
        {"type": "stat", "title": "Payments requests under 300 ms", "targets": [
            {"refId": "A", "expr": 'sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",'
                                   'destination_service_name="payments",le="300"}[5m])) / sum(rate('
                                   'istio_request_duration_milliseconds_count{reporter="destination",'
                                   'destination_service_name="payments"}[5m]))'}]}]}


DEMO_CONFIG = """\
# The demo's accepted findings: the node agent runs on the host network by design, so its bypass is known.
suppress:
  - check: envoy-bypass
    namespace: shop
    service: node-agent
    reason: host-network agent, outside the mesh by design (demo)
"""


def rerun_command(plan: RunPlan, out: Path, config: Path | None = None) -> str:
    """The `obsgap report` command line that runs the demo's report again on its data (while its Prometheus
    serves), as a shell reads it."""
    args = ["obsgap", "report", *(["--config", str(config)] if config else []),
            "--prometheus-url", plan.prometheus.url if plan.prometheus else "",
            "--start", plan.window.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "--end", plan.window.end.strftime("%Y-%m-%dT%H:%M:%SZ")]
    for snapshot in plan.kube_snapshots:
        args += ["--kube-snapshot", str(snapshot)]
    for logs in plan.logs:
        args += ["--logs", logs]
    for dashboard in plan.dashboards:
        args += ["--dashboards", str(dashboard)]
    for slo in plan.slo_paths:
        args += ["--slo", str(slo)]
    args += ["--slo-latency", ",".join(f"{ms:g}ms" for ms in DEMO_SLOS_MS), "--out-root", str(out.parent / "rerun")]
    return " ".join(shlex.quote(a) for a in args)


def run_demo(out: Path, hours: float, say: Callable[[str], None], mesh: str = "default",
             serve: bool = False) -> Path:
    """`mesh`: default (logs, metrics, topology), witnesses (no log at all: the services' own metrics and OBI), or
    ambient (ztunnel, a waypoint, Gateway API routes, Prometheus 3's bucket spelling). `serve`: keep its
    Prometheus serving after the report, and print the `obsgap report` command that reads the same data."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    spec = {"witnesses": witnesses_spec, "ambient": ambient_spec}.get(mesh, demo_spec)(end, hours)
    say(f"simulating {hours:g}h of traffic for {len(spec.services)} services")
    built = build(spec, out / "scenario")
    dashboard = out / "scenario" / "payments-dashboard.json"
    dashboard.write_text(json.dumps(ambient_dashboard() if mesh == "ambient" else demo_dashboard(), indent=1))
    slos = out / "scenario" / "slos.yaml"
    slo_file = "ambient_slos.yaml" if mesh == "ambient" else "demo_slos.yaml"
    slos.write_text((resources.files("obsgap.scenario") / slo_file).read_text(encoding="utf-8"))
    config = out / "scenario" / "obsgap.yaml"
    config.write_text(DEMO_CONFIG if mesh == "default" else "{}\n")  # only the default mesh has the node agent
    suppressions = parse_config((yaml.safe_load(config.read_text()) or {}).get("suppress"), f"--config {config}",
                                CHECK_IDS)
    say(f"backfilling {built.metrics.stat().st_size // 1024} KiB of OpenMetrics into a real Prometheus")
    rules = out / "scenario" / "rules.yaml"  # the default mesh's team alerts, which Prometheus evaluates
    rules.write_text((resources.files("obsgap.scenario") / "demo_rules.yaml").read_text(encoding="utf-8")
                     if mesh == "default" else "groups: []\n")
    server = serve_openmetrics(built.metrics, out / "scenario", rule_files=(rules,))
    try:
        say(f"Prometheus serving on {server.url}")
        plan = RunPlan(window=Window(spec.start, spec.end), out_dir=out, prometheus=PrometheusOptions(url=server.url),
                       settings=CheckSettings(slo_latency_ms=DEMO_SLOS_MS),
                       kube_snapshots=(built.topology,), logs=(str(built.logs),) if mesh != "witnesses" else (),
                       dashboards=(dashboard,), slo_paths=(slos,), suppressions=suppressions)
        outcome = engine.run(plan, say)
        paths = write_outputs(outcome.result, out).paths
        if serve:
            say(f"report written to {paths[1]}; Prometheus keeps serving the demo's metrics until Ctrl-C. "
                "In another shell, run the report again on the same data (change any flag):")
            print(rerun_command(plan, out, config), flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    finally:
        server.stop()
    for run in outcome.result.checks:
        if run.status != "ran":
            say(f"check {run.check} {run.status}: {run.reason}")
    say(f"{len(outcome.result.findings)} findings")
    for f in outcome.result.findings:
        say(f"  {f.severity.value:<8} {f.check:<26} {f.title}")
    return paths[1]  # report.html: what a person opens

