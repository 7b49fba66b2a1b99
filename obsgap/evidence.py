"""What the sources deliver: aggregated, typed, free of I/O handles. The analysis (obsgap.analysis) reads it
once, and the checks read both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pandas as pd

from obsgap.intervals import CoveredCounts, PodCoverage
from obsgap.model import PanelQuery, Topology, Window
from obsgap.slo.spec import Measured, SloSpec
from obsgap.topology import TopologyIndex
from obsgap.witness import WitnessCounts


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


class UndeclaredQuery(KeyError):
    """A reader asked for a query it did not declare: the engine would not have fetched it for that reader."""


ASSUMED_SCRAPE_INTERVAL_S = 30.0
"""The scrape interval the tolerance assumes where none was measured: an assumption, never reported as a
measurement (the source's report then says unknown)."""


@dataclass(frozen=True)
class MetricsEvidence:
    frames: Mapping[str, pd.DataFrame]
    """Query name (queries/<name>.promql) -> one row per series: labels + `value`."""
    failed: Mapping[str, str] = field(default_factory=dict)
    """Query name -> why it failed."""
    targets: tuple[Mapping[str, Any], ...] | None = None
    """Prometheus' active targets, or None where the backend has no targets API (Thanos, Mimir)."""
    scrape_interval_s: float = ASSUMED_SCRAPE_INTERVAL_S
    """Measured from sample spacing, or ASSUMED_SCRAPE_INTERVAL_S where it could not be (the report then says
    unknown)."""
    histograms: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    """Histogram family (name without _bucket) -> bucket increases: le, grouping labels, value."""
    histogram_series: Mapping[str, int] = field(default_factory=dict)
    """Histogram family -> label combinations (series of its +Inf bucket)."""
    witnesses: tuple[WitnessCounts, ...] = ()
    """What each witness family present in the window counted (obsgap.witness; sources/witnesses.py)."""
    declared: frozenset[str] | None = None
    """The queries the current reader declared; reading another raises UndeclaredQuery. None: no restriction."""
    configuration: str | None = None
    """Prometheus's running configuration (/api/v1/status/config), as it prints it; None where the backend serves
    none (Thanos, Mimir, VictoriaMetrics). obsgap.relabel.metric_relabels reads its scrape jobs' rules."""
    configuration_since: datetime | None = None
    """When that configuration was loaded (/api/v1/status/runtimeinfo); None where the backend does not say."""
    rules: tuple[PanelQuery, ...] | None = None
    """The alerting and recording rules Prometheus evaluates (/api/v1/rules); None where they could not be read."""
    metric_names: frozenset[str] | None = None
    """The metric names with samples in the window (the label-values API); None where they were not read."""
    rule_slos: tuple[SloSpec, ...] = ()
    """SLOs whose recording rules Prometheus evaluates (Sloth's generated `slo:sli_error:ratio_rate*`), read from
    /api/v1/rules: measured and judged as those of --slo files are, unless a file gives the same SLO."""
    rule_slo_gaps: tuple[str, ...] = ()
    """Such SLOs obsgap cannot measure (their query does not parse), in words."""

    def for_reader(self, queries: tuple[str, ...] | frozenset[str]) -> MetricsEvidence:
        """A view for one reader (a check, the coverage table): only the queries it declared can be read."""
        return replace(self, declared=frozenset(queries))

    def _get(self, name: str) -> pd.DataFrame | None:
        if self.declared is not None and name not in self.declared:
            raise UndeclaredQuery(f"query {name!r} is read but not declared (declared: "
                                  f"{', '.join(sorted(self.declared)) or 'none'})")
        return self.frames.get(name)

    def frame(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The query's rows with every expected label column present (missing labels read as "")."""
        df = self._get(name)
        if df is None or df.empty:
            return _empty((columns or []) + ["value"])
        df = df.copy()
        for col in columns or []:
            if col not in df.columns:
                df[col] = ""
        return df.fillna("")

    def has(self, name: str) -> bool:
        df = self._get(name)
        return df is not None and not df.empty


@dataclass(frozen=True)
class LogEvidence:
    inbound: pd.DataFrame
    """namespace, pod, container, origin, port, http (bool), requests, errors, first_ms, last_ms."""
    outbound: pd.DataFrame
    """namespace, pod, origin, authority, port, upstream_cluster, upstream_host, requests."""
    by_remote: pd.DataFrame
    """namespace, pod, remote_ip, requests: inbound Envoy lines by caller address."""
    hourly: pd.DataFrame = field(default_factory=pd.DataFrame)
    """namespace, pod, origin, port, hour_ms, requests: inbound requests per time bin (the report's timelines)."""
    durations: pd.DataFrame = field(default_factory=pd.DataFrame)
    """namespace, service, origin, upper_ms, requests: inbound request durations per service on a 2% log scale."""
    partial: Mapping[tuple[str, str], PodCoverage] = field(default_factory=dict)
    """Pods whose logs cover only part of the window, with the interval they cover (intervals.py)."""
    covered_bins: pd.DataFrame = field(default_factory=pd.DataFrame)
    """namespace, pod, origin, port, bin_end_ms, requests: inbound requests of those pods per bin."""
    connections: pd.DataFrame = field(default_factory=pd.DataFrame)
    """namespace, pod, direction, port, connections, errors: ztunnel's access logs (ambient mode), per pod they
    name (the destination's inbound, the source's outbound): connections, not requests."""

    @property
    def has_requests(self) -> bool:
        return not self.inbound.empty or not self.outbound.empty


@dataclass(frozen=True)
class CheckSettings:
    slo_latency_ms: tuple[float, ...] = ()
    """Latency thresholds the user's SLOs use; suggested buckets contain them exactly."""
    max_buckets: int = 15
    waste_series: int = 10_000
    """A family with at least this many series whose buckets are mostly empty is reported as waste."""
    tolerance: float = 0.05
    """Relative share of requests a metric may miss before a gap is reported (scrape edges, clock skew)."""
    min_requests: int = 20
    """Below this many observed requests a service is too quiet to judge."""
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evidence:
    """Everything the sources delivered for one run: the input of the analysis and of every check."""

    window: Window
    settings: CheckSettings
    topology: Topology | None = None
    metrics: MetricsEvidence | None = None
    logs: LogEvidence | None = None
    dashboards: tuple[PanelQuery, ...] = ()
    covered: CoveredCounts | None = None
    """For pods whose logs cover only part of the window: logs and mesh counted over that part."""
    slos: tuple[Measured, ...] | None = None
    """SLOs given (--slo, the cluster's SLO objects), each with its SLI measured; None when none were asked for."""
    unmeasured: Mapping[str, str] = field(default_factory=dict)
    """Source kind (topology, metrics, logs) -> why it gave nothing, in words, for the kinds that did not."""
    _index: list[TopologyIndex] = field(default_factory=list, repr=False, compare=False)

    @property
    def index(self) -> TopologyIndex:
        if not self._index:
            self._index.append(TopologyIndex(self.topology or Topology.empty()))
        return self._index[0]

    def tolerance(self, seconds: float | None = None) -> float:
        """Share that scrape-interval edges alone can hide: two intervals of the window (or of the part of it
        the numbers rest on), plus the floor."""
        interval = self.metrics.scrape_interval_s if self.metrics else ASSUMED_SCRAPE_INTERVAL_S
        return max(self.settings.tolerance, 2 * interval / max(seconds or self.window.seconds, 1.0))
