"""The clock rule: whether a file's own timestamps can be trusted, judged from its first requests.

If the median of (own time - node time) over a file's first CLOCK_SAMPLE requests is beyond the tolerance, every
request of the file takes the node's time (kubelet's CRI time, or Docker's `time`). The per-line form
(FileClock) and the columnar form (batch_lines.judge_clocks) apply it alike; tests/test_columnar.py checks they agree.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from obsgap.sources.logs.parts import Row

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
