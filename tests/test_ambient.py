"""Today's mesh (issue 24): ambient mode (ztunnel's logs and metrics, waypoints, enrolment), Gateway API routes and
Prometheus 3's bucket spellings, on real upstream lines and objects and on a simulated mesh backfilled into a real
Prometheus."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from obsgap import engine
from obsgap.bounds import bound, go_shortest, prometheus3, upgrade_safe
from obsgap.config import RunPlan
from obsgap.model import Window
from obsgap.result import ScanResult
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, WaypointSpec
from obsgap.scenario.spec import ServiceSpec as S
from obsgap.sources.kube.build import build_topology
from obsgap.sources.kube.snapshot import load_snapshot
from obsgap.sources.logs.discover import discover
from obsgap.sources.logs.envoy_text import parse_envoy_text
from obsgap.sources.logs.summary import summarize
from obsgap.sources.logs.table import read_logs
from obsgap.sources.logs.ztunnel import parse_ztunnel_json, parse_ztunnel_text
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import serve_openmetrics
from obsgap.topology import TopologyIndex

DATA = Path(__file__).resolve().parent / "data"
WINDOW = Window(datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))


def _ztunnel_entries() -> list[tuple[str, str]]:
    """(heading, line) of every collected ztunnel line."""
    out, heading = [], ""
    for line in (DATA / "ambient" / "ztunnel_lines.txt").read_text().splitlines():
        if line.startswith("## "):
            heading = line
        elif line and not line.startswith(("#", "source:")):
            out.append((heading, line))
    return out


def _parse(line: str) -> dict[str, Any] | None:
    return parse_ztunnel_json(orjson.loads(line)) if line.startswith("{") else parse_ztunnel_text(line)


def test_real_ztunnel_lines_are_connections_of_the_pods_they_name() -> None:
    """Every upstream line is read (TEXT with tabs or spaces, with or without its time; JSON), as one connection of
    the pod it names: the destination's address inbound (through HBONE, the port the workload serves, not 15008),
    the source's outbound; failures carry their error. Kiali's log view is no ztunnel line."""
    entries = _ztunnel_entries()
    assert len(entries) == 12
    rows = {heading.split(".")[0]: _parse(line) for heading, line in entries}
    assert rows["## 9"] is None  # Kiali's own prefix, no time, level or message
    read = {k: r for k, r in rows.items() if r is not None}
    assert len(read) == 11
    for heading, line in entries:
        row = _parse(line)
        if row is None:
            continue
        hbone = re.search(r"dst\.hbone_addr=\"?([\d.]+):(\d+)", line) or re.search(r'"dst.hbone_addr":"([\d.]+):(\d+)"',
                                                                                   line)
        dst = re.search(r"dst\.addr\"?[=:]\"?([\d.]+):(\d+)", line)
        assert dst is not None
        ip, port = (hbone.group(1), hbone.group(2)) if hbone else (dst.group(1), dst.group(2))
        assert (row["origin"], row["protocol"], row["method"]) == ("ztunnel", "tcp", None)
        assert row["port"] == int(port) != 15008, heading
        assert row["downstream_local"] == f"{ip}:{port}"
        assert row["direction"] == ("inbound" if "inbound" in line else "outbound")
        assert (row["response_flags"] == "error") == ("error=" in line)
        assert row["_by_address"] is True
    assert read["## 5"]["ts_ms"] is None  # the PR's example starts at the level
    assert read["## 1"]["ts_ms"] == int(datetime(2024, 5, 4, 9, 59, 5, 28000, tzinfo=UTC).timestamp() * 1000)
    assert read["## 4"]["duration_ms"] == 10002.0


def test_ztunnel_and_waypoint_files_are_attributed_by_address(tmp_path: Path) -> None:
    """A ztunnel pod's file (CRI) and a waypoint's: ztunnel's lines become connections of the pods they name, the
    waypoint's lines requests of the pod behind it on its real port (its HBONE upstream), neither credited to the
    proxy that wrote them; no line is left unrecognised."""
    zlines = [line for h, line in _ztunnel_entries() if not h.startswith("## 9")]
    wlines = (DATA / "ambient" / "waypoint_lines.txt").read_text().splitlines()
    root = tmp_path / "pods"
    for ns, pod, container, lines in (("istio-system", "ztunnel-x7k2p", "istio-proxy", zlines),
                                      ("bookinfo", "waypoint-5f89fbb8b5-jwb7g", "istio-proxy", wlines)):
        folder = root / f"{ns}_{pod}_0a1b2c3d-0000-0000-0000-000000000000" / container
        folder.mkdir(parents=True)
        (folder / "0.log").write_text("".join(f"2025-02-10T15:09:47.730000000Z stdout F {line}\n" for line in lines))
    pods = [("default", "productpage-v1-87d54dd59-fn6vw", "10.244.1.10"), ("default", "reviews-v3-7d99fd7978-zznnq",
                                                                           "10.244.1.9"),
            ("default", "curl-7656cf8794-r7zb9", "10.244.1.12"), ("bookinfo", "ratings-v1-794db9df8f-pmrj9",
                                                                  "10.244.0.22")]
    topo = build_topology([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": ns},
                            "spec": {"containers": [{"name": "app"}]}, "status": {"podIP": ip}}
                           for ns, n, ip in pods])
    table = read_logs(discover([str(root)]), None, None, workers=1)
    try:
        assert table.stats.formats["ztunnel"] == 11 and table.stats.unparsed == 0
        ev, _ = summarize(table, TopologyIndex(topo))
    finally:
        table.close()
    conns: Counter[tuple[str, str, str, int]] = Counter()
    named: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # the Service each line names (dst.service)
    for r in ev.connections.itertuples(index=False):
        if isinstance(r.pod, str):
            conns[(r.namespace, r.pod, r.direction, int(r.port))] += int(r.connections)
            named[(r.namespace, r.pod, r.direction)].add(str(r.authority).split(".")[0])
    assert conns[("default", "productpage-v1-87d54dd59-fn6vw", "inbound", 9080)] == 1
    assert conns[("default", "curl-7656cf8794-r7zb9", "outbound", 9080)] == 2  # to productpage and to reviews
    assert named[("default", "curl-7656cf8794-r7zb9", "outbound")] == {"productpage", "reviews"}
    assert ("istio-system", "ztunnel-x7k2p") not in {(r.namespace, r.pod) for r in ev.connections.itertuples()}
    inbound = {(r.namespace, r.pod, r.origin, int(r.port)): int(r.requests) for r in ev.inbound.itertuples()
               if isinstance(r.pod, str)}
    assert inbound == {("bookinfo", "ratings-v1-794db9df8f-pmrj9", "waypoint", 9080): 1}
    assert not any(str(r.origin) == "ztunnel" for r in ev.inbound.itertuples())


def test_a_sidecar_line_through_hbone_names_the_real_upstream() -> None:
    """istio#50321: a sidecar's outbound line through HBONE carries envoy://connect_originate/<pod>: the pod's
    address is what is kept; a waypoint's line (kiali#8146) is the request as the pod behind it received it."""
    line = ('[2024-04-08T20:44:12.363Z] "GET / HTTP/1.1" 200 - via_upstream - "-" 0 1648 3 2 "10.244.0.1" "curl/8.7.1" '
            '"66dc2115-b7f5-45eb-96c2-2a2b221559f7" "172.18.0.101" "envoy://connect_originate/10.244.0.10:80" '
            "outbound|80||echo.default.svc.cluster.local envoy://internal_client_address/ 10.244.0.7:8080 "
            "10.244.0.1:27113 - default")
    row = parse_envoy_text(line)
    assert row is not None and (row["direction"], row["port"], row["upstream_host"]) == ("outbound", 80,
                                                                                         "10.244.0.10:80")
    first = (DATA / "ambient" / "waypoint_lines.txt").read_text().splitlines()[0]
    wp = parse_envoy_text(first)
    assert wp is not None
    assert (wp["origin"], wp["direction"], wp["port"], wp["downstream_local"]) == ("waypoint", "inbound", 9080,
                                                                                   "10.244.0.22:9080")


