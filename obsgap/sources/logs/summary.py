"""Aggregate the normalized request table into the evidence the checks read (DuckDB, one pass each)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from obsgap.coverage import LogSpan, PodCoverage, partial_pods
from obsgap.evidence import LogEvidence
from obsgap.sources.logs.discover import attribution_from_path
from obsgap.sources.logs.table import LogTable
from obsgap.topology import TopologyIndex, split_host_port


def split_part(dialect: str, expr: str, sep: str, n: int) -> str:
    """The n-th part (1-based) of `expr` split at `sep`: DuckDB's split_part, ClickHouse's splitByString."""
    if dialect == "clickhouse":
        return f"splitByString('{sep}', {expr})[{n}]"
    return f"split_part({expr}, '{sep}', {n})"


def host_sql(column: str, dialect: str = "duckdb") -> str:
    """The host of an `address:port` column in SQL, IPv6 included: `[fd00::1]:8080` -> `fd00::1`,
    `10.0.0.1:80` -> `10.0.0.1` (the same rule as topology.split_host_port)."""
    bracketed = split_part(dialect, f"substr({column}, 2)", "]", 1)
    return (f"(CASE WHEN substr({column}, 1, 1) = '[' THEN {bracketed} "
            f"WHEN length({column}) - length(replace({column}, ':', '')) > 1 THEN {column} "
            f"ELSE {split_part(dialect, column, ':', 1)} END)")


def traffic(dialect: str) -> str:
    """Rows whose file path named no pod are attributed by address: the pod IP Envoy accepted the request on
    (inbound) or sent it from (outbound). Requests that reach the app through pilot-agent (kubelet probes,
    merged-metrics scrapes) are not traffic: every summary reads `traffic`, which leaves them out."""
    return f"""traffic AS (
  SELECT r.* FROM requests r ANTI JOIN agent_paths a
  ON r.origin = 'app' AND r.direction = 'inbound' AND r.namespace = a.namespace AND r.pod = a.pod
     AND {split_part(dialect, "r.path", "?", 1)} = a.path
)
"""


def _bin(step_start: str) -> str:
    """The bin of ts_ms on the window's grid, portable (no `//`)."""
    return f"CAST(floor((ts_ms - {step_start}) / $step) AS BIGINT)"


