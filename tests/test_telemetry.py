"""Istio's Telemetry API: which resources configure a sidecar, and when they turn off the request count the mesh's
comparisons rest on (istio.applicable_telemetries, istio.metric_off). A service whose server-side count a
Telemetry resource turned off is not measured by the mesh: never a bypass, never a 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from obsgap.istio import access_log_limit, applicable_telemetries, metric_off, waypoint_telemetries
from obsgap.model import PolicyTarget
from obsgap.sources.kube.build import build_topology
from tests.helpers import k8s_pod, run_scenario, unexamined


def _telemetry(namespace: str, name: str, metrics: list[dict[str, Any]], created: str = "2026-01-01T00:00:00Z",
               **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
            "spec": {"metrics": metrics, **spec}}


# Istio's own cases (pilot/pkg/model/telemetry_test.go, TestTelemetryFilters, at istio/istio 86c9f01), as the
# Telemetry objects their Go structs stand for; Istio's expectation: the sidecar's stats filter (istio.stats) has
# requests_total, or there is no filter at all.
PROMETHEUS = [{"name": "prometheus"}]
DISABLED_ALL = [{"providers": PROMETHEUS, "overrides": [{"match": {"metric": "ALL_METRICS"}, "disabled": True}]}]
DISABLED_ALL_IMPLICIT = [{"providers": PROMETHEUS, "overrides": [{"disabled": True}]}]
EMPTY_PROMETHEUS = [{"providers": PROMETHEUS}]
REENABLE = [{"providers": PROMETHEUS, "overrides": [{"match": {"metric": "ALL_METRICS"}}]}]
OVERRIDES = [{"providers": PROMETHEUS, "overrides": [{"match": {"metric": "REQUEST_COUNT"}, "tagOverrides": {
    "remove": {"operation": "REMOVE"}, "add": {"operation": "UPSERT", "value": "bar"}}}]}]
ISTIO_CASES = {  # name: (root namespace's metrics, the pod namespace's metrics, requests_total reported)
    "empty": (None, None, True),
    "disabled-prometheus": (DISABLED_ALL, None, False),
    "disabled-prometheus-implicit": (DISABLED_ALL_IMPLICIT, None, False),
    "disabled-then-empty": (DISABLED_ALL, EMPTY_PROMETHEUS, False),
    "disabled-then-reenable": (DISABLED_ALL, REENABLE, True),
    "disabled-then-overrides": (DISABLED_ALL, OVERRIDES, True),
    "default prometheus": (EMPTY_PROMETHEUS, None, True),
    "prometheus overrides": (OVERRIDES, None, True),
}


def _off(objects: list[dict[str, Any]], pod_name: str = "test-0", mode: str = "SERVER") -> str | None:
    topo = build_topology(objects)
    pod = next(p for p in topo.pods if p.name == pod_name)
    off = metric_off(applicable_telemetries(pod, topo.telemetries, topo.mesh_root_namespace),
                            topo.mesh_metric_providers, topo.mesh_providers, mode)
    return None if off is None else off.removeprefix("Telemetry ").removesuffix(" disables it")


def test_istios_own_cases_of_which_metrics_a_sidecar_reports() -> None:
    pod = k8s_pod("test-0", "test", "10.0.0.1", namespace="default")
    for name, (root, namespace, reported) in ISTIO_CASES.items():
        objects = [pod]
        objects += [_telemetry("istio-system", "root", root)] if root is not None else []
        objects += [_telemetry("default", "ns", namespace)] if namespace is not None else []
        for mode in ("SERVER", "CLIENT"):  # the cases' outbound listener; their overrides name no mode
            assert (_off(objects, mode=mode) is None) == reported, (name, mode)


def test_the_api_references_examples(realworld: Path) -> None:
    """istio/api's own examples: server-side metrics off for the whole mesh (the client side untouched); a
    namespace's override that adds tags to every metric, client and server, puts its server side back."""
    mesh_default = yaml.safe_load((realworld / "api" / "telemetry-mesh-default-server-metrics-off.yaml").read_text())
    foo = yaml.safe_load((realworld / "api" / "telemetry-namespace-metrics.yaml").read_text())
    pods = [k8s_pod("test-0", "test", "10.0.0.1", namespace="foo"), k8s_pod("bar-0", "bar", "10.0.0.2", "bar")]
    assert _off([*pods, mesh_default]) == "istio-system/mesh-default"
    assert _off([*pods, mesh_default], mode="CLIENT") is None
    assert _off([*pods, mesh_default, foo]) is None  # its namespace's override re-enables the filter
    assert _off([*pods, mesh_default, foo], "bar-0") == "istio-system/mesh-default"  # another namespace: still off
    # the providers of the most specific level that names any are the configured ones
    otel_only = _telemetry("foo", "otel", [{"providers": [{"name": "opentelemetry"}]}])
    assert _off([*pods, otel_only]) == "foo/otel configures no Prometheus provider"
    # tag overrides: istio.io's "Customizing Istio Metrics with Telemetry API" removes grpc_response_status from
    # REQUEST_COUNT (harmless here), the api example adds request_method; one that removes or rewrites a label the
    # count is attributed by leaves it uncountable
    remove_tags = _telemetry("istio-system", "remove-tags", [{"providers": PROMETHEUS, "overrides": [
        {"match": {"mode": "CLIENT_AND_SERVER", "metric": "REQUEST_COUNT"},
         "tagOverrides": {"grpc_response_status": {"operation": "REMOVE"}}}]}])
    assert _off([*pods, remove_tags]) is None and _off([*pods, foo]) is None
    for op, verb in (({"operation": "REMOVE"}, "removes"), ({"value": "'x'"}, "rewrites")):
        label = _telemetry("foo", "t", [{"overrides": [{"tagOverrides": {"destination_service_name": op}}]}])
        assert _off([*pods, label]) == f"foo/t {verb} its destination_service_name label"
        assert _off([*pods, remove_tags, label], "bar-0") is None  # another namespace
    # istiod looks providers up by name in any case, and knows them by type
    assert _off([*pods, _telemetry("foo", "t", [{"providers": [{"name": "Prometheus"}]}])]) is None
    # a MeshConfig that sets defaultProviders without Prometheus: no metrics unless a resource names one; one without
    # defaultProviders is taken as the chart's (Prometheus)
    def meshconfig(mesh: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
                "data": {"mesh": yaml.safe_dump(mesh)}}
    logs_only = meshconfig({"defaultProviders": {"accessLogging": ["envoy"]}})
    assert _off([*pods, logs_only]) == ("the MeshConfig's defaultProviders.metrics (none) names no provider of "
                                        "Prometheus type, nor does any Telemetry resource")
    # a MeshConfig may define a provider named `prometheus` of another type: istiod then builds no stats filter,
    # with or without Telemetry resources
    from obsgap.topology import TopologyIndex
    renamed = meshconfig({"extensionProviders": [{"name": "prometheus", "opentelemetry": {"service": "otel",
                                                                                          "port": 4317}}]})
    topo = build_topology([*pods, renamed])
    assert TopologyIndex(topo).pod_request_metrics_off(topo.pods[0]) == (
        "the MeshConfig's defaultProviders.metrics (prometheus) names no provider of Prometheus type, nor does any "
        "Telemetry resource")
    assert _off([*pods, logs_only, _telemetry("foo", "t", EMPTY_PROMETHEUS)]) is None
    assert _off([*pods, meshconfig({"accessLogFile": "/dev/stdout"})]) is None
    # a selector matches the pod's labels with its node's topology, as istiod augments them
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "labels": {
        "topology.kubernetes.io/zone": "z1"}}}
    on_node = {**pods[0], "spec": {**pods[0]["spec"], "nodeName": "node-a"}}
    zonal = _telemetry("foo", "zonal", DISABLED_ALL, selector={"matchLabels": {"topology.kubernetes.io/zone": "z1"}})
    assert _off([on_node, node, zonal]) == "foo/zonal"
    # a selector that is no mapping is an unreadable resource, not a namespace-wide one
    odd = _telemetry("foo", "odd", DISABLED_ALL, selector="app=test")
    topo = build_topology([*pods, odd])
    assert not topo.telemetries and any(g.startswith("Telemetry foo/odd: unreadable") for g in topo.gaps)
    # a selector-less resource in the pod's namespace counts once: the oldest
    newer = _telemetry("foo", "newer", DISABLED_ALL, created="2026-06-01T00:00:00Z")
    older = _telemetry("foo", "older", EMPTY_PROMETHEUS, created="2026-02-01T00:00:00Z")
    assert _off([*pods, newer, older]) is None


