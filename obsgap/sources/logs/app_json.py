"""Application JSON logs, read by schema: which keys hold method, path, URL, status, port, host and time, and in
which unit each duration key is (a key's suffix, ECS, OpenTelemetry, or a framework's schema: Echo, Caddy, pino-http,
nginx JSON, zap). A bare `latency`/`duration` with no known unit is left out and reported, never guessed.

Per line (parse_app_json) for the reference reader; per run of lines with the same keys (app_columns, on Arrow's
JSON reader) for the columnar reader, which raises NotExact wherever it could read differently, so that the
per-line parser takes those lines. tests/test_columnar.py compares both on generated lines.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.json_columns import SCALAR_TEXT, NotExact, envoy_shaped, text_values
from obsgap.sources.logs.parts import Row
from obsgap.sources.logs.timestamps import numeric_ts_ms, parse_ts_ms, ts_ms
from obsgap.sources.logs.values import as_text, constant, int32_or_none, int32_values, lookup, map_rows, map_unique

# canonical field -> candidate keys (flat dotted key or nested path), in priority order
APP_KEYS: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "time", "timestamp", "@timestamp"),
    "method": ("method", "http.method", "http.request.method", "request.method", "req.method"),
    "path": ("path", "url.path", "http.target", "uri", "request.path", "request.uri", "req.url"),
    "url": ("url", "url.full", "http.url"),
    "status": ("status", "status_code", "http.status_code", "http.response.status_code", "response.status",
               "res.statusCode"),
    "port": ("port", "server.port", "url.port"),
    "host": ("host", "http.host", "server.address", "url.domain", "request.host"),
}


# Duration keys whose unit the key itself (or its specification) states, with the factor to milliseconds.
DURATION_KEYS: tuple[tuple[str, float], ...] = (
    ("duration_ms", 1.0), ("latency_ms", 1.0), ("elapsed_ms", 1.0), ("took_ms", 1.0), ("response_time_ms", 1.0),
    ("request_time_ms", 1.0), ("duration_us", 1e-3), ("latency_us", 1e-3), ("duration_ns", 1e-6),
    ("latency_ns", 1e-6), ("duration_s", 1000.0), ("latency_s", 1000.0), ("duration_seconds", 1000.0),
    ("latency_seconds", 1000.0),
    ("event.duration", 1e-6),  # ECS: nanoseconds
    ("http.server.request.duration", 1000.0), ("http.client.request.duration", 1000.0),  # OpenTelemetry: seconds
)


# Keys that name a duration but not its unit: only a known schema (below) or --log-field says which it is.
BARE_DURATION_KEYS = ("duration", "latency", "elapsed", "took", "response_time", "request_time", "responseTime")


@dataclass(frozen=True)
class AppSchema:
    """A framework's access-log shape: recognised by keys only it writes, so its bare duration keys have a unit."""

    name: str
    markers: tuple[str, ...]
    """Every one of these keys is present (flat or nested)."""
    durations: tuple[tuple[str, float], ...]
    own_url: bool = False
    """Its absolute `url` is the line's own request (a server log), not a call it made."""
    source: str = ""


# Each from the framework's documentation or source (the example output its docs print).
APP_SCHEMAS: tuple[AppSchema, ...] = (
    AppSchema("echo", ("latency_human", "bytes_in", "bytes_out"), (("latency", 1e-6),),
              source="labstack/echo middleware/logger.go: latency is time.Duration as int64 nanoseconds "
                     "(docs example: latency 14743, latency_human 14.743µs)"),
    AppSchema("caddy", ("resp_headers", "request.method"), (("duration", 1000.0),),
              source="caddyserver/caddy modules/caddyhttp/server.go: duration in seconds (float)"),
    AppSchema("pino-http", ("responseTime", "req.method"), (("responseTime", 1.0),),
              source="pinojs/pino-http README: responseTime in milliseconds"),
    AppSchema("nginx-json", ("remote_addr", "body_bytes_sent"), (("request_time", 1000.0),),
              source="nginx $request_time: seconds with millisecond resolution"),
    AppSchema("zap", ("caller", "msg", "ts"), (("latency", 1000.0), ("duration", 1000.0), ("elapsed", 1000.0)),
              source="uber-go/zap NewProductionEncoderConfig: EncodeDuration = SecondsDurationEncoder (float "
                     "seconds; the string encoder writes its unit, which is read as written)"),
    AppSchema("ecs", ("ecs.version", "url.full", "url.path"), (), own_url=True,
              source="Elastic Common Schema: url.full and url.path of the request a server handled"),
)


