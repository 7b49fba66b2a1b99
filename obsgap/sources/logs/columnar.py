"""Columnar reading of the common case: CRI files of Istio TEXT access logs and application JSON lines.

reader.py's per-line parser is the reference. This module reads with Arrow kernels only what it can
read exactly as that parser would, and hands everything else back to it: a whole file when any line is
not a complete CRI line (partial `P` lines, Docker JSON, plain text, CR line ends, invalid UTF-8), and
single lines when an access log is not in the strict shape below or Arrow's JSON reader could read a file's
JSON differently from orjson. tests/test_columnar.py compares the two paths row for row.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from obsgap.sources.logs import formats

# Python's `\S` (str patterns) excludes every character str.isspace() accepts; RE2's only ASCII ones.
_NOT_SPACE = (r"[^\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}"
              r"\x{205f}\x{3000}]")
# reader.split_cri for a complete (F) line whose timestamp holds no space
CRI_COMPLETE = r"^[^ ]{4}-[^ ]{5}T[^ ]* (?:stdout|stderr) F "
# ... holding an access log that formats.ENVOY_TEXT reads, in a shape where splitting at quotes and spaces
# gives the same fields: no other whitespace inside fields, up to the route name that ends the line
CRI_ENVOY = CRI_COMPLETE + re.sub(r"\(\?P<\w+>", "(?:", formats.ENVOY_TEXT.pattern.replace(r"\S", _NOT_SPACE).replace(
    r"(?P<start>[^\]]+)", r"(?P<start>[^\] ]+)"))
_RFC3339_UTC_MS = (r"^(?:[1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
                   r"\.\d{3}.*Z$")
_PLAIN_INT = r"^[0-9]{1,10}$"
ENVOY_QUOTE_PARTS = 15  # Istio's TEXT format has 7 quoted fields
_K8S_HEADS = ("kubernetes", "k8s", "resource")
_SCALAR_TEXT = (pa.string(), pa.large_string())


def nth(parts: pa.ListArray, i: int) -> pa.Array:
    """Element i of every list (all lists are known to be long enough); list_element is far slower."""
    return parts.values.take(pa.array(parts.offsets.to_numpy()[:-1] + i))


def blank_to_null(values: pa.Array) -> pa.Array:
    """formats._dash: "-" and "" mean absent."""
    absent = pc.or_(pc.equal(values, "-"), pc.equal(values, ""))
    return pc.if_else(absent, pa.scalar(None, values.type), values)


def map_unique(values: pa.Array, fn: Callable[[Any], Any], type_: pa.DataType) -> pa.Array:
    """fn over the distinct values only: for low-cardinality columns (cluster names, addresses)."""
    encoded = pc.dictionary_encode(values)
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], type_)
    return mapped.take(encoded.indices)


def map_rows(values: pa.Array, fn: Callable[[Any], Any], type_: pa.DataType) -> pa.Array:
    return pa.array([None if v is None else fn(v) for v in values.to_pylist()], type_)


def patch(values: pa.Array, wrong: pa.Array, fallback: pa.Array, fn: Callable[[Any], Any]) -> pa.Array:
    """`values` where the fast form applied; fn over `fallback`'s values where `wrong` is true."""
    rows = np.flatnonzero(wrong.to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return values
    out = values.to_pylist()
    for row, value in zip(rows, fallback.take(pa.array(rows)).to_pylist(), strict=True):
        out[row] = None if value is None else fn(value)
    return pa.array(out, values.type)


def _day_epoch(day: str | None) -> int | None:
    try:
        return (date.fromisoformat(day) - date(1970, 1, 1)).days * 86400 if day else None
    except ValueError:
        return None


def ts_ms(values: pa.Array) -> pa.Array:
    """formats.parse_ts_ms over strings: RFC 3339 UTC with milliseconds or finer vectorised, the rest by it."""
    values = values.cast(pa.string())
    # parse_ts_ms's fast form: ".ddd" at 19, "Z" last; Arrow's ISO 8601 cast then checks the date and time as
    # fromisoformat does (it accepts year 0, Python does not)
    fast = pc.fill_null(pc.and_(pc.and_(pc.ends_with(values, "Z"), pc.greater_equal(pc.utf8_length(values), 24)),
                                pc.and_(pc.equal(pc.utf8_slice_codeunits(values, 19, 20), "."),
                                        pc.not_equal(pc.utf8_slice_codeunits(values, 0, 4), "0000"))), False)
    head = pc.utf8_slice_codeunits(pc.if_else(fast, values, "1970-01-01T00:00:00.000"), 0, 23)
    try:
        millis = pc.cast(pc.cast(head, pa.timestamp("ms")), pa.int64())
    except pa.ArrowInvalid:  # some line is not in that form: the exact, slower way
        return _ts_ms_checked(values)
    millis = pc.if_else(fast, millis, pa.scalar(None, pa.int64()))
    return patch(millis, pc.and_(pc.invert(fast), pc.is_valid(values)), values, formats.parse_ts_ms)


def _ts_ms_checked(values: pa.Array) -> pa.Array:
    fast = pc.fill_null(pc.match_substring_regex(values, _RFC3339_UTC_MS), False)
    head = pc.utf8_slice_codeunits(pc.if_else(fast, values, "1970-01-01T00:00:00.000"), 0, 23)
    try:  # Arrow's ISO 8601 parser refuses the dates and times fromisoformat refuses (year 0 is excluded above)
        millis = pc.cast(pc.cast(head, pa.timestamp("ms")), pa.int64())
    except pa.ArrowInvalid:
        day = map_unique(pc.utf8_slice_codeunits(head, 0, 10), _day_epoch, pa.int64())
        clock = pc.cast(pc.cast(pc.binary_join_element_wise("1970-01-01", pc.utf8_slice_codeunits(head, 10, 23), ""),
                                pa.timestamp("ms")), pa.int64())
        millis = pc.add(pc.multiply(day, 1000), clock)
    millis = pc.if_else(fast, millis, pa.scalar(None, pa.int64()))
    wrong = pc.and_(pc.or_(pc.invert(fast), pc.is_null(millis)), pc.is_valid(values))
    return patch(millis, wrong, values, formats.parse_ts_ms)


def numeric_ts_ms(values: pa.Array) -> pa.Array:
    """formats.parse_ts_ms over numbers: epoch seconds, milliseconds or nanoseconds by magnitude."""
    v = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(v) & (v > 0) & (v <= 1e20)
        ms = np.where(v > 1e17, v / 1e6, np.where(v > 1e11, v, v * 1000))
        out = np.where(ok, ms, 0).astype(np.int64)
    return pa.array(out, pa.int64(), mask=~ok | np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False)))


