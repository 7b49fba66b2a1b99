"""Earlier runs: the baseline to mark findings new / resolved / still open, and trends over stored runs.

Reads findings.json files of earlier runs: the dated sibling folders of the output folder (the nightly
layout reports/<UTC date>/), or an explicit --baseline.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_RUNS = 60
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}")
"""Only the nightly layout's dated folders are earlier runs; anything else needs --baseline."""


@dataclass(frozen=True)
class History:
    baseline: str | None
    """Where the baseline came from, or None when there is no earlier run."""
    baseline_ids: frozenset[str] = frozenset()
    resolved: tuple[dict[str, Any], ...] = ()
    runs: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """Oldest first: date, coverage share, findings by severity, saturated histogram count."""


def _load(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == "obsgap.findings/v1" else None


def run_summary(doc: dict[str, Any], date: str) -> dict[str, Any]:
    cov = [c for c in doc.get("coverage") or [] if c.get("comparable", True)]
    logged = sum(int(c.get("log_requests") or 0) for c in cov)
    counted = sum(min(int(c.get("mesh_requests") or 0), int(c.get("log_requests") or 0)) for c in cov)
    findings = doc.get("findings") or []
    return {"date": date, "coverage": counted / logged if logged else None,
            "critical": sum(1 for f in findings if f.get("severity") == "critical"),
            "warning": sum(1 for f in findings if f.get("severity") == "warning"),
            "saturated": sum(1 for f in findings if is_saturation(f))}


def is_saturation(finding: dict[str, Any]) -> bool:
    """A histogram whose observations pile into +Inf: not the same check's bucket-waste or annotation findings."""
    evidence = finding.get("evidence")
    return finding.get("check") == "histogram-inf-saturation" and isinstance(evidence, dict) \
        and evidence.get("inf_share") is not None


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
    base_doc, base_name = None, None
    if baseline is not None:
        base_doc = _load(baseline if baseline.is_file() else baseline / "findings.json")
        base_name = str(baseline)
    elif runs:
        base_doc, base_name = runs[-1][1], runs[-1][0]
    if base_doc is None:
        return History(None, runs=tuple(run_summary(doc, date) for date, doc in runs))
    findings = base_doc.get("findings") or []
    return History(base_name, frozenset(str(f.get("id")) for f in findings),
                   tuple({"id": f.get("id"), "check": f.get("check"), "title": f.get("title"),
                          "severity": f.get("severity")} for f in findings),
                   tuple(run_summary(doc, date) for date, doc in runs))


def changes(history: History, current_ids: set[str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(finding id -> new|open, resolved findings) against the baseline; all `new` without one."""
    if history.baseline is None:
        return {}, []  # first run: nothing to compare with
    status = {i: ("open" if i in history.baseline_ids else "new") for i in current_ids}
    resolved = [f for f in history.resolved if str(f["id"]) not in current_ids]
    return status, resolved
