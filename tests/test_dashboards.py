"""dashboard-double-counts on a real Prometheus: a published guide's dashboard adds up the caller's and the server's
count of the same requests; Istio's own dashboards, which select one side, are not named."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from obsgap.checks.dashboard_double_count import _Counts, _measured, one_side
from obsgap.evidence import CheckSettings
from obsgap.model import PanelQuery
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from tests.helpers import run_scenario

DATA = Path(__file__).resolve().parent / "data" / "istio"
GUIDE = DATA / "guides" / "api-monitoring-dashboard.json"
ISTIO = tuple(DATA / "addons" / name for name in (
    "istio-mesh-dashboard.gen.json", "istio-service-dashboard.json", "istio-workload-dashboard.json"))


def test_a_guides_dashboard_adds_up_both_sides_and_istios_own_do_not(tmp_path: Path,
                                                                     prometheus_available: None) -> None:
    """The guide's three panels (rate, 5xx rate, p99 per Service in namespace `default`) read every reporter: a
    request from `client`'s sidecar to `api` is counted twice, one from outside the mesh to `web` once. The ratio is
    measured on the window's series as the queries select them, and matches the simulated truth; `pay`'s requests,
    in another namespace, are outside the queries' matchers and do not count. Istio's dashboards select one side
    (or a $qrep the viewer sets) and are not named."""
    spec = ScenarioSpec(
        "double", (("default", True), ("pay", True)),
        (ServiceSpec("default", "client"), ServiceSpec("default", "api"), ServiceSpec("default", "web"),
         ServiceSpec("pay", "ledger")),
        (FlowSpec("default/client", "default/api", 8080, 2.0), FlowSpec("external", "default/web", 8080, 1.0),
         FlowSpec("default/client", "pay/ledger", 8080, 3.0)),
        hours=0.5, scrape_interval_s=15)
    unmeasured = tmp_path / "by-app.json"  # destination_app picks callers and Services: the counts lack it
    unmeasured.write_text(json.dumps({"title": "By app", "panels": [{"title": "rate", "targets": [
        {"expr": 'sum(rate(istio_requests_total{destination_app="web"}[5m]))'}]}]}))
    run = run_scenario(spec, tmp_path, logs=False, dashboards=(GUIDE, *ISTIO, unmeasured))
    ran = next(c for c in run.result.checks if c.check == "dashboard-double-counts")
    assert ran.status == "ran"
    # judged: the Mesh Dashboard's TCP panels (reporter=~"source|waypoint") read no series here, so it is not
    # judged whole, nor is the query over destination_app
    assert ran.examined == {"dashboard:API Monitoring", "dashboard:Istio Service Dashboard",
                            "dashboard:Istio Workload Dashboard"}
    (f,) = run.findings("dashboard-double-counts")
    assert (f.evidence["dashboard"], f.cause, f.evidence["queries"]) == ("API Monitoring", "sums-reporters", 3)
    assert f.evidence["reporters"] == ["destination", "source", "waypoint"]  # no reporter matcher: every one
    # the 5xx panel is measured over every response code (the counts read carry none); the p99 panel blends
    assert (f.evidence["estimated"], f.evidence["blended"]) == (["response_code"], 1)
    assert abs(f.evidence["one_side"] - f.evidence["requests"]) <= 0.01 * f.evidence["requests"]
    truth = run.built.truth
    api, web = truth.mesh_destination_requests["default/api"], truth.mesh_destination_requests["default/web"]
    assert truth.mesh_source_requests["default/api"] == api  # every api request counted by both sidecars
    expected = (2 * api + web) / (api + web)
    assert abs(f.evidence["ratio"] - expected) < 0.02 * expected, (f.evidence, expected)
    assert abs(f.evidence["requests"] - (api + web)) < 0.03 * (api + web)
    assert f.title == "API Monitoring: 3 queries add up the caller's and the server's count of the same requests " \
        f"(up to {f.evidence['ratio']:.1f}x)"
    fixed = {e["panel"]: e["fixed"] for e in f.evidence["examples"]}
    assert fixed["Request Rate"] == ('sum(rate(istio_requests_total{reporter="destination", '
                                     'destination_service_namespace="default"}[5m])) by (destination_service_name)')
    assert f.suggestion is not None and f.suggestion.config is not None
    assert 'reporter="destination"' in f.suggestion.text


def test_the_fix_gives_each_istio_selector_one_side() -> None:
    """Selectors that read both sides get one; those already on one side (a deliberate reporter="source"), recording
    rules named after Istio's metrics, and other metrics are left as written; a result that is not PromQL is none."""
    matcher = {"l7": 'reporter=~"destination|waypoint"', "tcp": 'reporter="destination"'}
    assert one_side("sum(rate(istio_requests_total[$__rate_interval]))", matcher) == \
        'sum(rate(istio_requests_total{reporter=~"destination|waypoint"}[$__rate_interval]))'
    assert one_side("sum(istio_tcp_sent_bytes_total{reporter=~'source|destination', a=\"x,{y}\"}) + sum(istio_build)",
                    matcher) == 'sum(istio_tcp_sent_bytes_total{reporter="destination", a="x,{y}"}) + sum(istio_build)'
    ratio = ('sum(rate(istio_requests_total{reporter="source",response_code=~"5.."}[5m])) / '
             "sum(rate(istio_requests_total[5m])) + sum(cluster:istio_requests_total:rate5m)")
    assert one_side(ratio, matcher) == ('sum(rate(istio_requests_total{reporter="source",response_code=~"5.."}[5m]))'
                                        ' / sum(rate(istio_requests_total{reporter=~"destination|waypoint"}[5m])) + '
                                        "sum(cluster:istio_requests_total:rate5m)")
    assert one_side('sum(rate({__name__="istio_requests_total"}[5m]))', matcher) is None


