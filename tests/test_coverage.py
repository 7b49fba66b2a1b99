"""Traffic coverage end to end against a real Prometheus: each cause alone, all together, partial sources.

Every scenario has a healthy `control` service (called by FQDN, full sidecars) that must stay silent.
Assertions compare the exact set of findings, so both a missed gap and a false alarm fail.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from obsgap.scenario.demo import demo_spec
from obsgap.scenario.spec import FlowSpec, PortSpec, ScenarioSpec, ServiceSpec
from tests.helpers import Run, k8s_pod, k8s_service, run_scenario, sources_json, unexamined

pytestmark = pytest.mark.usefixtures("prometheus_available")


def scenario(name: str, target: ServiceSpec, *flows: FlowSpec, extra: tuple[ServiceSpec, ...] = (),
             namespaces: tuple[tuple[str, bool], ...] = (("app", True), ("legacy", False))) -> ScenarioSpec:
    base = (ServiceSpec("app", "client"), ServiceSpec("app", "control"))
    default_flows = (FlowSpec("app/client", "app/control", 8080, 1.0),
                     FlowSpec("app/client", target.key, target.ports[0].port, 1.0))
    return ScenarioSpec(name, namespaces, (*base, target, *extra), flows or default_flows, hours=0.5,
                        scrape_interval_s=15)


COVERAGE_CHECKS = {"envoy-bypass", "port-missing-from-metrics", "passthrough-traffic", "call-address-not-fqdn",
                   "metrics-exceed-logs"}


def check_exact(run: Run, expected: set[tuple[str, str | None, str | None]]) -> None:
    """The coverage checks' findings, exactly (topology checks have their own tests)."""
    got = {t for t in run.triples() if t[0] in COVERAGE_CHECKS}
    assert got == expected, f"missing {expected - got}, unexpected {got - expected}"


@pytest.mark.parametrize("style", ["flat", "ecs", "otel"])
def test_healthy_mesh_is_silent(tmp_path: Path, style: str) -> None:
    spec = scenario("healthy", ServiceSpec("app", "api", app_logs=style))
    spec = replace(spec, services=(ServiceSpec("app", "client", app_logs=style), *spec.services[1:]))
    run = run_scenario(spec, tmp_path)
    assert [f for f in run.findings() if f.check in COVERAGE_CHECKS] == []
    assert {f.check for f in run.findings()} <= {"namespace-not-injected"}  # the empty `legacy` namespace
    # kubelet probes reach the apps through pilot-agent: logged, never counted by Envoy, so left out and counted
    pods = sum(s.replicas for s in spec.services)
    assert abs(sources_json(run.result)["logs"]["agent_requests_excluded"] - pods * 1800 / 10) <= pods
    cov = {c.service: c for c in run.result.coverage}
    truth = run.built.truth
    for svc in ("control", "api"):
        assert cov[svc].observed == truth.server_requests[f"app/{svc}"]
        assert cov[svc].mesh == truth.mesh_destination_requests[f"app/{svc}"]
        assert cov[svc].ratio == 1.0


@pytest.mark.parametrize("name,target,cause,code", [
    ("inject-false", ServiceSpec("app", "api", inject="false"), "no-sidecar/inject-annotation", None),
    ("host-network", ServiceSpec("app", "api", host_network=True, replicas=1), "no-sidecar/host-network", None),
    ("ns-not-enabled", ServiceSpec("legacy", "api", app_logs="otel"), "no-sidecar/namespace-not-enabled",
     "IST0102"),
    ("proxy-missing", ServiceSpec("app", "api", proxy_missing=True), "no-sidecar/unknown", "IST0103"),
])
def test_pods_without_sidecar(tmp_path: Path, name: str, target: ServiceSpec, cause: str, code: str | None) -> None:
    run = run_scenario(scenario(name, target), tmp_path)
    check_exact(run, {("envoy-bypass", cause, "api")})
    f = run.findings()[0]
    truth = run.built.truth
    assert f.evidence["log_requests"] == truth.server_requests[target.key]
    assert f.evidence["mesh_requests"] == 0 and f.evidence["ratio"] == 0.0
    assert f.severity.value == "critical" and f.istio_code == code
    assert f.suggestion is not None and f.resource


def test_bypass_found_from_caller_metrics_without_logs(tmp_path: Path) -> None:
    spec = scenario("nologs", ServiceSpec("legacy", "api"))
    run = run_scenario(spec, tmp_path, logs=False)
    check_exact(run, {("envoy-bypass", "no-sidecar/namespace-not-enabled", "api")})
    f = run.findings()[0]
    assert f.evidence["observed_by"].startswith("caller sidecar metrics")
    assert f.evidence["log_requests"] == run.built.truth.mesh_source_requests["legacy/api"]


def test_one_pod_of_three_without_proxy(tmp_path: Path) -> None:
    run = run_scenario(scenario("one-pod", ServiceSpec("app", "api", replicas=3, pods_without_proxy=1)), tmp_path)
    check_exact(run, {("envoy-bypass", "no-sidecar/unknown", "api")})
    f = run.findings()[0]
    truth = run.built.truth
    assert f.evidence["pods_without_sidecar"] == [f.pod] and f.evidence["pods_total"] == 3
    missed = truth.server_requests["app/api"] - truth.mesh_destination_requests["app/api"]
    assert f.evidence["missed_requests"] == missed and f.severity.value == "warning"


def test_idle_pod_without_proxy_is_not_a_traffic_gap(tmp_path: Path) -> None:
    stray = ServiceSpec("app", "api-stray", replicas=1, proxy_missing=True, labels=(("app", "api"),))
    run = run_scenario(scenario("idle-pod", ServiceSpec("app", "api"), extra=(stray,)), tmp_path)
    assert run.triples("envoy-bypass") == set()
    assert ("sidecar-missing", "no-sidecar/unknown", "api-stray") in run.triples()


def test_unexplained_metric_loss_is_reported_with_numbers(tmp_path: Path) -> None:
    run = run_scenario(scenario("loss", ServiceSpec("app", "api", metrics_loss=0.3)), tmp_path)
    check_exact(run, {("envoy-bypass", "unexplained", "api")})
    f = run.findings()[0]
    truth = run.built.truth
    assert f.evidence["log_requests"] == truth.server_requests["app/api"]
    assert f.evidence["mesh_requests"] == truth.mesh_destination_requests["app/api"]
    assert 0.6 < f.evidence["ratio"] < 0.8 and f.severity.value == "warning"


def test_small_loss_within_tolerance_is_silent(tmp_path: Path) -> None:
    run = run_scenario(scenario("smallloss", ServiceSpec("app", "api", metrics_loss=0.01)), tmp_path)
    check_exact(run, set())


def test_callers_outside_the_mesh(tmp_path: Path) -> None:
    spec = scenario("outside", ServiceSpec("app", "api"), FlowSpec("app/client", "app/control", 8080, 1.0),
                    FlowSpec("external", "app/api", 8080, 1.0), FlowSpec("legacy/batch", "app/api", 8080, 1.0),
                    extra=(ServiceSpec("legacy", "batch"),))
    run = run_scenario(spec, tmp_path)
    check_exact(run, {("envoy-bypass", "caller-outside-mesh", "api")})
    f = run.findings()[0]
    assert f.evidence["unknown_source_requests"] == run.built.truth.unknown_source_requests["app/api"]
    assert "legacy/batch" in f.evidence["callers"]
    assert any("outside the cluster" in c for c in f.evidence["callers"])


def test_caller_excludes_outbound_port(tmp_path: Path) -> None:
    spec = scenario("outexcl", ServiceSpec("app", "api", ports=(PortSpec("http", 8081, 8081),)),
                    FlowSpec("app/client", "app/control", 8080, 1.0), FlowSpec("app/batch", "app/api", 8081, 1.0),
                    extra=(ServiceSpec("app", "batch", exclude_outbound_ports=(8081,)),))
    run = run_scenario(spec, tmp_path)
    keys = {t for t in run.triples() if t[0] in COVERAGE_CHECKS}
    assert ("envoy-bypass", "port-excluded", "api") in keys
    # the server still counts the calls, but cannot tell who made them
    assert keys <= {("envoy-bypass", "port-excluded", "api"), ("envoy-bypass", "caller-outside-mesh", "api")}


