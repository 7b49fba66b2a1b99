"""Stream log files into Parquet parts of the normalized request table.

One call reads a batch of files (in a worker process) and writes one Parquet part, so memory
stays bounded by the batch size whatever the number of lines. Every line is accounted for:
a request row, a recognised non-request line, an unparsed line, or an out-of-window line.
"""

from __future__ import annotations

import gzip
import io
import re
import statistics
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from obsgap.sources.logs import formats
from obsgap.sources.logs.discover import attribution_from_path
from obsgap.sources.logs.envoy_format import (
    ISTIO_JSON,
    AccessFormat,
    JsonFormat,
    TextFormat,
    builtin_text_formats,
    candidates,
)
from obsgap.sources.logs.formats import Row

_PER_FILE = pa.dictionary(pa.int32(), pa.string())  # a few values per part, one per file: stored as codes
SCHEMA = pa.schema([
    ("ts_ms", pa.int64()), ("namespace", _PER_FILE), ("pod", _PER_FILE), ("container", _PER_FILE),
    ("origin", pa.string()), ("direction", pa.string()), ("method", pa.string()), ("path", pa.string()),
    ("protocol", pa.string()), ("status", pa.int32()), ("duration_ms", pa.float64()), ("port", pa.int32()),
    ("authority", pa.string()), ("upstream_cluster", pa.string()), ("upstream_host", pa.string()),
    ("downstream_local", pa.string()), ("downstream_remote", pa.string()), ("response_flags", pa.string()),
    ("file", _PER_FILE),
])
REPEATING = ["namespace", "pod", "container", "origin", "direction", "method", "protocol", "status", "port",
             "authority", "upstream_cluster", "upstream_host", "downstream_local", "response_flags", "file", "path"]
BATCH_ROWS = 65_536
SAMPLE_CHARS = 160


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


def read_span(path: Path, span: tuple[int, int]) -> bytes:
    """One range of a plain file (plan.split cuts only plain files, at message ends)."""
    with path.open("rb") as f:
        f.seek(span[0])
        return f.read(span[1] - span[0])


