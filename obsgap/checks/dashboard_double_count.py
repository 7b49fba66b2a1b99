"""dashboard-double-counts: dashboard queries that add up the client's and the server's count of the same requests."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import promql_parser as pp

from obsgap.checks.base import CheckInputs, Skip
from obsgap.checks.dashboard_queries import GRAFANA_VARIABLE, DashboardCheck, admitted, by_dashboard, grafana_promql
from obsgap.model import Finding, FindingEvidence, PanelQuery, Severity, Suggestion
from obsgap.slo.promql import Matcher, Selector, summed_over
from obsgap.text import pct

DOC = "https://istio.io/latest/docs/reference/config/metrics/#labels"
_L7 = re.compile(r"istio_(?:requests_total|request_duration_milliseconds_(?:bucket|count|sum)|request_bytes_(?:bucket|"
                 r"count|sum)|response_bytes_(?:bucket|count|sum)|request_messages_total|response_messages_total)")
_TCP = re.compile(r"istio_tcp_(?:connections_opened_total|connections_closed_total|sent_bytes_total|"
                  r"received_bytes_total)")
_EDGE = ["source_workload_namespace", "source_workload", "destination_service_namespace", "destination_service_name"]
_FRAME_LABELS = [*_EDGE, "reporter", "destination_service", "destination_workload", "destination_workload_namespace",
                 "request_protocol", "destination_port", "namespace", "pod"]
_ISTIO_SELECTOR = re.compile(r'\b(istio_\w+)\b(\s*\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\})?')
_REPORTER_MATCHER = re.compile(r'\breporter\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*,?\s*')


@dataclass(frozen=True, eq=False)
class DoubleCountEvidence(FindingEvidence):
    """The dashboard's queries that add up more than one side's count of the same requests, measured."""

    dashboard: str
    queries: int
    ratio: float
    """The worst query's: what the reporters it adds counted, over the requests they counted (each once)."""
    counted: int
    """What the worst query's reporters counted in the window, added up as it adds them."""
    requests: int
    """The requests they counted, each once."""
    reporters: list[str]
    panels: list[str] = field(default_factory=list)
    examples: list[dict[str, str]] = field(default_factory=list)
    """Up to five queries as written, with the reporter matcher that reads each request once."""


class DashboardDoubleCounts(DashboardCheck):
    """What it does: reads every Grafana dashboard given (`--dashboards`) for queries that `sum` one of Istio's
    metrics (`istio_requests_total`, the duration and size histograms, `istio_tcp_*`) over more than one
    `reporter` (no `reporter` matcher, or one that admits `source` and `destination`, or `source` and `waypoint`),
    without keeping `reporter` apart (`by (reporter)`). Each such query is measured on the window's series: what
    the reporters it adds counted, against the requests they counted, each once (per caller and Service, the
    largest of the reporters' counts), with the query's own label matchers applied.

    Why is this bad? Each request between two sidecars is counted twice: once by the caller's sidecar
    (`reporter="source"`) and once by the server's (`reporter="destination"`); a request through a waypoint from a
    sidecar, by the caller's and by the waypoint. Such a query shows about twice the traffic (an autoscaler or an
    alert on it fires at half the load), error ratios that blend both sides' errors, and latency quantiles that mix
    the caller's latency (network included) with the server's.

    Example: `sum(rate(istio_requests_total{destination_service_namespace="default"}[5m])) by
    (destination_service_name)`, a published guide's request-rate panel, reads 2.0 times the requests on a mesh
    of sidecars.

    Use instead: select one side: `reporter="destination"` (`reporter=~"destination|waypoint"` where waypoints
    serve Services) counts each request once, as the server's proxy saw it; or keep the sides apart with
    `by (reporter)`.
    """

    id = "dashboard-double-counts"
    title = "Dashboards adding up both sides' count of the same requests"
    needs = ("metrics",)
    queries = ("mesh_requests", "mesh_tcp_connections")
    doc_url = DOC
    causes = ("sums-reporters",)
    impact_unit = "dashboard queries"

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        metrics = inputs.metrics
        if not inputs.dashboards or metrics is None:
            return []
        failed = [q for q in cls.queries if q in metrics.failed]
        if failed:
            raise Skip(f"the query {failed[0]} failed ({metrics.failed[failed[0]]}): what each reporter counted "
                       "is unknown")
        frames = {"l7": metrics.frame("mesh_requests", _FRAME_LABELS),
                  "tcp": metrics.frame("mesh_tcp_connections", _FRAME_LABELS)}
        if all(f.empty for f in frames.values()):
            raise Skip("Prometheus holds no Istio series in the window: what each reporter counted is unknown")
        waypoints = any((f["reporter"] == "waypoint").any() for f in frames.values() if not f.empty)
        out = []
        for dashboard, queries in by_dashboard(inputs).items():
            doubled = [d for q in queries if (d := _measured(q, frames, inputs)) is not None]
            if doubled:
                out.append(_finding(dashboard, doubled, waypoints))
        return out


@dataclass(frozen=True)
class _Doubled:
    query: PanelQuery
    reporters: frozenset[str]
    counted: float
    requests: float

    @property
    def ratio(self) -> float:
        return self.counted / self.requests


