"""One run: read the sources the plan names (one adapter each, obsgap.sources), analyse the evidence once
(obsgap.analysis), run every check over both, and assemble the ScanResult. It reads no source report by key and
decides nothing a source, the analysis or a check decides."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, cast

from obsgap import suppress
from obsgap.analysis import ANALYSIS_QUERIES, ANALYSIS_RANGE_QUERIES, Analysis, analyze
from obsgap.checks import CHECK_IDS, REGISTRY
from obsgap.checks.base import Check, CheckInputs, Skip
from obsgap.checks.slo import SloUntrustworthy
from obsgap.config import RunPlan
from obsgap.errors import InputError, ObsgapError
from obsgap.evidence import Evidence, LogEvidence, MetricsEvidence
from obsgap.intervals import CoveredCounts, covered_counts, time_step_ms
from obsgap.model import CheckRun, Finding, Topology
from obsgap.result import ScanResult
from obsgap.slo.spec import Measured, SloSpec
from obsgap.sources.base import ReadContext, SourceRead
from obsgap.sources.kube.source import DashboardSource, TopologySource, check_namespaces
from obsgap.sources.logs.source import ClickHouseSource, LogFileSource, LogReading, PodLogSource
from obsgap.sources.logs.source import not_configured as logs_not_configured
from obsgap.sources.metrics import SCRAPE_INTERVAL_QUERY, SCRAPE_TARGETS_QUERY, MetricsSource
from obsgap.sources.metrics import not_configured as metrics_not_configured
from obsgap.sources.reports import KubernetesReport, LogsReport, PrometheusReport, SloReport, SourceReports
from obsgap.sources.slos import SloSource
from obsgap.text import plural
from obsgap.topology import TopologyIndex
from obsgap.witness import KNOWN_FAMILIES

log = logging.getLogger("obsgap")
Progress = Callable[[str], None]

COVERED_RANGE_QUERY = "mesh_requests_by_pod_over_time"
ENGINE_QUERIES = (SCRAPE_INTERVAL_QUERY, SCRAPE_TARGETS_QUERY)  # the interval is read from a few targets per job
NOT_GIVEN = {
    "topology": "no --kube-snapshot or --kubeconfig/--context/--in-cluster given",
    "metrics": "no --prometheus-url given",
    "logs": "no --logs, --pod-logs or --clickhouse-url given",
}
CHECK_ERRORS = (ObsgapError, ArithmeticError, KeyError, ValueError, TypeError, AttributeError, IndexError)


def declared_queries(checks: Iterable[type[Check]]) -> frozenset[str]:
    """Every instant query some reader of this run declared (the checks and the analysis)."""
    return frozenset(q for c in checks for q in c.queries) | set(ANALYSIS_QUERIES) | set(ENGINE_QUERIES)


@dataclass(frozen=True)
class Sources:
    """The adapters a plan names."""

    slos: SloSource
    topology: TopologySource
    dashboards: DashboardSource
    metrics: MetricsSource | None
    logs: LogFileSource | PodLogSource | ClickHouseSource | None


def selected_checks(plan: RunPlan) -> tuple[type[Check], ...]:
    return tuple(c for c in REGISTRY if not plan.only_checks or c.id in plan.only_checks)


def sources_of(plan: RunPlan, checks: tuple[type[Check], ...] | None = None) -> Sources:
    checks = checks if checks is not None else selected_checks(plan)
    reading = LogReading(plan.access_log_formats, dict(plan.log_fields), plan.log_pods)
    logs: LogFileSource | PodLogSource | ClickHouseSource | None = None
    if plan.clickhouse is not None:
        logs = ClickHouseSource(plan.clickhouse, reading)
    elif plan.pod_logs is not None and plan.kube_live is not None:
        logs = PodLogSource(plan.kube_live, plan.pod_logs, reading)
    elif plan.logs:
        logs = LogFileSource(plan.logs, reading)
    metrics = None
    if plan.prometheus is not None:
        metrics = MetricsSource(plan.prometheus, declared_queries(checks), ANALYSIS_RANGE_QUERIES,
                                any(c.needs_histograms for c in checks),
                                (*(KNOWN_FAMILIES if plan.known_witnesses else ()), *plan.witness_families))
    return Sources(SloSource(plan.slo_paths, plan.kube_live), TopologySource(plan.kube_snapshots, plan.kube_live),
                   DashboardSource(plan.dashboards), metrics, logs)


def preflight(plan: RunPlan) -> None:
    """What can be checked before any work: every named input exists. Raises InputError (exit 2)."""
    srcs = sources_of(plan)
    srcs.topology.preflight()
    srcs.dashboards.preflight()
    srcs.slos.preflight()
    if plan.baseline is not None and not plan.baseline.exists():
        raise InputError(f"--baseline {plan.baseline}: no such file or directory")
    if plan.baseline is not None and plan.baseline.is_dir() and not (plan.baseline / "findings.json").is_file():
        raise InputError(f"--baseline {plan.baseline}: the folder holds no findings.json")
    if srcs.logs is not None:
        srcs.logs.preflight()
    if srcs.metrics is not None:
        srcs.metrics.preflight()


@dataclass
class RunOutcome:
    result: ScanResult
    source_failures: list[str] = field(default_factory=list)
    """Why the run is partial in a way a nightly job must notice (exit 3): a source failed or gave nothing, or no
    check could run."""


def _check_scope(plan: RunPlan, topo: Topology | None, metrics: MetricsSource | None) -> None:
    """-n against the metrics' namespaces when no topology says which exist (with one, the topology source did)."""
    if not plan.namespaces or topo is not None or metrics is None:
        return
    known = metrics.label_values("destination_service_namespace", plan.window.start, plan.window.end)
    if known:
        check_namespaces(plan.namespaces, set(known), "the Istio metrics of the window")


