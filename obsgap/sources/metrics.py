"""The metrics source: a Prometheus-compatible API (Prometheus, Thanos, Mimir, VictoriaMetrics) read with the
queries the run's readers declared (queries/*.promql), the histogram families it holds, and its targets.

One adapter object per run: `read` fetches the metrics evidence; the partially-logged pods' range query and the
SLOs' own queries go through the same connection afterwards; `report` is the source's report once all are done.
Empty: a Prometheus that answers but holds no Istio series in the window (wrong window, or not scraping the sidecars).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from obsgap.evidence import ASSUMED_SCRAPE_INTERVAL_S, MetricsEvidence
from obsgap.intervals import time_step_ms
from obsgap.model import rule_file_key
from obsgap.slo.load import Loaded, load_documents
from obsgap.slo.spec import Measured, SloSpec
from obsgap.sources.base import ReadContext, SourceRead
from obsgap.sources.prometheus import PrometheusOptions, PrometheusSource, QueryResult, redact_url
from obsgap.sources.queries import FamilyScope, Grid, subquery_step_seconds
from obsgap.sources.reports import HistogramFamilies, PrometheusReport, SourceStatus, WitnessReport
from obsgap.sources.witnesses import families_present, normalize, scope_of
from obsgap.witness import KNOWN_FAMILIES, WitnessCounts, WitnessFamily

MAX_HISTOGRAM_FAMILIES = 60
_LATENCY_HINT = ("duration", "latency", "seconds", "milliseconds", "_ms_", "time")
ISTIO_QUERIES = ("mesh_requests", "mesh_tcp_connections")
"""The queries whose rows are Istio's series: when both are empty the window holds none (an empty source)."""
SCRAPE_INTERVAL_QUERY, SCRAPE_TARGETS_QUERY = "scrape_interval", "scrape_targets"
WITNESS_QUERY = "witness_requests"


@dataclass
class MetricsSource:
    options: PrometheusOptions
    queries: frozenset[str]
    """The instant queries the run's readers declared (checks, analysis): exactly these are fetched."""
    range_queries: tuple[str, ...] = ()
    """Range queries over the window in time bins (the timelines)."""
    histograms: bool = False
    """Whether some reader needs the histogram families' buckets."""
    witness_families: tuple[WitnessFamily, ...] = KNOWN_FAMILIES
    """The witness families to look for (the known ones and the user's --witness-metric)."""
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
            where = urlsplit(self.options.url).netloc.rsplit("@", 1)[-1]  # the host: no user, password or query
            return SourceRead(None, self.report(), (f"prometheus at {where}: {problem}",))
        frames: dict[str, pd.DataFrame] = {}
        failed: dict[str, str] = {}
        for name in sorted(self.queries - {SCRAPE_INTERVAL_QUERY}):
            ctx.say(f"query {name}")
            self._keep(source.query(name, ctx.window.seconds, ctx.window.end, ctx.namespaces), frames, failed)
        interval: float | None = None
        if SCRAPE_INTERVAL_QUERY in self.queries:  # after scrape_targets: it samples their series
            ctx.say(f"query {SCRAPE_INTERVAL_QUERY}")
            res, interval = scrape_interval(source, ctx.window.seconds, ctx.window.end, ctx.namespaces,
                                            frames.get(SCRAPE_TARGETS_QUERY))
            self._keep(replace(res, name=SCRAPE_INTERVAL_QUERY), frames, failed)
        for name in self.range_queries:
            step = time_step_ms(0, ctx.window.seconds * 1000) // 1000
            res = source.query_range(name, ctx.window.start, ctx.window.end, step, ctx.namespaces)
            self._keep(res, frames, failed)
        families: dict[str, pd.DataFrame] = {}
        series: dict[str, int] = {}
        names = source.metric_names(ctx.window.start, ctx.window.end) if self.histograms or \
            self.witness_families else None
        native_problem: tuple[str, ...] = ()
        if self.histograms:
            families, series, found = _histograms(source, ctx, names)
            native = _native(source, ctx, names)
            self._report["histogram_families"] = replace(found, native=native)
            if native:
                native_problem = (f"prometheus: {', '.join(native)} stored as native histograms (Prometheus 3's "
                                  "convert_classic_histograms_to_nhcb, or exponential): no _bucket series, so their "
                                  "buckets were not analysed (histogram-inf-saturation did not examine them)",)
        witnesses = self._witnesses(names, ctx, failed)
        targets = source.targets()
        configuration = source.configuration()
        since = source.configuration_since() if configuration is not None else None
        rules = source.rules()
        rule_slos = load_documents((f"prometheus rules {rule_file_key(file)}", doc) for file, doc in rules.recorded) \
            if rules is not None else Loaded()
        istio = any(name in frames and not frames[name].empty for name in ISTIO_QUERIES)
        self._report |= {"query_files": tuple(sorted(self.queries)), "targets_api": targets is not None,
                         "config_api": configuration is not None,
                         "config_loaded_at": None if since is None else since.isoformat(),
                         "rules": None if rules is None else len(rules.queries),
                         "scrape_interval_seconds": None if interval is None else round(interval, 1),
                         "istio_series": istio}
        evidence = MetricsEvidence(frames, failed, tuple(targets) if targets is not None else None,
                                   ASSUMED_SCRAPE_INTERVAL_S if interval is None else interval,
                                   families, series, witnesses,
                                   configuration=configuration, configuration_since=since,
                                   rules=rules.queries if rules is not None else None,
                                   metric_names=frozenset(names) if names is not None else None,
                                   rule_slos=tuple(rule_slos.slos), rule_slo_gaps=tuple(rule_slos.gaps))
        problems = tuple(dict.fromkeys(failed.values())) + native_problem
        if not istio and not any(name in failed for name in ISTIO_QUERIES) and ISTIO_QUERIES[0] in self.queries:
            empty = (f"prometheus: no Istio series (istio_requests_total, istio_tcp_*) in the window "
                     f"{ctx.window.start:%Y-%m-%d %H:%M}–{ctx.window.end:%Y-%m-%d %H:%M} UTC: is it scraping the "
                     "sidecars (port 15020, /stats/prometheus), and is the window right?")
            self._report |= {"status": "empty", "error": empty}
            problems += (empty,)
        return SourceRead(evidence, self.report(), problems)

    def _witnesses(self, names: list[str] | None, ctx: ReadContext,
                   failed: dict[str, str]) -> tuple[WitnessCounts, ...]:
        """One query per witness family present in the window: the number of queries does not grow with pods."""
        present = families_present(names, self.witness_families)
        out = []
        for family in present:
            ctx.say(f"witness {family.witness}")
            res = self.source.query(WITNESS_QUERY, ctx.window.seconds, ctx.window.end, ctx.namespaces,
                                    family=scope_of(family))
            if res.error:
                failed[f"{WITNESS_QUERY}:{family.witness}"] = res.error
                continue
            counts = normalize(family, res.frame)
            if ctx.namespaces:
                counts = WitnessCounts(family, counts.rows[counts.rows["namespace"].isin(ctx.namespaces)])
            out.append(counts)
        self._report["witnesses"] = tuple(
            WitnessReport(c.witness, c.family.series, c.family.framework, len(c.rows),
                          int(c.rows[["namespace", "pod"]].drop_duplicates().shape[0]) if not c.rows.empty else 0,
                          int(c.rows["requests"].sum()) if not c.rows.empty else 0) for c in out)
        return tuple(out)

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
            targets_api=r.get("targets_api"), config_api=r.get("config_api"),
            config_loaded_at=r.get("config_loaded_at"), rules=r.get("rules"),
            scrape_interval_seconds=r.get("scrape_interval_seconds"),
            peak_samples=dict(s.query_samples), histogram_families=r.get("histogram_families"),
            split_by_namespace=dict(s.splits), istio_series=r.get("istio_series"), witnesses=r.get("witnesses", ()))

    @property
    def sli_queries(self) -> int:
        return int(self._report.get("sli_queries") or 0)


