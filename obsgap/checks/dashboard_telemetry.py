"""dashboard-reads-disabled-metric: dashboards whose queries read an Istio metric on a side no proxy reports it."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from obsgap.ambient import GATEWAY_CLASS_LABEL, SAFE_REPORTER, WAYPOINT_CLASS
from obsgap.checks.base import CheckInputs
from obsgap.checks.dashboard_queries import (
    Board,
    DashboardCheck,
    IstioSelector,
    admitted,
    by_dashboard,
    istio_selectors,
    mesh_pods,
)
from obsgap.istio import TELEMETRY_METRICS, telemetry_metric
from obsgap.model import Finding, FindingEvidence, PanelQuery, Pod, Severity, Suggestion
from obsgap.sources.kube.kinds import TELEMETRY_KIND
from obsgap.topology import TopologyIndex

DOC = "https://istio.io/latest/docs/reference/config/telemetry/#WorkloadMode"
_MODE = {"source": "CLIENT", "destination": "SERVER"}
_CAUSE = {"source": "client-side-off", "destination": "server-side-off"}
_HISTOGRAM_PARTS = re.compile(r"_(?:bucket|sum|count)$")
_RULES_DARK = ("Istio series: an alert on them judges an empty series, as if there were no traffic (one on `absent()` "
               "or a floor fires all the time, one on a ceiling never does), and a recording rule over them records "
               "nothing.")
NOT_EXPORTED = frozenset({"istio_request_duration_seconds"})
"""Names Istio's proxies no longer export (Mixer's duration histogram): Istio's own dashboards still `or` them with
istio_request_duration_milliseconds, and they add nothing to what a query can show."""


@dataclass(frozen=True, eq=False)
class DisabledMetricEvidence(FindingEvidence):
    """The dashboard's (or rule group's) queries that read only series no proxy writes, and why none does."""

    dashboard: str
    """The dashboard's title, or the rule group's name."""
    matchers: list[str]
    """The reporter matchers as written (variables resolved to their options)."""
    metrics: list[str]
    queries: int
    panels: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    """Why no sidecar reports the metric on that side: the Telemetry resource (or the MeshConfig) that says so."""
    sidecars: int = 0
    """Pods with a sidecar, every one of which is kept from reporting it."""
    rule_file: str | None = None
    """For a rule group Prometheus evaluates: the file it was loaded from."""


class DashboardReadsDisabledMetric(DashboardCheck):
    """What it does: reads every Grafana dashboard given (`--dashboards`) and every alerting and recording rule
    Prometheus evaluates (/api/v1/rules) for queries over Istio's standard metrics (`istio_requests_total`, the duration
    and size histograms, `istio_tcp_*`) and the side their `reporter` matcher reads, variables resolved to their
    options: `source` is what the callers' sidecars report (the Telemetry API's CLIENT mode), `destination` what the
    servers' sidecars report (SERVER), `waypoint` what waypoints report. Where the Telemetry resources (or the
    MeshConfig) keep every sidecar of the mesh from reporting that metric on every side a query reads, and no waypoint
    reports it there either, the query can show nothing.

    Why is this bad? Turning the client side off is a common cardinality cut (it halves Istio's series), and
    Istio's own Mesh Dashboard reads `reporter=~"source|waypoint"`, its Workload Dashboard's outbound panels
    `reporter="source"`: after the cut they show "No data", or zero, which reads as "no traffic". An alert on
    such a query can never fire (one on `absent()` of it fires all the time); a recording rule records nothing.

    Example: Telemetry istio-system/server-metrics-only (`mode: CLIENT`, `disabled: true`, from a published guide)
    and Istio's Mesh Dashboard: each of its `reporter=~"source|waypoint"` queries reads series nothing writes.

    Use instead: select `reporter=~"destination|waypoint"` in those queries (the server side counts the same
    requests and carries the callers' labels), or re-enable the metric for that side.
    """

    id = "dashboard-reads-disabled-metric"
    title = "Dashboards reading metrics no proxy reports"
    needs = ("topology",)
    kinds = ("Service", "Pod", "Namespace", "gateway.networking.k8s.io/Gateway", TELEMETRY_KIND)
    doc_url = DOC
    causes = ("client-side-off", "server-side-off")
    impact_unit = "dashboard queries"

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        every = mesh_pods(inputs)
        sidecars = [p for p in every if p.sidecar.present and not _is_waypoint(p)]
        if not inputs.dashboards or not sidecars:
            return []
        sides = _Sides(inputs.index, sidecars, every)
        out = []
        for board, queries in by_dashboard(inputs).items():
            dark = _dark(queries, sides)
            if dark:
                out.append(_finding(board, dark, sides))
        return out


def _is_waypoint(pod: Pod) -> bool:
    return pod.labels.get(GATEWAY_CLASS_LABEL) == WAYPOINT_CLASS


class _Sides:
    """Per metric and reporter: why no proxy of the mesh reports it there (None where some may), computed once."""

    def __init__(self, idx: TopologyIndex, sidecars: list[Pod], every: Sequence[Pod]) -> None:
        self.idx, self.sidecars = idx, sidecars
        self.scoped = bool(idx.topo.context_pods)
        self.waypoints = any(_is_waypoint(p) for p in every)
        self.ztunnel = any(p.sidecar.mode == "ambient" for p in every)
        self._known: dict[tuple[str, str], tuple[str, ...] | None] = {}

    def dark(self, metric: str, reporter: str) -> tuple[str, ...] | None:
        """Why no series of `metric` with this reporter exists (the reasons, in words), or None where one may."""
        key = (metric, reporter)
        if key not in self._known:
            self._known[key] = self._reasons(metric, reporter)
        return self._known[key]

    def _reasons(self, metric: str, reporter: str) -> tuple[str, ...] | None:
        if reporter == "waypoint":
            if not self.waypoints:
                return ("no waypoint runs",)
            if self.scoped:
                return None  # the Services of other namespaces, and their waypoints, are not all known
            served = [s for s in self.idx.topo.services if self.idx.dataplane(s) == "waypoint"]
            off = [self.idx.metric_off(s, metric, ()) for s in served]
            return tuple(sorted({o.why for o in off if o})) if served and all(o and o.everywhere for o in off) \
                else None
        if metric.startswith("TCP_") and self.ztunnel:
            return None  # ztunnel reports istio_tcp_* as source and destination, whatever Telemetry says
        whys = [self.idx.pod_request_metrics_off(p, metric, (), mode=_MODE[reporter]) for p in self.sidecars]
        return tuple(sorted({w for w in whys if w})) if all(whys) else None


@dataclass(frozen=True)
class _Read:
    """One selector that reads only series no proxy writes."""

    metric: str
    """The metric's Telemetry name."""
    matchers: str
    """Its reporter matchers as written."""
    sides: frozenset[str]
    """The reporters it reads."""
    reasons: tuple[str, ...]
    """Why no proxy writes it there."""


@dataclass(frozen=True)
class _Dark:
    """A query whose every selector over Istio's metrics reads only series no proxy writes."""

    query: PanelQuery
    metrics: tuple[str, ...]
    matchers: tuple[str, ...]
    sides: frozenset[str]
    reasons: tuple[str, ...]


def _dark(queries: list[PanelQuery], sides: _Sides) -> list[_Dark]:
    by_query: dict[int, list[IstioSelector]] = defaultdict(list)
    for sel in istio_selectors(queries):
        by_query[id(sel.query)].append(sel)
    out = []
    for selectors in by_query.values():
        judged = [_judge(sel, sides) for sel in selectors
                  if _HISTOGRAM_PARTS.sub("", sel.metric) not in NOT_EXPORTED]
        read = [j for j in judged if j is not None]
        if judged and len(read) == len(judged):
            out.append(_Dark(selectors[0].query, tuple(dict.fromkeys(r.metric for r in read)),
                             tuple(dict.fromkeys(r.matchers for r in read if r.matchers)),
                             frozenset(s for r in read for s in r.sides),
                             tuple(dict.fromkeys(w for r in read for w in r.reasons))))
    return out


def _judge(sel: IstioSelector, sides: _Sides) -> _Read | None:
    """How a selector reads only series no proxy writes; None where it may read some (or where it cannot be told:
    a metric Istio does not export by that name, a matcher Python cannot read, waypoints alone)."""
    metric = telemetry_metric(_HISTOGRAM_PARTS.sub("", sel.metric))
    reads = admitted(sel.reporters)
    if metric is None or reads is None or not reads & set(_MODE):
        return None
    reasons = [sides.dark(metric, r) for r in sorted(reads)]
    if any(r is None for r in reasons):
        return None
    return _Read(metric, ", ".join(m.text for m in sel.reporters), frozenset(reads),
                 tuple(dict.fromkeys(w for r in reasons for w in r or ())))


def _finding(board: Board, dark: list[_Dark], sides: _Sides) -> Finding:
    read = {s for d in dark for s in d.sides if s in _CAUSE}
    side = "source" if "source" in read else "destination"
    other = "destination" if side == "source" else "source"
    matchers = sorted({m for d in dark for m in d.matchers} or {"no reporter matcher"})
    metrics = sorted({TELEMETRY_METRICS[m].prometheus for d in dark for m in d.metrics})
    panels = sorted({d.query.panel for d in dark})
    reasons = list(dict.fromkeys(w for d in dark for w in d.reasons))
    words = "client" if side == "source" else "server"
    both = read == set(_CAUSE) or any(sides.dark(m, other) is not None for d in dark for m in d.metrics)
    fix = ("Re-enable the metrics in that Telemetry resource: neither side reports them, so no reporter matcher "
           "reads them." if both else
           f"Select {SAFE_REPORTER[other]} in these queries (the {'server' if side == 'source' else 'client'} side "
           f"counts the same requests), or re-enable the metrics for the {words} side in that Telemetry resource.")
    return Finding(
        check=DashboardReadsDisabledMetric.id, severity=Severity.WARNING,
        title=f"{board.name}: {board.queries(len(dark))} {'reads' if len(dark) == 1 else 'read'} Istio metrics no "
              f"proxy reports ({'both sides' if both else words + ' side'} off)",
        detail=(f"{board.queries(len(dark))} of {board.words}{board.where(panels)} read{'s' * (len(dark) == 1)} "
                f"{', '.join(metrics)} with {', '.join(matchers)} only, and no proxy of this mesh reports them there: "
                f"{'; '.join(reasons[:4])} (all {len(sides.sidecars)} pods with a sidecar). "
                f"{'This query returns' if len(dark) == 1 else 'These queries return'} no "
                + (_RULES_DARK if board.rules else "Istio series: their panels show no data for them, which reads as "
                   "no traffic.")),
        subject=f"{board.subject}/{words}-side-off", cause=_CAUSE[side], resource=board.resource,
        evidence=DisabledMetricEvidence(board.title, matchers, metrics, len(dark), panels[:30], reasons[:10],
                                        len(sides.sidecars), board.rule_file),
        suggestion=Suggestion(fix, None, DOC))