def test_prometheus3_spelling_matches_go_and_prometheus_own_data() -> None:
    """Every `le` of a real Go exposition (Prometheus' own test data) is Go's shortest form, which is what Prometheus
    3 stores (FormatOpenMetricsFloat adds `.0` to integers); the upgrade-safe matcher selects both spellings."""
    text = (DATA / "prometheus3" / "alltypes.237mfs.nometa.prom.txt").read_text()
    values = set(re.findall(r'[{,]le="([^"]+)"', text))
    assert {"1e+06", "1.6384e+06", "0.0009175039999999999", "+Inf", "100"} <= values
    for v in values:
        x = bound(v)
        assert x is not None and go_shortest(x) == v, v
        stored = prometheus3(x)
        assert stored == (v if any(c in v for c in ".e") or "Inf" in v else v + ".0"), v
        if "Inf" not in v:
            assert re.fullmatch(upgrade_safe(x), v) and re.fullmatch(upgrade_safe(x), stored)
    source = (DATA / "prometheus3" / "float.go.txt").read_text()
    assert "strconv.AppendFloat((*bp)[:0], f, 'g', -1, 64)" in source and "append(*bp, '.', '0')" in source
    assert (prometheus3(500), prometheus3(1800000), prometheus3(1)) == ("500.0", "1.8e+06", "1.0")


def _analyze(tmp: Path, *files: Path) -> ScanResult:
    return engine.run(RunPlan(window=WINDOW, out_dir=tmp, kube_snapshots=files)).result


def _found(result: ScanResult, *checks: str) -> set[tuple[str, str | None, str | None]]:
    return {(f.check, f.cause, f.resource) for f in result.findings if f.check in checks}


