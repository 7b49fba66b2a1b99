"""Logs in ClickHouse (`--clickhouse-url`), read with the aggregation pushed down: never a raw row.

The OpenTelemetry Collector's ClickHouse exporter writes every log line to `otel_logs` (Timestamp, Body,
ResourceAttributes with `k8s.namespace.name`/`k8s.pod.name`/`k8s.container.name`, LogAttributes). Each line is
parsed in ClickHouse as the file readers parse it (clickhouse_parse). One query scans the window once and
groups the rows three ways in one GROUP BY: by everything the summaries read (pod, container, origin, direction,
port, status, authority, cluster, caller host, time bin, and each line's kind and format for the statistics), the
durations on a 2% log scale, and each container's first requests for the clock rule. Only those groups come back;
the clock rule (clock.clock_offset, per container where the file readers judge per file) and the window are
applied here, from groups keyed by both the line's own time and the node's.

`chdb:PATH` runs the same SQL in-process on the ClickHouse engine (PyPI chdb) over a local data directory;
`http(s)://host:8123` reaches a server through clickhouse-connect (user and password from files).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from obsgap.errors import InputError, SourceError
from obsgap.sources.logs.clickhouse_parse import ROW_KINDS, Params, Relation, otel_lines, parse_lines
from obsgap.sources.logs.clickhouse_schema import literal, parsed_rows
from obsgap.sources.logs.clock import CLOCK_SAMPLE, clock_offset
from obsgap.sources.logs.envoy_format import AccessFormat
from obsgap.sources.logs.table import LogStats
from obsgap.sources.reports import ClickHouseReport

MARGIN_MS = 10 * 60 * 1000
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
    escapes are decoded, so a backslash (in a pattern, a path) goes in doubled; an array is an array literal."""
    if isinstance(value, list | tuple):
        return literal(list(value), "Array(String)")
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


def build_relation(o: ClickHouseOptions, start_ms: int, end_ms: int, access_formats: tuple[AccessFormat, ...],
                   mapping: Mapping[str, str] | None, parsed: bool = False) -> Relation:
    """Every line of the window (and MARGIN_MS around it, by the Collector's time) as a row of PARSED_COLUMNS:
    parsed in ClickHouse from `otel_logs`, or read as they are from a table obsgap's view filled (`parsed`)."""
    p = Params()
    lo, hi = int(start_ms - MARGIN_MS), int(end_ms + MARGIN_MS)
    if parsed:
        return Relation(parsed_rows(o.table, p, f"node_ms >= {lo} AND node_ms < {hi}"), p.values)
    where = (f"Timestamp >= fromUnixTimestamp64Milli(toInt64({lo})) AND "
             f"Timestamp < fromUnixTimestamp64Milli(toInt64({hi}))")
    lines = otel_lines(o.table, o.namespace_key, o.pod_key, o.container_key, p, where)
    return Relation(parse_lines(lines, access_formats, mapping, p), p.values)


_NO_OWN = -(2 ** 62)
"""The clock sample's (own - node) for a request without its own time. The sample comes back as text
`node:delta ...`: a Nullable tuple member crashes chDB's groupArraySorted, arrays its DataFrame output."""
_HOST = ("multiIf(startsWith({c}, '['), splitByString(']', substr({c}, 2))[1], "
         "length({c}) - length(replace({c}, ':', '')) > 1, {c}, splitByChar(':', {c})[1])")
_ROWS = "(" + ", ".join(f"'{k}'" for k in ROW_KINDS) + ")"
_TIMED = f"kind IN {_ROWS} AND direction = 'inbound' AND duration_ms IS NOT NULL AND method IS NOT NULL"
_SETS = {  # the keys of each of the three groupings (1: requests and statistics, 2: durations, 3: clock samples)
    "namespace": (1, 2, 3), "pod": (1, 2, 3), "container": (1, 2, 3), "by_address": (1, 2), "origin": (1, 2),
    "kind": (1,), "access_format": (1,), "unknown_unit": (1,), "direction": (1,), "http": (1,), "k_path": (1, 2),
    "status": (1,), "port": (1,), "authority": (1,), "upstream_cluster": (1,), "dl_host": (1,), "dr_host": (1,),
    "z_flags": (1,), "own_bin": (1,), "node_bin": (1,), "own_in": (1, 2), "node_in": (1, 2), "d_bucket": (2,)}


