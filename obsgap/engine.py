"""One run: read the sources named in the plan, run every check, assemble the ScanResult."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from obsgap.checks import REGISTRY
from obsgap.checks.base import Check, Skip
from obsgap.checks.slo import SloUntrustworthy, assessments
from obsgap.config import RunPlan, redact_url
from obsgap.contract import build_contract
from obsgap.coverage import CoveredCounts, covered_counts
from obsgap.errors import InputError, ObsgapError, SourceError
from obsgap.evidence import CheckInputs, LogEvidence, MetricsEvidence
from obsgap.model import (
    CheckRun,
    CoverageRow,
    Finding,
    ScanResult,
    Series,
    ServiceTimeline,
    SourceReport,
    Topology,
)
from obsgap.reconcile import reconcile
from obsgap.slo.load import Loaded, load_documents, load_files
from obsgap.slo.measure import Measured, measure, prometheus_query
from obsgap.slo.spec import SloSpec
from obsgap.sources.dashboards import load_dashboards
from obsgap.sources.kube.build import build_topology
from obsgap.sources.kube.live import api_client, load_live
from obsgap.sources.kube.slos import load_live_slos
from obsgap.sources.kube.snapshot import load_snapshot
from obsgap.sources.logs.clickhouse import ClickHouseTable, build_relation, connect
from obsgap.sources.logs.discover import discover, file_attributions
from obsgap.sources.logs.podlogs import PodLogReport, fetch_pod_logs
from obsgap.sources.logs.summary import agent_paths, summarize, time_step_ms
from obsgap.sources.logs.table import Attributions, LogStats, combine, read_logs
from obsgap.sources.prometheus import PrometheusSource
from obsgap.text import iso_ms, plural
from obsgap.topology import TopologyIndex

log = logging.getLogger("obsgap")
Progress = Callable[[str], None]

#: What the engine's own readers declare, beside the checks: the engine fetches exactly the union.
COVERAGE_QUERIES = ("mesh_requests", "mesh_tcp_connections")
CONTRACT_QUERIES = ("mesh_requests", "scrape_targets")
ENGINE_QUERIES = ("scrape_interval",)
TREND_RANGE_QUERY = "mesh_requests_over_time"
COVERED_RANGE_QUERY = "mesh_requests_by_pod_over_time"


def declared_queries(checks: tuple[type[Check], ...]) -> frozenset[str]:
    """Every instant query some reader of this run declared (the checks, the coverage and contract tables)."""
    return frozenset(q for c in checks for q in c.queries) | set(COVERAGE_QUERIES) | set(CONTRACT_QUERIES) \
        | set(ENGINE_QUERIES)


def preflight(plan: RunPlan) -> None:
    """What can be checked before any work: every named input exists. Raises InputError (exit 2)."""
    for path in plan.kube_snapshots:
        if not path.exists():
            raise InputError(f"--kube-snapshot {path}: no such file or directory")
    for path in plan.dashboards:
        if not path.exists():
            raise InputError(f"--dashboards {path}: no such file or directory")
    for path in plan.slo_paths:
        if not path.exists():
            raise InputError(f"--slo {path}: no such file or directory")
    if plan.baseline is not None and not plan.baseline.exists():
        raise InputError(f"--baseline {plan.baseline}: no such file or directory")
    if plan.baseline is not None and plan.baseline.is_dir() and not (plan.baseline / "findings.json").is_file():
        raise InputError(f"--baseline {plan.baseline}: the folder holds no findings.json")
    if plan.logs:
        discover(list(plan.logs))
    if plan.clickhouse is not None and plan.clickhouse.url.startswith("chdb:") \
            and not Path(plan.clickhouse.url[len("chdb:"):]).is_dir():
        raise InputError(f"--clickhouse-url {plan.clickhouse.url}: no such data directory")
    if plan.prometheus is not None:
        PrometheusSource(plan.prometheus).validate_credentials()


@dataclass
class RunOutcome:
    result: ScanResult
    source_failures: list[str] = field(default_factory=list)


def _topology(plan: RunPlan, failures: list[str]) -> tuple[Topology | None, dict[str, Any]]:
    if plan.kube_snapshots:
        objects, gaps = load_snapshot(list(plan.kube_snapshots))
        topo = build_topology(objects, gaps)
        return topo, {"mode": "snapshot", "objects": dict(topo.object_counts), "gaps": list(topo.gaps)}
    if plan.kube_live:
        try:
            objects, gaps = load_live(plan.kube_live)
        except SourceError as exc:
            failures.append(str(exc))
            return None, {"mode": "live", "objects": {}, "gaps": [], "status": "unavailable", "error": str(exc)}
        topo = build_topology(objects, gaps)
        return topo, {"mode": "live", "objects": dict(topo.object_counts), "gaps": list(topo.gaps)}
    return None, {"mode": "none", "objects": {}}


def _scope_topology(topo: Topology, namespaces: tuple[str, ...]) -> Topology:
    if not namespaces:
        return topo
    keep = set(namespaces)
    return replace(
        topo, namespaces={k: v for k, v in topo.namespaces.items() if k in keep},
        services=tuple(s for s in topo.services if s.namespace in keep),
        pods=tuple(p for p in topo.pods if p.namespace in keep),
        context_pods=tuple(p for p in topo.pods if p.namespace not in keep),
        virtual_services=tuple(v for v in topo.virtual_services if v.namespace in keep),
        destination_rules=tuple(d for d in topo.destination_rules if d.namespace in keep),
        service_entries=topo.service_entries, gateways=topo.gateways,
    )


def _metrics(plan: RunPlan, checks: tuple[type[Check], ...], failures: list[str],
             progress: Progress) -> tuple[MetricsEvidence | None, dict[str, Any]]:
    if plan.prometheus is None:
        return None, {"url": None, "status": "not-configured", "queries": 0, "warnings": []}
    source = PrometheusSource(plan.prometheus)
    report: dict[str, Any] = {"url": redact_url(plan.prometheus.url)}
    problem = source.check()
    if problem:
        failures.append(f"prometheus: {problem}")
        return None, report | {"status": "unavailable", "queries": 1, "warnings": [], "error": problem}
    names = sorted(declared_queries(checks))
    frames = {}
    failed = {}
    for name in names:
        progress(f"query {name}")
        res = source.query(name, plan.window.seconds, plan.window.end, plan.namespaces)
        if res.error:
            failed[name] = res.error
        else:
            frames[name] = res.frame
    histograms, histogram_series, hist_report = (
        _histograms(source, plan, say=progress) if any(c.needs_histograms for c in checks) else ({}, {}, {}))
    over_time = source.query_range(TREND_RANGE_QUERY, plan.window.start, plan.window.end,
                                   time_step_ms(0, plan.window.seconds * 1000) // 1000, plan.namespaces)
    if over_time.error is None:
        frames[TREND_RANGE_QUERY] = over_time.frame
    targets = source.targets()
    interval = 30.0
    si = frames.get("scrape_interval")
    if si is not None and not si.empty and 0 < float(si["value"].max()) < plan.window.seconds:
        interval = float(si["value"].max())
    if failed:
        failures.extend(failed.values())
    report |= {"status": source.status(), "queries": source.queries_issued, "query_files": names,
               "warnings": list(source.warnings),
               "errors": list(source.errors), "targets_api": targets is not None,
               "scrape_interval_seconds": round(interval, 1), "peak_samples": dict(source.query_samples),
               "histogram_families": hist_report,
               "split_by_namespace": dict(source.splits)}
    return MetricsEvidence(frames, failed, tuple(targets) if targets is not None else None, interval,
                           histograms, histogram_series), report


MAX_HISTOGRAM_FAMILIES = 60
_LATENCY_HINT = ("duration", "latency", "seconds", "milliseconds", "_ms_", "time")


def _histograms(source: PrometheusSource, plan: RunPlan, say: Progress) -> tuple[dict[str, Any], dict[str, int],
                                                                                 dict[str, Any]]:
    """Discover histogram families (label-values API) and fetch each one's buckets, aggregated server-side."""
    names = source.metric_names(plan.window.start, plan.window.end)
    if names is None:
        return {}, {}, {"discovered": 0, "error": "label values API failed"}
    families = sorted({n[: -len("_bucket")] for n in names if n.endswith("_bucket")},
                      key=lambda f: (not f.startswith("istio_"), not any(h in f for h in _LATENCY_HINT), f))
    chosen, skipped = families[:MAX_HISTOGRAM_FAMILIES], families[MAX_HISTOGRAM_FAMILIES:]
    frames: dict[str, Any] = {}
    series: dict[str, int] = {}
    for family in chosen:
        say(f"histogram {family}")
        res = source.query("histogram_buckets", plan.window.seconds, plan.window.end, plan.namespaces,
                           bucket_series=family + "_bucket")
        if res.error is None:
            frames[family] = res.frame
        cnt = source.query("histogram_series", plan.window.seconds, plan.window.end, plan.namespaces,
                           bucket_series=family + "_bucket")
        if cnt.error is None and not cnt.frame.empty:
            series[family] = int(float(cnt.frame["value"].iloc[0]))
    return frames, series, {"discovered": len(families), "analyzed": chosen, "skipped": skipped}


