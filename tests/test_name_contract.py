"""The name contract: agreement with istioctl analyze on Istio's own test inputs, bookinfo, job names."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from obsgap import engine
from obsgap.checks.job_names import closest, normalize
from obsgap.config import RunPlan
from obsgap.model import Window
from obsgap.report.build import build_report
from obsgap.result import ScanResult
from obsgap.scenario.demo import demo_dashboard, demo_spec
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import k8s_pod, k8s_service, sources_json

GATEWAY_API = Path(__file__).parent / "data" / "gateway_api"

WINDOW = Window(datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))


def analyze(tmp: Path, *files: Path, **plan: object) -> ScanResult:
    return engine.run(RunPlan(window=WINDOW, out_dir=tmp, kube_snapshots=files, **plan)).result  # type: ignore[arg-type]


# What istioctl's analyzer tests expect (pkg/config/analysis/analyzers/analyzers_test.go at the snapshot commit),
# per input file: the IST codes compared, and the (code, resource) messages expected for those codes. Each
# upstream test runs one analyzer; `kinds` selects the matching part of obsgap's IST0101 check.
ISTIOCTL_EXPECTED = {
    "injection.yaml": ({"IST0102", "IST0103"}, None,
                       [("IST0102", "Namespace bar"), ("IST0103", "Pod default/noninjectedpod")]),
    "service-no-port-name.yaml": ({"IST0118"}, None,
                                  [("IST0118", "Service my-namespace1/my-service1"),
                                   ("IST0118", "Service my-namespace1/my-service1"),
                                   ("IST0118", "Service my-namespace2/my-service2")]),
    "service-port-name.yaml": ({"IST0118"}, None, []),
    "destinationrule-subsets-not-select-pods.yaml": (
        {"IST0173"}, None, [("IST0173", "DestinationRule default/subsets-not-select-pods")]),
    "destinationrule-with-fake-host.yaml": ({"IST0174"}, None, [("IST0174", "DestinationRule default/fake-host")]),
    "virtualservice_destinationhosts.yaml": ({"IST0101"}, {"host", "port"}, [
        ("IST0101", "VirtualService default/reviews-bogushost"),
        ("IST0101", "VirtualService default/reviews-bogushost"),
        ("IST0101", "VirtualService default/reviews-bookinfo-other"),
        ("IST0101", "VirtualService default/reviews-mirror-bogushost"),
        ("IST0101", "VirtualService default/reviews-bogusport"),
        ("IST0101", "VirtualService istio-system/cross-namespace-details"),
        ("IST0101", "VirtualService hello/hello-export-to-bogus")]),
    # issue 11, section 7 (tests/data/istio/PROVENANCE.md): Istio's own services are no IST0118; ExternalName ports
    # are IST0150 instead; `image: auto` is a placeholder, not a sidecar; subsets match node-augmented labels.
    "service-no-port-name-system-namespace.yaml": ({"IST0118"}, None, []),
    "incorrect-port-name-external-name-service-type.yaml": ({"IST0118", "IST0150"}, None, [
        ("IST0150", "Service nginx-ns/nginx"), ("IST0150", "Service nginx-ns2/nginx-svc2"),
        ("IST0150", "Service nginx-ns3/nginx-svc3")]),
    "correct-port-name-external-name-service-type.yaml": ({"IST0118", "IST0150"}, None, []),
    "image-auto.yaml": ({"IST0146", "IST0147", "IST0103"}, None, [
        ("IST0146", "Deployment not-injected/non-injected-gateway-deployment"),
        ("IST0147", "Pod default/injected-pod")]),
    "destinationrule-subsets-with-topology-labels.yaml": ({"IST0173"}, None, []),
    "destinationrule-empty-topology-labels.yaml": ({"IST0173"}, None, [
        ("IST0173", "DestinationRule default/empty-topology-labels")]),
    "virtualservice_destinationrules.yaml": ({"IST0101"}, {"subset"}, [
        ("IST0101", "VirtualService default/reviews-bogussubset"),
        ("IST0101", "VirtualService default/reviews-mirror-bogussubset")]),
}


@pytest.mark.parametrize("name", sorted(ISTIOCTL_EXPECTED))
def test_agrees_with_istioctl_analyze(realworld: Path, tmp_path: Path, name: str) -> None:
    codes, kinds, expected = ISTIOCTL_EXPECTED[name]
    result = analyze(tmp_path, realworld / "istio-analyzers" / name)
    got = Counter((f.istio_code, f.resource) for f in result.findings
                  if f.istio_code in codes and (kinds is None or f.evidence.get("kind") in kinds))
    assert got == Counter(expected)
    assert not [c for c in result.checks if c.status == "error"]


def test_image_auto_is_a_placeholder_not_a_sidecar(realworld: Path) -> None:
    from obsgap.sources.kube.build import build_topology
    from obsgap.sources.kube.snapshot import load_snapshot

    topo = build_topology(*load_snapshot([realworld / "istio-analyzers" / "image-auto.yaml"]))
    pod = next(p for p in topo.pods if p.name == "injected-pod")
    assert not pod.sidecar.present and pod.sidecar.placeholder
    assert pod.sidecar.reason == "no-sidecar/namespace-not-enabled" and "image `auto`" in pod.sidecar.evidence
    node_pod = build_topology(*load_snapshot([realworld / "istio-analyzers" /
                                              "destinationrule-subsets-with-topology-labels.yaml"])).pods[0]
    assert node_pod.subset_labels == {"app": "httpbin", "version": "v1", "kubernetes.io/hostname": "test-node",
                                      "topology.kubernetes.io/region": "us-west-1",
                                      "topology.kubernetes.io/zone": "us-west-1a"}


def test_every_realworld_input_runs_without_errors(realworld: Path, tmp_path: Path) -> None:
    for f in sorted((realworld / "istio-analyzers").glob("*.yaml")):
        result = analyze(tmp_path, f)
        assert [c.check for c in result.checks if c.status == "error"] == [], f.name
        assert all(fi.resource for fi in result.findings if fi.istio_code), f.name


def test_bookinfo_canary_without_outlier_detection(realworld: Path, tmp_path: Path) -> None:
    b = realworld / "bookinfo"
    result = analyze(tmp_path, b / "bookinfo.yaml", b / "destination-rule-all.yaml",
                     b / "virtual-service-reviews-v2-v3.yaml")
    by_check = Counter(f.check for f in result.findings)
    assert by_check["canary-without-outlier-detection"] == 1
    canary = next(f for f in result.findings if f.check == "canary-without-outlier-detection")
    assert canary.resource == "DestinationRule default/reviews" and canary.service == "reviews"
    assert set(canary.evidence["subsets"]) == {"v2 (50%)", "v3 (50%)"}
    assert "per client Envoy" in canary.detail and "outlierDetection" in (canary.suggestion.config or "")
    # destination-rule-all.yaml declares subsets bookinfo.yaml never deploys; the rest match pod templates
    unmatched = {f.evidence["subset"] + "@" + f.service for f in result.findings
                 if f.check == "destinationrule-subset-unmatched"}
    assert unmatched == {"v2@details", "v2@ratings", "v2-mysql@ratings", "v2-mysql-vm@ratings"}
    for quiet in ("virtualservice-host-unresolved",
                  "destinationrule-host-unresolved", "port-name-convention"):
        assert by_check[quiet] == 0, quiet
    contract = {r.service: r for r in result.contract}
    kinds = Counter(link.kind for link in contract["reviews"].links)
    assert kinds["subset"] == 3 and kinds["destinationrule"] == 1 and kinds["virtualservice"] == 2


def test_bookinfo_all_v1_is_healthy(realworld: Path, tmp_path: Path) -> None:
    b = realworld / "bookinfo"
    result = analyze(tmp_path, b / "bookinfo.yaml", b / "destination-rule-all.yaml", b / "virtual-service-all-v1.yaml")
    assert {f.check for f in result.findings} == {"destinationrule-subset-unmatched"}  # the undeployed subsets
    assert not [f for f in result.findings if f.evidence.get("subset") == "v1"]


@pytest.mark.parametrize("job,namespace,names,want", [
    ("payments-svc", "pay", ["payments", "ledger"], "payments"),
    ("pay-payments-metrics", "pay", ["payments", "ledger"], "payments"),
    ("pay/payments-podmonitor", "pay", ["payments"], "payments"),
    ("paymnts", None, ["payments", "ledger"], "payments"),
])
def test_closest_service(job: str, namespace: str | None, names: list[str], want: str) -> None:
    assert closest(job, namespace, names) == want


def test_normalize() -> None:
    assert normalize("Cart_Service") == "cart" and normalize("shop-cart-svc", "shop") == "cart"


@pytest.fixture(scope="module")
def jobs_mesh(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    spec = ScenarioSpec(
        "jobs", (("shop", True),),
        (ServiceSpec("shop", "payments", job="payments-svc"), ServiceSpec("shop", "cart", job="checkout"),
         ServiceSpec("shop", "checkout", job="checkout"), ServiceSpec("shop", "catalog", job="shop/catalog-pods"),
         ServiceSpec("shop", "search", job="search"), ServiceSpec("shop", "web")),
        (FlowSpec("shop/web", "shop/payments", 8080, 0.5),), end=WINDOW.end, hours=0.5, scrape_interval_s=30)
    tmp = tmp_path_factory.mktemp("jobs")
    built = build(spec, tmp / "jobs")
    server = serve_openmetrics(built.metrics, tmp / "jobs")
    yield spec, built, server, tmp
    server.stop()


def test_job_names_against_real_prometheus(jobs_mesh, realworld: Path) -> None:  # type: ignore[no-untyped-def]
    spec, built, server, tmp = jobs_mesh
    dash = tmp / "dash.json"
    dash.write_text(json.dumps(demo_dashboard()))
    result = engine.run(RunPlan(window=Window(spec.start, spec.end), out_dir=tmp / "out",
                                prometheus=PrometheusOptions(url=server.url), kube_snapshots=(built.topology,),
                                dashboards=(dash, realworld / "addons"))).result
    found = {f.job: f for f in result.findings if f.check == "job-name-mismatch"}
    # payments-svc names no service; checkout scrapes cart's pods too (named after another service);
    # kubernetes-pods (web), search (ServiceMonitor style) and shop/catalog-pods (PodMonitor) are fine
    assert set(found) == {"payments-svc", "checkout"}
    assert found["payments-svc"].evidence["suggested_service"] == "payments"
    assert found["payments-svc"].evidence["dashboards"] == ["Payments SLO / Payments availability"]
    assert len(found["payments-svc"].evidence["targets"]) == 2
    assert "Service shop/checkout" in found["checkout"].detail and found["checkout"].service == "cart"
    assert sources_json(result)["kubernetes"]["dashboards"]["queries"] > 50  # Istio's three dashboards parsed too
    contract = {r.service: r for r in build_report(result).contract}  # the links joined to the findings
    (job,) = [link for link in contract["payments"].links if link.kind == "job" and link.broken]
    assert job.finding_ids == (found["payments-svc"].id,)  # the broken link leads to its finding


def test_demo_shows_every_name_contract_finding(tmp_path: Path, prometheus_available: None) -> None:
    spec = demo_spec(WINDOW.end, hours=0.25)
    built = build(spec, tmp_path / "demo")
    dash = tmp_path / "dash.json"
    dash.write_text(json.dumps(demo_dashboard()))
    server = serve_openmetrics(built.metrics, tmp_path / "demo")
    try:
        result = engine.run(RunPlan(window=Window(spec.start, spec.end), out_dir=tmp_path / "out",
                                    prometheus=PrometheusOptions(url=server.url), kube_snapshots=(built.topology,),
                                    dashboards=(dash,))).result
    finally:
        server.stop()
    got = {(f.check, f.resource) for f in result.findings}
    assert {("job-name-mismatch", "Service payments/payments"),
            ("canary-without-outlier-detection", "DestinationRule shop/catalog"),
            ("destinationrule-subset-unmatched", "DestinationRule shop/catalog"),
            ("virtualservice-host-unresolved", "VirtualService web/storefront-to-catalog"),
            ("port-name-convention", "Service legacy/ledger"),
            ("namespace-not-injected", "Namespace legacy")} <= got
    assert not [c for c in result.checks if c.status == "error"]
    # every broken link of the contract table leads to the finding about that very object (typed references)
    by_id = {f.id: f for f in result.findings}
    links = {(link.kind, link.name): link for row in build_report(result).contract for link in row.links}
    job = links[("job", "payments-svc")]
    assert job.broken and {(by_id[i].check, by_id[i].job) for i in job.finding_ids} == {("job-name-mismatch",
                                                                                          "payments-svc")}
    ledger = links[("service", "ledger.legacy.svc.cluster.local")]
    assert ledger.broken and {by_id[i].check for i in ledger.finding_ids} == {"port-name-convention"}
    subsets = [link for (kind, _), link in links.items() if kind == "subset" and link.broken]
    assert subsets and all(by_id[i].check == "destinationrule-subset-unmatched"
                           for link in subsets for i in link.finding_ids)
    for link in links.values():
        assert all(i in by_id for i in link.finding_ids)


def _config_findings(topo, scope: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """(findings of the config checks, the name contract's rows) as sets of comparable tuples."""
    from obsgap.analysis import analyze as analysis_of
    from obsgap.checks import REGISTRY
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence

    ev = Evidence(WINDOW, CheckSettings(namespaces=scope), topo)
    analysis = analysis_of(ev)
    runs, found = run_checks(tuple(c for c in REGISTRY if c.needs == ("topology",)), ev, analysis)
    assert [r.check for r in runs if r.status == "error"] == []
    contract = {(row.namespace, row.service, tuple(sorted((x.kind, x.name, x.how, x.broken) for x in row.links)))
                for row in analysis.contract}
    return {(f.namespace, f.check, f.subject, f.title) for f in found} | contract


def test_a_namespace_in_scope_is_judged_as_in_the_whole_cluster(realworld: Path) -> None:
    """`-n NS` judges the config of NS as the whole cluster's run judges it: a DestinationRule, VirtualService or
    route in scope that names a Service or DestinationRule of another namespace is not 'unknown' (they were dropped
    with their namespace), and routes of other namespaces are not judged; the name contract of a Service in scope
    lists the VirtualServices and routes of other namespaces that name it. Every real input, every namespace."""
    from obsgap.sources.kube.build import build_topology
    from obsgap.sources.kube.snapshot import load_snapshot
    from obsgap.sources.kube.source import scope_topology

    singles = (*sorted((realworld / "istio-analyzers").glob("*.yaml")), *sorted(GATEWAY_API.glob("*.yaml")))
    files = [[f] for f in singles]
    files.append([realworld / "bookinfo" / "bookinfo.yaml", GATEWAY_API / "istio_bookinfo-gateway.yaml",
                  GATEWAY_API / "istio_route-reviews-90-10.yaml"])
    judged = 0
    for paths in files:
        topo = build_topology(*load_snapshot(paths))
        whole = _config_findings(topo)
        objects = (*topo.services, *topo.virtual_services, *topo.destination_rules, *topo.routes, *topo.pods,
                   *topo.workloads)
        for ns in sorted({*topo.namespaces, *(o.namespace for o in objects)}):
            got = _config_findings(scope_topology(topo, (ns,)), (ns,))
            assert got == {f for f in whole if f[0] == ns}, (paths[0].name, ns, got ^ {f for f in whole if f[0] == ns})
            judged += len(got)
    assert judged >= 30


def test_a_subset_by_node_locality_is_unknown_where_nodes_could_not_be_listed(realworld: Path) -> None:
    """Istio's own input: subsets that select by region and zone, which pilot adds to a pod's labels from its Node.
    Where the API refused to list Nodes, those labels are unknown: the subsets are not reported as selecting no pods
    (they were), and their namespace is not examined (a finding of an earlier night is carried, not resolved)."""
    from obsgap.analysis import analyze as analysis_of
    from obsgap.checks.destinationrules import DestinationRuleSubsetUnmatched
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence
    from obsgap.sources.kube.build import build_topology
    from obsgap.sources.kube.snapshot import load_snapshot

    objects, gaps = load_snapshot([realworld / "istio-analyzers" / "destinationrule-subsets-with-topology-labels.yaml"])
    without_nodes = [o for o in objects if o.get("kind") != "Node"]
    for objs, unread, found, examined in (
            (objects, {}, 0, {"default"}),
            (without_nodes, {"Node": "Node: list forbidden (HTTP 403)"}, 0, set())):
        ev = Evidence(WINDOW, CheckSettings(), build_topology(objs, gaps, unread))
        (run,), findings = run_checks((DestinationRuleSubsetUnmatched,), ev, analysis_of(ev))
        assert (len(findings), set(run.examined or ())) == (found, examined), unread


def test_a_job_named_after_a_service_outside_the_scope_is_judged_as_in_the_whole_cluster() -> None:
    """A PodMonitor job `shop/payments` scrapes web's pods, and Service payments lives in namespace pay: the job is
    named after another service. Under `-n shop` that Service is outside the scope but still known, so the finding is
    the whole run's (none was made: the name matched no Service in scope)."""
    import pandas as pd

    from obsgap.analysis import analyze as analysis_of
    from obsgap.checks.job_names import JobNameMismatch
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence, MetricsEvidence
    from obsgap.sources.kube.build import build_topology
    from obsgap.sources.kube.source import scope_topology

    topo = build_topology([k8s_service("web"), k8s_pod("web-0", "web", "10.0.0.1", sidecar=False),
                           k8s_service("payments", "pay"), k8s_pod("payments-0", "payments", "10.0.0.2", "pay",
                                                                   sidecar=False)])
    up = pd.DataFrame([{"job": "shop/payments", "namespace": "shop", "pod": "web-0", "instance": "10.0.0.1:8080",
                        "value": 1.0}])
    titles = {}
    for scope in ((), ("shop",)):
        ev = Evidence(WINDOW, CheckSettings(namespaces=scope), scope_topology(topo, scope),
                      MetricsEvidence({"scrape_targets": up}))
        titles[scope] = [f.title for f in run_checks((JobNameMismatch,), ev, analysis_of(ev))[1]]
    assert titles[()] == titles[("shop",)] == ["job 'shop/payments' should be 'web'"]