SAMPLED_TARGETS, SAMPLED_JOBS = 5, 100
"""Targets per job whose `up` series the scrape-interval query reads, in the jobs with the most targets."""
SLICES, SLICE_SECONDS = 4, 3600
"""The scrape-interval query reads four slices of the window spread over it, each an hour (a quarter of a window
shorter than four hours): the samples it reads do not grow with the window."""


def _slices(window_seconds: int) -> tuple[int, int]:
    """(slice length, spacing between the slices' ends), both on the slice's subquery grid; a window of a few
    minutes is one slice."""
    window = int(window_seconds)
    length = min(SLICE_SECONDS, window // SLICES)
    if length < 60:
        return window, 0
    step = subquery_step_seconds(length)
    return length, (window - length) // (SLICES - 1) // step * step


def scrape_interval(source: PrometheusSource, window_seconds: int, at: datetime, namespaces: tuple[str, ...],
                    targets: pd.DataFrame | None) -> tuple[QueryResult, float | None]:
    """The scrape interval the sample spacing shows (None when it cannot be told). Prometheus scrapes a job's
    targets at the job's interval, so the median over every `up` series is read from a few: per job, the median
    over SAMPLED_TARGETS of its targets (scrape_targets' rows, the first by instance), then the median over the
    jobs (the SAMPLED_JOBS with the most targets) weighted by their number of targets, each series read in
    SLICES slices of the window (the median of its fullest slices). The query's cost does not grow with the
    targets nor with the window. Without the targets' rows (that query failed or was not run), every series is
    read."""
    matchers: tuple[tuple[str, str, str], ...] = ()
    weights: pd.Series | None = None
    known = (targets.dropna(subset=["job", "instance"]).astype({"job": str, "instance": str})
             if targets is not None and {"job", "instance"} <= set(targets.columns) else None)
    if known is not None and not known.empty:
        weights = known.groupby("job").size().nlargest(SAMPLED_JOBS)
        known = known[known["job"].isin(weights.index)]
        sample = known.sort_values(["job", "instance"]).groupby("job").head(SAMPLED_TARGETS)
        matchers = (("job", "=~", _alternatives(sample["job"])), ("instance", "=~", _alternatives(sample["instance"])))
    family = FamilyScope("up", ("job", "instance"), "namespace", matchers)
    slice_s, spacing = _slices(window_seconds)
    step = subquery_step_seconds(slice_s)
    on_grid = datetime.fromtimestamp(at.timestamp() // step * step, UTC)  # less than a step before `at`
    # where no slice holds the data (a few hours of a long window), the whole window on the same grid: the
    # samples then read are the few there are
    for length, grid in ((slice_s, Grid(step, spacing)), (int(window_seconds), Grid(step))):
        res = source.query(SCRAPE_INTERVAL_QUERY, length, on_grid, namespaces, family=family, grid=grid)
        frame = res.frame
        if res.error:
            return res, None
        values = _series_intervals(frame, length)
        if not values.empty or not spacing:
            break
    if values.empty:
        return res, None
    if weights is None or "job" not in values:
        return res, float(values["value"].median())
    per_job = values.groupby("job")["value"].median().sort_values()
    weight = weights.reindex(per_job.index).fillna(0).cumsum()
    return res, float(per_job[weight >= weight.iloc[-1] / 2].iloc[0])


FULL_SLICE = 0.9
"""A series' slices with at least this share of its most samples in one slice are the ones its interval is read
from: a slice it only partly fills reads short (the samples before its first step count, their time does not), one
with a gap in the scrapes long."""


def _series_intervals(frame: pd.DataFrame, length: int) -> pd.DataFrame:
    """Per series (its labels, and `value`): the median interval of its fullest slices."""
    if frame.empty or not {"what", "slice", "value"} <= set(frame.columns):
        return pd.DataFrame(columns=["value"])
    keys = [c for c in frame.columns if c not in ("what", "slice", "value")]
    readings = frame.assign(value=pd.to_numeric(frame["value"], errors="coerce"), series=0).fillna(
        {c: "" for c in keys}).pivot_table(index=[*keys, "series", "slice"], columns="what", values="value",
                                           aggfunc="first")
    if not {"interval", "samples"} <= set(readings.columns):
        return pd.DataFrame(columns=["value"])
    readings = readings[(readings["interval"] > 0) & (readings["interval"] < length)]
    by_series = [*keys, "series"]
    fullest = readings.groupby(level=by_series)["samples"].transform("max")
    kept = readings[readings["samples"] >= FULL_SLICE * fullest]
    return kept.groupby(level=by_series)["interval"].median().rename("value").reset_index().drop(columns="series")


def _alternatives(values: pd.Series) -> str:
    """A regex matching exactly these values (RE2, as PromQL's =~ anchors it): its metacharacters escaped."""
    return "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", v) for v in sorted(set(values)))


