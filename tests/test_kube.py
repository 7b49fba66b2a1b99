"""Topology from snapshots (Istio's own analyzer inputs, bookinfo) and from a live API (loopback server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from obsgap.errors import InputError
from obsgap.sources.kube.build import build_topology
from obsgap.sources.kube.live import LiveOptions, load_live
from obsgap.sources.kube.snapshot import load_snapshot
from tests.helpers import k8s_pod, k8s_service


def topo_of(*paths: Path):  # type: ignore[no-untyped-def]
    objects, gaps = load_snapshot(list(paths))
    return build_topology(objects, gaps)


def test_injection_yaml_sidecar_states(realworld: Path) -> None:
    topo = topo_of(realworld / "istio-analyzers" / "injection.yaml")
    pods = {(p.namespace, p.name): p for p in topo.pods}
    assert pods[("default", "injectedpod")].sidecar.mode == "sidecar"
    missing = pods[("default", "noninjectedpod")].sidecar
    assert missing.mode == "none" and missing.reason == "no-sidecar/unknown" and missing.expected
    assert topo.namespaces["bar"].labels == {}
    assert topo.namespaces["ambient"].labels["istio.io/dataplane-mode"] == "ambient"


def test_port_protocols_from_names_and_app_protocol(realworld: Path) -> None:
    good = topo_of(realworld / "istio-analyzers" / "service-port-name.yaml")
    assert good.services and all(sp.istio_protocol != "unknown" for s in good.services for sp in s.ports)
    bad = topo_of(realworld / "istio-analyzers" / "service-no-port-name.yaml")
    unknown = sorted((s.name, sp.port) for s in bad.services for sp in s.ports if sp.istio_protocol == "unknown")
    assert unknown == [("my-service1", 8080), ("my-service1", 8081), ("my-service2", 8080)]


def test_bookinfo_workloads_routes_and_subsets(realworld: Path) -> None:
    b = realworld / "bookinfo"
    topo = topo_of(b / "bookinfo.yaml", b / "destination-rule-all.yaml", b / "virtual-service-reviews-v2-v3.yaml")
    assert {s.name for s in topo.services} == {"details", "ratings", "reviews", "productpage"}
    assert all(sp.istio_protocol == "http" for s in topo.services for sp in s.ports)
    reviews_dr = next(d for d in topo.destination_rules if d.host == "reviews")
    assert [s.name for s in reviews_dr.subsets] == ["v1", "v2", "v3"]
    vs = topo.virtual_services[0]
    assert len(vs.weighted_routes) == 1 and {d.subset for d in vs.weighted_routes[0]} == {"v2", "v3"}
    assert topo.object_counts["Deployment"] == 6 and topo.object_counts["ServiceAccount"] == 4


def test_folder_json_list_and_bad_file(tmp_path: Path) -> None:
    (tmp_path / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": [
        {"metadata": {"name": "a-5f7b9c6d8-x1y2z", "namespace": "n", "labels": {"pod-template-hash": "5f7b9c6d8"},
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "a-5f7b9c6d8"}]},
         "spec": {"containers": [{"name": "app"}]}, "status": {"podIP": "10.1.1.1"}}]}))
    (tmp_path / "values.yaml").write_text("replicas: 3\nimage: x\n")  # not Kubernetes: a gap, not an error
    topo = topo_of(tmp_path)
    assert topo.pods[0].workload == "a" and topo.pods[0].workload_kind == "Deployment"
    assert topo.pods[0].ip == "10.1.1.1"
    assert any("values.yaml" in g and "no Kubernetes objects" in g for g in topo.gaps)
    # a file that does not parse is an error naming its place, even inside a folder
    (tmp_path / "broken.yaml").write_text("apiVersion: v1\nkind: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml:3:1: not valid YAML"):
        topo_of(tmp_path)


# --- live path: the real kubernetes client against a loopback server speaking the list API -------------

POD = {"metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
       "spec": {"nodeName": "node-a", "containers": [{"name": "web"}, {"name": "istio-proxy"}]},
       "status": {"podIP": "10.0.0.1"}}


def _list(kind: str, items: list[dict[str, Any]], cont: str | None = None) -> dict[str, Any]:
    return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"continue": cont} if cont else {},
            "items": items}


class _Api(BaseHTTPRequestHandler):
    seen: list[str] = []
    methods: set[str] = set()
    expired_once = {"done": False}

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        self.seen.append(self.path)
        self.methods.add(self.command)
        cont = q.get("continue", [None])[0]
        p = url.path
        if p == "/api/v1/namespaces/istio-system/configmaps/istio":  # a single GET: the MeshConfig
            mesh = "accessLogFile: /dev/stdout\naccessLogFormat: '%START_TIME% %RESPONSE_CODE% %DURATION%'\n"
            return self._send(200, {"kind": "ConfigMap", "apiVersion": "v1",
                                    "metadata": {"name": "istio", "namespace": "istio-system"}, "data": {"mesh": mesh}})
        assert q.get("limit") == ["500"], self.path
        if p == "/api/v1/namespaces":
            return self._send(200, _list("Namespace", [{"metadata": {"name": "shop",
                                                                     "labels": {"istio-injection": "enabled"}}}]))
        if p == "/api/v1/nodes":
            return self._send(200, _list("Node", [{"metadata": {"name": "node-a", "labels": {
                "topology.kubernetes.io/zone": "eu-west-1b", "topology.kubernetes.io/region": ""}}}]))
        if p == "/api/v1/pods":
            if cont is None:
                return self._send(200, _list("Pod", [POD], cont="page2"))
            if not self.expired_once["done"]:
                self.expired_once["done"] = True
                return self._send(410, {"kind": "Status", "code": 410, "reason": "Expired"})
            pod2 = json.loads(json.dumps(POD))
            pod2["metadata"]["name"] = "web-2"
            pod2["spec"]["containers"] = [{"name": "web"}]
            return self._send(200, _list("Pod", [pod2]))
        if p == "/api/v1/services":
            return self._send(200, _list("Service", [{"metadata": {"name": "web", "namespace": "shop"},
                                                      "spec": {"selector": {"app": "web"},
                                                               "ports": [{"name": "http", "port": 80}]}}]))
        if p in ("/api/v1/endpoints", "/apis/discovery.k8s.io/v1/endpointslices", "/apis/apps/v1/replicasets",
                 "/apis/apps/v1/deployments", "/apis/apps/v1/statefulsets", "/apis/apps/v1/daemonsets"):
            return self._send(200, _list("X", []))
        if p == "/apis/networking.istio.io/v1/virtualservices":
            return self._send(200, _list("VirtualService", [{"apiVersion": "networking.istio.io/v1",
                                                             "kind": "VirtualService",
                                                             "metadata": {"name": "web", "namespace": "shop"},
                                                             "spec": {"hosts": ["web"]}}]))
        if p == "/apis/networking.istio.io/v1/destinationrules":
            return self._send(403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
        if p == "/apis/networking.istio.io/v1beta1/serviceentries":
            return self._send(200, _list("ServiceEntry", [{"metadata": {"name": "ext", "namespace": "shop"},
                                                           "spec": {"hosts": ["api.example.com"]}}]))
        gateway_api = "/apis/gateway.networking.k8s.io/"
        if p == gateway_api + "v1/gateways":  # Gateway API: Istio's kind name, another group
            return self._send(200, {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayList",
                                    "metadata": {}, "items": [{
                                        "metadata": {"name": "waypoint", "namespace": "shop",
                                                     "labels": {"istio.io/waypoint-for": "service"}},
                                        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [
                                            {"name": "mesh", "port": 15008, "protocol": "HBONE"}]},
                                        "status": {"conditions": [{"type": "Programmed", "status": "True"}]}}]})
        if p == gateway_api + "v1/httproutes":
            return self._send(200, _list("HTTPRoute", [{"apiVersion": "gateway.networking.k8s.io/v1",
                                                        "metadata": {"name": "web", "namespace": "shop"},
                                                        "spec": {"parentRefs": [{"group": "", "kind": "Service",
                                                                                 "name": "web", "port": 80}],
                                                                 "rules": [{"backendRefs": [{"name": "web",
                                                                                             "port": 80}]}]}}]))
        if p == gateway_api + "v1/grpcroutes":
            return self._send(403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
        if p == gateway_api + "v1beta1/referencegrants":  # older CRDs serve it as v1beta1 only
            return self._send(200, _list("ReferenceGrant", [{"metadata": {"name": "g", "namespace": "shop"},
                                                            "spec": {"from": [], "to": []}}]))
        return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def _refuse(self) -> None:
        self.methods.add(self.command)
        self._send(405, {"kind": "Status", "code": 405})

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse


@pytest.fixture()
def api_server(tmp_path: Path) -> Iterator[Path]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Api.seen = []
    _Api.methods = set()
    _Api.expired_once = {"done": False}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {"token": "s3cret-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}]}))
    yield kubeconfig
    server.shutdown()


def test_live_pagination_410_403_and_missing_crds(api_server: Path) -> None:
    objects, gaps, unread = load_live(LiveOptions(str(api_server), "test"))
    topo = build_topology(objects, gaps, unread)
    assert sorted(p.name for p in topo.pods) == ["web-1", "web-2"]
    assert any("continue=page2" in s for s in _Api.seen)
    # the 410 restarted the pod list from the first page
    assert sum(1 for s in _Api.seen if s.startswith("/api/v1/pods") and "continue" not in s) == 2
    assert "DestinationRule (networking.istio.io): list forbidden (HTTP 403)" in topo.gaps
    assert any(g.startswith("Sidecar: CRD") for g in topo.gaps)
    assert [s.hosts for s in topo.service_entries] == [("api.example.com",)]
    by_name = {p.name: p for p in topo.pods}
    assert by_name["web-1"].sidecar.present
    assert by_name["web-2"].sidecar.reason == "no-sidecar/unknown"
    # Nodes are read too: subsets match the pod's labels with its node's locality (empty parts left out)
    assert topo.nodes == {"node-a": {"topology.kubernetes.io/zone": "eu-west-1b", "topology.kubernetes.io/region": ""}}
    assert by_name["web-1"].subset_labels == {"app": "web", "topology.kubernetes.io/zone": "eu-west-1b",
                                              "kubernetes.io/hostname": "node-a"}
    assert not any(g.startswith("Node") for g in topo.gaps)
    # the mesh's own access-log format comes from its MeshConfig
    # Gateway API objects, told from Istio's Gateways by their group, in the version each CRD serves
    assert [(g.name, g.class_name, g.condition("Programmed").status) for g in topo.kube_gateways] == [  # type: ignore[union-attr]
        ("waypoint", "istio-waypoint", "True")]
    assert [(r.kind, r.name, r.parents[0].group, r.backends[0].port) for r in topo.routes] == [
        ("HTTPRoute", "web", "", 80)]
    assert [g.name for g in topo.reference_grants] == ["g"] and not topo.gateways
    assert "GRPCRoute (gateway.networking.k8s.io): list forbidden (HTTP 403)" in topo.gaps
    (fmt,) = topo.access_log_formats
    assert (fmt.name, fmt.encoding, fmt.value) == ("ConfigMap istio-system/istio accessLogFormat", "text",
                                                   "%START_TIME% %RESPONSE_CODE% %DURATION%")


def test_live_and_snapshot_build_the_same_structures(api_server: Path, tmp_path: Path) -> None:
    objects, gaps, _ = load_live(LiveOptions(str(api_server), "test"))
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    live_topo = build_topology(objects, gaps)
    snap_topo = topo_of(snap)
    assert live_topo.pods == snap_topo.pods and live_topo.services == snap_topo.services
    assert live_topo.virtual_services == snap_topo.virtual_services
    assert live_topo.routes == snap_topo.routes and live_topo.kube_gateways == snap_topo.kube_gateways


def test_a_kind_the_api_refused_to_list_is_unknown_not_empty(api_server: Path) -> None:
    """The service account may not list DestinationRules and GRPCRoutes (403): objects of those kinds may exist
    unseen, so the checks whose verdicts rest on them do not run (a route's backend, a VirtualService's subset, are
    not 'unknown' for want of a list), and the others do. A missing CRD (Sidecar) is no such gap: no object of it
    can exist."""
    from datetime import UTC, datetime, timedelta

    from obsgap.analysis import analyze
    from obsgap.checks import REGISTRY
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence
    from obsgap.model import Window
    from obsgap.sources.kube.kinds import LISTED_KINDS

    objects, gaps, unread = load_live(LiveOptions(str(api_server), "test"))
    assert unread == {
        "networking.istio.io/DestinationRule": "DestinationRule (networking.istio.io): list forbidden (HTTP 403)",
        "gateway.networking.k8s.io/GRPCRoute": "GRPCRoute (gateway.networking.k8s.io): list forbidden (HTTP 403)"}
    end = datetime(2026, 11, 24, tzinfo=UTC)
    ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings(), build_topology(objects, gaps, unread))
    runs = {r.check: r for r in run_checks(REGISTRY, ev, analyze(ev))[0]}
    refused = {c.id for c in REGISTRY if set(c.kinds) & set(unread)}
    assert refused == {"canary-without-outlier-detection", "destinationrule-host-unresolved",
                       "destinationrule-subset-unmatched", "route-ref-unresolved", "virtualservice-host-unresolved"}
    for check_id in refused:
        assert runs[check_id].status == "skipped" and runs[check_id].examined is None
        assert "which could not be read (" in (runs[check_id].reason or "")
    assert runs["port-name-convention"].status == runs["sidecar-missing"].status == "ran"
    assert all(set(c.kinds) <= LISTED_KINDS for c in REGISTRY), "a kind no list can report"


def test_live_path_only_reads(api_server: Path) -> None:
    load_live(LiveOptions(str(api_server), "test"))
    assert _Api.seen and all(s.startswith(("/api/", "/apis/")) for s in _Api.seen)
    assert _Api.methods == {"GET"}


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_istio_crd_versions_in_snapshots(tmp_path: Path, version: str) -> None:
    (tmp_path / "istio.yaml").write_text(f"""