_ALWAYS_DURATION = DURATION_KEYS


def app_schema(present: Any) -> AppSchema | None:
    """The first schema whose markers are all present; `present(key)` says whether a line (or a run of lines
    with the same keys) has the key."""
    for schema in APP_SCHEMAS:
        if all(present(k) for k in schema.markers):
            return schema
    return None


def duration_keys(schema: AppSchema | None, mapping: Mapping[str, str] | None) -> tuple[tuple[str, float], ...]:
    """The keys a line's duration is read from, in order, with their factor to milliseconds."""
    if mapping and "duration_ms" in mapping:
        return (mapped_duration(mapping["duration_ms"]),)
    return DURATION_KEYS + (schema.durations if schema else ())


def mapped_duration(spec: str) -> tuple[str, float]:
    """`--log-field duration_ms=KEY[:UNIT]` -> (KEY, factor to ms); without a unit the key holds milliseconds."""
    key, sep, unit = spec.rpartition(":")
    if sep and unit in _UNIT_MS and unit is not None:
        return key, _UNIT_MS[unit]
    return spec, 1.0


def unknown_unit_key(present: Any, schema: AppSchema | None, mapping: Mapping[str, str] | None) -> str | None:
    """A bare duration key (no unit in its name) that no schema or mapping explains, if the line has one."""
    if mapping and "duration_ms" in mapping:
        return None
    explained = {k for k, _ in schema.durations} if schema else set()
    return next((k for k in BARE_DURATION_KEYS if k not in explained and present(k)), None)


_UNIT = re.compile(r"^\s*([0-9.]+)\s*(ns|us|µs|ms|s|m)?\s*$")


_UNIT_MS: dict[str | None, float] = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0,
                                     None: 1.0}


_KNOWN_KEYS = (frozenset(k for keys in APP_KEYS.values() for k in keys) | frozenset(k for k, _ in DURATION_KEYS)
               | frozenset(BARE_DURATION_KEYS) | frozenset(k for s in APP_SCHEMAS for k in s.markers))


_KNOWN_PREFIXES = frozenset(".".join(k.split(".")[:i]) for k in _KNOWN_KEYS for i in range(1, k.count(".") + 1))


def _flatten_known(obj: dict[str, Any]) -> dict[str, Any]:
    """Every known dotted key present in `obj`, flat or nested (or mixed), in one scan of the object.

    A flat key wins over the same path through nested objects, as `lookup` does."""
    found: dict[str, Any] = {}
    nested: list[tuple[str, dict[str, Any]]] = []
    for k, v in obj.items():
        if k in _KNOWN_KEYS:
            found[k] = v
        if k in _KNOWN_PREFIXES and type(v) is dict:
            nested.append((k, v))
    while nested:
        prefix, node = nested.pop()
        for k, v in node.items():
            full = f"{prefix}.{k}"
            if full in _KNOWN_KEYS and full not in found:
                found[full] = v
            if full in _KNOWN_PREFIXES and type(v) is dict:
                nested.append((full, v))
    return found


def duration_value(value: Any, factor: float) -> float | None:
    """Milliseconds from a duration field's value: a number in the key's unit, or a string with its own unit."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) * factor
    m = _UNIT.match(str(value))
    if m and m.group(1).count(".") <= 1 and m.group(1) != ".":
        unit = m.group(2)
        return float(m.group(1)) * (_UNIT_MS[unit] if unit else factor)
    return None


def _duration_ms(obj: Mapping[str, Any], keys: tuple[tuple[str, float], ...],
                 heads: set[str] | None = None) -> float | None:
    for key, factor in keys:
        duration = duration_value(lookup(obj, key, heads), factor)
        if duration is not None:
            return duration
    return None


def url_request(url: str | None, path: str | None, port: int | None,
                authority: str | None) -> tuple[str, str | None, int | None, str | None]:
    """(direction, authority, port, path) of an application line given its `url` field: an absolute URL
    names the server called, so the line is the caller's (outbound) record."""
    if url and "://" in url:
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket
            return "inbound", authority, port, path
        if hostname:
            with contextlib.suppress(ValueError):  # a malformed port in the URL: keep what we have
                port = parts.port or port or (443 if parts.scheme == "https" else 80)
            return "outbound", parts.netloc.rpartition("@")[2], port, path or parts.path or "/"
    elif url and path is None:
        path = url
    return "inbound", authority, port, path


