"""The clock rule: whether a file's own timestamps can be trusted, judged from its first requests.

If the median of (own time - node time) over a file's first CLOCK_SAMPLE requests is beyond the tolerance, every
request of the file takes the node's time (kubelet's CRI time, or Docker's `time`). The per-line form
(FileClock) and the columnar form (judge_clocks) apply it alike; tests/test_columnar.py checks they agree.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.framing import node_ts_ms
from obsgap.sources.logs.parts import Row

if TYPE_CHECKING:
    from obsgap.sources.logs.batch_lines import BatchFile, BatchLines

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
    """Holds a file's first requests until its clock is judged, then lets every request through.
    Rows carry `_own` (the line had its own time) and `_node` (the node's time, or None)."""

    pending: list[Row] = field(default_factory=list)
    decided: bool = False
    offset_ms: int | None = None
    head: Callable[[], int | None] | None = None
    """For a range that does not begin its file: the file's own decision, asked for only when a request of the
    range could be retimed (it has both its own and the node's time); until then rows go straight on."""

    def resolve(self) -> int | None:
        """Take the file's decision now (for a range that does not begin its file)."""
        if self.head is not None:
            self.offset_ms, self.decided, self.head = self.head(), True, None
        return self.offset_ms

    def offer(self, row: Row) -> list[Row]:
        """The rows that may go on now (none while the clock is being judged)."""
        if self.head is not None:
            if row["_own"] and row["_node"] is not None:
                self.resolve()
            return [row]
        if self.decided:
            return [row]
        self.pending.append(row)
        return self.decide() if len(self.pending) >= CLOCK_SAMPLE else []

    def decide(self) -> list[Row]:
        """Judge the clock on the rows held so far (fewer than the sample at a file's end); return them."""
        if not self.decided:
            pairs = [(r["ts_ms"], r["_node"]) for r in self.pending if r["_own"] and r["_node"] is not None]
            self.offset_ms = clock_offset(pairs)
            self.decided = True
        pending, self.pending = self.pending, []
        return pending


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
