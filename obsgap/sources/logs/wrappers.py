"""What shippers and tools wrap around a log message: Docker's json-file records, Fluent Bit's `json_lines`,
`kubectl logs --timestamps` and `--prefix`, stern, and bare `kubectl logs > file` output. Per line (unwrap) for
the reference reader; per file (docker_to_cri, bare_to_cri: converted to CRI lines exactly as unwrap reads them)
for the columnar reader. tests/test_columnar.py and tests/test_wrappers.py compare both."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

# `kubectl logs --prefix`: [pod/NAME/CONTAINER] message
_KUBECTL_PREFIX = re.compile(r"^\[pod/(?P<pod>[a-z0-9][a-z0-9.-]*)/(?P<container>[a-z0-9][a-z0-9-]*)\] (?P<msg>.*)$")


# stern: POD CONTAINER message (no colours), the message an access log or JSON
_STERN = re.compile(r"^(?P<pod>[a-z0-9][a-z0-9.-]*-[a-z0-9]+) (?P<container>[a-z0-9][a-z0-9-]*) (?P<msg>[\[{].*)$")


# `kubectl logs --timestamps`: RFC3339Nano then the message
_KUBECTL_TS = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (?P<msg>.*)$")


_WRAPPER_KEYS = ("stream", "time", "date", "kubernetes")


def unwrap(line: str) -> tuple[str, str, Any, dict[str, Any] | None] | None:
    """(wrapper name, message, the wrapper's timestamp, the wrapper object) of a line some shipper or tool
    wrapped around a log message, or None for a bare message. CRI is handled by the caller."""
    if line.startswith("{") and ('"log"' in line or '"kubernetes"' in line):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            inner = obj.get("log")
            if not isinstance(inner, str) and "kubernetes" in obj and isinstance(obj.get("message"), str) \
                    and obj["message"].lstrip().startswith(("[", "{")):
                inner = obj["message"]  # Fluent Bit / Vector pipelines that renamed `log`
            if isinstance(inner, str) and any(k in obj for k in _WRAPPER_KEYS):
                name = "fluent-bit" if "kubernetes" in obj else "docker-json"
                ts = obj.get("time") if obj.get("time") is not None else obj.get("date")
                return name, inner.rstrip("\n"), ts, obj  # Fluent Bit's `date` is epoch seconds
        return None
    if line.startswith("[pod/"):
        m = _KUBECTL_PREFIX.match(line)
        if m:
            inner = m["msg"]
            stamped = _KUBECTL_TS.match(inner)  # --prefix --timestamps
            ts = stamped["ts"] if stamped else None
            return ("kubectl-prefix", stamped["msg"] if stamped else inner, ts,
                    {"kubernetes": {"pod_name": m["pod"], "container_name": m["container"]}})
    if line[:1].isdigit():
        m = _KUBECTL_TS.match(line)
        # only when what follows is a message of its own (an access log, JSON, or a line that starts with its own
        # time): a format beginning with an unbracketed %START_TIME% is not a kubectl prefix
        if (m and m["msg"][:1] in ("[", "{")) or (m and m["msg"][:1].isdigit() and _KUBECTL_TS.match(m["msg"])):
            return "kubectl-timestamps", m["msg"], m["ts"], None
    if line[:1].isalnum():
        m = _STERN.match(line)
        if m:
            return "stern", m["msg"], None, {"kubernetes": {"pod_name": m["pod"], "container_name": m["container"]}}
    return None


def bare_to_cri(data: bytes) -> bytes | None:
    """Bare messages (`kubectl logs POD > POD.log`) as CRI lines without a node time, so the columnar reader can
    take them; None when some line is wrapped (kubectl --prefix or --timestamps, stern, Fluent Bit), blank or
    would need the per-line reader's unwrapping."""
    if not data:
        return b""
    lines = _lines(data)
    if len(lines) and (np.diff(np.frombuffer(lines.buffers()[1], np.int64)) < 2).any():
        return None  # a blank line: just its newline
    maybe = pc.match_substring_regex(lines, _MAYBE_WRAPPED)
    # vectorised first: only the few candidates go through unwrap
    if pc.any(maybe).as_py() and any(unwrap(line.rstrip("\n")) is not None
                                     for line in lines.filter(maybe).to_pylist()):
        return None
    # one pass and one copy: each newline gains the next line's prefix; the last one's is cut off by the view
    prefixed = data.replace(b"\n", b"\n" + NO_NODE_TIME)
    return b"".join((NO_NODE_TIME, memoryview(prefixed)[:-len(NO_NODE_TIME)]))


DOCKER_KEYS = {"log", "stream", "time"}


CRI_MARKER = re.compile(rb" std(?:out|err) [FP] ")
"""Any CRI line holds one (one regex pass over a file is three times faster than four substring searches)"""


# A CRI prefix with no time: the columnar reader's time kernels read it as null, as the per-line reader has no
# node time for a bare line (kubectl logs > file). 30 characters, as a CRI prefix has at least.
NO_NODE_TIME = b"0000-00-00T00:00:00Z stdout F "


# What unwrap could take for a wrapper (a superset: the candidates are then checked one by one)
_MAYBE_WRAPPED = (r'^(?:\[pod/|\d{4}-\d\d-\d\dT|[a-z0-9][a-z0-9.-]*-[a-z0-9]+ [a-z0-9][a-z0-9-]* [\[{]|'
                  r'\{.*"(?:log|kubernetes)")')


def _lines(data: bytes) -> pa.Array:
    """The lines of `data` (which ends with a newline), each with its newline, as one Arrow string array."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    offsets = np.zeros(len(ends) + 1, np.int64)
    offsets[1:] = ends + 1
    return pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))


def docker_to_cri(data: bytes) -> bytes | None:
    """Docker json-file records (`{"log": "...\\n", "stream": "stdout", "time": "..."}`) as the CRI lines
    `<time> <stream> F <log without its trailing newlines>`: each record one message, as the per-line reader
    reads it. None (the per-line reader then) for anything that would not convert to the very same messages:
    other keys, nulls, non-string values, blank lines, a newline or CR inside a message."""
    try:
        table = pa_json.read_json(pa.BufferReader(data), parse_options=pa_json.ParseOptions(
            explicit_schema=pa.schema([(k, pa.string()) for k in sorted(DOCKER_KEYS)]),
            unexpected_field_behavior="error"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # Arrow skips blank lines: fewer records than lines means some
    if table.num_rows != data.count(b"\n") or any(table.column(k).null_count for k in DOCKER_KEYS):
        return None
    return docker_lines(table)


def docker_lines(table: pa.Table) -> bytes | None:
    """The records' CRI lines, one per record, or None when a record's time, stream or message holds a newline
    or CR (its line would not be one message). Built by one `take` over the pieces of every line in order, whose
    value buffer is then the lines one after the other: no per-line work in Python, no byte-wide masks."""
    n = table.num_rows
    if n == 0:
        return b""
    time, stream, log = (table.column(k).combine_chunks() for k in ("time", "stream", "log"))
    middle = pc.binary_join_element_wise(" ", stream, " F ", "")  # the last argument is the separator
    lines = _interleave(time, middle, log) if _each_ends_in_newline(log) else None
    if lines is None or lines.count(b"\n") != n:  # messages without their newline, or with more than one
        lines = _interleave(time, middle, pc.binary_join_element_wise(pc.utf8_rtrim(log, characters="\n"), "\n", ""))
    return None if lines.count(b"\n") != n or b"\r" in lines else lines


def _interleave(*columns: pa.Array) -> bytes:
    """The values of row 0 of each column, then of row 1, ... as one byte string."""
    n = len(columns[0])
    pieces = pa.concat_arrays([c.cast(pa.large_string()) for c in columns])  # 64-bit offsets
    joined = pieces.take(pa.array(np.arange(len(columns) * n, dtype=np.int64).reshape(len(columns), n).T.ravel()))
    offsets = np.frombuffer(joined.buffers()[1], np.int64)[joined.offset:joined.offset + len(joined) + 1]
    values = joined.buffers()[2]
    return b"" if values is None else values.to_pybytes()[offsets[0]:offsets[-1]]


def _each_ends_in_newline(log: pa.Array) -> bool:
    offsets = np.frombuffer(log.buffers()[1], np.int32)[log.offset:log.offset + len(log) + 1]
    if not (np.diff(offsets) > 0).all():
        return False
    return bool((np.frombuffer(log.buffers()[2], np.uint8)[offsets[1:] - 1] == 10).all())
