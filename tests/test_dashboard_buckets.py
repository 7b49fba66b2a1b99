"""dashboard-reads-missing-bucket on a real Prometheus: iter8's "less than 500 ms" query (le='500') as a recording
rule Prometheus evaluates, and a dashboard's panels, on the same mesh stored with Prometheus 2's bucket spelling and
with Prometheus 3's (`le="500.0"`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from obsgap.checks.dashboard_buckets import fixed_query
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import Run, run_scenario, unexamined

DATA = Path(__file__).resolve().parent / "data" / "istio" / "guides"
ITER8 = (DATA / "iter8-le500ms-latency-percentile.promql").read_text().strip()
_WORKLOAD = json.loads((DATA.parent / "addons" / "istio-workload-dashboard.json").read_text())
WORKLOAD_P50 = next(t["expr"] for p in _WORKLOAD["panels"] for row in [p, *p.get("panels", [])]
                    for t in row.get("targets", []) if "istio_request_duration_seconds_bucket" in t.get("expr", ""))
"""Istio's Workload Dashboard's p50: the milliseconds histogram `or` the seconds one Istio's proxies exported
before 1.5 (the second half alone is what a dashboard from then reads)."""


def _mesh(tmp: Path, prometheus3: bool) -> Run:
    spec = ScenarioSpec(
        f"buckets{int(prometheus3)}", (("shop", True),),
        (ServiceSpec("shop", "client"), ServiceSpec("shop", "web")),
        (FlowSpec("shop/client", "shop/web", 8080, 2.0),), hours=0.25, prometheus3=prometheus3)
    rules = tmp / "iter8.yml"  # iter8's metric query, its template filled as iter8 fills it, recorded
    query = ITER8.replace("${elapsedTime}", "600").replace("$namespace", "shop").replace("$name", "web")
    rules.write_text(yaml.safe_dump({"groups": [{"name": "iter8-istio", "rules": [
        {"record": "iter8:le500ms_latency_percentile", "expr": query}]}]}))
    dashboard = tmp / "latency.json"
    dashboard.write_text(json.dumps({"title": "Latency SLO", "panels": [
        {"title": "Under 300 ms", "targets": [{"expr": (
            'sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",le="300"}[5m])) / '
            'sum(rate(istio_request_duration_milliseconds_count{reporter="destination"}[5m]))')}]},
        {"title": "Under half a millisecond", "targets": [{"expr": (
            'sum(rate(istio_request_duration_milliseconds_bucket{le="0.5"}[5m]))')}]},
        {"title": "Either spelling", "targets": [{"expr": (
            'sum(rate(istio_request_duration_milliseconds_bucket{le=~"500(\\\\.0)?"}[5m]))')}]},
        {"title": "Viewer's bound", "targets": [{"expr": (
            'sum(rate(istio_request_duration_milliseconds_bucket{le="$bound"}[5m]))')}]},
        {"title": "p50 (Istio 1.4)", "targets": [{"expr": WORKLOAD_P50.split(" or ", 1)[1]}]},
        {"title": "p50", "targets": [{"expr": WORKLOAD_P50}]}]}))
    built = build(spec, tmp / spec.name)
    server = serve_openmetrics(built.metrics, tmp / spec.name, rule_files=(rules,))
    try:
        whole = run_scenario(spec, tmp, logs=False, dashboards=(dashboard,), server=server, built=built)
        scoped = run_scenario(spec, tmp / "scoped", logs=False, dashboards=(dashboard,), server=server, built=built,
                              namespaces=("shop",))
    finally:
        server.stop()
    return whole, scoped


@pytest.fixture(scope="module")
def meshes(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None) -> dict[bool, tuple[Run, Run]]:
    return {p3: _mesh(tmp_path_factory.mktemp(f"p{int(p3)}"), p3) for p3 in (False, True)}


@pytest.fixture(scope="module")
def runs(meshes: dict[bool, tuple[Run, Run]]) -> dict[bool, Run]:
    return {p3: whole for p3, (whole, _) in meshes.items()}


def test_a_bound_prometheus_3_spells_otherwise_reads_nothing(runs: dict[bool, Run]) -> None:
    """On Prometheus 3 iter8's le='500' selects no series (the bound is stored as `500.0`): its ratio reads 0 for
    every version (`or on() vector(0)`). Named with the matcher that reads both spellings; on Prometheus 2 the same
    rule is not named. le="0.5" is spelled alike by both; a regex for both and a variable's bound are left alone."""
    p3 = {f.evidence["dashboard"]: f for f in runs[True].findings("dashboard-reads-missing-bucket")}
    p2 = {f.evidence["dashboard"]: f for f in runs[False].findings("dashboard-reads-missing-bucket")}
    iter8 = p3["iter8-istio"]
    assert (iter8.cause, iter8.evidence["queries"], iter8.evidence["matchers"]) == (
        "bound-respelled", 1, ['le="500"'])
    assert iter8.title == 'rule group iter8-istio: 1 rule selects le="500", which this Prometheus stores as ' \
        'le="500.0"'
    assert "500.0" in iter8.evidence["bounds"] and "500" not in iter8.evidence["bounds"]
    (example,) = iter8.evidence["examples"]
    assert example["fixed"] is not None and "le=~\"500(\\\\.0)?\"" in example["fixed"]
    assert 'le="+Inf"' in example["fixed"]  # the other bound, spelled alike by both, is left as written
    assert "iter8-istio" not in p2
    for run in runs.values():
        assert unexamined(run.result) == []


