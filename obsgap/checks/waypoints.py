"""waypoint-missing: a namespace, Service or pod asks for a waypoint whose L7 metrics cannot exist."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from obsgap import ambient
from obsgap.ambient import WaypointResolution
from obsgap.checks.base import Check, CheckInputs
from obsgap.model import Condition, Finding, FindingEvidence, ObjectRef, Service, Severity, Suggestion

DOC = "https://istio.io/latest/docs/ambient/usage/waypoint/"
BOUND = "istio.io/WaypointBound"

_WHAT = {
    "not-found": "does not exist",
    "not-ready": "is not ready",
    "waypoint-for-mismatch": "does not take this kind of traffic",
    "headless-service": "is never used for a headless Service",
}


@dataclass(frozen=True, eq=False)
class WaypointEvidence(FindingEvidence):
    """The waypoint asked for, who asked, and what decided that it cannot serve them."""

    waypoint: str
    """namespace/name of the Gateway asked for."""
    asked_by: str
    """The object whose istio.io/use-waypoint label asks (Service, Namespace or Pod, with its name)."""
    why: str
    waypoint_for: str | None = None
    """The waypoint's istio.io/waypoint-for (service by default), when it exists."""
    gateway_class: str | None = None
    services: list[str] = field(default_factory=list)
    """The Services (namespace/name) whose requests get no L7 metrics."""
    observed_requests: int | None = None
    """What the witnesses saw those Services serve in the window (None: not measured)."""

    @property
    def impact(self) -> int:
        return self.observed_requests or 0


class WaypointMissing(Check):
    """What it does: follows every `istio.io/use-waypoint` label (on a Service, else its namespace, and on pods,
    with `istio.io/use-waypoint-namespace` for a waypoint elsewhere) to the Gateway it names, and reports requests no
    waypoint can serve: the Gateway does not exist (`not-found`), is not Programmed or has no running pod
    (`not-ready`), takes another kind of traffic than the label sends it (`istio.io/waypoint-for`: a pod's own label
    needs `workload` or `all`, a Service's `service` or `all`; `waypoint-for-mismatch`), or the Service is headless,
    so callers address its pods and never its VIP (`headless-service`).

    Why is this bad? In ambient mode only a waypoint sees HTTP: without one, ztunnel reports connections
    (`istio_tcp_*`), and every request metric, latency histogram and L7 policy of the service is simply absent,
    while the label makes everyone believe it is there.

    Example: Service `ledger` is labelled `istio.io/use-waypoint: ledger-waypoint`, and no Gateway of that name
    was ever applied.

    Use instead: apply the waypoint (`istioctl waypoint apply -n NS --name NAME`), fix its `istio.io/waypoint-for`,
    or point the label at a waypoint that serves it; the finding carries the manifest.
    """

    id = "waypoint-missing"
    title = "Waypoints asked for that cannot serve"
    needs = ("topology",)
    kinds = ("Service", "Pod", "Namespace", "gateway.networking.k8s.io/Gateway")
    doc_url = DOC
    causes = ("not-found", "not-ready", "waypoint-for-mismatch", "headless-service")

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        idx = inputs.index
        by_request: dict[tuple[str, str, str], list[tuple[str, WaypointResolution]]] = defaultdict(list)
        for svc in idx.topo.services:
            found = idx.waypoint_of(svc)
            if found is not None and not found.serves:
                by_request[(found.request.asked_by, *found.request.key)].append(
                    (f"{svc.namespace}/{svc.name}", found))
        out = [_finding(inputs, group) for asked in by_request.values() for group in _by_problem(asked)]
        flagged = {s for asked in by_request.values() for s, _ in asked}
        for svc in idx.topo.services:
            bound = next((c for c in svc.conditions if c.type == BOUND), None)
            if bound is not None and bound.status == "False" and f"{svc.namespace}/{svc.name}" not in flagged:
                out.append(_status_finding(inputs, svc, bound))
        per_workload: dict[tuple[str, str, str, str], WaypointResolution] = {}
        for pod in idx.topo.pods:
            found = idx.pod_waypoint_of(pod)
            if found is not None and not found.serves:
                per_workload.setdefault((pod.namespace, pod.workload_kind, pod.workload, found.request.name), found)
        for (ns, kind, workload, _), found in per_workload.items():
            out.append(_pod_finding(ns, kind, workload, found))
        return out


def _by_problem(asked: list[tuple[str, WaypointResolution]]) -> list[list[tuple[str, WaypointResolution]]]:
    """A namespace's label reaches many Services: one finding per problem (headless ones apart from the rest)."""
    groups: dict[str | None, list[tuple[str, WaypointResolution]]] = defaultdict(list)
    for entry in asked:
        groups[entry[1].problem].append(entry)
    return list(groups.values())


def _observed(inputs: CheckInputs, services: list[str]) -> int | None:
    traffic = inputs.analysis.traffic.services
    counts = [traffic[(ns, name)].observed for ns, _, name in (s.partition("/") for s in services)
              if (ns, name) in traffic and traffic[(ns, name)].witness is not None]  # no witness: not 0, unknown
    return sum(counts) if counts else None


