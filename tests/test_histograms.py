"""histogram-inf-saturation against a real Prometheus, with the truth of the simulated latencies."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
import requests
import yaml

from obsgap.checks.histograms import _annotation_problems
from obsgap.scenario.spec import ENVOY_DEFAULT_BUCKETS, FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.suggest import configs
from obsgap.suggest.buckets import Distribution, histogram_quantile, nice_ceil, suggest_from_buckets
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import run_scenario, sources_json

pytestmark = pytest.mark.usefixtures("prometheus_available")
END = datetime(2026, 11, 24, tzinfo=UTC)
SLOS = (300.0, 30000.0)


def spec_with(*services: ServiceSpec, hours: float = 1.0) -> ScenarioSpec:
    flows = tuple(FlowSpec("ai/client", s.key, 8080, 1.0) for s in services)
    return ScenarioSpec("h", (("ai", True),), (ServiceSpec("ai", "client"), *services), flows, end=END, hours=hours,
                        scrape_interval_s=30)


@pytest.fixture(scope="module")
def slow_mesh(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from obsgap.scenario.simulate import build

    spec = spec_with(
        ServiceSpec("ai", "inference", latency_median_ms=12000, latency_sigma=0.6, metrics_port=8000,
                    app_histogram="inference_request_duration_seconds",
                    istio_buckets=(5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)),
        ServiceSpec("ai", "fast", latency_median_ms=20, latency_sigma=0.5),           # healthy: silent
        ServiceSpec("ai", "dark", latency_median_ms=1800, latency_sigma=0.4, app_logs="none",
                    envoy_access_logs=False, istio_buckets=(1, 5, 10, 50, 100, 500, 1000)),
        ServiceSpec("ai", "broken-anno", extra_annotations=((configs.STATS_BUCKETS_ANNOTATION,
                                                             '{"istiocustom": [10, 5, 0], "clustr": [1]}'),)))
    tmp = tmp_path_factory.mktemp("hist")
    built = build(spec, tmp / "h")
    server = serve_openmetrics(built.metrics, tmp / "h")
    yield spec, built, server, tmp
    server.stop()


def _run(slow_mesh, **settings):  # type: ignore[no-untyped-def]
    spec, built, server, tmp = slow_mesh
    return run_scenario(spec, tmp, server=server, built=built, **settings)


def test_findings_and_silence(slow_mesh) -> None:  # type: ignore[no-untyped-def]
    run = _run(slow_mesh, slo_latency_ms=SLOS)
    got = {(f.metric, f.service, f.cause) for f in run.findings("histogram-inf-saturation")}
    assert got == {("istio_request_duration_milliseconds", "inference", None),
                   ("inference_request_duration_seconds", "inference", None),
                   ("istio_request_duration_milliseconds", "dark", None),
                   (None, None, "invalid-bucket-annotation")}


def test_stated_errors_match_the_true_latency_distribution(slow_mesh) -> None:  # type: ignore[no-untyped-def]
    run = _run(slow_mesh, slo_latency_ms=SLOS)
    true = np.array(run.built.truth.latencies_ms["ai/inference"])
    f = next(f for f in run.findings("histogram-inf-saturation")
             if f.metric == "istio_request_duration_milliseconds" and f.service == "inference")
    ev = f.evidence
    assert ev["inf_share"] == pytest.approx(float(np.mean(true > 10000)), abs=0.01)
    assert ev["top_finite_bound"] == 10000 and ev["suggestion_basis"] == "logs"
    buckets = ev["suggested_buckets"]
    assert set(SLOS) <= set(buckets) and len(buckets) <= 15 and buckets == sorted(buckets)
    assert buckets[-1] >= np.percentile(true, 99.9)
    for q in ("p50", "p90", "p99"):
        truth = float(np.percentile(true, int(q[1:])))
        err = ev["quantile_error"][q]
        assert err["reported"] <= 10000  # what histogram_quantile can say with the old layout
        assert err["true"] == pytest.approx(truth, rel=0.03)  # what the logs say, on a 2% grid
        assert err["suggested"] == pytest.approx(truth, rel=0.10)  # what the suggestion would say
    assert ev["series_cost_before"] == ev["series"] * (len(ev["buckets"]) + 3)
    cfg = f.suggestion.config or ""
    anno = yaml.safe_load(cfg.split("\n\n")[0])["spec"]["template"]["metadata"]["annotations"]
    assert json.loads(anno[configs.STATS_BUCKETS_ANNOTATION]) == {"istiocustom": buckets}
    envoy = yaml.safe_load(cfg.split("\n\n")[1])["stats_config"]["histogram_bucket_settings"][0]
    assert envoy == {"match": {"prefix": "istiocustom"}, "buckets": buckets}


def test_app_histogram_in_seconds_gets_client_snippets(slow_mesh) -> None:  # type: ignore[no-untyped-def]
    run = _run(slow_mesh, slo_latency_ms=SLOS)
    f = next(f for f in run.findings("histogram-inf-saturation") if f.metric == "inference_request_duration_seconds")
    ev = f.evidence
    assert ev["unit"] == "s" and ev["top_finite_bound"] == 10.0 and 0.3 in ev["suggested_buckets"]
    true = np.array(run.built.truth.latencies_ms["ai/inference"]) / 1000
    assert ev["quantile_error"]["p99"]["suggested"] == pytest.approx(np.percentile(true, 99), rel=0.1)
    python, go = (f.suggestion.config or "").split("\n\n")[:2]
    compile(python, "<snippet>", "exec")
    assert "Buckets: []float64{" in go and f.job == "kubernetes-pods" and f.resource == "Service ai/inference"


def test_without_logs_the_suggestion_is_extrapolated(slow_mesh) -> None:  # type: ignore[no-untyped-def]
    run = _run(slow_mesh)
    f = next(f for f in run.findings("histogram-inf-saturation") if f.service == "dark")
    assert f.evidence["suggestion_basis"] == "extrapolated" and "extrapolated" in f.detail
    assert f.evidence["suggested_buckets"][-1] >= 10 * 1000
    true = np.array(run.built.truth.latencies_ms["ai/dark"])
    assert f.evidence["inf_share"] == pytest.approx(float(np.mean(true > 1000)), abs=0.02)


def test_our_quantile_equals_prometheus_histogram_quantile(slow_mesh) -> None:  # type: ignore[no-untyped-def]
    spec, _built, server, _tmp = slow_mesh
    run = _run(slow_mesh)
    f = next(f for f in run.findings("histogram-inf-saturation") if f.service == "dark")
    for q in (0.5, 0.9):
        promql = (f'histogram_quantile({q}, sum by (le) (increase(istio_request_duration_milliseconds_bucket'
                  f'{{reporter="destination",destination_service_name="dark"}}[3600s])))')
        body = requests.get(f"{server.url}/api/v1/query", params={"query": promql, "time": spec.end.timestamp()},
                            timeout=10).json()
        theirs = float(body["data"]["result"][0]["value"][1])
        ours = histogram_quantile(q, f.evidence["buckets"], f.evidence["cumulative"])
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_waste_reported_only_above_the_series_threshold(slow_mesh) -> None:  # type: ignore[no-untyped-def]
    quiet = _run(slow_mesh)
    assert not [f for f in quiet.findings("histogram-inf-saturation") if "/waste/" in f.subject]
    loud = _run(slow_mesh, waste_series=1)
    waste = [f for f in loud.findings("histogram-inf-saturation") if "/waste/" in f.subject]
    by_metric = {f.metric: f for f in waste}
    # Envoy's defaults up to 3,600,000 ms, and prometheus_client's sub-second buckets for a 12 s service
    assert set(by_metric) == {"istio_request_duration_milliseconds", "inference_request_duration_seconds"}
    assert 3600000 in by_metric["istio_request_duration_milliseconds"].evidence["empty_buckets"]
    assert 0.005 in by_metric["inference_request_duration_seconds"].evidence["empty_buckets"]
    for f in waste:
        assert f.evidence["series_cost_after"] < f.evidence["series_cost_before"]


@pytest.mark.parametrize("raw,problem", [
    ('{"istiocustom": [1, 5, 10]}', None),
    ('{"istiocustom": [1, 5, 10], "cluster.xds-grpc": [1, 10]}', None),
    ('{"istiocustom": [1, 5, 10]', "not valid JSON"),
    ('[1, 5, 10]', "JSON object"),
    ('{"istio": [1, 5]}', "unknown stat prefix"),
    ('{"istiocustom": [10, 5]}', "strictly increasing"),
    ('{"istiocustom": [0, 5]}', "positive"),
    ('{"istiocustom": ["1", "5"]}', "list of numbers"),
])
def test_annotation_validation(raw: str, problem: str | None) -> None:
    problems = _annotation_problems(raw)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_histogram_quantile_edge_cases() -> None:
    bounds = list(ENVOY_DEFAULT_BUCKETS[:5])  # 0.5 1 5 10 25
    assert histogram_quantile(0.5, bounds, [0, 0, 0, 0, 0, 10]) == 25  # all in +Inf: the top bound
    assert histogram_quantile(0.5, bounds, [0, 10, 10, 10, 10, 10]) == pytest.approx(0.75)
    assert histogram_quantile(0.5, bounds, [0, 0, 0, 0, 0, 0]) is None
    dist = Distribution(((1.0, 5.0), (2.0, 5.0)))
    assert dist.cumulative([1.5, 3]) == [5.0, 10.0, 10.0] and dist.quantile(0.9) == 2.0
    assert nice_ceil(7300) == 10000 and nice_ceil(2100) == 2500 and nice_ceil(0.03) == 0.05
    ext = suggest_from_buckets([1, 10, 100], [1, 2, 3, 10], slos=[50])
    assert 50 in ext and ext[-1] == 2500 and not math.isinf(ext[-1])


def test_advice_and_scrape_interval_do_not_move_when_the_window_grows(slow_mesh) -> None:  # type: ignore[no-untyped-def]
    """Same data, longer windows (before and after it): the same suggestions, the same scrape interval."""
    from datetime import timedelta

    from obsgap import engine
    from obsgap.config import RunPlan
    from obsgap.evidence import CheckSettings
    from obsgap.model import Window
    from obsgap.sources.prometheus import PrometheusOptions

    spec, built, server, _tmp = slow_mesh
    seen = []
    for before, after in ((0, 0), (2, 0), (1, 2)):
        window = Window(spec.start - timedelta(hours=before), spec.end + timedelta(hours=after))
        result = engine.run(RunPlan(window=window, prometheus=PrometheusOptions(url=server.url),
                                    kube_snapshots=(built.topology,), logs=(str(built.logs),),
                                    only_checks=("histogram-inf-saturation",),
                                    settings=CheckSettings(slo_latency_ms=SLOS))).result
        advice = {(f.metric, f.service): tuple(f.evidence["suggested_buckets"]) for f in result.findings
                  if "suggested_buckets" in f.evidence}
        assert sources_json(result)["prometheus"]["scrape_interval_seconds"] == pytest.approx(30, rel=0.01), window
        seen.append(advice)
    assert len(seen[0]) == 3 and seen[0] == seen[1] == seen[2]


def test_a_histograms_series_count_that_failed_is_unknown() -> None:
    """Where the count of a family's series failed (or was not taken), its bucket waste cannot be costed: no waste
    finding, and the waste is not examined (so a waste finding of an earlier run is not "resolved"); a saturation
    finding's series and costs are null, not 0."""
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.histograms import HistogramInfSaturation
    from obsgap.evidence import CheckSettings, Evidence, MetricsEvidence
    from obsgap.model import Topology, Window

    family = "istio_request_duration_milliseconds"
    cumulative = zip(["1", "5", "10", "50", "100", "500", "1000", "+Inf"], [0, 0, 0, 0, 0, 0, 100, 300], strict=True)
    buckets = pd.DataFrame([{"le": le, "reporter": "destination", "destination_service_namespace": "shop",
                             "destination_service_name": "api", "value": float(c)} for le, c in cumulative])
    end = datetime(2026, 11, 24, tzinfo=UTC)
    seen = {}
    for label, counted in (("counted", {family: 50_000}), ("failed", {})):
        ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings(), Topology.empty(),
                      MetricsEvidence({}, histograms={family: buckets}, histogram_series=counted))
        inputs = CheckInputs(ev, analyze(ev), frozenset(HistogramInfSaturation.queries))
        found = HistogramInfSaturation.run(inputs)
        seen[label] = ({type(f.evidence).__name__: f.evidence.series for f in found},  # type: ignore[attr-defined]
                       sorted(HistogramInfSaturation.examined(inputs)))
        for f in found:
            assert HistogramInfSaturation.keys_of({"metric": f.metric, "evidence": f.evidence.as_dict()}) == (
                ("waste:" if type(f.evidence).__name__ == "BucketWasteEvidence" else "metric:") + family,)
    assert seen["counted"] == ({"SaturationEvidence": 50_000, "BucketWasteEvidence": 50_000},
                               [f"metric:{family}", f"waste:{family}"])
    assert seen["failed"] == ({"SaturationEvidence": None}, [f"metric:{family}"])


