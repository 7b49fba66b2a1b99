"""Report -> findings.json (schema obsgap.findings/v1, the contract in DESIGN.md)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from obsgap.model import ContractRow, Finding
from obsgap.report.model import Report

SCHEMA = "obsgap.findings/v1"


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity; numpy scalars become plain numbers."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return _clean(value.item())
    return value


def finding_dict(f: Finding, change: str | None = None) -> dict[str, Any]:
    return {
        "id": f.id, "check": f.check, "severity": f.severity.value, "title": f.title, "detail": f.detail,
        "namespace": f.namespace, "service": f.service, "workload": f.workload, "pod": f.pod, "port": f.port,
        "job": f.job, "metric": f.metric, "cause": f.cause, "resource": f.resource, "istio_code": f.istio_code,
        "evidence": _clean(dict(f.evidence)),
        "suggestion": ({"text": f.suggestion.text, "config": f.suggestion.config, "doc_url": f.suggestion.doc_url}
                       if f.suggestion else None),
        "change": change,
    }


def contract_dict(row: ContractRow) -> dict[str, Any]:
    return {"namespace": row.namespace, "service": row.service, "fqdn": row.fqdn, "broken": row.broken,
            "links": [{"kind": x.kind, "name": x.name, "how": x.how, "broken": x.broken, "note": x.note,
                       "findings": list(x.finding_ids)} for x in row.links]}


def result_dict(report: Report) -> dict[str, Any]:
    result = report.result
    return {
        "schema": SCHEMA,
        "generated_at": _ts(result.generated_at),
        "status": result.status,
        "status_reasons": list(result.status_reasons),
        "window": {"start": _ts(result.window.start), "end": _ts(result.window.end)},
        "sources": _clean({"prometheus": dict(result.sources.prometheus),
                           "kubernetes": dict(result.sources.kubernetes), "logs": dict(result.sources.logs)}
                          | ({"slos": dict(result.sources.slos)} if result.sources.slos else {})),
        "checks": [{"check": c.check, "status": c.status, "reason": c.reason, "findings": c.findings}
                   for c in result.checks],
        "coverage": [{"namespace": c.namespace, "service": c.service, "log_requests": c.log_requests,
                      "mesh_requests": c.mesh_requests, "ratio": c.ratio, "tcp_connections": c.tcp_connections,
                      "observed_by": c.observed_by, "comparable": c.comparable, "basis": c.basis,
                      "logs_cover": c.logs_cover or None}
                     for c in result.coverage],
        "findings": [finding_dict(v.finding, v.change) for v in report.findings],
        "resolved": [{"id": f.id, "check": f.check, "title": f.title, "severity": f.severity}
                     for f in report.history.resolved],
        "name_contract": _clean([contract_dict(row) for row in result.contract]),
    } | ({"slos": _clean([a.as_dict() for a in result.slos])} if result.slos else {})


def render_json(document: dict[str, Any]) -> str:
    """findings.json from result_dict's document (built once per run: the HTML page embeds its findings)."""
    # ensure_ascii keeps U+2028/U+2029 and control characters escaped for any consumer.
    return json.dumps(document, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
