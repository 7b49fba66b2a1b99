"""The metrics source: a Prometheus-compatible API (Prometheus, Thanos, Mimir, VictoriaMetrics) read with the
queries the run's readers declared (queries/*.promql), the histogram families it holds, and its targets.

One adapter object per run: `read` fetches the metrics evidence; the partially-logged pods' range query and the
SLOs' own queries go through the same connection afterwards; `report` is the source's report once all are done.
Empty: a Prometheus that answers but holds no Istio series in the window (wrong window, or not scraping the sidecars).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from obsgap.evidence import MetricsEvidence
from obsgap.intervals import time_step_ms
from obsgap.slo.spec import Measured, SloSpec
from obsgap.sources.base import ReadContext, SourceRead
from obsgap.sources.prometheus import PrometheusOptions, PrometheusSource, QueryResult, redact_url
from obsgap.sources.reports import HistogramFamilies, PrometheusReport, SourceStatus

MAX_HISTOGRAM_FAMILIES = 60
_LATENCY_HINT = ("duration", "latency", "seconds", "milliseconds", "_ms_", "time")
ISTIO_QUERIES = ("mesh_requests", "mesh_tcp_connections")
"""The queries whose rows are Istio's series: when both are empty the window holds none (an empty source)."""
SCRAPE_INTERVAL_QUERY = "scrape_interval"


