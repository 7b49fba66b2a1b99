"""The kinds of Kubernetes object obsgap reads, one list for the live reader, the snapshot command users are told
to run, and the names Topology.unread may hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from obsgap.model import GATEWAY_API_GROUP

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
ISTIO_KINDS = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules",
               "ServiceEntry": "serviceentries", "Sidecar": "sidecars", "Gateway": "gateways"}
GATEWAY_API_VERSIONS = ("v1", "v1beta1", "v1alpha2")
GATEWAY_API_KINDS = {"Gateway": "gateways", "HTTPRoute": "httproutes", "GRPCRoute": "grpcroutes",
                     "ReferenceGrant": "referencegrants"}
TELEMETRY_GROUP = "telemetry.istio.io"
TELEMETRY_VERSIONS = ("v1", "v1alpha1")
TELEMETRY_KINDS = {"Telemetry": "telemetries"}
TELEMETRY_KIND = f"{TELEMETRY_GROUP}/Telemetry"
CUSTOM_KINDS = ((ISTIO_GROUP, ISTIO_VERSIONS, ISTIO_KINDS),
                (GATEWAY_API_GROUP, GATEWAY_API_VERSIONS, GATEWAY_API_KINDS),
                (TELEMETRY_GROUP, TELEMETRY_VERSIONS, TELEMETRY_KINDS))
"""Custom resources read (get/list only), newest served version first."""
_CUSTOM_GROUPS = frozenset(group for group, _, _ in CUSTOM_KINDS)
CORE_KINDS = {"Namespace": "namespaces", "Node": "nodes", "Service": "services", "Pod": "pods",
              "Endpoints": "endpoints", "EndpointSlice": "endpointslices", "ReplicaSet": "replicasets",
              "Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}
CORE_GROUPS = {"EndpointSlice": "discovery.k8s.io", "ReplicaSet": "apps", "Deployment": "apps", "StatefulSet": "apps",
               "DaemonSet": "apps"}
"""The API group of each core kind that has one (the others are in the core group, "")."""
LISTED_KINDS = frozenset((*CORE_KINDS, *(f"{group}/{kind}" for group, _, kinds in CUSTOM_KINDS for kind in kinds)))
"""Every name Topology.unread may hold (`Kind`, or `group/Kind` for a custom resource)."""


def kubectl_resource(kind: str) -> str:
    """What `kubectl get` calls a kind of LISTED_KINDS (`nodes`, `referencegrants.gateway.networking.k8s.io`)."""
    group, _, name = kind.rpartition("/")
    if not group:
        return CORE_KINDS[name]
    plurals = next(kinds for g, _, kinds in CUSTOM_KINDS if g == group)
    return f"{plurals[name]}.{group}"


def api_resources() -> dict[str, list[str]]:
    """The resources listed, by API group ("" the core group), as RBAC names them."""
    out: dict[str, list[str]] = {}
    for kind, plural in CORE_KINDS.items():
        out.setdefault(CORE_GROUPS.get(kind, ""), []).append(plural)
    for group, _, kinds in CUSTOM_KINDS:
        out.setdefault(group, []).extend(dict.fromkeys(kinds.values()))
    return out


SNAPSHOT_RESOURCES = tuple(kubectl_resource(k) for k in (
    *(k for k in CORE_KINDS if k != "Endpoints"),  # EndpointSlices say the same, and v1 Endpoints are deprecated
    *(f"{group}/{kind}" for group, _, kinds in CUSTOM_KINDS for kind in kinds)))
"""The kinds a snapshot should hold, as kubectl names them."""
KIND_OF_RESOURCE = {kubectl_resource(k): k for k in LISTED_KINDS}
SNAPSHOT_COMMAND = ("mkdir -p cluster && for r in " + " ".join(SNAPSHOT_RESOURCES) + "; do kubectl get \"$r\" -A "
                    "-o json > \"cluster/$r.json\" 2> \"cluster/$r.err\"; done")
"""The snapshot the README asks for: one file per kind, since kubectl refuses a whole list of kinds when one is not
installed, and kubectl's complaint beside each (`<kind>.err`), which tells a refused list from an empty one."""


def kind_label(kind: str) -> str:
    """A kind of LISTED_KINDS in words: `Node`, `ReferenceGrant (gateway.networking.k8s.io)`."""
    group, _, name = kind.rpartition("/")
    return f"{name} ({group})" if group else name


def kind_of(obj: Mapping[str, Any]) -> str:
    """The name LISTED_KINDS gives a raw object's kind (`group/Kind` for a custom resource)."""
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    kind = str(obj.get("kind") or "")
    return f"{group}/{kind}" if group in _CUSTOM_GROUPS else kind
