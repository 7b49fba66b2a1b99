"""Scalar values both readers share: absent markers (`-`, empty), integers that fit a status or port, an address's
port, dotted keys looked up flat or nested; per value, and per Arrow column (with helpers that map a Python
function over a column's distinct values only)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def dash(value: str | None) -> str | None:
    return None if value in (None, "-", "") else value


def addr_port(addr: str | None) -> int | None:
    if not addr or addr == "-":
        return None
    _, _, port = addr.rpartition(":")
    return int32_or_none(port) if port.isascii() and port.isdigit() else None


def as_text(value: Any) -> str | None:
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


def as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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


def first_scalar(obj: Mapping[str, Any], keys: tuple[str, ...], heads: set[str] | None = None) -> Any:
    """The first candidate key holding a scalar: ECS nests `url: {full: ...}`, so `url` itself must not match."""
    for key in keys:
        value = lookup(obj, key, heads)
        if value is not None and not isinstance(value, Mapping | list):
            return value
    return None


def key_heads(obj: Mapping[str, Any]) -> set[str]:
    return {k.partition(".")[0] for k in obj}


def nth(parts: pa.ListArray, i: int) -> pa.Array:
    """Element i of every list (all lists are known to be long enough); list_element is far slower."""
    return parts.values.take(pa.array(parts.offsets.to_numpy()[:-1] + i))


def blank_to_null(values: pa.Array) -> pa.Array:
    """_dash: "-" and "" mean absent."""
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


_PLAIN_INT = r"^[0-9]{1,10}$"


def int32_values(text: pa.Array, ascii_digits: bool = False) -> pa.Array:
    """int32_or_none over strings (`ascii_digits`: the caller has checked they are)."""
    if ascii_digits:
        plain = pc.fill_null(pc.less_equal(pc.binary_length(text), 10), False)
    else:
        plain = pc.fill_null(pc.match_substring_regex(text, _PLAIN_INT), False)
    number = pc.cast(pc.if_else(plain, text, "0"), pa.int64())
    good = pc.and_(plain, pc.less_equal(number, INT32_MAX))
    values = pc.cast(pc.if_else(good, number, 0), pa.int32())
    values = pc.if_else(good, values, pa.scalar(None, pa.int32()))
    return patch(values, pc.and_(pc.invert(plain), pc.is_valid(text)), text, int32_or_none)


_PLAIN_NUMBER = r"^[0-9]{1,15}$"


def float_values(values: pa.Array) -> pa.Array:
    """as_float(dash(as_text(value))) over a column: %DURATION% as a number, a string of digits, or `-`."""
    if pa.types.is_float64(values.type):
        return values
    if pa.types.is_int64(values.type) or pa.types.is_null(values.type):
        return pc.cast(values, pa.float64())
    text = values.cast(pa.string())
    plain = pc.fill_null(pc.match_substring_regex(text, _PLAIN_NUMBER), False)
    out = pc.cast(pc.if_else(plain, text, "0"), pa.float64())
    out = pc.if_else(plain, out, pa.scalar(None, pa.float64()))
    return patch(out, pc.and_(pc.invert(plain), pc.is_valid(text)), text, lambda v: as_float(dash(v)))


def constant(n: int, value: str) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value])).cast(pa.string())