def int32_values(text: pa.Array, ascii_digits: bool = False) -> pa.Array:
    """formats.int32_or_none over strings (`ascii_digits`: the caller has checked they are)."""
    if ascii_digits:
        plain = pc.fill_null(pc.less_equal(pc.binary_length(text), 10), False)
    else:
        plain = pc.fill_null(pc.match_substring_regex(text, _PLAIN_INT), False)
    number = pc.cast(pc.if_else(plain, text, "0"), pa.int64())
    good = pc.and_(plain, pc.less_equal(number, formats.INT32_MAX))
    values = pc.cast(pc.if_else(good, number, 0), pa.int32())
    values = pc.if_else(good, values, pa.scalar(None, pa.int32()))
    return patch(values, pc.and_(pc.invert(plain), pc.is_valid(text)), text, formats.int32_or_none)


# --- Istio TEXT access logs ----------------------------------------------------------------------


def envoy_columns(lines: pa.Array) -> tuple[dict[str, pa.Array], pa.Array]:
    """Normalized columns of the CRI lines holding an access log in the strict shape, and the mask of those."""
    strict = pc.fill_null(pc.match_substring_regex(lines, CRI_ENVOY), False)
    quoted = pc.split_pattern(lines, '"')
    ok = pc.and_(strict, pc.equal(pc.list_value_length(quoted), ENVOY_QUOTE_PARTS))
    if not pc.all(ok).as_py():
        quoted = quoted.filter(ok)
    if len(quoted) == 0:
        return {}, ok
    start = _envoy_start(nth(quoted, 0))
    request = pc.split_pattern(nth(quoted, 1), " ", max_splits=2)
    outcome = pc.split_pattern(nth(quoted, 2), " ", max_splits=3)  # " code flags details term "
    sizes = pc.split_pattern(nth(quoted, 4), " ", max_splits=4)  # " rx tx dur ust "
    tail = pc.split_pattern(nth(quoted, 14), " ", max_splits=5)  # " cluster ulocal dlocal dremote ..."
    method = blank_to_null(nth(request, 0))
    dur = nth(sizes, 3)
    cluster = blank_to_null(nth(tail, 1))
    dlocal, uhost = blank_to_null(nth(tail, 3)), blank_to_null(nth(quoted, 13))
    parts = map_unique(cluster, lambda c: formats.cluster_parts(c)[:2],
                       pa.struct([("direction", pa.string()), ("port", pa.int32())]))
    direction = pc.fill_null(parts.field("direction"), "outbound")
    local_port = map_unique(dlocal, formats.addr_port, pa.int32())
    upstream_port = map_unique(uhost, formats.addr_port, pa.int32())
    outbound_port = pc.if_else(pc.fill_null(pc.not_equal(upstream_port, 0), False), upstream_port, local_port)
    # the same rule as formats.envoy_row: inbound, the port the request arrived on; outbound, the cluster's
    port = pc.if_else(pc.equal(direction, "inbound"), pc.coalesce(local_port, parts.field("port")),
                      pc.coalesce(parts.field("port"), outbound_port))
    timed = pc.not_equal(dur, "-")
    try:
        duration = pc.cast(pc.if_else(timed, dur, "0"), pa.float64())
    except pa.ArrowInvalid:  # digits beyond a double's range
        duration = map_rows(pc.if_else(timed, dur, "0"), float, pa.float64())
    duration = pc.if_else(timed, duration, pa.scalar(None, pa.float64()))
    n = len(quoted)
    columns = {
        "ts_ms": ts_ms(start), "origin": constant(n, "envoy"),
        "direction": direction, "method": method, "path": blank_to_null(nth(request, 1)),
        "protocol": pc.if_else(pc.equal(nth(request, 2), "-"), "tcp", nth(request, 2)),
        "status": int32_values(nth(outcome, 1), ascii_digits=True), "duration_ms": duration, "port": port,
        "authority": blank_to_null(nth(quoted, 11)), "upstream_cluster": cluster, "upstream_host": uhost,
        "downstream_local": dlocal, "downstream_remote": blank_to_null(nth(tail, 4)),
        "response_flags": blank_to_null(nth(outcome, 2)),
    }
    return columns, ok


