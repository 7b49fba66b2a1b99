"""The file readers' parse, in ClickHouse SQL: every log line of `otel_logs` to one typed row (PARSED_COLUMNS).

The same definitions as the file readers: each Envoy TEXT format's compiled pattern (envoy_format, bound as a query
parameter and matched with ClickHouse's RE2 as Python's re matches it), Istio's JSON keys, the application JSON keys,
duration units and schemas (app_json), application text access logs (app_text), ztunnel's lines (ztunnel.py) and the
meaning of Envoy's fields (envoy_fields' rules, in their SQL form below). Every value from outside (patterns, keys,
names) is a bound parameter; only integers are formatted into SQL.

Built for the engine, not for short-circuit evaluation:
- Each line is parsed once: its JSON object split into (key, raw value) pairs by one JSONExtractKeysAndValuesRaw,
  each key read from those pairs; a TEXT line's kind decided once (one RE2 match per format), then only its own
  format's groups extracted.
- Expensive functions are gated by their input, not their output: a line that is not of a kind gets '' as the
  input of that kind's extraction, which costs nothing. So the query is as fast with short-circuit evaluation off
  (which the query sets: lazy branches recompute the subexpressions they share) as on, and its result does not
  depend on it.
- Layered: each column is computed one level above the columns it reads (`Columns`), never beside them, and JSON
  values, their text and duration parts are columns of their own, so ClickHouse analyses each expression once
  (an alias that used aliases of its own SELECT would be expanded at every use).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from obsgap.sources.logs.app_json import APP_KEYS, APP_SCHEMAS, BARE_DURATION_KEYS, DURATION_KEYS, mapped_duration
from obsgap.sources.logs.app_text import TEXT_FORMATS
from obsgap.sources.logs.envoy_format import (
    ISTIO_JSON,
    OTHER_SPACES,
    AccessFormat,
    JsonFormat,
    SplitPlan,
    TextFormat,
    candidates,
    for_re2,
    split_plan,
)
from obsgap.sources.logs.envoy_format import builtin_text_formats as _builtin

NCSA_TIME_CH = "%d/%b/%Y:%H:%i:%S %z"
"""app_text.NCSA_TIME in ClickHouse's parseDateTime (MySQL-style: %i is minutes)."""

ROW_KINDS = ("envoy-text", "envoy-json", "app-json", "app-text", "ztunnel")
"""The kinds of line that are rows of the table (requests; ztunnel's: connections), as the file readers count them."""

PARSED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("node_ms", "Int64"), ("namespace", "Nullable(String)"), ("pod", "Nullable(String)"),
    ("container", "Nullable(String)"), ("kind", "LowCardinality(String)"), ("access_format", "LowCardinality(String)"),
    ("unknown_unit", "LowCardinality(String)"), ("by_address", "Bool"), ("origin", "LowCardinality(String)"),
    ("direction", "LowCardinality(String)"), ("method", "Nullable(String)"), ("path", "Nullable(String)"),
    ("status", "Nullable(Int32)"), ("port", "Nullable(Int32)"), ("authority", "Nullable(String)"),
    ("upstream_cluster", "Nullable(String)"), ("upstream_host", "Nullable(String)"),
    ("downstream_local", "Nullable(String)"), ("downstream_remote", "Nullable(String)"),
    ("response_flags", "Nullable(String)"), ("protocol", "Nullable(String)"), ("duration_ms", "Nullable(Float64)"),
    ("own_ms", "Nullable(Int64)"), ("sample", "String"))
"""One typed row per line: what the aggregation reads (the types are what a table of these rows would hold)."""


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
            f"extract(ifNull({cluster}, ''), '^(inbound|outbound)'), startsWith(ifNull({cluster}, ''), "
            f"'InboundPassthroughCluster'), 'inbound', ifNull({cluster}, '') IN ('PassthroughCluster', "
            f"'BlackHoleCluster'), 'outbound', NULL)")


def cluster_port(cluster: str) -> str:
    """envoy_fields.cluster_parts, port."""
    return f"toInt32OrNull(extract(ifNull({cluster}, ''), '^(?:inbound|outbound)(?:\\\\||_\\\\.)([0-9]{{1,10}})'))"