def _logs_unusable(stats: dict[str, Any]) -> str | None:
    """Why logs that were read give nothing to compare, or None: such a source failed, whatever it printed."""
    lines, parsed, requests = int(stats.get("lines") or 0), int(stats.get("parsed") or 0), int(stats.get("requests")
                                                                                                or 0)
    if lines and not parsed:
        return f"logs: none of the {lines:,} lines was recognized (see sources.logs.unparsed_by_file)"
    if not requests and stats.get("out_of_window"):
        return f"logs: all {stats['out_of_window']:,} parsed lines lie outside the window (wrong --start/--end?)"
    unattributed = int((stats.get("unattributed") or {}).get("requests") or 0)
    if requests and unattributed >= requests:
        return f"logs: none of the {requests:,} logged requests could be attributed to a pod"
    return None


def _logs(plan: RunPlan, index: TopologyIndex, progress: Progress,
          failures: list[str]) -> tuple[LogEvidence | None, dict[str, Any]]:
    if plan.clickhouse is not None:
        return _clickhouse_logs(plan, index, progress, failures)
    if not plan.logs and plan.pod_logs is None:
        return None, {"files": 0, "lines": 0, "parsed": 0, "unparsed": 0, "formats": {}, "status": "not-configured"}
    start_ms = int(plan.window.start.timestamp() * 1000)
    end_ms = int(plan.window.end.timestamp() * 1000)
    parts = Path(tempfile.mkdtemp(prefix="obsgap-logs-"))
    fetched = tempfile.mkdtemp(prefix="obsgap-podlogs-") if plan.pod_logs is not None else None
    pod_report: dict[str, Any] | None = None
    cut: list[str] = []
    try:
        read: list[LogStats] = []
        if plan.logs:
            read.append(_read_into(plan, plan.logs, index, parts, "files", progress))
        if fetched is not None:
            pod_report, cut = _fetch_and_read_pod_logs(plan, index, fetched, parts, read, progress, failures)
        table = combine(parts, read)
        try:
            evidence = summarize(table, index, start_ms, end_ms, frozenset(cut))
        finally:
            table.close(remove=False)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
        if fetched:
            shutil.rmtree(fetched, ignore_errors=True)
    return evidence, _logs_report(evidence, failures, {"pod_logs": pod_report} if pod_report is not None else {})