def test_which_telemetry_resources_select_a_pod(realworld: Path) -> None:
    """Istio's analyzer input for Telemetry selectors: the two it reports as selecting no pod select none here,
    and the pairs it reports as conflicting (dupe-1/dupe-2 by the same selector, overlap-1/overlap-2 by labels of
    one pod) each select one pod, the same one."""
    objects = [o for o in yaml.safe_load_all(
        (realworld / "istio-analyzers" / "telemetry-selector.yaml").read_text()) if o]
    topo = build_topology(objects)
    selecting: dict[str, set[str]] = {f"{t.namespace}/{t.name}": set() for t in topo.telemetries if t.selector}
    for pod in topo.pods:
        for t in applicable_telemetries(pod, topo.telemetries, topo.mesh_root_namespace):
            if t.selector:
                selecting[f"{t.namespace}/{t.name}"].add(f"{pod.namespace}/{pod.name}")
    assert {name for name, pods in selecting.items() if not pods} == {"default/maps-to-nonexistent",
                                                                      "other/maps-to-different-ns"}
    assert selecting["default/dupe-1"] == selecting["default/dupe-2"] == {"default/reviews"}
    assert selecting["default/overlap-1"] == selecting["default/overlap-2"] == {"default/ratings"}
    assert selecting["default/maps-correctly-no-conflicts"] == {"default/productpage"}


def test_a_service_whose_server_metrics_a_telemetry_resource_turned_off_is_not_a_bypass(tmp_path: Path) -> None:
    """api's sidecars serve every request and report none (server side), as a Telemetry resource that selects its
    pods and disables REQUEST_COUNT for SERVER makes them; the callers' sidecars still report theirs. Without the
    resource in the topology that is a bypass (the metrics lost for no reason obsgap can see); with it, the mesh's
    side of api is not measured, says which resource, and api is not examined (an earlier finding is carried, not
    resolved). A real Prometheus serves the metrics."""
    from dataclasses import replace

    from obsgap.scenario.spec import ServiceSpec
    from tests.test_coverage import scenario

    base = scenario("telemetry-off", ServiceSpec("app", "api", metrics_loss=1.0))
    control = run_scenario(base, tmp_path / "control")
    assert ("envoy-bypass", "unexplained", "api") in control.triples()
    # read live where the service account may not list Telemetry resources: the same finding says one may explain it
    from obsgap import engine
    from obsgap.config import RunPlan
    from obsgap.model import Window
    from obsgap.sources.kube.live import LiveOptions
    from obsgap.sources.prometheus import PrometheusOptions
    from obsgap.testbed.promserver import serve_openmetrics
    from tests.kube_api import cluster_of_scenario, serving

    cluster = cluster_of_scenario(control.built.topology, control.built.logs)
    cluster.forbidden.add("/apis/telemetry.istio.io/v1/telemetries")
    server = serve_openmetrics(control.built.metrics, tmp_path / "live-prom")
    try:
        with serving(cluster, tmp_path) as kubeconfig:
            live = engine.run(RunPlan(window=Window(base.start, base.end), out_dir=tmp_path / "live",
                                      prometheus=PrometheusOptions(url=server.url),
                                      kube_live=LiveOptions(str(kubeconfig), "test"),
                                      logs=(str(control.built.logs),))).result
    finally:
        server.stop()
    (unexplained,) = [f for f in live.findings if (f.check, f.cause) == ("envoy-bypass", "unexplained")]
    assert "Telemetry resources could not be read in this run" in unexplained.detail

    off = _telemetry("app", "api-no-server-metrics", [{"providers": PROMETHEUS, "overrides": [
        {"match": {"metric": "REQUEST_COUNT", "mode": "SERVER"}, "disabled": True}]}],
        selector={"matchLabels": {"app": "api"}})
    run = run_scenario(replace(base, extra_objects=(off,)), tmp_path / "telemetry")
    assert not {t for t in run.triples() if t[2] == "api"}, run.triples()
    row = next(c for c in run.result.coverage if c.service == "api")
    assert row.mesh is None and row.ratio is None and row.observed == run.built.truth.server_requests["app/api"]
    assert (row.reason or "").endswith("cannot be counted for 2 of its 2 pods with a sidecar: Telemetry "
                                       "app/api-no-server-metrics disables it")
    examined = next(c.examined for c in run.result.checks if c.check == "envoy-bypass")
    assert examined is not None and not {"app/api", "outside:app/api"} & examined and "app/control" in examined
    assert unexamined(run.result) == []