def ts_ms_of_text(expr: str) -> str:
    """timestamps.parse_ts_ms for strings (and envoy_fields' epoch-seconds start times)."""
    return (f"multiIf(match(ifNull({expr}, ''), '^[0-9]{{9,11}}(\\\\.[0-9]+)?$'), "
            f"toInt64(toFloat64OrZero(ifNull({expr}, '')) * 1000), length(ifNull({expr}, '')) >= 19 AND "
            f"substr(ifNull({expr}, ''), 5, 1) = '-', "
            f"toUnixTimestamp64Milli(parseDateTime64BestEffortOrNull(ifNull({expr}, ''), 3, 'UTC')), NULL)")


def ts_ms_of_number(expr: str) -> str:
    """timestamps.parse_ts_ms for numbers: epoch s, ms or ns by magnitude."""
    return (f"multiIf({expr} IS NULL OR {expr} <= 0 OR {expr} > 1e20, NULL, {expr} > 1e17, "
            f"toInt64(ifNull({expr}, 0) / 1e6), {expr} > 1e11, toInt64(ifNull({expr}, 0)), "
            f"toInt64(ifNull({expr}, 0) * 1000))")


def json_text(raw: str) -> str:
    """values.as_text of a raw JSON value: strings unquoted, numbers as written; objects, arrays, null absent."""
    return (f"multiIf({raw} = '' OR {raw} = 'null' OR startsWith({raw}, '{{') OR startsWith({raw}, '['), NULL, "
            f"startsWith({raw}, '\"'), JSONExtractString({raw}), {raw})")


# --- building blocks ------------------------------------------------------------------------------------------


