"""Report -> summary.md: short enough to paste into a chat or a pull request, and read the same in both.

Only what Slack and GitHub Markdown render alike: plain lines, `- ` bullets, `>` quotes and `code` spans (no
emphasis, links or headings, which one of them shows as literal marks). Backslash escapes are not used either:
Slack prints them. An untrusted word (names, label values) that could mean markup in either is put in a code
span instead, where both show it as typed: `http_requests_total`, `<script>`, `@channel`, `:fire:`, URLs and
domain names.
"""

from __future__ import annotations

import re

from obsgap.report.model import Report
from obsgap.report.notices import coverage_sentence
from obsgap.slo.assess import SloAssessment
from obsgap.slo.table import cells
from obsgap.text import safe

TOP = 10

# A word is inert in both renderers when it has only these characters and is no emoji code, mention or URL.
_PLAIN_WORD = re.compile(r"[\w.,;:()'\"=+?%/→–—…-]*")
_ACTIVE = re.compile(r"_|:\w+:|://|^www\.|^[-=]+$|[A-Za-z0-9-]\.[A-Za-z]{2,}")
"""emphasis, emoji codes, URLs, setext underlines, and domain names (Slack links those, and GitHub www. ones)"""
_LIST_MARKER = re.compile(r"[-+]|\d+[.)]")
"""a first word that would make its line a list item (in a quote, say)"""


_EDGES = re.compile(r"(\(*)(.*?)([),.;!?]*)", re.S)
_SPAN = re.compile(r"`[^`]+`")


def _word(word: str) -> str:
    if _PLAIN_WORD.fullmatch(word) and not _ACTIVE.search(word):
        return word
    lead, core, trail = _EDGES.fullmatch(word).groups()  # type: ignore[union-attr]
    if _SPAN.fullmatch(core):  # already a code span in the text (`up`): shown as the writer meant it
        return lead + core + trail
    if not core:
        return "`" + word.replace("`", "ʼ") + "`"
    # punctuation around a word stays outside its code span: (`x`), not `(x,`
    return lead + "`" + core.replace("`", "ʼ") + "`" + trail


def md(text: object) -> str:
    """Untrusted text for summary.md: one line; every word that could be markup shown in a code span."""
    words = [w for w in re.split(r"\s+", safe(re.sub(r"[\u2028\u2029]", " ", str(text))).strip()) if w]
    return " ".join(code(w) if i == 0 and _LIST_MARKER.fullmatch(w) else _word(w) for i, w in enumerate(words))


def code(text: object) -> str:
    """A name shown whole in a code span (check ids, anchors)."""
    return "`" + re.sub(r"\s+", " ", safe(text)).replace("`", "ʼ") + "`"


def _slo_line(a: SloAssessment) -> str:
    name, tool, where, target, sli_metric, sli_logs, burn_metric, burn_logs, _, verdict = cells(a)
    numbers = f"SLI {sli_metric} by the metrics, {sli_logs} by the logs"
    if a.budget_metric is not None or a.budget_logs is not None:
        numbers += f"; budget burn {burn_metric} by the metrics, {burn_logs} by the logs"
    why = "; ".join(f"{code(p.cause)} {md(p.reason)}" for p in a.problems) \
        or md(a.measured.error or a.unverified_because or "")
    return (f"- {verdict.upper()} {code(name)} ({code(tool)}, {code(where)}): {md(target)}; {md(numbers)}"
            + (f" — {why}" if why else ""))


def render_markdown(report: Report) -> str:
    result, w = report.result, report.result.window
    status = "complete run: every input given was read" if result.status == "complete" else \
        "PARTIAL RUN: the numbers below rest on less than the inputs given"
    lines = [f"obsgap · {w.start:%Y-%m-%d %H:%M} – {w.end:%Y-%m-%d %H:%M} UTC · {status}", ""]
    lines += [f"> {md(r)}" for r in result.status_reasons]
    lines += [f"> {md(n)}" for n in report.notices]
    if len(lines) > 2:
        lines.append("")
    if result.slos:
        lines.append("Can these SLOs be trusted?")
        lines += [_slo_line(a) for a in result.slos]
        lines.append("")
    lines.append(coverage_sentence(report.headline))
    counts = report.counts
    since = ""
    if report.history.baseline:
        since = f" Since the last run: {report.new} new, {len(report.history.resolved)} resolved"
        since += f", {len(report.history.not_rechecked)} not re-checked." if report.history.not_rechecked else "."
    hidden = len(result.suppressions.suppressed)
    accepted = f" ({hidden} more suppressed: accepted, listed in findings.json)" if hidden else ""
    lines.append(f"Findings: {counts['critical']} critical, {counts['warning']} warning, {counts['info']} info"
                 f"{accepted}.{since}")
    for g in report.not_run:
        lines.append(f"Not run: {', '.join(code(c) for c in g.checks)} ({md(g.reason)})")
    if report.history.not_rechecked:
        lines += ["", "Not re-checked (neither resolved nor confirmed):"]
        lines += [f"- {f.severity.upper()} {code(f.check)} {md(f.title)} ({md(f.reason or '')})"
                  for f in report.history.not_rechecked[:TOP]]
        if len(report.history.not_rechecked) > TOP:
            lines.append(f"- … and {len(report.history.not_rechecked) - TOP} more in findings.json")
    if report.findings:
        lines += ["", "Fix first:"]
    for v in report.ranked[:TOP]:
        f = v.finding
        new = " (new)" if v.change == "new" else ""
        fix = f" — fix: {md(f.suggestion.text)}" if f.suggestion else ""
        explains = report.symptoms.get(f.id, ())
        also = (f" — also explains {len(explains)}: " + ", ".join(f"{code(s.finding.check)} {md(s.finding.title)}"
                                                                 for s in explains)) if explains else ""
        lines.append(f"- {f.severity.value.upper()}{new} {code(f.check)} {md(f.title)}{fix}{also} "
                     f"({code('report.html#finding-' + f.id)})")
    shown = sum(1 + len(report.symptoms.get(v.finding.id, ())) for v in report.ranked[:TOP])
    if len(report.findings) > shown:
        lines.append(f"- … and {len(report.findings) - shown} more in report.html and findings.json")
    return "\n".join(lines) + "\n"
