"""Where the normalized request rows are, as the summaries see them: the one interface every log source meets.

A source gives `stats` (how every line was accounted for) and runs summary.QUERIES through `query`, over a
relation `requests` with the columns of parts.SCHEMA plus `n` (requests per row), `ts_min` and `ts_max`, and a
relation `durations_src` of inbound timed requests. The file readers give one row per request (table.LogTable);
a log store aggregates where the logs live and gives one row per group (clickhouse.ClickHouseTable). Loki or
Elasticsearch would be one more class like the latter, its aggregation pushed down in its own query language.
"""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd

from obsgap.sources.logs.table import LogStats


class RequestTable(Protocol):
    stats: LogStats

    def query(self, sql: str, params: list[Any] | None = None, **tables: pd.DataFrame) -> pd.DataFrame: ...

    def close(self, remove: bool = True) -> None: ...