def _limit(objects: list[dict[str, Any]], pod_name: str = "test-0") -> str | None:
    topo = build_topology(objects)
    pod = next(p for p in topo.pods if p.name == pod_name)
    limit = access_log_limit(applicable_telemetries(pod, topo.telemetries, topo.mesh_root_namespace),
                             topo.mesh_log_providers, topo.mesh_providers)
    return None if limit is None else limit.text()


def test_which_requests_a_sidecar_logs_as_the_server(realworld: Path) -> None:
    """Istio's access-log integration tests (each resource applied in the test's namespace, as they apply it) and
    what they expect of the server's sidecar; the analyzer input that turns the log on mesh-wide and off for
    namespace foo; providers as the MeshConfig defines them (istiod's fetchProvider and accessLogFile fallback)."""
    folder = realworld / "telemetry-integration"
    pods = [k8s_pod("test-0", "test", "10.0.0.1", namespace="echo"), k8s_pod("foo-0", "foo", "10.0.0.2", "foo")]

    def applied(name: str) -> dict[str, Any]:
        obj = yaml.safe_load((folder / f"accesslog-{name}.yaml").read_text())
        return {**obj, "metadata": {**obj["metadata"], "namespace": "echo"}}

    assert _limit(pods) is None  # no Telemetry resource: the MeshConfig's accessLogFile decides
    assert _limit([*pods, applied("filter")]) == "Telemetry echo/logs logs only requests matching " \
                                                 "`request.path == '/filter-test'`"
    # no rule for the server side: istiod falls back to the MeshConfig's accessLogFile (the integration tests' is
    # empty, so the server logs nothing there; not the resource's doing)
    assert _limit([*pods, applied("mode-client")]) is None
    assert _limit([*pods, applied("mode-server")]) is None
    assert _limit([*pods, applied("mode-clientserver")]) is None
    mesh = [o for o in yaml.safe_load_all((realworld / "istio-analyzers" / "telemetry-disable-provider.yaml")
                                          .read_text()) if o]
    assert _limit([*pods, *mesh]) is None
    assert _limit([*pods, *mesh], "foo-0") == "Telemetry foo/mesh-default turns the access log off"
    # a provider that writes elsewhere: the MeshConfig says which write to stdout
    mesh = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": yaml.safe_dump({"accessLogFile": "/dev/stdout", "extensionProviders": [
                {"name": "otel", "envoyOtelAls": {"service": "otel.observability.svc", "port": 4317}},
                {"name": "stderr-log", "envoyFileAccessLog": {"path": "/dev/stderr"}},
                {"name": "no-path", "envoyFileAccessLog": {}}]})}}
    otel = _telemetry("echo", "otel-logs", [], accessLogging=[{"providers": [{"name": "otel"}]}])
    assert _limit([*pods, mesh, otel]) == ("Telemetry echo/otel-logs sends the access log to other providers than "
                                           "stdout")
    for name in ("stderr-log", "no-path", "ENVOY"):  # kubelet keeps stderr too; no path is stdout; any case
        filtered = _telemetry("echo", "f", [], accessLogging=[{"providers": [{"name": name}],
                                                               "filter": {"expression": "response.code >= 500"}}])
        assert _limit([*pods, mesh, filtered]) == "Telemetry echo/f logs only requests matching " \
                                                  "`response.code >= 500`", name
    for name in ("stackdriver", "not-defined"):  # no access-log provider left: accessLogFile decides
        assert _limit([*pods, mesh, _telemetry("echo", "x", [], accessLogging=[
            {"providers": [{"name": name}], "disabled": True}])]) is None, name


def test_logs_a_telemetry_resource_filters_are_named_where_the_mesh_counts_more(tmp_path: Path,
                                                                                realworld: Path) -> None:
    """api's sidecar logs only some requests (Istio's filter test resource applied in api's namespace; the lines
    it would drop are dropped: every other one here), its callers are outside the mesh (no caller logs to prefer),
    while the mesh counts them all: metrics-exceed-logs names the
    resource and its expression, and its fix rewrites that resource's accessLogging. A real Prometheus."""
    import re
    from dataclasses import replace

    from obsgap.scenario.simulate import build
    from obsgap.scenario.spec import FlowSpec, ServiceSpec
    from tests.test_coverage import scenario

    obj = yaml.safe_load((realworld / "telemetry-integration" / "accesslog-filter.yaml").read_text())
    applied = {**obj, "metadata": {**obj["metadata"], "namespace": "app"}}
    flows = (FlowSpec("app/client", "app/control", 8080, 1.0), FlowSpec("external", "app/api", 8080, 1.0))
    spec = replace(scenario("filtered", ServiceSpec("app", "api", replicas=1, app_logs="none"), *flows),
                   gzip_rotated=False, extra_objects=(applied,))
    built = build(spec, tmp_path / spec.name)
    for log in (built.logs / "pods").glob("app_api-*/istio-proxy/*.log"):
        lines = log.read_text().splitlines(keepends=True)
        log.write_text("".join(ln for i, ln in enumerate(lines) if i % 2 == 0 or re.search(r"/healthz", ln)))
    run = run_scenario(spec, tmp_path, built=built)
    (f,) = run.findings("metrics-exceed-logs")
    assert (f.service, f.cause, f.evidence["telemetry"]) == ("api", "server-logs-incomplete", ["app/logs"])
    assert "Telemetry app/logs logs only requests matching `request.path == '/filter-test'` for 1 of its 1" in f.detail
    assert f.suggestion is not None and f.suggestion.config is not None
    fix = yaml.safe_load(f.suggestion.config)
    assert (fix["metadata"], fix["spec"]["accessLogging"]) == ({"name": "logs", "namespace": "app"},
                                                               [{"providers": [{"name": "envoy"}]}])


