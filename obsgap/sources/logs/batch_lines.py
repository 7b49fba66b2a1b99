"""A batch of clean CRI files as one Arrow array of lines, and what the bytes around each line say."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from obsgap.sources.logs.framing import first_space_at
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
