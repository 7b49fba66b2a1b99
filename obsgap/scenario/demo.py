"""The demo mesh: one instance of every gap obsgap finds, next to healthy services that must stay silent."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from obsgap import engine
from obsgap.config import RunPlan
from obsgap.evidence import CheckSettings
from obsgap.model import Window
from obsgap.publish import write_outputs
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, PortSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.suggest.configs import STATS_BUCKETS_ANNOTATION as STATS_BUCKETS
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
    """A Grafana dashboard (export format) whose panels filter on the job name people expect."""
    return {"title": "Payments SLO", "uid": "payments-slo", "schemaVersion": 39, "panels": [
        {"type": "timeseries", "title": "Payments availability", "targets": [
            {"refId": "A", "expr": 'sum(rate(http_requests_total{job="payments",code!~"5.."}[5m])) / '
                                   'sum(rate(http_requests_total{job="payments"}[5m]))'}]},
        {"type": "timeseries", "title": "Mesh request rate", "targets": [
            {"refId": "A", "expr": 'sum(rate(istio_requests_total{reporter="destination",'
                                   'destination_service_name="payments"}[5m]))'}]}]}


def run_demo(out: Path, hours: float, say: Callable[[str], None]) -> Path:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    spec = demo_spec(end, hours)
    say(f"simulating {hours:g}h of traffic for {len(spec.services)} services")
    built = build(spec, out / "scenario")
    dashboard = out / "scenario" / "payments-dashboard.json"
    dashboard.write_text(json.dumps(demo_dashboard(), indent=1))
    slos = out / "scenario" / "slos.yaml"
    slos.write_text((resources.files("obsgap.scenario") / "demo_slos.yaml").read_text(encoding="utf-8"))
    say(f"backfilling {built.metrics.stat().st_size // 1024} KiB of OpenMetrics into a real Prometheus")
    server = serve_openmetrics(built.metrics, out / "scenario")
    try:
        say(f"Prometheus serving on {server.url}")
        plan = RunPlan(window=Window(spec.start, spec.end), out_dir=out, prometheus=PrometheusOptions(url=server.url),
                       settings=CheckSettings(slo_latency_ms=DEMO_SLOS_MS),
                       kube_snapshots=(built.topology,), logs=(str(built.logs),), dashboards=(dashboard,),
                       slo_paths=(slos,))
        outcome = engine.run(plan, say)
        paths = write_outputs(outcome.result, out)
    finally:
        server.stop()
    for run in outcome.result.checks:
        if run.status != "ran":
            say(f"check {run.check} {run.status}: {run.reason}")
    say(f"{len(outcome.result.findings)} findings")
    for f in outcome.result.findings:
        say(f"  {f.severity.value:<8} {f.check:<26} {f.title}")
    return paths[1]  # report.html: what a person opens

