"""route-ref-unresolved: a Gateway API route (HTTPRoute, GRPCRoute) whose parent or backend reference does not
resolve, from the objects themselves and, on a live cluster's objects, from the status the controller wrote."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from obsgap.checks.base import Check, CheckInputs
from obsgap.model import (
    GATEWAY_API_GROUP,
    Finding,
    FindingEvidence,
    KubeGateway,
    ObjectRef,
    Route,
    RouteRef,
    Severity,
    Suggestion,
)
from obsgap.topology import TopologyIndex, reference_granted, selects

DOC = "https://gateway-api.sigs.k8s.io/api-types/httproute/"
DOC_GRANT = "https://gateway-api.sigs.k8s.io/api-types/referencegrant/"

_REASONS = {"NotAllowedByListeners": "not-allowed-by-listener", "NoMatchingParent": "parent-not-found",
            "NoMatchingListenerHostname": "not-allowed-by-listener", "BackendNotFound": "backend-not-found",
            "RefNotPermitted": "reference-not-permitted"}
"""Route status reasons (apis/v1/shared_types.go) and the cause each one is."""


@dataclass(frozen=True, eq=False)
class RouteRefEvidence(FindingEvidence):
    """The reference of the route that does not resolve, and what decided."""

    route: str
    """Kind namespace/name of the route."""
    ref: str
    """The reference as the API reads it (its defaults applied): kind, namespace/name, port, section."""
    role: str
    """parent or backend; `status` where a controller's condition says it."""
    why: str
    condition: dict[str, str] | None = None
    """The status condition (type, status, reason, message) a controller wrote, when the finding comes from it."""


@dataclass(frozen=True)
class Unresolved:
    ref: RouteRef
    role: str
    cause: str
    why: str
    condition: dict[str, str] | None = None


class RouteRefUnresolved(Check):
    """What it does: resolves every parentRef and backendRef of every HTTPRoute and GRPCRoute with the Gateway
    API's defaults (a parent is a `gateway.networking.k8s.io` Gateway unless it says otherwise; a backend a core
    Service) and reports references that reach nothing: a Service parent without `group: ""`
    (`parent-group-missing`: the reference then names a Gateway-API kind "Service" that does not exist), a parent
    Gateway or Service that does not exist (`parent-not-found`), a Gateway none of whose listeners admits the
    route (`not-allowed-by-listener`: its sectionName or port, allowedRoutes namespaces and kinds), a backend
    Service that does not exist (`backend-not-found`) or a backend port it does not declare or no port at all
    (`backend-port-not-declared`), and a backend in another namespace that no ReferenceGrant there allows
    (`reference-not-permitted`). On objects read from a cluster, it also reports the Accepted or ResolvedRefs
    conditions its controller set to False (as istioctl's IST0171 reads them).

    Why is this bad? A route that does not attach, or whose backend does not resolve, routes nothing: requests go
    where they went before (or get a 500), while the route in Git looks applied, and the mesh's metrics never show
    the traffic split or the service the route names.

    Example: a GAMMA HTTPRoute with `parentRefs: [{kind: Service, name: reviews}]` and no `group: ""`.

    Use instead: spell `group: ""` for Service parents, name existing objects and declared ports, and add a
    ReferenceGrant in the backend's namespace for a cross-namespace backend.
    """

    id = "route-ref-unresolved"
    title = "Gateway API routes whose references do not resolve"
    needs = ("topology",)
    kinds = ("Service", "gateway.networking.k8s.io/Gateway", "gateway.networking.k8s.io/HTTPRoute",
             "gateway.networking.k8s.io/GRPCRoute", "gateway.networking.k8s.io/ReferenceGrant")
    doc_url = DOC
    causes = ("parent-group-missing", "parent-not-found", "not-allowed-by-listener", "backend-not-found",
              "backend-port-not-declared", "reference-not-permitted")

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        idx = inputs.index
        gateways = idx.gateways_by_key
        out: list[Finding] = []
        for route in idx.topo.routes:
            problems = [u for ref in route.parents if (u := _parent(route, ref, idx, gateways)) is not None]
            problems += [u for ref in route.backends if (u := _backend(route, ref, idx)) is not None]
            problems += _status(route, problems)
            out.extend(_finding(route, u) for u in problems)
        return out