def sql(name: str, dialect: str = "duckdb") -> str:
    """The summary query `name` in a dialect (duckdb for the Parquet table, clickhouse for a log store); the
    relation `requests` holds the normalized rows of the window."""
    t = traffic(dialect)
    queries = {
        "probes": f"""
SELECT r.namespace, r.pod, count(*) AS requests FROM requests r SEMI JOIN agent_paths a
  ON r.origin = 'app' AND r.direction = 'inbound' AND r.namespace = a.namespace AND r.pod = a.pod
     AND {split_part(dialect, "r.path", "?", 1)} = a.path
GROUP BY ALL
""",
        "inbound": f"""WITH {t}
SELECT namespace, pod, container, origin, port,
       CASE WHEN pod IS NULL THEN {host_sql("downstream_local", dialect)} END AS ip,
       count(*) AS requests,
       count(*) FILTER (WHERE method IS NOT NULL) AS http_requests,
       count(*) FILTER (WHERE status >= 500) AS errors,
       min(ts_ms) AS first_ms, max(ts_ms) AS last_ms
FROM traffic WHERE direction = 'inbound'
GROUP BY ALL
""",
        "outbound": f"""WITH {t}
SELECT namespace, pod, origin, authority, port, upstream_cluster,
       CASE WHEN pod IS NULL THEN {host_sql("downstream_remote", dialect)} END AS ip,
       count(*) AS requests
FROM traffic WHERE direction = 'outbound'
GROUP BY ALL
""",
        "remote": f"""WITH {t}
SELECT namespace, pod, {host_sql("downstream_remote", dialect)} AS remote_ip, count(*) AS requests
FROM traffic WHERE direction = 'inbound' AND origin = 'envoy' AND pod IS NOT NULL
GROUP BY ALL
""",
        # 2% log-scale bins: fine enough to recompute any bucket layout's quantiles within 2%.
        "durations": f"""WITH {t}
SELECT m.namespace, m.service, r.origin,
       exp(ceil(ln(greatest(r.duration_ms, 0.001)) / ln(1.02)) * ln(1.02)) AS upper_ms,
       count(*) AS requests
FROM traffic r JOIN pod_service m ON r.namespace = m.pod_namespace AND r.pod = m.pod
WHERE r.direction = 'inbound' AND r.duration_ms IS NOT NULL AND r.method IS NOT NULL
GROUP BY ALL
""",
        # Time bins aligned on the window start (so the first and last bins are whole), about 24 per window.
        "hourly": f"""WITH {t}
SELECT namespace, pod, $start + {_bin("$start")} * $step AS hour_ms, count(*) AS requests
FROM traffic WHERE direction = 'inbound' AND ts_ms IS NOT NULL AND ts_ms >= $start
GROUP BY ALL
""",
        # Inbound requests per pod, origin, port and bin (t - step, t] aligned on the window start, as the mesh's
        # range query counts them: for the pods whose logs cover only part of the window (coverage.py).
        "bins": f"""WITH {t}
SELECT namespace, pod, origin, port, CASE WHEN pod IS NULL THEN {host_sql("downstream_local", dialect)} END AS ip,
       $start + ({_bin("$start - 1")} + 1) * $step AS bin_end_ms, count(*) AS requests
FROM traffic WHERE direction = 'inbound' AND ts_ms > $start AND ts_ms <= $end
GROUP BY ALL
""",
        # Requests whose file named no pod, or a pod the topology does not have: what the reader could not attribute.
        "unattributed": """
SELECT r.file, r.namespace, r.pod,
       CASE WHEN r.direction = 'inbound' THEN r.downstream_local ELSE r.downstream_remote END AS addr,
       count(*) AS requests
FROM requests r ANTI JOIN known_pods k ON r.namespace = k.namespace AND r.pod = k.pod
GROUP BY ALL
""",
    }
    return queries[name]


MAX_LISTED_FILES = 20


def unattributed(table: LogTable, index: TopologyIndex) -> dict[str, Any]:
    """Requests no pod of the topology can be credited with, per file: those whose file names no pod and whose
    Envoy address is no known pod IP, and (with a topology) those of pods it does not have."""
    known = pd.DataFrame([(p.namespace, p.name) for p in index.topo.pods], columns=["namespace", "pod"]).astype(str)
    rows = table.query(sql("unattributed", table.dialect), known_pods=known)
    scope = set(index.topo.namespaces)
    per_file: dict[str, int] = {}
    unknown: dict[str, int] = {}
    for r in rows.itertuples(index=False) if not rows.empty else ():
        if isinstance(r.pod, str):
            if index.topo.pods and (not scope or r.namespace in scope):
                unknown[f"{r.namespace}/{r.pod}"] = unknown.get(f"{r.namespace}/{r.pod}", 0) + int(r.requests)
            continue
        if isinstance(r.addr, str) and split_host_port(r.addr)[0] in index.pods_by_ip:
            continue
        per_file[str(r.file)] = per_file.get(str(r.file), 0) + int(r.requests)
    files = sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0]))
    pods = sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"requests": sum(per_file.values()),
            "files": [{"path": f, "requests": n} for f, n in files[:MAX_LISTED_FILES]],
            "files_total": len(files),
            "unknown_pods": [{"pod": p, "requests": n} for p, n in pods[:MAX_LISTED_FILES]],
            "unknown_pod_requests": sum(unknown.values()), "unknown_pods_total": len(pods)}


def _attribute(df: pd.DataFrame, index: TopologyIndex) -> pd.DataFrame:
    if df.empty or "ip" not in df.columns:
        return df
    missing = df["pod"].isna() & df["ip"].notna()
    if missing.any():
        pods = df.loc[missing, "ip"].map(lambda ip: index.pods_by_ip.get(ip))
        df.loc[missing, "namespace"] = pods.map(lambda p: p.namespace if p else None)
        df.loc[missing, "pod"] = pods.map(lambda p: p.name if p else None)
    return df.drop(columns=["ip"])