def _covered(ctx: ReadContext, logs: LogEvidence | None, metrics: SourceRead[MetricsEvidence, PrometheusReport],
             source: MetricsSource | None, problems: list[str]) -> CoveredCounts | None:
    """Logs and mesh over the whole bins each partially logged pod's logs cover (intervals.covered_counts): one
    range query, whatever the number of pods."""
    if logs is None or not logs.partial:
        return None
    step = time_step_ms(ctx.start_ms, ctx.end_ms)
    mesh = None
    if metrics.evidence is not None and source is not None:
        res = source.query_range(COVERED_RANGE_QUERY, ctx)
        if res.error:
            problems.append(res.error)
        mesh = res.frame
    return covered_counts(logs.partial, logs.covered_bins, mesh, ctx.start_ms, ctx.end_ms, step)


def _measured(specs: tuple[SloSpec, ...] | None, metrics: SourceRead[MetricsEvidence, PrometheusReport],
              source: MetricsSource | None, ctx: ReadContext) -> tuple[Measured, ...] | None:
    """Each SLO's SLI run against Prometheus over the window (the analysis judges them)."""
    if specs is None:
        return None
    if metrics.evidence is None or source is None:
        return tuple(Measured(s, error="no metrics were read") for s in specs)
    return source.measure_slos(specs, ctx)


def _with_rule_slos(slos: SourceRead[tuple[SloSpec, ...], SloReport], metrics: MetricsEvidence | None,
                    judged: bool) -> tuple[tuple[SloSpec, ...] | None, SloReport]:
    """The SLOs given, and those whose recording rules Prometheus evaluates (Sloth's generated rules) that no file
    or cluster object, and no other rule file, gives (the same name and service): judged without an --slo flag,
    where the SLO check runs (`judged`: their SLIs are queried only then)."""
    if metrics is None or not judged or not (metrics.rule_slos or metrics.rule_slo_gaps):
        return slos.evidence, slos.report
    given = slos.evidence or ()
    known = {(s.name, s.service) for s in given}
    added = []
    for s in metrics.rule_slos:  # the same rules loaded by two Prometheus instances (or clusters) are one SLO
        if (s.name, s.service) not in known:
            known.add((s.name, s.service))
            added.append(s)
    report = replace(slos.report, slos=slos.report.slos + len(added), from_prometheus=len(added),
                     gaps=(*slos.report.gaps, *metrics.rule_slo_gaps))
    return (*given, *added), report


def _unmeasured(problems: dict[str, tuple[str, ...]], configured: dict[str, bool]) -> dict[str, str]:
    """Why each kind of evidence is missing, in words: not given, or what its source said."""
    out = {}
    for kind in ("topology", "metrics", "logs"):
        if not configured[kind]:
            out[kind] = NOT_GIVEN[kind]
        elif problems.get(kind):
            out[kind] = "; ".join(problems[kind])
    return out