def test_a_server_log_that_undercounts_another_witness_names_the_resource_that_filters_it(realworld: Path) -> None:
    """api's own request metric counts 500 on each pod, its sidecars' logs 250: witness-undercounts names Istio's
    filter test resource (applied in api's namespace) as what limits those logs."""
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.checks.witness_undercounts import WitnessUndercounts
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence, LogEvidence, MetricsEvidence
    from obsgap.model import Window
    from obsgap.witness import WitnessCounts, WitnessFamily
    from tests.helpers import k8s_service

    obj = yaml.safe_load((realworld / "telemetry-integration" / "accesslog-filter.yaml").read_text())
    applied = {**obj, "metadata": {**obj["metadata"], "namespace": "shop"}}
    pods = ("api-0", "api-1")
    topo = build_topology([k8s_service("api"), *(k8s_pod(p, "api", f"10.0.0.{i}") for i, p in enumerate(pods)),
                           applied])
    family = WitnessFamily("http_server_requests", "http_server_requests_total", "app-metrics", port_label="port",
                           route_label="route")
    metric = WitnessCounts(family, pd.DataFrame([{"namespace": "shop", "pod": p, "port": 8080.0, "route": "/x",
                                                  "requests": 500.0, "errors": 0.0} for p in pods]))
    logs = LogEvidence(pd.DataFrame([{"namespace": "shop", "pod": p, "container": "istio-proxy", "origin": "envoy",
                                      "port": 8080, "http": True, "http_requests": 250, "requests": 250, "errors": 0,
                                      "first_ms": 0, "last_ms": 1} for p in pods]), pd.DataFrame(), pd.DataFrame())
    end = datetime(2026, 11, 24, tzinfo=UTC)
    ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings(), topo,
                  MetricsEvidence({}, witnesses=(metric,)), logs)
    _, (found,) = run_checks((WitnessUndercounts,), ev, analyze(ev))
    assert found.evidence["witness"] == "server-logs"
    assert found.detail.endswith("Telemetry shop/logs logs only requests matching `request.path == '/filter-test'` "
                                 "for 2 of its 2 sidecars.")


# --- waypoints ------------------------------------------------------------------------------------------------------

def _waypoint_levels(objects: list[dict[str, Any]], service: tuple[str, str],
                     waypoint: tuple[str, str] = ("default", "waypoint")) -> list[str]:
    topo = build_topology(objects)
    svc = next(s for s in topo.services if s.key == service)
    return [f"{t.namespace}/{t.name}" for t in waypoint_telemetries(waypoint, svc, topo.telemetries,
                                                                     topo.mesh_root_namespace)]


def test_which_telemetry_resources_configure_a_waypoint(realworld: Path) -> None:
    """Istio's own waypoint cases (TestTelemetryFilters, a waypoint `waypoint` of namespace default building one
    Service's chain): a resource whose targetRefs name a Service configures the waypoint for that Service only, and
    only from the Service's namespace; the Service's namespace-wide resource configures a waypoint of another
    namespace. Their overrides (REQUEST_COUNT with tags `remove` and `add`) leave the count as it was. Targeted
    resources never configure sidecars, and selectors never configure waypoints."""
    from tests.helpers import k8s_service

    services = [k8s_service("sample-svc", "default"), k8s_service("not-sample-svc", "default"),
                k8s_service("sample-svc", "other")]
    no_provider = [{"overrides": OVERRIDES[0]["overrides"]}]
    target_refs = _telemetry("default", "default", no_provider,
                             targetRefs=[{"group": "", "kind": "Service", "name": "sample-svc"}])
    other_duration = [{"overrides": [{"match": {"metric": "REQUEST_DURATION"}, "tagOverrides": {
        "removeOther": {"operation": "REMOVE"}, "add": {"operation": "UPSERT", "value": "otherBar"}}}]}]
    target_refs_other = _telemetry("other", "default", other_duration, targetRefs=[
        {"group": "", "kind": "Service", "namespace": "other", "name": "sample-svc"}])
    assert _waypoint_levels([*services, target_refs], ("default", "not-sample-svc")) == []  # mismatch wrong service
    assert _waypoint_levels([*services, target_refs], ("default", "sample-svc")) == ["default/default"]  # match
    assert _waypoint_levels([*services, target_refs, target_refs_other], ("other", "sample-svc")) == \
        ["other/default"]  # match cross namespace: the Service's namespace's resource, not the waypoint's
    wide = _telemetry("other", "default", OVERRIDES)
    assert _waypoint_levels([*services, wide], ("other", "sample-svc")) == ["other/default"]  # cross namespace wide
    topo = build_topology([*services, target_refs])
    svc = next(s for s in topo.services if s.key == ("default", "sample-svc"))
    levels = waypoint_telemetries(("default", "waypoint"), svc, topo.telemetries, topo.mesh_root_namespace)
    assert metric_off(levels, topo.mesh_metric_providers, topo.mesh_providers) is None
    # the same resource never reaches a sidecar; a selector never reaches a waypoint
    pod = k8s_pod("sample-0", "sample-svc", "10.0.0.1", namespace="default")
    assert _off([pod, target_refs], "sample-0") is None
    assert applicable_telemetries(build_topology([pod, target_refs]).pods[0], topo.telemetries, "istio-system") == []
    selected = _telemetry("default", "selected", DISABLED_ALL, selector={"matchLabels": {"app": "sample-svc"}})
    assert _waypoint_levels([*services, selected], ("default", "sample-svc")) == []
    assert _off([pod, selected], "sample-0") == "default/selected"


