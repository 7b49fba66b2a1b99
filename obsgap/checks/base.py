"""The shape every check has: metadata as class attributes, the docstring as user documentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from obsgap.evidence import CheckInputs
from obsgap.model import Finding, Severity

Source = str  # "topology" | "metrics" | "logs"


class Skip(Exception):
    """Raised by a check that lacks an input; the message is the reason shown to users."""


class Check:
    """Base class. Subclasses set the attributes and implement `run`.

    The docstring of a subclass is its documentation, in the shape
    "What it does / Why is this bad? / Example / Use instead".
    """

    id: ClassVar[str]
    title: ClassVar[str]
    needs: ClassVar[tuple[Source, ...]]
    """Sources without which the check cannot say anything (it is skipped)."""
    queries: ClassVar[tuple[str, ...]] = ()
    """queries/*.promql files it reads."""
    needs_histograms: ClassVar[bool] = False
    """Whether the engine must discover histogram families and fetch their buckets."""
    istio_code: ClassVar[str | None] = None
    doc_url: ClassVar[str | None] = None

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        raise NotImplementedError


HEADINGS = ("What it does:", "Why is this bad?", "Example:", "Use instead:")


def doc_sections(check: type[Check]) -> list[tuple[str, str]]:
    """The check's docstring as (heading, one-paragraph text) in the ruff-docs shape."""
    import inspect
    import re

    text = " ".join(inspect.cleandoc(check.__doc__ or "").split())
    pattern = "(" + "|".join(re.escape(h) for h in HEADINGS) + ")"
    parts = re.split(pattern, text)
    out = []
    for i in range(1, len(parts) - 1, 2):
        out.append((parts[i].rstrip(":?") + ("?" if parts[i].endswith("?") else ""), parts[i + 1].strip()))
    return out


def severity_for_missed(missed_share: float) -> Severity:
    """How bad a gap is, from the share of real traffic the metrics do not count."""
    if missed_share >= 0.5:
        return Severity.CRITICAL
    if missed_share >= 0.1:
        return Severity.WARNING
    return Severity.INFO


def pct(x: float) -> str:
    return f"{x * 100:.1f}%" if x < 0.995 or x >= 1 else f"{x * 100:.2f}%"