_SETTINGS = ("short_circuit_function_evaluation = 'disable', optimize_group_by_function_keys = 0, "
             "optimize_injective_functions_in_group_by = 0, optimize_aggregators_of_group_by_keys = 0, "
             "optimize_group_by_constant_keys = 0")
"""Lazy branches recompute the subexpressions they share (the parse is gated by input instead); the GROUP BY
passes analyse the keys' expressions down through every level of the parse, seconds of analysis for nothing."""


def aggregate_sql(parsed: str, start_ms: int, end_ms: int, step_ms: int) -> str:
    """The one query: the parsed rows grouped three ways at once (each row joined to the groupings it belongs to),
    keyed by both its own time and the node's so that the clock rule can be applied to the groups."""
    agent = ("origin = 'app' AND direction = 'inbound' AND has(arrayZip({agent_ns:Array(String)}, "
             "{agent_pod:Array(String)}, {agent_path:Array(String)}), (ifNull(namespace, ''), ifNull(pod, ''), "
             "splitByChar('?', ifNull(path, ''))[1]))")
    start, end, step = int(start_ms), int(end_ms), int(step_ms)
    keys = ", ".join(f"if(grouping_set IN ({', '.join(map(str, sets))}), {name}, NULL) AS g_{name}"
                     for name, sets in _SETS.items())
    return f"""SELECT grouping_set, {', '.join(f'g_{name}' for name in _SETS)},
       count() AS n, min(own_ms) AS own_min, max(own_ms) AS own_max, min(node_ms) AS node_min,
       max(node_ms) AS node_max, anyIf(sample, sample != '') AS sample,
       arrayStringConcat(arrayMap(x -> concat(toString(x.1), ':', toString(x.2)), groupArraySortedIf({CLOCK_SAMPLE})(
           (node_ms, ifNull(own_ms - node_ms, {_NO_OWN})), grouping_set = 3)), ' ') AS clock
FROM (
  SELECT grouping_set, node_ms, own_ms, sample, {keys}
  FROM (
    SELECT *, arrayJoin(sets) AS grouping_set
    FROM (
      SELECT node_ms, own_ms, sample, namespace, pod, container, by_address, origin, kind, access_format,
             unknown_unit, direction, method IS NOT NULL AS http, if({agent}, path, NULL) AS k_path, status, port,
             authority, upstream_cluster, if(pod IS NULL OR by_address, {_HOST.format(c="downstream_local")}, NULL)
             AS dl_host, {_HOST.format(c="downstream_remote")} AS dr_host,
             if(origin = 'ztunnel', response_flags, NULL) AS z_flags,
             toInt64(floor((own_ms - {start}) / {step})) AS own_bin, toInt64(floor((node_ms - {start}) / {step}))
             AS node_bin, own_ms >= {start} AND own_ms < {end} AS own_in, node_ms >= {start} AND node_ms < {end}
             AS node_in,
             if({_TIMED}, exp((ceil(ln(greatest(duration_ms, 0.001)) / ln(1.02)) - 0.5) * ln(1.02)), NULL)
             AS d_bucket,
             multiIf({_TIMED}, [1, 2, 3], kind IN {_ROWS}, [1, 3], [1]) AS sets
      FROM ({parsed})
    )
  )
)
GROUP BY grouping_set, {', '.join(f'g_{name}' for name in _SETS)}
SETTINGS {_SETTINGS}"""


def _where(ns: Any, pod: Any, container: Any) -> str:
    return f"clickhouse:{ns or '?'}/{pod or '?'}/{container or '?'}"


