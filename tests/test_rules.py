"""The alerting and recording rules Prometheus evaluates (/api/v1/rules) judged as dashboards' queries are: Istio's
own stability-test alerts (istio/tools) loaded into a real Prometheus, on a mesh whose client side a published
guide's Telemetry turns off, and on a sidecar mesh shaped as that test's service graph."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsgap import engine
from obsgap.config import RunPlan
from obsgap.model import Window
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.prometheus import PrometheusOptions, PrometheusSource
from obsgap.testbed.promserver import PrometheusServer
from tests.helpers import k8s_pod, k8s_service, operator_rule_file, run_scenario, sources_json, unexamined

DATA = Path(__file__).resolve().parent / "data" / "istio"
STABILITY = DATA / "tools" / "stability-prometheusrule.yaml"
STABILITY_2020 = DATA / "tools" / "stability-prometheusrule-2020-10.yaml"
SLO_DATA = Path(__file__).resolve().parent / "data" / "slo"


def test_the_rules_api_gives_every_rule_with_its_group_and_file(tmp_path: Path, prometheus_available: None) -> None:
    """Each rule once, as Prometheus prints its query (double quotes, one line), named by kind."""
    rules = operator_rule_file(STABILITY, tmp_path / "rules.yml")
    (tmp_path / "tsdb").mkdir()
    with PrometheusServer(tmp_path / "tsdb", rule_files=(rules,)) as server:
        read = PrometheusSource(PrometheusOptions(url=server.url)).rules()
    assert read is not None and len(read.queries) == 24
    by_name = {q.panel: q for q in read.queries}
    ((file, recorded),) = read.recorded  # the recording rules, with their labels, as a rule file holds them
    assert file == str(rules) and sum(len(g["rules"]) for g in recorded["groups"]) == 8
    missing = by_name["alert IngressTrafficMissing"]
    assert (missing.dashboard, missing.rule_file) == ("./basic.rules", str(rules))
    assert missing.expr.startswith('absent(istio_requests_total{destination_service_namespace=~"service-graph.*",')
    assert by_name["record workload:istio_requests_total"].expr == \
        "sum without (instance, namespace, pod) (istio_requests_total)"


def test_a_rule_file_given_by_a_relative_path_is_evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            prometheus_available: None) -> None:
    """`obsgap demo --out reports/demo` names its rules file relative to the working folder; Prometheus reads a
    relative rule_files entry against its configuration's folder, where nothing matches, and says nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "scenario" / "tsdb").mkdir(parents=True)
    operator_rule_file(STABILITY, tmp_path / "out" / "scenario" / "rules.yml")
    with PrometheusServer(Path("out/scenario/tsdb"), rule_files=(Path("out/scenario/rules.yml"),)) as server:
        read = PrometheusSource(PrometheusOptions(url=server.url)).rules()
    assert read is not None and len(read.queries) == 24


def test_a_rule_group_keeps_its_key_when_the_operator_reshards_or_recreates_it() -> None:
    """The Prometheus Operator writes a PrometheusRule to `<shard folder>/<namespace>-<name>-<uid>.yaml`: the folder
    changes when the rules are sharded again, the uid when the object is recreated; the group is the same one (its
    findings keep their ids), named with the file as Prometheus loaded it."""
    from obsgap.checks.dashboard_queries import Board

    before = Board("istio.rules", "/etc/prometheus/rules/prometheus-k8s-rulefiles-0/"
                                  "monitoring-istio-alerts-7c3a1f2e-1b2c-4d5e-8f90-123456789abc.yaml")
    after = Board("istio.rules", "/etc/prometheus/rules/prometheus-k8s-rulefiles-1/"
                                 "monitoring-istio-alerts-0a1b2c3d-4e5f-4a6b-8c7d-0123456789ef.yaml")
    assert before.key == after.key == "rules:monitoring-istio-alerts.yaml:istio.rules"
    assert before.subject == after.subject and before.resource == "Rule group monitoring-istio-alerts.yaml/istio.rules"
    assert "prometheus-k8s-rulefiles-0" in before.words
    assert Board("istio.rules", "/etc/prometheus/other.yaml").key != before.key
    assert Board("istio.rules").key == "dashboard:istio.rules"