@pytest.mark.parametrize("p3", [False, True], ids=["prometheus2", "prometheus3"])
def test_a_bound_the_histogram_does_not_have(runs: dict[bool, Run], p3: bool) -> None:
    """le="300" is no bound of Istio's default buckets (250, 500) on either Prometheus: the panel divides nothing by
    the requests. The nearest bounds are named; the dashboard's other panels are not."""
    (latency,) = [f for f in runs[p3].findings("dashboard-reads-missing-bucket")
                  if f.evidence["dashboard"] == "Latency SLO"]
    assert (latency.cause, latency.evidence["panels"], latency.evidence["matchers"]) == (
        "not-a-bucket-bound", ["Under 300 ms"], ['le="300"'])
    assert latency.suggestion is not None and "(250 and 500 ms are the nearest)" in latency.suggestion.text
    assert ("500.0" if p3 else "500") in latency.evidence["bounds"]
    ran = next(c for c in runs[p3].result.checks if c.check == "dashboard-reads-missing-bucket")
    assert ran.status == "ran" and "dashboard:Latency SLO/not-a-bucket-bound" in (ran.examined or ())


def test_under_a_namespace_scope_a_missing_bound_is_not_judged(meshes: dict[bool, tuple[Run, Run]]) -> None:
    """Under -n the buckets read are those of the namespaces in scope: a bound the others may have is not called
    missing, and last night's finding of it is neither resolved nor named again; a respelled bound (one Prometheus
    spells every series alike) is still named."""
    from obsgap.checks.dashboard_buckets import DashboardReadsMissingBucket
    from obsgap.render.json_out import finding_dict

    whole, scoped = meshes[True]
    before = {f.cause: f for f in whole.findings("dashboard-reads-missing-bucket")}
    after = {(f.evidence["dashboard"], f.cause) for f in scoped.findings("dashboard-reads-missing-bucket")}
    assert after == {("iter8-istio", "bound-respelled")}
    examined = next(c for c in scoped.result.checks if c.check == "dashboard-reads-missing-bucket").examined or ()
    keys = DashboardReadsMissingBucket.keys_of(finding_dict(before["not-a-bucket-bound"]))
    assert keys == ("dashboard:Latency SLO/not-a-bucket-bound",) and not set(keys) & set(examined)
    assert "dashboard:Latency SLO/bound-respelled" in examined


