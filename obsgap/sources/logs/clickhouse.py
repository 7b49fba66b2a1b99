"""Logs in ClickHouse (`--clickhouse-url`), read with the aggregation pushed down: never a raw row.

The OpenTelemetry Collector's ClickHouse exporter writes every log line to `otel_logs` (Timestamp, Body,
ResourceAttributes with `k8s.namespace.name`/`k8s.pod.name`/`k8s.container.name`, LogAttributes). Here the
normalized request rows the file readers produce are one relation, `requests`, computed in ClickHouse from the
same definitions: each Envoy TEXT format's compiled pattern (envoy_format, bound as a query parameter and matched
with ClickHouse's RE2, as Python's re matches it), Istio's JSON keys, the application JSON keys, duration units and
schemas (app_json), and the meaning of Envoy's fields (envoy_fields' rules, in their SQL form below). One scan
groups the requests by everything the summaries read (summary.QUERIES), so only those groups come back. Every
value that comes from outside (patterns, keys, pod names, paths) is a bound parameter; only integers are formatted
into SQL.

`chdb:PATH` runs the same SQL in-process on the ClickHouse engine (PyPI chdb) over a local data directory;
`http(s)://host:8123` reaches a server through clickhouse-connect (user and password from files).
The clock rule is applied per container (the file readers: per file); application text access logs (NCSA,
uvicorn, morgan) are matched with app_text's own patterns.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from obsgap.errors import InputError, SourceError
from obsgap.sources.logs.app_json import APP_KEYS, APP_SCHEMAS, BARE_DURATION_KEYS, DURATION_KEYS, mapped_duration
from obsgap.sources.logs.app_text import TEXT_FORMATS
from obsgap.sources.logs.clock import CLOCK_MIN_PAIRS, CLOCK_SAMPLE, CLOCK_TOLERANCE_MS
from obsgap.sources.logs.envoy_format import ISTIO_JSON, AccessFormat, JsonFormat, TextFormat, candidates
from obsgap.sources.logs.envoy_format import builtin_text_formats as _builtin
from obsgap.sources.logs.table import LogStats
from obsgap.sources.reports import ClickHouseReport

MARGIN_MS = 10 * 60 * 1000
NCSA_TIME_CH = "%d/%b/%Y:%H:%i:%S %z"
"""app_text.NCSA_TIME in ClickHouse's parseDateTime (MySQL-style: %i is minutes)."""
"""Rows are selected by the Collector's Timestamp this much around the window: a line's own time decides."""


@dataclass(frozen=True)
class ClickHouseOptions:
    url: str
    """`http(s)://host:8123` (clickhouse-connect) or `chdb:PATH` (in-process)."""
    table: str = "otel_logs"
    database: str = "default"
    user_file: Path | None = None
    password_file: Path | None = None
    namespace_key: str = "k8s.namespace.name"
    pod_key: str = "k8s.pod.name"
    container_key: str = "k8s.container.name"


class Connection(Protocol):
    def query(self, sql: str, params: Mapping[str, Any]) -> pd.DataFrame: ...

    def close(self) -> None: ...


def _ch_literal(value: Any) -> str:
    """A query parameter's value as ClickHouse parses it for its declared type (strings and string arrays): its
    escapes are decoded, so a backslash (in a pattern, a path) goes in doubled."""
    if isinstance(value, list | tuple):
        return "[" + ",".join("'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for v in value) + "]"
    return str(value).replace("\\", "\\\\")


