"""A batch of clean CRI files as one Arrow array of lines, and what the bytes around each line say."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.clock import CLOCK_MIN_PAIRS, CLOCK_SAMPLE, CLOCK_TOLERANCE_MS
from obsgap.sources.logs.framing import node_ts_ms
from obsgap.sources.logs.parts import Row
from obsgap.sources.logs.task import FileStats


@dataclass
class BatchFile:
    path: Path
    data: bytes
    stats: FileStats
    joined: int = 0
    """CRI partial lines already joined into `data`"""
    wrapper: str = "cri"
    """How the lines came (cri, or docker-json whose records `data` holds as CRI lines)"""
    clock_preset: bool = False
    """A range that does not begin its file: `stats` already holds the file's clock decision (reader.head_clock)"""
    raw: bytes | None = None
    """A piece of a large gzip file as it was inflated, for the per-line reader should the batch decline it"""


@dataclass
class BatchLines:
    """Every line of a batch: the text with its newline, the index of its file, and where it starts and ends
    (at its newline) in `raw`, the batch's bytes."""

    text: pa.Array
    file_of: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    raw: bytes
    first_space: np.ndarray | None = None
    """where each line's CRI timestamp ends (-1: not found), once known"""

    def without(self, keep: np.ndarray) -> BatchLines:
        return BatchLines(self.text.filter(pa.array(keep)), self.file_of[keep], self.starts[keep], self.ends[keep],
                      self.raw, None if self.first_space is None else self.first_space[keep])


def read_lines(files: list[BatchFile]) -> BatchLines:
    raw = b"".join(f.data for f in files)
    ends = np.flatnonzero(np.frombuffer(raw, np.uint8) == 10)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    offsets = np.zeros(len(ends) + 1, np.int64)
    offsets[1:] = ends + 1
    text = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(raw))
    file_ends = np.cumsum([len(f.data) for f in files])
    return BatchLines(text.cast(pa.string()), np.searchsorted(file_ends, ends, side="right"), starts, ends, raw)


def json_only(lines: BatchLines) -> tuple[np.ndarray, np.ndarray]:
    """The batch's bytes with every CRI prefix and every line that is not a JSON object blanked (spaces are
    JSON whitespace and blank lines are skipped), so each file's slice reads as its JSON lines, in order; and
    which lines are JSON. Column by column over the short prefixes: no large temporary arrays."""
    raw = np.frombuffer(lines.raw, np.uint8)
    first_space = lines.first_space if lines.first_space is not None else first_space_at(raw, lines.starts)
    is_json = _json_messages(raw, lines.starts, lines.ends, first_space)
    msg_start = lines.starts + first_space + len(" stdout F ")
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


def complete_by_bytes(lines: BatchLines) -> np.ndarray:
    """complete_by_regex from the bytes around each line's first space (found once, and used again for JSON): an ASCII
    "YYYY-MM-DDT..." timestamp, " stdout F " or " stderr F ", and 30 characters (counted for the short
    lines that are not ASCII)."""
    raw = np.frombuffer(lines.raw, np.uint8)
    first_space = lines.first_space if lines.first_space is not None else first_space_at(raw, lines.starts)
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


CRI_PREFIX_MAX = 64  # kubelet's timestamps are 20 to 35 characters; a longer one sends its line to the parser


def any_json_message(lines: BatchLines, rows: np.ndarray) -> bool:
    """Whether any of these lines (by index) holds a JSON message, by json_only's rule."""
    if len(rows) == 0:
        return False
    raw = np.frombuffer(lines.raw, np.uint8)
    starts = lines.starts[rows]
    first_space = lines.first_space[rows] if lines.first_space is not None else first_space_at(raw, starts)
    return bool(_json_messages(raw, starts, lines.ends[rows], first_space).any())


def _json_messages(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray, first_space: np.ndarray) -> np.ndarray:
    """Which lines' messages (after "<time> stdout F ") begin with `{`."""
    msg_start = starts + first_space + len(" stdout F ")
    is_json = (first_space > 0) & (msg_start < ends)
    is_json[is_json] = raw[msg_start[is_json]] == ord("{")
    return is_json


def first_space_at(raw: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Where each complete CRI line's timestamp ends: "YYYY-MM-DDT..." holds no space, so from byte 11 on,
    one byte position at a time over the lines not yet resolved (faster than a string kernel here)."""
    found = np.full(len(starts), -1, np.int64)
    pending = np.arange(len(starts))
    last = len(raw) - 1
    k = 11
    while len(pending) and k < CRI_PREFIX_MAX:
        hit = raw[np.minimum(starts[pending] + k, last)] == 32
        found[pending[hit]] = k
        pending = pending[~hit]
        k += 1
    return found


def judge_clocks(parts: list[tuple[np.ndarray, dict[str, pa.Array]]], parsed: list[tuple[int, int, Row]],
                  files: list[BatchFile], lines: BatchLines) -> np.ndarray:
    """FileClock for a batch: each file's first CLOCK_SAMPLE requests, in file order, whichever reader
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
    node = node_ts_ms(lines.text.take(pa.array(columnar_rows[from_columnar[have_own]])))
    pair_file = [file_of[from_columnar[have_own]][node.is_valid().to_numpy(zero_copy_only=False)]]
    pair_offset = [pc.subtract(own_sample.filter(pa.array(have_own)), node).drop_null().to_numpy()]
    for k in sample[sample >= len(columnar_rows)].tolist():
        f, _, row = parsed[k - len(columnar_rows)]
        if row["_own"] and row["_node"] is not None:
            pair_file.append(np.array([f]))
            pair_offset.append(np.array([row["ts_ms"] - row["_node"]], np.int64))
    f_all, off_all = np.concatenate(pair_file).astype(np.int64), np.concatenate(pair_offset).astype(np.int64)
    preset = np.array([f.clock_preset for f in files], bool)
    shifted = np.array([f.clock_preset and f.stats.clock_offset_ms is not None for f in files], bool)
    keep = ~preset[f_all]  # ranges that do not begin their file took the file's decision already
    f_all, off_all = f_all[keep], off_all[keep]
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
