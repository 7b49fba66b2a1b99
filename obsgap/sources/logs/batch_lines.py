"""A batch of clean CRI files as one Arrow array of lines, and what the bytes around each line say."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs import columnar
from obsgap.sources.logs.reader import FileStats


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


def complete_by_regex(text: pa.Array) -> np.ndarray:
    """reader.split_cri: a complete CRI line of at least 30 characters (here with its newline)."""
    return pc.and_(pc.fill_null(pc.match_substring_regex(text, columnar.CRI_COMPLETE), False),
                   pc.greater_equal(pc.utf8_length(text), 31)).to_numpy(zero_copy_only=False)


def complete_by_bytes(lines: BatchLines) -> np.ndarray:
    """complete_by_regex from the bytes around each line's first space (found once, and used again for JSON): an ASCII
    "YYYY-MM-DDT..." timestamp, " stdout F " or " stderr F ", and 30 characters (counted for the short
    lines that are not ASCII)."""
    raw = np.frombuffer(lines.raw, np.uint8)
    first_space = lines.first_space if lines.first_space is not None else first_space_at(raw, lines)
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


def first_space_at(raw: np.ndarray, lines: BatchLines) -> np.ndarray:
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


def json_only(lines: BatchLines) -> tuple[np.ndarray, np.ndarray]:
    """The batch's bytes with every CRI prefix and every line that is not a JSON object blanked (spaces are
    JSON whitespace and blank lines are skipped), so each file's slice reads as its JSON lines, in order; and
    which lines are JSON. Column by column over the short prefixes: no large temporary arrays."""
    raw = np.frombuffer(lines.raw, np.uint8)
    first_space = lines.first_space if lines.first_space is not None else first_space_at(raw, lines)
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
