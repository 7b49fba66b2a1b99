"""ScanResult + History -> Report: every number the outputs show, computed once, before any rendering."""

from __future__ import annotations

from obsgap.checks import REGISTRY
from obsgap.coverage import coverage_share
from obsgap.history import History, PastFinding, summarize_run
from obsgap.model import ScanResult
from obsgap.report.charts import finding_charts
from obsgap.report.evidence import requests_affected
from obsgap.report.model import SEVERITIES, Change, CheckInfo, FindingView, HistoryView, Report
from obsgap.report.notices import input_notices, status_line
from obsgap.report.sources import SourceViews


def _changes(history: History, ids: set[str]) -> tuple[dict[str, Change], tuple[PastFinding, ...]]:
    if history.baseline is None:
        return {}, ()  # first run: nothing to compare with
    before = {f.id for f in history.baseline_findings}
    status: dict[str, Change] = {i: ("open" if i in before else "new") for i in ids}
    return status, tuple(f for f in history.baseline_findings if f.id not in ids)


def build_report(result: ScanResult, history: History | None = None) -> Report:
    history = history or History(None)
    changes, resolved = _changes(history, {f.id for f in result.findings})
    views = tuple(FindingView(f, changes.get(f.id), requests_affected(f.evidence),
                              finding_charts(f, result.timelines.get((f.namespace or "", f.service or ""))))
                  for f in result.findings)
    ranked = tuple(sorted(views, key=lambda v: (-v.finding.severity.rank, -v.impact)))
    runs = {r.check: r for r in result.checks}
    rows = [(c.log_requests, c.mesh_requests, c.comparable) for c in result.coverage]
    current = summarize_run(result.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"), rows,
                            ((f.check, f.severity.value, f.evidence) for f in result.findings))
    sources = SourceViews.of(result.sources)
    line = status_line(result)
    return Report(
        result=result, sources=sources,
        history=HistoryView(history.baseline, resolved, (*history.runs, current)),
        findings=views, ranked=ranked, checks=tuple((CheckInfo(c.id, c.title, c.doc_url), runs.get(c.id))
                                                    for c in REGISTRY), coverage_share=coverage_share(rows),
        counts={s: sum(1 for f in result.findings if f.severity.value == s) for s in SEVERITIES},
        status_line=line, notices=tuple(input_notices(sources.logs)))
