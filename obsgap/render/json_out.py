"""Report -> findings.json (schema obsgap.findings/v1: the contract, docs/findings.md)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from obsgap.checks import by_id
from obsgap.model import ContractRow, CoverageRow, Finding
from obsgap.report.model import Report
from obsgap.text import iso_ms

SCHEMA = "obsgap.findings/v1"


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity; numpy scalars become plain numbers; a float is written with the 12 significant
    digits it was meant to have (an objective of 99.9% is 0.999, not 0.9990000000000001)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.12g}")
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return _clean(value.item())
    return value


def finding_dict(f: Finding, change: str | None = None, root: str | None = None) -> dict[str, Any]:
    return {
        "id": f.id, "check": f.check, "severity": f.severity.value, "title": f.title, "detail": f.detail,
        "namespace": f.namespace, "service": f.service, "workload": f.workload, "pod": f.pod, "port": f.port,
        "job": f.job, "metric": f.metric, "cause": f.cause, "resource": f.resource, "istio_code": f.istio_code,
        "evidence": _clean(f.evidence.as_dict()),
        "suggestion": ({"text": f.suggestion.text, "config": f.suggestion.config, "doc_url": f.suggestion.doc_url}
                       if f.suggestion else None),
        "change": change, "subject": f.subject, "root": root,
        "keys": list(_keys(f)),
    }


def _keys(f: Finding) -> tuple[str, ...]:
    check = by_id(f.check)
    return check.keys_of({"namespace": f.namespace, "service": f.service, "workload": f.workload, "metric": f.metric,
                          "job": f.job, "cause": f.cause, "evidence": f.evidence}) if check is not None else ()


def coverage_dict(c: CoverageRow) -> dict[str, Any]:
    """A coverage row: `log_requests` and `observed_requests` (the witness's count), `mesh_requests`, `ratio`; a
    side that was not measured is null, and `reason` says why there is no ratio."""
    return {"namespace": c.namespace, "service": c.service, "log_requests": c.observed,
            "observed_requests": c.observed, "mesh_requests": c.mesh, "ratio": c.ratio,
            "tcp_connections": c.tcp_connections, "observed_by": c.witness, "comparable": c.comparable,
            "basis": c.basis, "reason": c.reason, "logs_cover": c.logs_cover or None,
            "interval": {"start": iso_ms(c.interval[0]), "end": iso_ms(c.interval[1])} if c.interval else None,
            "witnesses": dict(c.witnesses), "unit": c.unit, "dataplane": c.dataplane}


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
        "sources": _clean(result.sources.as_json()),
        "checks": [{"check": c.check, "status": c.status, "reason": c.reason, "findings": c.findings,
                    "examined": None if c.examined is None else len(c.examined)}
                   for c in result.checks],
        "coverage": [coverage_dict(c) for c in result.coverage],
        "headline": {"coverage": report.headline.share, "measured_services": report.headline.measured,
                     "services": report.headline.services, "l4_services": report.headline.l4_services,
                     "counts": dict(report.counts),
                     "checks_ran": report.checks_ran, "checks": len(result.checks)},
        "findings": [finding_dict(v.finding, v.change, v.root) for v in report.findings],
        "suppressed": [finding_dict(s.finding) | {"suppressed_by": s.by.as_dict()}
                       for s in result.suppressions.suppressed],
        "suppressions": {"expired": [s.as_dict() | {"findings": list(ids)}
                                     for s, ids in result.suppressions.expired],
                         "stale": [s.as_dict() for s in result.suppressions.stale],
                         "unknown": list(result.suppressions.unknown)},
        "resolved": [{"id": f.id, "check": f.check, "title": f.title, "severity": f.severity}
                     for f in report.history.resolved],
        "not_rechecked": [f.as_dict() for f in report.history.not_rechecked],
        "name_contract": _clean([contract_dict(row) for row in report.contract]),
    } | ({"slos": _clean([a.as_dict() for a in result.slos])} if result.slos else {})


def render_json(document: dict[str, Any]) -> str:
    """findings.json from result_dict's document (built once per run: the HTML page embeds its findings)."""
    # ensure_ascii keeps U+2028/U+2029 and control characters escaped for any consumer.
    return json.dumps(document, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