class ClickHouseTable:
    """The requests of a log store, parsed and aggregated where they live in one query; the groups come back into
    a local DuckDB relation `requests` with a request count `n` per row (and `durations_src`). Duck-typed like
    table.LogTable."""

    def __init__(self, conn: Connection, relation: Relation, start_ms: int, end_ms: int,
                 access_formats: tuple[AccessFormat, ...], agent_paths: pd.DataFrame, step_ms: int) -> None:
        import duckdb

        self.conn = conn
        self.start_ms, self.end_ms, self.step_ms = start_ms, end_ms, step_ms
        self.sent: list[str] = []
        self.seconds: list[float] = []
        self.rows_returned = 0
        params = relation.params | {"agent_ns": [str(v) for v in agent_paths["namespace"]],
                                    "agent_pod": [str(v) for v in agent_paths["pod"]],
                                    "agent_path": [str(v) for v in agent_paths["path"]]}
        frame = self._fetch(aggregate_sql(relation.sql, start_ms, end_ms, step_ms), params)
        if frame.empty:
            frame = pd.DataFrame(columns=["grouping_set", *(f"g_{k}" for k in _SETS), "n", "own_min", "own_max",
                                          "node_min", "node_max", "sample", "clock"])
        frame = frame.rename(columns={f"g_{k}": k for k in _SETS})
        frame["where"] = [_where(*x) for x in zip(frame["namespace"], frame["pod"], frame["container"], strict=True)]
        self.skewed = self._clock(frame[frame["grouping_set"] == 3])
        groups = self._timed(frame[frame["grouping_set"] == 1])
        durations = self._timed(frame[frame["grouping_set"] == 2])
        self.rows_scanned = int(groups["n"].sum())
        self.stats = self._stats(groups)
        rows = groups[groups["kind"].isin(ROW_KINDS) & groups["in_window"]]
        by_address = rows["by_address"].astype(bool)
        requests = pd.DataFrame({
            "ts_ms": rows["ts_min"], "namespace": rows["namespace"].where(~by_address, None),
            "pod": rows["pod"].where(~by_address, None), "container": rows["container"].where(~by_address,
                                                                                              rows["origin"]),
            "origin": rows["origin"], "direction": rows["direction"],
            "method": rows["http"].map(lambda h: "HTTP" if h else None), "path": rows["k_path"],
            "status": rows["status"], "port": rows["port"], "authority": rows["authority"],
            "upstream_cluster": rows["upstream_cluster"], "downstream_local": rows["dl_host"],
            "downstream_remote": rows["dr_host"], "response_flags": rows["z_flags"], "file": rows["where"],
            "n": rows["n"], "ts_min": rows["ts_min"], "ts_max": rows["ts_max"]})
        timed = durations[durations["in_window"]]
        d_address = timed["by_address"].astype(bool)
        durations_src = pd.DataFrame({
            "namespace": timed["namespace"].where(~d_address, None), "pod": timed["pod"].where(~d_address, None),
            "origin": timed["origin"], "path": timed["k_path"], "duration_ms": timed["d_bucket"], "n": timed["n"]})
        self.local = duckdb.connect()
        self.local.register("groups_df", requests)
        self.local.register("durations_df", durations_src)
        self.local.execute("""CREATE TABLE requests AS SELECT
            CAST(ts_ms AS BIGINT) AS ts_ms, CAST(namespace AS VARCHAR) AS namespace, CAST(pod AS VARCHAR) AS pod,
            CAST(container AS VARCHAR) AS container, CAST(origin AS VARCHAR) AS origin,
            CAST(direction AS VARCHAR) AS direction, CAST(method AS VARCHAR) AS method, CAST(path AS VARCHAR) AS path,
            CAST(NULL AS VARCHAR) AS protocol, CAST(status AS INTEGER) AS status, CAST(NULL AS DOUBLE) AS duration_ms,
            CAST(port AS INTEGER) AS port, CAST(authority AS VARCHAR) AS authority,
            CAST(upstream_cluster AS VARCHAR) AS upstream_cluster, CAST(NULL AS VARCHAR) AS upstream_host,
            CAST(downstream_local AS VARCHAR) AS downstream_local,
            CAST(downstream_remote AS VARCHAR) AS downstream_remote, CAST(response_flags AS VARCHAR) AS response_flags,
            CAST(file AS VARCHAR) AS file, CAST(n AS BIGINT) AS n, CAST(ts_min AS BIGINT) AS ts_min,
            CAST(ts_max AS BIGINT) AS ts_max FROM groups_df""")
        self.local.execute("""CREATE TABLE durations_src AS SELECT CAST(namespace AS VARCHAR) AS namespace,
            CAST(pod AS VARCHAR) AS pod, CAST(origin AS VARCHAR) AS origin, 'inbound' AS direction, 'HTTP' AS method,
            CAST(path AS VARCHAR) AS path, CAST(duration_ms AS DOUBLE) AS duration_ms, CAST(n AS BIGINT) AS n
            FROM durations_df""")
        self.local.unregister("groups_df")
        self.local.unregister("durations_df")

    def _clock(self, samples: pd.DataFrame) -> dict[str, int]:
        """clock.py's rule per container, on its first CLOCK_SAMPLE requests by the node's time."""
        skewed = {}
        for where, clock in zip(samples["where"], samples["clock"], strict=True):
            first = sorted(tuple(map(int, pair.split(":"))) for pair in str(clock or "").split())[:CLOCK_SAMPLE]
            offset = clock_offset([(node + delta, node) for node, delta in first if delta != _NO_OWN])
            if offset is not None:
                skewed[where] = offset
        return skewed

    def _timed(self, groups: pd.DataFrame) -> pd.DataFrame:
        """Each group timed as its lines are: by their own time, or the node's where there is none or the clock
        rule judged the container's own clock off."""
        groups = groups.copy()
        retimed = groups["where"].isin(list(self.skewed))
        own = ~retimed & groups["own_min"].notna()
        groups["retimed"] = retimed
        groups["ts_min"] = groups["own_min"].where(own, groups["node_min"]).astype("int64")
        groups["ts_max"] = groups["own_max"].where(own, groups["node_max"]).astype("int64")
        groups["in_window"] = groups["own_in"].where(own, groups["node_in"]).fillna(False).astype(bool)
        return groups

    def _fetch(self, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
        self.sent.append(sql)
        started = time.perf_counter()
        frame = self.conn.query(sql, params)
        self.seconds.append(round(time.perf_counter() - started, 2))
        self.rows_returned += len(frame)
        if frame.empty:
            return frame
        for col in frame.columns:  # ClickHouse's Nullable(String) may arrive as "" or NaN: one absent value
            if frame[col].dtype == object and col != "clock":
                frame[col] = frame[col].replace({"": None})
                frame[col] = frame[col].where(frame[col].notna(), None)
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

    def _stats(self, groups: pd.DataFrame) -> LogStats:
        formats: Counter[str] = Counter()
        access: Counter[tuple[str, str]] = Counter()
        spans: dict[str, tuple[int, int]] = {}
        unknown: Counter[tuple[str, str]] = Counter()
        unparsed: dict[str, tuple[int, str]] = {}
        skew: dict[str, tuple[int, int]] = {}
        lines = requests = out = 0
        for r in groups.itertuples(index=False):
            n, kind, where = int(r.n), str(r.kind), str(r.where)
            lines += n
            formats[kind] += n
            if kind in ROW_KINDS:
                if r.in_window:
                    requests += n
                else:
                    out += n
                if r.namespace and r.pod and r.container:
                    path = f"/clickhouse/pods/{r.namespace}_{r.pod}_{'0' * 8}/{r.container}/0.log"
                    lo, hi = spans.get(path, (int(r.ts_min), int(r.ts_max)))
                    spans[path] = (min(lo, int(r.ts_min)), max(hi, int(r.ts_max)))
                if r.retimed:
                    had = skew.get(where, (self.skewed[where], 0))
                    skew[where] = (had[0], had[1] + n)
            if kind in ("envoy-text", "envoy-json") and r.access_format:
                access[(where, str(r.access_format))] += n
            if kind == "app-json" and r.unknown_unit:
                unknown[(where, str(r.unknown_unit))] += n
            if kind == "unrecognized":
                had_u = unparsed.get(where, (0, ""))
                unparsed[where] = (had_u[0] + n, had_u[1] or str(r.sample or ""))
        return LogStats(
            files=len(set(groups["where"])), lines=lines,
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

    def report(self, parsed_at_ingest: bool = False, parse_mismatch: bool = False) -> ClickHouseReport:
        return ClickHouseReport(len(self.sent), self.rows_returned, tuple(self.seconds),
                                tuple(q if len(q) < 4000 else q[:4000] + " …" for q in self.sent[:2]),
                                rows_scanned=self.rows_scanned, parsed_at_ingest=parsed_at_ingest,
                                parse_mismatch=parse_mismatch)

    def close(self, remove: bool = True) -> None:
        self.local.close()
        self.conn.close()
