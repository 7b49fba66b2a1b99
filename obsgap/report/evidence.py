"""Typed evidence of the findings the report draws, read from each finding's evidence mapping.

findings.json keeps `evidence` as the check wrote it (its contract); the report reads the shapes it draws through
these types, so a check that changes a key breaks here, in one typed place, not in a template.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def _numbers(v: Any) -> tuple[float, ...] | None:
    if not isinstance(v, Sequence) or isinstance(v, str):
        return None
    out = []
    for x in v:
        if not isinstance(x, int | float) or isinstance(x, bool) or not math.isfinite(x):
            return None
        out.append(float(x))
    return tuple(out)


def _count(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


@dataclass(frozen=True)
class HistogramEvidence:
    """histogram-inf-saturation: the bucket layout, its cumulative counts (+Inf last), and the suggested layout."""

    unit: str
    buckets: tuple[float, ...]
    cumulative: tuple[float, ...]
    suggested_buckets: tuple[float, ...]
    suggested_cumulative: tuple[float, ...] | None

    @staticmethod
    def of(evidence: Mapping[str, Any]) -> HistogramEvidence | None:
        buckets, cumulative = _numbers(evidence.get("buckets")), _numbers(evidence.get("cumulative"))
        if not buckets or cumulative is None or len(cumulative) != len(buckets) + 1:
            return None
        suggested = _numbers(evidence.get("suggested_buckets")) or ()
        suggested_cumulative = _numbers(evidence.get("suggested_cumulative"))
        if suggested_cumulative is not None and len(suggested_cumulative) != len(suggested) + 1:
            suggested_cumulative = None
        return HistogramEvidence(str(evidence.get("unit") or ""), buckets, cumulative, suggested,
                                 suggested_cumulative if suggested else None)


@dataclass(frozen=True)
class TrafficEvidence:
    """Requests a service's logs or callers observed against what the mesh metrics counted."""

    log_requests: int
    mesh_requests: int
    tcp_connections: int

    @staticmethod
    def of(evidence: Mapping[str, Any]) -> TrafficEvidence | None:
        logged, mesh = _count(evidence.get("log_requests")), _count(evidence.get("mesh_requests"))
        if logged is None or mesh is None:
            return None
        return TrafficEvidence(logged, mesh, _count(evidence.get("tcp_connections")) or 0)


def requests_affected(evidence: Mapping[str, Any]) -> int:
    """How much traffic a finding is about: requests the mesh missed, or the requests/observations it names."""
    traffic = TrafficEvidence.of(evidence)
    missed = traffic.log_requests - traffic.mesh_requests if traffic else 0
    return max(0, missed, _count(evidence.get("requests")) or 0, _count(evidence.get("observations")) or 0)
