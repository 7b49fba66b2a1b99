"""Report -> one self-contained report.html (jinja2 + plotly), safe for untrusted names.

Security: jinja autoescape on; data reaches the page only as JSON in a non-executable
<script type="application/json"> block with <, >, & and U+2028/9 escaped; the page script builds the
DOM with textContent; a Content-Security-Policy allows only the two nonce'd scripts.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict
from functools import cache
from importlib import resources
from typing import Any, Literal

import jinja2
from plotly.offline import get_plotlyjs, get_plotlyjs_version
from plotly.utils import PlotlyJSONEncoder

from obsgap.evidence import ASSUMED_SCRAPE_INTERVAL_S
from obsgap.render import figures
from obsgap.render.json_out import result_dict
from obsgap.report.model import Report
from obsgap.text import plural

# The CDN copy is the very version embedded, so both modes draw the same charts.
PLOTLY_CDN = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
PlotlyMode = Literal["embed", "cdn"]


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
    env.filters["plural"] = plural
    env.filters["thousands"] = lambda x: f"{int(x):,}" if isinstance(x, int | float) else str(x)
    env.globals["assumed_scrape_interval_s"] = round(ASSUMED_SCRAPE_INTERVAL_S)
    return env


@cache
def _asset(name: str) -> str:
    return (resources.files("obsgap.render") / "templates" / name).read_text(encoding="utf-8")


def report_data(report: Report, document: dict[str, Any]) -> dict[str, Any]:
    """Everything the page script needs. Per-finding charts are drawn in the browser when their finding is opened,
    from compact typed chart data, so a 2,000-service report stays small and opens fast."""
    return {
        "findings": document["findings"], "coverage": document["coverage"], "contract": document["name_contract"],
        "charts": {v.finding.id: [asdict(c) for c in v.charts] for v in report.findings if v.charts},
        "impact": {v.finding.id: v.impact for v in report.findings if v.impact},
        "snippets": {v.finding.id: [asdict(s) for s in v.finding.suggestion.forms]
                     for v in report.findings if v.finding.suggestion and v.finding.suggestion.forms},
        "coverage_chart": figures.coverage_chart(report.result.coverage) if report.result.coverage else None,
        "trend_chart": figures.trend_chart(report.history.runs),
        "checks": {c.id: {"title": c.title, "doc": c.doc_url} for c, _ in report.checks},
        "empty_means": _empty_means(report),
        "contract_empty": _contract_empty(document),
    }


def _contract_empty(document: dict[str, Any]) -> str:
    """What an empty name-contract table means: no topology, or no Service named beyond its own name."""
    kube = document.get("sources", {}).get("kubernetes") or {}
    if not (kube.get("objects") or {}).get("Service"):
        given = kube.get("status") not in (None, "not-configured")
        return "The topology holds no Service." if given else "No topology given."
    return ("No Service is named beyond its own name: no VirtualService, DestinationRule, route, job or caller's "
            "address names one.")


def _empty_means(report: Report) -> str:
    """What a list without findings says: clean only when every check ran on every input given."""
    if report.checks_ran == 0:
        return "No check could run, so nothing was measured: see the run's status above."
    if report.result.status != "complete" or report.not_run:
        return (f"No findings from the {report.checks_ran} checks that ran; what the others would have found is "
                "unknown.")
    return "No findings: the telemetry matches what the logs and topology show."


def render_html(report: Report, plotly: PlotlyMode = "embed", document: dict[str, Any] | None = None) -> str:
    """`document`: result_dict(report), when the caller has built it already (publish does, for findings.json)."""
    nonce = secrets.token_urlsafe(18)
    return _environment().get_template("report.html.j2").render(
        report=report, result=report.result, sources=report.sources, history=report.history, nonce=nonce,
        checks=report.checks,
        plotly_mode=plotly, plotly_cdn=PLOTLY_CDN,
        plotly_js=get_plotlyjs() if plotly == "embed" else "",
        app_js=_asset("report.js"), css=_asset("report.css"),
        data_json=safe_json(report_data(report, document if document is not None else result_dict(report))),
    )
