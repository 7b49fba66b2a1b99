"""dashboard-misses-waypoint: dashboards that read Istio's request metrics with a `reporter` that leaves out the
requests waypoints serve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from obsgap.ambient import SAFE_REPORTER, reporter_misses_waypoint
from obsgap.checks.base import CheckInputs
from obsgap.checks.dashboard_queries import Board, DashboardCheck, by_dashboard, istio_selectors, mesh_pods
from obsgap.model import Finding, FindingEvidence, PanelQuery, Severity, Suggestion
from obsgap.slo.promql import Matcher
from obsgap.topology import TopologyIndex

DOC = "https://github.com/istio/istio/issues/61815"
_RULES_MISS = {
    "reporter-destination": "the rules read none of them (an alert on them is blind to those Services' requests).",
    "reporter-source": "the rules read none of those that callers without a sidecar (ambient pods) send them (an "
                       "alert on them is blind to those requests).",
}


@dataclass(frozen=True, eq=False)
class DashboardEvidence(FindingEvidence):
    """The dashboard's (or rule group's) queries whose `reporter` leaves out reporter="waypoint", and the services
    that loses."""

    dashboard: str
    """The dashboard's title, or the rule group's name."""
    matchers: list[str]
    """The reporter matchers as written (variables resolved to their options)."""
    queries: int
    panels: list[str] = field(default_factory=list)
    waypoint_services: list[str] = field(default_factory=list)
    """namespace/name of the Services a waypoint serves: their L7 traffic is what the dashboard misses."""
    rule_file: str | None = None
    """For a rule group Prometheus evaluates: the file it was loaded from."""


class DashboardMissesWaypoint(DashboardCheck):
    """What it does: where a waypoint serves some Services (ambient mode), reads every Grafana dashboard given
    (`--dashboards`) and every alerting and recording rule Prometheus evaluates (/api/v1/rules) for queries over Istio's
    request metrics (`istio_requests_total`, the duration and size histograms) whose `reporter` matcher leaves out
    `reporter="waypoint"`: `reporter="destination"`, or a variable such as Istio's own `$qrep` whose options are only
    `source` and `destination`. A selector that names (`=`) the one caller it reads, every pod of which has an Envoy
    (`source_workload="istio-ingressgateway"`), or the one Service it reads, none asking for a waypoint, misses
    nothing and is left alone.

    Why is this bad? Since Istio 1.22 a waypoint reports the requests it serves as `reporter="waypoint"`, and
    ztunnel reports no request at all: the panels of Istio's service and workload dashboards (istio#61815) show
    nothing, or only the sidecar part, for every Service behind a waypoint, and an alert on such a query does not
    fire for them.

    Example: the Istio Service Dashboard's 57 `reporter="destination"` queries, on a mesh where `accounts` is served by
    waypoint `bank-waypoint`.

    Use instead: `reporter=~"destination|waypoint"` (and `reporter=~"source|waypoint"` for client-side panels), or
    add `waypoint` to the reporter variable's options.
    """

    id = "dashboard-misses-waypoint"
    title = "Dashboards whose reporter leaves out waypoints"
    needs = ("topology",)
    kinds = ("Service", "Pod", "Namespace", "gateway.networking.k8s.io/Gateway")
    doc_url = DOC
    causes = ("reporter-destination", "reporter-source")
    impact_unit = "dashboard queries"

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        idx = inputs.index
        mesh_pods(inputs)  # none known: which Services a waypoint serves cannot be told
        served = sorted(f"{s.namespace}/{s.name}" for s in idx.topo.services if idx.dataplane(s) == "waypoint")
        if not served:
            return []  # no waypoint serves any Service: every reporter reads what exists
        out = []
        for board, queries in by_dashboard(inputs).items():
            found = _missing(queries, idx)
            if found:
                out.append(_finding(board, found, served))
        return out


def _missing(queries: list[PanelQuery], idx: TopologyIndex) -> list[tuple[PanelQuery, str, str]]:
    """(query, the matcher as resolved, the side it reads) for every selector whose reporter leaves waypoints out,
    unless it reads only callers or Services no waypoint stands in for."""
    out: dict[tuple[int, int], tuple[PanelQuery, str, str]] = {}
    for sel in istio_selectors(queries):
        for m in sel.reporters:
            key = (id(m.query), m.at)
            if not m.l7 or key in out or m.op not in ("=", "=~") or not reporter_misses_waypoint(m.op, m.value):
                continue
            side = "destination" if "destination" in m.value else "source"
            if not _pinned_clear(sel.matchers, side, idx):
                out[key] = (m.query, m.text, side)
    return list(out.values())


def _pinned_clear(matchers: Sequence[Matcher], side: str, idx: TopologyIndex) -> bool:
    """Whether the selector names (`=`) the one workload or Service it reads, and that one misses nothing: callers
    whose every pod has an Envoy (a sidecar or a gateway) report each of their requests as reporter="source";
    Services no waypoint serves are reported as reporter="destination". Istio's stability alerts read
    `reporter="source", source_workload="istio-ingressgateway"`."""
    equal = {m.name: m.value for m in matchers if m.op == "="}
    if side == "source":
        workload, ns = equal.get("source_workload"), equal.get("source_workload_namespace")
        pods = [p for (pod_ns, name), group in idx.workload_pods.items() if name == workload and ns in (None, pod_ns)
                for p in group]
        return bool(pods) and all(p.sidecar.present for p in pods)
    name, ns = equal.get("destination_service_name"), equal.get("destination_service_namespace")
    services = [s for s in (*idx.topo.context_services, *idx.topo.services)
                if s.name == name and ns in (None, s.namespace)]
    return bool(services) and all(idx.waypoint_of(s) is None for s in services)


def _finding(board: Board, found: list[tuple[PanelQuery, str, str]], served: list[str]) -> Finding:
    sides = {side for _, _, side in found}
    cause = "reporter-destination" if "destination" in sides else "reporter-source"
    matchers = sorted({m for _, m, _ in found})
    panels = sorted({q.panel for q, _, _ in found})
    queries = len({id(q) for q, _, _ in found})  # a query may hold several such selectors (a ratio: two)
    names = ", ".join(served[:5]) + (", ..." if len(served) > 5 else "")
    fix = " and ".join(f"{SAFE_REPORTER[side]}" for side in sorted(sides))
    return Finding(
        check=DashboardMissesWaypoint.id, severity=Severity.WARNING,
        title=f"{board.name}: {board.queries(queries)} {'selects' if queries == 1 else 'select'} "
              f"{' or '.join(matchers)} and {'misses' if queries == 1 else 'miss'} waypoint traffic",
        detail=(f"{board.queries(queries)} of {board.words}{board.where(panels)} read{'s' * (queries == 1)} "
                f"Istio's request metrics with {', '.join(matchers)}. A waypoint serves {len(served)} Services "
                f"({names}) and reports their requests as reporter=\"waypoint\": "
                + (_RULES_MISS[cause] if board.rules else "these panels show none of them (istio#61815).")),
        subject=board.subject, cause=cause, resource=board.resource,
        evidence=DashboardEvidence(board.title, matchers, queries, panels[:30], served[:50], board.rule_file),
        suggestion=Suggestion(f"Select {fix} in these queries" + (
            "." if board.rules else ", or add `waypoint` to the reporter variable's options (Istio's dashboards: "
            "$qrep)."), None, DOC))
