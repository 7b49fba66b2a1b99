"""The report model: a run's result, its history and everything the outputs show, typed and frozen.

Renderers are pure functions of a Report: they compute nothing, read no file and import nothing from sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from obsgap.analysis.coverage import Headline
from obsgap.charts import Chart
from obsgap.history import PastFinding, RunSummary
from obsgap.model import CheckRun, ContractRow, Finding
from obsgap.result import ScanResult
from obsgap.sources.reports import SourceReports

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
    impact_unit: str = "requests"
    """What `impact` counts (the check's own word)."""
    root: str | None = None
    """The id of the finding whose cause explains this one (its own id for that root); None: not grouped."""


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
    not_rechecked: tuple[PastFinding, ...]
    """Baseline findings this run could not judge (their check did not run, or their evidence was missing)."""
    runs: tuple[RunSummary, ...]
    """Stored runs and this one, oldest first."""


@dataclass(frozen=True)
class NotRun:
    """Checks that did not run for one reason."""

    reason: str
    checks: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    result: ScanResult
    sources: SourceReports
    history: HistoryView
    findings: tuple[FindingView, ...]
    """In the result's order (severity, check, service)."""
    ranked: tuple[FindingView, ...]
    """What to fix first: root causes and findings no root explains, by severity, then by traffic affected (a
    root's: its symptoms' too). Symptoms are under their root (`symptoms`)."""
    checks: tuple[tuple[CheckInfo, CheckRun | None], ...]
    """Every check obsgap has, with its run (None: not selected)."""
    headline: Headline
    """The coverage headline: over the services measured on both sides, saying how many."""
    counts: Mapping[str, int]
    status_line: str | None
    notices: tuple[str, ...]
    contract: tuple[ContractRow, ...]
    """The name contract, each link joined to the findings about its object."""
    not_run: tuple[NotRun, ...]
    """The checks that did not run, grouped by reason."""
    symptoms: Mapping[str, tuple[FindingView, ...]] = field(default_factory=dict)
    """Root finding id -> the findings its cause explains (report.roots)."""

    @property
    def coverage_share(self) -> float | None:
        return self.headline.share

    @property
    def top(self) -> tuple[FindingView, ...]:
        """The first screen's findings."""
        return self.ranked[:TOP]

    @property
    def top_shown(self) -> int:
        """Findings the first screen shows: its roots and standalone findings, and the symptoms under them."""
        return sum(1 + len(self.symptoms.get(v.finding.id, ())) for v in self.top)

    @property
    def checks_ran(self) -> int:
        return sum(1 for _, run in self.checks if run is not None and run.status == "ran")

    @property
    def new(self) -> int:
        return sum(1 for f in self.findings if f.change == "new")
