"""Parsers for one log message: Envoy TEXT and JSON access logs, and application JSON lines.

Each parser takes an already unwrapped message and returns a `Row` (a plain dict of the
normalized columns) or None when the message is not of its format.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from obsgap.sources.logs.envoy_format import ISTIO_JSON, JsonFormat, TextFormat, builtin_text_formats

Row = dict[str, Any]

# Istio's default TEXT format since 1.9 (DESIGN.md): the columnar reader's strict fast path. Every format, this
# one included, is read by its format string in envoy_format; this pattern only selects lines for the fast path,
# and accepts no line that format's own parser would refuse (tests/test_columnar.py checks both agree).
# %UPSTREAM_CLUSTER_RAW% (1.23+) and the older %UPSTREAM_CLUSTER% are both one token, so one pattern reads both.
ENVOY_TEXT = re.compile(
    r'\[(?P<start>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" (?P<code>\d+) '
    r'(?P<flags>\S+) (?P<details>\S+) (?P<term>\S+) "(?P<utfr>[^"]*)" (?P<rx>\d+) (?P<tx>\d+) '
    r'(?P<dur>\d+|-) (?P<ust>\S+) "(?P<xff>[^"]*)" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" '
    r'"(?P<uhost>[^"]*)" (?P<cluster>\S+) (?P<ulocal>\S+) (?P<dlocal>\S+) (?P<dremote>\S+) (?P<sni>\S+) '
    r"(?P<route>\S*)[ \t\r\n]*$"
)
_EPOCH = re.compile(r"^\d{9,11}(?:\.\d+)?$")
_CLUSTER_PIPE = re.compile(r"^(inbound|outbound)\|(\d*)\|([^|]*)\|(.*)$")
_CLUSTER_ALT = re.compile(r"^(inbound|outbound)_\.(\d*)_\.([^_]*)_\.(.*)$")


def _dash(value: str | None) -> str | None:
    return None if value in (None, "-", "") else value


def addr_port(addr: str | None) -> int | None:
    if not addr or addr == "-":
        return None
    _, _, port = addr.rpartition(":")
    return int32_or_none(port) if port.isascii() and port.isdigit() else None


_TS_CACHE: dict[str, float] = {}
_TS_TAIL = re.compile(r"(?:[.,](\d+))?(?:([+-])(\d\d):?(\d\d))?")


def parse_ts_ms(value: Any) -> int | None:
    """RFC 3339 (any precision), or epoch seconds/milliseconds/nanoseconds, -> epoch ms."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        if not math.isfinite(v) or v <= 0 or v > 1e20:
            return None
        if v > 1e17:
            return int(v / 1e6)
        if v > 1e11:
            return int(v)
        return int(v * 1000)
    text = str(value)
    if len(text) < 19 or text[4] != "-":
        return None
    head = text[:19]
    base = _TS_CACHE.get(head)
    if base is None:
        try:
            base = datetime.fromisoformat(head + "+00:00").timestamp()
        except ValueError:
            return None
        if len(_TS_CACHE) > 100_000:
            _TS_CACHE.clear()
        _TS_CACHE[head] = base
    if len(text) >= 24 and text[19] == "." and text[-1] == "Z" and text[20:23].isascii() and text[20:23].isdigit():
        return int(base * 1000) + int(text[20:23])  # the common RFC 3339 UTC form, without the regex
    m = _TS_TAIL.match(text, 19)
    frac_ms = int(m.group(1)[:3].ljust(3, "0")) if m and m.group(1) else 0
    offset = 0
    if m and m.group(2):
        offset = (int(m.group(3)) * 3600 + int(m.group(4)) * 60) * (1 if m.group(2) == "+" else -1)
    return int((base - offset) * 1000) + frac_ms


def cluster_parts(cluster: str | None) -> tuple[str | None, int | None, str | None]:
    """(direction, port, host) from an Envoy cluster name (pipe or alt_stat_name form)."""
    if not cluster or cluster == "-":
        return None, None, None
    m = _CLUSTER_PIPE.match(cluster) or _CLUSTER_ALT.match(cluster)
    if m:
        port = int32_or_none(m.group(2)) if m.group(2) else None
        return m.group(1), port, m.group(4) or None
    if cluster.startswith("InboundPassthroughCluster"):
        return "inbound", None, None
    if cluster in ("PassthroughCluster", "BlackHoleCluster"):
        return "outbound", None, None
    return None, None, None


