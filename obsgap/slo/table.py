"""The "Can these SLOs be trusted?" table as terminal text (`obsgap slo`)."""

from __future__ import annotations

from collections.abc import Sequence

from obsgap.slo.assess import SloAssessment
from obsgap.text import clean_line

HEAD = ("SLO", "tool", "service", "objective", "SLI metrics", "SLI logs", "burn metrics", "burn logs", "coverage",
        "verdict")


def _pct(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _sli(a: SloAssessment, value: float | None) -> str:
    if a.measured.spec.kind == "quantile":
        return "–" if value is None else f"{value:g} {a.unit}"
    return _pct(value)


def _burn(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def cells(a: SloAssessment) -> tuple[str, ...]:
    """One row as text, in HEAD's order (the terminal's table and summary.md's lines)."""
    spec = a.measured.spec
    target = (f"{spec.op} {spec.threshold:g} {a.unit}" if spec.kind == "quantile" and spec.threshold is not None
              else _pct(spec.objective, 2))
    return (spec.name, spec.tool, ", ".join(a.services) or spec.service or "–", target, _sli(a, a.sli_metric),
            _sli(a, a.sli_logs), _burn(a.budget_metric), _burn(a.budget_logs), _pct(a.coverage, 1), a.verdict)


def slo_table(rows: Sequence[SloAssessment]) -> str:
    """Aligned columns, then each untrustworthy SLO's reasons and fixes (names from files: control characters
    removed, so nothing typed in a file can move the terminal's cursor)."""
    if not rows:
        return "No SLO could be measured (see the notes above)."
    table = [HEAD, *(tuple(clean_line(c) for c in cells(a)) for a in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    for a in rows:
        for p in a.problems:
            lines.append(clean_line(f"{a.measured.spec.name}: {p.cause}: {p.reason} Fix: {p.fix}"))
        if a.measured.error:
            lines.append(clean_line(f"{a.measured.spec.name}: not measured: {a.measured.error}"))
        if a.unverified_because:
            lines.append(clean_line(f"{a.measured.spec.name}: unverified: {a.unverified_because}"))
    return "\n".join(lines)