ENVOY_START_CHARS = len("2026-11-25T04:01:26.687Z")  # %START_TIME% in Istio's default format


def _envoy_start(head: pa.Array) -> pa.Array:
    """The start time from "<cri prefix> [start] ": by position when it has the default width, else by splitting."""
    width = ENVOY_START_CHARS
    fixed = pc.equal(pc.utf8_slice_codeunits(head, -width - 3, -width - 2), "[")
    by_position = pc.utf8_slice_codeunits(head, -width - 2, -2)
    if pc.all(fixed).as_py():
        return by_position
    by_split = pc.utf8_slice_codeunits(nth(pc.split_pattern(head, " "), 3), 1, -1)
    return pc.if_else(fixed, by_position, by_split)


def constant(n: int, value: str) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value])).cast(pa.string())


# --- application JSON ----------------------------------------------------------------------------


class NotExact(Exception):
    """The columnar reading could differ from the per-line parser's (or Arrow failed): the parser takes it."""


@dataclass(frozen=True)
class _Node:
    path: tuple[str, ...]
    name: str  # the dotted key the path spells
    type: pa.DataType


def _nodes(schema: pa.Schema) -> list[_Node]:
    out: list[_Node] = []

    def walk(fields: Sequence[pa.Field], prefix: tuple[str, ...]) -> None:
        for f in fields:
            path = (*prefix, f.name)
            out.append(_Node(path, ".".join(path), f.type))
            if pa.types.is_struct(f.type):
                walk(list(f.type), path)

    walk(list(schema), ())
    return out


def _resolve(nodes: list[_Node], key: str) -> _Node | None:
    """The one schema path spelling `key`. Raises NotExact when several routes lead towards it, where the
    per-line lookup's answer would depend on which keys each line happens to carry."""
    route = sorted((n for n in nodes if n.name == key or key.startswith(n.name + ".")), key=lambda n: len(n.path))
    for parent, child in itertools.pairwise(route):
        if child.path[:len(parent.path)] != parent.path:
            raise NotExact(key)
    return route[-1] if route and route[-1].name == key else None


def _column(table: pa.Table, node: _Node) -> pa.Array:
    column: Any = table.column(node.path[0]).combine_chunks()
    for name in node.path[1:]:
        column = pc.struct_field(column, name)
    return column


