"""Aggregate the normalized request table into the evidence the checks read (DuckDB, one pass each)."""

from __future__ import annotations

import pandas as pd

from obsgap.evidence import LogEvidence
from obsgap.sources.logs.table import LogTable
from obsgap.topology import TopologyIndex

# Rows whose file path named no pod are attributed by address: the pod IP Envoy accepted the
# request on (inbound) or sent it from (outbound).
INBOUND_SQL = """
SELECT namespace, pod, container, origin, port,
       CASE WHEN pod IS NULL THEN split_part(downstream_local, ':', 1) END AS ip,
       count(*) AS requests,
       count(*) FILTER (WHERE method IS NOT NULL) AS http_requests,
       count(*) FILTER (WHERE status >= 500) AS errors,
       min(ts_ms) AS first_ms, max(ts_ms) AS last_ms
FROM requests WHERE direction = 'inbound'
GROUP BY ALL
"""
OUTBOUND_SQL = """
SELECT namespace, pod, origin, authority, port, upstream_cluster,
       CASE WHEN pod IS NULL THEN split_part(downstream_remote, ':', 1) END AS ip,
       count(*) AS requests
FROM requests WHERE direction = 'outbound'
GROUP BY ALL
"""
REMOTE_SQL = """
SELECT namespace, pod, split_part(downstream_remote, ':', 1) AS remote_ip, count(*) AS requests
FROM requests WHERE direction = 'inbound' AND origin = 'envoy' AND pod IS NOT NULL
GROUP BY ALL
"""
HOURLY_SQL = """
SELECT namespace, pod, (ts_ms // 3600000) * 3600000 AS hour_ms, count(*) AS requests
FROM requests WHERE direction = 'inbound' AND ts_ms IS NOT NULL
GROUP BY ALL
"""


def _attribute(df: pd.DataFrame, index: TopologyIndex) -> pd.DataFrame:
    if df.empty or "ip" not in df.columns:
        return df
    missing = df["pod"].isna() & df["ip"].notna()
    if missing.any():
        pods = df.loc[missing, "ip"].map(lambda ip: index.pods_by_ip.get(ip))
        df.loc[missing, "namespace"] = pods.map(lambda p: p.namespace if p else None)
        df.loc[missing, "pod"] = pods.map(lambda p: p.name if p else None)
    return df.drop(columns=["ip"])


def summarize(table: LogTable, index: TopologyIndex) -> LogEvidence:
    inbound = _attribute(table.query(INBOUND_SQL), index)
    outbound = _attribute(table.query(OUTBOUND_SQL), index)
    return LogEvidence(
        inbound=inbound, outbound=outbound, by_remote=table.query(REMOTE_SQL),
        stats=table.stats.as_dict(), hourly=table.query(HOURLY_SQL),
    )