def test_what_turns_a_waypoints_metric_off(realworld: Path) -> None:
    """istio/api's mesh-wide "server metrics off" example reaches waypoints too (they count a Service's requests
    as the server side, reporter="waypoint"); a resource whose targetRef names the waypoint's Gateway configures it
    for the Services of its own namespace; Istio's ambient integration test's Service-targeted resource (group
    `core`: TestCustomizeMetrics, which expects the reporter="waypoint" series still there, with its custom tag)
    leaves the count as it is, and one that removes a label the count is attributed by does not."""
    from tests.helpers import k8s_service

    services = [k8s_service("service-addressed-waypoint", "default"), k8s_service("sample-svc", "other"),
                k8s_service("r", "istio-system")]
    mesh_default = yaml.safe_load((realworld / "api" / "telemetry-mesh-default-server-metrics-off.yaml").read_text())
    customize = yaml.safe_load((realworld / "ambient-integration" / "customize-metrics-telemetry.yaml").read_text())
    customize = {**customize, "metadata": {**customize["metadata"], "namespace": "default"}}

    def off(objects: list[dict[str, Any]], service: tuple[str, str] = ("default", "service-addressed-waypoint"),
            waypoint: tuple[str, str] = ("default", "waypoint")) -> str | None:
        topo = build_topology([*services, *objects])
        svc = next(s for s in topo.services if s.key == service)
        return metric_off(waypoint_telemetries(waypoint, svc, topo.telemetries, topo.mesh_root_namespace),
                                 topo.mesh_metric_providers, topo.mesh_providers)

    assert off([]) is None and off([customize]) is None
    assert _waypoint_levels([*services, customize], ("default", "service-addressed-waypoint")) == ["default/ns-default"]
    assert off([mesh_default]) == "Telemetry istio-system/mesh-default disables it"
    gateway_ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}
    by_gateway = _telemetry("default", "wp", DISABLED_ALL, targetRefs=[gateway_ref])
    assert off([by_gateway]) == "Telemetry default/wp disables it"
    assert off([by_gateway], waypoint=("default", "other-waypoint")) is None  # another waypoint
    # a waypoint serving a Service of another namespace: of the targeted resources, only those of the Service's
    # namespace are read, and a Gateway is attached only from the waypoint's own namespace
    assert off([by_gateway], service=("other", "sample-svc")) is None
    infra = ("infra", "waypoint")
    for where in ("other", "infra"):
        assert off([_telemetry(where, "wp", DISABLED_ALL, targetRefs=[gateway_ref])], ("other", "sample-svc"),
                   infra) is None
    # ... while the namespace-wide resources of the root, the waypoint's and the Service's namespaces apply, in
    # that order (the Service's namespace's re-enables what the waypoint's disabled)
    infra_off = _telemetry("infra", "wide", DISABLED_ALL)
    assert off([infra_off], ("other", "sample-svc"), infra) == "Telemetry infra/wide disables it"
    assert off([infra_off, _telemetry("other", "wide", REENABLE)], ("other", "sample-svc"), infra) is None
    # a Service of the root namespace reads the root's resource again last: the waypoint's namespace's re-enabling
    # resource does not win over it
    assert off([mesh_default, _telemetry("infra", "wide", REENABLE)], ("istio-system", "r"), infra) == \
        "Telemetry istio-system/mesh-default disables it"
    assert off([_telemetry("default", "wp", DISABLED_ALL, targetRefs=[{**gateway_ref, "namespace": "other"}])]) \
        is None  # istiod never attaches a policy across namespaces
    # the istio-waypoint GatewayClass is looked for among the resources of the Service's namespace (istiod's
    # applicableTelemetries at 86c9f01), so a root namespace's resource that names it reaches no Service elsewhere
    by_class = _telemetry("istio-system", "wp", DISABLED_ALL, targetRefs=[
        {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}])
    assert off([by_class]) is None
    assert off([by_class], ("istio-system", "r"), ("infra", "waypoint")) == "Telemetry istio-system/wp disables it"
    strip = {**customize, "spec": {**customize["spec"], "metrics": [{"overrides": [{"match": {
        "metric": "REQUEST_COUNT"}, "tagOverrides": {"destination_service_name": {"operation": "REMOVE"}}}]}]}}
    assert off([strip]) == "Telemetry default/ns-default removes its destination_service_name label"


def test_which_requests_a_waypoint_logs(realworld: Path) -> None:
    """Istio's access-log integration resource for a targetRef (the older single `targetRef`, rendered with the
    values accesslogs_test.go gives: a Gateway's name, logs disabled) turns the access log off for the waypoint it
    names, and for no sidecar."""
    template = (realworld / "telemetry-integration" / "accesslog-targetref.yaml").read_text()
    from tests.helpers import k8s_service

    for disabled, expected in (("true", "Telemetry default/logs turns the access log off"), ("false", None)):
        obj = yaml.safe_load(template.replace("{{ .TargetGatewayName }}", "waypoint")
                             .replace("{{ .DisableLogs }}", disabled))
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": "default"}}
        topo = build_topology([k8s_service("sample-svc", "default"), obj])
        (t,) = topo.telemetries
        assert t.targets == (PolicyTarget("gateway.networking.k8s.io", "Gateway", "waypoint"),)
        levels = waypoint_telemetries(("default", "waypoint"), topo.services[0], topo.telemetries, "istio-system")
        limit = access_log_limit(levels, topo.mesh_log_providers, topo.mesh_providers)
        assert (limit.text() if limit else None) == expected
        pod = k8s_pod("sample-0", "sample-svc", "10.0.0.1", namespace="default")
        assert _limit([pod, obj], "sample-0") is None


