"""One read task: clean CRI files go to the columnar reader in batches, everything else line by line.

Both write to the same Parquet part and fill the same per-file accounting, so the table and the counts do
not depend on which path read a file.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs import columnar
from obsgap.sources.logs.discover import attribution_from_path
from obsgap.sources.logs.formats import Row
from obsgap.sources.logs.reader import (
    CLOCK_MIN_PAIRS,
    CLOCK_SAMPLE,
    CLOCK_TOLERANCE_MS,
    SCHEMA,
    FileStats,
    Partial,
    PartWriter,
    ReadTask,
    admit,
    base_attribution,
    finish_file,
    flush_partial,
    parse_message,
    read_file,
    split_cri,
)

BATCH_BYTES = 32 * 1024 * 1024
LARGEST_FILE = 256 * 1024 * 1024  # larger files are streamed line by line rather than held in memory


def clean_bytes(path: Path) -> tuple[bytes, int] | None:
    """The file's bytes when the columnar reader may take it (it reads and gunzips whole, is UTF-8 without CR
    line ends, and every CRI partial message in it is complete), with partial lines joined, and how many
    partial lines were joined. None sends the file to the per-line reader (which reports what is wrong)."""
    try:
        if path.stat().st_size > LARGEST_FILE:
            return None
        raw = path.read_bytes()
        data = gunzip(raw, LARGEST_FILE) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error):
        return None
    if data is None or b"\r" in data:
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if data and not data.endswith(b"\n"):
        data += b"\n"
    if _may_hold_partial_lines(data) and (b" stdout P " in data or b" stderr P " in data):
        return join_partials(data)
    return data, 0


def _may_hold_partial_lines(data: bytes) -> bool:
    """A cheap pass first: " stdout P " and " stderr P " both put a space 8 bytes before a "P" set in spaces.
    (Three times faster here than the two substring searches it spares on almost every file.)"""
    b = np.frombuffer(data, np.uint8)
    p = np.flatnonzero(b[8:-1] == ord("P")) + 8
    return bool(len(p)) and bool(((b[p - 1] == 32) & (b[p + 1] == 32) & (b[p - 8] == 32)).any())


def join_partials(data: bytes) -> tuple[bytes, int] | None:
    """Each run of CRI `P` lines and the `F` line ending it, as one line, as reader._messages joins them; None
    when a message is still open at the end (kubelet continues it in the next file) or is interrupted."""
    out: list[str] = []
    parts: list[str] = []
    first_ts: str | None = None
    joined = 0
    for line in data.decode("utf-8").split("\n")[:-1]:
        cri = split_cri(line)
        if cri is None:
            if parts:
                return None
            out.append(line)
            continue
        ts, flag, msg = cri
        if flag == "P":
            parts.append(msg)
            first_ts = first_ts or ts
            joined += 1
        elif parts:
            out.append(f"{first_ts} stdout F {''.join(parts)}{msg}")
            parts, first_ts = [], None
        else:
            out.append(line)
    if parts:
        return None
    return ("\n".join(out) + "\n").encode("utf-8") if out else b"", joined


def gunzip(data: bytes, limit: int) -> bytes | None:
    """All members of a gzip file (gzip.decompress, without its per-member Python overhead); None beyond
    `limit` bytes, so a small file that inflates to gigabytes is streamed by the per-line reader instead."""
    out = []
    room = limit
    while data:
        stream = zlib.decompressobj(wbits=31)
        out.append(stream.decompress(data, room + 1))
        room -= len(out[-1])
        if room < 0:
            return None
        if not stream.eof:
            raise EOFError("truncated gzip member")
        data = stream.unused_data.lstrip(b"\x00")  # gzip allows zero padding between members
    return b"".join(out)


@dataclass
class _File:
    path: Path
    data: bytes
    stats: FileStats
    joined: int = 0
    """CRI partial lines already joined into `data`"""


class ColumnarBatch:
    """Clean files waiting to be read together; sidecar files and application files apart, as most lines of
    a file are of one kind and each kind has its own kernels."""

    def __init__(self, task: ReadTask, out: PartWriter) -> None:
        self.task, self.out = task, out
        self.files: dict[bool, list[_File]] = {True: [], False: []}
        self.size = 0

    def offer(self, path: Path) -> FileStats | None:
        """Take the file (its stats are filled when the batch is read), or None: read it line by line."""
        clean = clean_bytes(path)
        if clean is None:
            return None
        data, joined = clean
        stats = FileStats(str(path))
        self.files[b" F [" in data[:data.find(b"\n")]].append(_File(path, data, stats, joined))
        self.size += len(data)
        if self.size >= BATCH_BYTES:
            self.flush()
        return stats

    def flush(self) -> None:
        for access_logs, files in self.files.items():
            if files:
                _read_batch(files, access_logs, self.task, self.out)
        self.files, self.size = {True: [], False: []}, 0


@dataclass
class _Lines:
    """Every line of a batch: the text with its newline, the index of its file, and where it starts and ends
    (at its newline) in `raw`, the batch's bytes."""

    text: pa.Array
    file_of: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    raw: bytes
    first_space: np.ndarray | None = None
    """where each line's CRI timestamp ends (-1: not found), once known"""

    def without(self, keep: np.ndarray) -> _Lines:
        return _Lines(self.text.filter(pa.array(keep)), self.file_of[keep], self.starts[keep], self.ends[keep],
                      self.raw, None if self.first_space is None else self.first_space[keep])