def test_gateway_api_upstream_examples(tmp_path: Path) -> None:
    """Gateway API's own examples and Istio's bookinfo routes, with bookinfo's Services: what resolves is quiet,
    every backend the examples name without a Service is reported, and bookinfo's gateway route attaches."""
    ga = DATA / "gateway_api"
    objects, _ = load_snapshot([*sorted(ga.glob("*.yaml")), DATA / "istio" / "bookinfo" / "bookinfo.yaml"])
    topo = build_topology(objects)
    assert {r.name for r in topo.routes} == {"grpc-app-1", "http-app-1", "mesh-grpc-weighted-backends",
                                             "mesh-echo-add-header", "store", "bookinfo", "reviews"}
    assert {(g.name, g.class_name) for g in topo.kube_gateways} >= {("bookinfo-gateway", "istio")}
    result = _analyze(tmp_path, *sorted(ga.glob("*.yaml")), DATA / "istio" / "bookinfo" / "bookinfo.yaml")
    found = {(f.cause, f.resource, f.evidence["ref"].split(" ", 1)[1]) for f in result.findings
             if f.check == "route-ref-unresolved"}
    assert ("backend-not-found", "HTTPRoute default/reviews", "default/reviews-v1:9080") in found  # bookinfo-versions
    assert not any(r == "HTTPRoute default/bookinfo" for _, r, _ in found)  # productpage:9080 exists; parent admits
    assert ("parent-not-found", "GRPCRoute gateway-conformance-mesh/mesh-grpc-weighted-backends",
            "gateway-conformance-mesh/echo:7070") in found
    assert {c for c, _, _ in found} == {"backend-not-found", "parent-not-found"}


def test_route_references_each_cause(tmp_path: Path) -> None:
    """Each way a route's reference fails, on objects shaped as the upstream examples are, and the fix of each."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra", "labels": {}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
         "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ledger", "namespace": "infra"},
         "spec": {"selector": {"app": "ledger"}, "ports": [{"name": "http", "port": 8080}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "edge",
                                                                                       "namespace": "infra"},
         "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "r", "namespace": "shop"},
         "spec": {"parentRefs": [{"kind": "Service", "name": "reviews", "port": 9080},  # group "" missing
                                 {"name": "edge", "namespace": "infra"},  # listener admits Same only
                                 {"name": "nowhere"}],
                  "rules": [{"backendRefs": [{"name": "reviews", "port": 9081}, {"name": "reviews"},
                                             {"name": "ghost", "port": 80},
                                             {"name": "ledger", "namespace": "infra", "port": 8080}]}]}},
    ]
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    result = _analyze(tmp_path / "out", path)
    causes = sorted(f.cause or "" for f in result.findings if f.check == "route-ref-unresolved")
    assert causes == sorted(["parent-group-missing", "not-allowed-by-listener", "parent-not-found",
                             "backend-port-not-declared", "backend-port-not-declared", "backend-not-found",
                             "reference-not-permitted"])
    grant = next(f for f in result.findings if f.cause == "reference-not-permitted")
    assert "kind: ReferenceGrant" in (grant.suggestion.config or "") and "namespace: infra" in grant.suggestion.config
    group = next(f for f in result.findings if f.cause == "parent-group-missing")
    assert 'group: ""' in (group.suggestion.config or "")
    # the ReferenceGrant the fix proposes resolves it
    docs.append({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
                 "metadata": {"name": "g", "namespace": "infra"},
                 "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
                          "to": [{"group": "", "kind": "Service"}]}})
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    again = _analyze(tmp_path / "out2", path)
    assert "reference-not-permitted" not in {f.cause for f in again.findings}


def test_istioctl_condition_analyzer_input(tmp_path: Path) -> None:
    """istioctl's IST0171 input: the Service istiod could not bind to its waypoint, and the routes whose parent
    (a Gateway by the API's default, as written) does not exist."""
    result = _analyze(tmp_path, DATA / "istio" / "istio-analyzers" / "condition-analyzer.yaml")
    assert _found(result, "waypoint-missing", "route-ref-unresolved") == {
        ("waypoint-missing", "not-ready", "Service default/negative-condition-svc"),
        ("route-ref-unresolved", "parent-not-found", "HTTPRoute default/negative-condition-httproute"),
        ("route-ref-unresolved", "parent-not-found", "GRPCRoute default/negative-condition-grpcroute")}
    wp = next(f for f in result.findings if f.check == "waypoint-missing")
    assert wp.istio_code == "IST0171" and "WaypointBound=False (NoWaypoint)" in wp.evidence["why"]


# --- a simulated ambient mesh in a real Prometheus ------------------------------------------------------------------

GAPS = {("envoy-bypass", "ambient/pod-opted-out", "audit"),
        ("envoy-bypass", "ambient/host-network", "agent"),
        ("waypoint-missing", "not-found", "ledger"),
        ("waypoint-missing", "headless-service", "directory"),
        ("waypoint-missing", "waypoint-for-mismatch", "reports"),
        ("waypoint-missing", "not-ready", "archive"),
        ("histogram-inf-saturation", None, "scoring"),
        ("route-ref-unresolved", "parent-group-missing", "payments"),
        ("envoy-bypass", "ambient/ingress-bypasses-waypoint", "profile")}


def _spec(prometheus3: bool) -> ScenarioSpec:
    return ScenarioSpec(
        "ambient", (("shop", True), ("bank", False)),
        (S("shop", "web"), S("bank", "accounts", use_waypoint="bank-waypoint"),
         S("bank", "ledger", use_waypoint="ledger-waypoint"),  # no such waypoint
         S("bank", "payments"),  # L4 only, by design
         S("bank", "audit", ambient_opt_out=True),
         S("bank", "agent", host_network=True, replicas=1),
         S("bank", "directory", headless=True, use_waypoint="bank-waypoint"),
         S("bank", "reports", use_waypoint="workload-waypoint"),  # a waypoint for workloads only
         S("bank", "archive", use_waypoint="archive-waypoint"),  # not programmed
         S("bank", "scoring", use_waypoint="bank-waypoint", latency_median_ms=4_000_000, latency_sigma=0.2),
         S("shop", "istio-ingressgateway", ingress_gateway=True),  # an Envoy in the sidecar mesh
         S("bank", "profile", use_waypoint="bank-waypoint"),  # called through the ingress: it skips the waypoint
         S("bank", "statements", use_waypoint="bank-waypoint", ingress_use_waypoint=True)),  # ... unless told
        (FlowSpec("external", "shop/web", 8080, 2.0), FlowSpec("shop/web", "bank/accounts", 8080, 1.0),
         FlowSpec("shop/web", "bank/ledger", 8080, 1.0), FlowSpec("shop/web", "bank/payments", 8080, 1.0),
         FlowSpec("shop/web", "bank/audit", 8080, 1.0), FlowSpec("shop/web", "bank/agent", 8080, 0.5),
         FlowSpec("shop/web", "bank/directory", 8080, 0.5), FlowSpec("shop/web", "bank/reports", 8080, 0.5),
         FlowSpec("shop/web", "bank/archive", 8080, 0.5), FlowSpec("shop/web", "bank/scoring", 8080, 0.5),
         FlowSpec("shop/web", "bank/profile", 8080, 0.5),
         FlowSpec("shop/istio-ingressgateway", "bank/profile", 8080, 0.5),
         FlowSpec("shop/istio-ingressgateway", "bank/statements", 8080, 0.5)),
        end=datetime(2026, 11, 24, tzinfo=UTC), hours=0.25, ambient_namespaces=("bank",),
        waypoints=(WaypointSpec("bank", "bank-waypoint"), WaypointSpec("bank", "workload-waypoint", "workload"),
                   WaypointSpec("bank", "archive-waypoint", programmed=False)),
        prometheus3=prometheus3, gzip_rotated=False,  # kubelet serves pods/log from the current file only
        extra_objects=ROUTES)


def _route(name: str, parent: dict[str, Any], backend: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "bank"},
            "spec": {"parentRefs": [parent], "rules": [{"backendRefs": [backend]}]}}