def test_a_service_whose_waypoint_a_telemetry_resource_keeps_from_counting_is_not_a_bypass(
        tmp_path: Path, realworld: Path, prometheus_available: None) -> None:
    """accounts is served by its own waypoint, which counts none of its requests (reporter="waypoint"), as a
    Telemetry resource targeting that waypoint's Gateway and disabling REQUEST_COUNT makes it; ledger's waypoint
    counts all of its. Without the resource that is a bypass of unknown cause; with it, accounts' mesh side is not
    measured (the coverage row says which resource, on which waypoint), and accounts is not examined; ledger still
    is. Then ledger's waypoint logs only its failed requests (ledger writes no logs of its own, and its callers
    are outside the mesh), as Istio's targetRef access-log resource filtering there makes it: metrics-exceed-logs
    names the resource on that waypoint, and its fix rewrites the resource with its targetRefs. One simulated
    ambient mesh in a real Prometheus, read three times."""
    import json
    import re
    import shutil
    from dataclasses import replace
    from datetime import UTC, datetime

    from obsgap.scenario.simulate import build
    from obsgap.scenario.spec import FlowSpec, ScenarioSpec, WaypointSpec
    from obsgap.scenario.spec import ServiceSpec as S
    from obsgap.testbed.promserver import serve_openmetrics

    spec = ScenarioSpec(
        "waypoint-telemetry", (("shop", True), ("bank", False)),
        (S("shop", "web"), S("bank", "accounts", use_waypoint="accounts-waypoint", metrics_loss=1.0),
         S("bank", "ledger", use_waypoint="bank-waypoint", app_logs="none"),
         S("bank", "audit", use_waypoint="audit-waypoint")),
        (FlowSpec("external", "shop/web", 8080, 1.0), FlowSpec("shop/web", "bank/accounts", 8080, 1.0),
         FlowSpec("external", "bank/ledger", 8080, 1.0), FlowSpec("shop/web", "bank/audit", 8080, 0.5)),
        end=datetime(2026, 11, 24, tzinfo=UTC), hours=0.25, ambient_namespaces=("bank",),
        waypoints=(WaypointSpec("bank", "bank-waypoint"), WaypointSpec("bank", "accounts-waypoint"),
                   WaypointSpec("bank", "audit-waypoint", scraped=False)),
        gzip_rotated=False)
    built = build(spec, tmp_path / "mesh")
    off = _telemetry("bank", "accounts-waypoint-metrics", [{"overrides": [
        {"match": {"metric": "REQUEST_COUNT", "mode": "SERVER"}, "disabled": True}]}],
        targetRefs=[{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "accounts-waypoint"}])
    snapshot = json.loads(built.topology.read_text())
    with_off = tmp_path / "with-telemetry.json"
    with_off.write_text(json.dumps({**snapshot, "items": [*snapshot["items"], off]}))
    server = serve_openmetrics(built.metrics, tmp_path / "mesh")
    filtered = yaml.safe_load((realworld / "telemetry-integration" / "accesslog-targetref.yaml").read_text()
                              .replace("{{ .TargetGatewayName }}", "bank-waypoint").replace("{{ .DisableLogs }}",
                                                                                          "false"))
    filtered["metadata"]["namespace"] = "bank"
    filtered["spec"]["accessLogging"][0]["filter"] = {"expression": "response.code >= 400"}
    with_filter = tmp_path / "with-filter.json"
    with_filter.write_text(json.dumps({**snapshot, "items": [*snapshot["items"], off, filtered]}))
    halved = tmp_path / "halved-logs"
    shutil.copytree(built.logs, halved)
    (waypoint_log,) = halved.glob("pods/bank_bank-waypoint-*/istio-proxy/*.log")
    lines = waypoint_log.read_text().splitlines(keepends=True)
    waypoint_log.write_text("".join(ln for ln in lines if re.search(r'HTTP/1.1" [45]\d\d ', ln)))
    try:
        control = run_scenario(spec, tmp_path / "control", built=built, server=server)
        run = run_scenario(spec, tmp_path / "telemetry", built=replace(built, topology=with_off), server=server)
        logged = run_scenario(spec, tmp_path / "filtered", built=replace(built, topology=with_filter, logs=halved),
                              server=server)
    finally:
        server.stop()
    (bypass,) = [f for f in control.findings("envoy-bypass") if f.service == "accounts"]
    assert bypass.cause == "unexplained" and bypass.detail.startswith("A waypoint serves bank/accounts, yet of ")
    # audit's waypoint counts its requests, but no target covers its pod while the sidecars' targets are up
    (unscraped,) = [f for f in control.findings("envoy-bypass") if f.service == "audit"]
    assert (unscraped.cause, unscraped.resource, unscraped.evidence["waypoint"]) == (
        "waypoint-not-scraped", "Gateway bank/audit-waypoint", "bank/audit-waypoint")
    assert unscraped.evidence["mesh_requests"] == 0 and unscraped.evidence["missed_requests"] == \
        built.truth.server_requests["bank/audit"] > 0
    assert "audit-waypoint-6d8f7b9c5-q2x7n has no scrape target on an Envoy metrics port" in unscraped.detail
    assert unscraped.evidence["pods_down"] == [] and unscraped.evidence["sidecar_jobs"]  # the jobs of targets up
    assert unscraped.suggestion is not None and "kind: PodMonitor" in (unscraped.suggestion.config or "")
    assert 'its metrics (reporter="waypoint") counted 0,' in bypass.detail
    assert {t for t in run.triples() if t[2] in ("accounts", "ledger")} == {
        ("envoy-bypass", "caller-outside-mesh", "ledger")}  # its callers: planted, and judged
    row = next(c for c in run.result.coverage if c.service == "accounts")
    assert row.mesh is None and row.ratio is None and row.observed == built.truth.server_requests["bank/accounts"]
    assert row.reason == ("mesh not measured: the request count of its waypoint bank/accounts-waypoint "
                          "(istio_requests_total, reporter=\"waypoint\") cannot be counted for it: Telemetry "
                          "bank/accounts-waypoint-metrics disables it")
    ledger = next(c for c in run.result.coverage if c.service == "ledger")
    assert ledger.ratio is not None and ledger.mesh == built.truth.mesh_waypoint_requests["bank/ledger"] > 0
    examined = next(c.examined for c in run.result.checks if c.check == "envoy-bypass")
    assert examined is not None and not {"bank/accounts", "outside:bank/accounts"} & examined
    assert {"bank/ledger", "outside:bank/ledger"} <= examined
    assert unexamined(run.result) == []
    (f,) = logged.findings("metrics-exceed-logs")
    assert (f.service, f.cause, f.evidence["telemetry"]) == ("ledger", "server-logs-incomplete", ["bank/logs"])
    assert f.detail.endswith(" Telemetry bank/logs logs only requests matching `response.code >= 400` for its "
                             "waypoint bank/bank-waypoint.")
    assert f.suggestion is not None and f.suggestion.config is not None
    fix = yaml.safe_load(f.suggestion.config)
    assert (fix["metadata"], fix["spec"]) == ({"name": "logs", "namespace": "bank"}, {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "bank-waypoint"}],
        "accessLogging": [{"providers": [{"name": "envoy"}]}]})


