"""SLO trust: real Sloth, Pyrra and OpenSLO files (tests/data/slo, adapted only in their selectors) against a mesh
whose truth is known, through a real Prometheus; every number of the table held against that truth."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from obsgap import engine
from obsgap.analysis.reconcile import reconcile
from obsgap.cli import main
from obsgap.config import RunPlan
from obsgap.errors import InputError
from obsgap.evidence import CheckSettings, Evidence
from obsgap.model import Window
from obsgap.render.markdown import render_markdown
from obsgap.report.build import build_report
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import ENVOY_DEFAULT_BUCKETS, FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.slo.assess import assess
from obsgap.slo.load import load_documents, load_files
from obsgap.slo.spec import Measured, SloSpec
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import sources_json
from tests.kube_api import Cluster, serving

SLO_DATA = Path(__file__).resolve().parent / "data" / "slo"
INFERENCE_BUCKETS = (10.0, 25.0, 50.0, 100.0, 250.0)


def _spec() -> ScenarioSpec:
    return ScenarioSpec(
        "slo", (("shop", True),),
        (ServiceSpec("shop", "checkout", pods_without_proxy=1, error_rate=0.03),  # half its traffic bypasses Envoy
         ServiceSpec("shop", "search", error_rate=0.02),  # healthy
         ServiceSpec("shop", "catalog", latency_median_ms=200, latency_sigma=0.6),  # le="300" is no Envoy bound
         ServiceSpec("shop", "inference", latency_median_ms=400, latency_sigma=0.5,
                     istio_buckets=INFERENCE_BUCKETS),  # everything above 250 ms lands in +Inf
         ServiceSpec("shop", "payments", app_histogram="http_request_duration_seconds", metrics_port=9090,
                     job="payments-svc"),  # the SLO selects job="payments"
         ServiceSpec("shop", "web")),
        tuple(FlowSpec("shop/web", f"shop/{s}", 8080, rps) for s, rps in
              (("checkout", 2.0), ("search", 2.0), ("catalog", 1.5), ("inference", 1.0), ("payments", 1.0))),
        hours=0.5, scrape_interval_s=30)


@pytest.fixture(scope="module")
def slo_run(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    spec = _spec()
    tmp = tmp_path_factory.mktemp("slo")
    built = build(spec, tmp / "mesh")
    server = serve_openmetrics(built.metrics, tmp / "mesh")
    plan = RunPlan(window=Window(spec.start, spec.end), out_dir=tmp / "out",
                   prometheus=PrometheusOptions(url=server.url), kube_snapshots=(built.topology,),
                   logs=(str(built.logs),), slo_paths=(SLO_DATA,))
    try:
        result = engine.run(plan).result
        yield result, built, server, tmp
    finally:
        server.stop()


def _rows(result: Any) -> dict[tuple[str, str], Any]:
    return {(a.measured.spec.tool, a.measured.spec.name): a for a in result.slos}


def _truth_ratio(truth: Any, key: str) -> tuple[int, int]:
    return truth.server_requests[key], truth.server_errors[key]


def test_every_real_slo_file_is_read(slo_run) -> None:  # type: ignore[no-untyped-def]
    result, *_ = slo_run
    assert sorted(_rows(result)) == sorted([
        ("sloth", "requests-availability"), ("sloth-crd", "requests-availability"),
        ("openslo", "sloth-slo-my-service"), ("prometheus-rule", "requests-availability"),
        ("pyrra", "prometheus-http-latency-dynamic"), ("pyrra", "apiserver-requests-dynamic"),
        ("openslo", "search-slo")])
    slos = sources_json(result)["slos"]
    assert slos["files"] == 8 - 1 and slos["slos"] == 7  # PROVENANCE.md is no SLO file
    assert slos["gaps"] == []
    run = next(c for c in result.checks if c.check == "slo-untrustworthy")
    assert run.status == "ran"


def test_bypass_biases_the_istio_sli(slo_run) -> None:  # type: ignore[no-untyped-def]
    result, built, *_ = slo_run
    a = _rows(result)[("sloth-crd", "requests-availability")]
    truth = built.truth
    requests, errors = _truth_ratio(truth, "shop/checkout")
    mesh, mesh_errors = truth.mesh_destination_requests["shop/checkout"], truth.mesh_destination_errors["shop/checkout"]
    assert a.services == ("shop/checkout",) and a.verdict == "biased"
    assert [p.cause for p in a.problems] == ["sli-misses-traffic"]
    assert a.requests_logs == requests  # every logged request of both pods
    assert a.requests_metric == pytest.approx(mesh, rel=0.04)  # rate() over the window extrapolates a little
    assert a.coverage == pytest.approx(mesh / requests, abs=0.03) and 0.35 < a.coverage < 0.65
    assert a.sli_logs == pytest.approx(1 - errors / requests, abs=1e-6)
    assert a.sli_metric == pytest.approx(1 - mesh_errors / mesh, abs=0.003)
    assert a.budget_logs == pytest.approx((errors / requests) / (1 - 0.999), abs=0.002)
    assert a.budget_metric == pytest.approx((1 - a.sli_metric) / (1 - 0.999), abs=0.002)


@pytest.mark.parametrize("tool,name", [("pyrra", "apiserver-requests-dynamic"), ("openslo", "sloth-slo-my-service"),
                                       ("prometheus-rule", "requests-availability")])
def test_healthy_slos_are_trustworthy(slo_run, tool: str, name: str) -> None:  # type: ignore[no-untyped-def]
    result, built, *_ = slo_run
    a = _rows(result)[(tool, name)]
    requests, errors = _truth_ratio(built.truth, "shop/search")
    assert a.services == ("shop/search",) and a.verdict == "trustworthy" and a.problems == ()
    assert a.requests_logs == requests and a.sli_logs == pytest.approx(1 - errors / requests, abs=1e-6)
    assert a.coverage == pytest.approx(1.0, abs=0.04)
    assert a.sli_metric == pytest.approx(a.sli_logs, abs=0.004)
    objective = a.measured.spec.objective
    assert objective in (0.99, pytest.approx(0.999))
    facts = a.as_dict()["queries"]  # what the parser learnt of the SLI's queries
    assert all(q["metrics"] == ["istio_requests_total"] for q in facts)
    if tool == "prometheus-rule":  # Sloth's 5m recording rule: summed rates over five minutes
        assert [(q["aggregations"], q["ranges_seconds"], q["rate"]) for q in facts] == [(["sum"], [300], True)] * 2
    assert a.budget_logs == pytest.approx((errors / requests) / (1 - objective), abs=0.002)


def test_renamed_job_selects_nothing(slo_run) -> None:  # type: ignore[no-untyped-def]
    result, built, *_ = slo_run
    a = _rows(result)[("sloth", "requests-availability")]
    assert a.verdict == "broken" and {p.cause for p in a.problems} == {"selector-matches-nothing"}
    assert dict(a.measured.selector_series) == {
        'http_request_duration_seconds_count{job="payments",code=~"(5..|429)"}': 0,
        'http_request_duration_seconds_count{job="payments"}': 0}
    assert a.services == ("shop/payments",)  # found by the SLO's service name: the job names none
    assert "'payments-svc'" in a.problems[0].reason  # the job that does scrape its pods
    assert a.requests_logs == built.truth.server_requests["shop/payments"] and not a.requests_metric


def test_threshold_that_is_no_bucket_bound(slo_run) -> None:  # type: ignore[no-untyped-def]
    result, built, *_ = slo_run
    a = _rows(result)[("pyrra", "prometheus-http-latency-dynamic")]
    assert a.verdict == "broken" and [p.cause for p in a.problems] == ["threshold-not-a-bucket-bound"]
    assert a.threshold == 300 and a.unit == "ms"
    assert a.bounds == tuple(float(b) for b in ENVOY_DEFAULT_BUCKETS)
    assert "250 ms and 500 ms are the nearest" in a.problems[0].fix
    assert dict(a.measured.selector_series)[
        'istio_request_duration_milliseconds_bucket{reporter="destination",destination_service_name="catalog",'
        'le="300"}'] == 0
    latencies = built.truth.latencies_ms["shop/catalog"]
    assert a.sli_logs == pytest.approx(sum(1 for d in latencies if d <= 300) / len(latencies), abs=0.02)


def test_quantile_above_the_top_bound_is_saturated(slo_run) -> None:  # type: ignore[no-untyped-def]
    result, built, *_ = slo_run
    a = _rows(result)[("openslo", "search-slo")]
    assert a.verdict == "broken" and [p.cause for p in a.problems] == ["latency-saturated"]
    assert a.bounds == INFERENCE_BUCKETS and a.threshold == 500
    assert a.sli_metric == pytest.approx(250.0)  # histogram_quantile cannot report above the top finite bound
    latencies = sorted(built.truth.latencies_ms["shop/inference"])
    p99 = latencies[math.ceil(0.99 * len(latencies)) - 1]
    assert a.sli_logs == pytest.approx(p99, rel=0.03) and a.sli_logs > 500  # the real p99 breaks the SLO


def test_findings_and_report_table(slo_run) -> None:  # type: ignore[no-untyped-def]
    result, *_ = slo_run
    found = [f for f in result.findings if f.check == "slo-untrustworthy"]
    assert sorted((f.cause, f.severity.value) for f in found) == [
        ("latency-saturated", "critical"), ("selector-matches-nothing", "critical"),
        ("sli-misses-traffic", "warning"), ("threshold-not-a-bucket-bound", "critical")]
    for f in found:
        ev = f.evidence
        for key in ("objective", "sli_metric", "sli_logs", "budget_metric", "budget_logs", "coverage", "threshold",
                    "bounds", "verdict", "causes"):
            assert key in ev, key
    report = build_report(result)
    md = render_markdown(report).splitlines()
    start = md.index("Can these SLOs be trusted?")
    assert start < md.index("Fix first:")  # first in summary.md
    table = [line for line in md[start + 1:] if line.startswith("- ")][:7]
    assert sum("BROKEN" in line for line in table) == 3 and sum("TRUSTWORTHY" in line for line in table) == 3
    assert sum("BIASED" in line for line in table) == 1


def test_report_json_and_html_carry_the_table(slo_run) -> None:  # type: ignore[no-untyped-def]
    from obsgap.publish import write_outputs

    result, _, _, tmp = slo_run
    out = tmp / "written"
    write_outputs(result, out)
    doc = json.loads((out / "findings.json").read_text())
    rows = {(r["tool"], r["slo"]): r for r in doc["slos"]}
    assert len(rows) == 7 and rows[("sloth-crd", "requests-availability")]["verdict"] == "biased"
    html = (out / "report.html").read_text()
    table = html.split('id="slo-table"')[1].split("</table>")[0]
    assert table.count("<tr class=\"verdict-") == 7
    # near the top: after the first screen's status and findings to fix first, before the list of findings
    assert html.index('id="fix-first"') < html.index('id="slos"') < html.index('id="findings"')


def test_obsgap_slo_prints_the_table(slo_run) -> None:  # type: ignore[no-untyped-def]
    _, built, server, tmp = slo_run
    spec = built.spec
    res = CliRunner().invoke(main, [
        "slo", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology), "--logs", str(built.logs),
        "--slo", str(SLO_DATA), "--start", spec.start.isoformat(), "--end", spec.end.isoformat()])
    assert res.exit_code == 1, res.output  # some SLO cannot be trusted
    lines = res.stdout.splitlines()
    assert lines[0].startswith("SLO") and "verdict" in lines[0]
    for name in ("requests-availability", "prometheus-http-latency-dynamic", "search-slo"):
        assert any(name in line for line in lines)
    assert sum(" broken " in f" {line} " for line in lines) == 3
    assert not (tmp / "reports").exists()  # a quick look writes no report


def test_loader_reports_what_it_cannot_measure(tmp_path: Path) -> None:
    f = tmp_path / "slos.yaml"
    f.write_text("""apiVersion: pyrra.dev/v1alpha1
