"""An SLO as obsgap reads it, whichever tool it was written for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SloKind = Literal["ratio", "latency", "quantile"]


@dataclass(frozen=True)
class SloSpec:
    tool: str
    """sloth, sloth-crd, pyrra, openslo, prometheus-rule"""
    origin: str
    """The file (and document) or cluster object it came from."""
    name: str
    service: str
    """The service the SLO names (its own words: not necessarily a Kubernetes Service)."""
    objective: float | None
    """Target share of good events, 0..1 (99.9% -> 0.999); None when the source gives none."""
    window: str
    """The SLO's own window as written (28d, 30d); obsgap measures the report's window."""
    kind: SloKind
    total: str
    """Every event (PromQL)."""
    bad: str | None = None
    """Bad events (errors, slow requests) (PromQL); with `good` None."""
    good: str | None = None
    """Good events (PromQL), when the tool counts those instead."""
    ratio: str | None = None
    """A query that is itself the error ratio (Sloth `raw`, a recording rule)."""
    quantile: str | None = None
    """kind quantile: a histogram_quantile query held against `threshold` by `op`."""
    threshold: float | None = None
    op: str | None = None

    @property
    def key(self) -> str:
        return f"{self.tool}:{self.origin}:{self.name}"

    @property
    def queries(self) -> tuple[str, ...]:
        return tuple(q for q in (self.total, self.bad, self.good, self.ratio, self.quantile) if q)
