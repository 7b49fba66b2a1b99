"""ScanResult -> one self-contained report.html (jinja2 + plotly), safe for untrusted names.

Security: jinja autoescape on; data reaches the page only as JSON in a non-executable
<script type="application/json"> block with <, >, & and U+2028/9 escaped; the page script builds the
DOM with textContent; a Content-Security-Policy allows only the two nonce'd scripts.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from functools import cache
from importlib import resources
from typing import Any, Literal

import jinja2
from plotly.offline import get_plotlyjs, get_plotlyjs_version
from plotly.utils import PlotlyJSONEncoder

from obsgap.checks import REGISTRY
from obsgap.model import ScanResult
from obsgap.render import figures
from obsgap.render.json_out import result_dict
from obsgap.render.markdown import coverage_share
from obsgap.render.notices import input_notices, status_line
from obsgap.sources.logs.summary import time_step_ms

# The CDN copy is the very version embedded, so both modes draw the same charts.
PLOTLY_CDN = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
PlotlyMode = Literal["embed", "cdn"]
TIMELINE_CHECKS = frozenset({"envoy-bypass", "port-missing-from-metrics"})


def safe_json(data: Any) -> str:
    """JSON that cannot close the <script> element it sits in, nor break JavaScript parsers."""
    text = json.dumps(data, cls=PlotlyJSONEncoder, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("obsgap.render", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: "n/a" if x is None else f"{x * 100:.1f}%"
    env.filters["thousands"] = lambda x: f"{int(x):,}" if isinstance(x, int | float) else str(x)
    return env


@cache
def _asset(name: str) -> str:
    return (resources.files("obsgap.render") / "templates" / name).read_text(encoding="utf-8")


def _step_ms(result: ScanResult) -> int:
    return time_step_ms(0, result.window.seconds * 1000)


def _hourly(result: ScanResult) -> dict[str, list[tuple[int, int]]]:
    """namespace/service -> [(hour ms, requests)] from the logs, via the coverage rows' pods."""
    df = result.extras.get("hourly_by_service")
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    if df is None or getattr(df, "empty", True):
        return {}
    for row in df.itertuples(index=False):
        out[f"{row.namespace}/{row.service}"].append((int(row.hour_ms), int(row.requests)))
    return {k: sorted(v) for k, v in out.items()}


def report_data(result: ScanResult) -> dict[str, Any]:
    """Everything the page script needs. Per-finding charts are drawn in the browser from the evidence
    (and the compact hourly series), so a 2,000-service report stays small and opens fast."""
    doc = result_dict(result)
    wanted = {f"{f.namespace}/{f.service}" for f in result.findings if f.check in TIMELINE_CHECKS}
    hourly = {k: v for k, v in _hourly(result).items() if k in wanted}
    mesh: dict[str, list[tuple[int, int]]] = defaultdict(list)
    frame = result.extras.get("mesh_over_time")
    if frame is not None and not frame.empty:
        for row in frame.fillna("").itertuples(index=False):
            key = f"{row.destination_service_namespace}/{row.destination_service_name}"
            if key in wanted:
                # a bin ends at t: draw it at its start, as the log bins are
                mesh[key].append((int(row.t * 1000) - _step_ms(result), round(float(row.value))))
    history = result.extras.get("history") or {}
    return {
        "findings": doc["findings"], "coverage": doc["coverage"], "contract": doc["name_contract"],
        "hourly": hourly, "mesh_hourly": {k: sorted(v) for k, v in mesh.items()},
        "timeline_checks": sorted(TIMELINE_CHECKS),
        "coverage_chart": figures.coverage_chart(result.coverage) if result.coverage else None,
        "trend_chart": figures.trend_chart(history.get("runs") or []),
        "checks": {c.id: {"title": c.title, "doc": c.doc_url} for c in REGISTRY},
    }


def render_html(result: ScanResult, plotly: PlotlyMode = "embed") -> str:
    nonce = secrets.token_urlsafe(18)
    counts = {s: sum(1 for f in result.findings if f.severity.value == s) for s in ("critical", "warning", "info")}
    history: dict[str, Any] = {"baseline": None, "resolved": [], "runs": [], "new": 0}
    history |= dict(result.extras.get("history") or {})
    return _environment().get_template("report.html.j2").render(
        result=result, counts=counts, share=coverage_share(result), nonce=nonce,
        partial=status_line(result), input_notices=input_notices(result),
        sources=result_dict(result)["sources"], history=history,
        checks=[(c, next((r for r in result.checks if r.check == c.id), None)) for c in REGISTRY],
        plotly_mode=plotly, plotly_cdn=PLOTLY_CDN,
        plotly_js=get_plotlyjs() if plotly == "embed" else "",
        app_js=_asset("report.js"), css=_asset("report.css"), data_json=safe_json(report_data(result)),
    )