kind: ServiceLevelObjective
metadata: {name: up, namespace: monitoring}
spec:
  target: "99"
  window: 4w
  indicator:
    bool_gauge:
      metric: up{job="x"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
---
version: prometheus/v1
service: s
slos:
  - name: plugin-slo
    objective: 99
    sli:
      plugin: {id: sloth-common/kubernetes/apiserver/availability}
""")
    loaded = load_files([f])
    assert loaded.slos == [] and loaded.ignored == 1
    assert len(loaded.gaps) == 2 and "bool_gauge" in loaded.gaps[0] and "plugin" in loaded.gaps[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: prometheus/v1\nslos: [\n")
    with pytest.raises(InputError, match=r"bad\.yaml:\d+:\d+: not YAML"):
        load_files([bad])
    with pytest.raises(InputError, match="no such file"):
        load_files([tmp_path / "missing"])
    # a query that does not parse is a gap of that SLO, never a traceback
    broken = load_documents([("x", {"version": "prometheus/v1", "service": "s", "slos": [
        {"name": "n", "objective": 99, "sli": {"events": {"error_query": "sum(rate(", "total_query": "up"}}}]})])
    assert broken.slos == [] and broken.gaps == [
        "x: SLO n: PromQL 'sum(rate(' does not parse: unclosed left parenthesis"]
    # an SLI Prometheus could not run says so, and is not called trustworthy
    spec = SloSpec("sloth", "f", "n", "s", 0.99, "30d", "ratio", "up", bad="up")
    ev = Evidence(Window(_spec().start, _spec().end), CheckSettings())
    assert assess(Measured(spec, error="query failed"), ev, reconcile(ev)).verdict == "unverified"


def test_error_ratio_that_differs_from_the_logs() -> None:
    """The pure rule on typed numbers: the metrics' error ratio far from the logs' is biased, within noise not."""
    import pandas as pd

    from obsgap.evidence import LogEvidence
    from obsgap.sources.kube.build import build_topology

    objects = [{"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
               {"kind": "Service", "metadata": {"name": "cart", "namespace": "shop"},
                "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
               {"kind": "Pod", "metadata": {"name": "cart-1", "namespace": "shop", "labels": {"app": "cart"}},
                "spec": {"containers": [{"name": "cart"}, {"name": "istio-proxy"}]},
                "status": {"podIP": "10.0.0.5", "phase": "Running"}}]
    topo = build_topology(objects, [])
    inbound = pd.DataFrame([{"namespace": "shop", "pod": "cart-1", "container": "cart", "origin": "app",
                             "port": 8080, "http": True, "http_requests": 10000, "requests": 10000, "errors": 300,
                             "first_ms": 0, "last_ms": 1}])
    logs = LogEvidence(inbound, pd.DataFrame(), pd.DataFrame())
    spec = SloSpec("sloth", "f", "cart-availability", "cart", 0.999, "30d", "ratio",
                   'sum(rate(istio_requests_total{destination_service_name="cart"}[5m]))',
                   bad='sum(rate(istio_requests_total{destination_service_name="cart",response_code=~"5.."}[5m]))')
    window = _spec()
    ev = Evidence(Window(window.start, window.end), CheckSettings(), topo, None, logs)
    far = assess(Measured(spec, None, (), 10000.0, 10.0, 0.001), ev, reconcile(ev))  # metrics: 0.1% errors, logs: 3%
    assert far.verdict == "biased" and [p.cause for p in far.problems] == ["error-ratio-differs"]
    assert far.budget_metric == pytest.approx(1.0) and far.budget_logs == pytest.approx(30.0)
    near = assess(Measured(spec, None, (), 10000.0, 295.0, 0.0295), ev, reconcile(ev))
    assert near.verdict == "trustworthy" and near.coverage == pytest.approx(1.0)


def test_slo_objects_from_a_live_cluster(tmp_path: Path) -> None:
    import yaml

    from obsgap.sources.kube.live import LiveOptions
    from obsgap.sources.kube.slos import load_live_slos

    objects = [yaml.safe_load((SLO_DATA / "sloth-k8s-getting-started.yml").read_text()),
               yaml.safe_load((SLO_DATA / "pyrra-dynamic-burn-rate-ratio.yaml").read_text())]
    cluster = Cluster(objects)
    with serving(cluster, tmp_path) as kubeconfig:
        found, gaps = load_live_slos(LiveOptions(kubeconfig=str(kubeconfig)))
    loaded = load_documents(found)
    assert sorted(s.tool for s in loaded.slos) == ["pyrra", "sloth-crd"]
    assert [o for o, _ in found] == ["PrometheusServiceLevel monitoring/sloth-slo-my-service",
                                     "ServiceLevelObjective monitoring/apiserver-requests-dynamic"]
    assert gaps == ["PrometheusRule: CRD prometheusrules.monitoring.coreos.com not installed"]
    cluster.forbidden.add("/apis/pyrra.dev/v1alpha1/servicelevelobjectives")
    with serving(cluster, tmp_path) as kubeconfig:
        found, gaps = load_live_slos(LiveOptions(kubeconfig=str(kubeconfig)))
    assert [o for o, _ in found] == ["PrometheusServiceLevel monitoring/sloth-slo-my-service"]
    assert any("ServiceLevelObjective: list forbidden (HTTP 403)" in g for g in gaps)


def test_live_cluster_slos_through_the_engine(slo_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`obsgap report --kubeconfig`: the cluster's SLO objects are judged like files, the missing CRD noted."""
    import yaml

    from obsgap.sources.kube.live import LiveOptions
    from tests.kube_api import cluster_of_scenario

    _, built, server, _ = slo_run
    spec = built.spec
    cluster = cluster_of_scenario(built.topology, built.logs)
    cluster.objects += [yaml.safe_load((SLO_DATA / "sloth-k8s-getting-started.yml").read_text()),
                        yaml.safe_load((SLO_DATA / "pyrra-dynamic-burn-rate-ratio.yaml").read_text())]
    with serving(cluster, tmp_path) as kubeconfig:
        result = engine.run(RunPlan(window=Window(spec.start, spec.end), out_dir=tmp_path / "out",
                                    prometheus=PrometheusOptions(url=server.url),
                                    kube_live=LiveOptions(kubeconfig=str(kubeconfig)),
                                    logs=(str(built.logs),))).result
    verdicts = {(a.measured.spec.tool, a.measured.spec.origin): a.verdict for a in result.slos}
    assert verdicts == {("sloth-crd", "PrometheusServiceLevel monitoring/sloth-slo-my-service"): "biased",
                        ("pyrra", "ServiceLevelObjective monitoring/apiserver-requests-dynamic"): "trustworthy"}
    assert sources_json(result)["slos"]["from_cluster"] == 2
    assert result.sources.slos is not None
    assert result.sources.slos.gaps == ("PrometheusRule: CRD prometheusrules.monitoring.coreos.com not installed",)
    assert result.status == "complete"  # a CRD that is not installed is a note, not a failure


def test_hostile_slo_files_stay_inert() -> None:
    """Names, services, operators and queries come from files anyone may write: inert in every output (the
    browser test opens the same report)."""
    from obsgap.render.html import render_html
    from obsgap.slo.table import slo_table
    from tests.test_report import HOSTILE, assert_inert_markdown, hostile_result, with_hostile_slos

    result = with_hostile_slos(hostile_result())
    report = build_report(result)
    assert_inert_markdown(render_markdown(report), HOSTILE)
    html = render_html(report)
    table = html.split('id="slo-table"')[1].split("</table>")[0]
    assert "<script>" not in table and "<img" not in table and "&lt;script&gt;" in table
    assert table.count('<tr class="verdict-unverified">') == len(HOSTILE)
    text = slo_table(result.slos)
    assert "\u2028" not in text and "\x1b" not in text and text.count("\n") >= len(HOSTILE)


def test_without_metrics_no_slo_is_called_trustworthy(slo_run) -> None:  # type: ignore[no-untyped-def]
    """Logs alone confirm nothing: every SLO is unverified, and says why."""
    _, built, _, _ = slo_run
    spec = built.spec
    res = CliRunner().invoke(main, ["slo", "-q", "--kube-snapshot", str(built.topology), "--logs", str(built.logs),
                                    "--slo", str(SLO_DATA), "--start", spec.start.isoformat(), "--end",
                                    spec.end.isoformat()])
    assert res.exit_code == 3, res.output  # nothing could be measured: a partial run, never a clean one
    assert "no check could run: no --prometheus-url given" in res.stderr
    rows = res.stdout.splitlines()[1:8]
    assert len(rows) == 7 and all(row.rstrip().endswith("unverified") for row in rows)
    assert res.stdout.count("not measured: no metrics were read") == 7


def test_a_slo_file_that_is_not_yaml_is_exit_2_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "slos.yaml"
    bad.write_text("version: prometheus/v1\nslos: [\n")
    out = tmp_path / "out"
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "List", "items": [{"kind": "Namespace", "metadata": {"name": "a"}}]}))
    for command in ("report", "slo"):
        res = CliRunner().invoke(main, [command, "--slo", str(bad), "--kube-snapshot", str(snapshot), "--out",
                                        str(out), "--window", "1h"])
        assert res.exit_code == 2, res.output
        errors = [line for line in res.stderr.splitlines() if line.startswith("obsgap:")]
        assert len(errors) == 1 and f"{bad}:3:1: not YAML" in errors[0]
        assert not out.exists() and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["report", "--slo", str(tmp_path / "nope"), "--kube-snapshot", str(snapshot),
                                    "--out", str(out)])
    assert res.exit_code == 2 and "--slo" in res.stderr and "no such file or directory" in res.stderr