def _lines(files: list[_File]) -> _Lines:
    raw = b"".join(f.data for f in files)
    ends = np.flatnonzero(np.frombuffer(raw, np.uint8) == 10)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    offsets = np.zeros(len(ends) + 1, np.int64)
    offsets[1:] = ends + 1
    text = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(raw))
    file_ends = np.cumsum([len(f.data) for f in files])
    return _Lines(text.cast(pa.string()), np.searchsorted(file_ends, ends, side="right"), starts, ends, raw)


def _complete(text: pa.Array) -> np.ndarray:
    """reader.split_cri: a complete CRI line of at least 30 characters (here with its newline)."""
    return pc.and_(pc.fill_null(pc.match_substring_regex(text, columnar.CRI_COMPLETE), False),
                   pc.greater_equal(pc.utf8_length(text), 31)).to_numpy(zero_copy_only=False)


def _complete_by_bytes(lines: _Lines) -> np.ndarray:
    """_complete from the bytes around each line's first space (found once, and used again for JSON): an ASCII
    "YYYY-MM-DDT..." timestamp, " stdout F " or " stderr F ", and 30 characters (counted for the short
    lines that are not ASCII)."""
    raw = np.frombuffer(lines.raw, np.uint8)
    first_space = lines.first_space if lines.first_space is not None else _first_space(raw, lines)
    last = len(raw) - 1

    def byte(offset: np.ndarray | int) -> np.ndarray:
        return raw[np.minimum(lines.starts + offset, last)]

    ok = (lines.ends - lines.starts >= 30) & (first_space >= 11)
    for k in range(11):
        b = byte(k)
        ok &= (b != 32) & (b < 128)
    ok &= (byte(4) == ord("-")) & (byte(10) == ord("T"))
    at = np.maximum(first_space, 0)
    std = (byte(at + 1) == ord("s")) & (byte(at + 2) == ord("t")) & (byte(at + 3) == ord("d"))
    out_ = (byte(at + 4) == ord("o")) & (byte(at + 5) == ord("u")) & (byte(at + 6) == ord("t"))
    err = (byte(at + 4) == ord("e")) & (byte(at + 5) == ord("r")) & (byte(at + 6) == ord("r"))
    ok &= std & (out_ | err) & (byte(at + 7) == 32) & (byte(at + 8) == ord("F")) & (byte(at + 9) == 32)
    ok &= lines.starts + at + 9 < lines.ends
    short = np.flatnonzero(ok & (lines.ends - lines.starts < 4 * 30))  # 30 bytes may be fewer characters
    if len(short):
        ok[short] = pc.greater_equal(pc.utf8_length(lines.text.take(pa.array(short))), 31).to_numpy(
            zero_copy_only=False)
    lines.first_space = first_space
    return ok


def _reject_incomplete(files: list[_File], lines: _Lines, task: ReadTask, out: PartWriter,
                       known_complete: np.ndarray | None = None) -> _Lines:
    """Files with a line that is not a complete CRI line go line by line, whole; the rest are counted."""
    if known_complete is None:
        incomplete = ~_complete_by_bytes(lines)
    else:  # only the lines not already known to be complete need the check
        incomplete = np.zeros(len(lines.text), bool)
        unknown = np.flatnonzero(~known_complete)
        incomplete[unknown] = ~_complete(lines.text.take(pa.array(unknown)))
    rejected = set(np.unique(lines.file_of[incomplete]).tolist())
    for i in sorted(rejected):
        f = files[i]
        data = f.data if not f.joined else None  # joined lines: from the file again, so it is read as it is
        flush_partial(partial := Partial(), read_file(f.path, task, out, partial, f.stats, data), task, out,
                      base_attribution(f.path))
        finish_file(f.stats, task, out)
    if rejected:
        lines = lines.without(~np.isin(lines.file_of, list(rejected)))
    for i, n in enumerate(np.bincount(lines.file_of, minlength=len(files))):
        f = files[i]
        if n and i not in rejected:
            f.stats.lines += int(n) + f.joined
            f.stats.wrappers["cri"] += int(n) + f.joined
            f.stats.partial_joined += f.joined
    return lines


