"""One read task: clean files go to the columnar reader in batches, everything else line by line (reader.py).

The columnar reader applies each rule in its vectorised form (framing, wrappers, envoy_text, app_json, clock,
window, attribution), and only where it reads exactly as the per-line reader would: a whole file goes back to
reader.py when any line is not a complete CRI line once converted (open partial messages, CR line ends, invalid
UTF-8, wrappers it cannot convert), and single lines when an access log is not in the strict shape or Arrow's
JSON reader could read a line differently from orjson. Both write to the same Parquet part and fill the same
per-file accounting, so the table and the counts do not depend on which path read a file;
tests/test_columnar.py compares the two paths row for row.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.app_json import UNKNOWN_UNIT, app_columns
from obsgap.sources.logs.attribution import PER_FILE_COLUMNS, base_attribution, file_columns
from obsgap.sources.logs.batch_lines import (
    BatchFile,
    BatchLines,
    any_json_message,
    complete_by_bytes,
    json_only,
    judge_clocks,
    read_lines,
)
from obsgap.sources.logs.discover import attribution_from_path
from obsgap.sources.logs.envoy_format import DEFAULT_ACCESS_FORMAT, ISTIO_JSON
from obsgap.sources.logs.envoy_json import envoy_json_columns
from obsgap.sources.logs.envoy_text import envoy_columns
from obsgap.sources.logs.framing import Partial, complete_by_regex, node_ts_ms
from obsgap.sources.logs.intake import TooLarge, clean, clean_bytes, gzip_pieces
from obsgap.sources.logs.json_columns import NotExact, envoy_shaped, read_json_lines
from obsgap.sources.logs.parts import SCHEMA, PartWriter, Row
from obsgap.sources.logs.reader import (
    admit,
    finish_file,
    flush_partial,
    parse_message,
    preset_clock,
    read_file,
    resolve_preset,
)
from obsgap.sources.logs.task import FileStats, ReadTask
from obsgap.sources.logs.window import outside_mask
from obsgap.sources.logs.wrappers import NO_NODE_TIME
from obsgap.sources.logs.ztunnel import ztunnel_shaped

BATCH_BYTES = 32 * 1024 * 1024


class ColumnarBatch:
    """Clean files waiting to be read together; sidecar files and application files apart, as most lines of
    a file are of one kind and each kind has its own kernels."""

    def __init__(self, task: ReadTask, out: PartWriter) -> None:
        self.task, self.out = task, out
        self.files: dict[bool, list[BatchFile]] = {True: [], False: []}
        self.size = 0

    def offer(self, path: Path) -> list[FileStats] | None:
        """Take the file (its stats are filled when the batch is read), or None: read it line by line. A gzip file
        that inflates past LARGEST_FILE is taken in pieces, each read as a batch of its own (bounded memory)."""
        try:
            cleaned = clean_bytes(path, self.task.spans.get(str(path)))
        except TooLarge:
            return self._offer_pieces(path)
        if cleaned is None:
            return None
        span = self.task.spans.get(str(path))
        return [self._add(path, cleaned, later=span is not None and span[0] > 0)]

    def _add(self, path: Path, cleaned: tuple[bytes, int, str], later: bool, raw: bytes | None = None) -> FileStats:
        data, joined, wrapper = cleaned
        stats = FileStats(str(path))
        preset = preset_clock(path, self.task, stats) if later else False
        # a file whose first line is an access log takes the access-log kernels (JSON lines after it are read
        # columnar too: _read_batch); the application batch reads both kinds columnar
        access_logs_first = b" F [" in data[:data.find(b"\n")]
        self.files[access_logs_first].append(
            BatchFile(path, data, stats, joined, wrapper, preset, raw))
        self.size += len(data)
        if self.size >= BATCH_BYTES:
            self.flush()
        return stats

    def _offer_pieces(self, path: Path) -> list[FileStats]:
        self.flush()
        results: list[FileStats] = []
        try:
            for i, piece in enumerate(gzip_pieces(path)):
                cleaned = clean(piece)
                if cleaned is None:  # this piece line by line, from its own bytes
                    stats = FileStats(str(path))
                    if i:
                        preset_clock(path, self.task, stats)
                    results.append(read_file(path, self.task, self.out, stats=stats, data=piece))
                    continue
                results.append(self._add(path, cleaned, later=i > 0, raw=piece))
                self.flush()
        except (OSError, EOFError, zlib.error) as exc:
            failed = FileStats(str(path))
            failed.error = f"corrupt or truncated gzip ({type(exc).__name__} after {len(results)} pieces were read)"
            results.append(failed)
        return results

    def flush(self) -> None:
        for access_logs, files in self.files.items():
            if files:
                _read_batch(files, access_logs, self.task, self.out)
        self.files, self.size = {True: [], False: []}, 0


def _reject_incomplete(files: list[BatchFile], lines: BatchLines, task: ReadTask, out: PartWriter,
                       known_complete: np.ndarray | None = None) -> BatchLines:
    """Files with a line that is not a complete CRI line go line by line, whole; the rest are counted."""
    if known_complete is None and all(f.wrapper == "" for f in files):
        # bare lines, each given NO_NODE_TIME by bare_to_cri: complete, their "timestamp" ending at byte 20
        incomplete = np.zeros(len(lines.text), bool)
        lines.first_space = np.full(len(lines.text), NO_NODE_TIME.index(b" "), np.int64)
    elif known_complete is None:
        incomplete = ~complete_by_bytes(lines)
    else:  # only the lines not already known to be complete need the check
        incomplete = np.zeros(len(lines.text), bool)
        unknown = np.flatnonzero(~known_complete)
        incomplete[unknown] = ~complete_by_regex(lines.text.take(pa.array(unknown)))
    rejected = set(np.unique(lines.file_of[incomplete]).tolist())
    for i in sorted(rejected):
        f = files[i]
        # joined or converted lines: from the file (or its piece) again, so it is read as it is
        data = f.raw if f.raw is not None else f.data if not f.joined and f.wrapper == "cri" else None
        flush_partial(partial := Partial(), read_file(f.path, task, out, partial, f.stats, data), task, out,
                      base_attribution(f.path, task))
        finish_file(f.stats, task, out)
    if rejected:
        lines = lines.without(~np.isin(lines.file_of, list(rejected)))
    for i, n in enumerate(np.bincount(lines.file_of, minlength=len(files))):
        f = files[i]
        if n and i not in rejected:
            f.stats.lines += int(n) + f.joined
            if f.wrapper:  # bare lines have none
                f.stats.wrappers[f.wrapper] += int(n) + f.joined
            f.stats.partial_joined += f.joined
    return lines


def _read_batch(files: list[BatchFile], access_logs: bool, task: ReadTask, out: PartWriter) -> None:
    lines = read_lines(files)
    parts: list[tuple[np.ndarray, dict[str, pa.Array]]] = []
    if access_logs and task.text_formats:
        # the mesh has its own formats: the strict default shape proves nothing, every line goes to the parser
        lines = _reject_incomplete(files, lines, task, out)
        by_line = np.arange(len(lines.text))
    elif access_logs:
        columns, ok_np = _envoy(lines.text)
        kept = _reject_incomplete(files, lines, task, out, ok_np)
        if len(kept.text) < len(lines.text):  # rare: a file went line by line; read the others again without it
            lines = kept
            columns, ok_np = _envoy(lines.text)
        if ok_np.any():
            parts.append((np.flatnonzero(ok_np), columns))
            _count(files, lines.file_of[ok_np], "envoy-text", access_format=DEFAULT_ACCESS_FORMAT)
        by_line = np.flatnonzero(~ok_np)
    else:
        lines = _reject_incomplete(files, lines, task, out)
        if len(lines.text) == 0:
            return
        by_line = _application_lines(files, lines, task, parts)
        if not task.text_formats:
            by_line = _access_logs_among(by_line, files, lines, parts)
    if access_logs and any_json_message(lines, by_line):  # JSON after the proxy's lines (kubectl logs --all-containers)
        by_line = np.intersect1d(by_line, _application_lines(files, lines, task, parts), assume_unique=True)
    parsed = _parse_line_by_line(by_line, files, lines, task)
    _resolve_presets(files, parts, parsed, lines)
    shifted = judge_clocks(parts, parsed, files, lines)
    _write(parts, files, lines, shifted, task, out)
    for i, _, row in parsed:
        admit(row, files[i].stats, task, out)
    for f in files:
        f.stats.clock = None  # decided, or never needed: nothing of it goes back to the parent


def _resolve_presets(files: list[BatchFile], parts: list[tuple[np.ndarray, dict[str, pa.Array]]],
                     parsed: list[tuple[int, int, Row]], lines: BatchLines) -> None:
    """Ranges that do not begin their file take its clock decision, read from the file's head, only when they
    hold requests with the node's time (bare lines have none): a range of a log with no requests, or of a bare
    `kubectl logs` file, never reads the head."""
    if not any(f.clock_preset and f.wrapper for f in files):
        return
    with_requests = {i for i, _, _ in parsed}
    if parts:
        with_requests.update(np.unique(lines.file_of[np.concatenate([r for r, _ in parts])]).tolist())
    for i in with_requests:
        if files[i].clock_preset and files[i].wrapper:
            resolve_preset(files[i].stats)  # once: the file's decision is then kept


def _envoy(text: pa.Array) -> tuple[dict[str, pa.Array], np.ndarray]:
    try:
        columns, ok = envoy_columns(text)
    except pa.ArrowException:  # not seen; should Arrow fail, the per-line parser reads every line
        return {}, np.zeros(len(text), bool)
    return columns, ok.to_numpy(zero_copy_only=False)


def _access_logs_among(rows: np.ndarray, files: list[BatchFile], lines: BatchLines,
                       parts: list[tuple[np.ndarray, dict[str, pa.Array]]]) -> np.ndarray:
    """Of the lines an application batch leaves to the per-line parser, read the access logs in the strict default
    shape into `parts` (a pod's `kubectl logs --all-containers` file holds both kinds); return the rest."""
    if len(rows) == 0:
        return rows
    columns, ok = _envoy(lines.text.take(pa.array(rows)))
    if ok.any():
        parts.append((rows[ok], columns))
        _count(files, lines.file_of[rows[ok]], "envoy-text", access_format=DEFAULT_ACCESS_FORMAT)
    return rows[~ok]


def _application_lines(files: list[BatchFile], lines: BatchLines, task: ReadTask,
                       parts: list[tuple[np.ndarray, dict[str, pa.Array]]]) -> np.ndarray:
    """Read the JSON lines into `parts`; return the lines left to the per-line parser."""
    blanked, is_json = json_only(lines)
    by_line = [np.flatnonzero(~is_json)]
    by_schema: dict[pa.Schema, list[tuple[np.ndarray, pa.Table]]] = {}
    for run in _runs(lines, is_json):
        for json_rows, table in _read_run(run, blanked):
            if table is None:
                by_line.append(json_rows)
            else:
                by_schema.setdefault(table.schema, []).append((json_rows, table))
    for group in by_schema.values():
        rows = np.concatenate([r for r, _ in group])
        table = pa.concat_tables([t for _, t in group])
        try:
            if table.num_rows != len(rows):  # tables without columns lose their row count when concatenated
                raise NotExact("no columns")
            if ztunnel_shaped(table.column_names):
                raise NotExact("ztunnel's access logs name other pods: the per-line reader attributes them")
            if envoy_shaped(table.column_names):
                if task.json_formats:
                    raise NotExact("the mesh's own JSON formats are tried first, line by line")
                parts.append((rows, envoy_json_columns(table)))
                _count(files, lines.file_of[rows], "envoy-json", access_format=ISTIO_JSON.name)
                continue
            columns, request = app_columns(table, task.mapping)
        except (NotExact, pa.ArrowException):
            by_line.append(rows)
            continue
        request_np = request.to_numpy(zero_copy_only=False)
        _count(files, lines.file_of[rows[~request_np]], "json-other", nonrequest=True)
        _count(files, lines.file_of[rows[request_np]], "app-json")
        _count_unknown_units(files, lines.file_of[rows], columns.pop(UNKNOWN_UNIT), request_np)
        if request_np.any():
            parts.append((rows[request_np], {k: v.filter(request) for k, v in columns.items()}))
    return np.concatenate(by_line)


def _count_unknown_units(files: list[BatchFile], file_index: np.ndarray, unknown: pa.Array,
                         request: np.ndarray) -> None:
    """Requests whose duration key has no known unit, per file and key (FileStats.unknown_units)."""
    if unknown.null_count == len(unknown):
        return
    keys = unknown.to_numpy(zero_copy_only=False)
    counted = request & unknown.is_valid().to_numpy(zero_copy_only=False)
    for f, key in zip(file_index[counted].tolist(), keys[counted].tolist(), strict=True):
        files[f].stats.unknown_units[key] += 1


RUN_FILES = 32
_Run = list[tuple[int, int, np.ndarray]]  # per file: first byte, end byte, JSON lines


def _signature(lines: BatchLines, line: int) -> tuple[str, ...] | None:
    try:
        obj = orjson.loads(lines.text[line].as_py().split(" ", 3)[3])
    except (orjson.JSONDecodeError, IndexError):
        return None
    return tuple(sorted(obj)) if isinstance(obj, dict) else None


def _runs(lines: BatchLines, is_json: np.ndarray) -> Iterator[_Run]:
    """Neighbouring files whose first JSON lines have the same keys: most likely one application's files, which
    Arrow reads faster together. A file holding no JSON line does not interrupt a run (its lines are blank)."""
    run: _Run = []
    signature: tuple[str, ...] | None = None
    end = -1
    for rows in np.split(np.arange(len(lines.text)), np.flatnonzero(np.diff(lines.file_of)) + 1):
        first, last = int(lines.starts[rows[0]]), int(lines.ends[rows[-1]]) + 1
        json_rows = rows[is_json[rows]]
        if len(json_rows) == 0:
            if first == end:
                end = last
            continue
        own = _signature(lines, int(json_rows[0]))
        if run and (first != end or own is None or own != signature or len(run) >= RUN_FILES):
            yield run
            run = []
        run.append((first, last, json_rows))
        signature, end = own, last
    if run:
        yield run


def _read_run(run: _Run, blanked: np.ndarray) -> list[tuple[np.ndarray, pa.Table | None]]:
    """The run's JSON lines as Arrow reads them: in one piece when it can (same keys, same types), else file by
    file; None for a file the per-line parser must read."""
    def read(first: int, last: int, rows: np.ndarray) -> pa.Table | None:
        try:
            return read_json_lines(pa.py_buffer(blanked[first:last]), len(rows))
        except NotExact:
            return None

    if len(run) > 1:
        rows = np.concatenate([r for _, _, r in run])
        table = read(run[0][0], run[-1][1], rows)
        if table is not None:
            return [(rows, table)]
    return [(rows, read(first, last, rows)) for first, last, rows in run]


def _count(files: list[BatchFile], file_index: np.ndarray, fmt: str, nonrequest: bool = False,
           access_format: str | None = None) -> None:
    """Lines of one format the columnar reader took, per file."""
    _add(files, file_index, "columnar", *(["nonrequest"] if nonrequest else []), fmt=fmt,
         access_format=access_format)


def _write(parts: list[tuple[np.ndarray, dict[str, pa.Array]]], files: list[BatchFile], lines: BatchLines,
           shifted: np.ndarray, task: ReadTask, out: PartWriter) -> None:
    if not parts:
        return
    rows = np.concatenate([r for r, _ in parts])
    table = pa.concat_tables([pa.table({name: columns.get(name, pa.nulls(len(r), SCHEMA.field(name).type))
                                        for name in SCHEMA.names if name not in PER_FILE_COLUMNS},
                                       schema=_ROW_SCHEMA) for r, columns in parts])
    ts = table.column("ts_ms").combine_chunks()
    retime = shifted[lines.file_of[rows]]
    if retime.any():  # the node's time for the requests of files whose own clock is off
        node = node_ts_ms(lines.text.take(pa.array(rows[retime])))
        ts = pc.replace_with_mask(ts, pa.array(retime), pc.coalesce(node, ts.filter(pa.array(retime))))
        _add(files, lines.file_of[rows[retime]][node.is_valid().to_numpy(zero_copy_only=False)], "retimed")
    undated = pc.is_null(ts)
    missing = np.flatnonzero(undated.to_numpy(zero_copy_only=False))
    if len(missing):  # the line's own time, else the time kubelet wrote it
        ts = pc.replace_with_mask(ts, undated, node_ts_ms(lines.text.take(pa.array(rows[missing]))))
    dated = pc.is_valid(ts)
    _spans(files, lines.file_of[rows], ts)
    outside = outside_mask(ts, task.start_ms, task.end_ms)
    outside_np = outside.to_numpy(zero_copy_only=False)
    index = lines.file_of[rows]
    for name, mask in (("undated", ~dated.to_numpy(zero_copy_only=False)), ("out_of_window", outside_np),
                       ("requests", ~outside_np)):
        _add(files, index[mask], name)
    table = table.set_column(table.schema.get_field_index("ts_ms"), "ts_ms", ts)
    if outside_np.any():
        table = table.filter(pc.invert(outside))
        index = index[~outside_np]
    for name, column in file_columns([f.path for f in files], [f.stats.path for f in files], index, task).items():
        table = table.append_column(name, column)
    out.write(table.select(SCHEMA.names).cast(SCHEMA))


def _spans(files: list[BatchFile], file_index: np.ndarray, ts: pa.Array) -> None:
    """Each file's earliest and latest request time, in the window or not (FileStats.seen)."""
    values = ts.to_numpy(zero_copy_only=False)
    dated = ~pc.is_null(ts).to_numpy(zero_copy_only=False)
    if not dated.any():
        return
    index, values = file_index[dated], values[dated].astype(np.int64)
    order = np.argsort(index, kind="stable")
    index, values = index[order], values[order]
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    for f, lo, hi in zip(index[starts].tolist(), np.minimum.reduceat(values, starts).tolist(),
                         np.maximum.reduceat(values, starts).tolist(), strict=True):
        files[f].stats.seen(lo, hi)


def _add(files: list[BatchFile], file_index: np.ndarray, *counters: str, fmt: str | None = None,
         access_format: str | None = None) -> None:
    """Add each file's number of rows (`file_index` holds one entry per row) to its counters."""
    for i, n in enumerate(np.bincount(file_index, minlength=len(files)).tolist()):
        if n:
            stats = files[i].stats
            for counter in counters:
                setattr(stats, counter, getattr(stats, counter) + n)
            if fmt is not None:
                stats.formats[fmt] += n
            if access_format is not None:
                stats.access_formats[access_format] += n


_ROW_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in PER_FILE_COLUMNS])