def _open(path: Path) -> IO[bytes]:
    raw = path.open("rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def split_cri(line: str) -> tuple[str, str, str] | None:
    """(timestamp, flag, message) of a CRI line, or None."""
    if len(line) < 30 or line[4] != "-" or line[10] != "T":
        return None
    parts = line.split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("stdout", "stderr") or parts[2] not in ("P", "F"):
        return None
    return parts[0], parts[2], parts[3] if len(parts) == 4 else ""


@dataclass
class Partial:
    """A CRI message still open (P lines so far); kubelet may continue it in the next rotated file."""

    parts: list[str] = field(default_factory=list)
    ts: str | None = None

    def take(self) -> tuple[str, str | None]:
        msg, ts = "".join(self.parts), self.ts
        self.parts, self.ts = [], None
        return msg, ts


def _messages(stream: IO[bytes], stats: FileStats,
              partial: Partial) -> Iterator[tuple[str, Any, dict[str, Any] | None]]:
    """Yield (message, wrapper timestamp, wrapper object) with CRI partial lines joined; an open partial
    message at the end of the stream stays in `partial` for the next file of the same container."""
    for raw in stream:
        stats.lines += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.invalid_utf8 += 1
            line = raw.decode("utf-8", errors="replace")
        line = line.rstrip("\r\n")
        cri = split_cri(line)
        if cri is not None:
            ts, flag, msg = cri
            stats.wrappers["cri"] += 1
            if flag == "P":
                partial.parts.append(msg)
                partial.ts = partial.ts or ts
                stats.partial_joined += 1
                continue
            if partial.parts:
                partial.parts.append(msg)
                joined, first_ts = partial.take()
                msg, ts = joined, first_ts or ts
            yield msg, ts, None
            continue
        wrapped = unwrap(line)
        if wrapped is not None:
            name, inner, stamp, wrapper = wrapped
            stats.wrappers[name] += 1
            yield inner, stamp, wrapper
            continue
        yield line, None, None


# `kubectl logs --prefix`: [pod/NAME/CONTAINER] message
_KUBECTL_PREFIX = re.compile(r"^\[pod/(?P<pod>[a-z0-9][a-z0-9.-]*)/(?P<container>[a-z0-9][a-z0-9-]*)\] (?P<msg>.*)$")
# stern: POD CONTAINER message (no colours), the message an access log or JSON
_STERN = re.compile(r"^(?P<pod>[a-z0-9][a-z0-9.-]*-[a-z0-9]+) (?P<container>[a-z0-9][a-z0-9-]*) (?P<msg>[\[{].*)$")
# `kubectl logs --timestamps`: RFC3339Nano then the message
_KUBECTL_TS = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (?P<msg>.*)$")
_WRAPPER_KEYS = ("stream", "time", "date", "kubernetes")


def unwrap(line: str) -> tuple[str, str, Any, dict[str, Any] | None] | None:
    """(wrapper name, message, the wrapper's timestamp, the wrapper object) of a line some shipper or tool
    wrapped around a log message, or None for a bare message. CRI is handled by the caller."""
    if line.startswith("{") and ('"log"' in line or '"kubernetes"' in line):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            inner = obj.get("log")
            if not isinstance(inner, str) and "kubernetes" in obj and isinstance(obj.get("message"), str) \
                    and obj["message"].lstrip().startswith(("[", "{")):
                inner = obj["message"]  # Fluent Bit / Vector pipelines that renamed `log`
            if isinstance(inner, str) and any(k in obj for k in _WRAPPER_KEYS):
                name = "fluent-bit" if "kubernetes" in obj else "docker-json"
                ts = obj.get("time") if obj.get("time") is not None else obj.get("date")
                return name, inner.rstrip("\n"), ts, obj  # Fluent Bit's `date` is epoch seconds
        return None
    if line.startswith("[pod/"):
        m = _KUBECTL_PREFIX.match(line)
        if m:
            inner = m["msg"]
            stamped = _KUBECTL_TS.match(inner)  # --prefix --timestamps
            ts = stamped["ts"] if stamped else None
            return ("kubectl-prefix", stamped["msg"] if stamped else inner, ts,
                    {"kubernetes": {"pod_name": m["pod"], "container_name": m["container"]}})
    if line[:1].isdigit():
        m = _KUBECTL_TS.match(line)
        # only when what follows is a message of its own (an access log, JSON, or a line that starts with its own
        # time): a format beginning with an unbracketed %START_TIME% is not a kubectl prefix
        if (m and m["msg"][:1] in ("[", "{")) or (m and m["msg"][:1].isdigit() and _KUBECTL_TS.match(m["msg"])):
            return "kubectl-timestamps", m["msg"], m["ts"], None
    if line[:1].isalnum():
        m = _STERN.match(line)
        if m:
            return "stern", m["msg"], None, {"kubernetes": {"pod_name": m["pod"], "container_name": m["container"]}}
    return None


def _parse(msg: str, wrapper: dict[str, Any] | None, task: ReadTask,
           stats: FileStats) -> tuple[formats.Row | None, tuple[str | None, str | None, str | None]]:
    attribution: tuple[str | None, str | None, str | None] = (None, None, None)
    if wrapper is not None and "kubernetes" in wrapper:
        attribution = formats.k8s_attribution(wrapper)
    custom = task.text_formats
    if msg.startswith("[") or (custom and not msg.startswith("{")):
        found = formats.match_envoy_text(msg, (*custom, *builtin_text_formats()))
        if found is not None:
            stats.formats["envoy-text"] += 1
            stats.access_formats[found[1].name] += 1
            return found[0], attribution
    if msg.startswith("{"):
        try:
            obj = orjson.loads(msg)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            if attribution == (None, None, None):
                attribution = formats.k8s_attribution(obj)
            for fmt in (*task.json_formats, ISTIO_JSON):
                row = formats.parse_envoy_json(obj, fmt)
                if row is not None:
                    stats.formats["envoy-json"] += 1
                    stats.access_formats[fmt.name] += 1
                    return row, attribution
            row = formats.parse_app_json(obj, task.mapping)
            if row is not None:
                stats.formats["app-json"] += 1
                return row, attribution
            stats.formats["json-other"] += 1
            stats.nonrequest += 1
            return None, attribution
    row = formats.parse_app_text(msg) if msg[:1].isalnum() else None
    if row is not None:
        stats.formats["app-text"] += 1
        return row, attribution
    if msg.strip() == "":
        stats.formats["empty"] += 1
        stats.nonrequest += 1
        return None, attribution
    stats.formats["unrecognized"] += 1
    stats.unparsed += 1
    if stats.unparsed_sample is None:
        stats.unparsed_sample = msg[:SAMPLE_CHARS]
    return None, attribution


class PartWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.rows: list[Mapping[str, Any]] = []

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.write(pa.Table.from_pylist(self.rows, schema=SCHEMA))
        self.rows = []

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            # temporary parts, scanned whole once: no compression, no statistics, dictionaries only where values repeat
            self.writer = pq.ParquetWriter(self.path, SCHEMA, compression="none", write_statistics=False,
                                           use_dictionary=REPEATING)
        self.writer.write_table(table)

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


CLOCK_SAMPLE = 32  # the first requests of a file decide whether its own clock can be trusted
CLOCK_MIN_PAIRS = 8
CLOCK_TOLERANCE_MS = 60_000  # Envoy flushes access logs every 10 s and logs a request when it ends


def clock_offset(pairs: list[tuple[int, int]]) -> int | None:
    """Median (own - node) time of a file's first requests when it is beyond the tolerance, else None.
    The node's clock is kubelet's, kept by NTP like Prometheus'; an application logging local time without
    its zone, or a container with a faked clock, shows as an offset of minutes or hours."""
    if len(pairs) < CLOCK_MIN_PAIRS:
        return None
    offset = statistics.median_low(own - node for own, node in pairs)
    return offset if abs(offset) > CLOCK_TOLERANCE_MS else None


@dataclass
class FileClock:
    """Holds a file's first requests until its clock is judged, then lets every request through the window."""

    pending: list[Row] = field(default_factory=list)
    decided: bool = False

    def offer(self, row: Row, stats: FileStats, task: ReadTask, out: PartWriter) -> None:
        if self.decided:
            admit(row, stats, task, out)
            return
        self.pending.append(row)
        if len(self.pending) >= CLOCK_SAMPLE:
            self.decide(stats, task, out)

    def decide(self, stats: FileStats, task: ReadTask, out: PartWriter) -> None:
        pairs = [(r["ts_ms"], r["_node"]) for r in self.pending if r["_own"] and r["_node"] is not None]
        stats.clock_offset_ms = clock_offset(pairs)
        self.decided = True
        pending, self.pending = self.pending, []
        for row in pending:
            admit(row, stats, task, out)


def parse_message(msg: str, wrapper_ts: str | None, wrapper: dict[str, Any] | None, stats: FileStats,
                  task: ReadTask, base_attr: tuple[str | None, str | None, str | None]) -> Row | None:
    """The request row of one message (not yet windowed), or None; `_node` and `_own` carry the node's time
    and whether the line had its own."""
    row, attr = _parse(msg, wrapper, task, stats)
    if row is None:
        return None
    unknown = row.pop("_unknown_unit", None)
    if unknown:
        stats.unknown_units[unknown] += 1
    node = formats.parse_ts_ms(wrapper_ts)
    row["_own"] = row["ts_ms"] is not None
    row["_node"] = node
    if row["ts_ms"] is None:
        row["ts_ms"] = node
    row["pod"] = attr[1] or base_attr[1]
    row["namespace"] = attr[0] or base_attr[0] or (task.pod_namespaces.get(row["pod"]) if row["pod"] else None)
    row["container"] = attr[2] or base_attr[2]
    row["file"] = stats.path
    return row


def admit(row: Row, stats: FileStats, task: ReadTask, out: PartWriter) -> None:
    """Retime (when the file's clock is off), window, and write one request row."""
    node = row.pop("_node")
    row.pop("_own")
    if stats.clock_offset_ms is not None and node is not None:
        row["ts_ms"] = node
        stats.retimed += 1
    ts = row["ts_ms"]
    if ts is None:
        stats.undated += 1
    elif (task.start_ms is not None and ts < task.start_ms) or (task.end_ms is not None and ts >= task.end_ms):
        stats.out_of_window += 1
        return
    out.add(row)
    stats.requests += 1


def head_clock(path: Path, task: ReadTask) -> int | None:
    """The clock decision of a whole file, from its first CLOCK_SAMPLE requests, for a range that does not
    begin the file (plan.split): every range of a file takes the decision its first range makes."""
    stats, partial, pairs, requests = FileStats(str(path)), Partial(), [], 0
    base_attr = base_attribution(path, task)
    try:
        with _open(path) as stream:
            for msg, wrapper_ts, wrapper in _messages(stream, stats, partial):
                row = parse_message(msg, wrapper_ts, wrapper, stats, task, base_attr)
                if row is None:
                    continue
                if row["_own"] and row["_node"] is not None:
                    pairs.append((row["ts_ms"], row["_node"]))
                requests += 1
                if requests >= CLOCK_SAMPLE:
                    break
    except (OSError, EOFError, zlib.error):
        return None
    return clock_offset(pairs)


def preset_clock(path: Path, task: ReadTask, stats: FileStats) -> bool:
    """For a range that does not begin its file: take the file's clock decision now (True), else False."""
    span = task.spans.get(str(path))
    if span is None or span[0] == 0:
        return False
    stats.clock_offset_ms = head_clock(path, task)
    stats.clock = FileClock(decided=True)
    return True


def handle_message(msg: str, wrapper_ts: str | None, wrapper: dict[str, Any] | None, stats: FileStats, task: ReadTask,
                   out: PartWriter, base_attr: tuple[str | None, str | None, str | None]) -> None:
    row = parse_message(msg, wrapper_ts, wrapper, stats, task, base_attr)
    if row is not None:
        stats.clock = stats.clock or FileClock()
        stats.clock.offer(row, stats, task, out)


def finish_file(stats: FileStats, task: ReadTask, out: PartWriter) -> None:
    """Judge the clock of a file with fewer requests than the sample, and let its requests through."""
    if stats.clock is not None and not stats.clock.decided:
        stats.clock.decide(stats, task, out)
    stats.clock = None


def base_attribution(path: Path, task: ReadTask | None = None) -> tuple[str | None, str | None, str | None]:
    """Who wrote a file: kubelet's path layout, else what the run was told (--log-pod, the file's name)."""
    where = attribution_from_path(path)
    if where:
        return where.namespace, where.pod, where.container
    return task.file_pods.get(str(path), (None, None, None)) if task is not None else (None, None, None)


def read_file(path: Path, task: ReadTask, out: PartWriter, partial: Partial | None = None,
              stats: FileStats | None = None, data: bytes | None = None) -> FileStats:
    """Read one file (or its bytes, already read; or the range of it the task names); with `partial`, an open
    CRI message continues from (and into) the neighbouring files."""
    stats = stats or FileStats(str(path))
    own = partial is None
    partial = Partial() if partial is None else partial
    base_attr = base_attribution(path, task)
    span = task.spans.get(str(path))
    if stats.clock is None:
        preset_clock(path, task, stats)
    try:
        if data is None and span is not None:
            data = read_span(path, span)
        with (io.BytesIO(data) if data is not None else _open(path)) as stream:
            for msg, wrapper_ts, wrapper in _messages(stream, stats, partial):
                handle_message(msg, wrapper_ts, wrapper, stats, task, out, base_attr)
    except (OSError, EOFError, zlib.error) as exc:
        kind = "corrupt or truncated gzip" if isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile) \
            else (exc.strerror or str(exc) or type(exc).__name__)
        stats.error = f"{kind} (read {stats.lines} lines before the error)"
    if own:
        flush_partial(partial, stats, task, out, base_attr)
        finish_file(stats, task, out)
    return stats


def flush_partial(partial: Partial, stats: FileStats, task: ReadTask, out: PartWriter,
                  base_attr: tuple[str | None, str | None, str | None]) -> None:
    """A message whose final (F) line never came: parse what there is, and say so."""
    if partial.parts:
        stats.wrappers["cri-unterminated-partial"] += 1
        msg, ts = partial.take()
        handle_message(msg, ts, None, stats, task, out, base_attr)