def _parent(route: Route, ref: RouteRef, idx: TopologyIndex,
            gateways: Mapping[tuple[str, str], KubeGateway]) -> Unresolved | None:
    if ref.kind == "Service":
        if ref.group != "":
            return Unresolved(ref, "parent", "parent-group-missing",
                              f'the parentRef names kind Service without group: "", so its group defaults to '
                              f"{GATEWAY_API_GROUP}, which has no Service kind: the route attaches to nothing")
        if idx.config_service(ref.namespace, ref.name) is None:
            return Unresolved(ref, "parent", "parent-not-found", f"no Service {ref.namespace}/{ref.name} exists")
        return None
    if ref.kind != "Gateway" or ref.group != GATEWAY_API_GROUP:
        return None  # other parents (ServiceImport, an implementation's kinds): not judged
    gw = gateways.get((ref.namespace, ref.name))
    if gw is None:
        return Unresolved(ref, "parent", "parent-not-found", f"no Gateway {ref.namespace}/{ref.name} exists")
    why = _admission(route, ref, gw, idx)
    return None if why is None else Unresolved(ref, "parent", "not-allowed-by-listener", why)


def _admission(route: Route, ref: RouteRef, gw: KubeGateway, idx: TopologyIndex) -> str | None:
    """None when a listener of the Gateway admits the route; else why none does."""
    listeners = [lst for lst in gw.listeners if (ref.section_name is None or lst.name == ref.section_name)
                 and (ref.port is None or lst.port == ref.port)]
    if not listeners:
        named = " ".join(x for x in (f"sectionName {ref.section_name}" if ref.section_name else "",
                                     f"port {ref.port}" if ref.port else "") if x)
        return f"Gateway {gw.namespace}/{gw.name} has no listener with {named or 'any name'}"
    reasons = []
    for lst in listeners:
        if lst.allowed_kinds and route.kind not in lst.allowed_kinds:
            reasons.append(f"listener {lst.name} admits {', '.join(lst.allowed_kinds)} only")
        elif lst.allowed_from == "Same" and route.namespace != gw.namespace:
            reasons.append(f"listener {lst.name} admits routes of namespace {gw.namespace} only "
                           "(allowedRoutes.namespaces.from: Same, the default)")
        elif lst.allowed_from == "Selector":
            ns = idx.topo.namespaces.get(route.namespace)
            if ns is not None and ns.declared and not selects(lst.allowed_selector, ns.labels):
                reasons.append(f"listener {lst.name} admits namespaces labelled "
                               + ", ".join(f"{k}={v}" for k, v in lst.allowed_selector.items())
                               + f", and {route.namespace} is not")
            else:
                return None
        else:
            return None
    return "; ".join(reasons)


def _backend(route: Route, ref: RouteRef, idx: TopologyIndex) -> Unresolved | None:
    if ref.kind != "Service" or ref.group != "":
        return None  # ServiceEntry, Hostname and other kinds: not judged here
    svc = idx.config_service(ref.namespace, ref.name)
    if svc is None:
        return Unresolved(ref, "backend", "backend-not-found", f"no Service {ref.namespace}/{ref.name} exists")
    if ref.port is None:
        return Unresolved(ref, "backend", "backend-port-not-declared",
                          "the backendRef gives no port; for a Service the port is required (the Service port, not "
                          "the target port)")
    if ref.port not in {p.port for p in svc.ports}:
        declared = ", ".join(str(p.port) for p in svc.ports) or "none"
        return Unresolved(ref, "backend", "backend-port-not-declared",
                          f"Service {svc.namespace}/{svc.name} declares port(s) {declared}, not {ref.port}")
    if ref.namespace != route.namespace and not reference_granted(route, ref, idx.topo.reference_grants):
        return Unresolved(ref, "backend", "reference-not-permitted",
                          f"the backend is in namespace {ref.namespace} and no ReferenceGrant there lets "
                          f"{route.kind}s of {route.namespace} refer to Service {ref.name}")
    return None