def parse_app_json(obj: Mapping[str, Any], mapping: Mapping[str, str] | None = None) -> Row | None:
    """An application request line: one that records a completed HTTP exchange (a method, path or URL, and a
    status or duration); None otherwise. Durations are read only where their unit is known (the key, the
    framework's schema, or --log-field); a bare `latency`/`duration` otherwise is left out and named in the
    row's `_unknown_unit` for the reader to report."""

    known = _flatten_known(obj) if type(obj) is dict else {}

    def field_value(name: str) -> Any:
        if mapping and name in mapping:
            value = lookup(obj, mapping[name])
            return None if isinstance(value, Mapping | list) else value
        for key in APP_KEYS[name]:
            value = known.get(key)
            if value is not None and type(value) not in (dict, list):
                return value
        return None

    def present(key: str) -> bool:
        return known.get(key) is not None

    method = as_text(field_value("method"))
    path = as_text(field_value("path"))
    url = as_text(field_value("url"))
    status = int32_or_none(field_value("status"))
    if method is None and path is None and url is None:
        return None
    schema = app_schema(present)
    source = obj if mapping and "duration_ms" in mapping else known
    duration = _duration_ms(source, duration_keys(schema, mapping))
    if status is None and duration is None:
        return None  # no outcome: a log line that mentions a URL, not a request
    port = int32_or_none(field_value("port"))
    authority = as_text(field_value("host"))
    if schema is not None and schema.own_url and path is not None:
        direction, authority = "inbound", authority or _url_authority(url)
    else:
        direction, authority, port, path = url_request(url, path, port, authority)
    if method is None and path is None and direction == "inbound":
        return None  # a bare "status" key in an unrelated log line is not a request
    row = {
        "ts_ms": parse_ts_ms(field_value("ts")), "origin": "app", "direction": direction,
        "method": method, "path": path, "protocol": "http", "status": status,
        "duration_ms": duration, "port": port, "authority": authority, "upstream_cluster": None,
        "upstream_host": None, "downstream_local": None, "downstream_remote": None, "response_flags": None,
    }
    if duration is None:
        unknown = unknown_unit_key(present, schema, mapping)
        if unknown:
            row["_unknown_unit"] = unknown
    return row


