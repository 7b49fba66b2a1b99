"""Aggregate the normalized request table into the evidence the checks read (DuckDB, one pass each)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from obsgap.evidence import LogEvidence
from obsgap.intervals import LogSpan, PodCoverage, partial_pods, time_step_ms
from obsgap.names import split_host_port
from obsgap.sources.logs.discover import attribution_from_path
from obsgap.sources.logs.store import RequestTable
from obsgap.sources.logs.table import LogStats
from obsgap.sources.reports import FileRequests, PodRequests, Unattributed
from obsgap.topology import TopologyIndex


def host_sql(column: str) -> str:
    """The host of an `address:port` column in SQL, IPv6 included: `[fd00::1]:8080` -> `fd00::1`,
    `10.0.0.1:80` -> `10.0.0.1` (the same rule as topology.split_host_port)."""
    return (f"(CASE WHEN starts_with({column}, '[') THEN split_part(substr({column}, 2), ']', 1) "
            f"WHEN length({column}) - length(replace({column}, ':', '')) > 1 THEN {column} "
            f"ELSE split_part({column}, ':', 1) END)")


# Every summary reads `requests`: one row per request from the file readers (n = 1), or one row per group of
# requests a log store aggregated (n requests, ts_min..ts_max, clickhouse.py). Rows whose file path named no pod
# are attributed by address: the pod IP Envoy accepted the request on (inbound) or sent it from (outbound).
# Requests that reach the app through pilot-agent (kubelet probes, merged-metrics scrapes) are not traffic:
# `traffic` leaves them out; the "probes" query counts them.
# ztunnel's lines are connections, not requests: only the "connections" query reads them.
def _traffic(source: str = "requests") -> str:
    return f"""traffic AS (
  SELECT r.* FROM {source} r ANTI JOIN agent_paths a
  ON r.origin = 'app' AND r.direction = 'inbound' AND r.namespace = a.namespace AND r.pod = a.pod
     AND split_part(r.path, '?', 1) = a.path
  WHERE r.origin <> 'ztunnel'
)
"""


_BIN = "CAST(floor((ts_ms - $start) / $step) AS BIGINT)"
QUERIES = {
    "probes": """
SELECT r.namespace, r.pod, sum(r.n) AS requests FROM requests r SEMI JOIN agent_paths a
  ON r.origin = 'app' AND r.direction = 'inbound' AND r.namespace = a.namespace AND r.pod = a.pod
     AND split_part(r.path, '?', 1) = a.path
GROUP BY ALL
""",
    "inbound": f"""WITH {_traffic()}
SELECT namespace, pod, container, origin, port,
       CASE WHEN pod IS NULL THEN {host_sql("downstream_local")} END AS ip,
       sum(n) AS requests,
       coalesce(sum(n) FILTER (WHERE method IS NOT NULL), 0) AS http_requests,
       coalesce(sum(n) FILTER (WHERE status >= 500), 0) AS errors,
       min(ts_min) AS first_ms, max(ts_max) AS last_ms
FROM traffic WHERE direction = 'inbound'
GROUP BY ALL
""",
    "outbound": f"""WITH {_traffic()}
SELECT namespace, pod, origin, authority, port, upstream_cluster,
       CASE WHEN pod IS NULL THEN {host_sql("downstream_remote")} END AS ip,
       sum(n) AS requests
FROM traffic WHERE direction = 'outbound'
GROUP BY ALL
""",
    "remote": f"""WITH {_traffic()}
SELECT namespace, pod, {host_sql("downstream_remote")} AS remote_ip, sum(n) AS requests
FROM traffic WHERE direction = 'inbound' AND origin = 'envoy' AND pod IS NOT NULL
GROUP BY ALL
""",
    # 2% log-scale bins: fine enough to recompute any bucket layout's quantiles within 2%.
    "durations": f"""WITH {_traffic("durations_src")}
SELECT m.namespace, m.service, r.origin,
       exp(ceil(ln(greatest(r.duration_ms, 0.001)) / ln(1.02)) * ln(1.02)) AS upper_ms,
       sum(r.n) AS requests
FROM traffic r JOIN pod_service m ON r.namespace = m.pod_namespace AND r.pod = m.pod
WHERE r.direction = 'inbound' AND r.duration_ms IS NOT NULL AND r.method IS NOT NULL
GROUP BY ALL
""",
    # Time bins aligned on the window start (so the first and last bins are whole), about 24 per window.
    # Per origin and port, so a timeline counts each request once with the coverage table's rule (witness.py).
    "hourly": f"""WITH {_traffic()}
SELECT namespace, pod, origin, port, CASE WHEN pod IS NULL THEN {host_sql("downstream_local")} END AS ip,
       $start + {_BIN} * $step AS hour_ms, sum(n) AS requests
FROM traffic WHERE direction = 'inbound' AND ts_ms IS NOT NULL AND ts_ms >= $start
GROUP BY ALL
""",
    # Inbound requests per pod, origin, port and bin, for the pods whose logs cover only part of the window
    # (intervals.py): bin k is (start + k*step, start + (k+1)*step], as the mesh's range query counts it.
    "bins": f"""WITH {_traffic()}
