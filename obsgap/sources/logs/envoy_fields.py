"""What an Envoy access log's values mean, whatever the format that carried them (TEXT or JSON): direction and
port from the cluster name and the addresses (inbound: the port the request arrived on), TCP versus HTTP, epoch
start times. One rule for every format: envoy_format maps operators to these field names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.parts import Row
from obsgap.sources.logs.timestamps import parse_ts_ms
from obsgap.sources.logs.values import addr_port, as_float, as_text, dash, int32_or_none, map_unique

_EPOCH = re.compile(r"^\d{9,11}(?:\.\d+)?$")


_CLUSTER_PIPE = re.compile(r"^(inbound|outbound)\|(\d*)\|([^|]*)\|(.*)$")


WAYPOINT_CLUSTERS = ("inbound-vip|", "inbound-pod|")
"""A waypoint's clusters (`inbound-vip|9080|http|ratings.bookinfo.svc.cluster.local`): it proxies the request on to
the pod behind the Service, through HBONE."""
HBONE_UPSTREAM = "envoy://connect_originate/"
"""%UPSTREAM_HOST% through HBONE (istio#50321): the pod's real address follows; `envoy://internal_client_address/`
(%UPSTREAM_LOCAL_ADDRESS%) carries none."""


def real_address(addr: str | None) -> str | None:
    """An Envoy address with HBONE's internal-listener prefix removed; None for an internal address alone. The
    columnar readers leave such lines (and a waypoint's) to the per-line reader."""
    if addr is None or not addr.startswith("envoy://"):
        return addr
    if not addr.startswith(HBONE_UPSTREAM):
        return None
    return addr[len(HBONE_UPSTREAM):].rstrip("/") or None


_CLUSTER_ALT = re.compile(r"^(inbound|outbound)_\.(\d*)_\.([^_]*)_\.(.*)$")


def cluster_parts(cluster: str | None) -> tuple[str | None, int | None, str | None]:
    """(direction, port, host) from an Envoy cluster name (pipe or alt_stat_name form)."""
    if not cluster or cluster == "-":
        return None, None, None
    m = _CLUSTER_PIPE.match(cluster) or _CLUSTER_ALT.match(cluster)
    if m:
        port = int32_or_none(m.group(2)) if m.group(2) else None
        return m.group(1), port, m.group(4) or None
    if cluster.startswith("InboundPassthroughCluster"):
        return "inbound", None, None
    if cluster in ("PassthroughCluster", "BlackHoleCluster"):
        return "outbound", None, None
    return None, None, None


def envoy_row(direction: str | None, cluster: str | None, port: int | None, dlocal: str | None,
              uhost: str | None) -> tuple[str, int | None]:
    """Direction and port of an Envoy line. Inbound, the port is the one the request arrived on
    (%DOWNSTREAM_LOCAL_ADDRESS%): before Istio 1.10 the number in `inbound|8000||` is the Service port, not the
    container's. Outbound, the Service port in the cluster name, else the upstream's or the local address's."""
    if direction is None:
        direction = "outbound"
    if direction == "inbound":
        local = addr_port(dlocal)
        return direction, local if local is not None else port
    if port is not None:
        return direction, port
    upstream = addr_port(uhost)
    return direction, upstream if upstream not in (None, 0) else addr_port(dlocal)


_CLUSTER_PARTS = pa.struct([("direction", pa.string()), ("port", pa.int32())])


def start_ms(start: Any) -> int | None:
    """%START_TIME% in epoch ms: RFC 3339, or epoch seconds as %START_TIME(%s.%3f)% and the like write them."""
    if isinstance(start, str) and _EPOCH.match(start):
        start = float(start)
    return parse_ts_ms(start)


def direction_port_columns(cluster: pa.Array, dlocal: pa.Array, uhost: pa.Array) -> tuple[pa.Array, pa.Array]:
    """envoy_row over columns (absent values null), per distinct cluster name and address."""
    parts = map_unique(cluster, lambda c: cluster_parts(c)[:2], _CLUSTER_PARTS)
    direction = pc.fill_null(parts.field("direction"), "outbound")
    local_port = map_unique(dlocal, addr_port, pa.int32())
    upstream_port = map_unique(uhost, addr_port, pa.int32())
    outbound_port = pc.if_else(pc.fill_null(pc.not_equal(upstream_port, 0), False), upstream_port, local_port)
    port = pc.if_else(pc.equal(direction, "inbound"), pc.coalesce(local_port, parts.field("port")),
                      pc.coalesce(parts.field("port"), outbound_port))
    return direction, port


def envoy_fields_row(fields: Mapping[str, Any]) -> Row:
    """The normalized row of an access log whose format told what each value means (TEXT or JSON alike). A
    waypoint's line is the request as the pod behind it received it: inbound, on the pod's real address and port,
    attributed by that address (not to the waypoint that wrote it)."""
    cluster = dash(as_text(fields.get("cluster")))
    direction, cport, _ = cluster_parts(cluster)
    dlocal, uhost = dash(as_text(fields.get("downstream_local"))), real_address(dash(as_text(fields.get(
        "upstream_host"))))
    waypoint = bool(cluster and cluster.startswith(WAYPOINT_CLUSTERS))
    if waypoint:
        direction, port, dlocal = "inbound", addr_port(uhost), uhost
    else:
        direction, port = envoy_row(direction, cluster, cport, dlocal, uhost)
    protocol = dash(as_text(fields.get("protocol")))
    return {
        "ts_ms": start_ms(fields.get("start")), "origin": "waypoint" if waypoint else "envoy", "direction": direction,
        "method": dash(as_text(fields.get("method"))), "path": dash(as_text(fields.get("path"))),
        # a malformed request ("- - HTTP/1.1" 400 DPE) is still HTTP; only a line with no protocol is TCP
        "protocol": protocol or "tcp",
        "status": int32_or_none(fields.get("code")), "duration_ms": as_float(dash(as_text(fields.get("duration")))),
        "port": port, "authority": dash(as_text(fields.get("authority"))), "upstream_cluster": cluster,
        "upstream_host": uhost, "downstream_local": dlocal,
        "downstream_remote": dash(as_text(fields.get("downstream_remote"))),
        "response_flags": dash(as_text(fields.get("flags"))), "_by_address": waypoint,
    }
