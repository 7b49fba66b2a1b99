"""The log sources, one adapter each: files (--logs), the pods' logs through the Kubernetes API (--pod-logs), and
ClickHouse's otel_logs (--clickhouse-url). All three end in the same evidence (summary.summarize) and report.

Empty: no file found, files with no line, no container in scope. Unusable: lines of which none was recognized,
none in the window, or none attributable to a pod. Either way the run is partial and says what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from obsgap.ambient import is_ztunnel
from obsgap.errors import InputError, SourceError
from obsgap.evidence import LogEvidence
from obsgap.intervals import time_step_ms
from obsgap.sources.base import ReadContext, SourceRead
from obsgap.sources.kube.live import LiveOptions, api_client
from obsgap.sources.logs.clickhouse import ClickHouseOptions, ClickHouseTable, build_relation, connect
from obsgap.sources.logs.clickhouse_schema import fingerprint, table_fingerprint
from obsgap.sources.logs.discover import LogPod, check, discover, file_attributions
from obsgap.sources.logs.envoy_format import AccessFormat
from obsgap.sources.logs.podlogs import PodLogOptions, PodLogReport, fetch_pod_logs
from obsgap.sources.logs.summary import Accounting, agent_paths, summarize
from obsgap.sources.logs.table import Attributions, LogStats, combine, read_logs
from obsgap.sources.reports import ClickHouseReport, LogsReport, PartialPod, PodLogsReport, SourceStatus
from obsgap.text import iso_ms


@dataclass(frozen=True)
class LogReading:
    """How every log source reads lines: the formats to try and the fields and pods the user named."""

    access_formats: tuple[AccessFormat, ...] = ()
    """The user's Envoy access-log formats, tried before the mesh's and Istio's defaults."""
    fields: dict[str, str] = field(default_factory=dict)
    log_pods: tuple[LogPod, ...] = ()


def _formats(reading: LogReading, ctx: ReadContext) -> tuple[AccessFormat, ...]:
    return tuple(dict.fromkeys((*reading.access_formats, *ctx.index.topo.access_log_formats)))


def not_configured() -> SourceRead[LogEvidence, LogsReport]:
    return SourceRead(None, LogsReport.of("not-configured", None))


def _unusable(stats: LogStats, acc: Accounting) -> str | None:
    """Why logs that were read give nothing to compare, or None."""
    if stats.lines and not stats.parsed:
        return f"logs: none of the {stats.lines:,} lines was recognized (see sources.logs.unparsed_by_file)"
    if not stats.requests and stats.out_of_window:
        return f"logs: all {stats.out_of_window:,} parsed lines lie outside the window (wrong --start/--end?)"
    if stats.requests and acc.unattributed.requests >= stats.requests:
        return f"logs: none of the {stats.requests:,} logged requests could be attributed to a pod"
    return None


def finish(evidence: LogEvidence, acc: Accounting, *, empty: str | None = None, failed: str | None = None,
           pod_logs: PodLogsReport | None = None,
           clickhouse: ClickHouseReport | None = None) -> SourceRead[LogEvidence, LogsReport]:
    """The evidence and report of a read, whichever source it came from: a source that gave nothing, or nothing
    usable, has no evidence and says why."""
    partial = tuple(PartialPod(f"{c.namespace}/{c.pod}", round(c.seconds), c.why, iso_ms(c.start_ms), iso_ms(c.end_ms))
                    for c in sorted(evidence.partial.values(), key=lambda c: c.seconds))[:200]
    problem = failed or empty or _unusable(acc.stats, acc)
    status: SourceStatus = "unavailable" if failed else "empty" if empty else "unusable" if problem else "ok"
    if status == "ok" and (acc.stats.skipped_files or acc.unattributed.requests
                           or (pod_logs is not None and pod_logs.gaps_total)):
        status = "partial"
    report = LogsReport.of(status, acc.stats, agent_requests_excluded=acc.agent_requests_excluded,
                           unattributed=acc.unattributed, partial_pods=partial, pod_logs=pod_logs,
                           clickhouse=clickhouse, error=problem)
    return SourceRead(None if problem else evidence, report, (problem,) if problem else ())


@dataclass(frozen=True)
class LogFileSource:
    """--logs: files, folders (recursive) or globs, plain or gzipped, in kubelet's, Docker's or shippers' layouts."""

    paths: tuple[str, ...]
    reading: LogReading = LogReading()
    kind: str = "logs"

    def preflight(self) -> None:
        check(list(self.paths))

    def read(self, ctx: ReadContext) -> SourceRead[LogEvidence, LogsReport]:
        parts = Path(tempfile.mkdtemp(prefix="obsgap-logs-"))
        try:
            stats = read_files(list(self.paths), self.reading, ctx, parts, "files", ctx.forks_done)
            table = combine(parts, [stats])
            try:
                evidence, acc = summarize(table, ctx.index, ctx.start_ms, ctx.end_ms)
            finally:
                table.close(remove=False)
        finally:
            shutil.rmtree(parts, ignore_errors=True)
        empty = None
        if not stats.files:
            empty = f"logs: {', '.join(self.paths)} holds no log file (an empty mount, or the wrong folder?)"
        elif not stats.lines:
            empty = f"logs: the {stats.files:,} log files hold no line"
        return finish(evidence, acc, empty=empty)


