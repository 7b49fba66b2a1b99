"""dashboard-double-counts: dashboard queries that add up the client's and the server's count of the same requests."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from obsgap.checks.base import CheckInputs, Skip
from obsgap.checks.dashboard_queries import (
    GRAFANA_VARIABLE,
    Board,
    DashboardCheck,
    admitted,
    by_dashboard,
    grafana_query,
)
from obsgap.evidence import MetricsEvidence
from obsgap.istio import telemetry_metric
from obsgap.model import Finding, FindingEvidence, PanelQuery, Severity, Suggestion
from obsgap.slo.promql import Matcher, Selector, summed_over
from obsgap.text import full_match, pct

DOC = "https://istio.io/latest/docs/reference/config/metrics/#labels"
_FRAMES = {"l7": "mesh_requests", "tcp": "mesh_tcp_connections"}
_EDGE = ["source_workload_namespace", "source_workload", "destination_service_namespace", "destination_service_name"]
ESTIMABLE = frozenset({"response_code", "grpc_response_status", "request_protocol"})
"""Labels the caller's and the server's proxy give one request alike and that do not say who called whom: where the
counts obsgap reads do not carry one a query matches on, the share it double counts is measured over all its
values. A matcher on any other label they do not carry (`destination_app`, `destination_canonical_service`, a
principal: they pick the callers and Services; `instance`, `pod`, `namespace`, a pod's own labels: each side's
differs; `connection_security_policy`: the client reports `unknown`; `response_flags`) leaves the query unmeasured."""
_ISTIO_SELECTOR = re.compile(r"(?<![\w:])(istio_\w+)(?![\w:])"
                             r"(\s*\{((?:[^{}\"']|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')*)\})?")
_REPORTER_MATCHER = re.compile(r"\breporter\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')\s*,?\s*")


@dataclass(frozen=True, eq=False)
class DoubleCountEvidence(FindingEvidence):
    """The dashboard's (or rule group's) queries that add up more than one side's count of the same requests,
    measured."""

    dashboard: str
    """The dashboard's title, or the rule group's name."""
    queries: int
    ratio: float
    """The worst plain sum's (else the worst query's): what the reporters it adds counted, over the requests they
    counted (each once)."""
    counted: int
    """What the worst query's reporters counted in the window, added up as it adds them."""
    requests: int
    """The requests they counted, each once (per caller and Service, the largest reporter's count)."""
    one_side: int
    """Of those, what the suggested side (`reporter="destination"`, or with waypoints) counts."""
    reporters: list[str]
    panels: list[str] = field(default_factory=list)
    blended: int = 0
    """Queries that divide by or compare with another vector, divide a number by, or take a quantile of such a sum:
    a blend of both sides, not a multiple (divided by or compared with a number, it is still a multiple)."""
    estimated: list[str] = field(default_factory=list)
    """Labels the queries match on that the mesh's counts obsgap reads do not carry, both sides alike: the share
    is measured over all their values."""
    examples: list[dict[str, str | None]] = field(default_factory=list)
    """Up to five: the query as written and, where it can be written, with one side's reporter matcher."""
    rule_file: str | None = None
    """For a rule group Prometheus evaluates: the file it was loaded from."""


class DashboardDoubleCounts(DashboardCheck):
    """What it does: reads every Grafana dashboard given (`--dashboards`) and every alerting and recording rule
    Prometheus evaluates (/api/v1/rules) for queries that `sum` one of Istio's
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
    `by (reporter)` where some requests reach a server without a proxy (one side alone counts those).
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
        waypoints, judged = cls.once(inputs, _judge_all)
        return [_finding(board, j.doubled, waypoints, inputs) for board, j in judged.items() if j.doubled]

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The dashboards named, and those each of whose sums over Istio's metrics could be measured: a query whose
        matchers the mesh's counts cannot follow, or that read nothing in the window (or in the namespaces in
        scope), leaves its dashboard unjudged where nothing else in it was found."""
        judged = cls.once(inputs, _judge_all)[1]
        cls.forget()
        return frozenset(b.key for b, j in judged.items() if j.complete or j.doubled)


@dataclass(frozen=True)
class _Doubled:
    query: PanelQuery
    reporters: frozenset[str]
    counted: float
    requests: float
    one_side: float
    blended: bool
    estimated: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return self.counted / self.requests


@dataclass
class _Judged:
    doubled: list[_Doubled] = field(default_factory=list)
    complete: bool = True


@dataclass(frozen=True)
class _Counts:
    frame: pd.DataFrame
    carried: frozenset[str]
    """The labels the query returned (the frame's other columns are filled in empty)."""
    side: frozenset[str]
    """The reporters the fix reads for this kind of metric."""