def _row(reporter: str, caller: str, service: str, value: float) -> dict[str, object]:
    """A series of queries/mesh_requests.promql as the engine reads it (labels, then `value`)."""
    return {"reporter": reporter, "source_workload": caller, "source_workload_namespace": "default",
            "destination_service_name": service, "destination_service_namespace": "default",
            "destination_service": f"{service}.default.svc.cluster.local", "destination_workload": service,
            "destination_workload_namespace": "default", "request_protocol": "http", "destination_port": "8080",
            "namespace": "default", "pod": f"{caller}-0", "value": value}


def test_what_a_query_reads_is_measured_or_left_unjudged() -> None:
    """client -> api counted by both sidecars, outside -> web by web's alone, client -> legacy (no sidecar) by the
    client's alone. Matchers on labels the counts lack are unjudged unless both sides give them alike and they do not
    pick callers or Services; `topk` keeps the sides apart for an outer sum to add; a ratio blends."""
    frame = pd.DataFrame([_row("source", "client", "api", 100), _row("destination", "client", "api", 100),
                          _row("destination", "unknown", "web", 100), _row("source", "client", "legacy", 100)])
    columns = frozenset(frame.columns) - {"value"}
    counts = {"l7": _Counts(frame, columns, frozenset({"destination"})),
              "tcp": _Counts(frame.iloc[0:0], frozenset(), frozenset({"destination"}))}
    inputs = type("Inputs", (), {"settings": CheckSettings()})()

    def measured(expr: str) -> tuple[object, bool]:
        return _measured(PanelQuery("D", "p", expr), counts, inputs)  # type: ignore[arg-type]

    found, complete = measured("sum(rate(istio_requests_total[5m]))")
    assert complete and found is not None and (found.counted, found.requests, found.one_side) == (400, 300, 200)
    assert not found.blended and found.estimated == ()
    for unjudged in ('destination_app="web"', 'connection_security_policy="mutual_tls"', 'instance="10.0.0.1:15020"',
                     'destination_service_name=~"[[:alpha:]]+"'):
        assert measured(f"sum(rate(istio_requests_total{{{unjudged}}}[5m]))") == (None, False), unjudged
    found, complete = measured('sum(rate(istio_requests_total{response_code=~"5.."}[5m]))')
    assert complete and found is not None and found.estimated == ("response_code",)
    assert measured('sum(rate(istio_requests_total{destination_service_name="web"}[5m]))') == (None, True)
    found, _ = measured("sum(topk(5, rate(istio_requests_total[5m])))")
    assert found is not None
    found, _ = measured('sum(rate(istio_requests_total{response_code=~"5.."}[5m])) / sum(rate(istio_requests_total'
                        '[5m]))')
    assert found is not None and found.blended
    assert measured('sum by (reporter) (rate(istio_requests_total[5m]))') == (None, True)
    assert measured('sum(rate(istio_requests_total{reporter=~"$qrep"}[5m]))') == (None, True)  # the viewer's side