def _read_batch(files: list[_File], access_logs: bool, task: ReadTask, out: PartWriter) -> None:
    lines = _lines(files)
    parts: list[tuple[np.ndarray, dict[str, pa.Array]]] = []
    if access_logs:
        columns, ok_np = _envoy(lines.text)
        kept = _reject_incomplete(files, lines, task, out, ok_np)
        if len(kept.text) < len(lines.text):  # rare: a file went line by line; read the others again without it
            lines = kept
            columns, ok_np = _envoy(lines.text)
        if ok_np.any():
            parts.append((np.flatnonzero(ok_np), columns))
            _count(files, lines.file_of[ok_np], "envoy-text")
        by_line = np.flatnonzero(~ok_np)
    else:
        lines = _reject_incomplete(files, lines, task, out)
        if len(lines.text) == 0:
            return
        by_line = _application_lines(files, lines, task, parts)
    parsed = _parse_line_by_line(by_line, files, lines, task)
    shifted = _judge_clocks(parts, parsed, files, lines)
    _write(parts, files, lines, shifted, task, out)
    for i, _, row in parsed:
        admit(row, files[i].stats, task, out)


def _envoy(text: pa.Array) -> tuple[dict[str, pa.Array], np.ndarray]:
    try:
        columns, ok = columnar.envoy_columns(text)
    except pa.ArrowException:  # not seen; should Arrow fail, the per-line parser reads every line
        return {}, np.zeros(len(text), bool)
    return columns, ok.to_numpy(zero_copy_only=False)


CRI_PREFIX_MAX = 64  # kubelet's timestamps are 20 to 35 characters; a longer one sends its line to the parser


def _first_space(raw: np.ndarray, lines: _Lines) -> np.ndarray:
    """Where each complete CRI line's timestamp ends: "YYYY-MM-DDT..." holds no space, so from byte 11 on,
    one byte position at a time over the lines not yet resolved (faster than a string kernel here)."""
    found = np.full(len(lines.starts), -1, np.int64)
    pending = np.arange(len(lines.starts))
    last = len(raw) - 1
    k = 11
    while len(pending) and k < CRI_PREFIX_MAX:
        hit = raw[np.minimum(lines.starts[pending] + k, last)] == 32
        found[pending[hit]] = k
        pending = pending[~hit]
        k += 1
    return found


def _json_only(lines: _Lines) -> tuple[np.ndarray, np.ndarray]:
    """The batch's bytes with every CRI prefix and every line that is not a JSON object blanked (spaces are
    JSON whitespace and blank lines are skipped), so each file's slice reads as its JSON lines, in order; and
    which lines are JSON. Column by column over the short prefixes: no large temporary arrays."""
    raw = np.frombuffer(lines.raw, np.uint8)
    first_space = lines.first_space if lines.first_space is not None else _first_space(raw, lines)
    msg_start = lines.starts + first_space + len(" stdout F ")
    is_json = (first_space > 0) & (msg_start < lines.ends)
    is_json[is_json] = raw[msg_start[is_json]] == ord("{")
    blanked = np.array(raw)
    json_starts = lines.starts[is_json]
    prefix = msg_start[is_json] - json_starts
    shortest = int(prefix.min()) if len(prefix) else 0
    for k in range(shortest):
        blanked[json_starts + k] = 32
    for k in range(shortest, int(prefix.max(initial=0))):
        longer = prefix > k
        blanked[json_starts[longer] + k] = 32
    for start, end in zip(lines.starts[~is_json].tolist(), lines.ends[~is_json].tolist(), strict=True):
        blanked[start:end] = 32
    return blanked, is_json


