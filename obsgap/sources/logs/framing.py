"""CRI framing: `<time> <stream> <P|F> <message>` lines, and `P` (partial) lines joined into their message.

Each rule in two forms side by side: per line (split_cri, messages) for the reference reader, and over a batch's
bytes (complete_by_bytes, join_partials, node_ts_ms) for the columnar reader; tests/test_columnar.py checks that
both split every line alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.timestamps import ts_ms
from obsgap.sources.logs.values import nth
from obsgap.sources.logs.wrappers import unwrap

if TYPE_CHECKING:
    from obsgap.sources.logs.batch_lines import BatchLines
    from obsgap.sources.logs.task import FileStats

# split_cri for a complete (F) line whose timestamp holds no space
CRI_COMPLETE = r"^[^ ]{4}-[^ ]{5}T[^ ]* (?:stdout|stderr) F "


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


def may_hold_partial_lines(data: bytes) -> bool:
    """A cheap pass first: " stdout P " and " stderr P " both put a space 8 bytes before a "P" set in spaces.
    (Three times faster here than the two substring searches it spares on almost every file.)"""
    b = np.frombuffer(data, np.uint8)
    p = np.flatnonzero(b[8:-1] == ord("P")) + 8
    return bool(len(p)) and bool(((b[p - 1] == 32) & (b[p + 1] == 32) & (b[p - 8] == 32)).any())


def join_partials(data: bytes) -> tuple[bytes, int] | None:
    """Each run of CRI `P` lines and the `F` line ending it, as one line, as `messages` joins them; None
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


def complete_by_regex(text: pa.Array) -> np.ndarray:
    """split_cri: a complete CRI line of at least 30 characters (here with its newline)."""
    return pc.and_(pc.fill_null(pc.match_substring_regex(text, CRI_COMPLETE), False),
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


def node_ts_ms(lines: pa.Array) -> pa.Array:
    """The time kubelet wrote each (CRI) line."""
    return ts_ms(nth(pc.split_pattern(lines, " ", max_splits=1), 0))


def continues(line: bytes) -> bool:
    """A CRI `P` line: its message goes on in the next line (the rule of framing.split_cri, on bytes)."""
    if len(line) < 30 or line[4:5] != b"-" or line[10:11] != b"T":
        return False
    parts = line.split(b" ", 3)
    return len(parts) >= 3 and parts[1] in (b"stdout", b"stderr") and parts[2] == b"P"
