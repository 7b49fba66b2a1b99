"""ScanResult + History -> Report: every number the outputs show, computed once, before any rendering."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from obsgap.analysis.coverage import headline
from obsgap.checks import REGISTRY, by_id
from obsgap.history import History, compare, summarize_run
from obsgap.model import ContractRow, Finding, ObjectRef
from obsgap.report.model import SEVERITIES, CheckInfo, FindingView, HistoryView, NotRun, Report
from obsgap.report.notices import input_notices, status_line
from obsgap.report.roots import root_groups
from obsgap.result import ScanResult


def _view(f: Finding, change: str | None, result: ScanResult) -> FindingView:
    check = by_id(f.check)
    timeline = result.timelines.get((f.namespace or "", f.service or ""))
    charts = check.charts(f, timeline) if check is not None else ()
    return FindingView(f, "new" if change == "new" else "open" if change == "open" else None,
                       f.evidence.impact, charts, check.impact_unit if check is not None else "requests")


def link_contract(rows: tuple[ContractRow, ...], findings: tuple[Finding, ...]) -> tuple[ContractRow, ...]:
    """Each link of the name contract joined to the findings about its object (their refs): such a link is broken."""
    about: dict[ObjectRef, list[str]] = defaultdict(list)
    for f in findings:
        for ref in f.refs:
            about[ref].append(f.id)
    out = []
    for row in rows:
        links = tuple(replace(link, finding_ids=tuple(dict.fromkeys((*link.finding_ids, *about[link.ref]))),
                              broken=link.broken or bool(about.get(link.ref))) for link in row.links)
        out.append(replace(row, links=links))
    out.sort(key=lambda r: (-r.broken, r.namespace, r.service))
    return tuple(out)


def not_run(result: ScanResult) -> tuple[NotRun, ...]:
    """The checks that did not run, one group per reason."""
    groups: dict[str, list[str]] = defaultdict(list)
    for r in result.checks:
        if r.status != "ran":
            groups[f"{r.status}: {r.reason}" if r.status == "error" else r.reason or r.status].append(r.check)
    return tuple(NotRun(reason, tuple(checks)) for reason, checks in groups.items())


def build_report(result: ScanResult, history: History | None = None) -> Report:
    history = history or History(None)
    comparison = compare(history, (f.id for f in result.findings), result.checks, result.namespaces,
                         suppressed=(s.finding.id for s in result.suppressions.suppressed))
    groups = root_groups(result.findings, lambda f: f.evidence.impact)
    root_of = {s: root for root, ids in groups.items() for s in (root, *ids)}
    views = tuple(replace(_view(f, comparison.changes.get(f.id), result), root=root_of.get(f.id))
                  for f in result.findings)
    by_id_ = {v.finding.id: v for v in views}
    symptoms = {root: tuple(by_id_[i] for i in ids) for root, ids in groups.items()}

    def rank(v: FindingView) -> tuple[int, int]:
        group = (v, *symptoms.get(v.finding.id, ()))
        return (-max(g.finding.severity.rank for g in group), -sum(g.impact for g in group))

    ranked = tuple(sorted((v for v in views if v.root in (None, v.finding.id)), key=rank))
    runs = {r.check: r for r in result.checks}
    current = summarize_run(result.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            ((c.observed, c.mesh, c.comparable) for c in result.coverage),
                            (r.check for r in result.checks if r.status == "ran"),
                            ((f.check, f.severity.value, f.evidence) for f in result.findings))
    return Report(
        result=result, sources=result.sources,
        history=HistoryView(history.baseline, comparison.resolved, comparison.not_rechecked, (*history.runs, current)),
        findings=views, ranked=ranked,
        checks=tuple((CheckInfo(c.id, c.title, c.doc_url), runs.get(c.id)) for c in REGISTRY),
        headline=headline(result.coverage),
        counts={s: sum(1 for f in result.findings if f.severity.value == s) for s in SEVERITIES},
        status_line=status_line(result),
        notices=tuple(input_notices(result.sources.logs) + result.suppressions.notices()),
        contract=link_contract(result.contract, result.findings), not_run=not_run(result), symptoms=symptoms)