class _AppFields:
    """Canonical field -> the file's columns that may hold it, in the per-line parser's priority order."""

    def __init__(self, table: pa.Table, mapping: Mapping[str, str] | None) -> None:
        self.table, self.mapping = table, mapping
        self.nodes = _nodes(table.schema)

    def candidates(self, name: str, keys: tuple[str, ...]) -> list[pa.Array]:
        if self.mapping and name in self.mapping:
            keys = (self.mapping[name],)
        out = []
        for key in keys:
            node = _resolve(self.nodes, key)
            if node is None or pa.types.is_null(node.type) or pa.types.is_struct(node.type) \
                    or pa.types.is_list(node.type) or pa.types.is_large_list(node.type):
                continue  # absent, or never a scalar: the per-line parser skips it too
            if not (node.type in _SCALAR_TEXT or pa.types.is_int64(node.type) or pa.types.is_float64(node.type)
                    or pa.types.is_boolean(node.type)):
                raise NotExact(f"{key}: {node.type}")
            out.append(_column(self.table, node))
        return out

    def present(self, key: str) -> bool:
        """Some line of the run has a scalar value at `key`."""
        columns = self.candidates("_present", (key,))
        return any(c.null_count < len(c) for c in columns)

    def everywhere(self, key: str) -> bool:
        """Every line of the run has a value at `key`."""
        columns = self.candidates("_present", (key,))
        return bool(columns) and all(c.null_count == 0 for c in columns)

    def first_present(self, name: str, convert: Callable[[pa.Array], pa.Array], type_: pa.DataType) -> pa.Array:
        """The first candidate holding a value, converted (a value that converts to nothing stays nothing)."""
        result = pa.nulls(self.table.num_rows, type_)
        for column in reversed(self.candidates(name, formats.APP_KEYS[name])):
            result = pc.if_else(pc.is_valid(column), convert(column), result)
        return result


def _text(column: pa.Array) -> pa.Array:
    """formats._s: strings as they are, integers as Python prints them; floats and booleans are ambiguous."""
    if column.type in _SCALAR_TEXT:
        return column.cast(pa.string())
    if pa.types.is_int64(column.type):
        return pc.cast(column, pa.string())
    raise NotExact(str(column.type))


def _ts(column: pa.Array) -> pa.Array:
    if column.type in _SCALAR_TEXT:
        return ts_ms(column)
    if pa.types.is_int64(column.type) or pa.types.is_float64(column.type):
        return numeric_ts_ms(column)
    raise NotExact(str(column.type))


def _schema(fields: _AppFields) -> formats.AppSchema | None:
    """formats.app_schema for a run of lines with the same keys. Raises NotExact where the per-line parser
    could decide differently from line to line: a schema marker missing on some lines, a bare duration key
    whose unit is unknown (the per-line parser reports it), or a schema that reads the URL as its own."""
    def present(key: str) -> bool:
        return fields.present(key)

    schema = formats.app_schema(present)
    if schema is not None and (schema.own_url or not all(fields.everywhere(k) for k in schema.markers)):
        raise NotExact(f"schema {schema.name}")
    if formats.unknown_unit_key(present, schema, fields.mapping):
        raise NotExact("duration without a unit")
    return schema


def _duration(fields: _AppFields, schema: formats.AppSchema | None) -> pa.Array:
    result = pa.nulls(fields.table.num_rows, pa.float64())
    for key, factor in reversed(formats.duration_keys(schema, fields.mapping)):
        for column in fields.candidates("_duration", (key,)):
            if pa.types.is_boolean(column.type):
                continue
            if column.type in _SCALAR_TEXT:
                value = map_rows(column, functools.partial(formats.duration_value, factor=factor), pa.float64())
            else:
                value = pc.multiply(pc.cast(column, pa.float64()), factor)
            result = pc.coalesce(value, result)
    return result


def _has_float(type_: pa.DataType) -> bool:
    if pa.types.is_floating(type_):
        return True
    if pa.types.is_struct(type_):
        return any(_has_float(f.type) for f in type_)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _has_float(type_.value_type)
    return False


def _non_finite(column: Any) -> bool:
    """NaN or Infinity anywhere in the column: orjson refuses such JSON, Arrow reads it."""
    if not _has_float(column.type):
        return False
    if pa.types.is_floating(column.type):
        return not pc.all(pc.fill_null(pc.is_finite(column), True)).as_py()
    if pa.types.is_struct(column.type):
        return any(_non_finite(pc.struct_field(column, f.name)) for f in column.type)
    return _non_finite(pc.list_flatten(column))


def read_app_json(text: pa.Buffer, rows: int) -> pa.Table:
    """`rows` newline-terminated JSON lines (one file's) as Arrow reads them; NotExact when that could differ
    from orjson's reading."""
    try:
        table = pa_json.read_json(pa.BufferReader(text), read_options=pa_json.ReadOptions(
            use_threads=False, block_size=max(1 << 20, text.size + 1)))
    except pa.ArrowException as exc:
        raise NotExact(str(exc)) from exc
    names = table.column_names
    if table.num_rows != rows or any(n.startswith(_K8S_HEADS) for n in names) \
            or "upstream_cluster" in names or ("start_time" in names and "response_code" in names):
        raise NotExact("not a plain application log")
    try:
        if any(_non_finite(table.column(i).combine_chunks()) for i in range(table.num_columns)):
            raise NotExact("non-finite number")
    except pa.ArrowException as exc:
        raise NotExact(str(exc)) from exc
    return table