def run_checks(checks: tuple[type[Check], ...], ev: Evidence,
               analysis: Analysis) -> tuple[tuple[CheckRun, ...], tuple[Finding, ...]]:
    """Every check over the evidence and the analysis: a check that lacks an input is skipped with the reason, one
    that raises is recorded as an error, and the others still run."""
    present = {"topology": ev.topology is not None, "metrics": ev.metrics is not None, "logs": ev.logs is not None}
    runs: list[CheckRun] = []
    findings: list[Finding] = []
    for check in checks:
        missing = [n for n in check.needs if not present[n]]
        if missing:
            runs.append(CheckRun(check.id, "skipped", "; ".join(f"needs {n} ({ev.unmeasured.get(n, 'not read')})"
                                                                for n in missing)))
            continue
        unread = ev.topology.unread if ev.topology is not None else {}
        refused = [f"needs {k}, which could not be read ({unread[k]})"
                   for k in check.kinds if k in unread]
        if refused:
            runs.append(CheckRun(check.id, "skipped", "; ".join(refused)))
            continue
        inputs = CheckInputs(ev, analysis, frozenset(check.queries))
        try:
            found = list(check.run(inputs))
            examined = check.examined(inputs)
        except Skip as skip:
            runs.append(CheckRun(check.id, "skipped", str(skip)))
            continue
        except CHECK_ERRORS as exc:
            log.debug("check %s failed", check.id, exc_info=True)
            runs.append(CheckRun(check.id, "error", f"{type(exc).__name__}: {exc}"[:300]))
            continue
        findings.extend(found)
        runs.append(CheckRun(check.id, "ran", None, len(found), examined))
    findings.sort(key=lambda f: (-f.severity.rank, f.check, f.namespace or "", f.service or "", f.subject))
    return tuple(runs), tuple(findings)


def not_run_line(runs: tuple[CheckRun, ...], unmeasured: dict[str, str]) -> str | None:
    """"no check could run: <what is missing>" when none did: a run that measured nothing is never complete."""
    if any(r.status == "ran" for r in runs) or not runs:
        return None
    missing = [unmeasured[k] if unmeasured[k] == NOT_GIVEN[k] else f"{k} unavailable (above)"
               for k in ("topology", "metrics", "logs") if k in unmeasured]
    return "no check could run: " + ("; ".join(missing) if missing else (runs[0].reason or runs[0].status))


def partial_reasons(problems: list[str], sources: SourceReports, runs: tuple[CheckRun, ...]) -> tuple[str, ...]:
    """Why a run's numbers rest on less than the inputs it was given; empty when the run is complete."""
    reasons = list(dict.fromkeys(problems))
    prom = sources.prometheus
    if prom.status == "partial":
        reasons.append(f"Prometheus answered partially ({len(prom.errors)} errors, {len(prom.warnings)} warnings)"
                       + (f": {prom.errors[0]}" if prom.errors else f": {prom.warnings[0]}" if prom.warnings else ""))
    denied = sources.kubernetes.denied
    if denied:
        reasons.append(f"Kubernetes: {len(denied)} object kinds could not be read ({denied[0]})")
    reasons += _logs_reasons(sources.logs, reasons)
    reasons.extend(f"check {r.check} failed: {r.reason}" for r in runs if r.status == "error")
    return tuple(dict.fromkeys(reasons))


def _logs_reasons(logs: LogsReport, already: list[str]) -> list[str]:
    out = []
    pods = logs.pod_logs
    if pods is not None and pods.gaps_total and not any(r.startswith("pod logs:") for r in already):
        first = pods.gaps[0]
        out.append(f"pod logs: {plural(pods.gaps_total, 'container')} of {pods.containers} could not be read "
                   f"({first.container}: {first.error})")
    if logs.skipped_files:
        out.append(f"{plural(len(logs.skipped_files), 'log file')} could not be read, wholly or in part")
    un = logs.unattributed
    if un.requests and not any("could be attributed" in r for r in already):
        out.append(f"{plural(un.requests, 'logged request')} in {plural(un.files_total, 'file')} could not be "
                   "attributed to a pod")
    return out