class Params:
    """Bound parameters: every value from outside goes in as {name:Type}, once per distinct value. JSON keys read
    become columns jk<N> of one level, each looked up once per line in the line's (key, raw value) pairs."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._names: dict[tuple[str, str], str] = {}
        self.keys: dict[tuple[str, bool], str] = {}

    def add(self, value: Any, type_: str = "String") -> str:
        marker = (repr(value), type_)
        if marker not in self._names:
            name = f"p{len(self.values)}"
            self.values[name] = value
            self._names[marker] = f"{{{name}:{type_}}}"
        return self._names[marker]

    def key(self, key: str, nested: bool = True) -> str:
        """The column holding the raw JSON value at `key` ('' when absent): flat (`{"a.b": 1}`) first, as
        values.lookup prefers it, else nested (`{"a": {"b": 1}}`) unless `nested` is off."""
        marker = (key, nested and "." in key)
        if marker not in self.keys:
            self.keys[marker] = f"jk{len(self.keys)}"
        return self.keys[marker]

    def text(self, key: str, nested: bool = True) -> str:
        """The column holding the value at `key` as text (values.as_text), NULL when absent or not a scalar."""
        return "jt" + self.key(key, nested)[2:]

    def key_columns(self) -> list[tuple[str, str]]:
        """Per key: where it is among the line's pairs (ji<N>), its raw value (jk<N>) and its text (jt<N>). A flat
        key's text is read from `kv_text`, the text of each pair the line has, made once per line: not one
        conversion per known key (there are dozens) on every line."""
        cols = []
        for (key, nested), alias in self.keys.items():
            n = alias[2:]
            cols.append((f"ji{n}", f"indexOf(kv.1, {self.add(key)})"))
            if nested:
                top, *rest = key.split(".")
                inner = f"JSONExtractRaw(kv.2[indexOf(kv.1, {self.add(top)})], {', '.join(self.add(k) for k in rest)})"
                cols += [(alias, f"if(ji{n} > 0, kv.2[ji{n}], {inner})"), (f"jt{n}", json_text(alias))]
            else:
                cols += [(alias, f"kv.2[ji{n}]"), (f"jt{n}", f"kv_text[ji{n}]")]
        return cols


class Columns:
    """The columns of a query, each an expression over the source's columns and other columns. `sql` nests them in
    levels, each column one level above the deepest column it reads, so that no column reads a column of its own
    level: ClickHouse then analyses each expression once (an alias that used aliases of its own SELECT would be
    expanded at every use)."""

    def __init__(self) -> None:
        self.exprs: dict[str, str] = {}

    def add(self, alias: str, expr: str) -> str:
        if alias in self.exprs:
            raise ValueError(f"column {alias} defined twice")
        self.exprs[alias] = expr
        return alias

    def _refs(self) -> dict[str, set[str]]:
        names = sorted(self.exprs, key=len, reverse=True)
        ref = re.compile(r"(?<![\w.{])(" + "|".join(map(re.escape, names)) + r")(?!\w)")
        return {a: set(ref.findall(e)) - {a} for a, e in self.exprs.items()}

    def levels(self, wanted: Sequence[str] | None = None) -> list[list[str]]:
        """The columns `wanted` (default: all) and those they read, by level."""
        refs = self._refs()
        level: dict[str, int] = {}

        def depth(alias: str, seen: tuple[str, ...] = ()) -> int:
            if alias not in level:
                if alias in seen:
                    raise ValueError(f"columns read each other: {' -> '.join((*seen, alias))}")
                level[alias] = 1 + max((depth(d, (*seen, alias)) for d in refs[alias]), default=0)
            return level[alias]

        for alias in self.exprs if wanted is None else wanted:
            if alias in self.exprs:
                depth(alias)
        out: list[list[str]] = [[] for _ in range(max(level.values(), default=0))]
        for alias in self.exprs:
            if alias in level:
                out[level[alias] - 1].append(alias)
        return out

    def sql(self, source: str, base: Sequence[str], final: Sequence[tuple[str, str]]) -> str:
        """`SELECT final FROM (... SELECT level 2 FROM (SELECT level 1 FROM (source)))` with only the columns
        `final` reads, each level passing on only the columns a level above it reads. `final`: (output name,
        column or base column)."""
        refs = self._refs()
        base_ref = re.compile(r"(?<![\w.{])(" + "|".join(map(re.escape, base)) + r")(?!\w)")
        reads = {a: refs[a] | set(base_ref.findall(e)) for a, e in self.exprs.items()}
        levels = self.levels([col for _, col in final])
        available = list(base)
        sql = source
        for k, names in enumerate(levels):
            above = {col for _, col in final} | {r for lv in levels[k + 1:] for a in lv for r in reads[a]}
            kept = [a for a in available if a in above]
            body = ",\n    ".join([*kept, *(f"{self.exprs[a]} AS {a}" for a in names)])
            sql = f"SELECT\n    {body}\n  FROM ({sql})"
            available = [*kept, *names]
        cols = ", ".join(col if col == name else f"{col} AS {name}" for name, col in final)
        return f"SELECT {cols}\nFROM ({sql})"


@dataclass
class Relation:
    """The SQL of every line's parsed row (PARSED_COLUMNS) with its parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


def _first_json(p: Params, keys: Sequence[str]) -> str:
    return f"coalesce({', '.join(p.text(k) for k in keys)})" if keys else "NULL"


def _json_has(p: Params, key: str) -> str:
    """The key holds a value, of any type (a schema's marker may be an object, as Caddy's resp_headers)."""
    raw = p.key(key)
    return f"({raw} != '' AND {raw} != 'null')"


_DURATION_FULL = "'^\\\\s*[0-9]*\\\\.?[0-9]+\\\\s*(ns|us|µs|ms|s|m)?\\\\s*$'"
_DURATION_UNIT = "'^\\\\s*[0-9.]+\\\\s*(ns|us|µs|ms|s|m)\\\\s*$'"
_DURATION_NUMBER = "'([0-9]*\\\\.?[0-9]+)'"


def _duration_of(candidates: Sequence[str]) -> str:
    """app_json._duration_ms: the first (value, the key's unit in ms) whose value is a duration (duration_value),
    in ms. Only the keys a line has are tried: one regex per present key, not per key."""
    pick = (f"arrayFirst(x -> match(x.1, {_DURATION_FULL}), arrayFilter(x -> x.1 != '', "
            f"[{', '.join(candidates)}]))")
    return pick


def _duration_sql(p: Params, key: str, factor: float, when: str = "") -> str:
    """A candidate for _duration_of: the key's value as text ('' when absent, or when `when` does not hold)."""
    value = f"ifNull({p.text(key)}, '')"
    return f"({f'if({when}, {value}, {chr(39) * 2})' if when else value}, {float(factor)!r})"


