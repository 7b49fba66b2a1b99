"""dashboard-reads-disabled-metric: dashboards whose queries read an Istio metric on a side no proxy reports it."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from obsgap.ambient import SAFE_REPORTER, WAYPOINT_CLASS
from obsgap.checks.base import CheckInputs
from obsgap.checks.dashboard_queries import DashboardCheck, ReporterMatcher, by_dashboard, reporter_matchers
from obsgap.istio import TELEMETRY_METRICS, telemetry_metric
from obsgap.model import Finding, FindingEvidence, PanelQuery, Pod, Severity, Suggestion
from obsgap.sources.kube.kinds import TELEMETRY_KIND
from obsgap.topology import TopologyIndex

DOC = "https://istio.io/latest/docs/reference/config/telemetry/#WorkloadMode"
REPORTERS = ("source", "destination", "waypoint")
_MODE = {"source": "CLIENT", "destination": "SERVER"}
_CAUSE = {"source": "client-side-off", "destination": "server-side-off"}
_HISTOGRAM_PARTS = re.compile(r"_(?:bucket|sum|count)$")


@dataclass(frozen=True, eq=False)
class DisabledMetricEvidence(FindingEvidence):
    """The dashboard's queries that read only series no proxy writes, and why none does."""

    dashboard: str
    matchers: list[str]
    """The reporter matchers as written (variables resolved to their options)."""
    metrics: list[str]
    queries: int
    panels: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    """Why no sidecar reports the metric on that side: the Telemetry resource (or the MeshConfig) that says so."""
    sidecars: int = 0
    """Pods with a sidecar, every one of which is kept from reporting it."""


class DashboardReadsDisabledMetric(DashboardCheck):
    """What it does: reads every Grafana dashboard given (`--dashboards`) for queries over Istio's standard
    metrics (`istio_requests_total`, the duration and size histograms, `istio_tcp_*`) and the side their `reporter`
    matcher reads, variables resolved to their options: `source` is what the callers' sidecars report (the
    Telemetry API's CLIENT mode), `destination` what the servers' sidecars report (SERVER), `waypoint` what
    waypoints report. Where the Telemetry resources (or the MeshConfig) keep every sidecar of the mesh from
    reporting that metric on every side a query reads, and no waypoint reports it there either, the query can show
    nothing.

    Why is this bad? Turning the client side off is a common cardinality cut (it halves Istio's series), and
    Istio's own Mesh Dashboard reads `reporter=~"source|waypoint"`, its Workload Dashboard's outbound panels
    `reporter="source"`: after the cut they show "No data", or zero, which reads as "no traffic".

    Example: Telemetry istio-system/server-metrics-only (`mode: CLIENT`, `disabled: true`, from a published guide)
    and Istio's Mesh Dashboard: each of its `reporter=~"source|waypoint"` queries reads series nothing writes.

    Use instead: select `reporter=~"destination|waypoint"` in those queries (the server side counts the same
    requests and carries the callers' labels), or re-enable the metric for that side.
    """

    id = "dashboard-reads-disabled-metric"
    title = "Dashboards reading metrics no proxy reports"
    needs = ("topology",)
    kinds = ("Pod", TELEMETRY_KIND)
    doc_url = DOC
    causes = ("client-side-off", "server-side-off")
    impact_unit = "dashboard queries"

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        sidecars = [p for p in inputs.index.topo.pods
                    if p.sidecar.present and p.labels.get("gateway.networking.k8s.io/gateway-class-name")
                    != WAYPOINT_CLASS]
        if not inputs.dashboards or not sidecars:
            return []
        sides = _Sides(inputs.index, sidecars)
        out = []
        for dashboard, queries in by_dashboard(inputs).items():
            dark = _dark(queries, sides)
            if dark:
                out.append(_finding(dashboard, dark, sides))
        return out


