"""What each source delivered, typed: findings.json `sources` (docs/findings.md, "sources").

Each adapter returns one of these frozen reports beside its evidence; nothing reads a report back by key. `to_json`
is the one serializer to findings.json for all of them (field names are the contract's keys).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from obsgap.sources.logs.table import LogStats

SourceStatus = Literal["ok", "partial", "empty", "unavailable", "unusable", "not-configured"]
"""ok: read in full; partial: read, with errors or warnings; empty: answered, but holds nothing for the run (no
file, no series, no pod in scope); unavailable: could not be reached or read; unusable: read, but nothing in it could
be compared (no line recognized, none in the window, none attributable); not-configured: not given."""

FLATTEN = {"flatten": True}
"""Field metadata: the field's own keys go into its parent's object (the log reader's accounting)."""


def to_json(value: Any) -> Any:
    """A report (or any value in one) as JSON-ready data: dataclasses by their fields, in order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("flatten"):
                flat = item.as_dict() if hasattr(item, "as_dict") else to_json(item) if item is not None else {}
                out.update({k: to_json(v) for k, v in flat.items() if k not in out})
                continue
            out[f.name] = to_json(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- Prometheus ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistogramFamilies:
    discovered: int = 0
    analyzed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    """Families beyond the cap, not analysed (named, never dropped silently)."""
    error: str | None = None
    native: tuple[str, ...] = ()
    """Families stored as native histograms (NHCB: `convert_classic_histograms_to_nhcb`, or exponential): no
    `_bucket` series, so their buckets were not analysed."""


@dataclass(frozen=True)
class WitnessReport:
    """One witness family found in the window."""

    witness: str
    series: str
    framework: str
    rows: int
    pods: int
    """Observed pods it names."""
    requests: int


@dataclass(frozen=True)
class PrometheusReport:
    url: str | None
    status: SourceStatus
    queries: int = 0
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    error: str | None = None
    """Why the source is unavailable or empty, in one line."""
    query_files: tuple[str, ...] = ()
    range_query_files: tuple[str, ...] = ()
    targets_api: bool | None = None
    config_api: bool | None = None
    """Whether the running configuration (its scrape jobs' metric_relabel_configs) was read."""
    config_loaded_at: str | None = None
    """When that configuration was loaded (ISO 8601, UTC); None where it was not read or the backend does not say."""
    rules: int | None = None
    """The alerting and recording rules read from /api/v1/rules (the dashboard checks judge them as they judge
    dashboards' queries); None where the backend serves none or they could not be read."""
    scrape_interval_seconds: float | None = None
    peak_samples: Mapping[str, int] = field(default_factory=dict)
    histogram_families: HistogramFamilies | None = None
    split_by_namespace: Mapping[str, int] = field(default_factory=dict)
    istio_series: bool | None = None
    """Whether the window holds Istio series (istio_requests_total, istio_tcp_*); None when not asked."""
    witnesses: tuple[WitnessReport, ...] = ()
    """The witness families the window holds (one query each)."""


# --- Kubernetes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardsReport:
    files: int = 0
    queries: int = 0
    gaps: tuple[str, ...] = ()


@dataclass(frozen=True)
class KubernetesReport:
    mode: Literal["live", "snapshot", "none"]
    status: SourceStatus = "ok"
    objects: Mapping[str, int] = field(default_factory=dict)
    gaps: tuple[str, ...] = ()
    """Objects that could not be read (403, missing CRD, unparsable file), in words."""
    error: str | None = None
    pods_in_scope: int | None = None
    dashboards: DashboardsReport | None = None

    @property
    def denied(self) -> tuple[str, ...]:
        """The gaps that mean a kind could not be read at all (forbidden, failed, unreadable, missing from a snapshot
        that shows objects of it exist)."""
        return tuple(g for g in self.gaps if any(w in g for w in ("forbidden", "failed", "unreadable", "missing from")))


# --- Logs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class UnparsedFile:
    path: str
    lines: int
    sample: str


@dataclass(frozen=True)
class ClockSkewFolder:
    folder: str
    files: int
    retimed: int
    offset_seconds: float


@dataclass(frozen=True)
class UnknownUnit:
    path: str
    key: str
    requests: int


@dataclass(frozen=True)
class FileRequests:
    path: str
    requests: int


@dataclass(frozen=True)
class PodRequests:
    pod: str
    requests: int


@dataclass(frozen=True)
class Unattributed:
    """Logged requests no pod of the topology can be credited with."""

    requests: int = 0
    files: tuple[FileRequests, ...] = ()
    files_total: int = 0
    unknown_pods: tuple[PodRequests, ...] = ()
    unknown_pod_requests: int = 0
    unknown_pods_total: int = 0


@dataclass(frozen=True)
class PartialPod:
    pod: str
    covered_seconds: int
    why: str
    start: str
    end: str


@dataclass(frozen=True)
class ContainerGap:
    container: str
    error: str


@dataclass(frozen=True)
class ContainerCut:
    container: str
    bytes: int


@dataclass(frozen=True)
class SkippedPod:
    pod: str
    reason: str


@dataclass(frozen=True)
class PodLogsReport:
    """--pod-logs: what the Kubernetes API gave of every container's log."""

    containers: int = 0
    read: int = 0
    bytes: int = 0
    lines: int = 0
    gaps: tuple[ContainerGap, ...] = ()
    gaps_total: int = 0
    cut: tuple[ContainerCut, ...] = ()
    skipped_pods: tuple[SkippedPod, ...] = ()


@dataclass(frozen=True)
class ClickHouseReport:
    queries: int = 0
    rows_returned: int = 0
    seconds: tuple[float, ...] = ()
    sql: tuple[str, ...] = ()
    rows_scanned: int = 0
    """lines the query read (the window and its margin)"""
    parsed_at_ingest: bool = False
    """the table is one `obsgap clickhouse-schema`'s view fills: typed rows read as they are, no parse"""
    parse_mismatch: bool = False
    """that view parses with other formats, field mapping or rules than this run would"""


@dataclass(frozen=True)
class LogsReport:
    status: SourceStatus
    files: int = 0
    lines: int = 0
    parsed: int = 0
    unparsed: int = 0
    requests: int = 0
    out_of_window: int = 0
    joined_partial_lines: int = 0
    invalid_utf8: int = 0
    formats: Mapping[str, int] = field(default_factory=dict)
    skipped_files: tuple[SkippedFile, ...] = ()
    unparsed_by_file: tuple[UnparsedFile, ...] = ()
    clock_skew_by_folder: tuple[ClockSkewFolder, ...] = ()
    duration_unit_unknown: tuple[UnknownUnit, ...] = ()
    agent_requests_excluded: int = 0
    unattributed: Unattributed = field(default_factory=Unattributed)
    partial_pods: tuple[PartialPod, ...] = ()
    pod_logs: PodLogsReport | None = None
    clickhouse: ClickHouseReport | None = None
    error: str | None = None
    """Why the source is unavailable, empty or unusable, in one line."""
    stats: LogStats | None = field(default=None, metadata=FLATTEN)
    """The reader's whole accounting (findings.json carries every key of it)."""

    @property
    def configured(self) -> bool:
        return self.status != "not-configured"

    @staticmethod
    def of(status: SourceStatus, stats: LogStats | None, **more: Any) -> LogsReport:
        """The typed report of the reader's accounting (LogStats) and what the adapter adds."""
        if stats is None:
            return LogsReport(status, **more)
        d = stats.as_dict()
        return LogsReport(
            status, files=stats.files, lines=stats.lines, parsed=stats.parsed, unparsed=stats.unparsed,
            requests=stats.requests, out_of_window=stats.out_of_window,
            joined_partial_lines=stats.joined_partial_lines, invalid_utf8=stats.invalid_utf8,
            formats=dict(stats.formats),
            skipped_files=tuple(SkippedFile(p, r) for p, r in stats.skipped_files),
            unparsed_by_file=tuple(UnparsedFile(p, n, s) for p, n, s in stats.unparsed_by_file),
            clock_skew_by_folder=tuple(ClockSkewFolder(str(c["folder"]), int(c["files"]), int(c["retimed"]),
                                                       float(c["offset_seconds"])) for c in d["clock_skew_by_folder"]),
            duration_unit_unknown=tuple(UnknownUnit(p, k, n) for p, k, n in stats.unknown_units[:50]),
            stats=stats, **more)


# --- SLOs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SloReport:
    files: int = 0
    from_cluster: int = 0
    slos: int = 0
    gaps: tuple[str, ...] = ()
    ignored_documents: int = 0
    sli_queries: int = 0
    from_prometheus: int = 0
    """SLOs read from the recording rules Prometheus evaluates that no file or cluster object gives."""


@dataclass(frozen=True)
class SourceReports:
    """findings.json `sources`."""

    prometheus: PrometheusReport
    kubernetes: KubernetesReport
    logs: LogsReport
    slos: SloReport | None = None
    """SLO files and cluster objects read (None when none were asked for)."""

    def as_json(self) -> dict[str, Any]:
        out = {"prometheus": to_json(self.prometheus), "kubernetes": to_json(self.kubernetes),
               "logs": to_json(self.logs)}
        return out | ({"slos": to_json(self.slos)} if self.slos is not None else {})
