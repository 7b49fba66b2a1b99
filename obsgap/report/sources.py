"""Typed views of what each source delivered (findings.json `sources`), for the renderers.

The engine writes `sources` as plain mappings, which findings.json carries unchanged (its contract); these views
read them once, with every field typed, so no renderer looks up a key by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from obsgap.model import SourceReport


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else []


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _dicts(v: Any) -> list[Mapping[str, Any]]:
    return [x for x in _list(v) if isinstance(x, Mapping)]


@dataclass(frozen=True)
class PrometheusView:
    status: str
    url: str
    queries: int
    scrape_interval_seconds: float | None
    warnings: tuple[str, ...]
    errors: tuple[str, ...]
    error: str
    split_by_namespace: tuple[tuple[str, int], ...]

    @staticmethod
    def of(d: Mapping[str, Any]) -> PrometheusView:
        interval = d.get("scrape_interval_seconds")
        return PrometheusView(
            _str(d.get("status")), _str(d.get("url")), _int(d.get("queries")),
            float(interval) if isinstance(interval, int | float) else None,
            tuple(map(_str, _list(d.get("warnings")))), tuple(map(_str, _list(d.get("errors")))), _str(d.get("error")),
            tuple((_str(k), _int(v)) for k, v in _map(d.get("split_by_namespace")).items()))


@dataclass(frozen=True)
class KubernetesView:
    mode: str
    objects: tuple[tuple[str, int], ...]
    gaps: tuple[str, ...]

    @staticmethod
    def of(d: Mapping[str, Any]) -> KubernetesView:
        return KubernetesView(_str(d.get("mode")), tuple((_str(k), _int(v)) for k, v in _map(d.get("objects")).items()),
                              tuple(map(_str, _list(d.get("gaps")))))


@dataclass(frozen=True)
class FileCount:
    path: str
    count: int
    note: str = ""
    """unrecognized lines: a sample; skipped files: why"""


@dataclass(frozen=True)
class ClockSkew:
    folder: str
    files: int
    offset_seconds: int
    retimed: int


@dataclass(frozen=True)
class UnknownUnit:
    key: str
    path: str
    requests: int


@dataclass(frozen=True)
class Unattributed:
    requests: int
    files: tuple[FileCount, ...]
    files_total: int
    unknown_pod_requests: int
    unknown_pods: tuple[str, ...]
    unknown_pods_total: int


@dataclass(frozen=True)
class LogsView:
    configured: bool
    files: int
    lines: int
    parsed: int
    unparsed: int
    out_of_window: int
    agent_requests_excluded: int
    joined_partial_lines: int
    invalid_utf8: int
    formats: tuple[tuple[str, int], ...]
    skipped_files: tuple[FileCount, ...]
    clock_skew: tuple[ClockSkew, ...]
    unparsed_by_file: tuple[FileCount, ...]
    unattributed: Unattributed
    unknown_units: tuple[UnknownUnit, ...]
    partial_pods: int

    @staticmethod
    def of(d: Mapping[str, Any]) -> LogsView:
        un = _map(d.get("unattributed"))
        return LogsView(
            configured=bool(d.get("files")) or bool(d.get("clickhouse")) or bool(d.get("pod_logs")),
            files=_int(d.get("files")), lines=_int(d.get("lines")), parsed=_int(d.get("parsed")),
            unparsed=_int(d.get("unparsed")), out_of_window=_int(d.get("out_of_window")),
            agent_requests_excluded=_int(d.get("agent_requests_excluded")),
            joined_partial_lines=_int(d.get("joined_partial_lines")), invalid_utf8=_int(d.get("invalid_utf8")),
            formats=tuple((_str(k), _int(v)) for k, v in _map(d.get("formats")).items()),
            skipped_files=tuple(FileCount(_str(s.get("path")), 0, _str(s.get("reason")))
                                for s in _dicts(d.get("skipped_files"))),
            clock_skew=tuple(ClockSkew(_str(c.get("folder")), _int(c.get("files")), _int(c.get("offset_seconds")),
                                       _int(c.get("retimed"))) for c in _dicts(d.get("clock_skew_by_folder"))),
            unparsed_by_file=tuple(FileCount(_str(u.get("path")), _int(u.get("lines")), _str(u.get("sample")))
                                   for u in _dicts(d.get("unparsed_by_file"))),
            unattributed=Unattributed(
                _int(un.get("requests")),
                tuple(FileCount(_str(f.get("path")), _int(f.get("requests"))) for f in _dicts(un.get("files"))),
                _int(un.get("files_total")), _int(un.get("unknown_pod_requests")),
                tuple(_str(p.get("pod")) for p in _dicts(un.get("unknown_pods"))), _int(un.get("unknown_pods_total"))),
            unknown_units=tuple(UnknownUnit(_str(u.get("key")), _str(u.get("path")), _int(u.get("requests")))
                                for u in _dicts(d.get("duration_unit_unknown"))),
            partial_pods=len(_list(d.get("partial_pods"))))


@dataclass(frozen=True)
class SourceViews:
    prometheus: PrometheusView
    kubernetes: KubernetesView
    logs: LogsView

    @staticmethod
    def of(sources: SourceReport) -> SourceViews:
        return SourceViews(PrometheusView.of(sources.prometheus), KubernetesView.of(sources.kubernetes),
                           LogsView.of(sources.logs))