SELECT namespace, pod, origin, port, CASE WHEN pod IS NULL THEN {host_sql("downstream_local")} END AS ip,
       $start + ({_BIN} + 1) * $step AS bin_end_ms, sum(n) AS requests
FROM traffic WHERE direction = 'inbound' AND ts_ms >= $start AND ts_ms < $end
GROUP BY ALL
""",
    "connections": f"""
SELECT namespace, pod, direction, port, authority,
       CASE WHEN pod IS NULL THEN {host_sql("CASE WHEN direction = 'inbound' THEN downstream_local "
                                            "ELSE downstream_remote END")} END AS ip,
       sum(n) AS connections, coalesce(sum(n) FILTER (WHERE response_flags = 'error'), 0) AS errors
FROM requests WHERE origin = 'ztunnel'
GROUP BY ALL
""",
    # Requests whose file named no pod, or a pod the topology does not have: what the reader could not attribute.
    "unattributed": """
SELECT r.file, r.namespace, r.pod,
       CASE WHEN r.direction = 'inbound' THEN r.downstream_local ELSE r.downstream_remote END AS addr,
       sum(r.n) AS requests
FROM requests r ANTI JOIN known_pods k ON r.namespace = k.namespace AND r.pod = k.pod
GROUP BY ALL
""",
}


MAX_LISTED_FILES = 20


def unattributed(table: RequestTable, index: TopologyIndex) -> Unattributed:
    """Requests no pod of the topology can be credited with, per file: those whose file names no pod and whose
    Envoy address is no known pod IP, and (with a topology) those of pods it does not have."""
    known = pd.DataFrame([(p.namespace, p.name) for p in index.topo.pods], columns=["namespace", "pod"]).astype(str)
    rows = table.query(QUERIES["unattributed"], known_pods=known)
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
    return Unattributed(sum(per_file.values()), tuple(FileRequests(f, n) for f, n in files[:MAX_LISTED_FILES]),
                        len(files), tuple(PodRequests(p, n) for p, n in pods[:MAX_LISTED_FILES]),
                        sum(unknown.values()), len(pods))


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


def log_spans(table: RequestTable, cut_paths: frozenset[str] = frozenset()) -> list[LogSpan]:
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


def covered_bins(table: RequestTable, index: TopologyIndex, partial: Mapping[tuple[str, str], PodCoverage],
                 start_ms: int, end_ms: int, agent: pd.DataFrame) -> pd.DataFrame:
    """The "bins" query for the pods with partial logs."""
    if not partial:
        return pd.DataFrame(columns=["namespace", "pod", "origin", "port", "bin_end_ms", "requests"])
    bins = _attribute(table.query(_timed(QUERIES["bins"], start_ms, end_ms), agent_paths=agent), index)
    keep = [(str(n), str(p)) in partial for n, p in zip(bins["namespace"], bins["pod"], strict=True)]
    return bins[keep].reset_index(drop=True)


def agent_paths(index: TopologyIndex) -> pd.DataFrame:
    """(namespace, pod, path) that kubelet probes and Prometheus scrapes reach through pilot-agent."""
    return pd.DataFrame(sorted({(p.namespace, p.name, path) for p in index.topo.pods for path in p.agent_paths}),
                        columns=["namespace", "pod", "path"]).astype(str)


@dataclass(frozen=True)
class Accounting:
    """How the requests of the table were counted, for the logs' source report."""

    stats: LogStats
    agent_requests_excluded: int
    unattributed: Unattributed


def summarize(table: RequestTable, index: TopologyIndex, start_ms: int = 0, end_ms: int = 86_400_000,
              cut_paths: frozenset[str] = frozenset()) -> tuple[LogEvidence, Accounting]:
    agent = agent_paths(index)
    inbound = _attribute(table.query(QUERIES["inbound"], agent_paths=agent), index)
    outbound = _attribute(table.query(QUERIES["outbound"], agent_paths=agent), index)
    pod_service = pd.DataFrame(
        [(p.namespace, p.name, s.namespace, s.name) for p in index.topo.pods for s in
         index.services_of_pod(p.namespace, p.name)], columns=["pod_namespace", "pod", "namespace", "service"])
    durations = (table.query(QUERIES["durations"], pod_service=pod_service, agent_paths=agent) if not pod_service.empty
                 else pd.DataFrame())
    probes = table.query(QUERIES["probes"], agent_paths=agent)
    accounting = Accounting(table.stats, int(probes["requests"].sum()) if not probes.empty else 0,
                            unattributed(table, index))
    partial = partial_pods(log_spans(table, cut_paths), index.pods_by_key, start_ms, end_ms,
                           time_step_ms(start_ms, end_ms))
    return LogEvidence(
        partial=partial, covered_bins=covered_bins(table, index, partial, start_ms, end_ms, agent),
        inbound=inbound, outbound=outbound, by_remote=table.query(QUERIES["remote"], agent_paths=agent),
        durations=durations,
        hourly=_attribute(table.query(_timed(QUERIES["hourly"], start_ms, end_ms), agent_paths=agent), index),
        connections=_attribute(table.query(QUERIES["connections"]), index),
    ), accounting