class _Chdb:
    def __init__(self, path: str) -> None:
        try:
            from chdb import session
        except ImportError as exc:
            raise InputError("--clickhouse-url chdb:PATH runs ClickHouse in-process: install it with "
                             "`pip install 'obsgap[chdb]'` (or give http(s)://host:8123)") from exc
        if not Path(path).is_dir():
            raise InputError(f"--clickhouse-url chdb:{path}: no such data directory")
        self.session = session.Session(path)

    def query(self, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
        try:
            result = self.session.query(sql, "DataFrame", params={k: _ch_literal(v) for k, v in params.items()})
        except Exception as exc:  # chdb raises its own RuntimeError subclasses
            raise SourceError(f"clickhouse (chdb): {str(exc).splitlines()[0][:300]}") from exc
        return result if isinstance(result, pd.DataFrame) else pd.DataFrame()

    def close(self) -> None:
        self.session.close()


class _Http:
    def __init__(self, o: ClickHouseOptions) -> None:
        import clickhouse_connect

        user = o.user_file.read_text().strip() if o.user_file else "default"
        password = o.password_file.read_text().strip() if o.password_file else ""
        try:
            self.client = clickhouse_connect.get_client(dsn=o.url, username=user, password=password,
                                                        database=o.database)
        except Exception as exc:
            raise SourceError(f"clickhouse: cannot connect to {re.sub(r'//[^@/]*@', '//', o.url)}: "
                              f"{type(exc).__name__}") from exc

    def query(self, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
        try:
            return self.client.query_df(sql, parameters=dict(params))
        except Exception as exc:
            raise SourceError(f"clickhouse: {str(exc).splitlines()[0][:300]}") from exc

    def close(self) -> None:
        self.client.close()


def connect(o: ClickHouseOptions) -> Connection:
    if o.url.startswith("chdb:"):
        return _Chdb(o.url[len("chdb:"):])
    if o.url.startswith(("http://", "https://")):
        return _Http(o)
    raise InputError(f"--clickhouse-url {o.url}: give http(s)://host:8123 or chdb:PATH")


# --- SQL forms of the rules, each beside the Python rule it mirrors ------------------------------------------


def dash(expr: str) -> str:
    """values.dash: `-` and "" are absent."""
    return f"nullIf(nullIf({expr}, '-'), '')"


def addr_port(expr: str) -> str:
    """values.addr_port: the digits after the last colon."""
    return f"toInt32OrNull(extract(ifNull({expr}, ''), ':([0-9]{{1,10}})$'))"


def cluster_direction(cluster: str) -> str:
    """envoy_fields.cluster_parts, direction."""
    return (f"multiIf(match(ifNull({cluster}, ''), '^(inbound|outbound)(\\\\||_\\\\.)'), "
            f"extract({cluster}, '^(inbound|outbound)'), startsWith(ifNull({cluster}, ''), "
            f"'InboundPassthroughCluster'), 'inbound', {cluster} IN ('PassthroughCluster', 'BlackHoleCluster'), "
            f"'outbound', NULL)")


def cluster_port(cluster: str) -> str:
    """envoy_fields.cluster_parts, port."""
    return f"toInt32OrNull(extract(ifNull({cluster}, ''), '^(?:inbound|outbound)(?:\\\\||_\\\\.)([0-9]{{1,10}})'))"


def ts_ms_of_text(expr: str) -> str:
    """timestamps.parse_ts_ms for strings (and envoy_fields' epoch-seconds start times)."""
    return (f"multiIf(match(ifNull({expr}, ''), '^[0-9]{{9,11}}(\\\\.[0-9]+)?$'), "
            f"toInt64(toFloat64({expr}) * 1000), length(ifNull({expr}, '')) >= 19 AND substr({expr}, 5, 1) = '-', "
            f"toUnixTimestamp64Milli(parseDateTime64BestEffortOrNull({expr}, 3, 'UTC')), NULL)")


def ts_ms_of_number(expr: str) -> str:
    """timestamps.parse_ts_ms for numbers: epoch s, ms or ns by magnitude."""
    return (f"multiIf({expr} IS NULL OR {expr} <= 0 OR {expr} > 1e20, NULL, {expr} > 1e17, "
            f"toInt64({expr} / 1e6), {expr} > 1e11, toInt64({expr}), toInt64({expr} * 1000))")


class _Params:
    """Bound parameters: every value from outside goes in as {name:Type}, once per distinct value (so equal
    expressions stay equal, and ClickHouse computes them once). JSON keys read become columns jk<N>, each looked
    up once per line."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._names: dict[tuple[str, str], str] = {}
        self.keys: dict[str, str] = {}

    def add(self, value: Any, type_: str = "String") -> str:
        marker = (repr(value), type_)
        if marker not in self._names:
            name = f"p{len(self.values)}"
            self.values[name] = value
            self._names[marker] = f"{{{name}:{type_}}}"
        return self._names[marker]

    def key(self, key: str) -> str:
        """The column holding the raw JSON value at `key`."""
        if key not in self.keys:
            self.keys[key] = f"jk{len(self.keys)}"
        return self.keys[key]

    def key_columns(self) -> str:
        """Each key read once per JSON line: flat (`{"a.b": 1}`) first, as values.lookup prefers it, else nested."""
        cols = []
        for key, alias in self.keys.items():
            flat = f"JSONExtractRaw(body, {self.add(key)})"
            if "." in key:
                nested = f"JSONExtractRaw(body, {', '.join(self.add(k) for k in key.split('.'))})"
                flat = f"if({flat} != '', {flat}, {nested})"
            cols.append(f"if(is_json, {flat}, '') AS {alias}")
        return ",\n        ".join(cols) or "0 AS jk_none"


def _raw(p: _Params, key: str) -> str:
    return p.key(key)


def _text(raw: str) -> str:
    """values.as_text of a raw JSON value: strings unquoted, numbers as written; objects, arrays, null absent."""
    return (f"multiIf({raw} = '' OR {raw} = 'null' OR startsWith({raw}, '{{') OR startsWith({raw}, '['), NULL, "
            f"startsWith({raw}, '\"'), JSONExtractString({raw}), {raw})")


def _json_value(p: _Params, key: str) -> str:
    """A scalar at a dotted key, flat or nested (values.lookup), as text; NULL when absent or not a scalar."""
    return _text(_raw(p, key))


def _json_has(p: _Params, key: str) -> str:
    """The key holds a value, of any type (a schema's marker may be an object, as Caddy's resp_headers)."""
    raw = _raw(p, key)
    return f"({raw} != '' AND {raw} != 'null')"


def _first_json(p: _Params, keys: Sequence[str]) -> str:
    return f"coalesce({', '.join(_json_value(p, k) for k in keys)})" if keys else "NULL"


def _duration_sql(p: _Params, key: str, factor: float) -> str:
    """app_json.duration_value: a number in the key's unit, or a string with its own unit."""
    v = _json_value(p, key)
    unit = f"extract(ifNull({v}, ''), '^\\\\s*[0-9.]+\\\\s*(ns|us|µs|ms|s|m)\\\\s*$')"
    unit_ms = (f"multiIf({unit} = 'ns', 1e-6, {unit} IN ('us', 'µs'), 1e-3, {unit} = 'ms', 1.0, {unit} = 's', "
               f"1000.0, {unit} = 'm', 60000.0, {factor!r})")
    return (f"if(match(ifNull({v}, ''), '^\\\\s*[0-9]*\\\\.?[0-9]+\\\\s*(ns|us|µs|ms|s|m)?\\\\s*$'), "
            f"toFloat64OrNull(extract({v}, '([0-9]*\\\\.?[0-9]+)')) * {unit_ms}, NULL)")


@dataclass
class Relation:
    """The SQL of the normalized request rows (`requests`) and of every parsed line (`parsed`), with their
    parameters."""

    parsed: str
    params: dict[str, Any] = field(default_factory=dict)


def _duration_columns(p: _Params, mapping: Mapping[str, str] | None) -> tuple[str, str]:
    """(an application line's duration in ms, the bare duration key of unknown unit it carries, or NULL)."""
    if mapping and "duration_ms" in mapping:
        key, factor = mapped_duration(mapping["duration_ms"])
        return _duration_sql(p, key, factor), "NULL"
    base = [_duration_sql(p, k, f) for k, f in DURATION_KEYS]
    per_schema = [f"schema = {i}, coalesce({', '.join(_duration_sql(p, k, f) for k, f in s.durations)})"
                  for i, s in enumerate(APP_SCHEMAS) if s.durations]
    extra = f"multiIf({', '.join(per_schema)}, NULL)" if per_schema else "NULL"
    unknown_arms = []
    for k in BARE_DURATION_KEYS:
        explained = [i for i, s in enumerate(APP_SCHEMAS) if k in {d for d, _ in s.durations}]
        cond = _json_has(p, k) + (f" AND schema NOT IN ({', '.join(map(str, explained))})" if explained else "")
        unknown_arms.append(f"{cond}, {p.add(k)}")
    return f"coalesce({', '.join(base)}, {extra})", f"multiIf({', '.join(unknown_arms)}, NULL)"


_Z_TEXT = (r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}T[^\s]+\s+)?(?:trace|debug|info|warn|error)\s+access\s+"
           r"connection (?:complete|failed)\s")