def _url_authority(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    with contextlib.suppress(ValueError):
        return urlsplit(url).netloc.rpartition("@")[2] or None
    return None


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
            if not (node.type in SCALAR_TEXT or pa.types.is_int64(node.type) or pa.types.is_float64(node.type)
                    or pa.types.is_boolean(node.type)):
                raise NotExact(f"{key}: {node.type}")
            out.append(_column(self.table, node))
        return out

    def values(self, key: str) -> pa.Array | None:
        """The column at `key` whatever its type: an object or a list is a value too (parse_app_json's present)."""
        node = _resolve(self.nodes, key)
        return None if node is None or pa.types.is_null(node.type) else _column(self.table, node)

    def present(self, key: str) -> bool:
        """Some line of the run has a value at `key`."""
        column = self.values(key)
        return column is not None and column.null_count < len(column)

    def everywhere(self, key: str) -> bool:
        """Every line of the run has a value at `key`."""
        column = self.values(key)
        return column is not None and column.null_count == 0

    def first_present(self, name: str, convert: Callable[[pa.Array], pa.Array], type_: pa.DataType) -> pa.Array:
        """The first candidate holding a value, converted (a value that converts to nothing stays nothing)."""
        result = pa.nulls(self.table.num_rows, type_)
        for column in reversed(self.candidates(name, APP_KEYS[name])):
            result = pc.if_else(pc.is_valid(column), convert(column), result)
        return result


def _ts(column: pa.Array) -> pa.Array:
    if column.type in SCALAR_TEXT:
        return ts_ms(column)
    if pa.types.is_int64(column.type) or pa.types.is_float64(column.type):
        return numeric_ts_ms(column)
    raise NotExact(str(column.type))


def _schema(fields: _AppFields) -> AppSchema | None:
    """app_schema for a run of lines with the same keys. Raises NotExact where the per-line parser
    could decide differently from line to line: a schema marker missing on some lines, or a bare duration key
    whose unit is unknown (the per-line parser reports it)."""
    def present(key: str) -> bool:
        return fields.present(key)

    schema = app_schema(present)
    if schema is not None and not all(fields.everywhere(k) for k in schema.markers):
        raise NotExact(f"schema {schema.name}")
    return schema


def _unknown_units(fields: _AppFields, schema: AppSchema | None) -> pa.Array:
    """unknown_unit_key per line: the first bare duration key (no unit in its name) the line has and no schema or
    mapping explains, else null."""
    result = pa.nulls(fields.table.num_rows, pa.string())
    if fields.mapping and "duration_ms" in fields.mapping:
        return result
    explained = {k for k, _ in schema.durations} if schema else set()
    for key in reversed([k for k in BARE_DURATION_KEYS if k not in explained]):
        column = fields.values(key)
        if column is not None:
            result = pc.if_else(pc.is_valid(column), key, result)
    return result


def _duration(fields: _AppFields, schema: AppSchema | None) -> pa.Array:
    result = pa.nulls(fields.table.num_rows, pa.float64())
    for key, factor in reversed(duration_keys(schema, fields.mapping)):
        for column in fields.candidates("_duration", (key,)):
            if pa.types.is_boolean(column.type):
                continue
            if column.type in SCALAR_TEXT:
                value = map_rows(column, functools.partial(duration_value, factor=factor), pa.float64())
            else:
                value = pc.multiply(pc.cast(column, pa.float64()), factor)
            result = pc.coalesce(value, result)
    return result


def app_columns(table: pa.Table, mapping: Mapping[str, str] | None) -> tuple[dict[str, pa.Array], pa.Array]:
    """Normalized columns of application JSON lines (read by read_json_lines) and the mask of requests."""
    if envoy_shaped(table.column_names):  # the per-line reader tries these as access logs first
        raise NotExact("an access log's keys")
    fields = _AppFields(table, mapping)
    schema = _schema(fields)
    for key in ("method", "path", "url", "host", "status", "port", "ts"):
        for column in fields.candidates(key, APP_KEYS[key]):
            if pa.types.is_boolean(column.type) or (pa.types.is_float64(column.type) and key != "ts"):
                raise NotExact(f"{key}: {column.type}")
    method = fields.first_present("method", text_values, pa.string())
    path = fields.first_present("path", text_values, pa.string())
    url = fields.first_present("url", text_values, pa.string())
    status = fields.first_present("status", lambda c: int32_values(text_values(c)), pa.int32())
    port = fields.first_present("port", lambda c: int32_values(text_values(c)), pa.int32())
    authority = fields.first_present("host", text_values, pa.string())
    request = pc.or_(pc.or_(pc.is_valid(method), pc.is_valid(path)), pc.is_valid(url))
    absolute = pc.fill_null(pc.match_substring(url, "://"), False)
    direction = constant(len(url), "inbound")
    given_path = path
    path = pc.if_else(pc.and_(pc.fill_null(pc.not_equal(url, ""), False), pc.is_null(path)), url, path)
    if schema is not None and schema.own_url:
        # a server's log of the requests it served (ECS): its url is its own request, whatever host it names
        if given_path.null_count:
            raise NotExact("a line of a server's log without its path")  # parse_app_json reads it as a call
        given = pc.fill_null(pc.not_equal(authority, ""), False)  # `authority or ...`: an empty one is none
        authority = pc.if_else(given, authority, map_unique(url, _url_authority, pa.string()))
    elif pc.any(absolute).as_py():
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
        UNKNOWN_UNIT: pc.if_else(pc.is_null(duration), _unknown_units(fields, schema), pa.scalar(None, pa.string())),
    }
    return columns, request


UNKNOWN_UNIT = "_unknown_unit"
"""app_columns' column of the bare duration key a request's duration was not read from (parse_app_json's
`_unknown_unit`): counted per file, not written."""


def _url_parts(url: str) -> tuple[bool, str | None, int | None, bool, str | None, int]:
    """(names a host, authority, port, port malformed, path, scheme's port) as url_request reads it."""
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
    """url_request for the lines whose url is absolute (the callers' records), per distinct url."""
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