def _duration_columns(c: Columns, p: Params, mapping: Mapping[str, str] | None) -> tuple[str, str]:
    """(the column of an application line's duration in ms, the bare duration key of unknown unit it carries, or
    ''); both read `schema`."""
    if mapping and "duration_ms" in mapping:
        key, factor = mapped_duration(mapping["duration_ms"])
        candidates = [_duration_sql(p, key, factor)]
        unknown = "''"
    else:
        candidates = [_duration_sql(p, k, f) for k, f in DURATION_KEYS]
        candidates += [_duration_sql(p, k, f, f"schema = {i}")
                       for i, s in enumerate(APP_SCHEMAS) for k, f in s.durations]
        unknown_arms = []
        for k in BARE_DURATION_KEYS:
            explained = [i for i, s in enumerate(APP_SCHEMAS) if k in {d for d, _ in s.durations}]
            cond = _json_has(p, k) + (f" AND schema NOT IN ({', '.join(map(str, explained))})" if explained else "")
            unknown_arms.append(f"{cond}, {p.add(k)}")
        unknown = f"multiIf({', '.join(unknown_arms)}, '')"
    c.add("dur_pick", _duration_of(candidates))
    c.add("dur_unit", f"extract(dur_pick.1, {_DURATION_UNIT})")
    c.add("a_duration", "if(dur_pick.1 = '', NULL, toFloat64OrNull(extract(dur_pick.1, " + _DURATION_NUMBER + ")) * "
                        "multiIf(dur_unit = 'ns', 1e-6, dur_unit IN ('us', 'µs'), 1e-3, dur_unit = 'ms', 1.0, "
                        "dur_unit = 's', 1000.0, dur_unit = 'm', 60000.0, dur_pick.2))")
    return "a_duration", unknown


_Z_TEXT = (r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}T[^\s]+\s+)?(?:trace|debug|info|warn|error)\s+access\s+"
           r"connection (?:complete|failed)\s")
"""ztunnel.parse_ztunnel_text's line shape, in RE2."""
_Z_KEYS = ("src.addr", "dst.addr", "dst.hbone_addr", "dst.service", "direction", "duration", "error")


def _text_formats(access_formats: tuple[AccessFormat, ...]) -> tuple[list[TextFormat], list[JsonFormat]]:
    custom_text, custom_json = candidates(access_formats)
    return [*custom_text, *_builtin()], [*custom_json, ISTIO_JSON]


def format_names(access_formats: tuple[AccessFormat, ...]) -> tuple[list[str], list[str]]:
    text, js = _text_formats(access_formats)
    return [f.name for f in text], [f.name for f in js]


def _text_groups(c: Columns, p: Params, text_formats: Sequence[TextFormat], patterns: Sequence[str],
                 split: bool) -> list[SplitPlan | None]:
    """Columns g<i>, the groups of TEXT format i's pattern in a line of that format, for the lines the format's
    SplitPlan cannot read; and the pieces and words of the lines it can (`split<i>`): RE2's submatch extraction costs
    microseconds a line, splitting at quotes and whitespace a fraction of that. One split serves every format, as
    the pieces are the line's whatever its format. tests/test_clickhouse.py compares both on mutated lines."""
    plans = [split_plan(f) if split else None for f in text_formats]
    if any(plans):  # ClickHouse splits at ASCII whitespace only: a line with other whitespace is not split
        c.add("t_splits", f"text_fmt >= 0 AND NOT match(body, {p.add(f'[{OTHER_SPACES}]')})")
        c.add("tq", "splitByChar('\"', if(t_splits, body, ''))")
        c.add("t_bracketed", "substring(tq[1], 2, position(tq[1], ']') - 2)")
    words: dict[str, str] = {}  # column -> the text it splits into words
    for i, (plan, pattern) in enumerate(zip(plans, patterns, strict=True)):
        if plan is None:
            c.add(f"g{i}", f"extractGroups(if(text_fmt = {i}, body, ''), {pattern})")
            continue
        c.add(f"split{i}", f"t_splits AND text_fmt = {i} AND length(tq) = {plan.quotes + 1}")
        c.add(f"g{i}", f"extractGroups(if(text_fmt = {i} AND NOT split{i}, body, ''), {pattern})")
        words.update(_piece_words(plan, piece) for piece, word in plan.places if word is not None)
    for name, text in sorted(words.items()):
        c.add(name, f"splitByWhitespace({text})")
    return plans