def _logs_report(evidence: LogEvidence, failures: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """sources.logs, whichever source the logs came from; a source that gave nothing usable has failed."""
    stats = dict(evidence.stats) | extra
    stats["partial_pods"] = [
        {"pod": f"{c.namespace}/{c.pod}", "covered_seconds": round(c.seconds), "why": c.why,
         "start": iso_ms(c.start_ms), "end": iso_ms(c.end_ms)}
        for c in sorted(evidence.partial.values(), key=lambda c: c.seconds)][:200]
    unusable = _logs_unusable(stats) if not any(f.startswith("pod logs:") for f in failures) else None
    if unusable:
        failures.append(unusable)
    return stats | {"status": "unusable" if unusable else "ok"}


def _read_into(plan: RunPlan, paths: tuple[str, ...] | list[str], index: TopologyIndex, parts: Path, prefix: str,
               progress: Progress) -> LogStats:
    """Read log files into the Parquet parts under `parts` (combine makes one table of every batch)."""
    found = discover(list(paths))
    progress(f"reading {len(found.files)} log files")
    start_ms = int(plan.window.start.timestamp() * 1000)
    end_ms = int(plan.window.end.timestamp() * 1000)
    formats = tuple(dict.fromkeys((*plan.access_log_formats, *index.topo.access_log_formats)))
    names = Counter(p.name for p in (*index.topo.pods, *index.topo.context_pods))
    unique = {p.name: p.namespace for p in (*index.topo.pods, *index.topo.context_pods) if names[p.name] == 1}
    attribution = Attributions(file_attributions(found.files, plan.log_pods, unique), unique)
    return read_logs(found, start_ms, end_ms, plan.log_fields or None, access_formats=formats,
                     attribution=attribution, into=parts, prefix=prefix).stats


def _fetch_and_read_pod_logs(plan: RunPlan, index: TopologyIndex, fetched: str, parts: Path, read: list[LogStats],
                             progress: Progress, failures: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Every in-scope pod's containers through pods/log, in batches of about BATCH_BYTES: each batch is written as
    kubelet's files under `fetched`, read into the parts, and removed before the next (disk stays bounded)."""
    assert plan.pod_logs is not None and plan.kube_live is not None
    pods = index.topo.pods
    progress(f"reading the logs of {len(pods)} pods through the Kubernetes API "
             f"({plan.pod_logs.concurrency} containers at a time)")
    start_ms = int(plan.window.start.timestamp() * 1000)
    step = max(1, len(pods) // 10)
    report: PodLogReport | None = None
    cut: list[str] = []
    batches = fetch_pod_logs(api_client(plan.kube_live), pods, start_ms, fetched, plan.pod_logs,
                             lambda done, total: progress(f"pod logs: {done}/{total} containers")
                             if done == total or done % step == 0 else None)
    for k, (latest, batch) in enumerate(batches):
        report = latest
        files = [c.path for c in batch if c.path]
        cut += [c.path for c in batch if c.cut and c.path]
        if files:
            read.append(_read_into(plan, files, index, parts, f"pods{k:04d}", progress))
        for path in files:
            with contextlib.suppress(OSError):
                os.remove(path)
    summary = report.as_dict() if report is not None else PodLogReport().as_dict()
    if summary["containers"] and not summary["read"]:
        first = summary["gaps"][0]["error"] if summary["gaps"] else "no answer"
        failures.append(f"pod logs: none of the {summary['containers']} containers could be read ({first}); the "
                        "service account needs `get` on pods/log")
    return summary, cut


def _clickhouse_logs(plan: RunPlan, index: TopologyIndex, progress: Progress,
                     failures: list[str]) -> tuple[LogEvidence | None, dict[str, Any]]:
    """Logs from ClickHouse's otel_logs, parsed and aggregated there (clickhouse.py)."""
    assert plan.clickhouse is not None
    start_ms = int(plan.window.start.timestamp() * 1000)
    end_ms = int(plan.window.end.timestamp() * 1000)
    formats = tuple(dict.fromkeys((*plan.access_log_formats, *index.topo.access_log_formats)))
    progress(f"querying {plan.clickhouse.table} in ClickHouse")
    try:
        conn = connect(plan.clickhouse)
        table = ClickHouseTable(conn, build_relation(plan.clickhouse, start_ms, end_ms, formats,
                                                     plan.log_fields or None), start_ms, end_ms, formats,
                                agent_paths(index), time_step_ms(start_ms, end_ms))
    except SourceError as exc:
        failures.append(str(exc))
        return None, {"files": 0, "lines": 0, "parsed": 0, "unparsed": 0, "formats": {}, "status": "unavailable",
                      "error": str(exc)}
    try:
        evidence = summarize(table, index, start_ms, end_ms)
    except SourceError as exc:
        failures.append(str(exc))
        return None, {"status": "unavailable", "error": str(exc)}
    finally:
        table.close()
    return evidence, _logs_report(evidence, failures, {"clickhouse": table.report()})


def check_namespaces(wanted: tuple[str, ...], known: set[str], where: str) -> None:
    """A -n filter naming a namespace the sources do not have is a typo or the wrong cluster: an error that
    lists what exists."""
    missing = [ns for ns in wanted if ns not in known]
    if missing and known:
        shown = ", ".join(sorted(known)[:40]) + (f", … ({len(known)} in all)" if len(known) > 40 else "")
        raise InputError(f"--namespace {', '.join(missing)}: no such namespace in {where}; namespaces there: "
                         f"{shown}")
    if missing:
        raise InputError(f"--namespace {', '.join(missing)}: {where} has no namespaces at all")


def _prometheus_namespaces(plan: RunPlan) -> set[str] | None:
    """Namespaces Istio's metrics name in the window (one label-values call), or None when unknown."""
    if plan.prometheus is None:
        return None
    source = PrometheusSource(plan.prometheus)
    if source.check():
        return None
    values = source.label_values("destination_service_namespace", plan.window.start, plan.window.end)
    return set(values) if values else None


def run(plan: RunPlan, progress: Progress | None = None) -> RunOutcome:
    say = progress or (lambda _msg: None)
    failures: list[str] = []
    checks = tuple(c for c in REGISTRY if not plan.only_checks or c.id in plan.only_checks)
    # SLO files first: one that is not YAML is bad input (exit 2) before any other work
    slo_specs, slo_report = _slos(plan, failures, say)
    say("reading topology")
    topo, kube_report = _topology(plan, failures)
    if plan.namespaces:
        if topo is not None:
            check_namespaces(plan.namespaces, set(topo.namespaces), "the Kubernetes topology")
        elif (known := _prometheus_namespaces(plan)) is not None:
            check_namespaces(plan.namespaces, known, "the Istio metrics of the window")
    if topo is not None:
        topo = _scope_topology(topo, plan.namespaces)
    index = TopologyIndex(topo or Topology.empty())
    metrics, prom_report = _metrics(plan, checks, failures, say)
    logs, logs_report = _logs(plan, index, say, failures)

    panels, dash_gaps = load_dashboards(list(plan.dashboards)) if plan.dashboards else ([], [])
    kube_report["dashboards"] = {"files": len(plan.dashboards), "queries": len(panels), "gaps": dash_gaps}
    settings = replace(plan.settings, namespaces=plan.namespaces)  # one source of truth for the scope
    covered = _covered(plan, logs, metrics, prom_report, failures) if logs is not None and logs.partial else None
    measured = _measure_slos(plan, slo_specs, metrics is not None, say, slo_report) if slo_specs is not None \
        else None
    inputs = CheckInputs(plan.window, settings, topo, metrics, logs, tuple(panels), covered, measured, [index])
    present = {"topology": topo is not None, "metrics": metrics is not None, "logs": logs is not None}
    runs: list[CheckRun] = []
    findings: list[Finding] = []
    for check in checks:
        missing = [n for n in check.needs if not present[n]]
        if missing:
            runs.append(CheckRun(check.id, "skipped", f"needs {' and '.join(missing)}: "
                                 + "; ".join(_why_missing(n) for n in missing)))
            continue
        try:
            found = list(check.run(_view(inputs, check.queries)))
        except Skip as skip:
            runs.append(CheckRun(check.id, "skipped", str(skip)))
            continue
        except (ObsgapError, ArithmeticError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
            log.debug("check %s failed", check.id, exc_info=True)
            runs.append(CheckRun(check.id, "error", f"{type(exc).__name__}: {exc}"[:300]))
            continue
        findings.extend(found)
        runs.append(CheckRun(check.id, "ran", None, len(found)))

    coverage = _coverage(_view(inputs, COVERAGE_QUERIES)) if (metrics is not None or logs is not None) else ()
    findings.sort(key=lambda f: (-f.severity.rank, f.check, f.namespace or "", f.service or "", f.subject))
    contract = build_contract(_view(inputs, CONTRACT_QUERIES), tuple(findings)) if topo is not None else ()
    if measured is not None:
        prom_report["queries"] = int(prom_report.get("queries") or 0) + int(slo_report.get("sli_queries") or 0)
    sources = SourceReport(prom_report, kube_report, logs_report, slo_report)
    slo_rows = assessments(_view(inputs, SloUntrustworthy.queries)) if measured else ()
    reasons = partial_reasons(failures, sources, tuple(runs))
    result = ScanResult(
        generated_at=datetime.now(UTC).replace(microsecond=0), window=plan.window,
        sources=sources, checks=tuple(runs),
        coverage=coverage, findings=tuple(findings),
        timelines=_timelines(logs, metrics.frames.get(TREND_RANGE_QUERY) if metrics else None, index,
                             plan.window.seconds * 1000,
                             {(f.namespace, f.service) for f in findings if f.namespace and f.service}),
        contract=contract, slos=slo_rows,
        status="partial" if reasons else "complete", status_reasons=reasons,
    )
    return RunOutcome(result, failures)


def _slos(plan: RunPlan, failures: list[str], say: Progress) -> tuple[list[SloSpec] | None, dict[str, Any]]:
    """The SLOs to check: --slo files, and with a live cluster its Sloth/Pyrra/PrometheusRule objects."""
    if not plan.slo_paths and plan.kube_live is None:
        return None, {}
    say("reading SLOs")
    loaded = load_files(plan.slo_paths) if plan.slo_paths else Loaded()
    cluster = 0
    if plan.kube_live is not None:
        try:
            objects, gaps = load_live_slos(plan.kube_live)
        except SourceError as exc:
            failures.append(str(exc))
            objects, gaps = [], [str(exc)]
        live = load_documents(objects)
        cluster = len(live.slos)
        loaded.slos += live.slos
        loaded.gaps += gaps + live.gaps
    if plan.kube_live is not None and not plan.slo_paths and not loaded.slos:
        return None, {"files": 0, "from_cluster": 0, "slos": 0, "gaps": loaded.gaps}
    return loaded.slos, {"files": loaded.files, "from_cluster": cluster, "slos": len(loaded.slos),
                         "gaps": loaded.gaps, "ignored_documents": loaded.ignored}


def _measure_slos(plan: RunPlan, specs: list[SloSpec], metrics: bool, say: Progress,
                  report: dict[str, Any]) -> tuple[Measured, ...]:
    """Each SLO's SLI run against Prometheus over the window (the check and the table judge them)."""
    if not metrics or plan.prometheus is None:
        return tuple(Measured(s, error="no metrics were read") for s in specs)
    source = PrometheusSource(plan.prometheus)
    query = prometheus_query(source, plan.window.end)
    out = []
    for spec in specs:
        say(f"SLO {spec.name}")
        out.append(measure(spec, query, plan.window.seconds))
    report["sli_queries"] = source.queries_issued
    return tuple(out)


def _covered(plan: RunPlan, logs: LogEvidence, metrics: MetricsEvidence | None, prom_report: dict[str, Any],
             failures: list[str]) -> CoveredCounts:
    """Logs and mesh over the whole bins each partially logged pod's logs cover (coverage.covered_counts): one
    range query, whatever the number of pods."""
    start_ms = int(plan.window.start.timestamp() * 1000)
    end_ms = int(plan.window.end.timestamp() * 1000)
    step = time_step_ms(start_ms, end_ms)
    mesh = None
    if metrics is not None and plan.prometheus is not None:
        source = PrometheusSource(plan.prometheus)
        res = source.query_range(COVERED_RANGE_QUERY, plan.window.start, plan.window.end, step // 1000,
                                 plan.namespaces)
        prom_report["queries"] = int(prom_report.get("queries") or 0) + source.queries_issued
        prom_report.setdefault("range_query_files", []).append(COVERED_RANGE_QUERY)
        if res.error:
            failures.append(res.error)
        mesh = res.frame
    return covered_counts(logs.partial, logs.covered_bins, mesh, start_ms, end_ms, step)


def _view(inputs: CheckInputs, queries: tuple[str, ...]) -> CheckInputs:
    """The inputs as one reader may see them: only the metric queries it declared (memo shared)."""
    if inputs.metrics is None:
        return inputs
    return replace(inputs, metrics=inputs.metrics.for_reader(queries))


def partial_reasons(failures: list[str], sources: SourceReport, runs: tuple[CheckRun, ...]) -> tuple[str, ...]:
    """Why a run's numbers rest on less than the inputs it was given; empty when the run is complete."""
    reasons = list(dict.fromkeys(failures))
    prom = sources.prometheus
    if prom.get("status") == "partial":
        errors, warnings = prom.get("errors") or [], prom.get("warnings") or []
        reasons.append(f"Prometheus answered partially ({len(errors)} errors, {len(warnings)} warnings)"
                       + (f": {errors[0]}" if errors else f": {warnings[0]}" if warnings else ""))
    denied = [g for g in sources.kubernetes.get("gaps") or [] if "forbidden" in g or "failed" in g
              or "unreadable" in g]
    if denied:
        reasons.append(f"Kubernetes: {len(denied)} object kinds could not be read ({denied[0]})")
    logs = sources.logs
    pod_logs = logs.get("pod_logs") or {}
    if pod_logs.get("gaps_total") and not any(r.startswith("pod logs:") for r in reasons):
        first = pod_logs["gaps"][0]
        reasons.append(f"pod logs: {plural(pod_logs['gaps_total'], 'container')} of {pod_logs['containers']} could "
                       f"not be read ({first['container']}: {first['error']})")
    if logs.get("skipped_files"):
        reasons.append(f"{plural(len(logs['skipped_files']), 'log file')} could not be read, wholly or in part")
    unattributed = logs.get("unattributed") or {}
    if unattributed.get("requests") and not any("could be attributed" in r for r in reasons):
        reasons.append(f"{plural(unattributed['requests'], 'logged request')} in "
                       f"{plural(unattributed['files_total'], 'file')} could not be attributed to a pod")
    reasons.extend(f"check {r.check} failed: {r.reason}" for r in runs if r.status == "error")
    return tuple(reasons)


def _why_missing(source: str) -> str:
    return {
        "topology": "no --kube-snapshot or --kubeconfig given, or the API was unreachable",
        "metrics": "no --prometheus-url given, or Prometheus was unreachable",
        "logs": "no --logs given",
    }[source]


def _coverage(inputs: CheckInputs) -> tuple[CoverageRow, ...]:
    rec = reconcile(inputs)
    rows = []
    for st in rec.services.values():
        if st.observed == 0 and st.mesh_requests == 0 and st.tcp_connections == 0:
            continue
        cmp = st.comparison()
        rows.append(CoverageRow(st.service.namespace, st.service.name, cmp.observed, round(cmp.mesh),
                                round(st.tcp_connections), cmp.basis, cmp.comparable, cmp.note, st.coverage_text()))
    rows.sort(key=lambda r: (r.ratio if r.ratio is not None else 2.0, -r.log_requests, r.namespace, r.service))
    return tuple(rows)


def _timelines(logs: LogEvidence | None, mesh: pd.DataFrame | None, index: TopologyIndex, window_ms: int,
               wanted: set[tuple[str, str]]) -> dict[tuple[str, str], ServiceTimeline]:
    """Per service a finding names: logged inbound requests per bin (a pod counts for every service that selects
    it) and the mesh's count of the same bins, both drawn at the bin's start."""
    step = time_step_ms(0, window_ms)
    logged: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    if logs is not None and not logs.hourly.empty:
        for r in logs.hourly.itertuples(index=False):
            for s in index.services_of_pod(str(r.namespace), str(r.pod)):
                if s.key in wanted:
                    logged[s.key][int(r.hour_ms)] += int(r.requests)
    counted: dict[tuple[str, str], Counter[int]] | None = None
    if mesh is not None:
        counted = defaultdict(Counter)
        for row in mesh.fillna("").itertuples(index=False):
            key = (str(row.destination_service_namespace), str(row.destination_service_name))
            if key in wanted:
                # a range query's point at t counts the bin that ends at t
                counted[key][int(row.t * 1000) - step] += round(float(row.value))
    out = {}
    for key in sorted(wanted):
        if key not in logged and (counted is None or key not in counted):
            continue
        out[key] = ServiceTimeline(Series(step, tuple(sorted(logged[key].items()))),
                                   None if counted is None else Series(step, tuple(sorted(counted[key].items()))))
    return out