def test_http_on_tcp_named_port_and_real_tcp_port_stays_silent(tmp_path: Path) -> None:
    orders = ServiceSpec("app", "orders", ports=(PortSpec("tcp-api", 9000, 9000),))
    redis = ServiceSpec("app", "cache", ports=(PortSpec("tcp-redis", 6379, 6379),), app_logs="none")
    spec = scenario("tcp", orders, FlowSpec("app/client", "app/control", 8080, 1.0),
                    FlowSpec("app/client", "app/orders", 9000, 1.0), FlowSpec("app/client", "app/cache", 6379, 1.0),
                    extra=(redis,))
    run = run_scenario(spec, tmp_path)
    check_exact(run, {("port-missing-from-metrics", "port-treated-as-tcp", "orders")})
    f = run.findings()[0]
    assert f.port == 9000 and f.evidence["tcp_connections"] == run.built.truth.tcp_connections["app/orders"]
    assert f.suggestion and "http-api" in (f.suggestion.config or "") and "appProtocol: http" in f.suggestion.config


def test_app_protocol_wins_over_name(tmp_path: Path) -> None:
    orders = ServiceSpec("app", "orders", ports=(PortSpec("http-api", 9000, 9000, app_protocol="tcp"),))
    run = run_scenario(scenario("approto", orders), tmp_path)
    check_exact(run, {("port-missing-from-metrics", "port-treated-as-tcp", "orders")})
    assert "appProtocol" in run.findings()[0].detail


def test_inbound_port_excluded(tmp_path: Path) -> None:
    run = run_scenario(scenario("inexcl", ServiceSpec("app", "api", exclude_inbound_ports=(8080,))), tmp_path)
    check_exact(run, {("port-missing-from-metrics", "port-excluded", "api")})
    f = run.findings()[0]
    assert f.evidence["log_requests"] == run.built.truth.server_requests["app/api"]
    assert f.resource == "Deployment app/api" and f.evidence["annotation"] == "8080"


def test_undeclared_port(tmp_path: Path) -> None:
    target = ServiceSpec("app", "api", ports=(PortSpec("http", 8080, 8080),
                                              PortSpec("http-admin", 9090, 9090, declared=False)))
    spec = scenario("undeclared", target, FlowSpec("app/client", "app/control", 8080, 1.0),
                    FlowSpec("app/client", "app/api", 8080, 1.0),
                    FlowSpec("app/client", "app/api", 9090, 0.5, address="pod-ip"))
    run = run_scenario(spec, tmp_path)
    keys = run.triples("port-missing-from-metrics")
    assert keys == {("port-missing-from-metrics", "port-not-declared", "api")}
    f = run.findings("port-missing-from-metrics")[0]
    assert f.port == 9090 and f.evidence["inbound_passthrough_requests"] > 0
    # the same requests are also calls by pod IP and passthrough on the client side
    assert ("call-address-not-fqdn", "pod-ip", "api") in run.triples()


def test_metrics_port_not_scraped(tmp_path: Path) -> None:
    target = ServiceSpec("legacy", "ledger", metrics_port=9102, metrics_scraped=False, replicas=1)
    spec = scenario("notscraped", target, FlowSpec("app/client", "app/control", 8080, 1.0))
    run = run_scenario(spec, tmp_path)
    check_exact(run, {("port-missing-from-metrics", "metrics-port-not-scraped", "ledger")})
    assert run.findings("port-missing-from-metrics")[0].port == 9102


def test_sidecars_prometheus_never_scrapes_are_named_as_the_cause(tmp_path: Path) -> None:
    """Sidecars that count every request no job collects: namespace shop (api, inventory) is left out of the job's
    discovery, ledger's pods alone are left out where the namespace's other sidecars are scraped, search's pods
    carry the label Istio's envoy-stats PodMonitor skips. The requests are missing from the metrics: the cause is
    said (not "unexplained"), with the pods, the job that scrapes the other sidecars and the fix for each (Istio's
    own PodMonitor for a namespace left out); the pods' scrape-annotation finding is grouped under it. cart's pods
    have no `up` series either, but their own series are in Prometheus: collected, so its loss stays unexplained.
    A real Prometheus. Targets on sidecar ports of ztunnel alone, or a federation's, judge nothing."""
    import pandas as pd
    import yaml

    from obsgap.analysis.scraping import sidecar_target_rows, targets_of
    from obsgap.report.build import build_report

    flows = [FlowSpec("app/client", "app/control", 8080, 1.0)] + [
        FlowSpec("app/client", target, 8080, 1.0)
        for target in ("shop/api", "shop/inventory", "app/search", "app/ledger", "app/cart")]
    spec = scenario("unscraped", ServiceSpec("shop", "api", sidecar_scraped=False), *flows,
                    extra=(ServiceSpec("shop", "inventory", sidecar_scraped=False),
                           ServiceSpec("app", "search", sidecar_scraped=False,
                                       labels=(("istio-prometheus-ignore", "true"),)),
                           ServiceSpec("app", "ledger", sidecar_scraped=False),
                           ServiceSpec("app", "cart", metrics_scraped=False, metrics_loss=0.3)),
                    namespaces=(("app", True), ("shop", True)))
    spec = replace(spec, hours=0.25)
    slo = tmp_path / "api-slo.yml"  # Sloth's getting-started SLO, on api's request count
    slo.write_text((Path(__file__).resolve().parent / "data" / "slo" / "sloth-getting-started.yml").read_text()
                   .replace('service: "payments"', 'service: "api"')
                   .replace('http_request_duration_seconds_count{job="payments",code=~"(5..|429)"}',
                            'istio_requests_total{reporter="destination",destination_service_name="api",'
                            'response_code=~"(5..|429)"}')
                   .replace('http_request_duration_seconds_count{job="payments"}',
                            'istio_requests_total{reporter="destination",destination_service_name="api"}'))
    run = run_scenario(spec, tmp_path, slo_paths=(slo,))
    lost = ("api", "inventory", "search", "ledger")
    assert {(f.check, f.cause, f.service) for f in run.findings("slo-untrustworthy")} == {
        ("slo-untrustworthy", "selector-matches-nothing", "api")}
    check_exact(run, {("envoy-bypass", "sidecar-not-scraped", s) for s in lost}
                | {("port-missing-from-metrics", "metrics-port-not-scraped", s) for s in (*lost, "cart")}
                | {("envoy-bypass", "unexplained", "cart")})
    api, search, ledger = (next(f for f in run.findings("envoy-bypass") if f.service == s)
                           for s in ("api", "search", "ledger"))
    truth = run.built.truth
    assert api.evidence["observed_requests"] == truth.server_requests["shop/api"] and api.evidence["mesh_requests"] == 0
    assert api.evidence["unscraped_requests"] == api.evidence["observed_requests"]
    assert sorted(api.evidence["pods"]) == sorted(p["metadata"]["name"] for p in _pods(run, "api"))
    assert api.evidence["sidecar_jobs"] == ["kubernetes-pods"] and api.evidence["pods_down"] == []
    assert "have no scrape target on a sidecar metrics port" in api.detail
    assert "No sidecar of namespace shop is scraped" in api.detail and api.workload == "api"
    assert api.suggestion is not None and api.suggestion.config is not None
    assert yaml.safe_load(api.suggestion.config)["kind"] == "PodMonitor"
    assert "Other workloads' sidecars in namespace app are scraped" in ledger.detail
    assert ledger.suggestion is not None and ledger.suggestion.config is None
    assert "They carry the istio-prometheus-ignore label" in search.detail and search.suggestion is not None
    assert search.suggestion.config is None and "Remove the istio-prometheus-ignore label" in search.suggestion.text
    report = build_report(run.result)
    for f in (api, search, ledger):
        scrape = next(v for v in report.findings if v.finding.check == "port-missing-from-metrics"
                      and v.finding.workload == f.service)
        assert scrape.root == f.id
    assert next(v for v in report.findings if v.finding.check == "slo-untrustworthy").root == api.id
    assert unexamined(run.result) == []
    # targets on sidecar ports that are no application sidecar's prove nothing; a target without a pod label names
    # its pod by address, one with a pod label only that pod; a target never up is no scrape
    from obsgap.sources.kube.build import build_topology

    pods = build_topology([k8s_pod(n, "x", ip) for n, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2"),
                                                            ("c", "10.0.0.3"), ("d", "10.0.0.4"))]).pods
    columns = ["job", "namespace", "pod", "instance", "value"]

    def _targets(frame: pd.DataFrame, pods: Any) -> Any:
        return targets_of(sidecar_target_rows(frame, pods), pods)
    ztunnel = [("ztunnel", "istio-system", "ztunnel-x", "10.0.9.9:15020", 1.0)]
    assert not _targets(pd.DataFrame(ztunnel, columns=columns), pods).judged
    federated = [("federate", "", "", "prom:9090", 1.0)]
    assert not _targets(pd.DataFrame(federated, columns=columns), pods).judged
    rows = [("envoy-stats", "shop", "a", "10.0.0.1:15020", 1.0), ("envoy-stats", "shop", "b", "10.0.0.2:15090", 0.0),
            ("kubernetes-pods", "", "", "10.0.0.4:15020", 1.0), ("app", "shop", "c", "10.0.0.3:8080", 1.0),
            ("envoy-stats", "shop", "old-7", "10.0.0.3:15020", 0.0)]  # a deleted pod that had c's address
    targets = _targets(pd.DataFrame(rows, columns=columns), pods)
    assert targets.judged and targets.jobs == ("envoy-stats", "kubernetes-pods", )
    assert {p.name: targets.state(p) for p in pods} == {"a": "scraped", "b": "down", "c": "missing", "d": "scraped"}