def _histograms(source: PrometheusSource, ctx: ReadContext, names: list[str] | None) -> \
        tuple[dict[str, pd.DataFrame], dict[str, int], HistogramFamilies]:
    """Discover histogram families (label-values API) and fetch each one's buckets, aggregated server-side."""
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
        if cnt.error is None and not cnt.frame.empty:  # one row, or one per part where the query was split
            series[family] = int(pd.to_numeric(cnt.frame["value"], errors="coerce").fillna(0).sum())
    return frames, series, HistogramFamilies(len(families), tuple(chosen), tuple(skipped))


NATIVE_CANDIDATES = ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes")
"""Istio's histograms: their bare names in a store are native histograms (a classic one keeps _bucket, _count, _sum)."""


def _native(source: PrometheusSource, ctx: ReadContext, names: list[str] | None) -> tuple[str, ...]:
    """Histogram families stored as one native series each, without `_bucket`: Istio's (and latency-named) bare
    names, each confirmed by histogram_count(), which only a native histogram answers. A query per candidate: the
    count does not grow with pods or services."""
    if not names:
        return ()
    present = set(names)
    candidates = sorted((n for n in present if f"{n}_bucket" not in present and f"{n}_count" not in present
                         and not n.endswith(("_bucket", "_count", "_sum", "_total", "_created"))
                         and (n in NATIVE_CANDIDATES or any(h in n for h in _LATENCY_HINT))),
                        key=lambda n: (n not in NATIVE_CANDIDATES, n))  # Istio's first, within the cap
    out = []
    for name in candidates[:MAX_HISTOGRAM_FAMILIES]:
        # a subquery, not last_over_time(): Prometheus 2's range functions skip native histogram samples
        res = source.query_promql(f"native_histogram:{name}", f"count(count_over_time(histogram_count({name})"
                                  f"[{ctx.window.seconds}s:5m]))", ctx.window.end)
        if res.error is None and not res.frame.empty and float(res.frame["value"].iloc[0]) > 0:
            out.append(name)
    return tuple(out)


def not_configured() -> SourceRead[MetricsEvidence, PrometheusReport]:
    return SourceRead(None, PrometheusReport(None, "not-configured"))

