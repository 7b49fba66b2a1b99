"""dashboard-misses-waypoint: dashboards that read Istio's request metrics with a `reporter` that leaves out the
requests waypoints serve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from obsgap.ambient import SAFE_REPORTER, reporter_misses_waypoint
from obsgap.checks.base import CheckInputs
from obsgap.checks.dashboard_queries import DashboardCheck, by_dashboard, mesh_pods, reporter_matchers
from obsgap.model import Finding, FindingEvidence, PanelQuery, Severity, Suggestion

DOC = "https://github.com/istio/istio/issues/61815"


@dataclass(frozen=True, eq=False)
class DashboardEvidence(FindingEvidence):
    """The dashboard's queries whose `reporter` leaves out reporter="waypoint", and the services that loses."""

    dashboard: str
    matchers: list[str]
    """The reporter matchers as written (variables resolved to their options)."""
    queries: int
    panels: list[str] = field(default_factory=list)
    waypoint_services: list[str] = field(default_factory=list)
    """namespace/name of the Services a waypoint serves: their L7 traffic is what the dashboard misses."""


class DashboardMissesWaypoint(DashboardCheck):
    """What it does: where a waypoint serves some Services (ambient mode), reads every Grafana dashboard given
    (`--dashboards`) for queries over Istio's request metrics (`istio_requests_total`, the duration and size
    histograms) whose `reporter` matcher leaves out `reporter="waypoint"`: `reporter="destination"`, or a
    variable such as Istio's own `$qrep` whose options are only `source` and `destination`.

    Why is this bad? Since Istio 1.22 a waypoint reports the requests it serves as `reporter="waypoint"`, and
    ztunnel reports no request at all: the panels of Istio's service and workload dashboards (istio#61815) show
    nothing, or only the sidecar part, for every Service behind a waypoint.

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
        for dashboard, queries in by_dashboard(inputs).items():
            found = _missing(queries)
            if found:
                out.append(_finding(dashboard, found, served))
        return out


def _missing(queries: list[PanelQuery]) -> list[tuple[PanelQuery, str, str]]:
    """(query, the matcher as resolved, the side it reads) for every selector whose reporter leaves waypoints out."""
    out: dict[tuple[int, int], tuple[PanelQuery, str, str]] = {}
    for m in reporter_matchers(queries):
        key = (id(m.query), m.at)
        if m.l7 and key not in out and m.op in ("=", "=~") and reporter_misses_waypoint(m.op, m.value):
            out[key] = (m.query, m.text, "destination" if "destination" in m.value else "source")
    return list(out.values())


def _finding(dashboard: str, found: list[tuple[PanelQuery, str, str]], served: list[str]) -> Finding:
    sides = {side for _, _, side in found}
    cause = "reporter-destination" if "destination" in sides else "reporter-source"
    matchers = sorted({m for _, m, _ in found})
    panels = sorted({q.panel for q, _, _ in found})
    names = ", ".join(served[:5]) + (", ..." if len(served) > 5 else "")
    fix = " and ".join(f"{SAFE_REPORTER[side]}" for side in sorted(sides))
    return Finding(
        check=DashboardMissesWaypoint.id, severity=Severity.WARNING,
        title=f"{dashboard}: " + (f"1 query selects {matchers[0]} and misses" if len(found) == 1 else
                                  f"{len(found)} queries select {' or '.join(matchers)} and miss")
              + " waypoint traffic",
        detail=(f"{len(found)} queries of dashboard {dashboard!r} (in {len(panels)} panels) read Istio's request "
                f"metrics with {', '.join(matchers)}. A waypoint serves {len(served)} Services ({names}) and reports "
                'their requests as reporter="waypoint": these panels show none of them (istio#61815).'),
        subject=f"dashboard/{dashboard}", cause=cause, resource=f"Dashboard {dashboard}",
        evidence=DashboardEvidence(dashboard, matchers, len(found), panels[:30], served[:50]),
        suggestion=Suggestion(f"Select {fix} in these queries, or add `waypoint` to the reporter variable's options "
                              "(Istio's dashboards: $qrep).", None, DOC))