# GAMMA routes as istio.io's ambient tasks write them (samples/bookinfo/gateway-api/route-reviews-90-10.yaml): one
# attached to accounts' waypoint through its Service, one whose Service parent lacks `group: ""`
ROUTES = (_route("accounts", {"group": "", "kind": "Service", "name": "accounts", "port": 8080},
                 {"name": "accounts", "port": 8080}),
          _route("payments", {"kind": "Service", "name": "payments", "port": 8080}, {"name": "payments", "port": 8080}))


SCORING = 'istio_request_duration_milliseconds_{}{{destination_service_name="scoring"{}}}[{{{{.window}}}}]'
ACCOUNTS = ('istio_requests_total{{reporter="destination",destination_service_name="accounts"{}}}'
            "[{{{{.window}}}}]")
SLOS = f"""\
apiVersion: sloth.slok.dev/v1
kind: PrometheusServiceLevel
metadata: {{name: bank, namespace: bank}}
spec:
  service: accounts
  slos:
  - name: accounts-fast
    objective: 99
    sli:
      events:
        errorQuery: >-
          sum(rate({SCORING.format("count", "")})) - sum(rate({SCORING.format("bucket", ',le="500"')}))
        totalQuery: sum(rate({SCORING.format("count", "")}))
  - name: accounts-errors
    objective: 99.9
    sli:
      events:
        errorQuery: sum(rate({ACCOUNTS.format(',response_code=~"5.."')}))
        totalQuery: sum(rate({ACCOUNTS.format("")}))
"""