def test_the_fix_replaces_only_the_respelled_matchers() -> None:
    """Only an `le="500"` outside strings: not one inside another label's value, not `scale=`, `le=~`, `le!=`."""
    fixes = {("=", "500"): 'le=~"500(\\\\.0)?"'}
    assert fixed_query("a{le='500'} / b{le=\"500\", x=\"le=\\\"500\\\"\"} / c{le=\"250\"}", fixes) == \
        'a{le=~"500(\\\\.0)?"} / b{le=~"500(\\\\.0)?", x="le=\\"500\\""} / c{le="250"}'
    assert fixed_query("a{x=\"le='500'\", scale=\"500\", le=~\"500\", y='le=\"500\"'} + b{le=`500`}", fixes) == \
        "a{x=\"le='500'\", scale=\"500\", le=~\"500\", y='le=\"500\"'} + b{le=~\"500(\\\\.0)?\"}"
    assert fixed_query('a{le="250"}', fixes) is None


P3 = ("0.5", "1.0", "250.0", "500.0", "1000.0", "+Inf")
P2 = ("0.5", "1", "250", "500", "1000", "+Inf")


def _judged(expr: str, stored: tuple[str, ...], annotated: frozenset[float] = frozenset()) -> list[tuple[str, str]]:
    from obsgap.checks.dashboard_buckets import _judge, _Scope
    from obsgap.model import PanelQuery

    found, _ = _judge(PanelQuery("d", "p", expr), {"istio_request_duration_milliseconds": stored},
                      _Scope(False, annotated))
    return [(m.cause, str(m.fix)) for m in found]


def test_spellings_queries_written_for_both_and_idle_pods_buckets() -> None:
    """A regex that reads one spelling only is respelled too; a bound written otherwise than either Prometheus
    stores it (`0.50`) is fixed to the stored spelling, not blamed on the upgrade; a query that `or`s both
    spellings reads the bound; a bound a pod's statsHistogramBuckets declares (an idle canary has no series yet) is
    not called missing; `le!="+Inf"` and `le="+Inf"` read buckets."""
    m = "istio_request_duration_milliseconds_bucket"
    assert _judged(f'sum({m}{{le=~"250|500"}})', P3) == [("bound-respelled", 'le=~"250(\\\\.0)?|500(\\\\.0)?"')]
    assert _judged(f'sum({m}{{le="0.50"}})', P3) == [("bound-respelled", 'le="0.5"')]
    assert _judged(f'sum({m}{{le="500.0"}})', P2) == [("bound-respelled", 'le=~"500(\\\\.0)?"')]
    assert _judged(f'sum({m}{{le="500"}}) or sum({m}{{le="500.0"}})', P3) == []
    assert _judged(f'sum({m}{{le="300"}})', P2) == [("not-a-bucket-bound", "None")]
    assert _judged(f'sum({m}{{le="300"}})', P2, frozenset({300.0})) == []
    assert _judged(f'sum({m}{{le!="+Inf"}}) / sum({m}{{le="+Inf"}})', P3) == []


def test_a_metric_istio_no_longer_exports(runs: dict[bool, Run]) -> None:
    """The seconds half of Istio's own p50 query, as a dashboard from before Istio 1.5 holds it, reads a metric no
    proxy exports and no series of the window has: named, with the milliseconds histogram that replaced it. The
    whole query (`... or` the seconds name) reads the milliseconds histogram and is not."""
    for run in runs.values():
        (f,) = [f for f in run.findings("dashboard-reads-unknown-name") if f.evidence["dashboard"] == "Latency SLO"]
        assert (f.cause, f.evidence["panels"]) == ("unknown-metric", ["p50 (Istio 1.4)"])
        assert f.evidence["names"] == [{"label": "__name__", "matcher": "istio_request_duration_seconds_bucket",
                                        "closest": "istio_request_duration_milliseconds_bucket", "namespaces": []}]
        assert f.title.startswith("Latency SLO: 1 query reads istio_request_duration_seconds_bucket, a metric")
        assert "renamed istio_request_duration_seconds" in f.detail