def _application_lines(files: list[_File], lines: _Lines, task: ReadTask,
                       parts: list[tuple[np.ndarray, dict[str, pa.Array]]]) -> np.ndarray:
    """Read the JSON lines into `parts`; return the lines left to the per-line parser."""
    blanked, is_json = _json_only(lines)
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
                raise columnar.NotExact("no columns")
            columns, request = columnar.app_columns(table, task.mapping)
        except (columnar.NotExact, pa.ArrowException):
            by_line.append(rows)
            continue
        request_np = request.to_numpy(zero_copy_only=False)
        _count(files, lines.file_of[rows[~request_np]], "json-other", nonrequest=True)
        _count(files, lines.file_of[rows[request_np]], "app-json")
        if request_np.any():
            parts.append((rows[request_np], {k: v.filter(request) for k, v in columns.items()}))
    return np.concatenate(by_line)


RUN_FILES = 32
_Run = list[tuple[int, int, np.ndarray]]  # per file: first byte, end byte, JSON lines


def _signature(lines: _Lines, line: int) -> tuple[str, ...] | None:
    try:
        obj = orjson.loads(lines.text[line].as_py().split(" ", 3)[3])
    except (orjson.JSONDecodeError, IndexError):
        return None
    return tuple(sorted(obj)) if isinstance(obj, dict) else None


def _runs(lines: _Lines, is_json: np.ndarray) -> Iterator[_Run]:
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
            return columnar.read_app_json(pa.py_buffer(blanked[first:last]), len(rows))
        except columnar.NotExact:
            return None

    if len(run) > 1:
        rows = np.concatenate([r for _, _, r in run])
        table = read(run[0][0], run[-1][1], rows)
        if table is not None:
            return [(rows, table)]
    return [(rows, read(first, last, rows)) for first, last, rows in run]


def _count(files: list[_File], file_index: np.ndarray, fmt: str, nonrequest: bool = False) -> None:
    for i, n in enumerate(np.bincount(file_index, minlength=len(files))):
        if n:
            files[i].stats.formats[fmt] += int(n)
            files[i].stats.columnar += int(n)
            if nonrequest:
                files[i].stats.nonrequest += int(n)


def _wrapper_ts(lines: pa.Array) -> pa.Array:
    """The time kubelet wrote each (CRI) line."""
    return columnar.ts_ms(columnar.nth(pc.split_pattern(lines, " ", max_splits=1), 0))


