"""Earlier runs: the baseline to mark findings new / resolved / not re-checked, and trends over stored runs.

Reads findings.json files of earlier runs: the dated sibling folders of the output folder (the nightly layout
reports/<UTC date>/), or an explicit --baseline. Reading is the only I/O; what it returns is typed, and `compare`
joins it with the current run, purely.

A finding of the baseline that is absent now is `resolved` only when its check ran this time and examined its
subject with the evidence it needs (CheckRun.examined, the check's own `keys_of`); otherwise it is carried as not
re-checked, into this run's findings.json, until a run can say. Trends skip what a run did not measure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from obsgap.analysis.coverage import coverage_share
from obsgap.checks import CHECK_IDS, REGISTRY, by_id
from obsgap.model import CheckRun

MAX_RUNS = 60
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}")
"""Only the nightly layout's dated folders are earlier runs; anything else needs --baseline."""


@dataclass(frozen=True)
class RunSummary:
    """One stored run, as the trend chart shows it: None where the run did not measure it."""

    date: str
    coverage: float | None
    critical: int
    warning: int
    trends: Mapping[str, int | None] = field(default_factory=dict)
    """Each check's trend line (Check.trend): its count, or None when the check did not run."""

    @property
    def saturated(self) -> int | None:
        return self.trends.get("saturated histograms")


@dataclass(frozen=True)
class PastFinding:
    id: str
    check: str
    title: str
    severity: str
    namespace: str | None = None
    service: str | None = None
    keys: tuple[str, ...] = ()
    """The subject keys its check examines it under (Check.keys_of)."""
    reason: str | None = None
    """Why it is not re-checked (set by `compare`)."""
    subject: Mapping[str, Any] = field(default_factory=dict)
    """What its check's keys_of reads (workload, metric, job, cause, evidence): carried with it, so that a later
    version's keys are computed from it."""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "check": self.check, "title": self.title, "severity": self.severity,
                "namespace": self.namespace, "service": self.service, "keys": list(self.keys),
                **({"reason": self.reason} if self.reason else {}), **self.subject}


@dataclass(frozen=True)
class History:
    baseline: str | None
    """Where the baseline came from, or None when there is no earlier run."""
    baseline_findings: tuple[PastFinding, ...] = ()
    """Its findings, and the findings it carried as not re-checked."""
    runs: tuple[RunSummary, ...] = ()
    """Oldest first."""
    baseline_suppressed: frozenset[str] = frozenset()
    """The ids its suppressions hid: such a finding, back when its suppression ends, is open, not new."""


