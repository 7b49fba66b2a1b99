"""A log file's bytes (whole, a range of a plain file, or pieces of a large gzip file), and whether the columnar
reader may take them (else the per-line reader streams them)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from obsgap.sources.logs.framing import continues, join_partials, may_hold_partial_lines
from obsgap.sources.logs.wrappers import CRI_MARKER, bare_to_cri, docker_to_cri

LARGEST_FILE = 256 * 1024 * 1024  # larger files are streamed line by line rather than held in memory


def read_span(path: Path, span: tuple[int, int]) -> bytes:
    """One range of a plain file (plan.split cuts only plain files, at message ends)."""
    with path.open("rb") as f:
        f.seek(span[0])
        return f.read(span[1] - span[0])


def open_stream(path: Path) -> IO[bytes]:
    """A file's bytes as a stream, gunzipped when it is gzip (whatever its name)."""
    raw = path.open("rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def clean_bytes(path: Path, span: tuple[int, int] | None = None) -> tuple[bytes, int, str] | None:
    """The file's bytes (or its range's) when the columnar reader may take them whole: see `clean`. None sends the
    file to the per-line reader (which reports what is wrong); a gzip file inflating past LARGEST_FILE raises
    TooLarge, to be read in pieces (gzip_pieces)."""
    try:
        if span is not None:
            raw = read_span(path, span)  # plan.split: a plain file's range, at most about TASK_BYTES
        elif path.stat().st_size > LARGEST_FILE:
            return None
        else:
            raw = path.read_bytes()
        data = gunzip(raw, LARGEST_FILE) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error):
        return None
    if data is None:
        raise TooLarge(str(path))
    return clean(data)


class TooLarge(Exception):
    """A gzip file that inflates past LARGEST_FILE: read it in pieces rather than whole."""


def clean(data: bytes) -> tuple[bytes, int, str] | None:
    """Bytes the columnar reader may take (UTF-8 without CR line ends, every CRI partial message in them
    complete), with partial lines joined, how many partial lines were joined, and the wrapper the lines came in
    (`cri`, `docker-json` converted to CRI lines exactly as the per-line reader unwraps them, or "" for bare lines);
    None when the per-line reader must read them."""
    if b"\r" in data:
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if data and not data.endswith(b"\n"):
        data += b"\n"
    wrapper = "cri"
    if data.startswith(b'{"log":'):
        converted = docker_to_cri(data)
        if converted is None:
            return None
        data, wrapper = converted, "docker-json"
    elif data and not CRI_MARKER.search(data):
        bare = bare_to_cri(data)
        if bare is None:
            return None
        data, wrapper = bare, ""
    if may_hold_partial_lines(data) and (b" stdout P " in data or b" stderr P " in data):
        joined = join_partials(data)
        return None if joined is None else (*joined, wrapper)
    return data, 0, wrapper


PIECE_BYTES = 32 * 1024 * 1024


def gzip_pieces(path: Path, piece_bytes: int | None = None) -> Iterator[bytes]:
    """A gzip file's inflated bytes in pieces of about `piece_bytes`, each ending at the end of a message (never
    after a CRI `P` line), so that each piece reads alone as the whole file would. Raises EOFError or zlib.error
    where the file is corrupt or truncated, after the pieces before it."""
    size = piece_bytes or PIECE_BYTES
    pending = b""
    with open_stream(path) as stream:
        while chunk := stream.read(size):
            pending += chunk
            cut = last_message_end(pending)
            if cut > 0:
                yield pending[:cut]
                pending = pending[cut:]
    if pending:
        yield pending


def last_message_end(data: bytes) -> int:
    """The offset just after the last complete line of `data` that ends a message (not a `P` line), or 0."""
    end = data.rfind(b"\n")
    while end >= 0:
        start = data.rfind(b"\n", 0, end) + 1
        if not continues(data[start:end]):
            return end + 1
        end = start - 1
    return 0


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
