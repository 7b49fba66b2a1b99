"""A log file's bytes, and whether the columnar reader may take them whole (else the per-line reader streams it)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from obsgap.sources.logs.reader import split_cri

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
