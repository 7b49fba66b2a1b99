"""JSON lines as Arrow's JSON reader reads them, for the columnar reader, and where that reading is exactly
orjson's (NotExact otherwise, and the per-line parser takes those lines); shared by the application schemas
(app_json) and Envoy's JSON encoding (envoy_json)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from obsgap.sources.logs.attribution import K8S_HEADS

SCALAR_TEXT = (pa.string(), pa.large_string())


class NotExact(Exception):
    """The columnar reading could differ from the per-line parser's (or Arrow failed): the parser takes it."""


def envoy_shaped(keys: Iterable[str]) -> bool:
    """Keys the per-line reader would try as Istio's JSON access log first (envoy_json.parse_envoy_json)."""
    names = set(keys)
    return "upstream_cluster" in names or ("start_time" in names and "response_code" in names)


def read_json_lines(text: pa.Buffer, rows: int) -> pa.Table:
    """`rows` newline-terminated JSON lines (one file's) as Arrow reads them; NotExact when that could differ
    from orjson's reading, or when the lines name their pod (the per-line reader attributes those)."""
    options = pa_json.ReadOptions(use_threads=False, block_size=max(1 << 20, text.size + 1))
    try:
        table = pa_json.read_json(pa.BufferReader(text), read_options=options)
        if any(_has(f.type, pa.types.is_timestamp) for f in table.schema):
            # Arrow took ISO-looking strings for timestamps (a bare date too, which is no time to parse_ts_ms):
            # read them again as the strings they are
            table = pa_json.read_json(pa.BufferReader(text), read_options=options, parse_options=pa_json.ParseOptions(
                explicit_schema=pa.schema([f.with_type(_as_text(f.type)) for f in table.schema])))
    except pa.ArrowException as exc:
        raise NotExact(str(exc)) from exc
    if table.num_rows != rows or any(n.startswith(K8S_HEADS) for n in table.column_names):
        raise NotExact("rows lost, or pod metadata in the lines")
    try:
        if any(_non_finite(table.column(i).combine_chunks()) for i in range(table.num_columns)):
            raise NotExact("non-finite number")
    except pa.ArrowException as exc:
        raise NotExact(str(exc)) from exc
    return table


def text_values(column: pa.Array) -> pa.Array:
    """values.as_text over a column: strings as they are, integers as Python prints them; floats and booleans
    print differently in Arrow, so they are not taken."""
    if column.type in SCALAR_TEXT:
        return column.cast(pa.string())
    if pa.types.is_int64(column.type):
        return pc.cast(column, pa.string())
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), pa.string())
    raise NotExact(str(column.type))


def _has(type_: pa.DataType, kind: Callable[[pa.DataType], bool]) -> bool:
    """A type of that kind anywhere in `type_` (its struct fields and list values included)."""
    if kind(type_):
        return True
    if pa.types.is_struct(type_):
        return any(_has(f.type, kind) for f in type_)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _has(type_.value_type, kind)
    return False


def _as_text(type_: pa.DataType) -> pa.DataType:
    """The type with every timestamp in it a string."""
    if pa.types.is_timestamp(type_):
        return pa.string()
    if pa.types.is_struct(type_):
        return pa.struct([f.with_type(_as_text(f.type)) for f in type_])
    if pa.types.is_list(type_):
        return pa.list_(_as_text(type_.value_type))
    if pa.types.is_large_list(type_):
        return pa.large_list(_as_text(type_.value_type))
    return type_


def _non_finite(column: Any) -> bool:
    """NaN or Infinity anywhere in the column: orjson refuses such JSON, Arrow reads it."""
    if not _has(column.type, pa.types.is_floating):
        return False
    if pa.types.is_floating(column.type):
        return not pc.all(pc.fill_null(pc.is_finite(column), True)).as_py()
    if pa.types.is_struct(column.type):
        return any(_non_finite(pc.struct_field(column, f.name)) for f in column.type)
    return _non_finite(pc.list_flatten(column))