def _judge_all(inputs: CheckInputs) -> tuple[bool, dict[Board, _Judged]]:
    metrics = inputs.metrics
    if not inputs.dashboards or metrics is None:
        return False, {}
    failed = [q for q in _FRAMES.values() if q in metrics.failed]
    if failed:
        raise Skip(f"the query {failed[0]} failed ({metrics.failed[failed[0]]}): what each reporter counted is "
                   "unknown")
    counts = _counts(metrics)
    if all(c.frame.empty for c in counts.values()):
        raise Skip("Prometheus holds no Istio series in the window: what each reporter counted is unknown")
    out: dict[Board, _Judged] = {}
    for board, queries in by_dashboard(inputs).items():
        judged = out[board] = _Judged()
        for q in queries:
            found, complete = _measured(q, counts, inputs)
            judged.complete &= complete
            if found is not None:
                judged.doubled.append(found)
    return "waypoint" in counts["l7"].side, out


def _counts(metrics: MetricsEvidence) -> dict[str, _Counts]:
    out = {}
    for kind, name in _FRAMES.items():
        returned = metrics.frame(name)
        frame = metrics.frame(name, [*_EDGE, "reporter"])
        waypoints = kind == "l7" and not frame.empty and bool((frame["reporter"] == "waypoint").any())
        out[kind] = _Counts(frame, frozenset(returned.columns) - {"value"},
                            frozenset({"destination", "waypoint"} if waypoints else {"destination"}))
    return out


def _measured(query: PanelQuery, counts: dict[str, _Counts], inputs: CheckInputs) -> tuple[_Doubled | None, bool]:
    """The query's worst selector that adds up the same requests from several reporters, beyond the tolerance; and
    whether each of its sums over Istio's metrics could be measured."""
    if query.panel.startswith("variable $"):
        return None, True  # a variable's query lists label values; it draws nothing
    parsed = grafana_query(query.expr)
    if parsed is None:
        return None, "istio_" not in query.expr
    worst, complete = None, True
    for summed in summed_over(parsed, "reporter"):
        sel = summed.selector
        kind = _kind(sel.metric)
        reads = admitted(sel.label("reporter"))
        if kind is None or reads is None or len(reads) < 2 or _variable(sel.label("reporter")):
            complete &= kind is None or reads is not None
            continue
        measured = _count(counts[kind], sel, reads)
        if measured is None:
            complete = False
            continue
        counted, requests, one_side, estimated = measured
        if counted - requests >= inputs.settings.min_requests \
                and counted >= requests * (1 + inputs.settings.tolerance):
            found = _Doubled(query, frozenset(reads), counted, requests, one_side, summed.blended, estimated)
            worst = found if worst is None or found.ratio > worst.ratio else worst
    return worst, complete


def _variable(matchers: tuple[Matcher, ...]) -> bool:
    """A reporter matcher whose value the viewer picks: one side at a time, as Istio's $qrep."""
    return any(GRAFANA_VARIABLE in m.value for m in matchers)


def _count(counts: _Counts, sel: Selector, reads: set[str]) -> tuple[float, float, float, tuple[str, ...]] | None:
    """(what the reporters `reads` counted of the series `sel` selects, added up; the requests they counted, each
    once: per caller and Service, the largest of those reporters' counts; what the fix's side counts of them; the
    labels matched that the counts do not carry) or None where it cannot be told: a matcher on a label the counts
    lack and the two sides give differently, a regex Prometheus and Python read differently, nothing selected."""
    frame = counts.frame
    if frame.empty:
        return None
    keep = frame["reporter"].isin(list(reads))
    estimated = []
    for m in sel.matchers:
        if m.name == "reporter" or GRAFANA_VARIABLE in m.value:
            continue
        if m.name not in counts.carried:
            if m.name not in ESTIMABLE:
                return None
            estimated.append(m.name)
            continue
        if m.op in ("=~", "!~") and full_match(m.value, "") is None:
            return None
        values = frame[m.name].astype(str)
        hits = {v: m.matches(v) for v in values.unique()}
        keep &= values.map(hits).astype(bool)
    picked = frame[keep]
    if picked.empty:
        return None
    per_side = picked.assign(value=picked["value"].astype(float)).groupby([*_EDGE, "reporter"])["value"].sum() \
        .unstack("reporter", fill_value=0.0)
    side = [r for r in per_side.columns if r in counts.side]
    return (float(per_side.to_numpy().sum()), float(per_side.max(axis=1).sum()),
            float(per_side[side].to_numpy().sum()) if side else 0.0, tuple(estimated))


def one_side(expr: str, matchers: Mapping[str, str]) -> str | None:
    """A query as written, each selector over one of Istio's metrics that reads more than one reporter given the
    kind's matcher (`matchers`: l7, tcp) in place of its reporter matchers; None where the result is not PromQL."""
    def fix(m: re.Match[str]) -> str:
        kind = _kind(m.group(1))
        body = m.group(3) or ""
        own = [Matcher("reporter", op, value[1:-1]) for op, value in _REPORTER_MATCHER.findall(body)]
        if kind is None or _one_side(admitted(own)):
            return m.group(0)
        rest = _REPORTER_MATCHER.sub("", body).strip().rstrip(",").strip()
        return f"{m.group(1)}{{{matchers[kind]}{', ' + rest if rest else ''}}}"

    fixed = _ISTIO_SELECTOR.sub(fix, expr)
    parsed = grafana_query(fixed)
    if parsed is None or not all(_one_side(admitted(s.selector.label("reporter")))
                                 for s in summed_over(parsed, "reporter") if _kind(s.selector.metric)):
        return None
    return fixed