class _Sides:
    """Per metric and reporter: why no proxy of the mesh reports it there (None where some does), computed once."""

    def __init__(self, idx: TopologyIndex, sidecars: list[Pod]) -> None:
        self.idx, self.sidecars = idx, sidecars
        self._known: dict[tuple[str, str], tuple[str, ...] | None] = {}
        self.waypoint_services = [s for s in idx.topo.services if idx.dataplane(s) == "waypoint"]

    def dark(self, metric: str, reporter: str) -> tuple[str, ...] | None:
        """Why no series of `metric` with this reporter exists (the reasons, in words), or None where one may."""
        key = (metric, reporter)
        if key not in self._known:
            self._known[key] = self._reasons(metric, reporter)
        return self._known[key]

    def _reasons(self, metric: str, reporter: str) -> tuple[str, ...] | None:
        if reporter == "waypoint":
            off = [self.idx.metric_off(s, metric, ()) for s in self.waypoint_services]
            if not self.waypoint_services:
                return ("no waypoint serves any Service",)
            return tuple(sorted({o.why for o in off if o})) if all(o and o.everywhere for o in off) else None
        whys = [self.idx.pod_request_metrics_off(p, metric, (), mode=_MODE[reporter]) for p in self.sidecars]
        return tuple(sorted({w for w in whys if w})) if all(whys) else None


def _admitted(matchers: list[ReporterMatcher]) -> set[str]:
    """The reporters every one of a selector's reporter matchers admits."""
    out = set(REPORTERS)
    for m in matchers:
        try:
            hits = {r for r in REPORTERS if (re.fullmatch(m.value, r) is not None if m.op in ("=~", "!~")
                                            else m.value == r)}
        except re.error:
            return set()  # a matcher Python cannot read: not judged
        out &= hits if m.op in ("=", "=~") else set(REPORTERS) - hits
    return out


@dataclass(frozen=True)
class _Dark:
    query: PanelQuery
    metric: str
    matchers: str
    sides: tuple[str, ...]
    reasons: tuple[str, ...]


def _dark(queries: list[PanelQuery], sides: _Sides) -> list[_Dark]:
    """The selectors whose every admitted reporter has no series of their metric."""
    by_selector: dict[tuple[int, int], list[ReporterMatcher]] = defaultdict(list)
    for m in reporter_matchers(queries):
        by_selector[(id(m.query), m.at)].append(m)
    out = []
    for matchers in by_selector.values():
        first = matchers[0]
        metric = telemetry_metric(_HISTOGRAM_PARTS.sub("", first.metric))
        admitted = sorted(_admitted(matchers))
        if metric is None or not set(admitted) & set(_MODE):
            continue  # not a standard metric, or a selector of waypoints alone (the waypoint checks')
        reasons = [sides.dark(metric, r) for r in admitted]
        if all(r is not None for r in reasons):
            out.append(_Dark(first.query, metric, ", ".join(m.text for m in matchers), tuple(admitted),
                             tuple(dict.fromkeys(w for r in reasons for w in r or ()))))
    return out


def _finding(dashboard: str, dark: list[_Dark], sides: _Sides) -> Finding:
    read = {s for d in dark for s in d.sides if s in _CAUSE}
    cause = _CAUSE["source"] if "source" in read else _CAUSE["destination"]
    matchers = sorted({d.matchers for d in dark})
    metrics = sorted({TELEMETRY_METRICS[d.metric].prometheus for d in dark})
    panels = sorted({d.query.panel for d in dark})
    reasons = list(dict.fromkeys(w for d in dark for w in d.reasons))
    side = "client" if cause == "client-side-off" else "server"
    fix = SAFE_REPORTER["destination" if side == "client" else "source"]
    return Finding(
        check=DashboardReadsDisabledMetric.id, severity=Severity.WARNING,
        title=f"{dashboard}: {len(dark)} {'query reads' if len(dark) == 1 else 'queries read'} Istio metrics no "
              f"proxy reports ({side} side off)",
        detail=(f"{len(dark)} queries of dashboard {dashboard!r} (in {len(panels)} panels) read "
                f"{', '.join(metrics)} with {', '.join(matchers)}, but no proxy of this mesh reports them there: "
                f"{'; '.join(reasons[:4])} (all {len(sides.sidecars)} pods with a sidecar). These panels show no "
                "data, which reads as no traffic."),
        subject=f"dashboard/{dashboard}/{side}-side-off", cause=cause, resource=f"Dashboard {dashboard}",
        evidence=DisabledMetricEvidence(dashboard, matchers, metrics, len(dark), panels[:30], reasons[:10],
                                        len(sides.sidecars)),
        suggestion=Suggestion(f"Select {fix} in these queries (the other side counts the same requests), or "
                              f"re-enable the metric for the {side} side in that Telemetry resource.", None, DOC))