# --- issue 22, section 3: verdicts that hold -------------------------------------------------------------------

VERDICT_SLOS = """apiVersion: openslo/v1
kind: SLO
metadata: {name: search-fast, namespace: shop}
spec:
  service: search
  indicator:
    metadata: {name: search-fast-sli}
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: Prometheus
            spec: {query: 'istio_request_duration_milliseconds_bucket{reporter="destination",destination_service_name="search",le="500"}'}
        total:
          metricSource:
            type: Prometheus
            spec: {query: 'istio_request_duration_milliseconds_count{reporter="destination",destination_service_name="search"}'}
  budgetingMethod: Occurrences
  objectives: [{displayName: under 500 ms, target: 0.99}]
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: search-good-typo, namespace: shop}
spec:
  service: search
  indicator:
    metadata: {name: search-good-typo-sli}
    spec:
      ratioMetric:
        good:
          metricSource:
            type: Prometheus
            spec: {query: 'sum(rate(istio_requests_total{reporter="destination",destination_service_name="search",response_code="2OO"}[5m]))'}
        total:
          metricSource:
            type: Prometheus
            spec: {query: 'sum(rate(istio_requests_total{reporter="destination",destination_service_name="search"}[5m]))'}
  budgetingMethod: Occurrences
  objectives: [{target: 0.99}]
---
version: "prometheus/v1"
service: "feature-store"
slos:
  - name: "requests-availability"
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(istio_requests_total{destination_service_namespace="shop",destination_service_name="feature-store",response_code=~"5.."}[{{.window}}]))
        total_query: sum(rate(istio_requests_total{destination_service_namespace="shop",destination_service_name="feature-store"}[{{.window}}]))
"""  # noqa: E501 (PromQL as SLO files hold it, one query a line)