def _finding(inputs: CheckInputs, asked: list[tuple[str, WaypointResolution]]) -> Finding:
    services = sorted(s for s, _ in asked)
    found = asked[0][1]
    req, gw = found.request, found.gateway
    problem = found.problem or "not-found"
    where = f"{req.namespace}/{req.name}"
    kind, _, obj = req.asked_by.partition(" ")
    obj_ns, _, obj_name = obj.partition("/")
    one = services[0].split("/")[1] if len(services) == 1 else None
    observed = _observed(inputs, services)
    seen = f" Witnesses saw {observed:,} requests to them in the window." if observed else ""
    which = f"Service {services[0]}" if one else f"{len(services)} Services ({', '.join(services[:5])}" + (
        ", ...)" if len(services) > 5 else ")")
    return Finding(
        check=WaypointMissing.id, severity=Severity.WARNING if problem != "headless-service" else Severity.INFO,
        title=f"{one or obj_name or obj_ns}: waypoint {req.name} {_WHAT[problem]}",
        detail=(f"{req.asked_by} asks for waypoint {where} (istio.io/use-waypoint), which {_WHAT[problem]}: "
                f"{found.why}. {which} therefore get no L7 telemetry: ztunnel counts their connections "
                f"(istio_tcp_*), no istio_requests_total or duration histogram exists for them.{seen}"),
        subject=f"{req.asked_by}->{where}/{problem}", namespace=obj_ns or req.namespace, service=one,
        cause=problem, resource=f"{kind} {obj}",
        evidence=WaypointEvidence(where, req.asked_by, found.why, ambient.waypoint_for(gw) if gw else None,
                                  gw.class_name if gw else None, services, observed),
        refs=tuple(ambient.use_ref(ns, name, req) for ns, _, name in (s.partition("/") for s in services)),
        suggestion=_fix(found))


def _status_finding(inputs: CheckInputs, svc: Service, bound: Condition) -> Finding:
    """istiod's own verdict (status condition istio.io/WaypointBound=False, istioctl's IST0171)."""
    problem = "not-ready" if "not ready" in bound.message.lower() or "NotReady" in bound.reason else "not-found"
    key = f"{svc.namespace}/{svc.name}"
    observed = _observed(inputs, [key])
    why = f"{BOUND}=False ({bound.reason}): {bound.message}".rstrip(": ")
    return Finding(
        check=WaypointMissing.id, severity=Severity.WARNING,
        title=f"{svc.name}: istiod could not bind its waypoint ({bound.reason})",
        detail=(f"Service {key} carries {why}, written by istiod: its traffic is not sent through a waypoint, so "
                "ztunnel counts its connections and no request metric exists for it."
                + (f" Witnesses saw {observed:,} requests to it in the window." if observed else "")),
        subject=f"Service {key}/{BOUND}/{problem}", namespace=svc.namespace, service=svc.name, cause=problem,
        resource=f"Service {key}", istio_code="IST0171",
        evidence=WaypointEvidence("", f"Service {key}", why, services=[key], observed_requests=observed),
        refs=(ObjectRef("Service", svc.namespace, svc.name),),
        suggestion=Suggestion("Check the waypoint the Service (or its namespace) names: that it exists, is "
                              "Programmed and has running pods.", f"kubectl get svc {svc.name} -n {svc.namespace} "
                              "-o jsonpath='{.status.conditions}'\nkubectl get gateways -n " + svc.namespace, DOC))


def _pod_finding(ns: str, kind: str, workload: str, found: WaypointResolution) -> Finding:
    req, gw = found.request, found.gateway
    problem = found.problem or "not-found"
    where = f"{req.namespace}/{req.name}"
    return Finding(
        check=WaypointMissing.id, severity=Severity.WARNING,
        title=f"{workload}: waypoint {req.name} {_WHAT[problem]} for its pods",
        detail=(f"Pods of {ns}/{workload} ask for waypoint {where} (their own istio.io/use-waypoint label), which "
                f"{_WHAT[problem]}: {found.why}. Traffic addressed to these pods gets no L7 telemetry."),
        subject=f"{ns}/{workload}->{where}/{problem}", namespace=ns, workload=workload, cause=problem,
        resource=f"{kind} {ns}/{workload}",
        evidence=WaypointEvidence(where, req.asked_by, found.why, ambient.waypoint_for(gw) if gw else None,
                                  gw.class_name if gw else None),
        refs=(ObjectRef("Gateway", req.namespace, req.name),), suggestion=_fix(found))


def _fix(found: WaypointResolution) -> Suggestion:
    req = found.request
    name, ns = req.name, req.namespace
    if found.problem == "not-ready":
        return Suggestion(f"Find out why waypoint {ns}/{name} is not serving: its status, and its pods.",
                          f"kubectl describe gateway {name} -n {ns}\n"
                          f"kubectl get pods -n {ns} -l gateway.networking.k8s.io/gateway-name={name}", DOC)
    if found.problem == "waypoint-for-mismatch":
        return Suggestion(f"Let waypoint {ns}/{name} take {req.traffic} traffic (or point the label at a waypoint "
                          "that does).", f"kubectl label gateway {name} -n {ns} {ambient.WAYPOINT_FOR}=all "
                          "--overwrite", DOC)
    if found.problem == "headless-service":
        return Suggestion("Callers of a headless Service address its pods: bind the pods to a waypoint that takes "
                          "workload traffic, and label it so.",
                          f"kubectl label gateway {name} -n {ns} {ambient.WAYPOINT_FOR}=all --overwrite\n"
                          f"kubectl label pods -n {ns} -l <the Service's selector> {ambient.USE_WAYPOINT}={name}",
                          DOC)
    traffic = "workload" if req.traffic == "workload" else "service"
    return Suggestion(f"Apply waypoint {ns}/{name} (or point the label at one that exists).",
                      f"istioctl waypoint apply -n {ns} --name {name}"
                      + (" --for workload" if traffic == "workload" else "") + "\n# or:\n"
                      "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n"
                      f"  name: {name}\n  namespace: {ns}\n  labels:\n    {ambient.WAYPOINT_FOR}: {traffic}\nspec:\n"
                      f"  gatewayClassName: {ambient.WAYPOINT_CLASS}\n  listeners:\n  - name: mesh\n    port: 15008\n"
                      "    protocol: HBONE", DOC)
