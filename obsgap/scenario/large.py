"""Large meshes for the benchmark: the demo's kinds of gaps repeated across thousands of services."""

from __future__ import annotations

from datetime import datetime

from obsgap.scenario.spec import FlowSpec, PortSpec, ScenarioSpec, ServiceSpec
from obsgap.scenario.witnesses import APP_FAMILIES


def large_spec(end: datetime, services: int = 2000, replicas: int = 3, hours: float = 24.0,
               requests_per_service_hour: float = 57.0, namespaces: int = 40, scrape_interval_s: int = 300,
               histogram_every: int = 40, witnesses: bool = False) -> ScenarioSpec:
    """`services` services in `namespaces` namespaces, each called by the previous one; every 10th has a gap
    (no sidecar, HTTP on a tcp- port, excluded port, pod-IP callers), and one in `histogram_every` keeps Istio's
    duration histogram (the rest drop it, as big meshes do for cost). With `witnesses`, every service exports its
    own request metric (the known frameworks in turn) and OBI watches every node."""
    ns_names = [f"team-{i:02d}" for i in range(namespaces)]
    specs: list[ServiceSpec] = []
    flows: list[FlowSpec] = []
    rps = requests_per_service_hour / 3600.0
    for i in range(services):
        ns = ns_names[i % namespaces]
        gap = i % 10
        kw: dict[str, object] = {"replicas": replicas, "error_rate": 0.0, "istio_histogram": i % histogram_every == 0,
                                 "probe_interval_s": None,
                                 "app_logs": ("flat", "ecs", "otel")[i % 3]}
        if gap == 3:
            kw["inject"] = "false"
        elif gap == 5:
            kw["ports"] = (PortSpec("tcp-api", 8080, 8080),)
        elif gap == 7:
            kw["exclude_inbound_ports"] = (8080,)
        elif gap == 9:
            kw["latency_median_ms"] = 8000.0
            kw["istio_histogram"] = True
        if witnesses:
            kw["app_metrics"] = APP_FAMILIES[i % (len(APP_FAMILIES) - 1)]  # the last needs --witness-metric
        specs.append(ServiceSpec(ns, f"svc-{i:04d}", **kw))  # type: ignore[arg-type]
        caller = "external" if i == 0 else f"{ns_names[(i - 1) % namespaces]}/svc-{i - 1:04d}"
        flows.append(FlowSpec(caller, f"{ns}/svc-{i:04d}", 8080, rps, address="pod-ip" if gap == 1 else "fqdn"))
    return ScenarioSpec("large", tuple((n, True) for n in ns_names), tuple(specs), tuple(flows), end=end,
                        hours=hours, scrape_interval_s=scrape_interval_s, gzip_rotated=True,
                        ebpf=("obi",) if witnesses else ())
