"""Parse at ingest (`obsgap clickhouse-schema`): a table of typed request rows filled from `otel_logs` by a
materialized view, and the read of that table with no per-line parse.

The view's SELECT is the same parse the raw read runs (clickhouse_parse.parse_lines, from the same format
definitions), with its parameters written in as literals (a view takes no query parameters). The table's comment
carries a fingerprint of that SQL: a run whose formats or field mapping differ from the view's says so, since the
rows were parsed by other rules than its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from obsgap.errors import SourceError
from obsgap.sources.logs.clickhouse_parse import PARSED_COLUMNS, Params, otel_lines, parse_lines
from obsgap.sources.logs.envoy_format import AccessFormat

FINGERPRINT_PREFIX = "obsgap-parse:"


def literal(value: Any, type_: str) -> str:
    """A bound parameter's value as a ClickHouse literal of its type."""
    if type_ == "Identifier":
        return "`" + str(value).replace("\\", "\\\\").replace("`", "\\`") + "`"
    if type_.startswith("Array("):
        return "[" + ", ".join(literal(v, type_[len("Array("):-1]) for v in value) + "]"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def inline(sql: str, p: Params) -> str:
    """`sql` with every {name:Type} parameter of `p` replaced by its literal."""
    def one(m: re.Match[str]) -> str:
        name, type_ = m.group(1), m.group(2)
        if name not in p.values:
            raise ValueError(f"parameter {name} has no value")
        return literal(p.values[name], type_)

    return re.sub(r"\{(p[0-9]+):([A-Za-z()]+)\}", one, sql)


def parse_sql(source_table: str, access_formats: tuple[AccessFormat, ...], mapping: Mapping[str, str] | None,
              namespace_key: str, pod_key: str, container_key: str) -> str:
    """Every line of `source_table` as PARSED_COLUMNS, parameters inlined."""
    p = Params()
    lines = otel_lines(source_table, namespace_key, pod_key, container_key, p)
    parsed = parse_lines(lines, access_formats, mapping, p)
    return inline(parsed, p)


def fingerprint(access_formats: tuple[AccessFormat, ...], mapping: Mapping[str, str] | None) -> str:
    """What the rows' parse depends on: the parse SQL itself (formats, mapping and the rules of this version)."""
    sql = parse_sql("otel_logs", access_formats, mapping, "k8s.namespace.name", "k8s.pod.name",
                    "k8s.container.name")
    return FINGERPRINT_PREFIX + hashlib.sha256(sql.encode()).hexdigest()[:16]


_VIEW_SETTINGS = "short_circuit_function_evaluation = 'disable'"
"""As the raw read's query (clickhouse._SETTINGS): with lazy branches the parse takes ten times the time and the
memory (measured in chDB: 20,000 lines 51 s and 9.5 GB against 4.3 s and 0.5 GB). A view's own SETTINGS clause
does not reach the inserts that feed it, so the DDL sets it for the inserting user."""


_HEADER = """\
-- obsgap clickhouse-schema: the logs parsed at ingest. A materialized view runs obsgap's parse on every block the
-- Collector inserts into the logs table and fills a table of typed requests; `obsgap report --clickhouse-table`
-- on that table reads them with no per-line parse. Rows inserted before the view exists are not in it: read the
-- logs table for those windows.
-- The inserts must run with short_circuit_function_evaluation = 'disable': ClickHouse applies no SETTINGS of a
-- view's SELECT to the inserts that feed it (ClickHouse/ClickHouse#111673), and with lazy branches this parse
-- takes ten times the time and memory. A settings profile on the Collector's user does it:
"""


def _ident(name: str) -> str:
    return literal(name, "Identifier")


def schema_ddl(source_table: str, target: str, access_formats: tuple[AccessFormat, ...],
               mapping: Mapping[str, str] | None, namespace_key: str = "k8s.namespace.name",
               pod_key: str = "k8s.pod.name", container_key: str = "k8s.container.name",
               ttl_days: int = 0, insert_user: str | None = None) -> str:
    """The DDL of the typed table `target` and of the materialized view that fills it from `source_table`, after
    the settings profile the inserting user needs."""
    select = parse_sql(source_table, access_formats, mapping, namespace_key, pod_key, container_key)
    columns = ",\n    ".join(f"{name} {type_}" for name, type_ in PARSED_COLUMNS)
    day = "toDate(fromUnixTimestamp64Milli(node_ms))"
    ttl = f"\nTTL {day} + INTERVAL {int(ttl_days)} DAY" if ttl_days > 0 else ""
    comment = fingerprint(access_formats, mapping)
    profile = (f"CREATE SETTINGS PROFILE IF NOT EXISTS obsgap_ingest SETTINGS {_VIEW_SETTINGS} "
               f"TO {_ident(insert_user)};\n\n" if insert_user else
               f"-- CREATE SETTINGS PROFILE IF NOT EXISTS obsgap_ingest SETTINGS {_VIEW_SETTINGS} TO <the Collector's "
               f"user>;\n-- (or that setting in its users.xml profile; `--insert-user NAME` prints the statement)\n\n")
    return (_HEADER + profile
            + f"CREATE TABLE IF NOT EXISTS {_ident(target)} (\n    {columns}\n) ENGINE = MergeTree()\n"
            f"PARTITION BY {day}\nORDER BY (node_ms){ttl}\nCOMMENT '{comment}';\n\n"
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {_ident(target + '_mv')} TO {_ident(target)} AS\n"
            f"{select};\n")


def table_fingerprint(conn: Any, table: str) -> str | None:
    """The parse fingerprint of `table` when obsgap's view fills it (its comment), None for a raw logs table."""
    found = conn.query("SELECT comment FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                       {"t": table})
    if found.empty:
        raise SourceError(f"clickhouse: no table {table} in the current database")
    comment = str(found.iloc[0, 0] or "")
    return comment if comment.startswith(FINGERPRINT_PREFIX) else None


def parsed_rows(table: str, p: Params, where: str) -> str:
    """The rows of a typed table as PARSED_COLUMNS: no parse."""
    return (f"SELECT {', '.join(name for name, _ in PARSED_COLUMNS)} FROM {p.add(table, 'Identifier')} "
            f"WHERE {where}")