@pytest.fixture(scope="module")
def verdicts(slo_run) -> Any:  # type: ignore[no-untyped-def]
    _, built, server, tmp = slo_run
    spec = built.spec
    slos = tmp / "verdicts.yaml"
    slos.write_text(VERDICT_SLOS)
    plan = RunPlan(window=Window(spec.start, spec.end), out_dir=tmp / "verdicts-out",
                   prometheus=PrometheusOptions(url=server.url), kube_snapshots=(built.topology,),
                   logs=(str(built.logs),), slo_paths=(slos,), only_checks=("slo-untrustworthy",),
                   namespaces=("shop",))
    return engine.run(plan).result, built


def test_a_latency_sli_written_as_a_ratio_is_judged_on_latency(verdicts) -> None:  # type: ignore[no-untyped-def]
    """good = the bucket at 500 ms, total = the count: the logs' side is the share of requests under 500 ms, not the
    share answered without a 5xx (search answers 2% 5xx, all of them fast)."""
    result, built = verdicts
    a = _rows(result)[("openslo", "search-fast")]
    assert a.measured.spec.kind == "latency" and a.threshold == 500 and a.unit == "ms"
    latencies = built.truth.latencies_ms["shop/search"]
    assert a.sli_logs == pytest.approx(sum(1 for d in latencies if d <= 500) / len(latencies), abs=0.005)
    assert built.truth.server_errors["shop/search"] / built.truth.server_requests["shop/search"] > 0.01
    assert a.verdict == "trustworthy" and a.problems == ()


def test_an_slo_naming_a_missing_service_is_found_where_it_points(verdicts) -> None:  # type: ignore[no-untyped-def]
    result, _ = verdicts
    (f,) = [f for f in result.findings if f.subject.startswith("sloth:") and "feature-store" in f.title]
    assert (f.namespace, f.service) == ("shop", "feature-store")  # kept by -n shop
    assert f.title == "SLO feature-store/requests-availability (sloth) is broken: selector matches nothing"
    assert "counts no events at all" in f.detail and "shows no data" in f.detail and "never fire" in f.detail


def test_an_empty_good_selector_says_the_slo_reads_zero_and_pages(verdicts) -> None:  # type: ignore[no-untyped-def]
    result, _ = verdicts
    a = _rows(result)[("openslo", "search-good-typo")]
    assert a.verdict == "broken" and [p.cause for p in a.problems] == ["selector-matches-nothing"]
    reason = a.problems[0].reason
    assert 'response_code="2OO"' in reason and "reads 0%" in reason and "page" in reason
    assert "stays green" not in reason
    (f,) = [f for f in result.findings if "search-good-typo" in f.title]
    assert f.title.startswith("SLO search/search-good-typo (openslo) is broken") and f.namespace == "shop"


@pytest.mark.parametrize("failing", ["series", "buckets", None])
def test_an_slo_query_that_failed_proves_nothing(failing: str | None) -> None:
    """A count of a selector's series that failed is no proof that it matches nothing (the SLO was called broken:
    "matches no series"), and a bucket query that failed leaves the SLI unconfirmed (its saturated histogram went
    unsaid, as if sound). Either way the verdict is "unverified", with the failure as the reason; with every query
    answered, the saturated histogram breaks it."""
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from obsgap.slo.measure import measure

    spec = SloSpec("sloth", "f", "latency", "api", 0.99, "30d", "latency",
                   'sum(rate(istio_request_duration_milliseconds_count{destination_service_name="api"}[5m]))',
                   good='sum(rate(istio_request_duration_milliseconds_bucket{destination_service_name="api",'
                        'le="10000"}[5m]))')
    buckets = pd.DataFrame([{"le": le, "value": v} for le, v in (  # saturated, but for the series' case
        (("1000", 90.0), ("10000", 99.5), ("20000", 99.9), ("+Inf", 100.0)) if failing == "series"
        else (("1000", 90.0), ("5000", 95.0), ("+Inf", 100.0)))])

    def query(label: str, promql: str) -> tuple[pd.DataFrame | None, str | None]:
        kind = label.rsplit(": ", 1)[-1]
        if kind == failing:
            return None, f"query {label}: timeout"
        if kind == "series":
            return pd.DataFrame([{"value": 3.0}]), None
        if kind == "buckets":
            return buckets, None
        return pd.DataFrame([{"value": 100.0 if "_count" in promql else 95.0}]), None

    end = datetime(2026, 11, 24, tzinfo=UTC)
    ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings())
    m = measure(spec, query, 3600)
    verdict = assess(m, ev, reconcile(ev))
    if failing is None:
        assert m.error is None and verdict.verdict == "broken"
        assert [p.cause for p in verdict.problems] == ["latency-saturated"]
        return
    assert m.error == f"query slo latency: {failing}: timeout"
    assert verdict.verdict == "unverified" and not verdict.problems
    if failing == "series":
        assert all(n is None for _, n in m.selector_series)
        assert all(s["series"] is None for s in verdict.as_dict()["selectors"])  # null in findings.json, not 0


