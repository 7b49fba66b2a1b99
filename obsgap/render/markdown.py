"""ScanResult -> summary.md: short enough to paste into a chat or a pull request."""

from __future__ import annotations

import re

from obsgap.model import ScanResult
from obsgap.render.notices import input_notices, status_line

TOP = 10


def _md(text: object) -> str:
    """Neutralise Markdown/HTML in untrusted strings (names, label values)."""
    s = str(text).replace("\u2028", " ").replace("\u2029", " ")
    s = re.sub(r"[\r\n\t]+", " ", s)
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", s)


def coverage_share(result: ScanResult) -> float | None:
    rows = [c for c in result.coverage if c.comparable]
    logged = sum(c.log_requests for c in rows)
    if not logged:
        return None
    counted = sum(min(c.mesh_requests, c.log_requests) for c in rows)
    return counted / logged


def render_markdown(result: ScanResult) -> str:
    w = result.window
    partial = status_line(result)
    lines = [f"**{_md(partial)}**" if partial else "**Complete run**: every input given was read.", "",
             f"## obsgap: {w.start:%Y-%m-%d %H:%M} – {w.end:%Y-%m-%d %H:%M} UTC", ""]
    lines += [f"> {_md(n)}" for n in input_notices(result)]
    share = coverage_share(result)
    if share is not None:
        lines.append(f"**Telemetry coverage:** the mesh metrics counted {share * 100:.1f}% of the requests the logs "
                     f"and callers saw ({len(result.coverage)} services).")
    counts = {s: sum(1 for f in result.findings if f.severity.value == s) for s in ("critical", "warning", "info")}
    lines.append(f"**Findings:** {counts['critical']} critical, {counts['warning']} warning, {counts['info']} info.")
    history = result.extras.get("history") or {}
    if history.get("baseline"):
        lines.append(f"**Since the last run:** {history.get('new', 0)} new, {len(history.get('resolved') or [])} "
                     "resolved.")
    skipped = [c for c in result.checks if c.status != "ran"]
    if skipped:
        lines.append("**Not run:** " + "; ".join(f"`{c.check}` ({c.status}: {_md(c.reason)})" for c in skipped))
    lines.append("")
    for f in result.findings[:TOP]:
        change = (result.extras.get("changes") or {}).get(f.id)
        lines.append(f"- **{f.severity.value}**{' (new)' if change == 'new' and history.get('baseline') else ''} "
                     f"`{f.check}` [{_md(f.title)}](report.html#finding-{f.id})"
                     + (f" — fix: {_md(f.suggestion.text)}" if f.suggestion else ""))
    if len(result.findings) > TOP:
        lines.append(f"- … and {len(result.findings) - TOP} more in report.html / findings.json")
    return "\n".join(lines) + "\n"