def envoy_row(direction: str | None, cluster: str | None, port: int | None, dlocal: str | None,
              uhost: str | None) -> tuple[str, int | None]:
    """Direction and port of an Envoy line. Inbound, the port is the one the request arrived on
    (%DOWNSTREAM_LOCAL_ADDRESS%): before Istio 1.10 the number in `inbound|8000||` is the Service port, not the
    container's. Outbound, the Service port in the cluster name, else the upstream's or the local address's."""
    if direction is None:
        direction = "outbound"
    if direction == "inbound":
        local = addr_port(dlocal)
        return direction, local if local is not None else port
    if port is not None:
        return direction, port
    upstream = addr_port(uhost)
    return direction, upstream if upstream not in (None, 0) else addr_port(dlocal)


def envoy_fields_row(fields: Mapping[str, Any]) -> Row:
    """The normalized row of an access log whose format told what each value means (TEXT or JSON alike)."""
    cluster = _dash(_s(fields.get("cluster")))
    direction, cport, _ = cluster_parts(cluster)
    dlocal, uhost = _dash(_s(fields.get("downstream_local"))), _dash(_s(fields.get("upstream_host")))
    direction, port = envoy_row(direction, cluster, cport, dlocal, uhost)
    protocol = _dash(_s(fields.get("protocol")))
    start = fields.get("start")
    if isinstance(start, str) and _EPOCH.match(start):  # %START_TIME(%s.%3f)% and the like: epoch seconds
        start = float(start)
    return {
        "ts_ms": parse_ts_ms(start), "origin": "envoy", "direction": direction,
        "method": _dash(_s(fields.get("method"))), "path": _dash(_s(fields.get("path"))),
        # a malformed request ("- - HTTP/1.1" 400 DPE) is still HTTP; only a line with no protocol is TCP
        "protocol": protocol or "tcp",
        "status": int32_or_none(fields.get("code")), "duration_ms": _float(_dash(_s(fields.get("duration")))),
        "port": port, "authority": _dash(_s(fields.get("authority"))), "upstream_cluster": cluster,
        "upstream_host": uhost, "downstream_local": dlocal,
        "downstream_remote": _dash(_s(fields.get("downstream_remote"))),
        "response_flags": _dash(_s(fields.get("flags"))),
    }


def match_envoy_text(msg: str, candidates: Sequence[TextFormat]) -> tuple[Row, TextFormat] | None:
    """The row of a TEXT access log in the first candidate format that reads it, and that format."""
    for fmt in candidates:
        fields = fmt.match(msg)
        if fields is not None:
            return envoy_fields_row(fields), fmt
    return None


def parse_envoy_text(msg: str) -> Row | None:
    """A TEXT access log in any of Istio's default formats (1.0 to today)."""
    found = match_envoy_text(msg, builtin_text_formats())
    return found[0] if found else None


def parse_envoy_json(obj: Mapping[str, Any], fmt: JsonFormat = ISTIO_JSON) -> Row | None:
    if fmt is ISTIO_JSON and "upstream_cluster" not in obj and not ("start_time" in obj and "response_code" in obj):
        return None
    fields = fmt.fields(obj)
    if fields is None:
        return None
    row = envoy_fields_row(fields)
    if row["status"] is None:
        row["status"] = 0
    return row


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


INT32_MAX = 2**31 - 1


def int32_or_none(value: Any) -> int | None:
    """A status code or port: anything outside 0..2^31-1 is not one (and would not fit the table's column)."""
    number = _int(value)
    return number if number is not None and 0 <= number <= INT32_MAX else None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- application JSON -------------------------------------------------------------------------

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
K8S_KEYS = {
    "namespace": ("kubernetes.namespace_name", "k8s.namespace.name", "resource.k8s.namespace.name",
                  "resource.attributes.k8s.namespace.name"),
    "pod": ("kubernetes.pod_name", "k8s.pod.name", "resource.k8s.pod.name", "resource.attributes.k8s.pod.name"),
    "container": ("kubernetes.container_name", "k8s.container.name", "resource.k8s.container.name",
                  "resource.attributes.k8s.container.name"),
}


def lookup(obj: Mapping[str, Any], key: str, heads: frozenset[str] | set[str] | None = None) -> Any:
    """A flat dotted key, or the same path through nested objects.

    `heads` (first dotted segment of each top-level key) lets callers skip hopeless nested walks.
    """
    if key in obj:
        return obj[key]
    if "." not in key:
        return None
    if heads is not None and key.partition(".")[0] not in heads:
        return None
    node: Any = obj
    parts = key.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(node, Mapping):
            return None
        # Allow mixed forms such as {"resource": {"k8s.pod.name": ...}}.
        for j in range(len(parts), i, -1):
            joined = ".".join(parts[i:j])
            if joined in node:
                node, i = node[joined], j
                break
        else:
            return None
    return node


