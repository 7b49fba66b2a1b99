"""Report -> what `obsgap report -o table|yaml` prints on stdout.

`table`: one line per finding (severity, check, resource, title) in the order of "Fix first", each root cause
followed by the findings it explains (`└`), then the coverage headline, the run's status and the checks that did
not run. Untrusted text (names, label values, log content) is
shown with control characters escaped, so a label value cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

from typing import Any

import yaml

from obsgap.model import Finding
from obsgap.report.model import Report
from obsgap.report.notices import coverage_sentence, terminal_lines
from obsgap.text import safe


def _resource(f: Finding) -> str:
    if f.resource:
        return f.resource
    where = "/".join(x for x in (f.namespace, f.service or f.workload or f.pod or f.job or f.metric) if x)
    return where + (f":{f.port}" if f.port else "") or "-"


def render_table(report: Report) -> str:
    rows = []
    for v in report.ranked:
        rows.append((v.finding.severity.value.upper(), v.finding.check, _resource(v.finding), v.finding.title))
        rows += [(s.finding.severity.value.upper(), "└ " + s.finding.check, _resource(s.finding), s.finding.title)
                 for s in report.symptoms.get(v.finding.id, ())]
    lines = []
    if rows:
        widths = [max(len(safe(r[i])) for r in rows) for i in range(3)]
        widths = [max(w, len(h)) for w, h in zip(widths, ("SEVERITY", "CHECK", "RESOURCE"), strict=True)]
        header = ("SEVERITY", "CHECK", "RESOURCE", "TITLE")
        for r in (header, *rows):
            lines.append("  ".join(safe(c).ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + safe(r[3]))
        lines.append("")
    elif report.checks_ran == 0:
        lines += ["no check could run: nothing was measured (the reasons below)", ""]
    else:
        lines += ["no findings" + ("" if report.result.status == "complete" and not report.not_run else
                                   " in what could be measured (see below)"), ""]
    lines.append(coverage_sentence(report.headline))
    lines += [safe(line) for line in terminal_lines(report.result)]
    return "\n".join(lines) + "\n"


def render_yaml(document: dict[str, Any]) -> str:
    """The findings.json document as YAML (the same keys and values)."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=False, width=120)
