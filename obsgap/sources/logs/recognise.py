"""Which format one message is in (the mesh's own access-log formats first, then Istio's, then application JSON and
text), its request row, and what the line itself says about who wrote it. Per line: the columnar reader decides
per file kind instead and hands back whatever it cannot read exactly."""

from __future__ import annotations

from typing import Any

import orjson

from obsgap.sources.logs.app_json import parse_app_json
from obsgap.sources.logs.app_text import parse_app_text
from obsgap.sources.logs.attribution import k8s_attribution
from obsgap.sources.logs.envoy_format import ISTIO_JSON, builtin_text_formats
from obsgap.sources.logs.envoy_json import parse_envoy_json
from obsgap.sources.logs.envoy_text import match_envoy_text
from obsgap.sources.logs.parts import Row
from obsgap.sources.logs.task import FileStats, ReadTask
from obsgap.sources.logs.ztunnel import parse_ztunnel_json, parse_ztunnel_text

SAMPLE_CHARS = 160


def recognise(msg: str, wrapper: dict[str, Any] | None, task: ReadTask,
           stats: FileStats) -> tuple[Row | None, tuple[str | None, str | None, str | None]]:
    attribution: tuple[str | None, str | None, str | None] = (None, None, None)
    if wrapper is not None and "kubernetes" in wrapper:
        attribution = k8s_attribution(wrapper)
    custom = task.text_formats
    if msg.startswith("[") or (custom and not msg.startswith("{")):
        found = match_envoy_text(msg, (*custom, *builtin_text_formats()))
        if found is not None:
            stats.formats["envoy-text"] += 1
            stats.access_formats[found[1].name] += 1
            return found[0], attribution
    if msg.startswith("{"):
        try:
            obj = orjson.loads(msg)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            if attribution == (None, None, None):
                attribution = k8s_attribution(obj)
            for fmt in (*task.json_formats, ISTIO_JSON):
                row = parse_envoy_json(obj, fmt)
                if row is not None:
                    stats.formats["envoy-json"] += 1
                    stats.access_formats[fmt.name] += 1
                    return row, attribution
            row = parse_ztunnel_json(obj)
            if row is not None:
                stats.formats["ztunnel"] += 1
                return row, attribution
            row = parse_app_json(obj, task.mapping)
            if row is not None:
                stats.formats["app-json"] += 1
                return row, attribution
            stats.formats["json-other"] += 1
            stats.nonrequest += 1
            return None, attribution
    row = parse_ztunnel_text(msg) if msg[:1].isalnum() and "access" in msg else None
    if row is not None:
        stats.formats["ztunnel"] += 1
        return row, attribution
    row = parse_app_text(msg) if msg[:1].isalnum() else None
    if row is not None:
        stats.formats["app-text"] += 1
        return row, attribution
    if msg.strip() == "":
        stats.formats["empty"] += 1
        stats.nonrequest += 1
        return None, attribution
    stats.formats["unrecognized"] += 1
    stats.unparsed += 1
    if stats.unparsed_sample is None:
        stats.unparsed_sample = msg[:SAMPLE_CHARS]
    return None, attribution
