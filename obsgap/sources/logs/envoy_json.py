"""Envoy access logs in JSON encoding: Istio's default keys (ISTIO_JSON) or the mesh's own labels. Per line
(parse_envoy_json) for the reference reader; over a run of lines Arrow read (envoy_json_columns) for the columnar
reader, which raises NotExact wherever it could read differently. tests/test_columnar.py compares both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.envoy_fields import direction_port_columns, envoy_fields_row, start_ms
from obsgap.sources.logs.envoy_format import ISTIO_JSON, JsonFormat
from obsgap.sources.logs.json_columns import NotExact, text_values
from obsgap.sources.logs.parts import Row
from obsgap.sources.logs.timestamps import numeric_ts_ms, ts_ms
from obsgap.sources.logs.values import blank_to_null, constant, float_values, int32_values, patch


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


def envoy_json_columns(table: pa.Table, fmt: JsonFormat = ISTIO_JSON) -> dict[str, pa.Array]:
    """parse_envoy_json over lines Arrow read (json_columns.read_json_lines), every one of them an access log:
    the keys of %START_TIME% and %RESPONSE_CODE% must hold a value on every line, since a null there could be
    a key the line lacks (the per-line reader would then read the line as something else)."""
    n = table.num_rows
    column: dict[str, pa.Array] = {}
    for key, name in fmt.keys.items():  # the first key of each field decides, present or not (JsonFormat.fields)
        if name not in column:
            column[name] = table.column(key).combine_chunks() if key in table.column_names else pa.nulls(n)
    if any(column[name].null_count for name in ("start", "code")):
        raise NotExact("a line without the start time or response code key")
    for c in column.values():
        if not (pa.types.is_string(c.type) or pa.types.is_large_string(c.type) or pa.types.is_int64(c.type)
                or pa.types.is_float64(c.type) or pa.types.is_null(c.type)):
            raise NotExact(str(c.type))

    def text(name: str) -> pa.Array:
        return blank_to_null(text_values(column[name]))

    cluster, dlocal, uhost = text("cluster"), text("downstream_local"), text("upstream_host")
    if pc.any(pc.or_(pc.starts_with(cluster, "inbound-"), pc.starts_with(uhost, "envoy://"))).as_py():
        raise NotExact("a waypoint's or HBONE lines (envoy_fields.proxied_for_another)")
    direction, port = direction_port_columns(cluster, dlocal, uhost)
    return {
        "ts_ms": _start(column["start"]), "origin": constant(n, "envoy"), "direction": direction,
        "method": text("method"), "path": text("path"), "protocol": pc.fill_null(text("protocol"), "tcp"),
        "status": pc.fill_null(int32_values(text_values(column["code"])), 0),
        "duration_ms": float_values(column["duration"]), "port": port, "authority": text("authority"),
        "upstream_cluster": cluster, "upstream_host": uhost, "downstream_local": dlocal,
        "downstream_remote": text("downstream_remote"), "response_flags": text("flags"),
    }


_EPOCH_ASCII = r"^[0-9]{9,11}(?:\.[0-9]+)?$"


def _start(values: pa.Array) -> pa.Array:
    """start_ms over a column: numbers by magnitude, epoch-second strings as numbers, RFC 3339 strings by ts_ms;
    strings that are not plain ASCII (where Python's `\\d` and `$` differ from RE2's) value by value."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return numeric_ts_ms(values) if not pa.types.is_null(values.type) else pa.nulls(len(values), pa.int64())
    values = values.cast(pa.string())
    epoch = pc.fill_null(pc.match_substring_regex(values, _EPOCH_ASCII), False)
    odd = pc.fill_null(pc.or_(pc.invert(pc.string_is_ascii(values)), pc.match_substring(values, "\n")), False)
    out = ts_ms(pc.if_else(pc.or_(epoch, odd), pa.scalar(None, pa.string()), values))
    if pc.any(epoch).as_py():
        seconds = pc.cast(pc.if_else(epoch, values, "0"), pa.float64())
        out = pc.if_else(epoch, numeric_ts_ms(seconds), out)
    return patch(out, odd, values, start_ms)
