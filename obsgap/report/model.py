"""The report model: a run's result, its history and everything the outputs show, typed and frozen.

Renderers are pure functions of a Report: they compute nothing, read no file and import nothing from sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from obsgap.history import PastFinding, RunSummary
from obsgap.model import CheckRun, Finding, ScanResult
from obsgap.report.charts import Chart
from obsgap.report.sources import SourceViews

Change = Literal["new", "open"]
SEVERITIES = ("critical", "warning", "info")
TOP = 5


@dataclass(frozen=True)
class FindingView:
    finding: Finding
    change: Change | None
    """Against the baseline; None on a first run."""
    impact: int
    """Requests (or observations) the finding is about: how the first screen ranks findings of one severity."""
    charts: tuple[Chart, ...]


@dataclass(frozen=True)
class CheckInfo:
    id: str
    title: str
    doc_url: str | None


@dataclass(frozen=True)
class HistoryView:
    baseline: str | None
    """Where the baseline came from; None on a first run."""
    resolved: tuple[PastFinding, ...]
    runs: tuple[RunSummary, ...]
    """Stored runs and this one, oldest first."""


@dataclass(frozen=True)
class Report:
    result: ScanResult
    sources: SourceViews
    history: HistoryView
    findings: tuple[FindingView, ...]
    """In the result's order (severity, check, service)."""
    ranked: tuple[FindingView, ...]
    """What to fix first: by severity, then by traffic affected."""
    checks: tuple[tuple[CheckInfo, CheckRun | None], ...]
    """Every check obsgap has, with its run (None: not selected)."""
    coverage_share: float | None
    counts: Mapping[str, int]
    status_line: str | None
    notices: tuple[str, ...]

    @property
    def top(self) -> tuple[FindingView, ...]:
        """The first screen's findings."""
        return self.ranked[:TOP]

    @property
    def checks_ran(self) -> int:
        return sum(1 for _, run in self.checks if run is not None and run.status == "ran")

    @property
    def new(self) -> int:
        return sum(1 for f in self.findings if f.change == "new")
