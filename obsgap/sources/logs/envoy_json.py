"""Envoy access logs in JSON encoding: Istio's default keys (ISTIO_JSON) or the mesh's own labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from obsgap.sources.logs.envoy_fields import envoy_fields_row
from obsgap.sources.logs.envoy_format import ISTIO_JSON, JsonFormat
from obsgap.sources.logs.parts import Row


def parse_envoy_json(obj: Mapping[str, Any], fmt: JsonFormat = ISTIO_JSON) -> Row | None:
    if fmt is ISTIO_JSON and "upstream_cluster" not in obj and not ("start_time" in obj and "response_code" in obj):
        return None
    fields = fmt.fields(obj)
    if fields is None:
        return None
    row = envoy_fields_row(fields)
    if row["status"] is None:
        row["status"] = 0
    return row
