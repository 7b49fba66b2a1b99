"""A read task (which files, which window, which formats) and the accounting it returns per file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from obsgap.sources.logs.clock import FileClock
from obsgap.sources.logs.envoy_format import AccessFormat, JsonFormat, TextFormat, candidates


@dataclass
class FileStats:
    path: str
    lines: int = 0
    requests: int = 0
    nonrequest: int = 0
    unparsed: int = 0
    out_of_window: int = 0
    undated: int = 0
    invalid_utf8: int = 0
    partial_joined: int = 0
    columnar: int = 0
    """lines read by the columnar reader (the rest went through this module's parser)"""
    formats: Counter[str] = field(default_factory=Counter)
    access_formats: Counter[str] = field(default_factory=Counter)
    """access-log lines per Envoy format name (istio-1.9+, istio-1.1, the mesh's own, ...)"""
    unknown_units: Counter[str] = field(default_factory=Counter)
    """application requests whose duration key has no known unit, per key (their duration is left out)"""
    wrappers: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    unparsed_sample: str | None = None
    clock_offset_ms: int | None = None
    """set when the file's own timestamps are this far from the node's (kubelet's) beyond the tolerance"""
    retimed: int = 0
    """requests timed by the node's clock instead of their own, because of that offset"""
    clock: FileClock | None = field(default=None, repr=False)
    first_ms: int | None = None
    """The earliest request time in the file, inside the window or not: how far back its logs reach."""
    last_ms: int | None = None

    def seen(self, first: int, last: int) -> None:
        self.first_ms = first if self.first_ms is None else min(self.first_ms, first)
        self.last_ms = last if self.last_ms is None else max(self.last_ms, last)

    def absorb(self, other: FileStats) -> None:
        """Add the accounting of another range of the same file (plan.split)."""
        for name in ("lines", "requests", "nonrequest", "unparsed", "out_of_window", "undated", "invalid_utf8",
                     "partial_joined", "columnar", "retimed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("formats", "access_formats", "unknown_units", "wrappers"):
            getattr(self, name).update(getattr(other, name))
        self.error = self.error or other.error
        self.unparsed_sample = self.unparsed_sample or other.unparsed_sample
        if self.clock_offset_ms is None:
            self.clock_offset_ms = other.clock_offset_ms
        if other.first_ms is not None and other.last_ms is not None:
            self.seen(other.first_ms, other.last_ms)


def merge_ranges(stats: list[FileStats]) -> list[FileStats]:
    """One entry per file, in first-seen order, however many ranges it was read in."""
    merged: dict[str, FileStats] = {}
    for s in stats:
        if s.path in merged:
            merged[s.path].absorb(s)
        else:
            merged[s.path] = s
    return list(merged.values())


@dataclass(frozen=True)
class ReadTask:
    files: tuple[str, ...]
    part_path: str
    start_ms: int | None
    end_ms: int | None
    mapping: Mapping[str, str] | None = None
    columnar: bool = True
    """Read clean CRI files with the columnar reader (off: every line through this module's parser)."""
    access_formats: tuple[AccessFormat, ...] = ()
    """The mesh's own access-log formats (ConfigMap, Telemetry providers, --access-log-format), tried first."""
    file_pods: Mapping[str, tuple[str | None, str | None, str | None]] = field(default_factory=dict)
    """path -> (namespace, pod, container) for files whose path does not say (--log-pod, a file named after a pod)."""
    pod_namespaces: Mapping[str, str] = field(default_factory=dict)
    """pod name -> namespace, for lines that name only their pod (kubectl --prefix, stern); unique names only."""
    spans: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """path -> [start, end) for a large file of which this task reads one range (plan.split)"""

    @property
    def text_formats(self) -> tuple[TextFormat, ...]:
        return candidates(self.access_formats)[0]

    @property
    def json_formats(self) -> tuple[JsonFormat, ...]:
        return candidates(self.access_formats)[1]
