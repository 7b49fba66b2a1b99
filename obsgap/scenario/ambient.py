"""What an ambient mesh leaves behind in a simulated cluster: its Kubernetes objects (enrolled namespaces, waypoint
Gateways and their pods, ztunnel), ztunnel's access-log lines and the waypoint's, as upstream writes them
(tests/data/ambient/PROVENANCE.md; docs/design.md "Ambient mode")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from obsgap.scenario.spec import ScenarioSpec, ServiceSpec, WaypointSpec

ZTUNNEL_NAMESPACE, ZTUNNEL_POD, ZTUNNEL_IP = "istio-system", "ztunnel-x7k2p", "10.44.200.2"
ZTUNNEL_UID = "6f1a3c2e-0b7d-4e8a-9c1f-2d3e4f5a6b7c"
WAYPOINT_IPS = "10.44.201."
HBONE_PORT = 15008


def ambient_enrolled(spec: ScenarioSpec, svc: ServiceSpec) -> bool:
    """ztunnel captures the service's pods: enrolled by their namespace or their own label, not opted out, not on the
    host's network."""
    enrolled = svc.ambient or svc.namespace in spec.ambient_namespaces
    return enrolled and not svc.ambient_opt_out and not svc.host_network


def serving_waypoint(spec: ScenarioSpec, svc: ServiceSpec) -> WaypointSpec | None:
    """The waypoint that sees the Service's requests: the one its label names, if it exists, is programmed, takes
    service traffic, and the Service has a VIP."""
    if svc.use_waypoint is None or svc.headless:
        return None
    wp = next((w for w in spec.waypoints if (w.namespace, w.name) == (svc.namespace, svc.use_waypoint)), None)
    if wp is None or not wp.programmed or (wp.waypoint_for or "service") not in ("service", "all"):
        return None
    return wp


def waypoint_pod(wp: WaypointSpec) -> str:
    return f"{wp.name}-6d8f7b9c5-q2x7n"


def waypoint_ip(spec: ScenarioSpec, wp: WaypointSpec) -> str:
    return WAYPOINT_IPS + str(spec.waypoints.index(wp) + 2)


def objects(spec: ScenarioSpec) -> list[dict[str, Any]]:
    """The waypoints' Gateways and pods (as Istio's deployment controller labels them), and the node's ztunnel."""
    items: list[dict[str, Any]] = []
    for wp in spec.waypoints:
        labels = {"istio.io/waypoint-for": wp.waypoint_for} if wp.waypoint_for else {}
        status = "True" if wp.programmed else "False"
        items.append({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": wp.name, "namespace": wp.namespace, "labels": labels},
            "spec": {"gatewayClassName": "istio-waypoint",
                     "listeners": [{"name": "mesh", "port": HBONE_PORT, "protocol": "HBONE"}]},
            "status": {"conditions": [{"type": "Programmed", "status": status,
                                       "reason": "Programmed" if wp.programmed else "NoResources",
                                       "message": "" if wp.programmed else "deployment has no ready replicas"}]}})
        if wp.programmed:
            items.append(_pod(wp.namespace, waypoint_pod(wp), waypoint_ip(spec, wp), {
                "sidecar.istio.io/inject": "false", "istio.io/dataplane-mode": "none",
                "gateway.networking.k8s.io/gateway-name": wp.name,
                "gateway.networking.k8s.io/gateway-class-name": "istio-waypoint"}, wp.name))
    if spec.ambient_namespaces or any(s.ambient for s in spec.services):
        items.append(_pod(ZTUNNEL_NAMESPACE, ZTUNNEL_POD, ZTUNNEL_IP, {"app": "ztunnel"}, "ztunnel", "DaemonSet"))
    return items


def _pod(ns: str, name: str, ip: str, labels: dict[str, str], owner: str, kind: str = "ReplicaSet") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "15020",
                                         "prometheus.io/path": "/stats/prometheus"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind,
                                              "name": owner if kind != "ReplicaSet" else name.rsplit("-", 1)[0],
                                              "controller": True}]},
            "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.0",
                                     "ports": [{"containerPort": 15020, "name": "metrics", "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip}}


def scrape_labels(ns: str, pod: str, ip: str) -> dict[str, str]:
    return {"job": "kubernetes-pods", "namespace": ns, "pod": pod, "instance": f"{ip}:15020"}


def ztunnel_ts(t: float) -> str:
    """ztunnel's own timestamps: RFC 3339 with microseconds."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((t % 1) * 1e6):06d}Z"


def ztunnel_line(t: float, src: tuple[str, str] | None, src_ip: str, dst: tuple[str, str], dst_ip: str, port: int,
                 fqdn: str, duration_ms: float, hbone: bool) -> str:
    """One inbound `connection complete` line in ztunnel's TEXT format (tab-separated head, Debug-quoted strings,
    bare addresses), as istio/ztunnel src/telemetry.rs writes it. src, dst: (namespace, pod); src None for a caller
    outside the mesh (plain TCP: no identity, no HBONE address)."""
    fields = [f"src.addr={src_ip}:46520"]
    if src is not None:
        fields += [f'src.workload="{src[1]}"', f'src.namespace="{src[0]}"',
                   f'src.identity="spiffe://cluster.local/ns/{src[0]}/sa/default"']
    ns, pod = dst
    fields.append(f"dst.addr={dst_ip}:{HBONE_PORT if hbone else port}")
    if hbone:
        fields.append(f"dst.hbone_addr={dst_ip}:{port}")
    fields += [f'dst.service="{fqdn}"', f'dst.workload="{pod}"', f'dst.namespace="{ns}"']
    if hbone:
        fields.append(f'dst.identity="spiffe://cluster.local/ns/{ns}/sa/default"')
    fields += ['direction="inbound"', "bytes_sent=175", "bytes_recv=80", f'duration="{max(0, round(duration_ms))}ms"']
    return f"{ztunnel_ts(t)}\tinfo\taccess\tconnection complete\t" + " ".join(fields)


def waypoint_line(t: str, method: str, path: str, code: int, dur_ms: float, authority: str, pod_ip: str, port: int,
                  service_port: int, fqdn: str, vip: str, remote: str, rid: str) -> str:
    """A waypoint's access-log line in Istio's default TEXT format: cluster `inbound-vip|...`, the upstream through
    HBONE as `envoy://connect_originate/<pod>` (kiali/kiali#8146, istio#50321)."""
    ms = max(0, round(dur_ms))
    return (f'[{t}] "{method} {path} HTTP/1.1" {code} - via_upstream - "-" 0 48 {ms} {ms} "-" "Go-http-client/1.1" '
            f'"{rid}" "{authority}" "envoy://connect_originate/{pod_ip}:{port}" '
            f"inbound-vip|{service_port}|http|{fqdn} envoy://internal_client_address/ {vip}:{service_port} "
            f"{remote}:51658 - default")
