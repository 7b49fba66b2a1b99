"""The shape every check has: metadata as class attributes, the docstring as user documentation, a pure `run` over
the evidence and the analysis, and the check's own answers to what the report asks of its findings (charts, trend,
what it examined)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from obsgap.analysis import Analysis
from obsgap.charts import Chart
from obsgap.evidence import CheckSettings, Evidence, LogEvidence, MetricsEvidence
from obsgap.intervals import CoveredCounts
from obsgap.model import Finding, PanelQuery, ServiceTimeline, Severity, Topology, Window
from obsgap.slo.spec import Measured
from obsgap.topology import TopologyIndex

Source = str  # "topology" | "metrics" | "logs"


class Skip(Exception):
    """Raised by a check that lacks an input; the message is the reason shown to users."""


@dataclass(frozen=True)
class CheckInputs:
    """What one check reads: the run's evidence (its metrics restricted to the queries it declared) and the
    analysis computed once before every check."""

    evidence: Evidence
    analysis: Analysis
    declared: frozenset[str] | None = None
    """The metric queries this reader declared; None: no restriction (the analysis, tests)."""
    _metrics: list[MetricsEvidence | None] = field(default_factory=list, repr=False, compare=False)

    @property
    def metrics(self) -> MetricsEvidence | None:
        if not self._metrics:
            m = self.evidence.metrics
            self._metrics.append(m.for_reader(self.declared) if m is not None and self.declared is not None else m)
        return self._metrics[0]

    @property
    def window(self) -> Window:
        return self.evidence.window

    @property
    def settings(self) -> CheckSettings:
        return self.evidence.settings

    @property
    def topology(self) -> Topology | None:
        return self.evidence.topology

    @property
    def logs(self) -> LogEvidence | None:
        return self.evidence.logs

    @property
    def dashboards(self) -> tuple[PanelQuery, ...]:
        """The queries people read: the dashboards' given (--dashboards) and the rules Prometheus evaluates."""
        rules = self.evidence.metrics.rules if self.evidence.metrics is not None else None
        return (*self.evidence.dashboards, *(rules or ()))

    @property
    def covered(self) -> CoveredCounts | None:
        return self.evidence.covered

    @property
    def slos(self) -> tuple[Measured, ...] | None:
        return self.evidence.slos

    @property
    def index(self) -> TopologyIndex:
        return self.evidence.index

    def tolerance(self, seconds: float | None = None) -> float:
        return self.evidence.tolerance(seconds)

    def in_scope_namespaces(self) -> frozenset[str]:
        """The namespaces the topology holds in scope: what a config check examines."""
        return frozenset(self.index.topo.namespaces)


@dataclass(frozen=True)
class Trend:
    """A count a check contributes to the trend over stored runs (e.g. saturated histograms)."""

    name: str
    """What the line counts, in words."""


class Check:
    """Base class. Subclasses set the attributes and implement `run`.

    The docstring of a subclass is its documentation, in the shape
    "What it does / Why is this bad? / Example / Use instead".
    """

    id: ClassVar[str]
    title: ClassVar[str]
    needs: ClassVar[tuple[Source, ...]]
    """Sources without which the check cannot say anything (it is skipped)."""
    queries: ClassVar[tuple[str, ...]] = ()
    """queries/*.promql files it reads."""
    kinds: ClassVar[tuple[str, ...]] = ()
    """Topology kinds its verdicts rest on (`Service`, or `group/Kind` for a custom resource): where the API server
    refused to list one (Topology.unread), the check does not run. A host only a ServiceEntry declares is not
    'unknown' because ServiceEntries could not be read."""
    needs_histograms: ClassVar[bool] = False
    """Whether the engine must discover histogram families and fetch their buckets."""
    istio_code: ClassVar[str | None] = None
    doc_url: ClassVar[str | None] = None
    causes: ClassVar[tuple[str, ...]] = ()
    """Every `cause` value its findings may carry (docs/findings.md lists them; a meta-test holds them equal)."""
    impact_unit: ClassVar[str] = "requests"
    """What `evidence.impact` counts, in words."""
    trend: ClassVar[Trend | None] = None

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        raise NotImplementedError

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str] | None:
        """The subjects this run judged with the evidence they need (CheckRun.examined); the default: every
        namespace of the topology in scope. A finding of an earlier run outside them is not re-checked."""
        return inputs.in_scope_namespaces()

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        """The subject keys of one of its findings as findings.json holds it (to match CheckRun.examined)."""
        def get(name: str) -> str | None:
            value = finding.get(name)
            return str(value) if value else None

        return subject_keys(get("namespace"), get("service"), get("workload"), get("metric"), get("job"))

    @classmethod
    def charts(cls, finding: Finding, timeline: ServiceTimeline | None) -> tuple[Chart, ...]:
        """What the report draws for one of its findings (none by default)."""
        return ()

    @classmethod
    def in_trend(cls, evidence: Mapping[str, Any]) -> bool:
        """Whether a finding (its evidence as findings.json holds it) counts in the check's trend line."""
        return False


def subject_keys(namespace: str | None, service: str | None = None, workload: str | None = None,
                 metric: str | None = None, job: str | None = None) -> tuple[str, ...]:
    """The keys a finding's subject may be examined under (CheckRun.examined), most specific first."""
    keys = [f"{namespace}/{name}" for name in (service, workload) if namespace and name]
    keys += [f"metric:{metric}"] if metric else []
    keys += [f"job:{job}"] if job else []
    keys += [namespace] if namespace else []
    return tuple(dict.fromkeys(keys))


HEADINGS = ("What it does:", "Why is this bad?", "Example:", "Use instead:")


def doc_sections(check: type[Check]) -> list[tuple[str, str]]:
    """The check's docstring as (heading, one-paragraph text) in the ruff-docs shape."""
    text = " ".join(inspect.cleandoc(check.__doc__ or "").split())
    pattern = "(" + "|".join(re.escape(h) for h in HEADINGS) + ")"
    parts = re.split(pattern, text)
    out = []
    for i in range(1, len(parts) - 1, 2):
        out.append((parts[i].rstrip(":?") + ("?" if parts[i].endswith("?") else ""), parts[i + 1].strip()))
    return out


def severity_for_missed(missed_share: float) -> Severity:
    """How bad a gap is, from the share of real traffic the metrics do not count."""
    if missed_share >= 0.5:
        return Severity.CRITICAL
    if missed_share >= 0.1:
        return Severity.WARNING
    return Severity.INFO


