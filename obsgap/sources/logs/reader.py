"""The reference reader: a file (or a range of one) line by line, streamed, into the task's Parquet part.

It applies every rule in its per-line form (framing, wrappers, recognise, clock, window, attribution) and reads
whatever the columnar reader (ingest.py) declines. Every line is accounted for: a request row, a recognised
non-request line, an unparsed line, or an out-of-window line.
"""

from __future__ import annotations

import functools
import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from obsgap.sources.logs.attribution import base_attribution
from obsgap.sources.logs.clock import CLOCK_SAMPLE, FileClock, clock_offset
from obsgap.sources.logs.framing import Partial, split_cri
from obsgap.sources.logs.intake import open_stream, read_span
from obsgap.sources.logs.parts import PartWriter, Row
from obsgap.sources.logs.recognise import recognise
from obsgap.sources.logs.task import FileStats, ReadTask
from obsgap.sources.logs.timestamps import parse_ts_ms
from obsgap.sources.logs.window import outside
from obsgap.sources.logs.wrappers import unwrap


def messages(stream: IO[bytes], stats: FileStats,
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


def parse_message(msg: str, wrapper_ts: str | None, wrapper: dict[str, Any] | None, stats: FileStats,
                  task: ReadTask, base_attr: tuple[str | None, str | None, str | None]) -> Row | None:
    """The request row of one message (not yet windowed), or None; `_node` and `_own` carry the node's time
    and whether the line had its own."""
    row, attr = recognise(msg, wrapper, task, stats)
    if row is None:
        return None
    unknown = row.pop("_unknown_unit", None)
    if unknown:
        stats.unknown_units[unknown] += 1
    node = parse_ts_ms(wrapper_ts)
    row["_own"] = row["ts_ms"] is not None
    row["_node"] = node
    if row["ts_ms"] is None:
        row["ts_ms"] = node
    if row.pop("_by_address", False):  # a proxy's line about another pod (ztunnel, a waypoint): by its address
        row["pod"] = row["namespace"] = None
        row["container"] = row["origin"]
    else:
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
    else:
        stats.seen(ts, ts)
    if ts is not None and outside(ts, task.start_ms, task.end_ms):
        stats.out_of_window += 1
        return
    out.add(row)
    stats.requests += 1


def head_clock(path: Path, task: ReadTask) -> int | None:
    """The clock decision of a whole file, from its first CLOCK_SAMPLE requests, for a range that does not
    begin the file (plan.split): every range of a file takes the decision its first range makes. Read once per
    process and file: a worker reads many ranges of one large file, and a file with few requests is read far."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns, task.access_formats,
           tuple(sorted(task.mapping.items())) if task.mapping else ())  # all the parser reads of the task
    if key not in _HEAD_CLOCKS:
        if len(_HEAD_CLOCKS) >= 256:
            _HEAD_CLOCKS.clear()
        _HEAD_CLOCKS[key] = _read_head_clock(path, task)
    return _HEAD_CLOCKS[key]


_HEAD_CLOCKS: dict[tuple[object, ...], int | None] = {}


def _read_head_clock(path: Path, task: ReadTask) -> int | None:
    stats, partial, pairs, requests = FileStats(str(path)), Partial(), [], 0
    base_attr = base_attribution(path, task)
    try:
        with open_stream(path) as stream:
            for msg, wrapper_ts, wrapper in messages(stream, stats, partial):
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
    """For a part that does not begin its file (a range, a gzip piece): it takes the file's clock decision,
    read from the file's head when first needed (resolve_preset, FileClock.offer)."""
    stats.clock = FileClock(head=functools.partial(head_clock, path, task))
    return True


def resolve_preset(stats: FileStats) -> None:
    """Take the file's clock decision now, if the part has not yet."""
    if stats.clock is not None and stats.clock.head is not None:
        stats.clock_offset_ms = stats.clock.resolve()


def handle_message(msg: str, wrapper_ts: str | None, wrapper: dict[str, Any] | None, stats: FileStats, task: ReadTask,
                   out: PartWriter, base_attr: tuple[str | None, str | None, str | None]) -> None:
    row = parse_message(msg, wrapper_ts, wrapper, stats, task, base_attr)
    if row is not None:
        stats.clock = stats.clock or FileClock()
        _admit_all(stats.clock.offer(row), stats, task, out)


def _admit_all(rows: list[Row], stats: FileStats, task: ReadTask, out: PartWriter) -> None:
    if rows and stats.clock is not None:
        stats.clock_offset_ms = stats.clock.offset_ms
    for row in rows:
        admit(row, stats, task, out)


def finish_file(stats: FileStats, task: ReadTask, out: PartWriter) -> None:
    """Judge the clock of a file with fewer requests than the sample, and let its requests through."""
    if stats.clock is not None:
        _admit_all(stats.clock.decide(), stats, task, out)
    stats.clock = None


def read_file(path: Path, task: ReadTask, out: PartWriter, partial: Partial | None = None,
              stats: FileStats | None = None, data: bytes | None = None) -> FileStats:
    """Read one file (or its bytes, already read; or the range of it the task names); with `partial`, an open
    CRI message continues from (and into) the neighbouring files."""
    stats = stats or FileStats(str(path))
    own = partial is None
    partial = Partial() if partial is None else partial
    base_attr = base_attribution(path, task)
    span = task.spans.get(str(path))
    if stats.clock is None and span is not None and span[0] > 0:
        preset_clock(path, task, stats)
    try:
        if data is None and span is not None:
            data = read_span(path, span)
        with (io.BytesIO(data) if data is not None else open_stream(path)) as stream:
            for msg, wrapper_ts, wrapper in messages(stream, stats, partial):
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
