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
    namespace: str = ""
    """The namespace of the SLO object itself (Sloth CRD, Pyrra, OpenSLO, PrometheusRule), when it has one."""

    @property
    def key(self) -> str:
        return f"{self.tool}:{self.origin}:{self.name}"

    @property
    def queries(self) -> tuple[str, ...]:
        return tuple(q for q in (self.total, self.bad, self.good, self.ratio, self.quantile) if q)


@dataclass(frozen=True)
class Measured:
    spec: SloSpec
    error: str | None = None
    """Why the SLI could not be measured (a query failed or does not parse)."""
    selector_series: tuple[tuple[str, int | None], ...] = ()
    """Each selector of the SLI's queries, and how many series it matched in the window (0: none; None: the count
    failed)."""
    total: float | None = None
    """Events over the window by the SLI's own total query."""
    bad: float | None = None
    """Bad events over the window (bad query, or total minus good)."""
    ratio: float | None = None
    """The SLI's error ratio over the window (bad / total, or its raw ratio query)."""
    quantile_value: float | None = None
    bounds: tuple[float, ...] = ()
    """Finite bucket bounds of the histogram a latency or quantile SLI reads."""
    bucket_counts: tuple[float, ...] = ()
    """Cumulative observations per bound over the window, +Inf last."""
    bound_labels: tuple[str, ...] = ()
    """The `le` values as this Prometheus stores them (`500`, or Prometheus 3's `500.0`), one per bound."""