def test_an_slo_judged_on_logs_is_rechecked_only_with_logs() -> None:
    """The SLI counts 5,000 requests, the logs of its service 10,000: sli-misses-traffic, keyed to the logs. A night
    without logs does not examine that key (the finding is carried, not resolved), while the SLO's own key still is;
    an SLI whose query failed gives a finding of its own cause (it was "selector-matches-nothing", a broken
    verdict's) and examines neither."""
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.checks.slo import SloUntrustworthy
    from obsgap.engine import run_checks
    from obsgap.evidence import LogEvidence, MetricsEvidence
    from obsgap.render.json_out import finding_dict
    from obsgap.sources.kube.build import build_topology

    topo = build_topology([
        {"kind": "Service", "metadata": {"name": "cart", "namespace": "shop"},
         "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"kind": "Pod", "metadata": {"name": "cart-1", "namespace": "shop", "labels": {"app": "cart"}},
         "spec": {"containers": [{"name": "cart", "ports": [{"containerPort": 8080}]}]},
         "status": {"podIP": "10.0.0.5", "phase": "Running"}}])
    spec = SloSpec("sloth", "slos.yaml", "cart-availability", "cart", 0.999, "30d", "ratio",
                   'sum(rate(istio_requests_total{destination_service_name="cart"}[5m]))',
                   bad='sum(rate(istio_requests_total{destination_service_name="cart",response_code=~"5.."}[5m]))')
    selectors = (('istio_requests_total{destination_service_name="cart"}', 3),
                 ('istio_requests_total{destination_service_name="cart",response_code=~"5.."}', 1))
    logs = LogEvidence(pd.DataFrame([{"namespace": "shop", "pod": "cart-1", "container": "cart", "origin": "app",
                                      "port": 8080, "http": True, "http_requests": 10000, "requests": 10000,
                                      "errors": 0, "first_ms": 0, "last_ms": 1}]), pd.DataFrame(), pd.DataFrame())
    end = datetime(2026, 11, 24, tzinfo=UTC)

    def night(measured: Measured, with_logs: bool):  # type: ignore[no-untyped-def]
        ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings(), topo, MetricsEvidence({}),
                      logs if with_logs else None, slos=(measured,))
        (run,), found = run_checks((SloUntrustworthy,), ev, analyze(ev))
        return sorted(run.examined or ()), [(f.cause, finding_dict(f)["keys"]) for f in found]

    measured = Measured(spec, None, selectors, 5000.0, 5.0, 0.001)
    key = "slo:sloth:slos.yaml:cart-availability"
    # :websockets is judged (it reads no duration histogram); :grpc is not (the grpc_failures query was not run)
    assert night(measured, True) == ([key, f"{key}:logs", f"{key}:websockets"],
                                     [("sli-misses-traffic", [f"{key}:logs"])])
    assert night(measured, False) == ([key, f"{key}:websockets"], [])
    failed = Measured(spec, "query slo cart-availability: total: timeout", selectors)
    assert night(failed, True) == ([], [("sli-failed", [key])])


def test_an_sli_over_metrics_a_telemetry_resource_turns_off_names_the_resource() -> None:
    """Pyrra's ratio and latency examples (tests/data/slo) read search's request count and catalog's duration
    histogram as the server side reports them. istio/api's mesh-wide "server metrics off" example keeps every
    sidecar from reporting either: both SLIs match nothing, and the reason names the resource, not a renamed job.
    A resource that turns off only REQUEST_DURATION for one of catalog's two pods leaves search's SLI alone and
    makes catalog's miss that pod's requests."""
    import yaml

    from obsgap.sources.kube.build import build_topology
    from tests.helpers import k8s_pod, k8s_service

    loaded = load_files([SLO_DATA / "pyrra-dynamic-burn-rate-ratio.yaml",
                         SLO_DATA / "pyrra-dynamic-burn-rate-latency.yaml"])
    ratio = next(s for s in loaded.slos if "istio_requests_total" in s.total)
    latency = next(s for s in loaded.slos if "istio_request_duration" in s.total)
    objects = [{"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
               k8s_service("search"), k8s_service("catalog"), k8s_pod("search-0", "search", "10.0.0.1"),
               k8s_pod("catalog-0", "catalog", "10.0.0.2"),
               {**k8s_pod("catalog-1", "catalog", "10.0.0.3"), "metadata": {
                   "name": "catalog-1", "namespace": "shop", "labels": {"app": "catalog", "version": "v2"}}}]
    mesh_default = yaml.safe_load((Path(__file__).resolve().parent / "data" / "istio" / "api" /
                                   "telemetry-mesh-default-server-metrics-off.yaml").read_text())
    window = _spec()

    def judged(spec: SloSpec, extra: list[dict[str, Any]], series: int) -> Any:
        ev = Evidence(Window(window.start, window.end), CheckSettings(), build_topology([*objects, *extra]), None,
                      None)
        selectors = tuple((text, series) for text in _selector_texts(spec))
        return assess(Measured(spec, None, selectors, float(series), 0.0, 0.0 if series else None), ev,
                      reconcile(ev))

    for spec, service in ((ratio, "search"), (latency, "catalog")):
        found = judged(spec, [mesh_default], 0)
        assert found.verdict == "broken" and [p.cause for p in found.problems][:1] == ["selector-matches-nothing"]
        assert f"for shop/{service}, the sidecars' " in found.problems[0].reason
        assert "Telemetry istio-system/mesh-default disables it: the SLI matches no series." in \
            found.problems[0].reason
        control = judged(spec, [], 0).problems[0]  # no resource: the selector's emptiness, cause unknown
        assert control.cause == "selector-matches-nothing" and "no series in the window" in control.reason
        assert "Telemetry" not in control.reason
    v2_durations = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                    "metadata": {"name": "v2-no-durations", "namespace": "shop"},
                    "spec": {"selector": {"matchLabels": {"version": "v2"}}, "metrics": [{"overrides": [
                        {"match": {"metric": "REQUEST_DURATION", "mode": "SERVER"}, "disabled": True}]}]}}
    assert not [p for p in judged(ratio, [v2_durations], 500).problems if "Telemetry" in p.reason]
    (missed,) = [p for p in judged(latency, [v2_durations], 500).problems if "Telemetry" in p.reason]
    assert missed.cause == "sli-misses-traffic" and not missed.broken
    assert ("for shop/catalog, the sidecars' request durations (istio_request_duration_milliseconds, server side) "
            "cannot be counted for 1 of its 2 pods with a sidecar: Telemetry shop/v2-no-durations disables it: the "
            "SLI misses the requests of those proxies.") in missed.reason
    assert "istio_request_duration_milliseconds_bucket{" in missed.reason and \
        "istio_request_duration_milliseconds_count{" in missed.reason  # one problem for the histogram
    # the client side's series are not the server's: an SLI over reporter="source" reads them whatever the server does
    from dataclasses import replace

    def respelled(spec: SloSpec, old: str, new: str) -> SloSpec:
        return replace(spec, total=spec.total.replace(old, new), bad=spec.bad and spec.bad.replace(old, new),
                       good=spec.good and spec.good.replace(old, new))

    source = respelled(ratio, 'reporter="destination"', 'reporter="source"')
    assert not [p for p in judged(source, [mesh_default], 0).problems if "Telemetry" in p.reason]
    # a count turned off on one of catalog's pods: an error selector that matches nothing is still broken on its own
    # account (no 5xx, or a wrong label), and one that matches is biased, naming the resource
    catalog = respelled(ratio, 'destination_service_name="search"', 'destination_service_name="catalog"')
    v2_count = {**v2_durations, "metadata": {"name": "v2-no-count", "namespace": "shop"}, "spec": {
        **v2_durations["spec"], "metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT", "mode": "SERVER"},
                                                            "disabled": True}]}]}}
    ev = Evidence(Window(window.start, window.end), CheckSettings(), build_topology([*objects, v2_count]), None, None)
    bad = next(t for t in _selector_texts(catalog) if "response_code" in t)
    total = next(t for t in _selector_texts(catalog) if "response_code" not in t)
    one_bad = assess(Measured(catalog, None, ((bad, 0), (total, 500)), 500.0, 0.0, 0.0), ev, reconcile(ev))
    assert one_bad.verdict == "broken" and [p.cause for p in one_bad.problems] == ["selector-matches-nothing"]
    assert "Telemetry" not in one_bad.problems[0].reason
    both = assess(Measured(catalog, None, ((bad, 3), (total, 500)), 500.0, 3.0, 0.006), ev, reconcile(ev))
    assert [p.cause for p in both.problems if "shop/v2-no-count" in p.reason] == ["sli-misses-traffic"]
    # a tag override removing destination_service_name empties an SLI that selects by it, not one that selects by
    # destination_workload
    removal = {"destination_service_name": {"operation": "REMOVE"}}
    strip = {**v2_count, "metadata": {"name": "strip", "namespace": "shop"}, "spec": {"metrics": [{"overrides": [
        {"match": {"metric": "REQUEST_COUNT"}, "tagOverrides": removal}]}]}}
    stripped = judged(ratio, [strip], 0).problems[0]
    assert stripped.broken and "Telemetry shop/strip removes its destination_service_name label" in stripped.reason
    by_workload = respelled(ratio, 'destination_service_name="search"', 'destination_workload="search"')
    assert not [p for p in judged(by_workload, [strip], 500).problems if "Telemetry" in p.reason]