def read_files(paths: list[str], reading: LogReading, ctx: ReadContext, parts: Path, prefix: str,
               workers_started: Callable[[], None] | None = None) -> LogStats:
    """Read log files into the Parquet parts under `parts` (summary.combine makes one table of every batch)."""
    found = discover(paths)
    ctx.say(f"reading {len(found.files)} log files")
    pods = (*ctx.index.topo.pods, *ctx.index.topo.context_pods)
    names = Counter(p.name for p in pods)
    unique = {p.name: p.namespace for p in pods if names[p.name] == 1}
    attribution = Attributions(file_attributions(found.files, reading.log_pods, unique), unique)
    return read_logs(found, ctx.start_ms, ctx.end_ms, reading.fields or None, access_formats=_formats(reading, ctx),
                     attribution=attribution, into=parts, prefix=prefix,
                     workers_started=workers_started).stats


@dataclass(frozen=True)
class PodLogSource:
    """--pod-logs: every in-scope pod's containers through pods/log, in batches of about BATCH_BYTES: each batch is
    written as kubelet's files, read into the parts, and removed before the next (disk stays bounded)."""

    live: LiveOptions
    options: PodLogOptions
    reading: LogReading = LogReading()
    kind: str = "logs"

    def preflight(self) -> None:
        return None

    def read(self, ctx: ReadContext) -> SourceRead[LogEvidence, LogsReport]:
        parts = Path(tempfile.mkdtemp(prefix="obsgap-logs-"))
        fetched = tempfile.mkdtemp(prefix="obsgap-podlogs-")
        try:
            read, report, cut = self._fetch(ctx, fetched, parts)
            table = combine(parts, read)
            try:
                evidence, acc = summarize(table, ctx.index, ctx.start_ms, ctx.end_ms, frozenset(cut))
            finally:
                table.close(remove=False)
        finally:
            shutil.rmtree(parts, ignore_errors=True)
            shutil.rmtree(fetched, ignore_errors=True)
        summary = report.summary()
        failed = empty = None
        if summary.containers and not summary.read:
            first = summary.gaps[0].error if summary.gaps else "no answer"
            failed = (f"pod logs: none of the {summary.containers} containers could be read ({first}); the service "
                      "account needs `get` on pods/log")
        elif not summary.containers:
            empty = "pod logs: no container of a pod in scope to read (no running pod, or none selected)"
        return finish(evidence, acc, empty=empty, failed=failed, pod_logs=summary)

    def _fetch(self, ctx: ReadContext, fetched: str, parts: Path) -> tuple[list[LogStats], PodLogReport, list[str]]:
        topo = ctx.index.topo  # ztunnel's logs name the pods in scope wherever ztunnel runs: read them too
        pods = (*topo.pods, *(p for p in topo.context_pods if is_ztunnel(p)))
        ctx.say(f"reading the logs of {len(pods)} pods through the Kubernetes API "
                f"({self.options.concurrency} containers at a time)")
        step = max(1, len(pods) // 10)
        report = PodLogReport()
        read: list[LogStats] = []
        cut: list[str] = []
        batches = fetch_pod_logs(api_client(self.live), pods, ctx.start_ms, fetched, self.options,
                                 lambda done, total: ctx.say(f"pod logs: {done}/{total} containers")
                                 if done == total or done % step == 0 else None)
        for k, (latest, batch) in enumerate(batches):
            report = latest
            files = [c.path for c in batch if c.path]
            cut += [c.path for c in batch if c.cut and c.path]
            if files:
                read.append(read_files(files, self.reading, ctx, parts, f"pods{k:04d}"))
            for path in files:
                with contextlib.suppress(OSError):
                    os.remove(path)
        return read, report, cut


@dataclass(frozen=True)
class ClickHouseSource:
    """--clickhouse-url: the OpenTelemetry Collector's otel_logs, parsed and aggregated in ClickHouse
    (clickhouse.py); only groups come back."""

    options: ClickHouseOptions
    reading: LogReading = LogReading()
    kind: str = "logs"

    def preflight(self) -> None:
        url = self.options.url
        if url.startswith("chdb:") and not Path(url[len("chdb:"):]).is_dir():
            raise InputError(f"--clickhouse-url {url}: no such data directory")

    def read(self, ctx: ReadContext) -> SourceRead[LogEvidence, LogsReport]:
        ctx.forks_done()
        formats = _formats(self.reading, ctx)
        ctx.say(f"querying {self.options.table} in ClickHouse")
        try:
            conn = connect(self.options)
            parsed_by = table_fingerprint(conn, self.options.table)
            relation = build_relation(self.options, ctx.start_ms, ctx.end_ms, formats, self.reading.fields or None,
                                      parsed=parsed_by is not None)
            table = ClickHouseTable(conn, relation, ctx.start_ms, ctx.end_ms, formats, agent_paths(ctx.index),
                                    time_step_ms(ctx.start_ms, ctx.end_ms))
        except SourceError as exc:
            return SourceRead(None, LogsReport.of("unavailable", None, error=str(exc)), (str(exc),))
        try:
            evidence, acc = summarize(table, ctx.index, ctx.start_ms, ctx.end_ms)
        except SourceError as exc:
            return SourceRead(None, LogsReport.of("unavailable", None, error=str(exc)), (str(exc),))
        finally:
            table.close()
        empty = f"logs: {self.options.table} holds no line in the window" if not acc.stats.lines else None
        mismatch = parsed_by is not None and parsed_by != fingerprint(formats, self.reading.fields or None)
        return finish(evidence, acc, empty=empty, clickhouse=table.report(parsed_by is not None, mismatch))
