"""dashboard-sums-buckets: dashboard queries and rules that add up a histogram's cumulative buckets (`sum` over `le`),
which counts each observation once for every bucket at or above it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from obsgap.bounds import bound
from obsgap.checks.base import CheckInputs
from obsgap.checks.dashboard_queries import Board, Judged, PerCauseDashboardCheck, by_dashboard, grafana_query
from obsgap.evidence import MetricsEvidence
from obsgap.model import Finding, FindingEvidence, PanelQuery, Severity, Suggestion
from obsgap.slo.promql import summed_over

DOC = "https://prometheus.io/docs/practices/histograms/"
CAUSE = "sums-cumulative-buckets"


@dataclass(frozen=True, eq=False)
class BucketSumEvidence(FindingEvidence):
    """The dashboard's (or rule group's) queries that add up a histogram's buckets across `le`."""

    dashboard: str
    """The dashboard's title, or the rule group's name."""
    queries: int
    metrics: list[str]
    """The `_bucket` series they add up."""
    times: float | None = None
    """How many times such a sum counts each observation of the window, on average (the buckets at or above it, the
    `+Inf` one included): the sum over every bucket of its count over the `+Inf` bucket's; None where the histogram
    was not analysed or observed nothing."""
    panels: list[str] = field(default_factory=list)
    rule_file: str | None = None
    """For a rule group Prometheus evaluates: the file it was loaded from."""


class DashboardSumsBuckets(PerCauseDashboardCheck):
    """What it does: reads every Grafana dashboard given (`--dashboards`) and every alerting and recording rule
    Prometheus evaluates (/api/v1/rules) for a `sum` over a histogram's `_bucket` series that loses `le` (no `by
    (le)`, no `le` matcher), and says how many times such a sum counts each observation of the window.

    Why is this bad? A histogram's buckets are cumulative: an observation of 3 ms is counted by the 5 ms bucket
    and by every bucket above it. Their sum is neither a request count nor a latency: it grows with traffic, times
    the number of buckets most requests fall under. An alert on it fires on load, not on slowness.

    Example: Istio's own stability-test alert `LatencyHigh`, `sum(irate(istio_request_duration_milliseconds_bucket
    {source_workload=~"svc.*"}[5m])) by (source_workload,namespace) > 30000`, "request latency > 30s", until
    istio/tools#1250 replaced it with a histogram_quantile.

    Use instead: `histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))` for a latency, `_count` for a
    request rate, one `le` bucket over `_count` for the share of fast requests.
    """

    id = "dashboard-sums-buckets"
    title = "Dashboards and rules adding up a histogram's cumulative buckets"
    needs = ("metrics",)
    needs_histograms = True
    doc_url = DOC
    causes = (CAUSE,)
    impact_unit = "dashboard queries"

    @classmethod
    def judge(cls, inputs: CheckInputs) -> dict[Board, Judged]:
        """A query that is not PromQL once Grafana's variables are filled is not judged."""
        out: dict[Board, Judged] = {}
        for board, queries in by_dashboard(inputs).items():
            judged = out[board] = Judged()
            for q in queries:
                series = _summed_buckets(q)
                if series is None:
                    judged.unjudged.add(CAUSE)
                judged.found += [_Sum(q, s) for s in series or ()]
        return out

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        return [_finding(board, judged.found, inputs.metrics) for board, judged in cls.judged(inputs).items()
                if judged.found]


@dataclass(frozen=True)
class _Sum:
    query: PanelQuery
    series: str
    cause: str = CAUSE


def _summed_buckets(q: PanelQuery) -> list[str] | None:
    """The `_bucket` series a query adds up across `le` without selecting one; None where it is not PromQL."""
    if q.panel.startswith("variable $") or "_bucket" not in q.expr:
        return []
    parsed = grafana_query(q.expr)
    if parsed is None:
        return None
    return list(dict.fromkeys(s.selector.metric for s in summed_over(parsed, "le")
                              if s.selector.metric.endswith("_bucket") and not s.selector.label("le")))


def times_counted(frame: pd.DataFrame) -> float | None:
    """The sum over every bucket of its count, over the `+Inf` bucket's: how many buckets an observation is counted
    in, on average; None without observations."""
    if frame.empty or "le" not in frame.columns:
        return None
    counts = frame.assign(b=frame["le"].map(bound), v=pd.to_numeric(frame["value"], errors="coerce")) \
        .dropna(subset=["b", "v"]).groupby("b")["v"].sum()
    top = counts.get(float("inf"))
    return float(counts.sum() / top) if top else None


def _finding(board: Board, found: list[_Sum], metrics: MetricsEvidence | None) -> Finding:
    queries = {id(s.query): s.query for s in found}
    n = len(queries)
    panels = sorted({s.query.panel for s in found})
    series = sorted({s.series for s in found})
    frame = metrics.histograms.get(series[0].removesuffix("_bucket")) if metrics is not None else None
    times = times_counted(frame) if frame is not None else None
    by: dict[str, list[str]] = defaultdict(list)
    for s in found:
        by[s.series].append(s.query.panel)
    measured = (f" Over the window such a sum counts each observation of {series[0]} {times:.1f} times on "
                "average." if times is not None else "")
    one = n == 1
    return Finding(
        check=DashboardSumsBuckets.id, severity=Severity.WARNING,
        title=f"{board.name}: {board.queries(n)} add{'s' * one} up the cumulative buckets of {series[0]}"
              + (f" ({times:.1f}x each observation)" if times is not None else ""),
        detail=(f"{board.queries(n)} of {board.words}{board.where(panels)} sum{'s' * one} {', '.join(series)} "
                "across `le` without selecting a bucket: a histogram's buckets are cumulative, so every observation "
                "is counted once by each bucket at or above it. The result grows with traffic, not with latency."
                + measured + (" An alert on it fires on load." if board.rules else "")),
        subject=f"{board.subject}/{CAUSE}", cause=CAUSE, resource=board.resource,
        evidence=BucketSumEvidence(board.title, n, series, None if times is None else round(times, 2),
                                   panels[:30], board.rule_file),
        suggestion=Suggestion("For a latency, keep `le` and take a quantile: histogram_quantile(0.99, sum by (le) "
                              "(rate(<series>_bucket[5m]))); for a request rate, read <series>_count; for the share "
                              "of fast requests, one bucket (le=\"<bound>\") over _count.", None, DOC))