"""ztunnel.parse_ztunnel_text's line shape, in RE2."""
_Z_KEYS = ("src.addr", "dst.addr", "dst.hbone_addr", "dst.service", "direction", "duration", "error")


def _ztunnel_columns(p: _Params) -> str:
    """ztunnel.parse_ztunnel_*: whether a line is ztunnel's access log (TEXT or JSON), and its fields, computed only
    for the lines that can be (a substring test first: the other lines pay nothing else)."""
    maybe = "(position(body, 'connection ') > 0 AND position(body, 'access') > 0)"
    scope, message = (_text(f"JSONExtractRaw(body, {p.add(k)})") for k in ("scope", "message"))
    cols = [f"({maybe} AND is_json AND {scope} = 'access' AND {message} IN ('connection complete', "
            f"'connection failed')) AS z_json",
            f"({maybe} AND NOT is_json AND text_fmt < 0 AND match(body, {p.add(_Z_TEXT)})) AS z_text"]
    escaped = p.add(r"\\(.)")  # Rust's Debug escapes: a backslash and the character it escapes
    for key in _Z_KEYS:
        pattern = p.add(r"(?:^|\s)" + re.escape(key) + r'=("(?:[^"\\]|\\.)*"|[^\s]*)')
        raw = f"extract(body, {pattern})"
        text = (f"if(length({raw}) >= 2 AND startsWith({raw}, '\"') AND endsWith({raw}, '\"'), "
                f"replaceRegexpAll(substring({raw}, 2, length({raw}) - 2), {escaped}, {p.add(chr(92) + '1')}), "
                f"{raw})")
        json = _text(f"JSONExtractRaw(body, {p.add(key)})")  # ztunnel's keys are flat: "dst.addr"
        cols.append(f"if(z_json OR z_text, nullIf(if(z_json, {json}, {text}), ''), NULL) AS "
                    f"z_{key.replace('.', '_')}")
    time_pattern = p.add(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[^\s]+)\s")
    time_json = _text(f"JSONExtractRaw(body, {p.add('time')})")
    cols.append(f"multiIf(z_json, {time_json}, z_text, nullIf(extract(body, {time_pattern}), ''), NULL) AS z_time")
    return ",\n      ".join(cols)