apiVersion: networking.istio.io/{version}
kind: DestinationRule
metadata: {{name: r, namespace: shop}}
spec:
  host: r
  trafficPolicy: {{outlierDetection: {{consecutive5xxErrors: 5}}}}
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/{version}
kind: VirtualService
metadata: {{name: r, namespace: shop}}
spec:
  hosts: [r]
  http:
  - route:
    - destination: {{host: r, subset: v1}}
      weight: 90
    - destination: {{host: r, subset: v2}}
      weight: 10
""")
    topo = topo_of(tmp_path / "istio.yaml")
    assert topo.destination_rules[0].has_outlier_detection and topo.destination_rules[0].subsets[0].name == "v1"
    assert [d.subset for d in topo.virtual_services[0].weighted_routes[0]] == ["v1", "v2"]


# --- snapshots as the README takes them: one file per kind, kubectl's complaint beside each ------------------------

def _read_snapshot(*paths: Path):  # type: ignore[no-untyped-def]
    """The topology and the Kubernetes report as `obsgap report --kube-snapshot` reads them."""
    from datetime import UTC, datetime, timedelta

    from obsgap.model import Topology, Window
    from obsgap.sources.base import ReadContext
    from obsgap.sources.kube.source import TopologySource
    from obsgap.topology import TopologyIndex

    end = datetime(2026, 11, 24, tzinfo=UTC)
    ctx = ReadContext(Window(end - timedelta(hours=1), end), (), TopologyIndex(Topology.empty()), lambda _m: None)
    read = TopologySource(snapshots=paths).read(ctx)
    return read.evidence, read.report


def _checked(topo, check):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from obsgap.analysis import analyze
    from obsgap.engine import run_checks
    from obsgap.evidence import CheckSettings, Evidence
    from obsgap.model import Window

    end = datetime(2026, 11, 24, tzinfo=UTC)
    ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings(), topo)
    (run,), findings = run_checks((check,), ev, analyze(ev))
    return run, findings


def test_the_readme_snapshot_command_takes_every_kind_obsgap_reads() -> None:
    from obsgap.sources.kube.kinds import KIND_OF_RESOURCE, LISTED_KINDS, SNAPSHOT_COMMAND, SNAPSHOT_RESOURCES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert SNAPSHOT_COMMAND in readme
    assert {KIND_OF_RESOURCE[r] for r in SNAPSHOT_RESOURCES} == LISTED_KINDS - {"Endpoints"}


def test_a_list_kubectl_could_not_read_is_unknown_not_empty(realworld: Path, tmp_path: Path) -> None:
    """Istio's subsets by region and zone, saved as the README says: nodes forbidden to the saving user (kubectl
    still prints an empty List, and its error on stderr), GRPCRoutes not installed (kubectl prints nothing), no
    ReferenceGrant in the cluster (an empty List, no error). The Nodes are unknown: the subsets are not reported as
    selecting no pod, their namespace is not examined, and the run is partial; the other two are simply none."""
    from obsgap.checks.destinationrules import DestinationRuleSubsetUnmatched
    from obsgap.sources.kube.snapshot import load_snapshot

    objects, _ = load_snapshot([realworld / "istio-analyzers" / "destinationrule-subsets-with-topology-labels.yaml"])
    empty = {"apiVersion": "v1", "items": [], "kind": "List", "metadata": {"resourceVersion": ""}}
    folder = tmp_path / "cluster"
    folder.mkdir()
    for kind, resource in (("Pod", "pods"), ("Service", "services"), ("DestinationRule",
                                                                       "destinationrules.networking.istio.io")):
        items = [o for o in objects if o.get("kind") == kind]
        (folder / f"{resource}.json").write_text(json.dumps({**empty, "items": items}))
    (folder / "nodes.json").write_text(json.dumps(empty))
    (folder / "nodes.err").write_text('Error from server (Forbidden): nodes is forbidden: User "jane" cannot list '
                                      'resource "nodes" in API group "" at the cluster scope\n')
    (folder / "grpcroutes.gateway.networking.k8s.io.json").write_text("")
    (folder / "grpcroutes.gateway.networking.k8s.io.err").write_text(
        'error: the server doesn\'t have a resource type "grpcroutes"\n')
    (folder / "referencegrants.gateway.networking.k8s.io.json").write_text(json.dumps(empty))
    (folder / "referencegrants.gateway.networking.k8s.io.err").write_text(
        "Warning: gateway.networking.k8s.io/v1beta1 ReferenceGrant is deprecated\n")

    topo, report = _read_snapshot(folder)
    assert set(topo.unread) == {"Node"} and "Forbidden" in topo.unread["Node"]
    assert report.status == "partial" and len(report.denied) == 1
    assert any(g.startswith("GRPCRoute (gateway.networking.k8s.io): not served") for g in report.gaps)
    run, findings = _checked(topo, DestinationRuleSubsetUnmatched)
    assert (list(findings), run.examined) == ([], frozenset())

    (folder / "nodes.json").write_text(json.dumps({**empty, "items": [o for o in objects if o["kind"] == "Node"]}))
    (folder / "nodes.err").write_text("")
    topo, report = _read_snapshot(folder)
    assert (dict(topo.unread), report.status) == ({}, "ok")
    run, findings = _checked(topo, DestinationRuleSubsetUnmatched)
    assert (list(findings), run.examined) == ([], frozenset({"default"}))

    # what kubectl failed to read in one file, another file of the snapshot may hold
    (folder / "nodes.err").write_text('Error from server (Forbidden): nodes is forbidden: User "jane" cannot list '
                                      'resource "nodes" in API group "" at the cluster scope\n')
    (folder / "nodes.json").write_text(json.dumps(empty))
    admin = tmp_path / "nodes-from-admin.json"
    admin.write_text(json.dumps({**empty, "items": [o for o in objects if o["kind"] == "Node"]}))
    topo, report = _read_snapshot(folder, admin)
    assert (dict(topo.unread), report.status) == ({}, "ok")
    # kubectl killed, or not found: nothing written and no error that explains it; an error file that cannot be read
    (folder / "nodes.json").write_text("")
    (folder / "nodes.err").write_text("bash: line 1: kubectl: command not found\n")
    topo, report = _read_snapshot(folder)
    assert "kubectl wrote nothing" in topo.unread["Node"] and report.status == "partial"
    (folder / "nodes.err").unlink()
    (folder / "nodes.err").symlink_to("/proc/self/mem")  # reading it fails (EIO)
    topo, report = _read_snapshot(folder)
    assert "cannot read it" in topo.unread["Node"] and report.status == "partial"
    # a kind the cluster does not serve is not asked for again, whatever its pods suggest
    (folder / "nodes.err").unlink()
    (folder / "nodes.json").write_text(json.dumps({**empty, "items": [o for o in objects if o["kind"] == "Node"]}))
    gateway_pod = k8s_pod("waypoint-0", "waypoint", "10.0.0.9", "default")
    gateway_pod["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] = "waypoint"
    (folder / "more-pods.json").write_text(json.dumps({**empty, "items": [gateway_pod]}))
    (folder / "gateways.gateway.networking.k8s.io.json").write_text("")
    (folder / "gateways.gateway.networking.k8s.io.err").write_text(
        'error: the server doesn\'t have a resource type "gateways"\n')
    topo, report = _read_snapshot(folder)
    assert (dict(topo.unread), report.status) == ({}, "ok")
    assert not any("missing from the snapshot" in g for g in report.gaps)


def test_a_snapshot_without_a_kind_it_shows_exists_leaves_that_kind_unknown(realworld: Path, tmp_path: Path) -> None:
    """Istio's Gateway API controller test: routes from istio-system to Services of other namespaces, a
    ReferenceGrant that allows one of them, and the status the controller wrote (route `http` resolved; route
    `backend-not-allowed` RefNotPermitted for httpbin). Whole, obsgap agrees with the controller. Saved without
    ReferenceGrants (as a command that does not ask for them does), the controller's ResolvedRefs=True shows a
    grant exists: the check does not run, where it would call `http`'s backend not permitted. Without Gateways,
    the routes accepted by one show it exists. Without Nodes, pods that name their node show them."""
    from obsgap.checks.route_refs import RouteRefUnresolved

    folder = realworld / "gateway-controller"
    specs = {(o["kind"], o["metadata"]["name"]): o
             for o in yaml.safe_load_all((folder / "reference-policy-service.yaml").read_text())}
    for o in filter(None, yaml.safe_load_all((folder / "reference-policy-service.status.yaml.golden").read_text())):
        specs[(o["kind"], o["metadata"]["name"])]["status"] = o["status"]
    registry = [k8s_service("my-svc", "service", 80), k8s_service("httpbin", "default", 80),  # the test's own
                k8s_pod("my-svc-0", "my-svc", "10.0.0.2", "service")]
    whole = [*specs.values(), *registry]

    def saved(objects: list[dict[str, Any]], name: str):  # type: ignore[no-untyped-def]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        return _read_snapshot(path)

    topo, report = saved(whole, "whole")
    run, findings = _checked(topo, RouteRefUnresolved)
    assert [(f.cause, f.title) for f in findings] == [
        ("reference-not-permitted", "backend-not-allowed: backend httpbin does not resolve (reference-not-permitted)")]
    assert report.status == "ok" and not topo.unread

    for dropped, unseen in (("ReferenceGrant", "gateway.networking.k8s.io/ReferenceGrant"),
                            ("Gateway", "gateway.networking.k8s.io/Gateway")):
        topo, report = saved([o for o in whole if o["kind"] != dropped], dropped)
        assert set(topo.unread) == {unseen} and "missing from the snapshot" in topo.unread[unseen]
        assert report.status == "partial"
        run, findings = _checked(topo, RouteRefUnresolved)
        assert (run.status, list(findings)) == ("skipped", []) and run.examined is None, dropped

    pod = k8s_pod("web-0", "web", "10.0.0.1", "service")
    topo, _ = saved([*whole, {**pod, "spec": {**pod["spec"], "nodeName": "node-a"}}], "pods")
    assert set(topo.unread) == {"Node"} and "its pods run on node node-a" in topo.unread["Node"]

    # the evidence names the object: a snapshot that holds other Gateways and grants (another namespace's, one of
    # the Gateway API's own examples) still lacks the ones the controller used
    examples = realworld.parent / "gateway_api"
    other_gateway = [o for o in yaml.safe_load_all((examples / "ga_basic-http.yaml").read_text())
                     if o and o["kind"] == "Gateway"]
    other_grant = [o for o in yaml.safe_load_all((examples / "ga_reference-grant.yaml").read_text()) if o]
    for kind, unseen, others in (("ReferenceGrant", "gateway.networking.k8s.io/ReferenceGrant", other_grant),
                                 ("Gateway", "gateway.networking.k8s.io/Gateway", other_gateway)):
        topo, report = saved([*(o for o in whole if o["kind"] != kind), *others], f"other-{kind}")
        assert set(topo.unread) == {unseen} and any(o["kind"] == kind for o in others)
        run, findings = _checked(topo, RouteRefUnresolved)
        assert (run.status, list(findings)) == ("skipped", []), kind


def test_the_nightly_cronjobs_role_lets_it_read_every_kind(realworld: Path, tmp_path: Path) -> None:
    """`obsgap manifests`' ClusterRole, enforced by the loopback API server as RBAC would: every list the live
    reader makes (Gateway API routes and grants included) and the MeshConfig's GET are allowed, so a nightly run
    reads every kind and no check is skipped for want of a list. Without the Gateway API rule the same server
    refuses those lists (the enforcement is real)."""
    from obsgap.manifests import ManifestOptions, manifests
    from obsgap.sources.kube.kinds import LISTED_KINDS
    from obsgap.sources.kube.slos import load_live_slos
    from tests.kube_api import Cluster, serving

    objects, _ = load_snapshot([realworld / "bookinfo", realworld.parent / "gateway_api", realworld / "api",
                                realworld / "gateway-controller" / "reference-policy-service.yaml"])
    mesh = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": "accessLogFile: /dev/stdout\n"}}
    role = next(d for d in manifests(ManifestOptions()) if d["kind"] == "ClusterRole")
    cluster = Cluster([*objects, mesh], rules=role["rules"], not_installed=set())
    with serving(cluster, tmp_path) as kubeconfig:
        live, gaps, unread = load_live(LiveOptions(str(kubeconfig), "test"))
        _, slo_gaps = load_live_slos(LiveOptions(str(kubeconfig), "test"))
    assert (unread, [g for g in gaps + slo_gaps if "forbidden" in g]) == ({}, [])
    read = {f"{str(o.get('apiVersion', '')).rpartition('/')[0]}/{o['kind']}".lstrip("/") for o in live}
    held = {f"{str(o.get('apiVersion', '')).rpartition('/')[0]}/{o['kind']}".lstrip("/") for o in objects}
    assert held & LISTED_KINDS <= read and {"gateway.networking.k8s.io/ReferenceGrant",
                                            "telemetry.istio.io/Telemetry"} <= read
    assert any(o["kind"] == "ConfigMap" for o in live)

    without = [r for r in role["rules"] if "gateway.networking.k8s.io" not in r["apiGroups"]]
    with serving(Cluster([*objects, mesh], rules=without), tmp_path) as kubeconfig:
        _, _, unread = load_live(LiveOptions(str(kubeconfig), "test"))
    assert set(unread) == {f"gateway.networking.k8s.io/{k}" for k in ("Gateway", "HTTPRoute", "GRPCRoute",
                                                                     "ReferenceGrant")}


def test_a_revisioned_mesh_config_is_read_where_the_role_grants_it(tmp_path: Path) -> None:
    """`istioctl install --revision 1-24` keeps that revision's MeshConfig in ConfigMap istio-1-24 (Istio's
    istio-discovery chart), and its injector annotates pods `istio.io/rev: 1-24`. The live reader reads the
    ConfigMap of each revision the pods name; the CronJob's role grants it with `--mesh-revision 1-24`, and without
    it the run says which flag grants it (the format is unknown, not Istio's default)."""
    from obsgap.manifests import ManifestOptions, manifests
    from tests.kube_api import Cluster, serving

    mesh = "accessLogFile: /dev/stdout\naccessLogFormat: '[%START_TIME%] %REQ(:METHOD)% %RESPONSE_CODE%\\n'\n"
    objects = [k8s_service("web"), k8s_pod("web-0", "web", "10.0.0.1", annotations={"istio.io/rev": "1-24"}),
               {"apiVersion": "v1", "kind": "ConfigMap", "data": {"mesh": mesh}, "metadata": {
                   "name": "istio-1-24", "namespace": "istio-system", "labels": {"istio.io/rev": "1-24"}}}]
    for revisions, formats, gap in ((("1-24",), ["ConfigMap istio-system/istio-1-24 accessLogFormat"], None),
                                    ((), [], "ConfigMap istio-system/istio-1-24: read forbidden (HTTP 403): the "
                                             "access-log format of revision 1-24 is unknown (obsgap manifests "
                                             "--mesh-revision 1-24 grants it)")):
        role = next(d for d in manifests(ManifestOptions(mesh_revisions=revisions)) if d["kind"] == "ClusterRole")
        with serving(Cluster(objects, rules=role["rules"]), tmp_path) as kubeconfig:
            topo = build_topology(*load_live(LiveOptions(str(kubeconfig), "test")))
        assert [f.name for f in topo.access_log_formats] == formats
        assert [g for g in topo.gaps if g.startswith("ConfigMap")] == ([gap] if gap else [])


@pytest.mark.parametrize("odd", [{"status": {"parents": 5}},
                                 {"status": {"parents": [{"parentRef": ["x"], "conditions": 3}]}},
                                 {"spec": {"parentRefs": [{"name": "gw"}], "rules": 3},
                                  "status": {"parents": [{"parentRef": "gw", "conditions": [{"type": "ResolvedRefs",
                                                                                            "status": "True"}]}]}},
                                 {"spec": {"rules": [{"backendRefs": 7}]}}])
def test_a_malformed_route_never_gives_a_traceback(tmp_path: Path, odd: dict[str, Any]) -> None:
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r", "namespace": "shop"}, **odd}
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        route, k8s_pod("web-0", "web", "10.0.0.1"), k8s_service("web")]}))
    topo, report = _read_snapshot(snap)  # read leniently, or left out with a gap: never a traceback
    assert not topo.unread and (topo.routes or any(g.startswith("HTTPRoute shop/r: unreadable") for g in report.gaps))
