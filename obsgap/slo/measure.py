"""What Prometheus says of each SLO over the report's window: its SLI's own queries, the series each of its
selectors matches, and the buckets of the histogram a latency SLI reads. The only module of the SLO layer that
queries; the verdicts (assess.py) are pure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd

from obsgap.bounds import bound
from obsgap.errors import InputError
from obsgap.slo.promql import Selector, counted, duration, over_window, shape
from obsgap.slo.spec import Measured, SloSpec
from obsgap.sources.prometheus import PrometheusSource

Query = Callable[[str, str], tuple[pd.DataFrame | None, str | None]]
"""(label, promql) -> (rows with labels and `value`, error)"""


def _sum(df: pd.DataFrame | None) -> float | None:
    if df is None or df.empty or "value" not in df:
        return None
    values = pd.to_numeric(df["value"], errors="coerce").dropna()
    return float(values.sum()) if len(values) else None


def _events(query: Query, label: str, promql: str, window_s: int) -> tuple[float | None, str | None]:
    s = shape(promql)
    df, err = query(label, counted(promql, window_s))
    value = _sum(df)
    if value is not None and s.rate and not s.bare:
        value *= window_s  # a per-second rate over the window, as events
    return value, err


def _histogram(query: Query, spec: SloSpec, window_s: int) -> tuple[
        tuple[float, ...], tuple[float, ...], tuple[str, ...], str | None]:
    """The histogram's finite bounds, cumulative counts (+Inf last) and the `le` spellings stored, bounds compared
    as numbers (a Prometheus upgraded to 3 holds `500` and `500.0` for one bound); and why the buckets could not be
    read (the bucket checks then cannot say the SLI is sound)."""
    selectors = [sel for q in spec.queries for sel in shape(q).selectors]
    sel = next((s for s in selectors if s.metric.endswith("_bucket")), selectors[0] if selectors else None)
    if sel is None:
        return (), (), (), None
    series = Selector(sel.family + "_bucket", tuple(m for m in sel.matchers if m.name != "le"))
    promql = f"sum by (le) (increase({series.text()}[{duration(window_s)}]))"
    df, err = query(f"slo {spec.name}: buckets", promql)
    if df is None or df.empty or "le" not in df:
        return (), (), (), err
    counts: dict[float, float] = {}
    spelled: dict[float, str] = {}
    for text, value in zip(df["le"], df["value"], strict=True):
        le = bound(text)
        if le is not None:
            counts[le] = counts.get(le, 0.0) + float(value)
            spelled[le] = min(spelled.get(le, str(text)), str(text), key=len)
    order = sorted(counts)
    finite = tuple(le for le in order if le != float("inf"))
    return finite, tuple(counts[le] for le in order), tuple(spelled[le] for le in finite), None


def measure(spec: SloSpec, query: Query, window_s: int) -> Measured:
    try:
        selectors = {sel.text(): sel for q in spec.queries for sel in shape(q).selectors}
    except InputError as exc:
        return Measured(spec, error=str(exc))
    errors: list[str] = []
    series = []
    for text in selectors:
        df, err = query(f"slo {spec.name}: series", f"count(count_over_time({text}[{duration(window_s)}]))")
        if err:
            errors.append(err)
        series.append((text, None if err else int(_sum(df) or 0)))  # a failed count is no count
    total = bad = ratio = quantile_value = None
    if spec.kind in ("ratio", "latency"):
        if spec.total:
            total, err = _events(query, f"slo {spec.name}: total", spec.total, window_s)
            errors += [err] if err else []
        if spec.bad:
            bad, err = _events(query, f"slo {spec.name}: bad", spec.bad, window_s)
            errors += [err] if err else []
        elif spec.good:
            good, err = _events(query, f"slo {spec.name}: good", spec.good, window_s)
            errors += [err] if err else []
            bad = None if good is None or total is None else max(0.0, total - good)
        if spec.ratio:
            df, err = query(f"slo {spec.name}: ratio", over_window(spec.ratio, window_s))
            errors += [err] if err else []
            ratio = _sum(df)
        elif bad is not None and total:
            ratio = bad / total
    if spec.kind == "quantile" and spec.quantile:
        df, err = query(f"slo {spec.name}: quantile", over_window(spec.quantile, window_s))
        errors += [err] if err else []
        if df is not None and not df.empty:
            values = pd.to_numeric(df["value"], errors="coerce").dropna()
            quantile_value = float(values.max()) if len(values) else None
    bounds, counts, labels, err = ((), (), (), None) if spec.kind == "ratio" else _histogram(query, spec, window_s)
    errors += [err] if err else []
    return Measured(spec, errors[0] if errors else None, tuple(series), total, bad, ratio, quantile_value, bounds,
                    counts, labels)


def prometheus_query(source: PrometheusSource, at: datetime) -> Query:
    """A Query over Prometheus, at the window's end."""

    def run(label: str, promql: str) -> tuple[pd.DataFrame | None, str | None]:
        res = source.query_promql(label, promql, at)
        return (None, res.error) if res.error else (res.frame, None)

    return run