def test_an_sli_over_the_callers_count_names_the_telemetry_that_turns_the_client_side_off() -> None:
    """Pyrra's ratio example read as the callers' sidecars report it (reporter="source"). The server side counted
    900 requests to search from web (two pods) and 100 from batch. A guide's mesh-wide "server metrics only"
    resource (tests/data/istio/guides) turns every client-side metric off: the SLI matches nothing, and the reason
    names the resource and both callers, with reporter="destination" as the fix. A resource turning the count off for
    batch's pods alone makes the SLI miss batch's share (10%). A resource on one of web's two pods leaves web counted
    (in part), so nothing is claimed; nor where no resource is, or the server side's counts are not known."""
    from dataclasses import replace

    import pandas as pd
    import yaml

    from obsgap.evidence import MetricsEvidence
    from obsgap.sources.kube.build import build_topology
    from obsgap.sources.kube.source import scope_topology
    from tests.helpers import k8s_pod, k8s_service

    loaded = load_files([SLO_DATA / "pyrra-dynamic-burn-rate-ratio.yaml"])
    ratio = next(s for s in loaded.slos if "istio_requests_total" in s.total)
    source = replace(ratio, total=ratio.total.replace('reporter="destination"', 'reporter="source"'),
                     bad=ratio.bad and ratio.bad.replace('reporter="destination"', 'reporter="source"'))

    def owned(pod: dict[str, Any], deployment: str) -> dict[str, Any]:
        meta = {**pod["metadata"], "ownerReferences": [{"kind": "ReplicaSet", "name": f"{deployment}-5d9f8c7b6"}]}
        return {**pod, "metadata": meta}

    objects = [{"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
               k8s_service("search"), k8s_pod("search-0", "search", "10.0.0.1"),
               owned(k8s_pod("web-5d9f8c7b6-a", "web", "10.0.0.2"), "web"),
               owned(k8s_pod("web-5d9f8c7b6-b", "web", "10.0.0.3"), "web"),
               owned(k8s_pod("batch-5d9f8c7b6-a", "batch", "10.0.0.4"), "batch")]
    server_only = yaml.safe_load((Path(__file__).resolve().parent / "data" / "istio" / "guides" /
                                  "telemetry-server-metrics-only.yaml").read_text())
    rows = [{"reporter": "destination", "destination_service_name": "search", "destination_service_namespace": "shop",
             "source_workload": caller, "source_workload_namespace": "shop", "destination_workload": "search",
             "destination_workload_namespace": "shop", "namespace": "shop", "pod": "search-0",
             "destination_port": "8080", "destination_service": "search.shop.svc.cluster.local", "value": n}
            for caller, n in (("web", 900.0), ("batch", 100.0))]
    outside = {**rows[0], "source_workload": "unknown", "source_workload_namespace": "unknown", "value": 1000.0}
    window = _spec()

    def judged(extra: list[dict[str, Any]], series: int, counted: bool = True, spec: SloSpec = source,
               scope: tuple[str, ...] = ()) -> Any:
        metrics = MetricsEvidence({"mesh_requests": pd.DataFrame(rows)}) if counted else None
        topo = scope_topology(build_topology([*objects, *extra]), scope)
        ev = Evidence(Window(window.start, window.end), CheckSettings(), topo, metrics, None)
        selectors = tuple((text, series) for text in _selector_texts(spec))
        return assess(Measured(spec, None, selectors, float(series), 0.0, 0.0 if series else None), ev,
                      reconcile(ev))

    found = judged([server_only], 0)
    assert found.verdict == "broken" and found.problems[0].cause == "selector-matches-nothing"
    reason = found.problems[0].reason
    assert "as its callers' sidecars report it (reporter=\"source\"), but for shop/search, the request count of the " \
        "sidecars of 2 of its 2 calling workloads (shop/batch, shop/web; istio_requests_total, reporter=\"source\") " \
        "cannot be counted: Telemetry istio-system/server-metrics-only disables it: the SLI matches no series." \
        in reason
    assert 'Select reporter=~"destination|waypoint"' in found.problems[0].fix
    assert len(found.problems) == 1  # the emptiness is explained, not also reported as a renamed job
    batch_off = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                 "metadata": {"name": "batch-client-off", "namespace": "shop"},
                 "spec": {"selector": {"matchLabels": {"app": "batch"}}, "metrics": [{"overrides": [
                     {"match": {"metric": "REQUEST_COUNT", "mode": "CLIENT"}, "disabled": True}]}]}}
    (missed,) = [p for p in judged([batch_off], 900).problems if "Telemetry" in p.reason]
    assert missed.cause == "sli-misses-traffic" and not missed.broken
    assert "1 of its 2 calling workloads (shop/batch;" in missed.reason and "(10.0% of its requests)" in missed.reason
    rows.append(outside)  # callers outside the mesh (source_workload="unknown") are requests too: batch's are 5%
    (missed,) = [p for p in judged([batch_off], 1900).problems if "Telemetry" in p.reason]
    assert "1 of its 2 calling workloads (shop/batch;" in missed.reason and "(5.0% of its requests)" in missed.reason
    rows.pop()
    one_web_pod = {**batch_off, "metadata": {"name": "web-a-off", "namespace": "shop"}, "spec": {
        **batch_off["spec"], "selector": {"matchLabels": {"app": "web", "pod": "a"}}}}
    objects[3]["metadata"]["labels"]["pod"] = "a"
    assert not [p for p in judged([one_web_pod], 950).problems if "Telemetry" in p.reason]
    for control in (judged([], 0), judged([server_only], 0, counted=False)):
        assert control.problems[0].cause == "selector-matches-nothing" and "Telemetry" not in control.problems[0].reason
    # the server side's SLI is untouched by a client-side resource
    assert not [p for p in judged([server_only], 1000, spec=ratio).problems if "Telemetry" in p.reason]
    # callers in a namespace out of scope (-n shop) are still known, and so is their sidecars' Telemetry
    objects[3:] = [owned(k8s_pod(f"web-5d9f8c7b6-{x}", "web", f"10.0.1.{i}", namespace="web"), "web")
                   for i, x in enumerate("ab")] + objects[5:]
    objects.append({"kind": "Namespace", "metadata": {"name": "web", "labels": {"istio-injection": "enabled"}}})
    rows[0]["source_workload_namespace"] = "web"
    web_off = {**batch_off, "metadata": {"name": "web-client-off", "namespace": "web"},
               "spec": {k: v for k, v in batch_off["spec"].items() if k != "selector"}}
    for scope in ((), ("shop",)):
        (missed,) = [p for p in judged([web_off], 100, scope=scope).problems if "Telemetry" in p.reason]
        assert "1 of its 2 calling workloads (web/web;" in missed.reason, scope
        assert "(90.0% of its requests)" in missed.reason and "Telemetry web/web-client-off" in missed.reason


