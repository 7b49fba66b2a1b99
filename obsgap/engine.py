"""One run: read the sources named in the plan, run every check, assemble the ScanResult."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from obsgap.checks import REGISTRY
from obsgap.checks.base import Check, Skip
from obsgap.config import RunPlan, redact_url
from obsgap.contract import build_contract
from obsgap.errors import ObsgapError, SourceError
from obsgap.evidence import CheckInputs, LogEvidence, MetricsEvidence
from obsgap.model import CheckRun, CoverageRow, Finding, ScanResult, SourceReport, Topology
from obsgap.reconcile import reconcile
from obsgap.sources.dashboards import load_dashboards
from obsgap.sources.kube.build import build_topology
from obsgap.sources.kube.live import load_live
from obsgap.sources.kube.snapshot import load_snapshot
from obsgap.sources.logs.discover import discover
from obsgap.sources.logs.summary import summarize, time_step_ms
from obsgap.sources.logs.table import read_logs
from obsgap.sources.prometheus import PrometheusSource
from obsgap.topology import TopologyIndex

log = logging.getLogger("obsgap")
Progress = Callable[[str], None]


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
    names = sorted({q for c in checks for q in c.queries} | {"scrape_interval"})
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
    over_time = source.query_range("mesh_requests_over_time", plan.window.start, plan.window.end,
                                   time_step_ms(0, plan.window.seconds * 1000) // 1000, plan.namespaces)
    if over_time.error is None:
        frames["mesh_requests_over_time"] = over_time.frame
    targets = source.targets()
    interval = 30.0
    si = frames.get("scrape_interval")
    if si is not None and not si.empty and float(si["value"].max()) > 0:
        interval = plan.window.seconds / float(si["value"].max())
    if failed:
        failures.extend(failed.values())
    report |= {"status": source.status(), "queries": source.queries_issued, "warnings": list(source.warnings),
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


def _logs(plan: RunPlan, index: TopologyIndex, progress: Progress) -> tuple[LogEvidence | None, dict[str, Any]]:
    if not plan.logs:
        return None, {"files": 0, "lines": 0, "parsed": 0, "unparsed": 0, "formats": {}, "status": "not-configured"}
    found = discover(list(plan.logs))
    progress(f"reading {len(found.files)} log files")
    start_ms = int(plan.window.start.timestamp() * 1000)
    end_ms = int(plan.window.end.timestamp() * 1000)
    table = read_logs(found, start_ms, end_ms, plan.log_fields or None)
    try:
        evidence = summarize(table, index, start_ms, end_ms)
    finally:
        table.close()
    return evidence, dict(evidence.stats) | {"status": "ok"}


def run(plan: RunPlan, progress: Progress | None = None) -> RunOutcome:
    say = progress or (lambda _msg: None)
    failures: list[str] = []
    checks = tuple(c for c in REGISTRY if not plan.only_checks or c.id in plan.only_checks)
    say("reading topology")
    topo, kube_report = _topology(plan, failures)
    if topo is not None:
        topo = _scope_topology(topo, plan.namespaces)
    index = TopologyIndex(topo or Topology.empty())
    metrics, prom_report = _metrics(plan, checks, failures, say)
    logs, logs_report = _logs(plan, index, say)

    panels, dash_gaps = load_dashboards(list(plan.dashboards)) if plan.dashboards else ([], [])
    kube_report["dashboards"] = {"files": len(plan.dashboards), "queries": len(panels), "gaps": dash_gaps}
    inputs = CheckInputs(plan.window, plan.settings, topo, metrics, logs, tuple(panels), [index])
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
            found = list(check.run(inputs))
        except Skip as skip:
            runs.append(CheckRun(check.id, "skipped", str(skip)))
            continue
        except (ObsgapError, ArithmeticError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
            log.debug("check %s failed", check.id, exc_info=True)
            runs.append(CheckRun(check.id, "error", f"{type(exc).__name__}: {exc}"[:300]))
            continue
        findings.extend(found)
        runs.append(CheckRun(check.id, "ran", None, len(found)))

    coverage = _coverage(inputs) if (metrics is not None or logs is not None) else ()
    findings.sort(key=lambda f: (-f.severity.rank, f.check, f.namespace or "", f.service or "", f.subject))
    contract = build_contract(inputs, tuple(findings)) if topo is not None else []
    result = ScanResult(
        generated_at=datetime.now(UTC).replace(microsecond=0), window=plan.window,
        sources=SourceReport(prom_report, kube_report, logs_report), checks=tuple(runs),
        coverage=coverage, findings=tuple(findings),
        extras={"hourly_by_service": _hourly_by_service(logs, index),
                "mesh_over_time": metrics.frames.get("mesh_requests_over_time") if metrics else None,
                "name_contract": [row.as_dict() for row in contract]},
    )
    return RunOutcome(result, failures)


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
        mesh = st.mesh_for_pods if st.observed_by == "server logs" else st.mesh_requests
        rows.append(CoverageRow(st.service.namespace, st.service.name, st.observed, round(mesh),
                                round(st.tcp_connections), st.observed_by))
    rows.sort(key=lambda r: (r.ratio if r.ratio is not None else 2.0, -r.log_requests, r.namespace, r.service))
    return tuple(rows)


def _hourly_by_service(logs: LogEvidence | None, index: TopologyIndex) -> pd.DataFrame:
    """Logged inbound requests per service and hour (a pod counts for every service that selects it)."""
    if logs is None or logs.hourly.empty:
        return pd.DataFrame(columns=["namespace", "service", "hour_ms", "requests"])
    rows = []
    for r in logs.hourly.itertuples(index=False):
        for s in index.services_of_pod(str(r.namespace), str(r.pod)):
            rows.append((s.namespace, s.name, int(r.hour_ms), int(r.requests)))
    df = pd.DataFrame(rows, columns=["namespace", "service", "hour_ms", "requests"])
    return df.groupby(["namespace", "service", "hour_ms"], as_index=False)["requests"].sum()
