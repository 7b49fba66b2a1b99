"""Timestamps to epoch milliseconds: RFC 3339 of any precision and offset, epoch seconds, milliseconds or
nanoseconds by magnitude. Per value (parse_ts_ms) and per column (ts_ms, numeric_ts_ms: vectorised for the common
RFC 3339 UTC form, the rest by parse_ts_ms); tests/test_columnar.py checks they agree on generated strings."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.values import map_unique, patch

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


_YEAR = r"(?:[1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])"  # fromisoformat refuses year 0; Arrow takes it


_RFC3339_UTC_MS = (r"^" + _YEAR + r"-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
                   r"\.\d{3}.*Z$")


def _day_epoch(day: str | None) -> int | None:
    try:
        return (date.fromisoformat(day) - date(1970, 1, 1)).days * 86400 if day else None
    except ValueError:
        return None


def ts_ms(values: pa.Array) -> pa.Array:
    """parse_ts_ms over strings: RFC 3339 UTC with milliseconds or finer vectorised, the rest by it."""
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
    if pc.all(pc.or_(fast, pc.is_null(values))).as_py():  # the common case: nothing left for the other forms
        return millis
    other = pc.fill_null(pc.and_(pc.invert(fast), pc.match_substring_regex(values, _RFC3339_OTHER)), False)
    if pc.any(other).as_py():
        with_other = _other_rfc3339_ms(values, other)
        if with_other is not None:
            millis, fast = pc.if_else(other, with_other, millis), pc.or_(fast, other)
    return patch(millis, pc.and_(pc.invert(fast), pc.is_valid(values)), values, parse_ts_ms)


# parse_ts_ms's other common forms: whole seconds (logrus, Python's JSON loggers), a zone offset (Go's RFC3339Nano
# in a local zone, Java's OffsetDateTime, Echo), no zone at all, a space for the T
_RFC3339_OTHER = (r"^(?P<head>" + _YEAR + r"-\d\d-\d\d[T ]\d\d:\d\d:\d\d)"
                  r"(?:[.,](?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)?$")


def _other_rfc3339_ms(values: pa.Array, rows: pa.Array) -> pa.Array | None:
    """parse_ts_ms of the `rows` in _RFC3339_OTHER's form: the time of day less the zone's offset, plus the first
    three digits of the fraction (padded); None when Arrow refuses a date or time (parse_ts_ms then reads them)."""
    parts = pc.extract_regex(pc.if_else(rows, values, "1970-01-01T00:00:00"), _RFC3339_OTHER)
    try:
        base = pc.cast(pc.cast(parts.field("head"), pa.timestamp("s")), pa.int64())
    except pa.ArrowInvalid:
        return None
    millis = pc.cast(pc.utf8_rpad(pc.utf8_slice_codeunits(parts.field("fraction"), 0, 3), 3, "0"), pa.int64())
    zone = parts.field("zone")
    offset = pc.add(pc.multiply(pc.cast(pc.if_else(pc.greater(pc.utf8_length(zone), 1),
                                                   pc.utf8_slice_codeunits(zone, 1, 3), "0"), pa.int64()), 3600),
                    pc.multiply(pc.cast(pc.if_else(pc.greater(pc.utf8_length(zone), 1),
                                                   pc.utf8_slice_codeunits(zone, 4, 6), "0"), pa.int64()), 60))
    offset = pc.if_else(pc.starts_with(zone, "-"), pc.negate(offset), offset)
    return pc.add(pc.multiply(pc.subtract(base, offset), 1000), millis)


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
    return patch(millis, wrong, values, parse_ts_ms)


def numeric_ts_ms(values: pa.Array) -> pa.Array:
    """parse_ts_ms over numbers: epoch seconds, milliseconds or nanoseconds by magnitude."""
    v = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(v) & (v > 0) & (v <= 1e20)
        ms = np.where(v > 1e17, v / 1e6, np.where(v > 1e11, v, v * 1000))
        out = np.where(ok, ms, 0).astype(np.int64)
    return pa.array(out, pa.int64(), mask=~ok | np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False)))
