"""ztunnel's access logs (Istio ambient mode): one line per connection, L4 evidence.

As istio/ztunnel writes them (src/telemetry.rs, src/proxy/metrics.rs; docs/design.md "Ambient mode"):
- TEXT, the default: `<RFC 3339 time>\\t<level>\\taccess\\tconnection complete\\t<key=value ...>`, strings in Rust's
  Debug quoting (`dst.workload="web-1"`), addresses and integers bare; copies in docs and issues show spaces for
  the tabs, and some start at the level (the time cut off): both are read.
- JSON (`LOG_FORMAT=json`): one flat object, `"scope": "access"`, `"message": "connection complete"`, the dotted keys
  as literal names (`"dst.addr"`), byte counts as numbers.
The line is written by a ztunnel pod but is about the pods it names: it is attributed by address (the destination
pod's for an inbound connection, the source pod's for an outbound one), never by the file it is in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from obsgap.sources.logs.parts import Row
from obsgap.sources.logs.timestamps import parse_ts_ms
from obsgap.sources.logs.values import addr_port, as_text, dash

ORIGIN = "ztunnel"
MESSAGES = ("connection complete", "connection failed")
"""`connection complete` ends every connection (INFO, or ERROR with `error=`); `connection failed` is an early denial
(WARN). Both are one connection. `connection opened` (DEBUG) would count it twice: it is not a row."""
_TEXT = re.compile(r"^(?:(?P<time>\d{4}-\d\d-\d\dT\S+)\s+)?(?P<level>trace|debug|info|warn|error)\s+access\s+"
                   r"(?P<message>connection [a-z]+)\s+(?P<fields>\S.*)$")
_FIELD = re.compile(r'([a-z_][a-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)ms$")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_ztunnel_text(msg: str) -> Row | None:
    m = _TEXT.match(msg)
    if m is None or m["message"] not in MESSAGES:
        return None
    fields = {k: _unquote(v) for k, v in _FIELD.findall(m["fields"])}
    if "dst.addr" not in fields and "src.addr" not in fields:
        return None
    return _row(parse_ts_ms(m["time"]) if m["time"] else None, fields)


def parse_ztunnel_json(obj: Mapping[str, Any]) -> Row | None:
    if obj.get("scope") != "access" or obj.get("message") not in MESSAGES:
        return None
    if "dst.addr" not in obj and "src.addr" not in obj:
        return None
    return _row(parse_ts_ms(obj.get("time")), {k: as_text(v) or "" for k, v in obj.items()})


def ztunnel_shaped(names: list[str]) -> bool:
    """Columns Arrow read from JSON lines that are ztunnel's: the per-line reader takes them (parse_ztunnel_json)."""
    return "scope" in names and "message" in names and any(n.startswith(("dst.", "src.")) for n in names)


def _row(ts: int | None, f: Mapping[str, str]) -> Row:
    inbound = f.get("direction") == "inbound"
    # through HBONE dst.addr is the pod's tunnel port (15008); dst.hbone_addr the port the workload serves
    target = dash(f.get("dst.hbone_addr")) or dash(f.get("dst.addr"))
    duration = _DURATION.match(f.get("duration", ""))
    return {
        "ts_ms": ts, "origin": ORIGIN, "direction": "inbound" if inbound else "outbound", "method": None,
        "path": None, "protocol": "tcp", "status": None,
        "duration_ms": float(duration.group(1)) if duration else None,
        "port": addr_port(target), "authority": dash(f.get("dst.service")), "upstream_cluster": None,
        "upstream_host": target, "downstream_local": target, "downstream_remote": dash(f.get("src.addr")),
        "response_flags": "error" if f.get("error") else None, "_by_address": True,
    }
