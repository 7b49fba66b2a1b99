"""Read all log files (in parallel) into one Parquet-backed table and summarise it with DuckDB."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from obsgap.interrupts import worker_init
from obsgap.sources.logs.discover import Discovered
from obsgap.sources.logs.envoy_format import AccessFormat
from obsgap.sources.logs.ingest import run_task
from obsgap.sources.logs.plan import plan
from obsgap.sources.logs.task import FileStats, ReadTask, merge_ranges


@dataclass(frozen=True)
class LogStats:
    files: int
    lines: int
    parsed: int
    unparsed: int
    requests: int
    out_of_window: int
    undated: int
    invalid_utf8: int
    joined_partial_lines: int
    """CRI `P` lines joined into the message their `F` line completes: lines = parsed + unparsed + these."""
    columnar_lines: int
    """lines the columnar reader took (the rest went through the per-line parser)"""
    formats: Mapping[str, int]
    wrappers: Mapping[str, int]
    skipped_files: tuple[tuple[str, str], ...]
    """(path, reason) for files that could not be read, wholly or in part."""
    unparsed_by_file: tuple[tuple[str, int, str], ...]
    """(path, count, first unparsed line) for files with unrecognised lines."""
    retimed: int = 0
    """requests timed by the node's clock because their file's own clock was off"""
    clock_skew: tuple[tuple[str, int, int], ...] = ()
    """(path, offset in ms of the file's own clock from the node's, requests retimed) beyond the tolerance"""
    access_formats: tuple[tuple[str, str, int], ...] = ()
    """(path, the Envoy format its access-log lines were read in, lines) per file with access logs"""
    unknown_units: tuple[tuple[str, str, int], ...] = ()
    """(path, key, requests) where a duration key has no known unit: those durations are left out"""
    spans: tuple[tuple[str, int, int], ...] = ()
    """(path, earliest, latest request time in ms, inside the window or not) per file with dated requests"""

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "lines": self.lines, "parsed": self.parsed, "unparsed": self.unparsed,
            "requests": self.requests, "out_of_window": self.out_of_window, "undated": self.undated,
            "invalid_utf8": self.invalid_utf8, "joined_partial_lines": self.joined_partial_lines,
            "columnar_lines": self.columnar_lines,
            "formats": dict(self.formats), "wrappers": dict(self.wrappers),
            "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped_files],
            "unparsed_by_file": [{"path": p, "lines": n, "sample": s} for p, n, s in self.unparsed_by_file],
            "retimed": self.retimed,
            "clock_skew": [{"path": p, "offset_seconds": round(ms / 1000, 1), "retimed": n}
                           for p, ms, n in self.clock_skew],
            "clock_skew_by_folder": _by_folder(self.clock_skew),
            "access_log_formats": _by_format(self.access_formats),
            "duration_unit_unknown": [{"path": p, "key": k, "requests": n} for p, k, n in self.unknown_units[:50]],
        }


MAX_LISTED = 200


def _by_format(per_file: tuple[tuple[str, str, int], ...]) -> dict[str, Any]:
    """Per format: files and lines; per file, its format (the first MAX_LISTED files)."""
    formats: dict[str, dict[str, int]] = {}
    for _path, name, n in per_file:
        entry = formats.setdefault(name, {"files": 0, "lines": 0})
        entry["files"] += 1
        entry["lines"] += n
    return {"formats": formats, "files": [{"path": p, "format": f, "lines": n} for p, f, n in per_file[:MAX_LISTED]],
            "files_total": len(per_file)}


def _by_folder(skewed: tuple[tuple[str, int, int], ...]) -> list[dict[str, Any]]:
    """One entry per container folder (its rotated files share the clock): what the report shows."""
    folders: dict[str, list[tuple[int, int]]] = {}
    for path, ms, n in skewed:
        folders.setdefault(os.path.dirname(path), []).append((ms, n))
    return [{"folder": folder, "files": len(entries), "retimed": sum(n for _, n in entries),
             "offset_seconds": round(statistics.median_low(ms for ms, _ in entries) / 1000, 1)}
            for folder, entries in sorted(folders.items(), key=lambda kv: -sum(n for _, n in kv[1]))]


@dataclass(frozen=True)
class Attributions:
    """Who wrote the files whose path does not say, and the namespace of pods named without one."""

    files: Mapping[str, tuple[str | None, str | None, str | None]] = field(default_factory=dict)
    pod_namespaces: Mapping[str, str] = field(default_factory=dict)


@dataclass
class LogTable:
    """The normalized request table (Parquet parts in `root`) plus how every line was accounted for."""

    root: Path
    stats: LogStats
    _con: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)

    @property
    def glob(self) -> str:
        return str(self.root / "*.parquet")

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = duckdb.connect()
            self._con.execute(f"SET threads TO {max(1, min(4, os.cpu_count() or 1))}")
            self._con.execute("SET memory_limit = '768MB'")  # spills to disk beyond it: bounded memory
            spill = str(self.root / "spill").replace("'", "''")
            self._con.execute(f"SET temp_directory = '{spill}'")  # inside root: removed with the table
            # one row per request: n = 1 (summary.QUERIES also read a log store's aggregated rows, n requests each)
            self._con.execute(f"CREATE VIEW requests AS SELECT *, 1 AS n, ts_ms AS ts_min, ts_ms AS ts_max "
                              f"FROM read_parquet('{self.glob}')")
            self._con.execute("CREATE VIEW durations_src AS SELECT * FROM requests")
        return self._con

    def query(self, sql: str, params: list[Any] | None = None, **tables: pd.DataFrame) -> pd.DataFrame:
        """Run SQL where `requests` names the table; keyword DataFrames are visible under their names."""
        if not any(self.root.glob("*.parquet")):
            return pd.DataFrame()
        con = self._connection()
        for name, frame in tables.items():
            con.register(name, frame)
        try:
            return con.execute(sql, params or []).df()
        finally:
            for name in tables:
                con.unregister(name)

    def close(self, remove: bool = True) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def _summarise(all_stats: list[FileStats], skipped: tuple[tuple[str, str], ...]) -> LogStats:
    formats: Counter[str] = Counter()
    wrappers: Counter[str] = Counter()
    skipped_files = list(skipped)
    unparsed = []
    for s in all_stats:
        formats.update(s.formats)
        wrappers.update(s.wrappers)
        if s.error:
            skipped_files.append((s.path, s.error))
        if s.unparsed:
            unparsed.append((s.path, s.unparsed, s.unparsed_sample or ""))
    unparsed_total = sum(s.unparsed for s in all_stats)
    lines = sum(s.lines for s in all_stats)
    return LogStats(
        files=len(all_stats), lines=lines,
        parsed=sum(s.requests + s.nonrequest + s.out_of_window for s in all_stats),
        unparsed=unparsed_total, requests=sum(s.requests for s in all_stats),
        out_of_window=sum(s.out_of_window for s in all_stats), undated=sum(s.undated for s in all_stats),
        invalid_utf8=sum(s.invalid_utf8 for s in all_stats),
        joined_partial_lines=sum(s.partial_joined for s in all_stats),
        columnar_lines=sum(s.columnar for s in all_stats), formats=dict(formats), wrappers=dict(wrappers),
        skipped_files=tuple(skipped_files),
        unparsed_by_file=tuple(sorted(unparsed, key=lambda x: -x[1])),
        retimed=sum(s.retimed for s in all_stats),
        clock_skew=tuple(sorted(((s.path, s.clock_offset_ms, s.retimed) for s in all_stats
                                 if s.clock_offset_ms is not None), key=lambda x: -abs(x[1]))),
        access_formats=tuple((s.path, s.access_formats.most_common(1)[0][0], sum(s.access_formats.values()))
                             for s in all_stats if s.access_formats),
        unknown_units=tuple((s.path, k, n) for s in all_stats for k, n in s.unknown_units.most_common()),
        spans=tuple((s.path, s.first_ms, s.last_ms) for s in all_stats
                    if s.first_ms is not None and s.last_ms is not None),
    )


def read_logs(found: Discovered, start_ms: int | None, end_ms: int | None,
              mapping: Mapping[str, str] | None = None, workers: int | None = None, columnar: bool = True,
              progress: Callable[[int, int], None] | None = None,
              access_formats: tuple[AccessFormat, ...] = (),
              attribution: Attributions | None = None, into: Path | None = None, prefix: str = "part",
              workers_started: Callable[[], None] | None = None) -> LogTable:
    """Read every file into Parquet parts in a fresh temporary folder (or `into`, beside parts read before: see
    combine). On any exit but success (an error, an interrupt) the workers are ended and a fresh folder removed
    before the exception goes on. `workers_started` is called once no more worker process will be forked."""
    root = into or Path(tempfile.mkdtemp(prefix="obsgap-logs-"))
    try:
        return LogTable(root, _summarise(_read_all(found, root, start_ms, end_ms, mapping, workers, columnar,
                                                   progress, access_formats, attribution or Attributions(), prefix,
                                                   workers_started or (lambda: None)),
                                         found.skipped))
    except BaseException:
        if into is None:
            shutil.rmtree(root, ignore_errors=True)
        raise


def combine(root: Path, parts: list[LogStats]) -> LogTable:
    """One table of the parts several read_logs calls wrote into `root`, with their accounting added up."""
    if not parts:
        return LogTable(root, _summarise([], ()))
    first = parts[0]
    values: dict[str, Any] = {}
    for name in LogStats.__dataclass_fields__:
        items = [getattr(s, name) for s in parts]
        if isinstance(items[0], int):
            values[name] = sum(items)
        elif isinstance(items[0], tuple):
            values[name] = tuple(x for item in items for x in item)
        else:
            total: Counter[str] = Counter()
            for item in items:
                total.update(item)
            values[name] = dict(total)
    values["unparsed_by_file"] = tuple(sorted(values["unparsed_by_file"], key=lambda x: -x[1]))
    values["clock_skew"] = tuple(sorted(values["clock_skew"], key=lambda x: -abs(x[1])))
    return LogTable(root, type(first)(**values))


def _read_all(found: Discovered, root: Path, start_ms: int | None, end_ms: int | None,
              mapping: Mapping[str, str] | None, workers: int | None, columnar: bool,
              progress: Callable[[int, int], None] | None,
              access_formats: tuple[AccessFormat, ...], attribution: Attributions,
              prefix: str, workers_started: Callable[[], None]) -> list[FileStats]:
    workers = workers or os.cpu_count() or 1
    tasks = [ReadTask(batch.files, str(root / f"{prefix}-{i:05d}.parquet"), start_ms, end_ms,
                      dict(mapping) if mapping else None, columnar, access_formats,
                      {f: attribution.files[f] for f in batch.files if f in attribution.files},
                      attribution.pod_namespaces, batch.spans)
             for i, batch in enumerate(plan(tuple(map(str, found.files)), workers))]
    workers = min(workers, len(tasks))
    results: list[FileStats] = []
    if workers <= 1 or len(tasks) <= 1:
        workers_started()
        for i, task in enumerate(tasks):
            results.extend(run_task(task))
            if progress:
                progress(i + 1, len(tasks))
        return merge_ranges(results)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=worker_init)
    try:
        done = pool.map(run_task, tasks)  # submits every task: with fork, every worker is started by now
        workers_started()
        for i, stats in enumerate(done):
            results.extend(stats)
            if progress:
                progress(i + 1, len(tasks))
    except BaseException:
        _end_workers(pool)
        raise
    pool.shutdown()
    return merge_ranges(results)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Stop at once: queued tasks are dropped and running workers terminated (shutdown alone would wait)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        with contextlib.suppress(OSError, AttributeError):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(OSError, AttributeError, AssertionError):
            proc.join(timeout=5)