def _piece_words(plan: SplitPlan, piece: int) -> tuple[str, str]:
    """The column of a piece's words and the text it splits: the first piece's after its bracketed group, where the
    format opens with one."""
    if piece == 0 and (-1, None) in plan.places:
        return "tw0b", "substring(tq[1], position(tq[1], ']') + 1)"
    return f"tw{piece}", f"tq[{piece + 1}]"


def _split_value(plan: SplitPlan, place: tuple[int, int | None]) -> str:
    piece, word = place
    if piece < 0:
        return "t_bracketed"
    return f"tq[{piece + 1}]" if word is None else f"{_piece_words(plan, piece)[0]}[{word + 1}]"


def parse_lines(source: str, access_formats: tuple[AccessFormat, ...], mapping: Mapping[str, str] | None,
                p: Params, split: bool = True) -> str:
    """Every line of `source` (a query with columns node_ms, body, namespace, pod, container) as PARSED_COLUMNS.
    `split` off: every TEXT access log by its pattern's groups (the reference the split reading is tested against)."""
    text_formats, json_formats = _text_formats(access_formats)
    c = Columns()
    patterns = [p.add("^" + for_re2(f.pattern.pattern.replace(r"\s*\Z", r"\s*$"))) for f in text_formats]
    app_patterns = [p.add("^" + for_re2(pattern.pattern)) for _, pattern in TEXT_FORMATS]

    # 1: what the line can be, from its first byte and two substrings
    c.add("text_body", "if(startsWith(body, '{'), '', body)")
    c.add("json_body", "if(startsWith(body, '{'), body, '')")
    c.add("maybe_z", "position(body, 'connection ') > 0 AND position(body, 'access') > 0")

    # 2: one JSON parse, one RE2 match per TEXT format
    c.add("is_json", "isValidJSON(json_body)")
    c.add("kv", "JSONExtractKeysAndValuesRaw(json_body)")
    c.add("kv_text", f"arrayMap(v -> {json_text('v')}, kv.2)")
    c.add("text_fmt", "multiIf(" + "".join(f"match(text_body, {pat}), {i}, " for i, pat in enumerate(patterns))
              + "-1)")

    # 3: the line's own format's groups; application text formats for the rest; JSON keys from the pairs
    plans = _text_groups(c, p, text_formats, patterns, split)
    c.add("app_text_fmt", "multiIf(" + "".join(
        f"match(if(text_fmt < 0 AND NOT is_json AND match(body, '^[[:alnum:]]'), body, ''), {t}), {i}, "
        for i, t in enumerate(app_patterns)) + "-1)")
    c.add("z_text", f"maybe_z AND NOT is_json AND text_fmt < 0 AND match(body, {p.add(_Z_TEXT)})")

    # keys are registered while the levels above are written; their columns are filled in at the end

    # 4: the fields of each kind
    for i, app_pattern in enumerate(app_patterns):
        c.add(f"tg{i}", f"extractGroups(if(app_text_fmt = {i}, body, ''), {app_pattern})")

    def text_field(name: str) -> str:
        arms = []
        for i, (f, plan) in enumerate(zip(text_formats, plans, strict=True)):
            idx = next((k + 1 for k, op in enumerate(f.operators) if op.field == name), None)
            if idx is not None:
                if plan is not None:
                    arms.append(f"split{i}, {_split_value(plan, plan.places[idx - 1])}")
                arms.append(f"text_fmt = {i}, g{i}[{idx}]")
        return dash(f"multiIf({', '.join(arms)}, NULL)") if arms else "NULL"

    envoy_names = ("start", "method", "path", "protocol", "code", "flags", "duration", "upstream_host", "cluster",
                   "downstream_local", "downstream_remote", "authority")
    for n in envoy_names:
        c.add(f"et_{n}", text_field(n))

    def json_is(f: JsonFormat) -> str:
        if f is ISTIO_JSON:
            return (f"({_json_has(p, 'upstream_cluster')} OR ({_json_has(p, 'start_time')} AND "
                    f"{_json_has(p, 'response_code')}))")
        needed = [k for k, v in f.keys.items() if v in ("start", "code")]
        return "(" + " AND ".join(f"has(kv.1, {p.add(k)})" for k in needed) + ")" if needed else "1"

    c.add("json_fmt", "if(text_fmt < 0 AND is_json, multiIf(" + "".join(
        f"{json_is(f)}, {i}, " for i, f in enumerate(json_formats)) + "-1), -1)")

    def app(name: str) -> str:
        keys_ = (mapping[name],) if mapping and name in mapping else APP_KEYS[name]
        return _first_json(p, keys_)

    for name in ("method", "path", "url", "status", "port", "host", "ts"):
        c.add(f"a_{name}", app(name))
    ts_keys = (mapping["ts"],) if mapping and "ts" in mapping else APP_KEYS["ts"]
    c.add("a_ts_quoted", "startsWith(coalesce(" + ", ".join(f"nullIf(nullIf({p.key(k)}, ''), 'null')"
                                                                  for k in ts_keys) + ", ''), '\"')")
    c.add("schema", "multiIf(" + "".join(
        "(" + " AND ".join(_json_has(p, k) for k in s.markers) + f"), {i}, " for i, s in enumerate(APP_SCHEMAS))
        + "-1)")
    c.add("z_json", f"maybe_z AND is_json AND {p.text('scope', False)} = 'access' AND "
                         f"{p.text('message', False)} IN ('connection complete', 'connection failed')")
    c.add("z_text_body", "if(z_text, body, '')")
    c.add("sample", "if(text_fmt < 0 AND NOT is_json AND app_text_fmt < 0 AND NOT z_text AND trim(body) != '', "
                         "substr(body, 1, 160), '')")

    # 5: fields across kinds

    def json_field(name: str) -> str:
        arms = []
        for i, f in enumerate(json_formats):
            key = next((k for k, v in f.keys.items() if v == name), None)
            if key is not None:
                arms.append(f"json_fmt = {i}, {p.text(key)}")
        return dash(f"multiIf({', '.join(arms)}, NULL)") if arms else "NULL"

    for n in envoy_names:
        c.add(f"e_{n}", f"multiIf(text_fmt >= 0, et_{n}, json_fmt >= 0, {json_field(n)}, NULL)")
    escaped = p.add(r"\\(.)")  # Rust's Debug escapes: a backslash and the character it escapes
    for key in _Z_KEYS:
        key_pattern = p.add(r"(?:^|\s)" + re.escape(key) + r'=("(?:[^"\\]|\\.)*"|[^\s]*)')
        raw = f"extract(z_text_body, {key_pattern})"
        text = (f"if(length({raw}) >= 2 AND startsWith({raw}, '\"') AND endsWith({raw}, '\"'), "
                f"replaceRegexpAll(substring({raw}, 2, length({raw}) - 2), {escaped}, {p.add(chr(92) + '1')}), "
                f"{raw})")
        c.add(f"z_{key.replace('.', '_')}",
                   f"multiIf(z_json, nullIf({p.text(key, False)}, ''), z_text, nullIf({text}, ''), NULL)")
    time_pattern = p.add(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[^\s]+)\s")
    c.add("z_time", f"multiIf(z_json, {p.text('time', False)}, z_text, "
                         f"nullIf(extract(z_text_body, {time_pattern}), ''), NULL)")

    def text_group(name: str) -> str:
        arms = [f"app_text_fmt = {i}, nullIf(tg{i}[{pattern.groupindex[name]}], '')"
                for i, (_, pattern) in enumerate(TEXT_FORMATS) if name in pattern.groupindex]
        return f"multiIf({', '.join(arms)}, NULL)" if arms else "NULL"

    for n in ("method", "path", "status", "ms", "client", "time"):
        c.add(f"t_{n}", text_group(n))
    _, unknown = _duration_columns(c, p, mapping)
    c.add("unknown_unit", f"if(is_json, {unknown}, '')")
    c.add("url_host", "if(a_url IS NOT NULL AND position(a_url, '://') > 0, domain(a_url), '')")
    c.add("a_ts_ms", f"if(a_ts_quoted, {ts_ms_of_text('a_ts')}, {ts_ms_of_number('toFloat64OrNull(a_ts)')})")
    own_url = [i for i, s in enumerate(APP_SCHEMAS) if s.own_url]
    c.add("own_url", f"schema IN ({', '.join(map(str, own_url))}) AND a_path IS NOT NULL" if own_url else "0")
    c.add("access_format", f"multiIf(text_fmt >= 0, {p.add(format_names(access_formats)[0], 'Array(String)')}"
                                f"[text_fmt + 1], json_fmt >= 0, "
                                f"{p.add(format_names(access_formats)[1], 'Array(String)')}[json_fmt + 1], '')")

    # 6: the line's kind
    c.add("app_request", "(a_method IS NOT NULL OR a_path IS NOT NULL OR a_url IS NOT NULL) "
                             "AND (toInt32OrNull(a_status) IS NOT NULL OR a_duration IS NOT NULL) "
                             "AND (a_method IS NOT NULL OR a_path IS NOT NULL OR url_host != '' OR "
                             "(a_url IS NOT NULL AND position(a_url, '://') = 0))")
    c.add("is_z", "(z_json OR z_text) AND (z_dst_addr IS NOT NULL OR z_src_addr IS NOT NULL)")
    c.add("waypoint", "(text_fmt >= 0 OR json_fmt >= 0) AND (startsWith(ifNull(e_cluster, ''), 'inbound-vip|') "
                          "OR startsWith(ifNull(e_cluster, ''), 'inbound-pod|'))")
    c.add("e_real_upstream", "if(startsWith(ifNull(e_upstream_host, ''), 'envoy://'), nullIf(replaceRegexpOne("
                                 "if(startsWith(e_upstream_host, 'envoy://connect_originate/'), e_upstream_host, ''), "
                                 "'^envoy://connect_originate/([^/]*)/?$', '\\\\1'), ''), e_upstream_host)")
    c.add("z_target", "coalesce(z_dst_hbone_addr, z_dst_addr)")
    c.add("e_direction", f"coalesce({cluster_direction('e_cluster')}, 'outbound')")
    c.add("e_cluster_port", cluster_port("e_cluster"))
    c.add("e_local_port", addr_port("e_downstream_local"))
    c.add("e_own_ms", ts_ms_of_text("e_start"))
    c.add("z_own_ms", ts_ms_of_text("z_time"))
    c.add("t_own_ms", f"toInt64(toUnixTimestamp(parseDateTimeOrNull(t_time, {p.add(NCSA_TIME_CH)}, 'UTC'))) * 1000")
    c.add("z_port", addr_port("coalesce(z_dst_hbone_addr, z_dst_addr)"))
    c.add("a_url_port", "if(url_host != '' AND NOT own_url, coalesce(nullIf(toInt32(port(a_url)), 0), "
                            "toInt32OrNull(a_port), if(protocol(a_url) = 'https', 443, 80)), toInt32OrNull(a_port))")

    # 7: the kind, and where the line is attributed
    c.add("kind", "multiIf(text_fmt >= 0, 'envoy-text', json_fmt >= 0, 'envoy-json', is_z, 'ztunnel', "
                     "is_json AND app_request, 'app-json', is_json, 'json-other', app_text_fmt >= 0, 'app-text', "
                     "trim(body) = '', 'empty', 'unrecognized')")
    c.add("w_port", addr_port("e_real_upstream"))

    # 8: the row
    envoy = "kind IN ('envoy-text', 'envoy-json')"
    c.add("origin_", f"multiIf(waypoint, 'waypoint', {envoy}, 'envoy', kind = 'ztunnel', 'ztunnel', 'app')")
    c.add("by_address_", "kind = 'ztunnel' OR waypoint")
    c.add("direction_", f"multiIf(waypoint, 'inbound', kind = 'ztunnel', if(z_direction = 'inbound', 'inbound', "
                          f"'outbound'), {envoy}, e_direction, own_url, 'inbound', url_host != '', 'outbound', "
                          f"'inbound')")
    c.add("method_", f"multiIf({envoy}, e_method, kind = 'app-text', t_method, kind = 'ztunnel', NULL, a_method)")
    c.add("path_", f"multiIf({envoy}, e_path, kind = 'app-text', t_path, kind = 'ztunnel', NULL, own_url, a_path, "
                     "url_host != '', coalesce(a_path, nullIf(path(a_url), ''), '/'), "
                     "coalesce(a_path, if(a_url IS NOT NULL AND position(a_url, '://') = 0, a_url, NULL)))")
    c.add("protocol_", f"multiIf({envoy}, coalesce(e_protocol, 'tcp'), kind = 'ztunnel', 'tcp', 'http')")
    c.add("status_", f"multiIf({envoy}, coalesce(toInt32OrNull(e_code), if(kind = 'envoy-json', 0, NULL)), "
                       "kind = 'app-text', toInt32OrNull(t_status), kind = 'ztunnel', NULL, toInt32OrNull(a_status))")
    c.add("duration_ms_", f"multiIf({envoy}, toFloat64OrNull(e_duration), kind = 'app-text', toFloat64OrNull(t_ms), "
                            "kind = 'ztunnel', toFloat64OrNull(extract(ifNull(z_duration, ''), "
                            "'^([0-9]+(?:\\\\.[0-9]+)?)ms$')), a_duration)")
    c.add("port_", f"multiIf(kind = 'app-text', NULL, waypoint, w_port, kind = 'ztunnel', z_port, {envoy}, "
                     "if(e_direction = 'inbound', coalesce(e_local_port, e_cluster_port), "
                     "coalesce(e_cluster_port, nullIf(w_port, 0), e_local_port)), a_url_port)")
    c.add("authority_", f"multiIf({envoy}, e_authority, kind = 'app-text', NULL, kind = 'ztunnel', z_dst_service, "
                          "url_host != '', coalesce(a_host, nullIf(splitByChar('@', netloc(a_url))[-1], '')), a_host)")
    c.add("upstream_cluster_", f"if({envoy}, e_cluster, NULL)")
    c.add("upstream_host_", f"multiIf({envoy}, e_real_upstream, kind = 'ztunnel', z_target, NULL)")
    c.add("downstream_local_", f"multiIf(waypoint, e_real_upstream, {envoy}, e_downstream_local, "
                                 "kind = 'ztunnel', z_target, NULL)")
    c.add("downstream_remote_", f"multiIf({envoy}, e_downstream_remote, kind = 'app-text', t_client, "
                                  "kind = 'ztunnel', z_src_addr, NULL)")
    c.add("response_flags_", f"multiIf({envoy}, e_flags, kind = 'ztunnel', if(z_error IS NOT NULL, 'error', NULL), "
                               "NULL)")
    c.add("own_ms_", f"multiIf(kind = 'ztunnel', z_own_ms, {envoy}, e_own_ms, kind = 'app-text', t_own_ms, "
                       "kind = 'app-json', a_ts_ms, NULL)")

    for alias, expr in p.key_columns():
        c.add(alias, expr)
    renamed = {"origin", "by_address", "direction", "method", "path", "protocol", "status", "duration_ms", "port",
               "authority", "upstream_cluster", "upstream_host", "downstream_local", "downstream_remote",
               "response_flags", "own_ms"}
    final = [(name, f"{name}_" if name in renamed else name) for name, _ in PARSED_COLUMNS]
    return c.sql(source, ("node_ms", "body", "namespace", "pod", "container"), final)


def otel_lines(table: str, namespace_key: str, pod_key: str, container_key: str, p: Params,
               where: str = "1") -> str:
    """The lines of an OpenTelemetry Collector `otel_logs` table, with the columns parse_lines reads."""
    return (f"SELECT toUnixTimestamp64Milli(Timestamp) AS node_ms, Body AS body, "
            f"nullIf(ResourceAttributes[{p.add(namespace_key)}], '') AS namespace, "
            f"nullIf(ResourceAttributes[{p.add(pod_key)}], '') AS pod, "
            f"nullIf(ResourceAttributes[{p.add(container_key)}], '') AS container "
            f"FROM {p.add(table, 'Identifier')} WHERE {where}")