def _load(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == "obsgap.findings/v1" else None


def trends_of(ran: Iterable[str], findings: Iterable[tuple[str, Mapping[str, Any] | None]]) -> dict[str, int | None]:
    """Each check's trend count over findings (check, evidence as findings.json holds it); None when it did not
    run."""
    listed = list(findings)
    ran = set(ran)
    out: dict[str, int | None] = {}
    for check in REGISTRY:
        if check.trend is not None:
            out[check.trend.name] = sum(1 for c, ev in listed if c == check.id and isinstance(ev, Mapping)
                                        and check.in_trend(ev)) if check.id in ran else None
    return out


def summarize_run(date: str, coverage: Iterable[tuple[int | None, int | None, bool]], ran: Iterable[str],
                  findings: Iterable[tuple[str, str, Mapping[str, Any] | None]]) -> RunSummary:
    """coverage: (observed, mesh counted, comparable) per service; findings: (check, severity, evidence)."""
    listed = list(findings)
    return RunSummary(date, coverage_share(coverage)[0],
                      sum(1 for _, sev, _ in listed if sev == "critical"),
                      sum(1 for _, sev, _ in listed if sev == "warning"),
                      trends_of(ran, ((c, ev) for c, _, ev in listed)))


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _summary_of(doc: dict[str, Any], date: str) -> RunSummary:
    rows = [c for c in doc.get("coverage") or [] if isinstance(c, dict)]
    checks = [c for c in doc.get("checks") or [] if isinstance(c, dict)]
    ran = {str(c.get("check")) for c in checks if c.get("status") == "ran"} if checks else set(CHECK_IDS)
    return summarize_run(
        date, ((_int_or_none(c.get("log_requests")), _int_or_none(c.get("mesh_requests")),
                bool(c.get("comparable", True)) and c.get("ratio") is not None) for c in rows), ran,
        ((str(f.get("check")), str(f.get("severity")), f.get("evidence"))
         for f in doc.get("findings") or [] if isinstance(f, dict)))


def _past(f: Mapping[str, Any]) -> PastFinding:
    check = by_id(str(f.get("check")))
    keys = f.get("keys")
    subject: tuple[str, ...] = ()
    if check is not None and isinstance(f.get("evidence"), Mapping):
        subject = check.keys_of(f)  # today's keys: those an earlier version wrote may name nothing examined now
    elif isinstance(keys, list):
        subject = tuple(str(k) for k in keys)
    elif check is not None:
        subject = check.keys_of(f)
    return PastFinding(str(f.get("id")), str(f.get("check")), str(f.get("title")), str(f.get("severity")),
                       str(f["namespace"]) if f.get("namespace") else None,
                       str(f["service"]) if f.get("service") else None, subject,
                       subject={k: f[k] for k in _SUBJECT_FIELDS if k in f})


_SUBJECT_FIELDS = ("workload", "metric", "job", "cause", "evidence")


def past_findings(doc: Mapping[str, Any]) -> tuple[PastFinding, ...]:
    """A stored run's findings and the ones it carried as not re-checked."""
    listed = [*(doc.get("findings") or []), *(doc.get("not_rechecked") or [])]
    return tuple(_past(f) for f in listed if isinstance(f, Mapping))


def load_history(out_dir: Path, baseline: Path | None) -> History:
    runs: list[tuple[str, dict[str, Any]]] = []
    parent = out_dir.resolve().parent
    if parent.is_dir():
        dated = sorted(d for d in parent.iterdir() if d.is_dir() and _DATED.match(d.name))
        for d in dated[-MAX_RUNS:]:
            if d.resolve() != out_dir.resolve():
                doc = _load(d / "findings.json")
                if doc is not None:
                    runs.append((str(doc.get("generated_at") or d.name), doc))
    runs.sort(key=lambda r: r[0])
    summaries = tuple(_summary_of(doc, date) for date, doc in runs)
    base_doc, base_name = None, None
    if baseline is not None:
        base_doc = _load(baseline if baseline.is_file() else baseline / "findings.json")
        base_name = str(baseline)
    elif runs:
        base_doc, base_name = runs[-1][1], runs[-1][0]
    if base_doc is None:
        return History(None, runs=summaries)
    hidden = frozenset(str(f.get("id")) for f in base_doc.get("suppressed") or [] if isinstance(f, Mapping))
    return History(base_name, past_findings(base_doc), summaries, hidden)


@dataclass(frozen=True)
class Comparison:
    """The current run against its baseline."""

    changes: Mapping[str, str]
    """Finding id -> new or open (empty on a first run)."""
    resolved: tuple[PastFinding, ...]
    not_rechecked: tuple[PastFinding, ...]
    """Baseline findings this run could not judge, each with why."""


def _why_not_rechecked(past: PastFinding, runs: Mapping[str, CheckRun], namespaces: tuple[str, ...]) -> str | None:
    """None when this run judged the finding's subject with the evidence it needs (so its absence resolves it)."""
    run = runs.get(past.check)
    if run is None:
        return f"{past.check} was not selected in this run"
    if run.status != "ran":
        return f"{past.check} did not run: {run.reason or run.status}"
    if namespaces and past.namespace and past.namespace not in namespaces:
        return f"namespace {past.namespace} is outside this run's -n scope"
    if run.examined is not None and not any(k in run.examined for k in past.keys):
        return "its evidence was not measured in this run"
    return None


def compare(history: History, current: Iterable[str], runs: Iterable[CheckRun],
            namespaces: tuple[str, ...] = (), suppressed: Iterable[str] = ()) -> Comparison:
    """`suppressed`: findings found but accepted this run: neither resolved nor carried."""
    ids = set(current)
    hidden = set(suppressed)
    if history.baseline is None:
        return Comparison({}, (), ())
    before = {f.id for f in history.baseline_findings} | history.baseline_suppressed
    by_check = {r.check: r for r in runs}
    resolved, carried = [], []
    for past in history.baseline_findings:
        if past.id in ids or past.id in hidden:
            continue
        why = _why_not_rechecked(past, by_check, namespaces)
        if why is None:
            resolved.append(past)
        else:
            carried.append(replace(past, reason=why))
    changes = {i: ("open" if i in before else "new") for i in ids}
    return Comparison(changes, tuple(resolved), tuple(dict((f.id, f) for f in carried).values()))
