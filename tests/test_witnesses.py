"""Witnesses beyond logs (issue 23): the services' own request metrics and an eBPF agent (OBI/Beyla) in a real
Prometheus find the same gaps as logs, with the same causes; each family's schema is held against its upstream
source (tests/data/witnesses); witnesses that disagree are reported."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from obsgap import engine
from obsgap.cli import main
from obsgap.config import RunPlan
from obsgap.model import Window
from obsgap.result import ScanResult
from obsgap.scenario import witnesses as sim
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, PortSpec, ScenarioSpec
from obsgap.scenario.spec import ServiceSpec as S
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.sources.witnesses import parse_witness_metric
from obsgap.testbed.promserver import serve_openmetrics
from obsgap.witness import KNOWN_FAMILIES, WitnessFamily

DATA = Path(__file__).resolve().parent / "data" / "witnesses"
OTEL, MICROMETER, OTEL_MS = ("http_server_request_duration_seconds", "http_server_requests_seconds",
                             "http_server_duration_milliseconds")
FASTAPI, DJANGO, FLASK = ("http_requests_total", "django_http_responses_total_by_status_view_method_total",
                          "flask_http_request_duration_seconds")
ECHO, GIN = "echo_requests_total", "gin_uri_request_total"
CUSTOM_FLAG = "shop_http_served_total:status=result,status_form=class,route=route_path"
GAPS = {("envoy-bypass", "no-sidecar/inject-annotation", "recommend"),
        ("envoy-bypass", "no-sidecar/namespace-not-enabled", "billing"),
        ("envoy-bypass", "no-sidecar/host-network", "agent"),
        ("port-missing-from-metrics", "port-treated-as-tcp", "orders"),
        ("port-missing-from-metrics", "port-excluded", "inventory"),
        ("port-missing-from-metrics", "port-not-declared", "admin")}
HEALTHY = ("cart", "search", "checkout", "catalog", "admin")


def _family(name: str) -> WitnessFamily:
    return next(f for f in KNOWN_FAMILIES if f.name == name)


APP = tuple(f for f in KNOWN_FAMILIES if f.kind == "app-metrics")
OBI = (_family("obi"),)
HUBBLE = (_family("hubble"),)


def _spec() -> ScenarioSpec:
    return ScenarioSpec(
        "witnesses", (("shop", True), ("legacy", False)),
        (S("shop", "web", app_metrics=OTEL), S("shop", "cart", app_metrics=MICROMETER),
         S("shop", "search", app_metrics=OTEL_MS),
         S("shop", "checkout", app_metrics=OTEL, app_metrics_loss=0.3),  # its middleware misses 30% (a router)
         S("shop", "catalog", app_metrics=sim.CUSTOM),  # a metric obsgap knows only by --witness-metric
         S("shop", "recommend", inject="false", app_metrics=FASTAPI),
         S("legacy", "billing", app_metrics=DJANGO),
         S("shop", "agent", host_network=True, replicas=1, app_metrics=FLASK),
         S("shop", "orders", ports=(PortSpec("tcp-api", 9000, 9000),), app_metrics=ECHO),
         S("shop", "inventory", exclude_inbound_ports=(8080,), app_metrics=GIN),
         S("shop", "inference", latency_median_ms=15000, latency_sigma=0.3, app_metrics=OTEL),
         S("shop", "admin", ports=(PortSpec("http", 8080, 8080), PortSpec("http-admin", 9090, 9090, declared=False)),
           app_metrics=MICROMETER)),  # serves on a port no Service declares: a metric without ports counts both
        (FlowSpec("external", "shop/web", 8080, 2.0), FlowSpec("shop/web", "shop/cart", 8080, 1.5),
         FlowSpec("shop/web", "shop/search", 8080, 1.0), FlowSpec("shop/web", "shop/checkout", 8080, 1.0),
         FlowSpec("shop/web", "shop/catalog", 8080, 1.0), FlowSpec("shop/web", "shop/recommend", 8080, 1.0),
         FlowSpec("shop/web", "legacy/billing", 8080, 0.5), FlowSpec("shop/web", "shop/agent", 8080, 0.5),
         FlowSpec("shop/web", "shop/orders", 9000, 0.5), FlowSpec("shop/web", "shop/inventory", 8080, 0.5),
         FlowSpec("shop/web", "shop/inference", 8080, 0.3), FlowSpec("shop/web", "shop/admin", 8080, 1.0),
         FlowSpec("shop/web", "shop/admin", 9090, 0.5, address="pod-ip")),
        end=datetime(2026, 11, 24, tzinfo=UTC), hours=0.5, scrape_interval_s=30, ebpf=("obi", "hubble"))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    spec = _spec()
    tmp = tmp_path_factory.mktemp("witnesses")
    built = build(spec, tmp / "mesh")
    server = serve_openmetrics(built.metrics, tmp / "mesh")
    yield spec, built, server, tmp
    server.stop()


def _run(mesh: Any, *, logs: bool, families: tuple[WitnessFamily, ...], known: bool = False) -> ScanResult:
    spec, built, server, tmp = mesh
    return engine.run(RunPlan(
        window=Window(spec.start, spec.end), out_dir=tmp / "out", prometheus=PrometheusOptions(url=server.url),
        kube_snapshots=(built.topology,), logs=(str(built.logs),) if logs else (), witness_families=families,
        known_witnesses=known)).result


@pytest.fixture(scope="module")
def runs(mesh) -> dict[str, ScanResult]:  # type: ignore[no-untyped-def]
    custom = parse_witness_metric(CUSTOM_FLAG)
    return {"logs": _run(mesh, logs=True, families=()),
            "app-metrics": _run(mesh, logs=False, families=(*APP, custom)),
            "obi": _run(mesh, logs=False, families=OBI),
            "hubble": _run(mesh, logs=False, families=HUBBLE),
            "all": _run(mesh, logs=True, families=(custom,), known=True)}


def test_every_finding_is_examined_under_its_own_keys(runs) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import unexamined

    assert {name: unexamined(result) for name, result in runs.items()} == {name: [] for name in runs}


def _gaps(result: ScanResult) -> set[tuple[str, str | None, str | None]]:
    return {(f.check, f.cause, f.service) for f in result.findings
            if f.check in ("envoy-bypass", "port-missing-from-metrics") and f.cause != "caller-outside-mesh"}


@pytest.mark.parametrize("witness", ["app-metrics", "obi", "hubble"])
def test_without_logs_a_metric_witness_finds_the_same_gaps(runs, witness: str) -> None:  # type: ignore[no-untyped-def]
    """No logs: the services' own metrics alone, then OBI's alone, then Hubble's alone, find every bypass and port
    gap with the causes the logs give on the same mesh; the healthy services stay quiet."""
    assert _gaps(runs["logs"]) == GAPS
    result = runs[witness]
    assert result.status == "complete", result.status_reasons
    assert _gaps(result) == GAPS
    quiet = {f.service for f in result.findings if f.check in ("envoy-bypass", "port-missing-from-metrics",
                                                               "metrics-exceed-logs", "witness-undercounts")
             and (f.check, f.cause, f.service) not in GAPS} & set(HEALTHY)
    assert quiet == set()
    rows = {r.service: r for r in result.coverage}
    for svc in ("cart", "search", "catalog", "admin"):
        assert rows[svc].witness.startswith(f"ebpf:{witness}" if witness != "app-metrics" else "app-metrics:"), svc
        assert rows[svc].ratio == pytest.approx(1.0, abs=0.03), svc  # admin: its undeclared port's too, both sides
    for svc in ("recommend", "billing", "agent"):
        assert rows[svc].mesh == 0 and rows[svc].ratio == 0.0
    doc = next(f for f in result.findings if f.cause == "no-sidecar/inject-annotation")
    assert doc.evidence["witness"] == rows["recommend"].witness and doc.evidence["log_requests"] > 0


def test_each_family_counts_what_the_framework_served(runs, mesh) -> None:  # type: ignore[no-untyped-def]
    """Per service, each witness's count equals what it really counted, kubelet's probes left out (by their route,
    or, for django-prometheus whose views are no paths, by their periods)."""
    _, built, _, _ = mesh
    truth = built.truth.witness_requests
    rows = {r.service: r for r in runs["all"].coverage}
    for key, n in truth[f"app-metrics:{DJANGO}"].items():
        assert rows[key.split("/")[1]].witnesses[f"app-metrics:{DJANGO}"] == n
    checked = 0
    for witness, per_service in truth.items():
        for key, n in per_service.items():
            name = witness if witness != f"app-metrics:{sim.CUSTOM}" else "app-metrics:shop_http_served_total"
            got = rows[key.split("/")[1]].witnesses.get(name)
            assert got == pytest.approx(n, abs=2), (witness, key)
            checked += 1
    assert checked >= 20
    report = {w.witness: w for w in runs["all"].sources.prometheus.witnesses}
    assert set(report) >= {f"app-metrics:{f}" for f in (OTEL, MICROMETER, OTEL_MS, FASTAPI, DJANGO, FLASK, ECHO, GIN)}
    assert report["ebpf:obi"].pods == sum(s.replicas for s in built.spec.services)


def test_logs_and_a_metric_witness_that_disagree(runs, mesh) -> None:  # type: ignore[no-untyped-def]
    """checkout's middleware misses 30% of its requests: with its logs beside it, that witness is reported as
    undercounting, the coverage rests on the logs, and nothing else about checkout is an alarm."""
    _, built, _, _ = mesh
    result = runs["all"]
    (f,) = [f for f in result.findings if f.check == "witness-undercounts"]
    assert (f.service, f.cause) == ("checkout", "app-metrics")
    assert f.evidence["witness"] == "app-metrics:http_server_request_duration_seconds"
    assert f.evidence["reference_witness"] == "server-logs"
    truth = built.truth
    assert f.evidence["reference_requests"] == truth.server_requests["shop/checkout"]
    assert f.evidence["observed_requests"] == truth.witness_requests[
        "app-metrics:http_server_request_duration_seconds"]["shop/checkout"]
    assert 0.6 < f.evidence["ratio"] < 0.8
    row = next(r for r in result.coverage if r.service == "checkout")
    assert row.witness == "server-logs" and row.ratio == pytest.approx(1.0, abs=0.03)
    assert {g.check for g in result.findings if g.service == "checkout"} == {"witness-undercounts"}
    # every other service's witnesses agree: logs, its own metric and OBI
    assert all(len(set(r.witnesses.values()) - {r.witnesses.get("caller-sidecar-metrics")}) <= 1
               for r in result.coverage if r.service not in ("checkout", "web", "orders", "inventory"))


def test_witness_histograms_saturate_like_any_other(runs) -> None:  # type: ignore[no-untyped-def]
    """OpenTelemetry's and OBI's default buckets end at 10 s: a 15 s inference service piles into +Inf in both."""
    found = {(f.metric, f.service, f.subject.endswith("/ebpf")): f for f in runs["all"].findings
             if f.check == "histogram-inf-saturation" and f.evidence.get("inf_share") is not None}
    sdk = found[(OTEL, "inference", False)]
    obi = found[(OTEL, "inference", True)]
    for f in (sdk, obi):
        assert f.evidence["top_finite_bound"] == 10 and f.evidence["inf_share"] > 0.5
    assert "seen by OBI" in obi.title and "prometheus_export:" in (obi.suggestion.config or "")
    assert "duration_histogram:" in (obi.suggestion.config or "")


def test_the_query_count_does_not_grow_with_pods(runs) -> None:  # type: ignore[no-untyped-def]
    """One query per witness family present, whatever the services and pods."""
    prom = runs["all"].sources.prometheus
    witness_queries = [q for q in prom.peak_samples if q.startswith("witness_requests:")]
    # 8 frameworks, the flag's, OBI (its SDK twin shares the name, not the query), Hubble
    assert len(witness_queries) == len(prom.witnesses) == 11


def test_family_schemas_match_their_upstream_sources() -> None:
    """Every known family's metric and labels appear in the upstream excerpt that documents it."""
    files = {OTEL: "otel.txt", OTEL_MS: "otel.txt", MICROMETER: "spring_micrometer.txt",
             FASTAPI: "fastapi_instrumentator.txt", DJANGO: "django_prometheus.txt",
             FLASK: "prometheus_flask_exporter.txt", ECHO: "echo.txt", GIN: "gin.txt", "gin_requests_total": "gin.txt",
             "obi": "obi_k8s_decoration_test.txt otel.txt",
             "hubble": "hubble_http_handler_test.go.txt hubble_context.go_excerpt_labels_context_list.txt"}
    assert set(files) == {f.name for f in KNOWN_FAMILIES}
    # OpenTelemetry's Prometheus names follow its naming rules (dots to underscores, the unit's word appended): the
    # excerpt holds the instruments, their units and the rule's own test (http.request.duration, ms ->
    # http_request_duration_milliseconds)
    otel_names = {OTEL: "http.server.request.duration", OTEL_MS: "http.server.duration"}
    # go-gin-prometheus builds its name from a subsystem ("gin" by default) and `requests_total`
    composed = {"gin_requests_total": 'Name:        "requests_total"'}
    rule = (DATA / "otel.txt").read_text()
    assert "http_request_duration_milliseconds" in rule and '"ms"' in rule and "`s`" in rule
    for family in KNOWN_FAMILIES:
        text = "\n".join((DATA / f).read_text() for f in files[family.name].split())  # OBI: red_test.go in otel.txt
        name = otel_names.get(family.name) or composed.get(family.name) or \
            family.series.removesuffix("_count").removesuffix("_total")
        assert name in text, family.name
        # an app's `namespace` and `pod` are the scrape target's (the Prometheus config's), not the framework's
        for label in (x for x in family.group_by if family.kind == "ebpf" or x not in ("namespace", "pod")):
            seen = text.replace(".", "_") if family.name in otel_names else text  # attributes: dots to underscores
            assert re.search(rf"\b{re.escape(label)}\b", seen), (family.name, label)
    golden = (DATA / "fastapi_instrumentator.txt").read_text()
    assert 'status="2xx"' in golden and _family(FASTAPI).status_form == "class"
    hubble = (DATA / "hubble_http_handler_test.go.txt").read_text()
    assert 'destination="destination-ns/destination-deploy-pod"' in hubble and 'reporter="server"' in hubble
    assert _family("hubble").pod_form == "namespace/pod"
    assert "duration_histogram" in (DATA / "obi_vendored_bucket.go.txt").read_text()


