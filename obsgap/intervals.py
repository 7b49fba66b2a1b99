"""The covered-interval rule: which part of the window each pod's logs cover, and the counts over that part.

Logs can be partial: kubelet serves and keeps only a container's recent files, a pod starts or ends within the
window, a byte limit cuts a log, a log store's retention ends. Comparing a partial log with the whole window's
metrics would report a false gap, so a pod whose logs are partial is compared over the bins its logs cover.

A pod's logs reach back to the window's start when some request line of them is no later than the start (or than
the pod's own start) plus one bin; else they begin at their first line. They reach to the window's end unless a
byte limit cut them (then: their last line). Time is cut in the bins of the mesh's range query (about 24 per
window); only bins wholly inside a pod's covered interval count, for its logs and its metrics alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from obsgap.model import Pod


def time_step_ms(start_ms: int, end_ms: int) -> int:
    """About 24 bins per window, in whole minutes (at least 5)."""
    return max(5, round((end_ms - start_ms) / 24 / 60000)) * 60000


@dataclass(frozen=True)
class LogSpan:
    """What one container's logs show of time: their earliest and latest request, and whether a limit cut them."""

    namespace: str
    pod: str
    container: str
    first_ms: int
    last_ms: int
    cut: bool = False


@dataclass(frozen=True)
class PodCoverage:
    namespace: str
    pod: str
    start_ms: int
    end_ms: int
    why: str
    """What made the logs partial, in words."""

    @property
    def seconds(self) -> float:
        return max(0, self.end_ms - self.start_ms) / 1000


def partial_pods(spans: Iterable[LogSpan], pods: Mapping[tuple[str, str], Pod], start_ms: int, end_ms: int,
                 step_ms: int) -> dict[tuple[str, str], PodCoverage]:
    """The pods whose logs cover less than the window, with the interval they do cover (the union of their
    containers' intervals)."""
    per_pod: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
    for span in spans:
        pod = pods.get((span.namespace, span.pod))
        origin = max(start_ms, pod.started_ms or start_ms) if pod is not None else start_ms
        begin, why = start_ms, ""
        if span.first_ms > origin + step_ms:
            begin, why = span.first_ms, "only its later logs were kept: kubelet rotation or log retention"
        end = end_ms
        if span.cut and span.last_ms < end_ms - step_ms:
            end, why = span.last_ms, "a byte limit cut its logs"
        per_pod[(span.namespace, span.pod)].append((begin, end, why))
    out = {}
    for (ns, name), intervals in per_pod.items():
        begin, end = min(i[0] for i in intervals), max(i[1] for i in intervals)
        if begin > start_ms or end < end_ms:
            why = next((i[2] for i in intervals if i[2]), "")
            out[(ns, name)] = PodCoverage(ns, name, max(begin, start_ms), min(end, end_ms), why)
    return out


def bins_within(cov: PodCoverage, start_ms: int, end_ms: int, step_ms: int) -> list[int]:
    """The end times of the bins (t - step, t] lying wholly inside the pod's covered interval."""
    first = start_ms + step_ms
    return [t for t in range(first, end_ms + 1, step_ms) if t - step_ms >= cov.start_ms and t <= cov.end_ms]


@dataclass(frozen=True)
class CoveredCounts:
    """For pods with partial logs: their covered interval, and what logs and mesh counted over its whole bins."""

    pods: Mapping[tuple[str, str], PodCoverage] = field(default_factory=dict)
    logs: Mapping[tuple[str, str, str, int | None], int] = field(default_factory=dict)
    """(namespace, pod, origin, port) -> inbound requests logged in the pod's covered bins"""
    mesh: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    """(service namespace, service name, pod) -> what the destination side counted in the pod's covered bins"""
    mesh_by_pod_known: bool = False
    """Whether the metrics carry the scraped pod (only then can the mesh be counted over one pod's interval)."""

    def covered(self, namespace: str, pod: str) -> PodCoverage | None:
        return self.pods.get((namespace, pod))


def covered_counts(partial: Mapping[tuple[str, str], PodCoverage], log_bins: pd.DataFrame,
                   mesh_bins: pd.DataFrame | None, start_ms: int, end_ms: int, step_ms: int) -> CoveredCounts:
    """Logs (summary's "bins" rows) and mesh (the range query's rows: labels, t in seconds, value) summed over the
    whole bins inside each partially logged pod's interval."""
    within = {key: set(bins_within(cov, start_ms, end_ms, step_ms)) for key, cov in partial.items()}
    logs: dict[tuple[str, str, str, int | None], int] = {}
    for r in log_bins.itertuples(index=False):
        key = (str(r.namespace), str(r.pod))
        if int(r.bin_end_ms) in within.get(key, ()):
            cell = (*key, str(r.origin), None if pd.isna(r.port) else int(r.port))
            logs[cell] = logs.get(cell, 0) + int(r.requests)
    mesh: dict[tuple[str, str, str], float] = {}
    by_pod = mesh_bins is not None and not mesh_bins.empty and "pod" in mesh_bins.columns \
        and bool(mesh_bins["pod"].notna().any())
    for r in mesh_bins.itertuples(index=False) if by_pod and mesh_bins is not None else ():
        bins = within.get((str(getattr(r, "namespace", "") or ""), str(r.pod)))
        if bins is not None and round(float(r.t) * 1000) in bins:
            where = (str(r.destination_service_namespace), str(r.destination_service_name), str(r.pod))
            mesh[where] = mesh.get(where, 0.0) + float(r.value)
    return CoveredCounts(partial, logs, mesh, by_pod)