@pytest.fixture(scope="module")
def meshes(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    out = {}
    servers = []
    for p3 in (False, True):
        spec = _spec(p3)
        tmp = tmp_path_factory.mktemp(f"ambient{int(p3)}")
        built = build(spec, tmp / "mesh")
        from tests.helpers import operator_rule_file

        rules = operator_rule_file(DATA / "istio" / "tools" / "stability-prometheusrule.yaml", tmp / "rules.yml")
        server = serve_openmetrics(built.metrics, tmp / "mesh", rule_files=(rules,))
        servers.append(server)
        slo = tmp / "slo.yaml"
        slo.write_text(SLOS)
        plan = dict(window=Window(spec.start, spec.end), prometheus=PrometheusOptions(url=server.url),
                    kube_snapshots=(built.topology,), slo_paths=(slo,),
                    dashboards=(DATA / "istio" / "addons" / "istio-service-dashboard.json",
                                DATA / "istio" / "addons" / "istio-mesh-dashboard.gen.json"))
        out[p3] = (built, engine.run(RunPlan(out_dir=tmp / "logs", logs=(str(built.logs),), **plan)).result,  # type: ignore[arg-type]
                   engine.run(RunPlan(out_dir=tmp / "nologs", **plan)).result, server.url, tmp)  # type: ignore[arg-type]
    yield out
    for s in servers:
        s.stop()


def _gaps(result: ScanResult) -> set[tuple[str, str | None, str | None]]:
    return {(f.check, f.cause, f.service) for f in result.findings
            if f.check in ("envoy-bypass", "waypoint-missing", "port-missing-from-metrics", "histogram-inf-saturation",
                           "route-ref-unresolved")
            and f.cause != "caller-outside-mesh"}


@pytest.mark.parametrize("p3", [False, True], ids=["prometheus2", "prometheus3"])
def test_ambient_mesh_gaps_and_coverage(meshes, p3: bool) -> None:  # type: ignore[no-untyped-def]
    """Every planted ambient gap with its cause, from logs and without them, on Prometheus 2 and 3 spellings alike;
    the waypoint-served service measured in requests (reporter="waypoint"), the L4-only ones in connections
    (ztunnel's logs against its metrics), never a 0 % request hole; every ztunnel line read."""
    built, logs, nologs, _, _ = meshes[p3]
    truth = built.truth
    assert _gaps(logs) == GAPS
    assert _gaps(nologs) == GAPS
    from tests.helpers import unexamined

    assert unexamined(logs) == unexamined(nologs) == []
    for result in (logs, nologs):
        rows = {r.service: r for r in result.coverage}
        assert rows["accounts"].dataplane == "waypoint" and rows["accounts"].unit == "requests"
        assert rows["accounts"].mesh == truth.mesh_waypoint_requests["bank/accounts"] > 0
        assert rows["accounts"].ratio == pytest.approx(1.0, abs=0.03)
        assert rows["statements"].ratio == pytest.approx(1.0, abs=0.03)  # ingress-use-waypoint: the waypoint saw all
        assert rows["profile"].ratio == pytest.approx(0.5, abs=0.05)
        for l4 in ("payments", "ledger", "reports", "archive", "directory"):
            row = rows[l4]
            assert (row.dataplane, row.unit) == ("ztunnel", "connections"), l4
            assert row.mesh == truth.tcp_connections[f"bank/{l4}"] > 0
            assert row.ratio != 0.0
        assert result.status == "complete", result.status_reasons
    rows = {r.service: r for r in logs.coverage}
    assert rows["payments"].observed == truth.ztunnel_connections["bank/payments"]
    assert rows["payments"].ratio == pytest.approx(1.0, abs=0.03) and rows["payments"].witness == "ztunnel-logs"
    assert rows["audit"].ratio == 0.0 and rows["audit"].dataplane == "none"
    bare = {r.service: r for r in nologs.coverage}
    assert bare["payments"].ratio is None and "L4 only by design" in (bare["payments"].reason or "")
    formats = logs.sources.as_json()["logs"]["formats"]
    assert formats["ztunnel"] == sum(truth.ztunnel_connections.values())
    assert logs.sources.as_json()["logs"]["unparsed"] == 0
    opted = next(f for f in logs.findings if f.cause == "ambient/pod-opted-out")
    assert "istio.io/dataplane-mode: none" in (opted.suggestion.config or "")


def test_prometheus3_spelling_changes_no_histogram_answer(meshes) -> None:  # type: ignore[no-untyped-def]
    """The waypoint's histogram of a 67-minute batch call saturates Envoy's buckets the same whether Prometheus keeps
    `le="1800000"` or stores `le="1.8e+06"`; Envoy's fix never offers native histograms (Envoy has none)."""
    a = next(f for f in meshes[False][1].findings if f.check == "histogram-inf-saturation")
    b = next(f for f in meshes[True][1].findings if f.check == "histogram-inf-saturation")
    for key in ("inf_share", "top_finite_bound", "suggested_buckets"):
        assert a.evidence[key] == b.evidence[key], key
    config = b.suggestion.config or ""
    assert "scrape_native_histograms" not in config and "exposes no native histograms" in config


def test_slo_selectors_that_miss_on_prometheus3_or_behind_a_waypoint(meshes) -> None:  # type: ignore[no-untyped-def]
    """le="500" reads nothing where Prometheus 3 stored "500.0": said so, with the matcher that reads both; an SLI on
    reporter="destination" for a Service a waypoint serves reads none of its requests: said so too."""
    for p3 in (False, True):
        slos = {a.measured.spec.name: a for a in meshes[p3][1].slos}
        fast = slos["accounts-fast"]
        problems = {p.cause: p for p in fast.problems}
        if p3:
            assert "selector-matches-nothing" in problems
            assert 'stores that bound as le="500.0"' in problems["selector-matches-nothing"].reason
            assert 'le=~"500(\\\\.0)?"' in problems["selector-matches-nothing"].fix  # a PromQL string
        else:
            assert "selector-matches-nothing" not in problems
        errors = {p.cause: p for p in slos["accounts-errors"].problems}
        assert 'reporter="waypoint"' in errors["selector-matches-nothing"].reason
        assert 'reporter=~"destination|waypoint"' in errors["selector-matches-nothing"].fix


def test_istio_dashboards_miss_waypoint_traffic(meshes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Istio's own service dashboard (istio#61815): its reporter="destination" and $qrep queries show nothing of the
    Services a waypoint serves; on a mesh without waypoints (istiod's injection analyzer's pods) it is not flagged;
    where no pod is known (bookinfo's Deployments alone) which Services a waypoint serves cannot be told, and the
    check does not run."""
    _, logs, _, _, tmp = meshes[False]
    found = sorted((f for f in logs.findings if f.check == "dashboard-misses-waypoint"), key=lambda f: f.subject)
    assert len(found) == 2, [f.title for f in found]  # the rules that read only the gateway's calls are not named
    f, alert = found
    assert f.cause == "reporter-destination" and f.resource == "Dashboard Istio Service Dashboard"
    assert f.evidence["queries"] >= 57 and "bank/accounts" in f.evidence["waypoint_services"]
    assert 'reporter=~"source|destination"' in f.evidence["matchers"]  # $qrep resolved to its options
    # Istio's stability-test alert on the 5xx ratio, as Prometheus evaluates it: blind to the waypoint's Services
    assert (alert.resource, alert.evidence["panels"], alert.evidence["rule_file"]) == (
        "Rule group rules.yml/./workload.rules", ["alert HTTP5xxRateHigh"], str(tmp / "rules.yml"))
    assert alert.title == 'rule group ./workload.rules: 1 rule selects reporter="destination" and misses waypoint ' \
        "traffic"
    assert "an alert on them is blind to those Services' requests" in alert.detail
    def plain(snapshot: Path) -> ScanResult:
        return engine.run(RunPlan(window=WINDOW, out_dir=tmp_path / snapshot.stem, kube_snapshots=(snapshot,),
                                  dashboards=(DATA / "istio" / "addons" / "istio-service-dashboard.json",))).result

    sidecars = plain(DATA / "istio" / "istio-analyzers" / "injection.yaml")
    assert not [f for f in sidecars.findings if f.check == "dashboard-misses-waypoint"]
    assert next(c for c in sidecars.checks if c.check == "dashboard-misses-waypoint").status == "ran"
    no_pods = plain(DATA / "istio" / "bookinfo" / "bookinfo.yaml")
    assert next(c for c in no_pods.checks if c.check == "dashboard-misses-waypoint").status == "skipped"


def test_istio_mesh_dashboard_adds_up_sidecar_callers_and_waypoints(meshes) -> None:  # type: ignore[no-untyped-def]
    """Istio's Mesh Dashboard reads reporter=~"source|waypoint" (its fix for istio#61815): in a mesh where sidecars
    call Services a waypoint serves, each such request is counted by the caller's sidecar and by the waypoint, and
    its global request volume reads more than the mesh served. The Service Dashboard's $qrep is the viewer's one
    side at a time, and is not named."""
    _, logs, _, _, _ = meshes[False]
    by = {f.evidence["dashboard"]: f for f in logs.findings if f.check == "dashboard-double-counts"}
    # and Istio's stability alert on the ingress gateway's p99 (source_workload=~"istio.*", every reporter)
    assert set(by) == {"Istio Mesh Dashboard", "./workload.rules"}
    assert by["./workload.rules"].evidence["panels"] == ["alert IngressLatencyP99High"]
    f = by["Istio Mesh Dashboard"]
    assert f.evidence["reporters"] == ["source", "waypoint"]
    assert 1.05 < f.evidence["ratio"] <= 2.0 and f.evidence["counted"] > f.evidence["requests"]
    assert "Traffic Volume" in f.evidence["panels"]
    assert all('reporter=~"destination|waypoint"' in e["fixed"] and "source" not in e["fixed"].split("{")[1]
               for e in f.evidence["examples"])


def test_name_contract_holds_waypoints_and_routes(meshes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The waypoint a Service asks for is a link of its name contract, broken (and joined to its finding) when it
    cannot serve; routes sit beside VirtualServices."""
    from obsgap.report.build import build_report

    _, logs, _, _, _ = meshes[False]
    report = build_report(logs)
    rows = {r.service: r for r in report.contract}
    links = {r: {(x.kind, x.name): x for x in rows[r].links} for r in ("accounts", "ledger")}
    ok, broken = links["accounts"][("waypoint", "bank/bank-waypoint")], links["ledger"][("waypoint",
                                                                                        "bank/ledger-waypoint")]
    assert not ok.broken and broken.broken and broken.note == "not-found"
    ledger = next(f for f in logs.findings if f.check == "waypoint-missing" and f.service == "ledger")
    assert broken.finding_ids == (ledger.id,)
    ga = DATA / "gateway_api"
    result = _analyze(tmp_path, ga / "istio_route-reviews-90-10.yaml", ga / "istio_bookinfo-gateway.yaml",
                      DATA / "istio" / "bookinfo" / "bookinfo.yaml")
    contract = {r.service: r for r in build_report(result).contract}
    reviews = {(x.kind, x.name, x.how) for x in contract["reviews"].links}
    assert ("httproute", "default/reviews", "parent :9080") in reviews
    assert ("httproute", "default/bookinfo", "backend :9080") in {(x.kind, x.name, x.how)
                                                                   for x in contract["productpage"].links}


def test_histograms_stored_natively_are_named_not_skipped(tmp_path: Path, prometheus_available: None) -> None:
    """A Prometheus that stores Istio's duration histogram natively (NHCB, or exponential: no _bucket series): the
    run names the family as not analysed, in the source report and the status, and judges no bucket of it."""
    from obsgap.testbed.promserver import PrometheusServer
    from obsgap.testbed.remote_write import NativeHistogram, push

    (tmp_path / "tsdb").mkdir()
    server = PrometheusServer(tmp_path / "tsdb", extra_args=("--web.enable-remote-write-receiver",
                                                             "--enable-feature=native-histograms")).start()
    start = datetime(2026, 11, 24, tzinfo=UTC)
    t0 = int(start.timestamp() * 1000)
    labels = {"reporter": "destination", "destination_service_name": "api", "destination_service_namespace": "app",
              "destination_workload": "api", "destination_workload_namespace": "app", "source_workload": "web",
              "source_workload_namespace": "app", "namespace": "app", "pod": "api-1"}
    try:
        push(server.url, [
            ({"__name__": "istio_request_duration_milliseconds"} | labels,
             [NativeHistogram(t0 + i * 30_000, 10 * i, 900.0 * i, 0, [(5, 4 * i), (7, 6 * i)]) for i in range(120)]),
            ({"__name__": "istio_requests_total", "response_code": "200"} | labels,
             [(t0 + i * 30_000, 10.0 * i) for i in range(120)])])
        topo = tmp_path / "topo.json"
        topo.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "app"},
             "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 8080}]}}]}))
        result = engine.run(RunPlan(window=Window(start, start.replace(hour=1)), out_dir=tmp_path / "out",
                                    prometheus=PrometheusOptions(url=server.url), kube_snapshots=(topo,))).result
    finally:
        server.stop()
    families = result.sources.as_json()["prometheus"]["histogram_families"]
    assert families["native"] == ["istio_request_duration_milliseconds"] and families["analyzed"] == []
    assert any("stored as native histograms" in r for r in result.status_reasons)
    assert result.status == "partial"
    assert not [f for f in result.findings if f.check == "histogram-inf-saturation"]


def _l4(result: ScanResult) -> dict[str, tuple[int | None, int | None, str | None]]:
    return {r.service: (r.observed, r.mesh, r.witness) for r in result.coverage if r.unit == "connections"}


def test_ztunnel_logs_read_through_pods_log_and_clickhouse(meshes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """ztunnel's lines give the same connections read through the Kubernetes API (`--pod-logs`, the ztunnel pod in
    istio-system read although the run is scoped to `-n bank`) and from ClickHouse (chDB, as the OpenTelemetry
    Collector stores them) as from kubelet's files."""
    from obsgap.sources.kube.live import LiveOptions
    from obsgap.sources.logs.clickhouse import ClickHouseOptions
    from obsgap.sources.logs.podlogs import PodLogOptions
    from tests.kube_api import cluster_of_scenario, serving
    from tests.test_clickhouse import load

    built, logs, _, url, _ = meshes[False]
    spec = built.spec
    want = _l4(logs)
    assert want["payments"][2] == "ztunnel-logs"
    window = Window(spec.start, spec.end)
    with serving(cluster_of_scenario(built.topology, built.logs), tmp_path) as kubeconfig:
        via_api = engine.run(RunPlan(window=window, out_dir=tmp_path / "api", prometheus=PrometheusOptions(url=url),
                                     kube_live=LiveOptions(str(kubeconfig), "test"), pod_logs=PodLogOptions(),
                                     namespaces=("bank",))).result
    assert _l4(via_api) == want
    # ClickHouse holds ztunnel's lines alone here (its parse costs ~0.3 ms a line in chDB): the connections come
    # from them only, so the rows must be the same
    ztunnel = tmp_path / "ztunnel-only"
    (ztunnel / "pods").mkdir(parents=True)
    for folder in (built.logs / "pods").glob("istio-system_ztunnel-*"):
        (ztunnel / "pods" / folder.name).symlink_to(folder)
    load(tmp_path / "ch", ztunnel)
    via_ch = engine.run(RunPlan(window=window, out_dir=tmp_path / "chout", prometheus=PrometheusOptions(url=url),
                                kube_snapshots=(built.topology,),
                                clickhouse=ClickHouseOptions(url=f"chdb:{tmp_path / 'ch'}"))).result
    assert _l4(via_ch) == want
    assert set(via_ch.sources.as_json()["logs"]["formats"]) == {"ztunnel"}  # every line recognised


def test_enrolment_and_route_status_edge_cases(tmp_path: Path) -> None:
    """The CNI's `disabled` is an opt-out, not a failed capture; a pod not running is never "not captured"; a route
    whose objects resolve is reported from its controller's status alone, and a status already explained by a
    missing backend is not reported twice."""
    def pod(name: str, annotations: dict[str, str], phase: str = "Running") -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "bank",
                                                                 "annotations": annotations},
                "spec": {"containers": [{"name": "app"}]}, "status": {"phase": phase, "podIP": f"10.1.0.{len(name)}"}}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute"}
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bank",
                                                                   "labels": {"istio.io/dataplane-mode": "ambient"}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "bank"},
             "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw",
                                                                                           "namespace": "bank"},
             "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
            pod("captured", {"ambient.istio.io/redirection": "enabled"}),
            pod("optout", {"ambient.istio.io/redirection": "disabled"}),
            pod("starting", {}, phase="Pending"), pod("missed", {}),
            route | {"metadata": {"name": "ok-objects", "namespace": "bank"},
                     "spec": {"parentRefs": [{"name": "gw"}],
                              "rules": [{"backendRefs": [{"name": "api", "port": 80}]}]},
                     "status": {"parents": [{"parentRef": {"name": "gw"}, "conditions": [
                         {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners",
                          "message": "hostname mismatch"}]}]}},
            route | {"metadata": {"name": "ghost-backend", "namespace": "bank"},
                     "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "ghost",
                                                                                          "port": 80}]}]},
                     "status": {"parents": [{"parentRef": {"name": "gw"}, "conditions": [
                         {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound",
                          "message": "ghost not found"}]}]}}]
    path = tmp_path / "objs.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    topo = build_topology(load_snapshot([path])[0])
    states = {p.name: (p.sidecar.mode, p.sidecar.reason) for p in topo.pods}
    assert states == {"captured": ("ambient", None), "optout": ("none", "ambient/pod-opted-out"),
                      "starting": ("ambient", None), "missed": ("none", "ambient/not-captured")}
    result = _analyze(tmp_path / "out", path)
    routes = {(f.evidence["route"], f.cause, f.evidence["role"]) for f in result.findings
              if f.check == "route-ref-unresolved"}
    assert routes == {("HTTPRoute bank/ok-objects", "not-allowed-by-listener", "status"),
                      ("HTTPRoute bank/ghost-backend", "backend-not-found", "backend")}