def test_bucket_annotations_are_judged_only_where_pods_were_listed() -> None:
    """An invalid sidecar.istio.io/statsHistogramBuckets annotation is read from the pods: where the API refused to
    list Pods, its namespace is not examined (an earlier night's finding is carried, not resolved)."""
    from datetime import timedelta

    from obsgap.analysis import analyze
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.histograms import HistogramInfSaturation
    from obsgap.evidence import CheckSettings, Evidence, MetricsEvidence
    from obsgap.model import Window
    from obsgap.sources.kube.build import build_topology

    objects = [{"kind": "Namespace", "metadata": {"name": "shop"}},
               {"kind": "Service", "metadata": {"name": "api", "namespace": "shop"}, "spec": {"ports": [{"port": 80}]}}]
    end = datetime(2026, 11, 24, tzinfo=UTC)
    examined = {}
    for label, unread in (("listed", {}), ("refused", {"Pod": "Pod: list forbidden (HTTP 403)"})):
        ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings(), build_topology(objects, (), unread),
                      MetricsEvidence({}))
        examined[label] = HistogramInfSaturation.examined(CheckInputs(ev, analyze(ev)))
    assert examined == {"listed": frozenset({"shop"}), "refused": frozenset()}


def test_websocket_connections_in_inf_are_not_called_slow_requests(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`chat` upgrades 10% of its requests to WebSockets lasting minutes, under buckets topping at 10 s: Envoy
    records each when its connection closes, with its lifetime as its duration, so they fill +Inf. They are counted
    bound by bound (the histogram's response_code="101" series): the finding says so (cause long-lived-streams,
    info) and asks to leave response_code="101" out of latency queries, not for buckets of minutes. `mixed` has
    WebSockets and requests slower than the top bound: both are said, the saturation of the rest with an
    extrapolated layout (its logged durations hold the lifetimes); `slow` alone is a saturation as before."""
    top10s = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
    spec = spec_with(ServiceSpec("ai", "chat", websocket_share=0.1, istio_buckets=top10s),
                     ServiceSpec("ai", "mixed", websocket_share=0.1, latency_median_ms=8000, latency_sigma=0.6,
                                 istio_buckets=top10s),
                     ServiceSpec("ai", "slow", latency_median_ms=12000, latency_sigma=0.6, istio_buckets=top10s),
                     hours=0.5)
    run = run_scenario(spec, tmp_path)
    found = {(f.service, f.cause): f for f in run.findings("histogram-inf-saturation")}
    assert set(found) == {("chat", "long-lived-streams"), ("mixed", "long-lived-streams"), ("mixed", None),
                          ("slow", None)}
    chat = found[("chat", "long-lived-streams")]
    upgraded = run.built.truth.upgraded_requests["ai/chat"]
    assert chat.evidence["websockets_above_top"] == pytest.approx(upgraded, rel=0.05)
    assert chat.evidence["above_top"] == pytest.approx(upgraded, rel=0.05)  # every upgrade, and nothing else
    assert chat.severity.value == "info" and chat.suggestion is not None
    assert 'response_code!="101"' in chat.suggestion.text and not chat.suggestion.snippets
    rest = found[("mixed", None)]
    assert rest.evidence["suggestion_basis"] == "extrapolated"  # the logged durations hold the lifetimes
    websockets = found[("mixed", "long-lived-streams")].evidence["websockets_above_top"]
    assert rest.evidence["observations"] == pytest.approx(
        run.built.truth.mesh_destination_requests["ai/mixed"] - run.built.truth.upgraded_requests["ai/mixed"],
        rel=0.05) and websockets == pytest.approx(run.built.truth.upgraded_requests["ai/mixed"], rel=0.05)
    assert found[("slow", None)].suggestion is not None
    assert "Use buckets up to" in found[("slow", None)].suggestion.text
    from tests.helpers import unexamined

    assert unexamined(run.result) == []  # the WebSocket findings are judged under their own key, websockets:<family>
    run_check = next(c for c in run.result.checks if c.check == "histogram-inf-saturation")
    assert "websockets:istio_request_duration_milliseconds" in (run_check.examined or ())


def test_a_saturation_whose_websockets_could_not_be_counted_says_so() -> None:
    """Where the upgraded_requests query failed, +Inf may hold WebSocket lifetimes the logs cannot tell apart: the
    saturation's layout is extrapolated, not taken from logged durations, and the detail says what is unknown."""
    from obsgap.analysis import analyze
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.histograms import _Hist, _judged
    from obsgap.evidence import CheckSettings, Evidence, MetricsEvidence
    from obsgap.model import Window

    metrics = MetricsEvidence({}, {"upgraded_requests": "timeout"})
    from datetime import timedelta

    ev = Evidence(Window(END - timedelta(hours=1), END), CheckSettings(), None, metrics, None)
    inputs = CheckInputs(ev, analyze(ev), frozenset({"scrape_targets", "upgraded_requests"}))
    h = _Hist("istio_request_duration_milliseconds", ("ai", "chat"), [100.0, 10000.0], [900.0, 900.0, 1000.0])
    (found,) = _judged(h, None, inputs, unknown=True)
    assert found.cause is None and found.evidence["suggestion_basis"] == "extrapolated"
    assert "Whether +Inf holds WebSocket connections" in found.detail and "query failed" in found.detail