def _selector_texts(spec: SloSpec) -> list[str]:
    from obsgap.slo.promql import shape

    return [sel.text() for q in spec.queries for sel in shape(q).selectors]


def test_grpc_failures_an_sli_classifies_by_http_status_count_as_good(tmp_path: Path,
                                                                    prometheus_available: None) -> None:
    """Pyrra's upstream ratio example counts istio_requests_total{response_code=~"4..|5.."} as errors. `search`
    serves gRPC: its failures (UNAVAILABLE, INTERNAL, NOT_FOUND) go out with HTTP status 200 and Istio labels them
    grpc_response_status: its errors selector matches no series and the SLI reads 0% errors while 7% of the calls
    failed. Broken (not a renamed selector: the emptiness is explained), with each status counted as the server side
    counted it, and the error ratio the SLI would show; served over HTTP (its 5xx counted), the same SLO is sound."""
    from dataclasses import replace

    from obsgap.scenario.spec import PortSpec
    from tests.helpers import run_scenario

    slo = (SLO_DATA / "pyrra-dynamic-burn-rate-ratio.yaml",)
    search = ServiceSpec("shop", "search", ports=(PortSpec("grpc", 8080, 8080),), error_rate=0.0,
                         grpc_errors=((14, 0.04), (13, 0.02), (5, 0.01)))
    spec = ScenarioSpec("grpc", (("shop", True),), (search, ServiceSpec("shop", "web")),
                        (FlowSpec("shop/web", "shop/search", 8080, 3.0),), hours=0.5, scrape_interval_s=30)
    run = run_scenario(spec, tmp_path, slo_paths=slo)
    (a,) = run.result.slos
    assert (a.verdict, [p.cause for p in a.problems]) == ("broken", ["grpc-errors-unseen"])
    failed = run.built.truth.grpc_failures["shop/search"]
    assert set(failed) == {14, 13, 5} and failed[14] > failed[13] > failed[5] > 0
    reason = a.problems[0].reason
    assert "UNAVAILABLE (14): " in reason and reason.index("UNAVAILABLE") < reason.index("INTERNAL (13)") \
        < reason.index("NOT_FOUND (5)")
    shown = float(reason.split(" counts ")[1].split(" gRPC calls")[0].replace(",", ""))
    assert shown == pytest.approx(sum(failed.values()), rel=0.05)
    would = float(reason.split("would be ")[1].split("%")[0]) / 100
    assert "error ratio over the window, 0.0%" in reason and would == pytest.approx(shown / a.requests_metric,
                                                                                     abs=0.001)
    # =~"4..|5.." means every status Envoy maps to an HTTP error: all but OK, seen tonight or not
    assert 'grpc_response_status=~"1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16"' in a.problems[0].fix
    (finding,) = run.findings("slo-untrustworthy")
    assert finding.cause == "grpc-errors-unseen" and finding.severity.value == "critical"
    http = replace(spec, services=(replace(search, ports=(PortSpec("http", 8080, 8080),), error_rate=0.02),
                                   spec.services[1]))
    assert [p.cause for p in run_scenario(http, tmp_path / "http", slo_paths=slo).result.slos[0].problems] == []