def _app_text_columns(p: _Params) -> tuple[str, str, str]:
    """Application text access logs (app_text.TEXT_FORMATS): which format a line is, its groups, its fields."""
    text_patterns = [p.add("^" + pattern.pattern) for _, pattern in TEXT_FORMATS]
    text_which = "multiIf(" + ", ".join(f"match(body, {t}), {i}" for i, t in enumerate(text_patterns)) + ", -1)"
    text_groups = "multiIf(" + ", ".join(f"app_text_fmt = {i}, extractGroups(body, {t})"
                                          for i, t in enumerate(text_patterns)) + ", [])"

    def text_group(name: str) -> str:
        arms = [f"app_text_fmt = {i}, nullIf(tg[{pattern.groupindex[name]}], '')"
                for i, (_, pattern) in enumerate(TEXT_FORMATS) if name in pattern.groupindex]
        return f"multiIf({', '.join(arms)}, NULL)" if arms else "NULL"

    fields = ", ".join(f"{text_group(n)} AS t_{n}" for n in ("method", "path", "status", "ms", "client", "time"))
    return text_which, text_groups, fields


def build_relation(o: ClickHouseOptions, start_ms: int, end_ms: int, access_formats: tuple[AccessFormat, ...],
                   mapping: Mapping[str, str] | None) -> Relation:
    p = _Params()
    custom_text, custom_json = candidates(access_formats)
    text_formats: list[TextFormat] = [*custom_text, *_builtin()]
    json_formats: list[JsonFormat] = [*custom_json, ISTIO_JSON]
    patterns = [p.add("^" + f.pattern.pattern.replace(r"\s*\Z", r"\s*$")) for f in text_formats]
    which = "multiIf(" + ", ".join(f"match(body, {pat}), {i}" for i, pat in enumerate(patterns)) + ", -1)"
    groups = "multiIf(" + ", ".join(f"text_fmt = {i}, extractGroups(body, {pat})"
                                     for i, pat in enumerate(patterns)) + ", [])"

    def text_field(name: str) -> str:
        arms = []
        for i, f in enumerate(text_formats):
            idx = next((k + 1 for k, op in enumerate(f.operators) if op.field == name), None)
            if idx is not None:
                arms.append(f"text_fmt = {i}, g[{idx}]")
        return f"multiIf({', '.join(arms)}, NULL)" if arms else "NULL"

    def json_is(f: JsonFormat) -> str:
        if f is ISTIO_JSON:
            return (f"(is_json AND ({_json_has(p, 'upstream_cluster')} OR ({_json_has(p, 'start_time')} AND "
                    f"{_json_has(p, 'response_code')})))")
        needed = [k for k, v in f.keys.items() if v in ("start", "code")]
        return "(is_json AND " + " AND ".join(f"mapContains(jm, {p.add(k)})" for k in needed) + ")"

    def json_field(name: str) -> str:
        arms = []
        for i, f in enumerate(json_formats):
            key = next((k for k, v in f.keys.items() if v == name), None)
            if key is not None:
                arms.append(f"json_fmt = {i}, {_json_value(p, key)}")
        return f"multiIf({', '.join(arms)}, NULL)" if arms else "NULL"

    json_which = "multiIf(" + ", ".join(f"{json_is(f)}, {i}" for i, f in enumerate(json_formats)) + ", -1)"
    envoy_names = ("start", "method", "path", "protocol", "code", "flags", "duration", "upstream_host", "cluster",
                   "downstream_local", "downstream_remote", "authority")
    envoy_fields = ",\n      ".join(
        f"if(text_fmt >= 0, {dash(text_field(n))}, if(json_fmt >= 0, {dash(json_field(n))}, NULL)) AS e_{n}"
        for n in envoy_names)

    def app(name: str) -> str:
        keys = (mapping[name],) if mapping and name in mapping else APP_KEYS[name]
        return _first_json(p, keys)

    ts_keys = (mapping["ts"],) if mapping and "ts" in mapping else APP_KEYS["ts"]
    ts_raw = "coalesce(" + ", ".join(f"nullIf(nullIf({_raw(p, k)}, ''), 'null')" for k in ts_keys) + ", '')"

    markers = []
    for s in APP_SCHEMAS:
        markers.append("(" + " AND ".join(_json_has(p, k) for k in s.markers) + ")")
    schema = "multiIf(" + ", ".join(f"{m}, {i}" for i, m in enumerate(markers)) + ", -1)"
    duration, unknown = _duration_columns(p, mapping)
    own_url = [i for i, s in enumerate(APP_SCHEMAS) if s.own_url]
    own_url_sql = f"schema IN ({', '.join(map(str, own_url))})" if own_url else "0"
    text_which, text_groups, app_text_fields = _app_text_columns(p)
    ztunnel = _ztunnel_columns(p)
    lo, hi = start_ms - MARGIN_MS, end_ms + MARGIN_MS
    ns_key, pod_key, c_key = p.add(o.namespace_key), p.add(o.pod_key), p.add(o.container_key)
    table = p.add(o.table, "Identifier")
    parsed = f"""parsed0 AS (
  SELECT *,
    multiIf(text_fmt >= 0, 'envoy-text', json_fmt >= 0, 'envoy-json',
            (z_json OR z_text) AND (z_dst_addr IS NOT NULL OR z_src_addr IS NOT NULL), 'ztunnel',
            is_json AND app_request, 'app-json', is_json, 'json-other', app_text_fmt >= 0, 'app-text',
            trim(body) = '', 'empty', 'unrecognized') AS kind,
    kind IN ('envoy-text', 'envoy-json') AND (startsWith(ifNull(e_cluster, ''), 'inbound-vip|')
                                              OR startsWith(ifNull(e_cluster, ''), 'inbound-pod|')) AS waypoint,
    if(kind IN ('envoy-text', 'envoy-json') AND startsWith(ifNull(e_upstream_host, ''), 'envoy://'),
       nullIf(replaceRegexpOne(if(startsWith(e_upstream_host, 'envoy://connect_originate/'), e_upstream_host, ''),
                               '^envoy://connect_originate/([^/]*)/?$', '\\1'), ''),
       e_upstream_host) AS e_real_upstream,
    coalesce(z_dst_hbone_addr, z_dst_addr) AS z_target,
    multiIf(waypoint, 'waypoint', kind IN ('envoy-text', 'envoy-json'), 'envoy', kind = 'ztunnel', 'ztunnel',
            'app') AS origin,
    kind = 'ztunnel' OR waypoint AS by_address,
    multiIf(waypoint, 'inbound', kind = 'ztunnel', if(z_direction = 'inbound', 'inbound', 'outbound'),
            kind IN ('envoy-text', 'envoy-json'), coalesce({cluster_direction('e_cluster')}, 'outbound'),
            {own_url_sql} AND a_path IS NOT NULL, 'inbound', url_host != '', 'outbound', 'inbound') AS direction,
    multiIf(kind IN ('envoy-text', 'envoy-json'), e_method, kind = 'app-text', t_method, a_method) AS method,
    multiIf(kind IN ('envoy-text', 'envoy-json'), e_path, kind = 'app-text', t_path,
            {own_url_sql} AND a_path IS NOT NULL, a_path,
            url_host != '', coalesce(a_path, nullIf(path(a_url), ''), '/'),
            coalesce(a_path, if(a_url IS NOT NULL AND position(a_url, '://') = 0, a_url, NULL))) AS path,
    multiIf(kind IN ('envoy-text', 'envoy-json'), coalesce(e_protocol, 'tcp'), kind = 'ztunnel', 'tcp',
            'http') AS protocol,
    multiIf(kind IN ('envoy-text', 'envoy-json'), coalesce(toInt32OrNull(e_code), if(kind = 'envoy-json', 0, NULL)),
            kind = 'app-text', toInt32OrNull(t_status), toInt32OrNull(a_status)) AS status,
    multiIf(kind IN ('envoy-text', 'envoy-json'), toFloat64OrNull(e_duration), kind = 'app-text', toFloat64OrNull(t_ms),
            kind = 'ztunnel', toFloat64OrNull(extract(ifNull(z_duration, ''), '^([0-9]+(?:\\.[0-9]+)?)ms$')),
            a_duration) AS duration_ms,
    multiIf(kind = 'app-text', NULL, waypoint, {addr_port('e_real_upstream')}, kind = 'ztunnel',
            {addr_port('z_target')}, kind IN ('envoy-text', 'envoy-json'),
            if(coalesce({cluster_direction('e_cluster')}, 'outbound') = 'inbound',
               coalesce({addr_port('e_downstream_local')}, {cluster_port('e_cluster')}),
               coalesce({cluster_port('e_cluster')}, nullIf({addr_port('e_real_upstream')}, 0),
                        {addr_port('e_downstream_local')})),
            url_host != '' AND NOT ({own_url_sql} AND a_path IS NOT NULL),
            coalesce(nullIf(toInt32(port(a_url)), 0), toInt32OrNull(a_port),
                     if(protocol(a_url) = 'https', 443, 80)),
            toInt32OrNull(a_port)) AS port,
    multiIf(kind IN ('envoy-text', 'envoy-json'), e_authority, kind = 'app-text', NULL, kind = 'ztunnel',
            z_dst_service,
            url_host != '', coalesce(a_host, nullIf(splitByChar('@', netloc(a_url))[-1], '')), a_host) AS authority,
    if(origin IN ('envoy', 'waypoint'), e_cluster, NULL) AS upstream_cluster,
    multiIf(origin IN ('envoy', 'waypoint'), e_real_upstream, origin = 'ztunnel', z_target, NULL) AS upstream_host,
    multiIf(waypoint, e_real_upstream, origin = 'envoy', e_downstream_local, origin = 'ztunnel', z_target,
            NULL) AS downstream_local,
    multiIf(origin IN ('envoy', 'waypoint'), e_downstream_remote, kind = 'app-text', t_client,
            origin = 'ztunnel', z_src_addr, NULL) AS downstream_remote,
    multiIf(origin IN ('envoy', 'waypoint'), e_flags, origin = 'ztunnel', if(z_error IS NOT NULL, 'error', NULL),
            NULL) AS response_flags,
    multiIf(origin = 'ztunnel', {ts_ms_of_text('z_time')}, origin IN ('envoy', 'waypoint'),
            {ts_ms_of_text('e_start')}, kind = 'app-text',
            toInt64(toUnixTimestamp(parseDateTimeOrNull(t_time, {p.add(NCSA_TIME_CH)}, 'UTC'))) * 1000,
            a_ts) AS own_ms
  FROM (
    SELECT *,
      {envoy_fields},
      {ztunnel},
      {app('method')} AS a_method, {app('path')} AS a_path, {app('url')} AS a_url,
      {app('status')} AS a_status, {app('port')} AS a_port, {app('host')} AS a_host,
      {schema} AS schema,
      {duration} AS a_duration,
      {unknown} AS unknown_unit,
      if(a_url IS NOT NULL AND position(a_url, '://') > 0, domain(a_url), '') AS url_host,
      if(startsWith({ts_raw}, '"'), {ts_ms_of_text(app('ts'))},
         {ts_ms_of_number(f"toFloat64OrNull({app('ts')})")}) AS a_ts,
      (a_method IS NOT NULL OR a_path IS NOT NULL OR a_url IS NOT NULL)
        AND (toInt32OrNull(a_status) IS NOT NULL OR a_duration IS NOT NULL)
        AND (a_method IS NOT NULL OR a_path IS NOT NULL OR url_host != '' OR (a_url IS NOT NULL
             AND position(a_url, '://') = 0)) AS app_request
    FROM (
      SELECT node_ms, body, namespace, pod, container, file, text_fmt, g, is_json, app_text_fmt, tg,
        {app_text_fields},
        {p.key_columns()},
        if(text_fmt < 0, {json_which}, -1) AS json_fmt
      FROM (
      SELECT toUnixTimestamp64Milli(Timestamp) AS node_ms, Body AS body,
        nullIf(ResourceAttributes[{ns_key}], '') AS namespace,
        nullIf(ResourceAttributes[{pod_key}], '') AS pod,
        nullIf(ResourceAttributes[{c_key}], '') AS container,
        concat('clickhouse:', ifNull(namespace, '?'), '/', ifNull(pod, '?'), '/', ifNull(container, '?')) AS file,
        {which} AS text_fmt,
        {groups} AS g,
        startsWith(body, '{{') AND isValidJSON(body) AS is_json,
        if(text_fmt < 0 AND NOT is_json AND match(body, '^[[:alnum:]]'), {text_which}, -1) AS app_text_fmt,
        if(app_text_fmt >= 0, {text_groups}, []) AS tg
      FROM {table}
      WHERE Timestamp >= fromUnixTimestamp64Milli(toInt64({lo})) AND Timestamp < fromUnixTimestamp64Milli(toInt64({hi}))
      )
    )
  )
)"""
    return Relation(parsed, p.values)


