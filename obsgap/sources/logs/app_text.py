"""Text access logs of application servers: NCSA common/combined (gunicorn's default, nginx, Tomcat), uvicorn
(also behind a loguru prefix), morgan `dev` and `tiny`. Per line only: such files are rare enough."""

from __future__ import annotations

import re
from datetime import datetime

from obsgap.sources.logs.parts import Row
from obsgap.sources.logs.values import int32_or_none

# --- application text access logs --------------------------------------------------------------------------
# NCSA common/combined: gunicorn's default access_log_format '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s"
# "%(a)s"' (gunicorn/config.py), nginx's and morgan's `combined`, Tomcat/Spring Boot's `common`.
_NCSA = re.compile(r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)(?: [^"]*)?" '
                   r'(?P<status>\d{3}) \S+(?: "[^"]*" "[^"]*")?(?: (?P<rest>.*))?$')


# uvicorn's access logger: '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s' (its default
# LOGGING_CONFIG), possibly behind another logger's prefix ending in "| ".
_UVICORN = re.compile(r'^(?:.*\| )?(?:INFO|WARNING|ERROR|DEBUG|TRACE):\s+(?P<client>\S+) - "(?P<method>[A-Z]+) '
                      r'(?P<path>\S+) [^"]*" (?P<status>\d{3})\b')


# morgan `dev` (':method :url :status :response-time ms - :res[content-length]') and `tiny`
_MORGAN_DEV = re.compile(r"^(?P<method>[A-Z]+) (?P<path>/\S*) (?P<status>\d{3}) (?P<ms>\d+(?:\.\d+)?) ms - \S+$")


_MORGAN_TINY = re.compile(r"^(?P<method>[A-Z]+) (?P<path>/\S*) (?P<status>\d{3}) \S+ - (?P<ms>\d+(?:\.\d+)?) ms$")


_NCSA_TIME: dict[str, int | None] = {}


def _ncsa_ms(text: str) -> int | None:
    """`07/Dec/2020:02:36:29 +0100` -> epoch ms (cached: a busy log repeats each second many times)."""
    if text not in _NCSA_TIME:
        if len(_NCSA_TIME) > 100_000:
            _NCSA_TIME.clear()
        try:
            _NCSA_TIME[text] = int(datetime.strptime(text, NCSA_TIME).timestamp() * 1000)
        except ValueError:
            _NCSA_TIME[text] = None
    return _NCSA_TIME[text]


# The patterns in the order parse_app_text tries them (clickhouse.py matches the same ones in ClickHouse).
TEXT_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ncsa", _NCSA), ("uvicorn", _UVICORN), ("morgan-dev", _MORGAN_DEV), ("morgan-tiny", _MORGAN_TINY))
NCSA_TIME = "%d/%b/%Y:%H:%M:%S %z"


def parse_app_text(msg: str) -> Row | None:
    """A text access log an application server wrote (gunicorn/nginx/Tomcat NCSA, uvicorn, morgan), or None."""
    ts = duration = None
    m = _NCSA.match(msg)
    if m:
        ts = _ncsa_ms(m["time"])
    else:
        m = _UVICORN.match(msg) or _MORGAN_DEV.match(msg) or _MORGAN_TINY.match(msg)
        if m is None:
            return None
        if "ms" in m.groupdict():
            duration = float(m["ms"])
    return {
        "ts_ms": ts, "origin": "app", "direction": "inbound", "method": m["method"], "path": m["path"],
        "protocol": "http", "status": int32_or_none(m["status"]), "duration_ms": duration, "port": None,
        "authority": None, "upstream_cluster": None, "upstream_host": None, "downstream_local": None,
        "downstream_remote": m.groupdict().get("client"), "response_flags": None,
    }