def _judge_clocks(parts: list[tuple[np.ndarray, dict[str, pa.Array]]], parsed: list[tuple[int, int, Row]],
                  files: list[_File], lines: _Lines) -> np.ndarray:
    """reader.FileClock for a batch: each file's first CLOCK_SAMPLE requests, in file order, whichever reader
    read them, decide whether its own clock is off; returns which files' requests take the node's time."""
    columnar_rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
    own = pa.concat_arrays([c["ts_ms"] for _, c in parts]) if parts else pa.array([], pa.int64())
    line = np.concatenate([columnar_rows, np.array([r for _, r, _ in parsed], np.int64)])
    order = np.argsort(line, kind="stable")  # lines are in file order, so this groups them by file too
    file_of = lines.file_of[line]
    sorted_files = file_of[order]
    group_start = np.searchsorted(sorted_files, sorted_files, side="left")
    sample = order[(np.arange(len(order)) - group_start) < CLOCK_SAMPLE]  # positions: columnar rows, then parsed
    from_columnar = sample[sample < len(columnar_rows)]
    own_sample = own.take(pa.array(from_columnar))
    have_own = pc.is_valid(own_sample).to_numpy(zero_copy_only=False)
    node = _wrapper_ts(lines.text.take(pa.array(columnar_rows[from_columnar[have_own]])))
    pair_file = [file_of[from_columnar[have_own]][node.is_valid().to_numpy(zero_copy_only=False)]]
    pair_offset = [pc.subtract(own_sample.filter(pa.array(have_own)), node).drop_null().to_numpy()]
    for k in sample[sample >= len(columnar_rows)].tolist():
        f, _, row = parsed[k - len(columnar_rows)]
        if row["_own"] and row["_node"] is not None:
            pair_file.append(np.array([f]))
            pair_offset.append(np.array([row["ts_ms"] - row["_node"]], np.int64))
    f_all, off_all = np.concatenate(pair_file).astype(np.int64), np.concatenate(pair_offset).astype(np.int64)
    shifted = np.zeros(len(files), bool)
    if len(f_all) == 0:
        return shifted
    order = np.lexsort((off_all, f_all))
    f_sorted, off_sorted = f_all[order], off_all[order]
    counts = np.bincount(f_sorted, minlength=len(files))
    starts = np.cumsum(counts) - counts
    judged = np.flatnonzero(counts >= CLOCK_MIN_PAIRS)
    median_low = off_sorted[starts[judged] + (counts[judged] - 1) // 2]  # statistics.median_low, per file
    for f, offset in zip(judged.tolist(), median_low.tolist(), strict=True):
        if abs(offset) > CLOCK_TOLERANCE_MS:
            files[f].stats.clock_offset_ms = offset
            shifted[f] = True
    return shifted


def _write(parts: list[tuple[np.ndarray, dict[str, pa.Array]]], files: list[_File], lines: _Lines,
           shifted: np.ndarray, task: ReadTask, out: PartWriter) -> None:
    if not parts:
        return
    rows = np.concatenate([r for r, _ in parts])
    table = pa.concat_tables([pa.table({name: columns.get(name, pa.nulls(len(r), SCHEMA.field(name).type))
                                        for name in SCHEMA.names if name not in _PER_FILE},
                                       schema=_ROW_SCHEMA) for r, columns in parts])
    ts = table.column("ts_ms").combine_chunks()
    retime = shifted[lines.file_of[rows]]
    if retime.any():  # the node's time for the requests of files whose own clock is off
        node = _wrapper_ts(lines.text.take(pa.array(rows[retime])))
        ts = pc.replace_with_mask(ts, pa.array(retime), pc.coalesce(node, ts.filter(pa.array(retime))))
        _add(files, lines.file_of[rows[retime]][node.is_valid().to_numpy(zero_copy_only=False)], "retimed")
    undated = pc.is_null(ts)
    missing = np.flatnonzero(undated.to_numpy(zero_copy_only=False))
    if len(missing):  # the line's own time, else the time kubelet wrote it
        ts = pc.replace_with_mask(ts, undated, _wrapper_ts(lines.text.take(pa.array(rows[missing]))))
    dated = pc.is_valid(ts)
    outside = pa.array(np.zeros(len(rows), bool))
    if task.start_ms is not None:
        outside = pc.or_(outside, pc.fill_null(pc.less(ts, task.start_ms), False))
    if task.end_ms is not None:
        outside = pc.or_(outside, pc.fill_null(pc.greater_equal(ts, task.end_ms), False))
    outside_np = outside.to_numpy(zero_copy_only=False)
    index = lines.file_of[rows]
    for name, mask in (("undated", ~dated.to_numpy(zero_copy_only=False)), ("out_of_window", outside_np),
                       ("requests", ~outside_np)):
        _add(files, index[mask], name)
    table = table.set_column(table.schema.get_field_index("ts_ms"), "ts_ms", ts)
    if outside_np.any():
        table = table.filter(pc.invert(outside))
        index = index[~outside_np]
    attrs = [base_attribution(f.path) for f in files]
    per_file: dict[str, list[str | None]] = {
        "namespace": [a[0] for a in attrs], "pod": [a[1] for a in attrs], "container": [a[2] for a in attrs],
        "file": [f.stats.path for f in files]}
    codes = pa.array(index.astype(np.int32))
    for name, values in per_file.items():  # the file index is the dictionary code: no string copied per row
        known = pa.array([v is not None for v in values])
        table = table.append_column(name, pa.DictionaryArray.from_arrays(
            pc.if_else(known.take(codes), codes, pa.scalar(None, pa.int32())),
            pa.array([v or "" for v in values], pa.string())))  # the entry of an unknown value is never used
    out.write(table.select(SCHEMA.names).cast(SCHEMA))


def _add(files: list[_File], file_index: np.ndarray, counter: str) -> None:
    for i, n in enumerate(np.bincount(file_index, minlength=len(files))):
        if n:
            setattr(files[i].stats, counter, getattr(files[i].stats, counter) + int(n))


_PER_FILE = ("namespace", "pod", "container", "file")
_ROW_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in _PER_FILE])


def _parse_line_by_line(rows: np.ndarray, files: list[_File], lines: _Lines,
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
        attr = attrs.get(i) or attrs.setdefault(i, base_attribution(files[i].path))
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
            stats = taken or read_file(path, task, writer, partial)
            results.append(stats)
            same_container = i + 1 < len(files) and files[i + 1].parent == path.parent and \
                attribution_from_path(path) is not None
            if taken is None:
                if not same_container:  # else the open message continues in the next file, and counts there
                    flush_partial(partial, stats, task, writer, base_attribution(path))
                finish_file(stats, task, writer)
        if batch is not None:
            batch.flush()
        return results
    finally:
        writer.close()