def _kind(series: str) -> str | None:
    """Which of the mesh's counts measures a series of one of Istio's standard metrics: the request count (`l7`:
    requests and their histograms and gRPC messages) or the TCP connections (`tcp`); None for any other series."""
    metric = telemetry_metric(Selector(series, ()).family)
    return None if metric is None else "tcp" if metric.startswith("TCP_") else "l7"


def _one_side(reads: set[str] | None) -> bool:
    """The reporters read are one side of a request: the caller's, or the server's (its sidecar or waypoint)."""
    return reads is not None and ("source" not in reads or len(reads) == 1)


def _finding(board: Board, doubled: list[_Doubled], waypoints: bool, inputs: CheckInputs) -> Finding:
    plain = [d for d in doubled if not d.blended]
    worst = max(plain or doubled, key=lambda d: d.ratio)
    matchers = {"l7": 'reporter=~"destination|waypoint"' if waypoints else 'reporter="destination"',
                "tcp": 'reporter="destination"'}
    panels = sorted({d.query.panel for d in doubled})
    reporters = sorted({r for d in doubled for r in d.reporters})
    estimated = sorted({n for d in doubled for n in d.estimated})
    examples = [{"panel": d.query.panel, "query": d.query.expr[:500], "fixed": one_side(d.query.expr, matchers)}
                for d in sorted(doubled, key=lambda d: (d.blended, -d.ratio))[:5]]
    seen = worst.one_side / worst.requests
    scope = " in the namespaces in scope" if inputs.settings.namespaces else ""
    how = (f"up to {worst.ratio:.1f}x" if plain else "blending both sides")
    detail = (f"{board.queries(len(doubled))} of {board.words}{board.where(panels)} "
              f"sum{'s' * (len(doubled) == 1)} Istio's metrics over reporter {', '.join(reporters)} without keeping "
              "them apart (`by (reporter)`), and a request is "
              "counted by each proxy on its way (the caller's sidecar, the server's or its waypoint). "
              f"Over the window{scope}, the series {'the worst of them' if len(doubled) > 1 else 'it'} "
              f"({'' if board.rules else 'panel '}{worst.query.panel!r}) reads counted {int(worst.counted):,} where "
              f"the proxies saw {int(worst.requests):,} requests ({pct(worst.ratio - 1)} more)"
              + (f": it reads {worst.ratio:.1f} times the traffic"
                 + (f" (a threshold on it is crossed when the traffic is {pct(1 / worst.ratio)} of what it names)."
                    if board.rules else ".")
                 if not worst.blended else ".")
              + (f" {board.queries(len(doubled) - len(plain))} "
                 + ("divides or compares such a sum with other series, or takes its quantiles"
                    if len(doubled) - len(plain) == 1 else
                    "divide or compare such sums with other series, or take their quantiles")
                 + ": error ratios blend both sides' errors, latencies mix the caller's (network included) with the "
                 "server's." if len(plain) < len(doubled) else "")
              + (f" Measured over every value of {', '.join(estimated)}, which the mesh's counts obsgap reads do not "
                 "carry." if estimated else ""))
    side = " or ".join(dict.fromkeys(matchers[k] for k in ("l7", "tcp")))
    fix = (f"Select one side in these queries: {side} counts each request once, as the server's proxy saw it (or keep "
           "the sides apart with `by (reporter)`)." if seen >= 1 - inputs.tolerance() else
           f"Keep the sides apart with `by (reporter)` and pick one per panel: {side} alone counts {pct(seen)} of the "
           "requests these queries read (the rest reach a server without a proxy, or leave the mesh, and only the "
           "callers' sidecars count them).")
    return Finding(
        check=DashboardDoubleCounts.id, severity=Severity.WARNING,
        title=f"{board.name}: {board.queries(len(doubled))} {'adds' if len(doubled) == 1 else 'add'} up the "
              f"caller's and the server's count of the same requests ({how})",
        detail=detail,
        subject=f"{board.subject}/sums-reporters", cause="sums-reporters", resource=board.resource,
        evidence=DoubleCountEvidence(board.title, len(doubled), round(worst.ratio, 3), int(worst.counted),
                                     int(worst.requests), int(worst.one_side), reporters, panels[:30],
                                     len(doubled) - len(plain), estimated, examples, board.rule_file),
        suggestion=Suggestion(fix, "\n".join(str(e["fixed"]) for e in examples[:3] if e["fixed"]) or None, DOC))