def _measured(query: PanelQuery, frames: dict[str, pd.DataFrame], inputs: CheckInputs) -> _Doubled | None:
    """The query's worst selector that adds up the same requests from several reporters, beyond the tolerance."""
    if query.panel.startswith("variable $"):
        return None  # a variable's query lists label values; it draws nothing
    text = grafana_promql(query.expr)
    if text is None:
        return None
    worst = None
    for sel in summed_over(pp.parse(text), "reporter"):
        kind = "l7" if _L7.fullmatch(sel.metric) else "tcp" if _TCP.fullmatch(sel.metric) else None
        reads = admitted(sel.label("reporter"))
        if kind is None or reads is None or len(reads) < 2 or _variable(sel.label("reporter")):
            continue
        counted, requests = _count(frames[kind], sel, reads)
        extra = counted - requests
        if extra >= inputs.settings.min_requests and counted >= requests * (1 + inputs.settings.tolerance):
            found = _Doubled(query, frozenset(reads), counted, requests)
            worst = found if worst is None or found.ratio > worst.ratio else worst
    return worst


def _variable(matchers: tuple[Matcher, ...]) -> bool:
    """A reporter matcher whose value the viewer picks: one side at a time, as Istio's $qrep."""
    return any(GRAFANA_VARIABLE in m.value for m in matchers)


def _count(frame: pd.DataFrame, sel: Selector, reads: set[str]) -> tuple[float, float]:
    """(what the reporters `reads` counted of the series `sel` selects, added up; the requests they counted, each
    once: per caller and Service, the largest of those reporters' counts). Matchers on labels these counts do not
    carry (response_code) are left out, and so are those a dashboard variable fills."""
    if frame.empty:
        return 0.0, 0.0
    keep = frame["reporter"].isin(list(reads))
    for m in sel.matchers:
        if m.name in frame.columns and m.name != "reporter" and GRAFANA_VARIABLE not in m.value:
            values = frame[m.name].astype(str)
            hits = {v: m.matches(v) for v in values.unique()}
            keep &= values.map(hits).astype(bool)
    picked = frame[keep]
    if picked.empty:
        return 0.0, 0.0
    per_side = picked.groupby([*_EDGE, "reporter"])["value"].sum().unstack("reporter", fill_value=0.0)
    return float(per_side.to_numpy().sum()), float(per_side.max(axis=1).sum())


def one_side(expr: str, matcher: str) -> str:
    """A query as written, each selector over one of Istio's metrics reading `matcher` in place of its reporter
    matchers."""
    def fix(m: re.Match[str]) -> str:
        if not (_L7.fullmatch(m.group(1)) or _TCP.fullmatch(m.group(1))):
            return m.group(0)
        rest = _REPORTER_MATCHER.sub("", m.group(3) or "").strip().rstrip(",").strip()
        return f"{m.group(1)}{{{matcher}{', ' + rest if rest else ''}}}"

    return _ISTIO_SELECTOR.sub(fix, expr)


def _sides(reporters: list[str]) -> str:
    if len(reporters) == 3:
        return "every reporter (no reporter matcher)"
    return "reporter " + " and ".join(f'"{r}"' for r in reporters)


def _finding(dashboard: str, doubled: list[_Doubled], waypoints: bool) -> Finding:
    worst = max(doubled, key=lambda d: d.ratio)
    matcher = 'reporter=~"destination|waypoint"' if waypoints else 'reporter="destination"'
    panels = sorted({d.query.panel for d in doubled})
    reporters = sorted({r for d in doubled for r in d.reporters})
    examples = [{"panel": d.query.panel, "query": d.query.expr[:500], "fixed": one_side(d.query.expr, matcher)[:600]}
                for d in sorted(doubled, key=lambda d: -d.ratio)[:5]]
    return Finding(
        check=DashboardDoubleCounts.id, severity=Severity.WARNING,
        title=f"{dashboard}: {len(doubled)} {'query adds' if len(doubled) == 1 else 'queries add'} up the caller's "
              f"and the server's count of the same requests (up to {worst.ratio:.1f}x)",
        detail=(f"{len(doubled)} queries of dashboard {dashboard!r} (in {len(panels)} panels) sum Istio's metrics over "
                f"{_sides(reporters)} without keeping them apart (`by (reporter)`), and a request is counted by each "
                "proxy on its way (the caller's sidecar, the server's or its waypoint). Over the window, the series "
                f"the worst of them (panel {worst.query.panel!r}) reads counted {int(worst.counted):,} where the "
                f"proxies saw {int(worst.requests):,} requests ({pct(worst.counted / worst.requests - 1)} more): "
                f"its rates read {worst.ratio:.1f} times the traffic, its error ratios blend both sides' errors "
                "and its latency quantiles mix the caller's latency with the server's."),
        subject=f"dashboard/{dashboard}/sums-reporters", cause="sums-reporters", resource=f"Dashboard {dashboard}",
        evidence=DoubleCountEvidence(dashboard, len(doubled), round(worst.ratio, 3), int(worst.counted),
                                     int(worst.requests), reporters, panels[:30], examples),
        suggestion=Suggestion(f"Select one side in these queries: {matcher} counts each request once, as the "
                              "server's proxy saw it (or keep the sides apart with `by (reporter)`).",
                              "\n".join(e["fixed"] for e in examples[:3]), DOC))
