"""Earlier runs: the baseline to mark findings new / resolved / still open, and trends over stored runs.

Reads findings.json files of earlier runs: the dated sibling folders of the output folder (the nightly
layout reports/<UTC date>/), or an explicit --baseline. Reading is the only I/O; what it returns is typed, and the
report model (report.build) combines it with the current run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obsgap.coverage import coverage_share

MAX_RUNS = 60
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}")
"""Only the nightly layout's dated folders are earlier runs; anything else needs --baseline."""


@dataclass(frozen=True)
class RunSummary:
    """One stored run, as the trend chart shows it."""

    date: str
    coverage: float | None
    critical: int
    warning: int
    saturated: int


@dataclass(frozen=True)
class PastFinding:
    id: str
    check: str
    title: str
    severity: str


@dataclass(frozen=True)
class History:
    baseline: str | None
    """Where the baseline came from, or None when there is no earlier run."""
    baseline_findings: tuple[PastFinding, ...] = ()
    runs: tuple[RunSummary, ...] = ()
    """Oldest first."""


def _load(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == "obsgap.findings/v1" else None


def is_saturation(check: str, evidence: Mapping[str, Any] | None) -> bool:
    """A histogram whose observations pile into +Inf: not the same check's bucket-waste or annotation findings."""
    return check == "histogram-inf-saturation" and isinstance(evidence, Mapping) \
        and evidence.get("inf_share") is not None


def summarize_run(date: str, coverage: Iterable[tuple[int, int, bool]],
                  findings: Iterable[tuple[str, str, Mapping[str, Any] | None]]) -> RunSummary:
    """coverage: (observed, mesh counted, comparable) per service; findings: (check, severity, evidence)."""
    listed = list(findings)
    return RunSummary(date, coverage_share(coverage),
                      sum(1 for _, sev, _ in listed if sev == "critical"),
                      sum(1 for _, sev, _ in listed if sev == "warning"),
                      sum(1 for check, _, ev in listed if is_saturation(check, ev)))


def _summary_of(doc: dict[str, Any], date: str) -> RunSummary:
    return summarize_run(
        date, ((int(c.get("log_requests") or 0), int(c.get("mesh_requests") or 0), bool(c.get("comparable", True)))
               for c in doc.get("coverage") or [] if isinstance(c, dict)),
        ((str(f.get("check")), str(f.get("severity")), f.get("evidence"))
         for f in doc.get("findings") or [] if isinstance(f, dict)))


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
    findings = tuple(PastFinding(str(f.get("id")), str(f.get("check")), str(f.get("title")), str(f.get("severity")))
                     for f in base_doc.get("findings") or [] if isinstance(f, dict))
    return History(base_name, findings, summaries)