def test_alerts_reading_the_side_a_telemetry_turns_off_are_named(tmp_path: Path,
                                                                 prometheus_available: None) -> None:
    """With every sidecar's client-side metrics off (the guide's Telemetry), IngressTrafficMissing's
    `absent(istio_requests_total{reporter="source", ...})` fires all the time and Ingress200RateLow's
    `sum(rate(...{reporter="source", ...}))` never can: each rule group is named with its file. The rules over
    every reporter (IstioMetricsMissing, the latency and recording rules) or the server side are not. Without the
    Telemetry nothing is named, and every rule group is still judged."""
    rules = operator_rule_file(STABILITY, tmp_path / "rules.yml")
    (tmp_path / "tsdb").mkdir()
    server_only = yaml.safe_load((DATA / "guides" / "telemetry-server-metrics-only.yaml").read_text())
    mesh = [{"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
            k8s_service("web"), k8s_pod("web-0", "web", "10.0.0.1"), k8s_service("api"),
            k8s_pod("api-0", "api", "10.0.0.2")]
    end = datetime(2026, 12, 7, tzinfo=UTC)

    def run(*extra: dict[str, Any]) -> Any:
        snapshot = tmp_path / f"topology-{len(extra)}.json"
        snapshot.write_text(json.dumps({"kind": "List", "items": [*mesh, *extra]}))
        return engine.run(RunPlan(window=Window(end - timedelta(hours=1), end), out_dir=tmp_path / snapshot.stem,
                                  kube_snapshots=(snapshot,), prometheus=PrometheusOptions(url=server.url))).result

    with PrometheusServer(tmp_path / "tsdb", rule_files=(rules,)) as server:
        dark, clean = run(server_only), run()
    found = {f.evidence["dashboard"]: f for f in dark.findings if f.check == "dashboard-reads-disabled-metric"}
    assert set(found) == {"./basic.rules", "./controlplane.rules"}
    basic, control = found["./basic.rules"], found["./controlplane.rules"]
    assert (basic.cause, basic.evidence["queries"], basic.evidence["panels"]) == (
        "client-side-off", 1, ["alert IngressTrafficMissing"])
    assert control.evidence["panels"] == ["alert Ingress200RateLow"]
    assert basic.title == "rule group ./basic.rules: 1 rule reads Istio metrics no proxy reports (client side off)"
    assert basic.resource == "Rule group rules.yml/./basic.rules" and basic.evidence["rule_file"] == str(rules)
    assert "one on `absent()` or a floor fires all the time" in basic.detail and str(rules) in basic.detail
    assert "panel" not in basic.detail
    run_of = {c.check: c for c in dark.checks}["dashboard-reads-disabled-metric"]
    groups = {"./basic.rules", "./workload.rules", "./infra.rules", "./controlplane.rules", "istio.recording-rules",
              "k8s.rules"}
    assert run_of.examined == {f"rules:rules.yml:{g}" for g in groups}
    assert unexamined(dark) == []
    assert sources_json(dark)["prometheus"]["rules"] == 24
    assert not [f for f in clean.findings if f.check.startswith("dashboard-")]
    assert {c.check: c for c in clean.checks}["dashboard-reads-disabled-metric"].examined == run_of.examined


@pytest.mark.parametrize("gateway", ["istio-system/istio-ingressgateway", "istio-ingress/istio-ingress"],
                         ids=["istioctl", "helm"])
def test_latency_alerts_over_both_sides_of_the_service_graph_blend_them(tmp_path: Path, gateway: str,
                                                                        prometheus_available: None) -> None:
    """The stability test's mesh: an ingress gateway calls svc-0, which calls svc-1, every pod with a sidecar.
    WorkloadLatencyP99High and IngressLatencyP99High take a quantile of a sum over every reporter: the caller's
    latency (the network included) blended with the server's. HTTP5xxRateHigh (reporter="destination"), the
    `absent()` alerts (no sum) and the recording rules (`sum without (instance, namespace, pod)`: the reporter
    kept) are not named. The gateway as istioctl's profiles name it, and as istio.io's Helm install does
    (`helm install istio-ingress istio/gateway -n istio-ingress`): then the gateway alerts name a workload the mesh
    does not have."""
    rules = operator_rule_file(STABILITY, tmp_path / "rules.yml")
    namespace, name = gateway.split("/")
    spec = ScenarioSpec(
        "service-graph", ((namespace, True), ("service-graph00", True)),
        (ServiceSpec(namespace, name, ingress_gateway=True),
         ServiceSpec("service-graph00", "svc-0"), ServiceSpec("service-graph00", "svc-1")),
        (FlowSpec("external", gateway, 8080, 2.0), FlowSpec(gateway, "service-graph00/svc-0", 8080, 2.0),
         FlowSpec("service-graph00/svc-0", "service-graph00/svc-1", 8080, 3.0)),
        hours=0.5, scrape_interval_s=15)
    run = run_scenario(spec, tmp_path, logs=False, rule_files=(rules,))
    (f,) = [f for f in run.findings("dashboard-double-counts")]
    assert (f.evidence["dashboard"], f.evidence["rule_file"], f.cause) == ("./workload.rules", str(rules),
                                                                            "sums-reporters")
    assert f.evidence["panels"] == ["alert IngressLatencyP99High", "alert WorkloadLatencyP99High"]
    assert (f.evidence["queries"], f.evidence["blended"]) == (2, 2)
    assert f.title == "rule group ./workload.rules: 2 rules add up the caller's and the server's count of the same " \
        "requests (blending both sides)"
    truth = run.built.truth
    svc1 = truth.mesh_destination_requests["service-graph00/svc-1"]
    assert truth.mesh_source_requests["service-graph00/svc-1"] == svc1  # both sidecars count each request
    assert f.evidence["ratio"] > 1.9  # the worst: svc-0's calls, every one counted by both sides
    fixed = {e["panel"]: e["fixed"] for e in f.evidence["examples"]}
    assert fixed["alert WorkloadLatencyP99High"] == (
        'histogram_quantile(0.99, sum by (source_workload, namespace, le) (irate(istio_request_duration_milliseconds'
        '_bucket{reporter="destination", source_workload=~"svc.*"}[5m]))) > 160')
    assert unexamined(run.result) == []
    assert run.findings("dashboard-sums-buckets") == []  # every _bucket sum keeps `le` (istio/tools#1250's fix)
    # the gateway alerts name istioctl's gateway workload; Helm's is istio-ingress: they read nothing there
    unknown = {f.evidence["dashboard"]: f for f in run.findings("dashboard-reads-unknown-name")}
    ran = next(c for c in run.result.checks if c.check == "dashboard-reads-unknown-name")
    assert ran.status == "ran" and "rules:rules.yml:./basic.rules/unknown-workload" in (ran.examined or ())
    if name == "istio-ingressgateway":
        assert unknown == {}
        return
    assert set(unknown) == {"./basic.rules", "./controlplane.rules"}
    for group, alert in (("./basic.rules", "alert IngressTrafficMissing"),
                         ("./controlplane.rules", "alert Ingress200RateLow")):
        f = unknown[group]
        assert (f.cause, f.evidence["panels"], f.evidence["names"]) == ("unknown-workload", [alert], [
            {"label": "source_workload", "matcher": 'source_workload="istio-ingressgateway"',
             "closest": "istio-ingress", "namespaces": []}])
    assert unknown["./basic.rules"].title == 'rule group ./basic.rules: 1 rule selects ' \
        'source_workload="istio-ingressgateway", a workload the mesh does not have'
    assert "`absent()` fires all the time" in unknown["./basic.rules"].detail
    assert "pins a namespace" not in unknown["./basic.rules"].detail  # source_workload alone: any namespace


def _names(expr: str) -> list[tuple[str, str, Any]]:
    """(cause, matcher, hint) of each name the check says the mesh lacks, on a mesh of bookinfo's reviews (and its
    pods' workload reviews-v1) and an external ServiceEntry host."""
    from obsgap.checks.dashboard_names import _judge, _Known
    from obsgap.checks.dashboard_queries import Judged
    from obsgap.model import PanelQuery

    services = frozenset({("bookinfo", "reviews"), ("egress", "httpbin.org")})
    namespaces = frozenset({("", "bookinfo"), ("", "egress"), ("", "default")})
    known = _Known({"workload": frozenset({("bookinfo", "reviews-v1")}), "service": services,
                    "host": frozenset({("", "httpbin.org")}), "namespace": namespaces}, frozenset())
    judged = Judged()
    _judge(PanelQuery("d", "p", expr), known, judged)
    return [(u.cause, u.matcher.text(), u.elsewhere or u.closest) for u in judged.found]


def test_names_the_mesh_has_however_a_query_spells_them() -> None:
    """A namespace a Grafana variable fills pins nothing; Istio's `unknown` namespace of an external host pins
    nothing; a Service's FQDN under another cluster domain is the Service; a query that `or`s a second spelling
    through another label reads it; a matcher that matches the empty string reads series without the label (a
    Telemetry that removes it) and is not judged. A name pinned to the wrong namespace says where it is."""
    m = "istio_requests_total"
    assert _names(f'sum({m}{{destination_service_namespace="$ns", destination_service_name="reviews"}})') == []
    assert _names(f'sum({m}{{destination_service_namespace="unknown", destination_service_name="httpbin.org"}})') == []
    assert _names(f'sum({m}{{destination_service="reviews.bookinfo.svc.corp.local"}})') == []
    assert _names(f'sum({m}{{destination_service_name="old"}}) or '
                  f'sum({m}{{destination_service="reviews.bookinfo.svc.cluster.local"}})') == []
    assert _names(f'sum({m}{{source_workload=""}}) + sum({m}{{source_workload=~"ghost|"}})') == []
    assert _names(f'sum({m}{{destination_workload="reviews-v1", destination_workload_namespace="default"}})') == [
        ("unknown-workload", 'destination_workload="reviews-v1"', ("bookinfo",))]
    assert _names(f'sum({m}{{destination_service_name="review"}})') == [
        ("unknown-service", 'destination_service_name="review"', "reviews")]
    assert _names('sum(up{source_workload="ghost"})') == []  # not one of Istio's metrics


def test_slos_whose_recording_rules_prometheus_evaluates_are_judged_without_slo_files(
        tmp_path: Path, prometheus_available: None) -> None:
    """Sloth's generated rules (its getting-started example, the SLI on Istio's request count of `search`) loaded
    into Prometheus, twice (two rule files, as two Prometheus instances selecting one PrometheusRule would): with
    no --slo, the SLO is read from /api/v1/rules once, measured and judged, keyed by the rule file's name, and
    `obsgap slo --prometheus-url` prints it; given the Sloth spec it was generated from too, it is judged once, as
    the file's. Without the SLO check, its SLI is not queried."""
    import shutil

    from click.testing import CliRunner

    from obsgap.cli import main
    from obsgap.scenario.simulate import build
    from obsgap.testbed.promserver import serve_openmetrics

    spec = ScenarioSpec("sloth", (("shop", True),), (ServiceSpec("shop", "web"), ServiceSpec("shop", "search")),
                        (FlowSpec("shop/web", "shop/search", 8080, 2.0),), hours=0.5, scrape_interval_s=15)
    rules = SLO_DATA / "sloth-gen-getting-started-rules.yml"
    again = tmp_path / "again.yml"
    shutil.copy(rules, again)
    built = build(spec, tmp_path / "mesh")
    server = serve_openmetrics(built.metrics, tmp_path / "mesh", rule_files=(rules, again))
    try:
        alone = run_scenario(spec, tmp_path / "alone", logs=False, server=server, built=built)
        only = run_scenario(spec, tmp_path / "only", logs=False, server=server, built=built,
                            only_checks=("envoy-bypass",))
        source = tmp_path / "sloth.yml"  # the spec those rules were generated from, adapted as they were
        source.write_text((SLO_DATA / "sloth-getting-started.yml").read_text()
                          .replace('service: "payments"', 'service: "myservice"')
                          .replace('http_request_duration_seconds_count{job="payments",code=~',
                                   'istio_requests_total{reporter="destination",destination_service_name="search",'
                                   'response_code=~')
                          .replace('http_request_duration_seconds_count{job="payments"}',
                                   'istio_requests_total{reporter="destination",destination_service_name="search"}'))
        both = run_scenario(spec, tmp_path / "both", logs=False, server=server, built=built, slo_paths=(source,))
        printed = CliRunner().invoke(main, ["slo", "--prometheus-url", server.url, "--kube-snapshot",
                                            str(built.topology), "--start", f"{spec.start:%Y-%m-%dT%H:%M:%SZ}",
                                            "--end", f"{spec.end:%Y-%m-%dT%H:%M:%SZ}", "-q"], catch_exceptions=False)
    finally:
        server.stop()
    (slo,) = alone.result.slos
    assert (slo.measured.spec.tool, slo.measured.spec.name, slo.measured.spec.service) == (
        "prometheus-rule", "requests-availability", "myservice")
    assert slo.measured.spec.origin.startswith("prometheus rules ")
    assert slo.measured.error is None and slo.sli_metric is not None
    assert slo.services == ("shop/search",)
    report = sources_json(alone.result)["slos"]
    assert (report["from_prometheus"], report["slos"], report["files"]) == (1, 1, 0)
    assert next(c for c in alone.result.checks if c.check == "slo-untrustworthy").status == "ran"
    assert only.result.slos == () and only.result.sources.slos is None
    assert [s.measured.spec.tool for s in both.result.slos] == ["sloth"]
    assert sources_json(both.result)["slos"]["from_prometheus"] == 0
    assert printed.exit_code in (0, 1), printed.output
    assert "requests-availability" in printed.stdout


def test_a_latency_alert_that_adds_up_the_cumulative_buckets(tmp_path: Path, prometheus_available: None) -> None:
    """Istio's stability alerts before istio/tools#1250: `LatencyHigh` sums istio_request_duration_milliseconds_bucket
    across `le` ("request latency > 30s"): each request counted once per bucket at or above its latency. Measured on
    the window: as many times as the buckets the simulated latencies fall under. The recording rule `sum without
    (instance, namespace, pod)` of the same series keeps `le`, and is not named."""
    from obsgap.checks.dashboard_bucket_sums import times_counted

    rules = operator_rule_file(STABILITY_2020, tmp_path / "rules.yml")
    spec = ScenarioSpec(
        "service-graph", (("istio-system", True), ("service-graph00", True)),
        (ServiceSpec("istio-system", "istio-ingressgateway", ingress_gateway=True),
         ServiceSpec("service-graph00", "svc-0"), ServiceSpec("service-graph00", "svc-1")),
        (FlowSpec("istio-system/istio-ingressgateway", "service-graph00/svc-0", 8080, 2.0),
         FlowSpec("service-graph00/svc-0", "service-graph00/svc-1", 8080, 3.0)),
        hours=0.5, scrape_interval_s=15)
    run = run_scenario(spec, tmp_path, logs=False, rule_files=(rules,))
    (f,) = run.findings("dashboard-sums-buckets")
    assert (f.evidence["dashboard"], f.evidence["panels"], f.evidence["metrics"]) == (
        "./workload.rules", ["alert LatencyHigh"], ["istio_request_duration_milliseconds_bucket"])
    assert f.evidence["times"] is not None and 5 < f.evidence["times"] < 20
    assert f.title.startswith("rule group ./workload.rules: 1 rule adds up the cumulative buckets of "
                              "istio_request_duration_milliseconds_bucket (")
    assert "An alert on it fires on load." in f.detail
    import pandas as pd

    assert times_counted(pd.DataFrame({"le": ["5", "10", "+Inf"], "value": [1.0, 3.0, 4.0]})) == 2.0
    assert unexamined(run.result) == []