def test_a_missing_waypoints_traffic_without_a_witness_is_unknown() -> None:
    """An ambient Service that asks for a waypoint that does not exist, seen only at L4 (or with mesh_requests
    failed): no witness counted its requests, so findings.json says null, not 0."""
    import pandas as pd

    from obsgap.analysis import analyze
    from obsgap.analysis.reconcile import REQ_COLS
    from obsgap.checks.base import CheckInputs
    from obsgap.checks.waypoints import WaypointMissing
    from obsgap.evidence import CheckSettings, Evidence, MetricsEvidence

    topo = build_topology([
        {"kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio.io/dataplane-mode": "ambient"}}},
        {"kind": "Service", "metadata": {"name": "api", "namespace": "shop", "labels": {"istio.io/use-waypoint": "wp"}},
         "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"kind": "Pod", "metadata": {"name": "api-0", "namespace": "shop", "labels": {"app": "api"}},
         "spec": {"containers": [{"name": "api"}]}, "status": {"podIP": "10.0.0.5", "phase": "Running"}}])
    row = {c: "" for c in REQ_COLS} | {"reporter": "destination", "destination_service_name": "api",
                                       "destination_service_namespace": "shop", "value": 40.0}
    tcp = pd.DataFrame([row])
    end = datetime(2026, 11, 24, tzinfo=UTC)
    for metrics in (MetricsEvidence({"mesh_tcp_connections": tcp}),
                    MetricsEvidence({"mesh_tcp_connections": tcp}, failed={"mesh_requests": "timeout"})):
        ev = Evidence(Window(end - pd.Timedelta(hours=1), end), CheckSettings(), topo, metrics)
        (finding,) = WaypointMissing.run(CheckInputs(ev, analyze(ev)))
        assert finding.title == "api: waypoint wp does not exist"
        assert finding.evidence.observed_requests is None