def _metrics_and_logs(srcs: Sources, ctx: ReadContext) -> tuple[SourceRead[MetricsEvidence, PrometheusReport],
                                                                 SourceRead[LogEvidence, LogsReport]]:
    """Prometheus answers while the logs are read: the queries start in a thread as soon as the log source has
    started its worker processes (ReadContext.forks_done), or once the logs are read if it never says so."""
    metrics_source, logs_source = srcs.metrics, srcs.logs
    if metrics_source is None or logs_source is None:
        return (metrics_source.read(ctx) if metrics_source is not None else metrics_not_configured(),
                logs_source.read(ctx) if logs_source is not None else logs_not_configured())
    abandoned = threading.Event()  # the logs failed or were interrupted: the thread says nothing more
    quiet = replace(ctx, say=lambda message: None if abandoned.is_set() else ctx.say(message))
    metrics = _InThread(lambda: metrics_source.read(quiet))
    try:
        logs = logs_source.read(replace(ctx, forks_done=metrics.start))
    except BaseException:
        abandoned.set()  # a daemon thread writing to stderr while the interpreter exits can abort it
        raise
    return metrics.result(), logs


T = TypeVar("T")


class _InThread(Generic[T]):
    """fn in a daemon thread, started once; result() starts it if need be, waits, and raises what fn raised. A
    daemon thread: an interrupt does not wait for a query still in flight."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._thread: threading.Thread | None = None
        self._outcome: tuple[bool, Any] = (False, None)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="obsgap-metrics", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = (True, self._fn())
        except BaseException as exc:  # handed to the main thread, which raises it
            self._outcome = (False, exc)

    def result(self) -> T:
        self.start()
        assert self._thread is not None
        self._thread.join()
        done, value = self._outcome
        if not done:
            raise value
        return cast(T, value)


def run(plan: RunPlan, progress: Progress | None = None) -> RunOutcome:
    say = progress or (lambda _msg: None)
    checks = selected_checks(plan)
    srcs = sources_of(plan, checks)
    ctx = ReadContext(plan.window, plan.namespaces, TopologyIndex(Topology.empty()), say)
    slos = srcs.slos.read(ctx)  # first: an --slo file that is not YAML is bad input before any other work
    dashboards = srcs.dashboards.read(ctx)  # and so is a --dashboards file that is not a dashboard
    say("reading topology")
    topo = srcs.topology.read(ctx)
    _check_scope(plan, topo.evidence, srcs.metrics)
    ctx = replace(ctx, index=TopologyIndex(topo.evidence or Topology.empty()))
    metrics, logs = _metrics_and_logs(srcs, ctx)
    problems = [*slos.problems, *topo.problems, *metrics.problems, *logs.problems, *dashboards.problems]
    covered = _covered(ctx, logs.evidence, metrics, srcs.metrics, problems)
    specs, slo_report = _with_rule_slos(slos, metrics.evidence, SloUntrustworthy in checks)
    evidence = Evidence(
        plan.window, replace(plan.settings, namespaces=plan.namespaces), topo.evidence, metrics.evidence,
        logs.evidence, dashboards.evidence or (), covered, _measured(specs, metrics, srcs.metrics, ctx),
        _unmeasured({"topology": topo.problems, "metrics": metrics.problems, "logs": logs.problems},
                    {"topology": srcs.topology.configured, "metrics": srcs.metrics is not None,
                     "logs": srcs.logs is not None}), [ctx.index])
    analysis = analyze(replace(evidence, metrics=evidence.metrics.for_reader(ANALYSIS_QUERIES)
                               if evidence.metrics is not None else None))
    runs, found = run_checks(checks, evidence, analysis)
    now = datetime.now(UTC).replace(microsecond=0)
    annotated, unknown = suppress.from_annotations(topo.evidence, CHECK_IDS)
    findings, suppressions = suppress.apply(found, (*plan.suppressions, *annotated), now.date(), runs,
                                            plan.namespaces, unknown)
    kube = topo.report if isinstance(topo.report, KubernetesReport) else KubernetesReport("none", "not-configured")
    reports = SourceReports(srcs.metrics.report() if srcs.metrics is not None else metrics.report,
                            replace(kube, dashboards=dashboards.report if plan.dashboards else None), logs.report,
                            slo_report if srcs.slos.configured or slo_report is not slos.report else None)
    nothing = not_run_line(runs, dict(evidence.unmeasured))
    if nothing:
        problems.append(nothing)
    reasons = partial_reasons(problems, reports, runs)
    result = ScanResult(
        generated_at=now, window=plan.window, sources=reports, checks=runs,
        coverage=analysis.coverage, findings=findings, timelines=analysis.timelines, contract=analysis.contract,
        slos=analysis.slos, status="partial" if reasons else "complete", status_reasons=reasons,
        namespaces=plan.namespaces, suppressions=suppressions)
    return RunOutcome(result, list(dict.fromkeys(problems)))
