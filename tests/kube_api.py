"""A loopback Kubernetes API server for tests: list endpoints served from a snapshot's objects (paginated), and
pods/log with kubelet's behaviour, so that the real `kubernetes` client runs against it.

pods/log honours `container`, `timestamps`, `sinceTime`, `previous` and `limitBytes`; a container marked busy
is served only from the last N bytes of its log (kubelet keeps only the current file, 10 MiB by default), and a
pod can be made to answer 403/404/500. Every request path is recorded.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

LIST_PATHS = {  # path -> (API group, kind)
    "/api/v1/namespaces": ("", "Namespace"), "/api/v1/nodes": ("", "Node"), "/api/v1/services": ("", "Service"),
    "/api/v1/pods": ("", "Pod"), "/api/v1/endpoints": ("", "Endpoints"),
    "/apis/discovery.k8s.io/v1/endpointslices": ("discovery.k8s.io", "EndpointSlice"),
    "/apis/apps/v1/replicasets": ("apps", "ReplicaSet"), "/apis/apps/v1/deployments": ("apps", "Deployment"),
    "/apis/apps/v1/statefulsets": ("apps", "StatefulSet"), "/apis/apps/v1/daemonsets": ("apps", "DaemonSet"),
    **{f"/apis/networking.istio.io/v1/{plural}": ("networking.istio.io", kind) for kind, plural in (
        ("VirtualService", "virtualservices"), ("DestinationRule", "destinationrules"),
        ("ServiceEntry", "serviceentries"), ("Sidecar", "sidecars"), ("Gateway", "gateways"))},
    **{f"/apis/gateway.networking.k8s.io/v1/{plural}": ("gateway.networking.k8s.io", kind) for kind, plural in (
        ("Gateway", "gateways"), ("HTTPRoute", "httproutes"), ("GRPCRoute", "grpcroutes"),
        ("ReferenceGrant", "referencegrants"))},
    "/apis/telemetry.istio.io/v1/telemetries": ("telemetry.istio.io", "Telemetry"),
    "/apis/sloth.slok.dev/v1/prometheusservicelevels": ("sloth.slok.dev", "PrometheusServiceLevel"),
    "/apis/pyrra.dev/v1alpha1/servicelevelobjectives": ("pyrra.dev", "ServiceLevelObjective"),
    "/apis/monitoring.coreos.com/v1/prometheusrules": ("monitoring.coreos.com", "PrometheusRule"),
}
_NATURAL_GROUP = {"Gateway": "networking.istio.io"}
"""The group of an object given without apiVersion, where two groups have its kind (build.py reads it so)."""
Line = tuple[str, str]  # (RFC 3339 timestamp, message)


@dataclass
class Cluster:
    objects: list[Mapping[str, Any]]
    logs: dict[tuple[str, str, str, bool], list[Line]] = field(default_factory=dict)
    """(namespace, pod, container, previous) -> lines"""
    busy_tail_bytes: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """containers whose kubelet keeps only their last N bytes of log"""
    failing: dict[tuple[str, str], int] = field(default_factory=dict)
    """(namespace, pod) -> HTTP status of every pods/log request"""
    seen: list[str] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)
    """list paths answered 403 (the service account lacks `list` there)"""
    not_installed: set[str] = field(default_factory=lambda: {"/apis/monitoring.coreos.com/v1/prometheusrules"})
    """list paths of CRDs the cluster lacks (404): by default prometheus-operator's"""
    rules: list[Mapping[str, Any]] | None = None
    """RBAC: the service account's ClusterRole rules; a request none of them allows is answered 403 (None: all)."""

    def allows(self, verb: str, group: str, resource: str, name: str | None = None) -> bool:
        return self.rules is None or any(
            group in r.get("apiGroups", ()) and resource in r.get("resources", ()) and verb in r.get("verbs", ())
            and (not r.get("resourceNames") or name in r["resourceNames"]) for r in self.rules)

    def listed(self, group: str, kind: str) -> list[Mapping[str, Any]]:
        def group_of(o: Mapping[str, Any]) -> str:
            api = str(o.get("apiVersion") or "")
            return api.rpartition("/")[0] if api else _NATURAL_GROUP.get(kind, group)
        return [o for o in self.objects if o.get("kind") == kind and group_of(o) == group]


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts[:19] + "+00:00").timestamp() + (float("0" + ts[19:-1]) if ts[19] == "." else 0)


def serve_lines(lines: list[Line], query: Mapping[str, list[str]], tail_bytes: int | None) -> bytes:
    """kubelet's answer for one container: lines since sinceTime, stamped or not, cut at limitBytes."""
    stamped = query.get("timestamps") == ["true"]
    body = [f"{ts} {msg}\n" if stamped else f"{msg}\n" for ts, msg in lines]
    if tail_bytes is not None:  # only the current file exists: the last lines up to tail_bytes
        kept, size = [], 0
        for line in reversed(body):
            size += len(line.encode())
            if size > tail_bytes:
                break
            kept.append(line)
        start = len(body) - len(kept)
        lines, body = lines[start:], body[start:]
    if "sinceTime" in query:
        since = _epoch(query["sinceTime"][0])
        body = [b for (ts, _m), b in zip(lines, body, strict=True) if _epoch(ts) >= since]
    data = "".join(body).encode()
    if "limitBytes" in query:
        data = data[: int(query["limitBytes"][0])]
    return data