def _first(obj: Mapping[str, Any], keys: tuple[str, ...], heads: set[str] | None = None) -> Any:
    """The first candidate key holding a scalar: ECS nests `url: {full: ...}`, so `url` itself must not match."""
    for key in keys:
        value = lookup(obj, key, heads)
        if value is not None and not isinstance(value, Mapping | list):
            return value
    return None


def _heads(obj: Mapping[str, Any]) -> set[str]:
    return {k.partition(".")[0] for k in obj}


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


_K8S_HEADS = ("kubernetes", "k8s", "resource")


def k8s_attribution(obj: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    if not any(k.startswith(_K8S_HEADS) for k in obj):
        return None, None, None
    heads = _heads(obj)
    return (_s(_first(obj, K8S_KEYS["namespace"], heads)), _s(_first(obj, K8S_KEYS["pod"], heads)),
            _s(_first(obj, K8S_KEYS["container"], heads)))


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

    method = _s(field_value("method"))
    path = _s(field_value("path"))
    url = _s(field_value("url"))
    status = int32_or_none(field_value("status"))
    if method is None and path is None and url is None:
        return None
    schema = app_schema(present)
    source = obj if mapping and "duration_ms" in mapping else known
    duration = _duration_ms(source, duration_keys(schema, mapping))
    if status is None and duration is None:
        return None  # no outcome: a log line that mentions a URL, not a request
    port = int32_or_none(field_value("port"))
    authority = _s(field_value("host"))
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


# --- application text access logs --------------------------------------------------------------------------
# NCSA common/combined: gunicorn's default access_log_format '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s"
# "%(a)s"' (gunicorn/config.py), nginx's and morgan's `combined`, Tomcat/Spring Boot's `common`.
_NCSA = re.compile(r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)(?: [^"]*)?" '
                   r'(?P<status>\d{3}) \S+(?: "[^"]*" "[^"]*")?(?: (?P<rest>.*))?$')
# uvicorn's access logger: '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s' (its default
# LOGGING_CONFIG), possibly behind another logger's prefix ending in "| ".
_UVICORN = re.compile(r'^(?:.*\| )?(?:INFO|WARNING|ERROR|DEBUG|TRACE):\s+(?P<client>\S+) - "(?P<method>[A-Z]+) '
                      r'(?P<path>\S+) [^"]*" (?P<status>\d{3})\b')
# morgan `dev` (':method :url :status :response-time ms - :res[content-length]') and `tiny`
_MORGAN_DEV = re.compile(r"^(?P<method>[A-Z]+) (?P<path>/\S*) (?P<status>\d{3}) (?P<ms>\d+(?:\.\d+)?) ms - \S+$")
_MORGAN_TINY = re.compile(r"^(?P<method>[A-Z]+) (?P<path>/\S*) (?P<status>\d{3}) \S+ - (?P<ms>\d+(?:\.\d+)?) ms$")
_NCSA_TIME: dict[str, int | None] = {}


def _ncsa_ms(text: str) -> int | None:
    """`07/Dec/2020:02:36:29 +0100` -> epoch ms (cached: a busy log repeats each second many times)."""
    if text not in _NCSA_TIME:
        if len(_NCSA_TIME) > 100_000:
            _NCSA_TIME.clear()
        try:
            _NCSA_TIME[text] = int(datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp() * 1000)
        except ValueError:
            _NCSA_TIME[text] = None
    return _NCSA_TIME[text]


def parse_app_text(msg: str) -> Row | None:
    """A text access log an application server wrote (gunicorn/nginx/Tomcat NCSA, uvicorn, morgan), or None."""
    ts = duration = None
    m = _NCSA.match(msg)
    if m:
        ts = _ncsa_ms(m["time"])
    else:
        m = _UVICORN.match(msg) or _MORGAN_DEV.match(msg) or _MORGAN_TINY.match(msg)
        if m is None:
            return None
        if "ms" in m.groupdict():
            duration = float(m["ms"])
    return {
        "ts_ms": ts, "origin": "app", "direction": "inbound", "method": m["method"], "path": m["path"],
        "protocol": "http", "status": int32_or_none(m["status"]), "duration_ms": duration, "port": None,
        "authority": None, "upstream_cluster": None, "upstream_host": None, "downstream_local": None,
        "downstream_remote": m.groupdict().get("client"), "response_flags": None,
    }