def _timed(query: str, start_ms: int, end_ms: int) -> str:
    """The window's numbers in a query (integers: nothing untrusted is formatted into SQL)."""
    return (query.replace("$start", str(int(start_ms))).replace("$end", str(int(end_ms)))
            .replace("$step", str(time_step_ms(start_ms, end_ms))))


def time_step_ms(start_ms: int, end_ms: int) -> int:
    """About 24 bins per window, in whole minutes (at least 5)."""
    return max(5, round((end_ms - start_ms) / 24 / 60000)) * 60000


def log_spans(table: LogTable, cut_paths: frozenset[str] = frozenset()) -> list[LogSpan]:
    """What each container's files show of time (files in kubelet's layout: others name no one container)."""
    spans = []
    for path, first, last in table.stats.spans:
        where = attribution_from_path(Path(path))
        if where is not None:
            spans.append(LogSpan(where.namespace, where.pod, where.container, first, last, path in cut_paths))
    merged: dict[tuple[str, str, str], LogSpan] = {}
    for span in spans:  # a container's rotated files (and previous run) together
        key = (span.namespace, span.pod, span.container)
        had = merged.get(key)
        merged[key] = span if had is None else LogSpan(*key, min(had.first_ms, span.first_ms),
                                                        max(had.last_ms, span.last_ms), had.cut or span.cut)
    return list(merged.values())


def covered_bins(table: LogTable, index: TopologyIndex, partial: Mapping[tuple[str, str], PodCoverage],
                 start_ms: int, end_ms: int, agent: pd.DataFrame) -> pd.DataFrame:
    """The "bins" query for the pods with partial logs."""
    if not partial:
        return pd.DataFrame(columns=["namespace", "pod", "origin", "port", "bin_end_ms", "requests"])
    bins = _attribute(table.query(_timed(sql("bins", table.dialect), start_ms, end_ms), agent_paths=agent), index)
    keep = [(str(n), str(p)) in partial for n, p in zip(bins["namespace"], bins["pod"], strict=True)]
    return bins[keep].reset_index(drop=True)


def summarize(table: LogTable, index: TopologyIndex, start_ms: int = 0, end_ms: int = 86_400_000,
              cut_paths: frozenset[str] = frozenset()) -> LogEvidence:
    agent = pd.DataFrame(sorted({(p.namespace, p.name, path) for p in index.topo.pods for path in p.agent_paths}),
                         columns=["namespace", "pod", "path"]).astype(str)
    d = table.dialect
    inbound = _attribute(table.query(sql("inbound", d), agent_paths=agent), index)
    outbound = _attribute(table.query(sql("outbound", d), agent_paths=agent), index)
    pod_service = pd.DataFrame(
        [(p.namespace, p.name, s.namespace, s.name) for p in index.topo.pods for s in
         index.services_of_pod(p.namespace, p.name)], columns=["pod_namespace", "pod", "namespace", "service"])
    durations = (table.query(sql("durations", d), pod_service=pod_service, agent_paths=agent) if not pod_service.empty
                 else pd.DataFrame())
    stats = table.stats.as_dict()
    probes = table.query(sql("probes", d), agent_paths=agent)
    stats["agent_requests_excluded"] = int(probes["requests"].sum()) if not probes.empty else 0
    stats["unattributed"] = unattributed(table, index)
    partial = partial_pods(log_spans(table, cut_paths), index.pods_by_key, start_ms, end_ms,
                           time_step_ms(start_ms, end_ms))
    return LogEvidence(
        partial=partial, covered_bins=covered_bins(table, index, partial, start_ms, end_ms, agent),
        inbound=inbound, outbound=outbound, by_remote=table.query(sql("remote", d), agent_paths=agent),
        stats=stats, durations=durations,
        hourly=table.query(_timed(sql("hourly", d), start_ms, end_ms), agent_paths=agent),
    )