def test_how_targetrefs_are_read() -> None:
    """As istiod's GetTargetRefs: targetRefs, else the older targetRef; an empty group is `core`; a reference
    naming nothing still keeps the resource off the sidecars; a malformed list makes the resource unreadable, never
    namespace-wide. The fix that logs everything keeps the targets, core's group written `""`."""
    from obsgap.checks.metrics_exceed_logs import _log_everything

    gateway = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "new"}
    both = build_topology([_telemetry("shop", "t", [], targetRefs=[gateway], targetRef={"kind": "Service",
                                                                                      "name": "old"})])
    assert both.telemetries[0].targets == (PolicyTarget("gateway.networking.k8s.io", "Gateway", "new"),)
    older = build_topology([_telemetry("shop", "t", [], targetRefs=[], targetRef={"kind": "Service", "name": "a"})])
    assert older.telemetries[0].targets == (PolicyTarget("core", "Service", "a"),)
    empty = build_topology([_telemetry("shop", "t", [], targetRef={})]).telemetries[0]
    assert empty.targeted and not empty.namespace_wide
    for bad in ({"targetRefs": {"kind": "Gateway", "name": "x"}}, {"targetRefs": "x"}, {"targetRef": "x"}):
        topo = build_topology([_telemetry("shop", "t", DISABLED_ALL, **bad)])
        assert not topo.telemetries and any(g.startswith("Telemetry shop/t: unreadable") for g in topo.gaps), bad
    fix = yaml.safe_load(_log_everything("logs", "shop", {"app": "on"}, (PolicyTarget("core", "Service", "null"),)))
    assert fix["spec"] == {"targetRefs": [{"group": "", "kind": "Service", "name": "null"}],
                           "accessLogging": [{"providers": [{"name": "envoy"}]}]}
    assert yaml.safe_load(_log_everything("logs", "shop", {"app": "on"}))["spec"]["selector"] == {
        "matchLabels": {"app": "on"}}