def test_a_relabel_rule_that_drops_the_request_count_is_named_as_the_cause(tmp_path: Path) -> None:
    """The job that scrapes the sidecars drops istio_requests_total for namespace shop in its metric_relabel_configs
    (a cardinality cut gone wide): api's requests are counted by its sidecars and never stored. Prometheus's running
    configuration (a real Prometheus started with those rules; /api/v1/status/config) names the rule: the cause is
    said, with the rule as the fix's config. Before it, kube-prometheus-stack's cAdvisor rules and the Istio bucket
    cut read labels obsgap does not know, and are ruled out by the ones it does. A rule that decides on
    response_code (whose values vary) proves nothing for ledger: unexplained, naming the rule. The rules' semantics:
    tests/test_relabel.py."""
    import time

    import requests
    import yaml

    from obsgap.scenario.simulate import build
    from obsgap.testbed.promserver import serve_openmetrics
    from tests.test_relabel import rules_in_use

    in_use = rules_in_use()
    rules = [{"source_labels": ["__name__"], "regex": "istio_.*|envoy_cluster_upstream_rq_total|up", "action": "keep"},
             *in_use["kube-prometheus-stack/kubelet.serviceMonitor.cAdvisorMetricRelabelings"],
             *in_use["istio-cardinality-guide/metricRelabelings"],
             {"source_labels": ["__name__", "namespace"], "regex": "istio_requests_total;shop", "action": "drop"},
             {"source_labels": ["__name__", "destination_service_name", "response_code"],
              "regex": "istio_requests_total;ledger;2..", "action": "drop"}]
    spec = scenario("relabelled", ServiceSpec("shop", "api", metrics_loss=1.0),
                    FlowSpec("app/client", "app/control", 8080, 1.0), FlowSpec("app/client", "shop/api", 8080, 1.0),
                    FlowSpec("app/client", "app/ledger", 8080, 1.0),
                    extra=(ServiceSpec("app", "ledger", metrics_loss=1.0),), namespaces=(("app", True), ("shop", True)))
    spec = replace(spec, hours=0.25)
    built = build(spec, tmp_path / spec.name)
    # named as the Prometheus Operator names a PodMonitor's scrape config, whose targets' job label it sets apart:
    # the targets API ties the two together
    pool = "podMonitor/istio-system/envoy-stats-monitor/0"
    server = serve_openmetrics(built.metrics, tmp_path / spec.name, scrape_configs=(
        {"job_name": pool, "static_configs": [{"targets": ["127.0.0.1:9"]}],
         "relabel_configs": [{"target_label": "job", "replacement": "kubernetes-pods"}],
         "metric_relabel_configs": rules},))
    try:
        for _ in range(100):  # static targets are discovered within moments of the start
            active = requests.get(f"{server.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            if active:
                break
            time.sleep(0.1)
        assert [(t["scrapePool"], t["labels"]["job"]) for t in active] == [(pool, "kubernetes-pods")]
        run = run_scenario(spec, tmp_path, built=built, server=server)
    finally:
        server.stop()
    check_exact(run, {("envoy-bypass", "metric-relabel-drops", "api"), ("envoy-bypass", "unexplained", "ledger")})
    (api,) = [f for f in run.findings("envoy-bypass") if f.service == "api"]
    assert (api.evidence["job"], api.evidence["rule"], api.evidence["mesh_requests"]) == ("kubernetes-pods", 11, 0)
    assert "rule 11 of the job's metric_relabel_configs drops the series" in api.detail
    assert api.suggestion is not None and api.suggestion.config is not None
    assert yaml.safe_load(api.suggestion.config)[0]["regex"] == "istio_requests_total;shop"
    (ledger,) = [f for f in run.findings("envoy-bypass") if f.service == "ledger"]
    assert ledger.detail.endswith("Rule 12 of job kubernetes-pods's metric_relabel_configs may drop some of them: "
                                  "it reads response_code, whose values vary.")
    assert sources_json(run.result)["prometheus"]["config_api"] is True
    # this Prometheus loaded its configuration when it started, after the backfilled window: /api/v1/status/runtimeinfo
    loaded = datetime.fromisoformat(sources_json(run.result)["prometheus"]["config_loaded_at"])
    assert run.result.window.end < loaded <= datetime.now(UTC)
    assert api.evidence["config_loaded_at"] == loaded.isoformat()
    assert f"configuration says (loaded {loaded:%Y-%m-%d %H:%M} UTC, after the window began: before then it may " \
        "have differed)." in api.detail
    assert unexamined(run.result) == []


def test_a_relabel_cause_says_whether_the_configuration_held_through_the_window() -> None:
    """The configuration is the window's where it was loaded before the window began; after, or unknown, it may
    not be."""
    from obsgap.checks.envoy_bypass import _config_in_force
    from obsgap.model import Window

    window = Window(datetime(2026, 12, 6, 0, 0, tzinfo=UTC), datetime(2026, 12, 7, 0, 0, tzinfo=UTC))
    assert _config_in_force(datetime(2026, 12, 1, 9, 30, tzinfo=UTC), window) == \
        "loaded 2026-12-01 09:30 UTC, before the window began: in force throughout it"
    assert _config_in_force(datetime(2026, 12, 6, 13, 5, tzinfo=UTC), window) == \
        "loaded 2026-12-06 13:05 UTC, after the window began: before then it may have differed"
    assert _config_in_force(None, window) == "today's: the window's may have differed"
    from obsgap.sources.prometheus import loaded_at

    assert loaded_at("2026-12-07T05:45:00.123456789+01:00") == datetime(2026, 12, 7, 4, 45, 0, 123456, tzinfo=UTC)
    for odd in ("0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:30:00-05:00", "2026-12-07",
                "2026-12-07T04:45:00", "garbage", 1733550000, None, ["2026-12-07T04:45:00Z"]):
        assert loaded_at(odd) is None, odd


def _pods(run: Run, service: str) -> list[dict[str, Any]]:
    import json

    items = json.loads(run.built.topology.read_text())["items"]
    return [o for o in items if o["kind"] == "Pod" and o["metadata"]["labels"].get("app") == service]


def test_addresses_pod_ip_short_name_wrong_namespace(tmp_path: Path) -> None:
    spec = ScenarioSpec(
        "addr", (("app", True), ("web", True)),
        (ServiceSpec("app", "client"), ServiceSpec("app", "control"), ServiceSpec("app", "api"),
         ServiceSpec("web", "site")),
        (FlowSpec("app/client", "app/control", 8080, 1.0),
         FlowSpec("app/client", "app/api", 8080, 0.6),
         FlowSpec("app/client", "app/api", 8080, 0.4, address="pod-ip"),
         FlowSpec("app/client", "app/api", 8080, 0.5, address="short-name"),
         FlowSpec("web/site", "app/api", 8080, 0.3, address="wrong-namespace"),
         FlowSpec("web/site", "app/control", 8080, 0.5, address="namespace-qualified")),
        hours=0.5, scrape_interval_s=15)
    run = run_scenario(spec, tmp_path)
    check_exact(run, {("call-address-not-fqdn", "pod-ip", "api"), ("call-address-not-fqdn", "short-name", "api"),
                      ("call-address-not-fqdn", "wrong-namespace", "api"), ("passthrough-traffic", None, "api")})
    by_cause = {f.cause: f for f in run.findings("call-address-not-fqdn")}
    assert by_cause["wrong-namespace"].severity.value == "critical"
    assert by_cause["pod-ip"].evidence["caller"] == "app/client"
    assert by_cause["pod-ip"].evidence["share"] == pytest.approx(0.4 / 1.5, abs=0.03)
    passthrough = run.findings("passthrough-traffic")[0]
    assert passthrough.evidence["requests"] == run.built.truth.passthrough_requests["app/api"]


@pytest.fixture(scope="module")
def demo_built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from obsgap.scenario.simulate import build
    from obsgap.testbed.promserver import serve_openmetrics

    tmp = tmp_path_factory.mktemp("demo")
    spec = demo_spec(datetime(2026, 11, 24, tzinfo=UTC), hours=1.0)
    built = build(spec, tmp / "demo")
    server = serve_openmetrics(built.metrics, tmp / "demo")
    yield spec, built, server, tmp
    server.stop()


DEMO_EXPECTED = {
    ("envoy-bypass", "no-sidecar/inject-annotation", "recommend"),
    ("envoy-bypass", "no-sidecar/namespace-not-enabled", "billing"),
    ("envoy-bypass", "no-sidecar/host-network", "node-agent"),
    ("envoy-bypass", "caller-outside-mesh", "frontend"),
    ("port-missing-from-metrics", "port-treated-as-tcp", "orders"),
    ("port-missing-from-metrics", "port-excluded", "inventory"),
    ("port-missing-from-metrics", "port-not-declared", "search"),
    ("port-missing-from-metrics", "metrics-port-not-scraped", "ledger"),
    ("passthrough-traffic", None, "payments"),
    ("passthrough-traffic", None, "search"),
    ("call-address-not-fqdn", "pod-ip", "payments"),
    ("call-address-not-fqdn", "pod-ip", "search"),
    ("call-address-not-fqdn", "wrong-namespace", "catalog"),
}


def test_all_causes_together(demo_built) -> None:  # type: ignore[no-untyped-def]
    spec, built, server, tmp = demo_built
    run = run_scenario(spec, tmp, server=server, built=built)
    assert {k for k in run.triples() if k[0] in {c for c, _, _ in DEMO_EXPECTED}} == DEMO_EXPECTED
    assert not any(f.service == "catalog" and f.check in COVERAGE_CHECKS - {"call-address-not-fqdn"}
                   for f in run.findings())
    cov = {c.service: c for c in run.result.coverage}
    assert cov["catalog"].ratio == 1.0 and cov["recommend"].ratio == 0.0
    ran = {c.check: c for c in run.result.checks}
    assert ran.pop("slo-untrustworthy").reason.startswith("no SLOs given")  # this run names no SLO files
    assert all(c.status == "ran" for c in ran.values())
    # checkout logs local time as UTC: found, retimed, and its coverage is still exact
    assert {c["path"].split("/")[-2] for c in sources_json(run.result)["logs"]["clock_skew"]} == {"checkout"}
    assert cov["checkout"].observed == built.truth.server_requests["shop/checkout"]
    assert unexamined(run.result) == []  # every finding's keys are among what its check examined


def test_demo_without_logs_keeps_metric_findings(demo_built) -> None:  # type: ignore[no-untyped-def]
    spec, built, server, tmp = demo_built
    run = run_scenario(spec, tmp, server=server, built=built, logs=False)
    keys = run.triples()
    for k in [("envoy-bypass", "no-sidecar/inject-annotation", "recommend"),
              ("envoy-bypass", "no-sidecar/namespace-not-enabled", "billing"),
              ("passthrough-traffic", None, "payments"),
              ("port-missing-from-metrics", "metrics-port-not-scraped", "ledger")]:
        assert k in keys
    # HTTP-on-TCP needs log evidence of HTTP: without logs obsgap must not guess
    assert ("port-missing-from-metrics", "port-treated-as-tcp", "orders") not in keys
    status = {c.check: c.status for c in run.result.checks}
    assert status["call-address-not-fqdn"] == "skipped"
    assert unexamined(run.result) == []


def test_demo_without_metrics(demo_built) -> None:  # type: ignore[no-untyped-def]
    spec, built, server, tmp = demo_built
    run = run_scenario(spec, tmp, server=server, built=built, metrics=False)
    status = {c.check: (c.status, c.reason) for c in run.result.checks}
    assert status["envoy-bypass"][0] == "skipped" and "--prometheus-url" in status["envoy-bypass"][1]
    keys = run.triples()
    assert ("port-missing-from-metrics", "port-treated-as-tcp", "orders") in keys
    assert ("port-missing-from-metrics", "port-excluded", "inventory") in keys
    assert ("call-address-not-fqdn", "wrong-namespace", "catalog") in keys


def test_scoping_to_one_namespace(demo_built) -> None:  # type: ignore[no-untyped-def]
    spec, built, server, tmp = demo_built
    from obsgap import engine
    from obsgap.config import RunPlan
    from obsgap.model import Window
    from obsgap.sources.prometheus import PrometheusOptions

    plan = RunPlan(window=Window(spec.start, spec.end), out_dir=tmp / "scoped", namespaces=("legacy",),
                   prometheus=PrometheusOptions(url=server.url), kube_snapshots=(built.topology,),
                   logs=(str(built.logs),))
    result = engine.run(plan).result
    assert {f.namespace for f in result.findings} == {"legacy"}
    assert {c.namespace for c in result.coverage} == {"legacy"}
    # every namespace alone gives exactly the full run's findings there: callers from other namespaces are still
    # named by their workload (not split per pod), and nothing outside the scope is judged
    full = engine.run(replace(plan, namespaces=())).result
    for ns in sorted({f.namespace for f in full.findings if f.namespace}):
        alone = engine.run(replace(plan, namespaces=(ns,))).result
        want = {(f.id, f.title) for f in full.findings if f.namespace == ns}
        got = {(f.id, f.title) for f in alone.findings}
        assert got == want, (ns, got ^ want)


def test_window_outside_the_data_finds_nothing(demo_built) -> None:  # type: ignore[no-untyped-def]
    spec, built, server, tmp = demo_built
    later = replace(spec, end=spec.end.replace(year=2027))
    run = run_scenario(later, tmp, server=server, built=built)
    assert [f for f in run.findings() if f.check in COVERAGE_CHECKS - {"port-missing-from-metrics"}] == []
    assert sources_json(run.result)["logs"]["out_of_window"] == sources_json(run.result)["logs"]["parsed"]


def test_counter_reset_mid_window_is_not_a_gap(tmp_path: Path) -> None:
    run = run_scenario(scenario("reset", ServiceSpec("app", "api", restart_at=0.5)), tmp_path)
    check_exact(run, set())
    cov = {c.service: c for c in run.result.coverage}
    truth = run.built.truth.server_requests["app/api"]
    # increase() handles the reset; only the requests of the restart's own scrape interval can be lost
    assert truth * 0.97 <= cov["api"].mesh <= truth


def test_pods_behind_two_services_are_not_a_gap(tmp_path: Path) -> None:
    # a StatefulSet's client Service and its headless Service select the same pods; callers use both
    db = ServiceSpec("app", "db", also_selected_by=("db-headless",))
    spec = scenario("two-services", db, FlowSpec("app/client", "app/control", 8080, 1.0),
                    FlowSpec("app/client", "app/db", 8080, 1.0), FlowSpec("app/client", "app/db", 8080, 1.0,
                                                                           via="db-headless"))
    run = run_scenario(spec, tmp_path)
    check_exact(run, set())


def test_ambient_pods_behind_two_services_are_counted_where_ztunnel_counts_them(tmp_path: Path) -> None:
    """ztunnel counts a connection under the Service the caller dialled (the clusterIP's Service, sent as
    `Forwarded: host=`; else a guess among the pod's Services on that port) and names it in its log line
    (`dst.service`): the logs are attributed to that Service, not to the first one that selects the pod."""
    db = ServiceSpec("app", "db", ambient=True, also_selected_by=("db-headless",))
    spec = scenario("two-services-ambient", db, FlowSpec("app/client", "app/control", 8080, 1.0),
                    FlowSpec("app/client", "app/db", 8080, 1.0),
                    FlowSpec("app/client", "app/db", 8080, 0.5, via="db-headless"))
    run = run_scenario(spec, tmp_path)
    check_exact(run, set())
    cov = {c.service: c for c in run.result.coverage}
    assert cov["db"].observed == cov["db"].tcp_connections > 0
    assert cov["db-headless"].observed == cov["db-headless"].tcp_connections > 0
    assert cov["db"].observed + cov["db-headless"].observed == run.built.truth.tcp_connections["app/db"]


def test_ambient_service_without_waypoint_is_not_an_http_gap(tmp_path: Path) -> None:
    run = run_scenario(scenario("ambient", ServiceSpec("app", "api", ambient=True)), tmp_path)
    check_exact(run, set())
    cov = {c.service: c for c in run.result.coverage}
    assert cov["api"].tcp_connections == run.built.truth.tcp_connections["app/api"] > 0
    without_logs = run_scenario(scenario("ambient2", ServiceSpec("app", "api", ambient=True)), tmp_path, logs=False)
    check_exact(without_logs, set())


def test_an_app_logging_local_time_is_timed_by_the_node_not_a_gap(tmp_path: Path) -> None:
    """Clock skew: api's own timestamps an hour behind. Its requests are timed by kubelet's clock, the files are
    reported, and coverage is exactly what it is without the skew."""
    spec = scenario("skew", ServiceSpec("app", "api", app_clock_offset_s=-3600))
    run = run_scenario(spec, tmp_path)
    check_exact(run, set())
    logs = sources_json(run.result)["logs"]
    assert {c["path"].split("/")[-2] for c in logs["clock_skew"]} == {"api"}
    assert {c["offset_seconds"] for c in logs["clock_skew"]} == {-3600.0}
    # every api line on the node's clock: its requests, and its kubelet probes (one per pod every 10 s)
    replicas = spec.service("app/api").replicas
    probes = replicas * spec.hours * 3600 / 10
    assert abs(logs["retimed"] - (run.built.truth.server_requests["app/api"] + probes)) <= replicas
    cov = {c.service: c for c in run.result.coverage}
    assert cov["api"].observed == run.built.truth.server_requests["app/api"]
    assert cov["api"].ratio == 1.0


# --- like with like (issue 11, section 6): evidence for only some pods or callers ------------------------------

def _drop_logs_of(built, prefix: str, keep: int = 0) -> list[str]:  # type: ignore[no-untyped-def]
    """Delete the log folders of the pods whose folder starts with `prefix`, keeping the first `keep`."""
    import shutil

    folders = sorted(p for p in (built.logs / "pods").iterdir() if p.name.startswith(prefix))
    for folder in folders[keep:]:
        shutil.rmtree(folder)
    return [f.name for f in folders[:keep]]


def test_logs_of_some_pods_are_compared_with_those_pods_only(tmp_path: Path) -> None:
    from obsgap.scenario.simulate import build

    # callers from outside the mesh (an ingress without a sidecar): only the server's logs tell
    spec = scenario("some-pods", ServiceSpec("app", "api", replicas=3),
                    FlowSpec("app/client", "app/control", 8080, 1.0), FlowSpec("external", "app/api", 8080, 1.0))
    built = build(spec, tmp_path / spec.name)
    kept = _drop_logs_of(built, "app_api-", keep=1)
    run = run_scenario(spec, tmp_path, built=built)
    check_exact(run, {("envoy-bypass", "caller-outside-mesh", "api")})
    api = next(c for c in run.result.coverage if c.service == "api")
    assert len(kept) == 1 and api.comparable and api.basis == "logs of 1 of 3 pods"
    assert api.ratio == pytest.approx(1.0, abs=0.03)  # was 300 %: one pod's logs against the whole service
    assert api.observed == pytest.approx(run.built.truth.server_requests["app/api"] / 3, rel=0.2)


def test_caller_logs_are_compared_with_what_the_mesh_counted_from_those_callers(tmp_path: Path) -> None:
    from obsgap.scenario.simulate import build

    # the callers have no sidecar (legacy is not injected): no reporter="source" metrics, only their own logs
    target = ServiceSpec("app", "api", app_logs="none", envoy_access_logs=False)
    spec = scenario("some-callers", target, FlowSpec("app/client", "app/control", 8080, 1.0),
                    FlowSpec("legacy/batch", "app/api", 8080, 1.0), FlowSpec("legacy/other", "app/api", 8080, 2.0),
                    extra=(ServiceSpec("legacy", "batch"), ServiceSpec("legacy", "other")))
    built = build(spec, tmp_path / spec.name)
    _drop_logs_of(built, "legacy_other-")
    run = run_scenario(spec, tmp_path, built=built)
    check_exact(run, {("envoy-bypass", "caller-outside-mesh", "api")})
    api = next(c for c in run.result.coverage if c.service == "api")
    assert api.witness == "caller-logs" and api.comparable
    assert api.ratio == pytest.approx(1.0, abs=0.05)  # the mesh also counted `other`'s calls: not compared now
    assert api.mesh < run.built.truth.mesh_destination_requests["app/api"] / 2


def test_metrics_counting_more_than_the_logs_is_a_finding(tmp_path: Path) -> None:
    """Access logs sampled 1 in 2 (e.g. a Telemetry access-log filter): the mesh counts twice what the logs hold."""
    import re

    from obsgap.scenario.simulate import build

    flows = (FlowSpec("app/client", "app/control", 8080, 1.0), FlowSpec("external", "app/api", 8080, 1.0))
    spec = replace(scenario("sampled", ServiceSpec("app", "api", replicas=1), *flows), gzip_rotated=False)
    built = build(spec, tmp_path / spec.name)
    for log in (built.logs / "pods").glob("app_api-*/*/*.log"):
        lines = log.read_text().splitlines(keepends=True)
        kept = [ln for i, ln in enumerate(lines) if i % 2 == 0 or re.search(r'"path": ?"/healthz"', ln)]
        log.write_text("".join(kept))
    run = run_scenario(spec, tmp_path, built=built)
    check_exact(run, {("metrics-exceed-logs", "server-logs-incomplete", "api"),
                      ("envoy-bypass", "caller-outside-mesh", "api")})
    (f,) = run.findings("metrics-exceed-logs")
    assert f.evidence["ratio"] == pytest.approx(2.0, rel=0.1) and f.evidence["basis"] == "server logs"
    assert f.evidence["mesh_requests"] == pytest.approx(run.built.truth.mesh_destination_requests["app/api"], rel=0.02)


def test_the_fix_text_and_its_yaml_say_the_same(tmp_path: Path) -> None:
    import yaml

    run = run_scenario(scenario("inject-fix", ServiceSpec("app", "api", inject="false")), tmp_path)
    (f,) = [f for f in run.findings("envoy-bypass") if f.cause == "no-sidecar/inject-annotation"]
    assert f.suggestion is not None and f.suggestion.config
    meta = yaml.safe_load(f.suggestion.config)["spec"]["template"]["metadata"]
    (where,) = meta
    assert meta[where] == {"sidecar.istio.io/inject": "true"}
    assert 'change sidecar.istio.io/inject from "false" to "true"' in f.suggestion.text
    assert f"one of its {where}" in f.suggestion.text  # the label or annotation the pod really carries


# --- a mesh that logs in its own accessLogFormat (issue 12) ------------------------------------------------------

CUSTOM_FORMAT = ('[%START_TIME%] %REQ(:AUTHORITY)% "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
                 "%RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION%ms cluster=%UPSTREAM_CLUSTER% up=%UPSTREAM_HOST% "
                 "local=%DOWNSTREAM_LOCAL_ADDRESS% peer=%DOWNSTREAM_REMOTE_ADDRESS% trace=%REQ(X-B3-TRACEID)%\n")


def _mesh_configmap(fmt: str) -> dict:  # type: ignore[type-arg]
    import yaml

    mesh = {"accessLogFile": "/dev/stdout", "accessLogEncoding": "TEXT", "accessLogFormat": fmt,
            "defaultConfig": {"discoveryAddress": "istiod.istio-system.svc:15012"}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": yaml.safe_dump(mesh)}}


def test_sidecars_logging_in_the_mesh_format_are_read_by_it(tmp_path: Path) -> None:
    """The snapshot's `istio` ConfigMap names the format the sidecars log in; a bypass is found through it."""
    from obsgap.scenario.simulate import build

    base = scenario("custom-format", ServiceSpec("app", "api", pods_without_proxy=0, metrics_loss=0.4,
                                                 app_logs="none"))
    spec = replace(base, access_log_format=CUSTOM_FORMAT, extra_objects=(_mesh_configmap(CUSTOM_FORMAT),))
    built = build(spec, tmp_path / spec.name)
    sample = next((built.logs / "pods").glob("app_api-*/istio-proxy/0.log")).read_text().splitlines()[0]
    assert " cluster=inbound|8080|| " in sample and " local=" in sample  # the sidecars really log in it
    run = run_scenario(spec, tmp_path, built=built)
    check_exact(run, {("envoy-bypass", "unexplained", "api")})
    logs = sources_json(run.result)["logs"]
    assert logs["unparsed"] == 0
    used = logs["access_log_formats"]["formats"]
    assert set(used) == {"ConfigMap istio-system/istio accessLogFormat"}, used
    api = next(c for c in run.result.coverage if c.service == "api")
    assert api.observed == run.built.truth.server_requests["app/api"]
    # without the ConfigMap the same lines are not read: the format really came from it
    plain = run_scenario(replace(spec, extra_objects=()), tmp_path, built=build(
        replace(spec, name="custom-format-2", extra_objects=()), tmp_path / "custom-format-2"))
    assert sources_json(plain.result)["logs"]["unparsed"] > 0


def test_a_passthrough_share_needs_the_services_own_count() -> None:
    """Calls by pod IP counted as PassthroughCluster are given as a share of all the service's calls, which needs
    its callers' count of the service (mesh_requests); where that query failed, the finding gives the requests
    alone, not "100 %"."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.passthrough import PassthroughTraffic
    from obsgap.evidence import CheckSettings, Evidence, MetricsEvidence
    from obsgap.model import Window
    from obsgap.sources.kube.build import build_topology

    topo = build_topology([
        {"kind": "Service", "metadata": {"name": "api", "namespace": "app"},
         "spec": {"selector": {"app": "api"}, "ports": [{"port": 8080}]}},
        {"kind": "Pod", "metadata": {"name": "api-0", "namespace": "app", "labels": {"app": "api"}},
         "spec": {"containers": [{"name": "api"}]}, "status": {"podIP": "10.0.0.5", "phase": "Running"}}])
    passthrough = pd.DataFrame([{"reporter": "source", "destination_service": "10.0.0.5:8080",
                                 "destination_service_name": "PassthroughCluster", "source_workload": "client",
                                 "source_workload_namespace": "app", "value": 250.0}])
    by_name = pd.DataFrame([{"reporter": r, "destination_service_namespace": "app", "destination_service_name": "api",
                             "value": v} for r, v in (("source", 750.0), ("destination", 990.0))])
    end = datetime(2026, 11, 24, tzinfo=UTC)
    titles = {}
    for label, metrics in (
            ("measured", MetricsEvidence({"passthrough_requests": passthrough, "mesh_requests": by_name})),
            ("failed", MetricsEvidence({"passthrough_requests": passthrough},
                                       failed={"mesh_requests": "query mesh_requests: timeout"}))):
        ev = Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(), topo, metrics)
        (finding,) = PassthroughTraffic.run(CheckInputs(ev, analyze(ev)))
        titles[label] = (finding.title, finding.severity.value)
    assert titles["measured"] == ("api: 25.0% of its callers' requests are counted as PassthroughCluster", "warning")
    assert titles["failed"] == ("api: 250 of its callers' requests are counted as PassthroughCluster", "warning")
    # without a topology the pod IP is neither a pod nor an external host, and nothing is judged (so resolved)
    ev = Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(), None,
                  MetricsEvidence({"passthrough_requests": passthrough, "mesh_requests": by_name}))
    inputs = CheckInputs(ev, analyze(ev))
    assert [f.title for f in PassthroughTraffic.run(inputs)] == ["250 requests to 10.0.0.5 pass through undeclared"]
    assert PassthroughTraffic.examined(inputs) == frozenset()


def _mesh_row(reporter: str, pod: str, value: float) -> dict[str, object]:
    from obsgap.analysis.reconcile import REQ_COLS

    row: dict[str, object] = {c: "" for c in REQ_COLS}
    row.update(reporter=reporter, destination_service_name="api", destination_service_namespace="shop",
               source_workload="web", source_workload_namespace="shop", destination_workload="api",
               destination_workload_namespace="shop", namespace="shop", pod=pod, destination_port="8080",
               destination_service="api.shop.svc.cluster.local", value=value)
    return row


def _half_dark_mesh():  # type: ignore[no-untyped-def]
    """Service shop/api on two pods, api-b without a sidecar (injection switched off); its callers' sidecars counted
    2,000 requests, the server side 1,000 (api-a): (topology, mesh_requests rows, window)."""
    import pandas as pd

    from obsgap.model import Window
    from obsgap.sources.kube.build import build_topology

    topo = build_topology([
        {"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
        k8s_service("api"), k8s_pod("api-a", "api", "10.0.0.1"),
        k8s_pod("api-b", "api", "10.0.0.2", sidecar=False, annotations={"sidecar.istio.io/inject": "false"})])
    mesh = pd.DataFrame([_mesh_row("destination", "api-a", 1000.0), _mesh_row("source", "", 2000.0)])
    end = datetime(2026, 11, 24, tzinfo=UTC)
    return topo, mesh, Window(end - pd.Timedelta(hours=1), end)


def test_a_bypass_share_needs_both_sides() -> None:
    """One of two pods has no sidecar and no log tells what it served: the callers' sidecars (2,000) against the
    server side (1,000) give the share. Where the mesh's TCP query failed, the comparison has no mesh side: no
    share can be told, and the service is not examined (it said 100%)."""
    from obsgap.analysis import analyze
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.envoy_bypass import EnvoyBypass
    from obsgap.evidence import CheckSettings, Evidence, MetricsEvidence

    topo, mesh, window = _half_dark_mesh()
    seen = {}
    for label, failed in (("measured", {}), ("tcp failed", {"mesh_tcp_connections": "query: timeout"})):
        ev = Evidence(window, CheckSettings(), topo, MetricsEvidence({"mesh_requests": mesh}, failed=failed))
        inputs = CheckInputs(ev, analyze(ev), frozenset(EnvoyBypass.queries))
        seen[label] = ([f.title for f in EnvoyBypass.run(inputs)], sorted(EnvoyBypass.examined(inputs)))
    assert seen["measured"] == (["api: 50.0% of requests bypass Envoy (inject-annotation)"],
                                ["outside:shop/api", "shop/api"])
    assert seen["tcp failed"] == ([], [])


def test_a_bypass_is_told_when_only_the_sidecar_pods_logs_were_read() -> None:
    """The same mesh with the logs of the pod with a sidecar only (1,000 requests, as the mesh counted): the logs
    show no bypass, the callers' sidecars (2,000) do. The service was examined, so saying nothing called it clean."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.envoy_bypass import EnvoyBypass
    from obsgap.evidence import CheckSettings, Evidence, LogEvidence, MetricsEvidence

    topo, mesh, window = _half_dark_mesh()

    def served(*pods: tuple[str, str, str, int]) -> LogEvidence:
        rows = [{"namespace": "shop", "pod": p, "container": c, "origin": o, "port": 8080, "http": True,
                 "http_requests": n, "requests": n, "errors": 0, "first_ms": 0, "last_ms": 1} for p, c, o, n in pods]
        return LogEvidence(pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame())

    seen = {}
    for label, logs in (("both", served(("api-a", "istio-proxy", "envoy", 1000), ("api-b", "api", "app", 1000))),
                        ("sidecar pod only", served(("api-a", "istio-proxy", "envoy", 1000))),
                        ("callers agree", served(("api-a", "istio-proxy", "envoy", 1990)))):
        callers = mesh if label != "callers agree" else mesh.assign(value=[1990.0, 2000.0])
        ev = Evidence(window, CheckSettings(), topo, MetricsEvidence({"mesh_requests": callers}), logs)
        inputs = CheckInputs(ev, analyze(ev), frozenset(EnvoyBypass.queries))
        seen[label] = [(f.title, f.evidence["missed_requests"]) for f in EnvoyBypass.run(inputs)]
        assert sorted(EnvoyBypass.examined(inputs)) == ["outside:shop/api", "shop/api"]
    assert seen["both"] == [("api: 50.0% of requests bypass Envoy (inject-annotation)", 1000)]
    assert seen["sidecar pod only"] == seen["both"]
    assert seen["callers agree"] == []  # 10 of 2,000 is within the scrape-edge tolerance


def test_failed_sniffing_is_judged_only_where_the_mesh_was_measured() -> None:
    """Port `web` names no protocol, so Istio sniffs it; the logs show HTTP on it and the mesh counted TCP
    connections only: sniffing failed. Where mesh_requests failed, that cannot be told (it read as 0 and the
    finding was made anyway), and an earlier finding is not resolved: its key is the service's, examined only
    where its mesh counts were measured. A port named `tcp-web` is judged on its name alone, and with the mesh
    unmeasured its ratio is unknown, not 0."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.analysis.reconcile import REQ_COLS
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.port_missing import PortMissingFromMetrics
    from obsgap.evidence import CheckSettings, Evidence, LogEvidence, MetricsEvidence
    from obsgap.model import Window
    from obsgap.render.json_out import finding_dict
    from obsgap.sources.kube.build import build_topology

    row: dict[str, object] = {c: "" for c in REQ_COLS}
    row.update(reporter="destination", destination_service_name="api", destination_service_namespace="shop",
               value=40.0)
    logs = LogEvidence(pd.DataFrame([{"namespace": "shop", "pod": "api-0", "container": "istio-proxy",
                                      "origin": "envoy", "port": 8080, "http": True, "http_requests": 500,
                                      "requests": 500, "errors": 0, "first_ms": 0, "last_ms": 1}]),
                       pd.DataFrame(), pd.DataFrame())
    end = datetime(2026, 11, 24, tzinfo=UTC)

    def judged(port_name: str, failed: dict[str, str]):  # type: ignore[no-untyped-def]
        topo = build_topology([
            {"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
            {"kind": "Service", "metadata": {"name": "api", "namespace": "shop"},
             "spec": {"selector": {"app": "api"}, "ports": [{"name": port_name, "port": 80, "targetPort": 8080}]}},
            {"kind": "Pod", "metadata": {"name": "api-0", "namespace": "shop", "labels": {"app": "api"}},
             "spec": {"containers": [{"name": "api", "ports": [{"containerPort": 8080}]}, {"name": "istio-proxy"}]},
             "status": {"podIP": "10.0.0.1", "phase": "Running"}}])
        ev = Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(), topo,
                      MetricsEvidence({"mesh_tcp_connections": pd.DataFrame([row])}, failed=failed), logs)
        inputs = CheckInputs(ev, analyze(ev), frozenset(PortMissingFromMetrics.queries))
        found = [finding_dict(f) for f in PortMissingFromMetrics.run(inputs)]
        return [(f["title"], f["keys"], f["evidence"]["ratio"]) for f in found], \
            sorted(PortMissingFromMetrics.examined(inputs))

    timeout = {"mesh_requests": "query mesh_requests: timeout"}
    assert judged("web", {}) == ([("api:80 carries HTTP that Istio proxies as TCP", ["sniff:shop/api"], 0.0)],
                                 ["port:shop/api", "sniff:shop/api", "undeclared-mesh:shop", "undeclared:shop"])
    assert judged("web", timeout) == ([], ["port:shop/api"])
    assert judged("tcp-web", timeout) == ([("api:80 carries HTTP that Istio proxies as TCP", ["port:shop/api"], None)],
                                          ["port:shop/api"])


def test_a_port_finding_is_resolved_only_by_its_services_own_logs() -> None:
    """orders names its port tcp-api and serves HTTP on it; pay's pods exclude their port from the sidecar. A night
    when only api's logs were read (theirs were not) judges neither: both findings are carried as not re-checked
    (they were keyed by the namespace, which api's logs examined, and called resolved). A night with their logs and
    the config fixed resolves both."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.analysis.reconcile import REQ_COLS
    from obsgap.checks.port_missing import PortMissingFromMetrics
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence, LogEvidence, MetricsEvidence
    from obsgap.history import History, compare, past_findings
    from obsgap.model import Window
    from obsgap.render.json_out import finding_dict
    from obsgap.sources.kube.build import build_topology

    def topology(orders_port: str, pay_annotations: dict[str, str]):  # type: ignore[no-untyped-def]
        return build_topology([
            {"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
            k8s_service("orders", port=9000, target_port=9000, port_name=orders_port),
            k8s_service("api", port=8080), k8s_service("pay", port=8080),
            k8s_pod("orders-0", "orders", "10.0.0.1", port=9000), k8s_pod("api-0", "api", "10.0.0.2"),
            k8s_pod("pay-0", "pay", "10.0.0.3", annotations=pay_annotations)])

    def logs(*rows: tuple[str, str, str, int, int]) -> LogEvidence:
        return LogEvidence(pd.DataFrame([{"namespace": "shop", "pod": p, "container": c, "origin": o, "port": port,
                                          "http": True, "http_requests": n, "requests": n, "errors": 0,
                                          "first_ms": 0, "last_ms": 1} for p, c, o, port, n in rows]),
                           pd.DataFrame(), pd.DataFrame())

    row: dict[str, object] = {c: "" for c in REQ_COLS}
    row.update(reporter="destination", destination_service_name="api", destination_service_namespace="shop",
               pod="api-0", value=500.0)
    metrics = MetricsEvidence({"mesh_requests": pd.DataFrame([row])})
    end = datetime(2026, 11, 24, tzinfo=UTC)
    window = Window(end - pd.Timedelta(hours=1), end)

    def night(topo, evidence_logs: LogEvidence):  # type: ignore[no-untyped-def]
        ev = Evidence(window, CheckSettings(), topo, metrics, evidence_logs)
        return run_checks((PortMissingFromMetrics,), ev, analyze(ev))

    everyone = logs(("orders-0", "orders", "app", 9000, 400), ("api-0", "istio-proxy", "envoy", 8080, 500),
                    ("pay-0", "pay", "app", 8080, 300))
    _, found = night(topology("tcp-api", {"traffic.sidecar.istio.io/excludeInboundPorts": "8080"}), everyone)
    assert sorted(f.cause for f in found) == ["port-excluded", "port-treated-as-tcp"]
    history = History("yesterday", past_findings({"findings": [finding_dict(f) for f in found]}))
    runs, tonight = night(topology("tcp-api", {"traffic.sidecar.istio.io/excludeInboundPorts": "8080"}),
                          logs(("api-0", "istio-proxy", "envoy", 8080, 500)))
    carried = compare(history, [f.id for f in tonight], runs)
    assert tonight == () and carried.resolved == ()
    assert {p.reason for p in carried.not_rechecked} == {"its evidence was not measured in this run"}
    assert len(carried.not_rechecked) == 2
    runs, fixed = night(topology("http-api", {}), everyone)
    assert fixed == () and len(compare(history, [], runs).resolved) == 2


def test_each_bypass_finding_is_rechecked_on_its_own_evidence() -> None:
    """web's pods exclude port 5432 from their sidecar and its logs show calls to pay on it; api's callers are
    outside the mesh (950 of 960 requests labelled source_workload="unknown"). A night without logs judges no call of
    web's (that finding is carried, not 'resolved' by web's examined service), and still says api's callers are
    outside the mesh: the mesh's labels alone show it (it was skipped with the witness below the threshold)."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.checks.envoy_bypass import EnvoyBypass
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence, LogEvidence, MetricsEvidence
    from obsgap.history import History, compare, past_findings
    from obsgap.model import Window
    from obsgap.render.json_out import finding_dict
    from obsgap.sources.kube.build import build_topology

    topo = build_topology([
        {"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
        k8s_service("web", port=8080), k8s_service("pay", port=5432, target_port=5432, port_name="tcp-pg"),
        k8s_service("api", port=8080),
        k8s_pod("web-0", "web", "10.0.0.1", annotations={"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"}),
        k8s_pod("pay-0", "pay", "10.0.0.2", port=5432), k8s_pod("api-0", "api", "10.0.0.3")])
    rows = [_mesh_row("destination", "api-0", 950.0) | {"source_workload": "unknown",
                                                        "source_workload_namespace": "unknown"},
            _mesh_row("destination", "api-0", 10.0), _mesh_row("source", "", 10.0)]
    metrics = MetricsEvidence({"mesh_requests": pd.DataFrame(rows)})
    logs = LogEvidence(
        pd.DataFrame([{"namespace": "shop", "pod": "api-0", "container": "istio-proxy", "origin": "envoy",
                       "port": 8080, "http": True, "http_requests": 960, "requests": 960, "errors": 0,
                       "first_ms": 0, "last_ms": 1}]),
        pd.DataFrame([{"namespace": "shop", "pod": "web-0", "origin": "app",
                       "authority": "pay.shop.svc.cluster.local:5432", "port": 5432, "upstream_cluster": "",
                       "upstream_host": "", "requests": 200}]), pd.DataFrame())
    end = datetime(2026, 11, 24, tzinfo=UTC)

    def night(evidence_logs: LogEvidence | None):  # type: ignore[no-untyped-def]
        ev = Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(), topo, metrics, evidence_logs)
        return run_checks((EnvoyBypass,), ev, analyze(ev))

    _, found = night(logs)
    assert sorted((f.cause, tuple(finding_dict(f)["keys"])) for f in found) == [
        ("caller-outside-mesh", ("outside:shop/api",)), ("port-excluded", ("caller:shop/web-0->shop/pay",))]
    history = History("yesterday", past_findings({"findings": [finding_dict(f) for f in found]}))
    runs, tonight = night(None)
    assert [f.cause for f in tonight] == ["caller-outside-mesh"]
    outcome = compare(history, [f.id for f in tonight], runs)
    assert outcome.resolved == () and [p.title for p in outcome.not_rechecked] == [
        "web-0 skips its sidecar when calling pay:5432"]
    # with no witness at all (no logs, no caller's sidecar), the requests observed are unknown, not 0
    ev = Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(), topo,
                  MetricsEvidence({"mesh_requests": pd.DataFrame(rows[:2])}), None)
    (outside,) = run_checks((EnvoyBypass,), ev, analyze(ev))[1]
    assert {k: outside.evidence[k] for k in ("observed_requests", "witness", "mesh_requests")} == {
        "observed_requests": None, "witness": None, "mesh_requests": 960}


def test_a_callers_address_and_a_logs_shortfall_are_rechecked_on_their_own_logs() -> None:
    """web (namespace front) calls catalog by a name that resolves in the wrong namespace; api's own logs show 400
    of the 1,000 requests the mesh counted for it. A night with neither web's nor api's own logs, but with api's
    FQDN calls to catalog and web's calls to api, judges neither: both are carried (another caller's calls, and the
    callers' logs, 'resolved' them)."""
    import pandas as pd

    from obsgap.analysis.reconcile import REQ_COLS
    from obsgap.checks.call_address import CallAddressNotFqdn
    from obsgap.checks.metrics_exceed_logs import MetricsExceedLogs
    from obsgap.evidence import CheckSettings, Evidence, LogEvidence, MetricsEvidence
    from obsgap.model import Window
    from obsgap.sources.kube.build import build_topology
    from tests.helpers import two_nights

    topo = build_topology([k8s_service("catalog"), k8s_pod("catalog-0", "catalog", "10.0.0.1"),
                           k8s_service("api"), k8s_pod("api-0", "api", "10.0.0.3"),
                           k8s_service("web", "front"), k8s_pod("web-0", "web", "10.0.0.2", "front")])

    def calls(*rows: tuple[str, str, str, int]) -> pd.DataFrame:
        return pd.DataFrame([{"namespace": ns, "pod": p, "origin": "app", "authority": a, "port": 80,
                              "upstream_cluster": "", "upstream_host": "", "requests": n} for ns, p, a, n in rows])

    def mesh_row(source: str, value: float) -> dict[str, object]:
        row: dict[str, object] = {c: "" for c in REQ_COLS}
        row.update(reporter="destination", destination_service_name="api", destination_service_namespace="shop",
                   source_workload=source, source_workload_namespace="front" if source == "web-0" else "shop",
                   pod="api-0", value=value)
        return row

    metrics = MetricsEvidence({"mesh_requests": pd.DataFrame([mesh_row("web-0", 300.0), mesh_row("batch", 700.0)])})
    web = ("front", "web-0", "catalog:80", 300)
    web_to_api = ("front", "web-0", "api.shop.svc.cluster.local:80", 300)
    api = ("shop", "api-0", "catalog.shop.svc.cluster.local:80", 300)
    served = pd.DataFrame([{"namespace": "shop", "pod": "api-0", "container": "api", "origin": "app", "port": 8080,
                            "http": True, "http_requests": 400, "requests": 400, "errors": 0, "first_ms": 0,
                            "last_ms": 1}])
    end = datetime(2026, 11, 24, tzinfo=UTC)

    def night(inbound: pd.DataFrame, outbound: pd.DataFrame) -> Evidence:
        return Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(), topo, metrics,
                        LogEvidence(inbound, outbound, pd.DataFrame()))

    yesterday = night(served, calls(web, web_to_api, api))
    tonight = night(pd.DataFrame(), calls(web_to_api, api))
    before, after, outcome = two_nights(CallAddressNotFqdn, yesterday, night(pd.DataFrame(), calls(api)))
    assert before == ["web-0 calls catalog by wrong namespace (100.0% of its calls)"] and after == []
    assert outcome.resolved == () and len(outcome.not_rechecked) == 1
    before, after, outcome = two_nights(MetricsExceedLogs, yesterday, tonight)
    assert before == ["api: the mesh counted 60.0% more requests than its server logs show"] and after == []
    assert outcome.resolved == () and len(outcome.not_rechecked) == 1


def test_a_call_to_a_service_outside_the_scope_is_judged_as_in_the_whole_cluster() -> None:
    """web (shop) calls catalog.z-other by its FQDN, and shop has a catalog of its own. Under `-n shop` the name
    still resolves (to a Service outside the scope, judged nowhere): it was called a wrong-namespace call to shop's
    catalog, critical."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.call_address import CallAddressNotFqdn
    from obsgap.evidence import CheckSettings, Evidence, LogEvidence
    from obsgap.model import Window
    from obsgap.sources.kube.build import build_topology
    from obsgap.sources.kube.source import scope_topology

    topo = build_topology([
        k8s_service("catalog", port=8080), k8s_pod("catalog-0", "catalog", "10.0.0.2"),
        k8s_service("web", port=8080), k8s_pod("web-0", "web", "10.0.0.1"),
        k8s_service("catalog", "z-other", 9090, 9090), k8s_pod("catalog-0", "catalog", "10.0.0.3", "z-other", 9090)])
    calls = pd.DataFrame([{"namespace": "shop", "pod": "web-0", "origin": "app", "port": 9090,
                           "authority": "catalog.z-other.svc.cluster.local:9090", "upstream_cluster": "",
                           "upstream_host": "", "requests": 500}])
    end = datetime(2026, 11, 24, tzinfo=UTC)
    for scope in ((), ("shop",)):
        ev = Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(namespaces=scope),
                      scope_topology(topo, scope), None, LogEvidence(pd.DataFrame(), calls, pd.DataFrame()))
        assert CallAddressNotFqdn.run(CheckInputs(ev, analyze(ev))) == [], scope