@dataclass
class MetricsSource:
    options: PrometheusOptions
    queries: frozenset[str]
    """The instant queries the run's readers declared (checks, analysis): exactly these are fetched."""
    range_queries: tuple[str, ...] = ()
    """Range queries over the window in time bins (the timelines)."""
    histograms: bool = False
    """Whether some reader needs the histogram families' buckets."""
    kind: str = "metrics"
    _source: PrometheusSource | None = field(default=None, repr=False)
    _report: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def source(self) -> PrometheusSource:
        if self._source is None:
            self._source = PrometheusSource(self.options)
        return self._source

    def preflight(self) -> None:
        self.source.validate_credentials()

    def read(self, ctx: ReadContext) -> SourceRead[MetricsEvidence, PrometheusReport]:
        source = self.source
        problem = source.check()
        if problem:
            self._report = {"status": "unavailable", "error": problem}
            return SourceRead(None, self.report(), (f"prometheus: {problem}",))
        frames: dict[str, pd.DataFrame] = {}
        failed: dict[str, str] = {}
        for name in sorted(self.queries):
            ctx.say(f"query {name}")
            self._keep(source.query(name, ctx.window.seconds, ctx.window.end, ctx.namespaces), frames, failed)
        for name in self.range_queries:
            step = time_step_ms(0, ctx.window.seconds * 1000) // 1000
            res = source.query_range(name, ctx.window.start, ctx.window.end, step, ctx.namespaces)
            self._keep(res, frames, failed)
        families: dict[str, pd.DataFrame] = {}
        series: dict[str, int] = {}
        if self.histograms:
            families, series, self._report["histogram_families"] = _histograms(source, ctx)
        targets = source.targets()
        interval = _interval(frames.get(SCRAPE_INTERVAL_QUERY), ctx.window.seconds)
        istio = any(name in frames and not frames[name].empty for name in ISTIO_QUERIES)
        self._report |= {"query_files": tuple(sorted(self.queries)), "targets_api": targets is not None,
                         "scrape_interval_seconds": round(interval, 1), "istio_series": istio}
        evidence = MetricsEvidence(frames, failed, tuple(targets) if targets is not None else None, interval,
                                   families, series)
        problems = tuple(dict.fromkeys(failed.values()))
        if not istio and not any(name in failed for name in ISTIO_QUERIES) and ISTIO_QUERIES[0] in self.queries:
            empty = (f"prometheus: no Istio series (istio_requests_total, istio_tcp_*) in the window "
                     f"{ctx.window.start:%Y-%m-%d %H:%M}–{ctx.window.end:%Y-%m-%d %H:%M} UTC: is it scraping the "
                     "sidecars (port 15020, /stats/prometheus), and is the window right?")
            self._report |= {"status": "empty", "error": empty}
            problems += (empty,)
        return SourceRead(evidence, self.report(), problems)

    @staticmethod
    def _keep(res: QueryResult, frames: dict[str, pd.DataFrame], failed: dict[str, str]) -> None:
        if res.error:
            failed[res.name] = res.error
        else:
            frames[res.name] = res.frame

    def query_range(self, name: str, ctx: ReadContext) -> QueryResult:
        """One more range query over the window in the timelines' bins (the partially logged pods' counts)."""
        step = time_step_ms(ctx.start_ms, ctx.end_ms)
        res = self.source.query_range(name, ctx.window.start, ctx.window.end, step // 1000, ctx.namespaces)
        self._report["range_query_files"] = (*self._report.get("range_query_files", ()), name)
        return res

    def measure_slos(self, specs: Sequence[SloSpec], ctx: ReadContext) -> tuple[Measured, ...]:
        """Each SLO's SLI run over the window (the analysis judges them)."""
        from obsgap.slo.measure import measure, prometheus_query

        before = self.source.queries_issued
        query = prometheus_query(self.source, ctx.window.end)
        out = []
        for spec in specs:
            ctx.say(f"SLO {spec.name}")
            out.append(measure(spec, query, ctx.window.seconds))
        self._report["sli_queries"] = self.source.queries_issued - before
        return tuple(out)

    def label_values(self, label: str, start: datetime, end: datetime) -> list[str] | None:
        if self.source.check():
            return None
        return self.source.label_values(label, start, end)

    def report(self) -> PrometheusReport:
        s = self.source
        r = self._report
        status: SourceStatus = r.get("status") or s.status()
        return PrometheusReport(
            url=redact_url(self.options.url), status=status, queries=s.queries_issued,
            warnings=tuple(s.warnings), errors=tuple(s.errors), error=r.get("error"),
            query_files=r.get("query_files", ()), range_query_files=r.get("range_query_files", ()),
            targets_api=r.get("targets_api"), scrape_interval_seconds=r.get("scrape_interval_seconds"),
            peak_samples=dict(s.query_samples), histogram_families=r.get("histogram_families"),
            split_by_namespace=dict(s.splits), istio_series=r.get("istio_series"))

    @property
    def sli_queries(self) -> int:
        return int(self._report.get("sli_queries") or 0)


def _interval(frame: pd.DataFrame | None, window_seconds: int) -> float:
    """The scrape interval the sample spacing shows, or 30 s when it cannot be told."""
    if frame is not None and not frame.empty and 0 < float(frame["value"].max()) < window_seconds:
        return float(frame["value"].max())
    return 30.0


def _histograms(source: PrometheusSource, ctx: ReadContext) -> tuple[dict[str, pd.DataFrame], dict[str, int],
                                                                      HistogramFamilies]:
    """Discover histogram families (label-values API) and fetch each one's buckets, aggregated server-side."""
    names = source.metric_names(ctx.window.start, ctx.window.end)
    if names is None:
        return {}, {}, HistogramFamilies(error="label values API failed")
    families = sorted({n[: -len("_bucket")] for n in names if n.endswith("_bucket")},
                      key=lambda f: (not f.startswith("istio_"), not any(h in f for h in _LATENCY_HINT), f))
    chosen, skipped = families[:MAX_HISTOGRAM_FAMILIES], families[MAX_HISTOGRAM_FAMILIES:]
    frames: dict[str, pd.DataFrame] = {}
    series: dict[str, int] = {}
    for family in chosen:
        ctx.say(f"histogram {family}")
        res = source.query("histogram_buckets", ctx.window.seconds, ctx.window.end, ctx.namespaces,
                           bucket_series=family + "_bucket")
        if res.error is None:
            frames[family] = res.frame
        cnt = source.query("histogram_series", ctx.window.seconds, ctx.window.end, ctx.namespaces,
                           bucket_series=family + "_bucket")
        if cnt.error is None and not cnt.frame.empty:
            series[family] = int(float(cnt.frame["value"].iloc[0]))
    return frames, series, HistogramFamilies(len(families), tuple(chosen), tuple(skipped))


def not_configured() -> SourceRead[MetricsEvidence, PrometheusReport]:
    return SourceRead(None, PrometheusReport(None, "not-configured"))