def _parse_line_by_line(rows: np.ndarray, files: list[BatchFile], lines: BatchLines,
                        task: ReadTask) -> list[tuple[int, int, Row]]:
    """(file index, line index, request row) of the lines left to the per-line parser, not yet windowed."""
    parsed: list[tuple[int, int, Row]] = []
    if len(rows) == 0:
        return parsed
    rows.sort()
    attrs: dict[int, tuple[str | None, str | None, str | None]] = {}
    for i, at, line in zip(lines.file_of[rows].tolist(), rows.tolist(), lines.text.take(pa.array(rows)).to_pylist(),
                           strict=True):
        ts, _, _, msg = line.split(" ", 3)  # a complete CRI line
        attr = attrs.get(i) or attrs.setdefault(i, base_attribution(files[i].path, task))
        row = parse_message(msg.removesuffix("\n"), ts, None, files[i].stats, task, attr)
        if row is not None:
            parsed.append((i, at, row))
    return parsed


def run_task(task: ReadTask) -> list[FileStats]:
    writer = PartWriter(task.part_path)
    batch = ColumnarBatch(task, writer) if task.columnar else None
    results: list[FileStats] = []
    partial = Partial()
    try:
        files = [Path(f) for f in task.files]
        for i, path in enumerate(files):
            taken = batch.offer(path) if batch is not None and not partial.parts else None
            stats = read_file(path, task, writer, partial) if taken is None else taken[-1]
            results.extend(taken or [stats])
            same_container = i + 1 < len(files) and files[i + 1].parent == path.parent and \
                attribution_from_path(path) is not None
            if taken is None:
                if not same_container:  # else the open message continues in the next file, and counts there
                    flush_partial(partial, stats, task, writer, base_attribution(path, task))
                finish_file(stats, task, writer)
        if batch is not None:
            batch.flush()
        return results
    finally:
        writer.close()