def _status(route: Route, explained: list[Unresolved]) -> list[Unresolved]:
    """The controller's negative conditions per parent, unless the objects already explain them: Accepted=False for
    a parent found unresolved, ResolvedRefs=False where a backend was."""
    parents = {(u.ref.namespace, u.ref.name) for u in explained if u.role == "parent"}
    backends = any(u.role == "backend" for u in explained)
    out = []
    for namespace, parent, conditions in route.parent_status:
        for c in conditions:
            if c.type not in ("Accepted", "ResolvedRefs") or c.status != "False":
                continue
            if (c.type == "Accepted" and (namespace, parent) in parents) or (c.type == "ResolvedRefs" and backends):
                continue
            ref = RouteRef("", "parent", namespace, parent)
            out.append(Unresolved(ref, "status", _REASONS.get(c.reason, ""),
                                  f"{c.type}=False ({c.reason}) for parent {namespace}/{parent}: {c.message}"
                                  .rstrip(": "),
                                  {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}))
    return out


def _reason(u: Unresolved) -> str:
    return u.condition["reason"] if u.condition else "unresolved"


def _finding(route: Route, u: Unresolved) -> Finding:
    name = f"{route.kind} {route.namespace}/{route.name}"
    if u.role == "status":  # the controller's verdict on the route at one parent
        title = f"{route.name}: {_reason(u)} at parent {u.ref.name}"
        detail = f"The controller reports for {name}: {u.why}."
    else:
        title = f"{route.name}: {u.role} {u.ref.name} does not resolve ({u.cause})"
        detail = f"{name} refers to {u.ref.text} as a {u.role}, which does not resolve: {u.why}."
    return Finding(
        check=RouteRefUnresolved.id, severity=Severity.WARNING, title=title, detail=detail,
        subject=f"{route.kind}/{route.namespace}/{route.name}/{u.role}/{u.ref.text}/{u.cause}",
        namespace=route.namespace, service=u.ref.name if u.ref.kind == "Service" and
        u.ref.namespace == route.namespace else None, cause=u.cause or None, resource=name,
        istio_code="IST0171" if u.condition else None,
        evidence=RouteRefEvidence(name, u.ref.text, u.role, u.why, u.condition),
        refs=(ObjectRef(route.kind, route.namespace, route.name),), suggestion=_fix(route, u))


def _fix(route: Route, u: Unresolved) -> Suggestion:
    ref = u.ref
    if u.role == "status":
        return Suggestion("Fix what the condition's message names; the route's status says when it resolves.",
                          f"kubectl describe {route.kind.lower()} {route.name} -n {route.namespace}", DOC)
    if u.cause == "parent-group-missing":
        return Suggestion(f'Add group: "" to the parentRef of Service {ref.name}.',
                          f'parentRefs:\n- group: ""\n  kind: Service\n  name: {ref.name}'
                          + (f"\n  port: {ref.port}" if ref.port else ""), DOC)
    if u.cause == "reference-not-permitted":
        return Suggestion(f"Add a ReferenceGrant in namespace {ref.namespace} that lets {route.kind}s of "
                          f"{route.namespace} refer to Service {ref.name}.",
                          "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata:\n"
                          f"  name: allow-{route.namespace}-{route.kind.lower()}s\n  namespace: {ref.namespace}\n"
                          "spec:\n  from:\n  - group: gateway.networking.k8s.io\n"
                          f"    kind: {route.kind}\n    namespace: {route.namespace}\n  to:\n  - group: \"\"\n"
                          f"    kind: Service\n    name: {ref.name}", DOC_GRANT)
    if u.cause == "backend-port-not-declared":
        return Suggestion("Give the backendRef the Service port it should reach (one the Service declares).", None, DOC)
    if u.cause == "not-allowed-by-listener":
        return Suggestion("Attach the route to a listener that admits it: fix sectionName or port, or widen the "
                          "listener's allowedRoutes (namespaces.from: All, or a Selector matching the route's "
                          "namespace).", None, DOC)
    return Suggestion(f"Point the reference at an existing {ref.kind}, or create it.", None, DOC)