# The containers whose clock the rule judged off (ClickHouseTable asks CLOCK_SQL first): their requests take the
# node's time. Bound arrays, so the heavy parse runs once per query (a CTE joined to itself would run it twice).
PARSED_SQL = """parsed AS (
  SELECT *,
         if(has(arrayZip({skew_ns:Array(String)}, {skew_pod:Array(String)}, {skew_container:Array(String)}),
                (ifNull(namespace, ''), ifNull(pod, ''), ifNull(container, ''))), 1, 0) AS retimed,
         if(retimed = 1, node_ms, coalesce(own_ms, node_ms)) AS ts_ms
  FROM parsed0
)"""


_ROWS = "('envoy-text', 'envoy-json', 'app-json', 'app-text', 'ztunnel')"
"""The kinds of line that are rows of the table (requests; ztunnel's: connections), as the file readers count them."""
_REQUEST = f"kind IN {_ROWS} AND ts_ms >= {{start}} AND ts_ms < {{end}}"
_HOST = ("multiIf(startsWith({c}, '['), splitByString(']', substr({c}, 2))[1], "
         "length({c}) - length(replace({c}, ':', '')) > 1, {c}, splitByChar(':', {c})[1])")


# clock.py's rule, per container: the median_low of (own - node) time over its first CLOCK_SAMPLE requests (with
# at least CLOCK_MIN_PAIRS pairs); beyond the tolerance, its requests take the node's time (the Collector's
# Timestamp: kubelet's CRI time).
CLOCK_SQL = f"""clock AS (
  SELECT namespace, pod, container, arraySort(groupArray(own_ms - node_ms)) AS d,
         if(length(d) >= {CLOCK_MIN_PAIRS}, d[intDiv(length(d) - 1, 2) + 1], NULL) AS offset_ms
  FROM (SELECT ifNull(namespace, '') AS namespace, ifNull(pod, '') AS pod, ifNull(container, '') AS container,
               own_ms, node_ms,
               row_number() OVER (PARTITION BY namespace, pod, container ORDER BY node_ms) AS rn
        FROM parsed0 WHERE kind IN {_ROWS})
  WHERE rn <= {CLOCK_SAMPLE} AND own_ms IS NOT NULL
  GROUP BY namespace, pod, container
)"""