def test_dashboards_that_read_a_side_telemetry_turns_off_are_named(tmp_path: Path) -> None:
    """A guide's mesh-wide "server metrics only" resource turns every client-side metric off: Istio's Mesh
    Dashboard (reporter=~"source|waypoint", no waypoint here) and its Workload Dashboard's outbound panels
    (reporter="source") can show nothing, and are named, counted by query; the Service Dashboard's $qrep (source or
    destination) still reads the server side, and is not. The latency queries `or` istio_request_duration_seconds,
    a name Istio's proxies no longer export: it adds nothing, and is not named. istio/api's mesh-wide "server
    metrics off" darkens the Service Dashboard's reporter="destination" queries instead; both sides off, no
    reporter is the fix. A reporter regex Python cannot compile (nested too deep, a count too large) is not judged
    and stops nothing. Not claimed: the
    resource on one workload's pods (the rest report); a namespace the run is not scoped to whose sidecars report;
    the TCP metrics where ztunnel (ambient pods) reports them; no resource at all."""
    import json
    from datetime import UTC, datetime, timedelta

    from obsgap import engine
    from obsgap.config import RunPlan
    from obsgap.model import Window
    from tests.helpers import k8s_service

    data = Path(__file__).resolve().parent / "data" / "istio"
    dashboards = tuple(data / "addons" / name for name in (
        "istio-mesh-dashboard.gen.json", "istio-service-dashboard.json", "istio-workload-dashboard.json"))
    server_only = yaml.safe_load((data / "guides" / "telemetry-server-metrics-only.yaml").read_text())
    server_off = yaml.safe_load((data / "api" / "telemetry-mesh-default-server-metrics-off.yaml").read_text())
    mesh = [{"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
            k8s_service("web"), k8s_pod("web-0", "web", "10.0.0.1"), k8s_service("api"),
            k8s_pod("api-0", "api", "10.0.0.2")]
    end = datetime(2026, 12, 7, tzinfo=UTC)

    hostile = tmp_path / "hostile.json"  # reporter regexes Python's re refuses: too deep, a count too large
    hostile.write_text(json.dumps({"title": "Hostile", "panels": [{"title": "p", "targets": [
        {"expr": 'sum(istio_requests_total{reporter=~"' + "(" * 2000 + "source" + ")" * 2000 + '"})'},
        {"expr": 'sum(istio_requests_total{reporter=~"s{99999999999}"})'}]}]}))

    def run(*extra: dict[str, Any], namespaces: tuple[str, ...] = (), expect: str = "ran") -> tuple[list[Any],
                                                                                                    str | None]:
        snapshot = tmp_path / f"topology-{len(list(tmp_path.iterdir()))}.json"
        snapshot.write_text(json.dumps({"kind": "List", "items": [*mesh, *extra]}))
        result = engine.run(RunPlan(window=Window(end - timedelta(hours=1), end), out_dir=tmp_path / snapshot.stem,
                                    kube_snapshots=(snapshot,), dashboards=(*dashboards, hostile),
                                    namespaces=namespaces)).result
        for check in ("dashboard-reads-disabled-metric", "dashboard-misses-waypoint"):
            assert next(c for c in result.checks if c.check == check).status == expect
        ran = next(c for c in result.checks if c.check == "dashboard-reads-disabled-metric")
        return [f for f in result.findings if f.check == "dashboard-reads-disabled-metric"], ran.status

    found, status = run(server_only)
    assert status == "ran"
    by = {f.evidence["dashboard"]: f for f in found}
    assert set(by) == {"Istio Mesh Dashboard", "Istio Workload Dashboard"}
    meshd, workload = by["Istio Mesh Dashboard"], by["Istio Workload Dashboard"]
    assert (meshd.cause, meshd.evidence["queries"], meshd.evidence["matchers"]) == (
        "client-side-off", 11, ['reporter=~"source|waypoint"'])  # 13 selectors in 11 queries
    assert (workload.cause, workload.evidence["queries"], workload.evidence["matchers"]) == (
        "client-side-off", 33, ['reporter="source"'])  # 36 selectors, 8 latency queries `or` the seconds name
    assert "istio_request_duration_seconds" not in workload.detail
    assert "istio_tcp_sent_bytes_total" in workload.detail
    assert meshd.evidence["reasons"] == ["Telemetry istio-system/server-metrics-only disables it", "no waypoint runs"]
    assert meshd.suggestion is not None and 'Select reporter=~"destination|waypoint"' in meshd.suggestion.text
    (service,) = run(server_off)[0]  # 57 reporter="destination" selectors, in 40 queries
    assert (service.evidence["dashboard"], service.cause, service.evidence["queries"]) == (
        "Istio Service Dashboard", "server-side-off", 40)
    both_off = {**server_only, "spec": {"metrics": [{"providers": [{"name": "prometheus"}], "overrides": [
        {"match": {"mode": "CLIENT_AND_SERVER"}, "disabled": True}]}]}}
    dark = {f.evidence["dashboard"]: f for f in run(both_off)[0]}
    assert dark["Istio Service Dashboard"].title.endswith("(both sides off)")
    assert dark["Istio Service Dashboard"].suggestion.text.startswith("Re-enable the metrics")
    one_workload = {**server_only, "metadata": {"name": "web-client-off", "namespace": "shop"},
                    "spec": {**server_only["spec"], "selector": {"matchLabels": {"app": "web"}}}}
    assert run(one_workload) == ([], "ran")
    assert run() == ([], "ran")
    # scoped to shop, whose sidecars a namespace resource keeps from reporting the client side: pay's still do
    shop_off = {**server_only, "metadata": {"name": "shop-client-off", "namespace": "shop"}}
    pay = [{"kind": "Namespace", "metadata": {"name": "pay", "labels": {"istio-injection": "enabled"}}},
           k8s_service("ledger", "pay"), k8s_pod("ledger-0", "ledger", "10.0.1.1", namespace="pay")]
    assert run(shop_off, *pay, namespaces=("shop",)) == ([], "ran")
    assert {f.evidence["dashboard"] for f in run(shop_off, namespaces=("shop",))[0]} == {
        "Istio Mesh Dashboard", "Istio Workload Dashboard"}
    # ztunnel reports istio_tcp_* both ways: with an ambient pod, only the request metrics are dark
    ambient = [{"kind": "Namespace", "metadata": {"name": "db", "labels": {"istio.io/dataplane-mode": "ambient"}}},
               k8s_pod("db-0", "db", "10.0.2.1", namespace="db", sidecar=False)]
    with_ztunnel = {f.evidence["dashboard"]: f for f in run(server_only, *ambient)[0]}
    assert "istio_tcp" not in with_ztunnel["Istio Workload Dashboard"].detail
    assert with_ztunnel["Istio Workload Dashboard"].evidence["queries"] < workload.evidence["queries"]
    # a Gateway API ingress gateway's pod takes a resource of its namespace whose targetRefs name its Gateway
    # (istiod's ShouldAttachPolicy): one that turns the request count's client side back on keeps it reporting
    gateway = [{"kind": "Namespace", "metadata": {"name": "gw"}},
               {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "ingress", "namespace": "gw"}, "spec": {"gatewayClassName": "istio",
                                                                           "listeners": []}},
               {"kind": "Pod", "metadata": {"name": "ingress-istio-5c7d-abcde", "namespace": "gw", "labels": {
                   "gateway.networking.k8s.io/gateway-name": "ingress"}}, "spec": {"containers": [
                       {"name": "istio-proxy", "ports": [{"containerPort": 80}]}]},
                "status": {"podIP": "10.0.9.1", "phase": "Running"}}]

    def client_count_on(gateway_name: str) -> dict[str, Any]:
        return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                "metadata": {"name": "ingress-client-count", "namespace": "gw"},
                "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                         "name": gateway_name}],
                         "metrics": [{"providers": [{"name": "prometheus"}], "overrides": [
                             {"match": {"metric": "REQUEST_COUNT", "mode": "CLIENT"}, "disabled": False}]}]}}

    def mesh_metrics(*extra: dict[str, Any]) -> list[str]:
        return next((f.evidence["metrics"] for f in run(server_only, *gateway, *extra)[0]
                     if f.evidence["dashboard"] == "Istio Mesh Dashboard"), [])

    assert "istio_requests_total" not in mesh_metrics(client_count_on("ingress"))
    assert "istio_requests_total" in mesh_metrics(client_count_on("another-gateway"))
    # a snapshot without pods: which proxies report what is unknown, so neither check judges (or resolves) anything
    mesh[:] = [o for o in mesh if o["kind"] != "Pod"]
    assert run(server_only, expect="skipped") == ([], "skipped")
