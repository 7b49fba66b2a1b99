"""One run's result: what the engine hands to the report (and the report to every output)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from obsgap.model import CheckRun, ContractRow, CoverageRow, Finding, ServiceTimeline, Window
from obsgap.slo.assess import SloAssessment
from obsgap.sources.reports import SourceReports
from obsgap.suppress import Suppressions


@dataclass(frozen=True)
class ScanResult:
    generated_at: datetime
    window: Window
    sources: SourceReports
    checks: tuple[CheckRun, ...]
    coverage: tuple[CoverageRow, ...]
    findings: tuple[Finding, ...]
    timelines: Mapping[tuple[str, str], ServiceTimeline] = field(default_factory=dict)
    """(namespace, service) -> requests over time, logged and counted by the mesh."""
    contract: tuple[ContractRow, ...] = ()
    slos: tuple[SloAssessment, ...] = ()
    """Each SLO's assessment: the "Can these SLOs be trusted?" table."""
    status: Literal["complete", "partial"] = "complete"
    status_reasons: tuple[str, ...] = ()
    """Why the run is partial: a source failed, gave nothing or answered in part, inputs were unreadable, no check
    could run, a check failed."""
    namespaces: tuple[str, ...] = ()
    """The -n scope ("": every namespace); findings of earlier runs outside it are not re-checked."""
    suppressions: Suppressions = field(default_factory=Suppressions)
    """Findings accepted by a suppression (not in `findings`), and the suppressions expired or stale."""

    def checks_not_run(self) -> tuple[CheckRun, ...]:
        return tuple(r for r in self.checks if r.status != "ran")