def test_grpc_failures_are_judged_only_where_the_sli_counts_them_as_its_query_does() -> None:
    """The gRPC failures are counted under the classifying selector's own matchers (its reporters, a
    request_protocol that excludes gRPC); an SLI that also classifies grpc_response_status, a selector picking series
    the query does not tell apart, a failed query or an odd status value are not judged (and a gRPC Service's SLO is
    then unverified, never trustworthy); a typo elsewhere in the selector still reads as matching nothing."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.evidence import MetricsEvidence
    from obsgap.sources.kube.build import build_topology
    from tests.helpers import k8s_pod, k8s_service

    topo = build_topology([k8s_service("search"), k8s_pod("search-0", "search", "10.0.0.1")])
    window = _spec()

    def row(reporter: str, status: str, value: float) -> dict[str, object]:
        return {"reporter": reporter, "destination_service_name": "search", "destination_service_namespace": "shop",
                "response_code": "200", "grpc_response_status": status, "value": value}

    failures = [row("destination", "14", 400.0), row("source", "14", 400.0), row("destination", "²", 9.0)]
    mesh = [{"reporter": "destination", "destination_service_name": "search", "destination_service_namespace": "shop",
             "request_protocol": "grpc", "value": 10000.0}]

    def judged(bad: str, total: str = 'istio_requests_total{destination_service_name="search"}',
               failed: bool = False, series: int = 0) -> Any:
        frames = {"mesh_requests": pd.DataFrame(mesh)} | ({} if failed else {"grpc_failures": pd.DataFrame(failures)})
        metrics = MetricsEvidence(frames, {"grpc_failures": "timeout"} if failed else {})
        spec = SloSpec("sloth", "s.yaml", "search", "search", 0.99, "30d", "ratio", f"sum(rate({total}[5m]))",
                       bad=bad if bad.startswith("sum(") else f"sum(rate({bad}[5m]))")
        sels = tuple((s.text(), series if "response_code" in s.text() else 10000)
                     for q in spec.queries for s in shape(q).selectors)
        measured = Measured(spec, None, sels, 10000.0, 0.0 if series else None, 0.0)
        ev = Evidence(Window(window.start, window.end), CheckSettings(), topo, metrics, None, slos=(measured,))
        (a,) = analyze(ev).slos
        return a

    from obsgap.slo.promql import shape

    server = judged('istio_requests_total{reporter="destination",destination_service_name="search",'
                    'response_code=~"5.."}')
    assert [p.cause for p in server.problems] == ["grpc-errors-unseen"] and server.grpc_judged
    assert " counts 400 gRPC calls " in server.problems[0].reason  # the server side's, not both sides' 800
    assert "would be 4.0%" in server.problems[0].reason
    both = judged('istio_requests_total{destination_service_name="search",response_code=~"5.."}',
                  total='istio_requests_total{destination_service_name="search"}')
    assert " counts 800 gRPC calls " in both.problems[0].reason  # no reporter matcher: both sides, as the SLI
    http_only = judged('istio_requests_total{destination_service_name="search",request_protocol="http",'
                       'response_code=~"5.."}')
    assert "grpc-errors-unseen" not in [p.cause for p in http_only.problems] and http_only.grpc_judged
    classified = judged('sum(rate(istio_requests_total{destination_service_name="search",response_code=~"5.."}[5m]))'
                        ' + sum(rate(istio_requests_total{destination_service_name="search",'
                        'grpc_response_status=~"14"}[5m]))')
    assert "grpc-errors-unseen" not in [p.cause for p in classified.problems]
    typo = judged('istio_requests_total{reporter="destinaton",destination_service_name="search",'
                  'response_code=~"5.."}')
    assert [p.cause for p in typo.problems] == ["selector-matches-nothing"]
    for unjudged in (judged('istio_requests_total{destination_workload="search-v2",response_code=~"5.."}',
                            series=3),
                     judged('istio_requests_total{destination_service_name="search",response_code=~"5.."}',
                            failed=True, series=3)):
        assert not unjudged.grpc_judged and unjudged.verdict == "unverified"
        assert "serve gRPC calls" in (unjudged.unverified_because or "")
        assert unjudged.as_dict()["unverified_because"] == unjudged.unverified_because


def test_a_latency_sli_counting_websockets_spends_its_budget_on_connection_lifetimes(
        tmp_path: Path, prometheus_available: None) -> None:
    """Pyrra's upstream latency example counts catalog's requests under le="300" in Istio's duration histogram.
    catalog upgrades 10% of its requests to WebSockets lasting minutes: Envoy records each when it closes, with its
    lifetime as its duration (below the top bound of 1 h: no saturation), so the SLI
    counts them slow and reads ~90% fast where every request was. Biased, with the share it would read."""
    from tests.helpers import run_scenario

    catalog = ServiceSpec("shop", "catalog", websocket_share=0.1,
                          istio_buckets=(5, 10, 25, 50, 100, 300, 1000, 10000, 600000, 3600000))
    spec = ScenarioSpec("ws", (("shop", True),), (catalog, ServiceSpec("shop", "web")),
                        (FlowSpec("shop/web", "shop/catalog", 8080, 3.0),), hours=0.5, scrape_interval_s=30)
    run = run_scenario(spec, tmp_path, slo_paths=(SLO_DATA / "pyrra-dynamic-burn-rate-latency.yaml",))
    (a,) = run.result.slos
    causes = [p.cause for p in a.problems]
    assert "websockets-counted-slow" in causes and "latency-saturated" not in causes and a.verdict == "biased"
    (p,) = [p for p in a.problems if p.cause == "websockets-counted-slow"]
    upgraded = run.built.truth.upgraded_requests["shop/catalog"]
    counted = float(p.reason.split(" of the events")[0].replace(",", ""))
    assert counted == pytest.approx(upgraded, rel=0.05)
    assert a.sli_metric is not None and 0.85 < a.sli_metric < 0.95
    would = float(p.reason.split("would be ")[1].split("%")[0]) / 100
    assert would > 0.99 and 'response_code!="101"' in p.fix


def test_websockets_are_counted_as_the_sli_counts_them_or_left_unknown() -> None:
    """catalog: 9,000 requests under 100 ms and 1,000 WebSocket connections of minutes, both sides reporting. The
    SLI's own reporters decide how many it counts; a good selector that leaves 101 out (the total keeps it) makes
    every one of them slow; a failed query leaves the SLO unverified (never trustworthy) and the cause unjudged; an
    SLI that already matches nothing is not also said to count WebSockets."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.evidence import MetricsEvidence
    from obsgap.slo.promql import shape
    from obsgap.sources.kube.build import build_topology
    from tests.helpers import k8s_pod, k8s_service

    topo = build_topology([k8s_service("catalog"), k8s_pod("catalog-0", "catalog", "10.0.0.1")])
    window = _spec()
    bounds = (100.0, 300.0, 3_600_000.0)
    upgrades = [{"le": le, "reporter": side, "destination_service_name": "catalog",
                 "destination_service_namespace": "shop", "value": n}
                for side in ("source", "destination") for le, n in (("100", 0.0), ("300", 0.0), ("3.6e+06", 1000.0),
                                                                     ("+Inf", 1000.0))]

    def judged(good: str, total: str, failed: bool = False, series: int = 3) -> Any:
        frames = {} if failed else {"upgraded_requests": pd.DataFrame(upgrades)}
        metrics = MetricsEvidence(frames, {"upgraded_requests": "timeout"} if failed else {})
        spec = SloSpec("pyrra", "p.yaml", "lat", "catalog", 0.99, "28d", "latency", f"sum(rate({total}[5m]))",
                       good=f"sum(rate({good}[5m]))")
        sides_total = 20000.0 if "reporter" not in total else 10000.0
        sels = tuple((s.text(), series) for q in spec.queries for s in shape(q).selectors)
        measured = Measured(spec, None, sels, sides_total, 0.1 * sides_total, 0.1, bounds=bounds,
                            bucket_counts=(0.9 * sides_total, 0.9 * sides_total, sides_total, sides_total))
        ev = Evidence(Window(window.start, window.end), CheckSettings(), topo, metrics, None, slos=(measured,))
        (a,) = analyze(ev).slos
        return a

    count = 'istio_request_duration_milliseconds_count{reporter="destination",destination_service_name="catalog"}'
    bucket = ('istio_request_duration_milliseconds_bucket{reporter="destination",destination_service_name="catalog",'
              'le="300"}')
    server = judged(bucket, count)
    (p,) = [p for p in server.problems if p.cause == "websockets-counted-slow"]
    assert p.reason.startswith("1,000 of the events") and "would be 100.0%" in p.reason and server.websockets_judged
    both = judged(bucket.replace('reporter="destination",', ""), count.replace('reporter="destination",', ""))
    assert [p.reason.split(" of")[0] for p in both.problems if p.cause == "websockets-counted-slow"] == ["2,000"]
    no_101 = judged(bucket.replace('le="300"', 'le="300",response_code!="101"'), count)
    assert [p.reason.split(" of")[0] for p in no_101.problems if p.cause == "websockets-counted-slow"] == ["1,000"]
    left_out = judged(bucket, count.replace('"catalog"', '"catalog",response_code!="101"'))
    assert "websockets-counted-slow" not in [p.cause for p in left_out.problems]
    unknown = judged(bucket, count, failed=True)
    assert not unknown.websockets_judged and unknown.verdict == "unverified"
    assert "WebSocket connections it counts could not be told" in (unknown.unverified_because or "")
    unreadable = judged(bucket, count.replace('"catalog"', '"catalog",response_code=~"[[:digit:]]+"'))
    assert not unreadable.websockets_judged  # a regex RE2 and Python read differently: not judged
    assert "websockets-counted-slow" not in [p.cause for p in unknown.problems]
    empty = judged(bucket, count, series=0)
    assert "websockets-counted-slow" not in [p.cause for p in empty.problems] and empty.verdict == "broken"