def _handler(cluster: Cluster) -> type[BaseHTTPRequestHandler]:
    class Api(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _status(self, code: int, reason: str, message: str) -> None:
            self._send(code, json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                                         "reason": reason, "message": message}).encode())

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            cluster.seen.append(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" \
                    and parts[6] == "log":
                return self._log(parts[3], parts[5], query)
            if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "configmaps":
                return self._configmap(parts[3], parts[5])
            listed = LIST_PATHS.get(url.path) if url.path not in cluster.not_installed else None
            if url.path in cluster.forbidden or (listed and not cluster.allows("list", listed[0], parts[-1])):
                return self._status(403, "Forbidden", f"{url.path} is forbidden")
            if listed is None:
                return self._status(404, "NotFound", f"{url.path} not found")
            kind = listed[1]
            items = cluster.listed(*listed)
            limit = int(query.get("limit", ["500"])[0])
            offset = int(query.get("continue", ["0"])[0])
            page = items[offset:offset + limit]
            more = offset + limit < len(items)
            return self._send(200, json.dumps({"kind": f"{kind}List", "apiVersion": "v1",
                                               "metadata": {"continue": str(offset + limit)} if more else {},
                                               "items": page}).encode())

        def _configmap(self, namespace: str, name: str) -> None:
            if not cluster.allows("get", "", "configmaps", name):
                return self._status(403, "Forbidden", f'configmaps "{name}" is forbidden')
            found = [o for o in cluster.listed("", "ConfigMap") if (o.get("metadata") or {}).get("name") == name
                     and (o.get("metadata") or {}).get("namespace") == namespace]
            if not found:
                return self._status(404, "NotFound", f'configmaps "{name}" not found')
            return self._send(200, json.dumps(found[0]).encode())

        def _log(self, namespace: str, pod: str, query: Mapping[str, list[str]]) -> None:
            if not cluster.allows("get", "", "pods/log"):
                return self._status(403, "Forbidden", f'pods "{pod}" is forbidden: cannot get resource "pods/log"')
            if (namespace, pod) in cluster.failing:
                code = cluster.failing[(namespace, pod)]
                return self._status(code, {403: "Forbidden", 404: "NotFound"}.get(code, "InternalError"),
                                    f'pods "{pod}" is forbidden: cannot get resource "pods/log"' if code == 403
                                    else f"pod {pod}: error {code}")
            container = query.get("container", [""])[0]
            previous = query.get("previous") == ["true"]
            lines = cluster.logs.get((namespace, pod, container, previous))
            if lines is None:
                return self._status(400 if previous else 404, "BadRequest",
                                    f'previous terminated container "{container}" in pod "{pod}" not found'
                                    if previous else f'container "{container}" not found')
            data = serve_lines(lines, query, cluster.busy_tail_bytes.get((namespace, pod, container)))
            self._send(200, data, "text/plain")

    return Api


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl, as every Debian has it)."""
    cert, key = tmp / "apiserver.crt", tmp / "apiserver.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@dataclass
class InCluster:
    """What a pod's service account gives the client: the API's address, a token and the cluster's CA."""

    host: str
    port: int
    token: Path
    ca: Path


@contextmanager
def serving_in_cluster(cluster: Cluster, tmp: Path) -> Iterator[InCluster]:
    """Serve `cluster` over TLS on loopback, as the API server a pod reaches through its service account."""
    cert, key = self_signed(tmp)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cluster))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = tmp / "token"
    token.write_text("in-cluster-token")
    try:
        yield InCluster("127.0.0.1", server.server_port, token, cert)
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serving(cluster: Cluster, tmp: Path) -> Iterator[Path]:
    """Serve `cluster` on a free loopback port; yield a kubeconfig naming it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cluster))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}]}))
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def cluster_of_scenario(topology: Path, logs: Path) -> Cluster:
    """The scenario's snapshot as the API's objects, and its CRI files as the containers' logs."""
    objects = json.loads(topology.read_text())["items"]
    served: dict[tuple[str, str, str, bool], list[Line]] = {}
    for f in sorted((logs / "pods").glob("*/*/*.log")):
        ns, pod, _uid = f.parent.parent.name.split("_")
        lines = []
        for raw in f.read_text().splitlines():
            ts, _stream, _flag, msg = raw.split(" ", 3)
            lines.append((ts, msg))
        served.setdefault((ns, pod, f.parent.name, False), []).extend(lines)
    return Cluster(objects, served)