class ClickHouseTable:
    """The requests of a log store, parsed and aggregated where they live: one scan groups them by everything the
    summaries read (pod, container, origin, direction, port, status, authority, cluster, caller host, time bin;
    durations on a 2% log scale apart), and only those groups come back, into a local DuckDB relation `requests`
    with a request count `n` per row. Duck-typed like table.LogTable."""

    def __init__(self, conn: Connection, relation: Relation, start_ms: int, end_ms: int,
                 access_formats: tuple[AccessFormat, ...], agent_paths: pd.DataFrame, step_ms: int) -> None:
        import duckdb

        self.conn = conn
        self.start_ms, self.end_ms, self.step_ms = start_ms, end_ms, step_ms
        self.text_names = [f.name for f in [*candidates(access_formats)[0], *_builtin()]]
        self.json_names = [f.name for f in [*candidates(access_formats)[1], ISTIO_JSON]]
        self.sent: list[str] = []
        self.seconds: list[float] = []
        self.rows_returned = 0
        clock = self._fetch(f"WITH {relation.parsed},\n{CLOCK_SQL}\nSELECT namespace, pod, container, offset_ms "
                            f"FROM clock WHERE offset_ms IS NOT NULL AND abs(offset_ms) > {CLOCK_TOLERANCE_MS}",
                            relation.params)
        self.skewed = {f"clickhouse:{r.namespace or '?'}/{r.pod or '?'}/{r.container or '?'}": int(r.offset_ms)
                       for r in clock.itertuples(index=False)}
        self.relation = Relation(f"{relation.parsed},\n{PARSED_SQL}", relation.params | {
            "skew_ns": [str(r.namespace or "") for r in clock.itertuples(index=False)],
            "skew_pod": [str(r.pod or "") for r in clock.itertuples(index=False)],
            "skew_container": [str(r.container or "") for r in clock.itertuples(index=False)]})
        self.stats = self._stats()
        self.local = duckdb.connect()
        params = dict(self.relation.params)
        relation = self.relation
        params |= {"agent_ns": [str(v) for v in agent_paths["namespace"]],
                   "agent_pod": [str(v) for v in agent_paths["pod"]],
                   "agent_path": [str(v) for v in agent_paths["path"]]}
        within = _REQUEST.format(start=int(start_ms), end=int(end_ms))
        agent = ("(origin = 'app' AND direction = 'inbound' AND has(arrayZip({agent_ns:Array(String)}, "
                 "{agent_pod:Array(String)}, {agent_path:Array(String)}), (ifNull(namespace, ''), ifNull(pod, ''), "
                 "splitByChar('?', ifNull(path, ''))[1])))")
        groups = self._fetch(f"""WITH {relation.parsed}
SELECT if(by_address, NULL, namespace) AS namespace, if(by_address, NULL, pod) AS pod,
       if(by_address, origin, container) AS container, origin, direction, if(method IS NULL, NULL, 'HTTP') AS method,
       if({agent}, path, NULL) AS path, status, port, authority, upstream_cluster,
       if(pod IS NULL OR by_address, {_HOST.format(c="downstream_local")}, NULL) AS downstream_local,
       {_HOST.format(c="downstream_remote")} AS downstream_remote, file,
       if(origin = 'ztunnel', response_flags, NULL) AS response_flags,
       intDiv(ts_ms - {int(start_ms)}, {int(step_ms)}) AS bin,
       count() AS n, min(ts_ms) AS ts_min, max(ts_ms) AS ts_max
FROM parsed WHERE {within}
GROUP BY ALL""", params)
        durations = self._fetch(f"""WITH {relation.parsed}
SELECT if(by_address, NULL, namespace) AS namespace, if(by_address, NULL, pod) AS pod, origin,
       'inbound' AS direction, 'HTTP' AS method, if({agent}, path, NULL) AS path,
       exp((ceil(ln(greatest(duration_ms, 0.001)) / ln(1.02)) - 0.5) * ln(1.02)) AS duration_ms, count() AS n
FROM parsed WHERE {within} AND direction = 'inbound' AND duration_ms IS NOT NULL AND method IS NOT NULL
GROUP BY ALL""", params)
        self.local.register("groups_df", groups)
        self.local.register("durations_df", durations)
        self.local.execute("""CREATE TABLE requests AS SELECT
            CAST(ts_min AS BIGINT) AS ts_ms, namespace, pod, container, origin, direction, method, path,
            CAST(NULL AS VARCHAR) AS protocol, CAST(status AS INTEGER) AS status, CAST(NULL AS DOUBLE) AS duration_ms,
            CAST(port AS INTEGER) AS port, authority, upstream_cluster, CAST(NULL AS VARCHAR) AS upstream_host,
            downstream_local, downstream_remote, CAST(response_flags AS VARCHAR) AS response_flags, file,
            CAST(n AS BIGINT) AS n, CAST(ts_min AS BIGINT) AS ts_min, CAST(ts_max AS BIGINT) AS ts_max
            FROM groups_df""")
        self.local.execute("""CREATE TABLE durations_src AS SELECT namespace, pod, origin, direction, method, path,
            CAST(duration_ms AS DOUBLE) AS duration_ms, CAST(n AS BIGINT) AS n FROM durations_df""")
        self.local.unregister("groups_df")
        self.local.unregister("durations_df")

    def _fetch(self, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
        self.sent.append(sql)
        started = time.perf_counter()
        frame = self.conn.query(sql, params)
        self.seconds.append(round(time.perf_counter() - started, 2))
        self.rows_returned += len(frame)
        if frame.empty:
            return frame
        for col in frame.columns:  # ClickHouse's Nullable(String) may arrive as "" or NaN: one absent value
            if frame[col].dtype == object:
                frame[col] = frame[col].replace({"": None})
        return frame

    def query(self, sql: str, params: list[Any] | None = None, **tables: pd.DataFrame) -> pd.DataFrame:
        """A summary query over the aggregated rows, locally (DuckDB), as LogTable.query runs it."""
        for name, frame in tables.items():
            self.local.register(name, frame)
        try:
            return self.local.execute(sql, params or []).df()
        finally:
            for name in tables:
                self.local.unregister(name)

    def _stats(self) -> LogStats:
        sql = f"""WITH {self.relation.parsed}
SELECT kind, text_fmt, json_fmt, namespace, pod, container, unknown_unit,
       count() AS lines,
       countIf(kind IN {_ROWS} AND ts_ms >= {int(self.start_ms)}
               AND ts_ms < {int(self.end_ms)}) AS requests,
       countIf(kind IN {_ROWS} AND NOT (ts_ms >= {int(self.start_ms)}
               AND ts_ms < {int(self.end_ms)})) AS out_of_window,
       min(if(kind IN {_ROWS}, ts_ms, NULL)) AS first_ms,
       max(if(kind IN {_ROWS}, ts_ms, NULL)) AS last_ms,
       any(if(kind = 'unrecognized', substr(body, 1, 160), NULL)) AS sample,
       countIf(retimed = 1 AND kind IN {_ROWS}) AS retimed
FROM parsed GROUP BY ALL"""
        rows = self._fetch(sql, self.relation.params)
        formats: Counter[str] = Counter()
        access: Counter[tuple[str, str]] = Counter()
        spans: dict[str, tuple[int, int]] = {}
        unknown: Counter[tuple[str, str]] = Counter()
        unparsed: dict[str, tuple[int, str]] = {}
        skew: dict[str, tuple[int, int]] = {}
        lines = requests = out = 0
        for r in rows.itertuples(index=False):
            n = int(r.lines)
            lines += n
            requests += int(r.requests)
            out += int(r.out_of_window)
            formats[str(r.kind)] += n
            where = f"clickhouse:{r.namespace or '?'}/{r.pod or '?'}/{r.container or '?'}"
            if r.kind == "envoy-text" and int(r.text_fmt) >= 0:
                access[(where, self.text_names[int(r.text_fmt)])] += n
            elif r.kind == "envoy-json" and int(r.json_fmt) >= 0:
                access[(where, self.json_names[int(r.json_fmt)])] += n
            if not pd.isna(r.first_ms) and r.namespace and r.pod and r.container:
                path = f"/clickhouse/pods/{r.namespace}_{r.pod}_{'0' * 8}/{r.container}/0.log"
                lo, hi = spans.get(path, (int(r.first_ms), int(r.last_ms)))
                spans[path] = (min(lo, int(r.first_ms)), max(hi, int(r.last_ms)))
            if isinstance(r.unknown_unit, str) and r.unknown_unit and r.kind == "app-json":
                unknown[(where, r.unknown_unit)] += n
            if int(r.retimed or 0):
                had_skew = skew.get(where, (self.skewed.get(where, 0), 0))
                skew[where] = (had_skew[0], had_skew[1] + int(r.retimed))
            if r.kind == "unrecognized":
                had = unparsed.get(where, (0, ""))
                unparsed[where] = (had[0] + n, had[1] or str(r.sample or ""))
        return LogStats(
            files=len({(r.namespace, r.pod, r.container) for r in rows.itertuples(index=False)}), lines=lines,
            parsed=lines - formats["unrecognized"], unparsed=formats["unrecognized"], requests=requests,
            out_of_window=out, undated=0, invalid_utf8=0, joined_partial_lines=0, columnar_lines=0,
            formats={k: v for k, v in formats.items() if v}, wrappers={"clickhouse": lines},
            skipped_files=(), unparsed_by_file=tuple(sorted(((w, n, s) for w, (n, s) in unparsed.items()),
                                                            key=lambda x: -x[1])),
            access_formats=tuple((w, f, n) for (w, f), n in access.items()),
            unknown_units=tuple((w, k, n) for (w, k), n in unknown.most_common()),
            spans=tuple((path, lo, hi) for path, (lo, hi) in spans.items()),
            retimed=sum(n for _, n in skew.values()),
            clock_skew=tuple(sorted(((w, ms, n) for w, (ms, n) in skew.items()), key=lambda x: -abs(x[1]))),
        )

    def report(self) -> ClickHouseReport:
        return ClickHouseReport(len(self.sent), self.rows_returned, tuple(self.seconds),
                                tuple(q if len(q) < 4000 else q[:4000] + " …" for q in self.sent[:2]))

    def close(self, remove: bool = True) -> None:
        self.local.close()
        self.conn.close()