def test_witness_metric_flag_reads_an_unknown_family(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec, built, server, _ = mesh
    args = ["report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology), "--start",
            spec.start.isoformat(), "--end", spec.end.isoformat(), "-n", "shop", "--check", "envoy-bypass"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--witness-metric", CUSTOM_FLAG])
    doc = json.loads((tmp_path / "a" / "findings.json").read_text())
    rows = {r["service"]: r for r in doc["coverage"]}
    assert rows["catalog"]["witnesses"]["app-metrics:shop_http_served_total"] == \
        built.truth.witness_requests[f"app-metrics:{sim.CUSTOM}"]["shop/catalog"], res.output
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    rows = {r["service"]: r for r in json.loads((tmp_path / "b" / "findings.json").read_text())["coverage"]}
    assert "app-metrics:shop_http_served_total" not in rows["catalog"]["witnesses"]


@pytest.mark.parametrize("value,message", [
    ("my metric", "is not a metric name"),
    ("x_total:colour=red", "is not KEY=VALUE with KEY one of"),
    ("x_total:status=1abc", "status='1abc' is not a label name"),
    ("x_total:status_form=percent", "status_form is code or class"),
    ("x_total:kind=ebpf", "an ebpf witness needs agent=NAME"),
])
def test_a_bad_witness_metric_is_a_clear_error(value: str, message: str) -> None:
    res = CliRunner().invoke(main, ["report", "--kube-snapshot", "x.json", "--witness-metric", value])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_a_witness_is_rechecked_only_where_it_was_read_beside_another() -> None:
    """api's logs count 1,000, its own metric 1,000, the eBPF agent 400: obi undercounts. A night when obi's query
    failed does not judge obi (the finding is carried, not resolved: it was keyed by the service, still examined by
    the other two). And a pod whose logs were not read at all is unknown to the logs, not a shortfall of theirs (the
    logs were said to count 50% fewer than the metric, with the fix for access-log filters)."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.checks.witness_undercounts import WitnessUndercounts
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence, LogEvidence, MetricsEvidence
    from obsgap.history import History, compare, past_findings
    from obsgap.render.json_out import finding_dict
    from obsgap.sources.kube.build import build_topology
    from obsgap.witness import WitnessCounts
    from tests.helpers import k8s_pod, k8s_service

    topo = build_topology([k8s_service("api"), k8s_pod("api-0", "api", "10.0.0.1"),
                           k8s_pod("api-1", "api", "10.0.0.2")])
    app = WitnessFamily("http_server_requests", "http_server_requests_total", "app-metrics", port_label="port",
                        route_label="route")
    obi = WitnessFamily("obi", "http_server_request_duration_seconds_count", "ebpf", "k8s_namespace_name",
                        "k8s_pod_name", port_label="port", route_label="route", agent="obi")

    def counts(family: WitnessFamily, **per_pod: int) -> WitnessCounts:
        return WitnessCounts(family, pd.DataFrame([{"namespace": "shop", "pod": p.replace("_", "-"), "port": 8080.0,
                                                    "route": "/x", "requests": float(n), "errors": 0.0}
                                                   for p, n in per_pod.items()]))

    def logs(**per_pod: int) -> LogEvidence:
        return LogEvidence(pd.DataFrame([{"namespace": "shop", "pod": p.replace("_", "-"), "container": "istio-proxy",
                                          "origin": "envoy", "port": 8080, "http": True, "http_requests": n,
                                          "requests": n, "errors": 0, "first_ms": 0, "last_ms": 1}
                                         for p, n in per_pod.items()]), pd.DataFrame(), pd.DataFrame())

    end = datetime(2026, 11, 24, tzinfo=UTC)

    def night(metrics: MetricsEvidence, evidence_logs: LogEvidence):  # type: ignore[no-untyped-def]
        ev = Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(), topo, metrics, evidence_logs)
        return run_checks((WitnessUndercounts,), ev, analyze(ev))

    both = logs(api_0=500, api_1=500)
    _, found = night(MetricsEvidence({}, witnesses=(counts(app, api_0=500, api_1=500),
                                                    counts(obi, api_0=200, api_1=200))), both)
    assert [(f.cause, f.evidence["witness"]) for f in found] == [("ebpf", "ebpf:obi")]
    history = History("yesterday", past_findings({"findings": [finding_dict(f) for f in found]}))
    runs, tonight = night(MetricsEvidence({}, failed={"witness_requests:ebpf:obi": "query witness_requests: timeout"},
                                          witnesses=(counts(app, api_0=500, api_1=500),)), both)
    outcome = compare(history, [f.id for f in tonight], runs)
    assert tonight == () and outcome.resolved == () and len(outcome.not_rechecked) == 1
    _, one_pod_logged = night(MetricsEvidence({}, witnesses=(counts(app, api_0=500, api_1=500),)), logs(api_0=500))
    assert one_pod_logged == ()
