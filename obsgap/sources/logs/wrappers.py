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
    if data.startswith(b"\n") or b"\n\n" in data:
        return None
    lines = _lines(data)
    maybe = pc.match_substring_regex(lines, _MAYBE_WRAPPED)
    # vectorised first: only the few candidates go through unwrap
    if pc.any(maybe).as_py() and any(unwrap(line.rstrip("\n")) is not None
                                     for line in lines.filter(maybe).to_pylist()):
        return None
    return NO_NODE_TIME + data[:-1].replace(b"\n", b"\n" + NO_NODE_TIME) + b"\n"


DOCKER_KEYS = {"log", "stream", "time"}


CRI_MARKERS = (b" stdout F ", b" stderr F ", b" stdout P ", b" stderr P ")


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
    if b"\n\n" in data:
        return None
    try:
        table = pa_json.read_json(pa.BufferReader(data), parse_options=pa_json.ParseOptions(
            explicit_schema=pa.schema([(k, pa.string()) for k in sorted(DOCKER_KEYS)]),
            unexpected_field_behavior="error"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != data.count(b"\n") or any(table.column(k).null_count for k in DOCKER_KEYS):
        return None
    return _docker_by_insertion(table) or _docker_by_join(table)


def _docker_by_join(table: pa.Table) -> bytes | None:
    """docker_to_cri's general form: logs without their trailing newlines, joined with Arrow."""
    log = pc.utf8_rtrim(table.column("log").combine_chunks(), characters="\n")
    if pc.any(pc.or_(pc.match_substring(log, "\n"), pc.match_substring(log, "\r"))).as_py():
        return None
    lines = pc.binary_join_element_wise(table.column("time").combine_chunks(), table.column("stream").combine_chunks(),
                                        pa.scalar("F"), pc.binary_join_element_wise(log, "", "\n"), " ")
    lines = lines.cast(pa.large_string())  # no nulls: its value buffer is the lines, one after the other
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset:lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]


def _buffers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, value bytes) of a string column without nulls."""
    array = column.combine_chunks().cast(pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], np.int64)[array.offset:array.offset + len(array) + 1]
    return offsets, np.frombuffer(array.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]


def insert_sorted(base: np.ndarray, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.insert(base, at, values) for a sorted `at`, without the sort np.insert does."""
    out = np.empty(len(base) + len(values), np.uint8)
    where = at + np.arange(len(values))
    kept = np.ones(len(out), bool)
    kept[where] = False
    out[where] = values
    out[kept] = base
    return out


_STDOUT, _STDERR = np.frombuffer(b"stdout", np.uint8), np.frombuffer(b"stderr", np.uint8)


def _docker_by_insertion(table: pa.Table) -> bytes | None:
    """The common case of docker_to_cri, as byte insertions: every `log` ends in its one newline (which then ends
    the CRI line) and `stream` is stdout or stderr; the prefix `<time> <stream> F ` goes in before each log. None
    for anything else (docker_to_cri's general form takes it). Twice as fast as joining strings with Arrow."""
    n = table.num_rows
    log_offsets, log = _buffers(table.column("log"))
    if np.count_nonzero(log == 10) != n or not (np.diff(log_offsets) > 0).all() \
            or (n and not (log[log_offsets[1:] - log_offsets[0] - 1] == 10).all()) or np.count_nonzero(log == 13):
        return None
    stream_offsets, stream = _buffers(table.column("stream"))
    if not (np.diff(stream_offsets) == 6).all():
        return None
    streams = stream.reshape(n, 6)
    err = (streams == _STDERR).all(1)
    if not (err | (streams == _STDOUT).all(1)).all():
        return None
    time_offsets, time = _buffers(table.column("time"))
    middle = np.where(err[:, None], np.frombuffer(b" stderr F ", np.uint8), np.frombuffer(b" stdout F ", np.uint8))
    prefixes = insert_sorted(time, np.repeat(time_offsets[1:] - time_offsets[0], 10), middle.ravel())
    lines = insert_sorted(log, np.repeat(log_offsets[:-1] - log_offsets[0], np.diff(time_offsets) + 10), prefixes)
    return lines.tobytes()
