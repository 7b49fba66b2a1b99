"""Istio ambient mode's rules, restated as pure functions: which pods ztunnel captures, which waypoint a Service
or pod asks for, and whether that waypoint can serve it.

Sources (docs/design.md, "Ambient mode"): istio/api label/labels.yaml and annotation/annotations.yaml
(`istio.io/dataplane-mode`, `istio.io/use-waypoint`, `istio.io/use-waypoint-namespace`, `istio.io/waypoint-for`,
`ambient.istio.io/redirection`), pilot/pkg/serviceregistry/ambient/waypoints.go (the object's label wins over its
namespace's; `none` opts out; `service` is the default traffic type), istio.io's waypoint guide (a service waypoint
is used only for traffic addressed to the Service's VIP, so never for a headless Service).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from obsgap.model import KubeGateway, ObjectRef, Pod, Service
from obsgap.text import full_match

DATAPLANE_MODE = "istio.io/dataplane-mode"
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR = "istio.io/waypoint-for"
REDIRECTION = "ambient.istio.io/redirection"
INGRESS_USE_WAYPOINT = "istio.io/ingress-use-waypoint"
WAYPOINT_CLASS = "istio-waypoint"
OPT_OUT = ("none", "#none")
"""`none` is Istio's reserved value; `#none` appears in some write-ups but is no valid label value (Kubernetes
label values cannot hold `#`): read alike, so the intent is honoured."""
GATEWAY_POD_LABELS = ("gateway.networking.k8s.io/gateway-name", "istio.io/gateway-name")
"""The labels Istio's deployment controller puts on a Gateway's (and a waypoint's) pods."""
GATEWAY_CLASS_LABEL = "gateway.networking.k8s.io/gateway-class-name"
"""The label with the class of the Gateway a pod runs (`istio-waypoint` for a waypoint's)."""

AMBIENT_CAUSES = ("ambient/pod-opted-out", "ambient/namespace-not-enrolled", "ambient/host-network",
                  "ambient/not-captured")
"""Why a pod of an ambient mesh has no data plane (SidecarState.reason): envoy-bypass and sidecar-missing causes."""

Traffic = Literal["service", "workload"]


def is_ztunnel(pod: Pod) -> bool:
    """A ztunnel pod (istio's ztunnel chart labels them `app: ztunnel`): its logs name the pods of every namespace."""
    return pod.labels.get("app") == "ztunnel" or pod.labels.get("app.kubernetes.io/name") == "ztunnel"


def ambient_namespace(labels: Mapping[str, str]) -> bool:
    return labels.get(DATAPLANE_MODE) == "ambient"


@dataclass(frozen=True)
class WaypointRequest:
    """The waypoint an object asks for (istio.io/use-waypoint), and who asked."""

    namespace: str
    name: str
    asked_by: str
    """`Service shop/api`, `Namespace shop`, `Pod shop/api-1`: where the label is."""
    traffic: Traffic
    """service: a Service's (or a namespace's, for its Services) request; workload: a pod's own label."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def _request(labels: Mapping[str, str], namespace: str, asked_by: str,
             traffic: Traffic) -> WaypointRequest | Literal["none"] | None:
    value = labels.get(USE_WAYPOINT)
    if value is None:
        return None
    if value.strip() in OPT_OUT or not value.strip():
        return "none"
    return WaypointRequest(labels.get(USE_WAYPOINT_NAMESPACE) or namespace, value.strip(), asked_by, traffic)


def service_waypoint(svc: Service, ns_labels: Mapping[str, str]) -> WaypointRequest | None:
    """The waypoint a Service's traffic is sent through: its own label, else its namespace's; `none` opts out."""
    own = _request(svc.labels, svc.namespace, f"Service {svc.namespace}/{svc.name}", "service")
    if own is not None:
        return None if own == "none" else own
    inherited = _request(ns_labels, svc.namespace, f"Namespace {svc.namespace}", "service")
    return None if inherited in (None, "none") else inherited  # type: ignore[return-value]


def pod_waypoint(pod: Pod) -> WaypointRequest | None:
    """A waypoint the pod's own label asks for (traffic addressed to the pod itself). A namespace's label binds
    pods only to waypoints that take workload traffic, silently otherwise, so only the pod's label is judged."""
    own = _request(pod.labels, pod.namespace, f"Pod {pod.namespace}/{pod.name}", "workload")
    return None if own in (None, "none") else own  # type: ignore[return-value]


def use_ref(namespace: str, service: str, request: WaypointRequest) -> ObjectRef:
    """The object a Service's use of a waypoint is (a name-contract link, and the finding about it)."""
    return ObjectRef("use-waypoint", namespace, f"{service}->{request.namespace}/{request.name}")


def waypoint_for(gw: KubeGateway) -> str:
    """The traffic a waypoint takes: its istio.io/waypoint-for label (service, workload, all, none); `service` by
    default. (A GatewayClass can set it too: obsgap does not read GatewayClasses, so a class-level setting is
    taken as the default.)"""
    return gw.labels.get(WAYPOINT_FOR, "service")


def takes(gw: KubeGateway, traffic: Traffic) -> bool:
    return waypoint_for(gw) in (traffic, "all")


def headless(svc: Service) -> bool:
    return str(svc.cluster_ip or "").lower() == "none"


WaypointProblem = Literal["not-found", "not-ready", "waypoint-for-mismatch", "headless-service"]


@dataclass(frozen=True)
class WaypointResolution:
    """What becomes of a waypoint request: the waypoint that serves it, or why none can."""

    request: WaypointRequest
    gateway: KubeGateway | None
    problem: WaypointProblem | None
    why: str
    """In words: what was found (or not), with the condition or label that decided."""

    @property
    def serves(self) -> bool:
        return self.problem is None


def resolve(request: WaypointRequest, gateways: Mapping[tuple[str, str], KubeGateway],
            ready_pods: Mapping[tuple[str, str], int], pod_namespaces: frozenset[str],
            svc: Service | None = None) -> WaypointResolution:
    """Judge one request against the cluster's Gateways. Readiness: the Gateway's Programmed condition where it has
    a status; else its running pods (`ready_pods`), where the topology holds pods of its namespace at all
    (`pod_namespaces`): a manifest without pods proves nothing either way."""
    gw = gateways.get(request.key)
    where = f"{request.namespace}/{request.name}"
    if gw is None:
        return WaypointResolution(request, None, "not-found", f"no Gateway {where} exists")
    if svc is not None and headless(svc):
        return WaypointResolution(request, gw, "headless-service",
                                  f"{svc.namespace}/{svc.name} is headless (clusterIP: None): callers reach its pods "
                                  "by their own addresses, and a waypoint is used only for traffic to a Service VIP")
    if not takes(gw, request.traffic):
        return WaypointResolution(request, gw, "waypoint-for-mismatch",
                                  f"{where} takes {waypoint_for(gw)} traffic ({WAYPOINT_FOR}), not the "
                                  f"{request.traffic} traffic {request.asked_by} sends it")
    programmed = gw.condition("Programmed")
    if programmed is not None and programmed.status != "True":
        return WaypointResolution(request, gw, "not-ready",
                                  f"{where} is not Programmed ({programmed.reason or programmed.status}"
                                  + (f": {programmed.message}" if programmed.message else "") + ")")
    if programmed is None and gw.namespace in pod_namespaces and not ready_pods.get(gw.key):
        return WaypointResolution(request, gw, "not-ready", f"no running pod of {where} is in the topology")
    return WaypointResolution(request, gw, None, f"served by waypoint {where}")


def is_gateway_pod(pod: Pod) -> bool:
    """An ingress (or egress) gateway's pod: Istio's gateway chart labels them `istio: <name>`, a Gateway API
    Gateway's carry its name (a waypoint's class is istio-waypoint: not an ingress). Its Envoy reports the requests
    it forwards as the client (reporter=source)."""
    return pod.labels.get("istio") in ("ingressgateway", "egressgateway") or bool(
        pod.labels.get(GATEWAY_POD_LABELS[0])
        and pod.labels.get(GATEWAY_CLASS_LABEL) != WAYPOINT_CLASS)


def gateway_pods(pods: Iterable[Pod]) -> dict[tuple[str, str], int]:
    """Running pods per Gateway (the label Istio's deployment controller gives them)."""
    out: dict[tuple[str, str], int] = {}
    for pod in pods:
        name = next((pod.labels[k] for k in GATEWAY_POD_LABELS if pod.labels.get(k)), None)
        if name and pod.phase == "Running":
            out[(pod.namespace, name)] = out.get((pod.namespace, name), 0) + 1
    return out


def reporter_misses_waypoint(op: str, value: str) -> bool:
    """Whether a `reporter` matcher leaves out reporter="waypoint", the server side of every request a waypoint
    serves (Istio >= 1.22): `="destination"`, or a regex that does not match `waypoint`. istio#61815 reports this of
    Istio's own service and workload dashboards."""
    hit = full_match(value, "waypoint") if op in ("=~", "!~") else value == "waypoint"
    if hit is None:
        return False
    return not hit if op in ("=", "=~") else hit


SAFE_REPORTER = {"destination": 'reporter=~"destination|waypoint"', "source": 'reporter=~"source|waypoint"'}
"""The matchers istio#61815 proposes in their place."""