def app_columns(table: pa.Table, mapping: Mapping[str, str] | None) -> tuple[dict[str, pa.Array], pa.Array]:
    """Normalized columns of application JSON lines (read by read_app_json) and the mask of requests."""
    fields = _AppFields(table, mapping)
    schema = _schema(fields)
    for key in ("method", "path", "url", "host", "status", "port", "ts"):
        for column in fields.candidates(key, formats.APP_KEYS[key]):
            if pa.types.is_boolean(column.type) or (pa.types.is_float64(column.type) and key != "ts"):
                raise NotExact(f"{key}: {column.type}")
    method = fields.first_present("method", _text, pa.string())
    path = fields.first_present("path", _text, pa.string())
    url = fields.first_present("url", _text, pa.string())
    status = fields.first_present("status", lambda c: int32_values(_text(c)), pa.int32())
    port = fields.first_present("port", lambda c: int32_values(_text(c)), pa.int32())
    authority = fields.first_present("host", _text, pa.string())
    request = pc.or_(pc.or_(pc.is_valid(method), pc.is_valid(path)), pc.is_valid(url))
    absolute = pc.fill_null(pc.match_substring(url, "://"), False)
    direction = constant(len(url), "inbound")
    given_path = path
    path = pc.if_else(pc.and_(pc.fill_null(pc.not_equal(url, ""), False), pc.is_null(path)), url, path)
    if pc.any(absolute).as_py():
        direction, authority, port, path = _absolute_urls(absolute, url, direction, authority, port, given_path, path)
    request = pc.and_(request, pc.or_(pc.or_(pc.is_valid(method), pc.is_valid(path)),
                                      pc.not_equal(direction, "inbound")))
    duration = _duration(fields, schema)
    request = pc.and_(request, pc.or_(pc.is_valid(status), pc.is_valid(duration)))  # a completed exchange
    n = table.num_rows
    columns = {
        "ts_ms": fields.first_present("ts", _ts, pa.int64()), "origin": constant(n, "app"),
        "direction": direction, "method": method, "path": path,
        "protocol": constant(n, "http"), "status": status,
        "duration_ms": duration, "port": port, "authority": authority,
    }
    return columns, request


def _url_parts(url: str) -> tuple[bool, str | None, int | None, bool, str | None, int]:
    """(names a host, authority, port, port malformed, path, scheme's port) as formats.url_request reads it."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return False, None, None, False, None, 80
    try:
        port, malformed = parts.port, False
    except ValueError:
        port, malformed = None, True
    return (bool(hostname), parts.netloc.rpartition("@")[2], port, malformed, parts.path or None,
            443 if parts.scheme == "https" else 80)


_URL_PARTS = pa.struct([("host", pa.bool_()), ("authority", pa.string()), ("port", pa.int32()),
                        ("malformed", pa.bool_()), ("path", pa.string()), ("default_port", pa.int32())])


def _absolute_urls(absolute: pa.Array, url: pa.Array, direction: pa.Array, authority: pa.Array, port: pa.Array,
                   given_path: pa.Array, path: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """formats.url_request for the lines whose url is absolute (the callers' records), per distinct url."""
    parts = map_unique(pc.if_else(absolute, url, pa.scalar(None, pa.string())), _url_parts, _URL_PARTS)
    outbound = pc.fill_null(parts.field("host"), False)
    given_port = pc.if_else(pc.fill_null(pc.not_equal(port, 0), False), port, parts.field("default_port"))
    url_port = pc.if_else(pc.fill_null(pc.not_equal(parts.field("port"), 0), False), parts.field("port"), given_port)
    new_port = pc.if_else(pc.fill_null(parts.field("malformed"), False), port, url_port)
    url_path = pc.fill_null(parts.field("path"), "/")
    new_path = pc.if_else(pc.fill_null(pc.not_equal(given_path, ""), False), given_path, url_path)
    return (pc.if_else(outbound, "outbound", direction), pc.if_else(outbound, parts.field("authority"), authority),
            pc.if_else(outbound, new_port, port),
            pc.if_else(absolute, pc.if_else(outbound, new_path, given_path), path))
