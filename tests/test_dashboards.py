"""dashboard-double-counts on a real Prometheus: a published guide's dashboard adds up the caller's and the server's
count of the same requests; Istio's own dashboards, which select one side, are not named."""

from __future__ import annotations

from pathlib import Path

from obsgap.checks.dashboard_double_count import one_side
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
    run = run_scenario(spec, tmp_path, logs=False, dashboards=(GUIDE, *ISTIO))
    assert next(c for c in run.result.checks if c.check == "dashboard-double-counts").status == "ran"
    (f,) = run.findings("dashboard-double-counts")
    assert (f.evidence["dashboard"], f.cause, f.evidence["queries"]) == ("API Monitoring", "sums-reporters", 3)
    assert f.evidence["reporters"] == ["destination", "source", "waypoint"]  # no reporter matcher: every one
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
    matcher = 'reporter="destination"'
    assert one_side("sum(rate(istio_requests_total[5m]))", matcher) == \
        'sum(rate(istio_requests_total{reporter="destination"}[5m]))'
    assert one_side('sum(istio_tcp_sent_bytes_total{reporter=~"source|destination", a="x,y"}) + sum(istio_build)',
                    matcher) == 'sum(istio_tcp_sent_bytes_total{reporter="destination", a="x,y"}) + sum(istio_build)'
