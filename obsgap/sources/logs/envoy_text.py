"""Envoy TEXT access logs: any format string, line by line (match_envoy_text, through envoy_format's compiled
parsers), and Istio's 1.9+ default over a batch of CRI lines (envoy_columns: one strict RE2 match, then splits at
quotes and spaces). The batch form takes only lines the per-line parser reads alike; tests/test_columnar.py
compares them on mutated real lines."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.envoy_fields import WAYPOINT_CLUSTERS, direction_port_columns, envoy_fields_row
from obsgap.sources.logs.envoy_format import TextFormat, builtin_text_formats, for_re2
from obsgap.sources.logs.framing import CRI_COMPLETE
from obsgap.sources.logs.parts import Row
from obsgap.sources.logs.timestamps import ts_ms
from obsgap.sources.logs.values import blank_to_null, constant, float_values, int32_values, nth

# Istio's default TEXT format since 1.9 (docs/design.md): the columnar reader's strict fast path. Every format, this
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


# ... holding an access log that ENVOY_TEXT reads, in a shape where splitting at quotes and spaces
# gives the same fields: no other whitespace inside fields, up to the route name that ends the line
CRI_ENVOY = CRI_COMPLETE + re.sub(r"\(\?P<\w+>", "(?:", for_re2(ENVOY_TEXT.pattern).replace(
    r"(?P<start>[^\]]+)", r"(?P<start>[^\] ]+)"))


ENVOY_QUOTE_PARTS = 15  # Istio's TEXT format has 7 quoted fields


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
    direction, port = direction_port_columns(cluster, dlocal, uhost)
    duration = float_values(blank_to_null(dur))  # `\d+` or `-` in the strict shape
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
    return _without_proxied_for_another(columns, ok)


def _without_proxied_for_another(columns: dict[str, pa.Array], ok: pa.Array) -> tuple[dict[str, pa.Array], pa.Array]:
    """Leave a waypoint's lines and those whose upstream is an HBONE internal address to the per-line reader
    (envoy_fields.envoy_fields_row): told by the two fields that say so, not by a regex over every whole line."""
    proxied = pc.starts_with(columns["upstream_host"], "envoy://")
    for cluster in WAYPOINT_CLUSTERS:
        proxied = pc.or_(proxied, pc.starts_with(columns["upstream_cluster"], cluster))
    proxied = pc.fill_null(proxied, False)
    if not pc.any(proxied).as_py():
        return columns, ok
    kept = np.flatnonzero(pc.fill_null(ok, False).to_numpy(zero_copy_only=False))
    mask = np.zeros(len(ok), dtype=bool)
    mask[kept[~proxied.to_numpy(zero_copy_only=False)]] = True
    keep = pc.invert(proxied)
    return {name: values.filter(keep) for name, values in columns.items()}, pa.array(mask)


ENVOY_START_CHARS = len("2026-11-25T04:01:26.687Z")  # %START_TIME% in Istio's default format


def _envoy_start(head: pa.Array) -> pa.Array:
    """The start time from "<cri prefix> [start] ": by position when it has the default width, else by splitting."""
    width = ENVOY_START_CHARS
    # " [" and not just "[": a start of "[2026-...Z" (after "[[") has the default width too, and is no time
    fixed = pc.equal(pc.utf8_slice_codeunits(head, -width - 4, -width - 2), " [")
    by_position = pc.utf8_slice_codeunits(head, -width - 2, -2)
    if pc.all(fixed).as_py():
        return by_position
    by_split = pc.utf8_slice_codeunits(nth(pc.split_pattern(head, " "), 3), 1, -1)
    return pc.if_else(fixed, by_position, by_split)
