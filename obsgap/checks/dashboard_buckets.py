"""dashboard-reads-missing-bucket: dashboard queries and rules that select a histogram bucket (`le`) no series of the
window has: a bound Prometheus 3 spells otherwise (`500.0`), or no bound of the histogram at all."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from obsgap.bounds import bound, exposition, spellings, upgrade_safe
from obsgap.checks.base import CheckInputs
from obsgap.checks.dashboard_queries import (
    GRAFANA_VARIABLE,
    QUOTED,
    Board,
    Judged,
    PerCauseDashboardCheck,
    by_dashboard,
    grafana_query,
)
from obsgap.model import Finding, FindingEvidence, PanelQuery, Severity, Suggestion
from obsgap.slo.promql import Matcher, selectors_of
from obsgap.suggest.buckets import unit_of
from obsgap.suggest.configs import STATS_BUCKETS_ANNOTATION
from obsgap.text import full_match

DOC = "https://prometheus.io/docs/prometheus/latest/migration/#le-and-quantile-label-values"
ISTIO_BUCKETS_DOC = "https://istio.io/latest/docs/reference/config/annotations/#SidecarStatsHistogramBuckets"
HISTOGRAMS_DOC = "https://prometheus.io/docs/practices/histograms/"
RESPELLED, NOT_A_BOUND = "bound-respelled", "not-a-bucket-bound"


@dataclass(frozen=True, eq=False)
class MissingBucketEvidence(FindingEvidence):
    """The dashboard's (or rule group's) queries whose `le` matchers select no bucket of the window's series."""

    dashboard: str
    """The dashboard's title, or the rule group's name."""
    queries: int
    metrics: list[str]
    """The histograms' `_bucket` series they select."""
    matchers: list[str]
    """Their `le` matchers as written."""
    bounds: list[str]
    """The bounds the window's series have, as this Prometheus stores them (up to 30)."""
    panels: list[str] = field(default_factory=list)
    examples: list[dict[str, str | None]] = field(default_factory=list)
    """Up to five: the panel (or rule), the query as written and, for a respelled bound, with the matcher that reads
    both spellings."""
    rule_file: str | None = None
    """For a rule group Prometheus evaluates: the file it was loaded from."""


class DashboardReadsMissingBucket(PerCauseDashboardCheck):
    """What it does: reads every Grafana dashboard given (`--dashboards`) and every alerting and recording rule
    Prometheus evaluates (/api/v1/rules) for selectors over a histogram's `_bucket` series with an `le` matcher
    (`istio_request_duration_milliseconds_bucket{le="500"}`: the requests faster than 500 ms), and holds the matcher
    against the bounds the window's series of that histogram have, as this Prometheus stores them. A selector whose
    `le` matches none of them reads nothing: either the bound exists but is spelled otherwise (Prometheus 3 stores
    `le="500.0"` where Prometheus 2 kept the exposition's `500`), or the histogram has no such bound (`le="300"`
    where Istio's buckets are 250 and 500).

    Why is this bad? "The share of requests under 500 ms" (an Apdex panel, a latency SLO's alert, a canary's
    analysis) becomes "no data", or 0 % where the query adds `or vector(0)`: the panel goes blank after a Prometheus
    upgrade, the alert fires all the time or never can. Nothing errors.

    Example: `(sum(increase(istio_request_duration_milliseconds_bucket{le='500',reporter='source', ...}[600s])) or
    on() vector(0)) / (sum(increase(istio_request_duration_milliseconds_bucket{le='+Inf', ...}[600s])) ...)`, iter8's
    "less than 500 ms" metric, recorded as a rule, on Prometheus 3: 0 for every version.

    Use instead: `le=~"500(\\.0)?"`, which reads the bound on Prometheus 2 and 3 alike; or a bound the histogram has
    (or add the bound to its buckets: Istio's `sidecar.istio.io/statsHistogramBuckets`).
    """

    id = "dashboard-reads-missing-bucket"
    title = "Dashboards and rules reading a histogram bucket that does not exist"
    needs = ("metrics",)
    needs_histograms = True
    doc_url = DOC
    causes = (RESPELLED, NOT_A_BOUND)
    impact_unit = "dashboard queries"
    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        out = []
        for board, judged in cls.judged(inputs).items():
            groups: dict[tuple[str, str], list[_Missing]] = defaultdict(list)
            for m in judged.found:
                groups[(m.cause, m.family)].append(m)
            out += [_finding(board, found) for _, found in sorted(groups.items())]
        return out

    @classmethod
    def judge(cls, inputs: CheckInputs) -> dict[Board, Judged]:
        """Per dashboard (or rule group) and cause: a histogram not analysed (or without a series in the window) or
        a regex Python cannot read leaves both causes unjudged; a bound not found while only the namespaces in scope
        were read, or one a pod's statsHistogramBuckets annotation declares, leaves not-a-bucket-bound unjudged."""
        return _judge_all(inputs)


@dataclass(frozen=True)
class _Missing:
    """A bucket selector that reads no series of the window."""

    query: PanelQuery
    family: str
    matchers: tuple[Matcher, ...]
    """Its `le` matchers."""
    bounds: tuple[str, ...]
    """The family's bounds as stored."""
    cause: str
    values: tuple[float, ...]
    """The bounds it means (respelled ones: each stored bound its matchers select as the other Prometheus would
    spell it), or the one it asks for (`=`); none where no `=` names one."""
    stored: str | None = None
    """The first respelled bound as this Prometheus stores it."""
    upgrade: bool = False
    """Respelled as Prometheus 2 and 3 spell one bound differently (else: written otherwise than either)."""

    @property
    def value(self) -> float | None:
        return self.values[0] if self.values else None

    @property
    def fix(self) -> str | None:
        """The matcher to write instead: each bound meant, on Prometheus 2 and 3 alike (or as stored)."""
        if self.cause != RESPELLED or not self.values:
            return None
        if not self.upgrade:
            return f'le="{self.stored}"'
        return 'le=~"' + "|".join(upgrade_safe(x) for x in self.values).replace("\\", "\\\\") + '"'

    @property
    def shown(self) -> str:
        """The matcher a title names: its `=` one, else its first."""
        return next((m for m in self.matchers if m.op == "="), self.matchers[0]).text()


def _judge_all(inputs: CheckInputs) -> dict[Board, Judged]:
    metrics = inputs.metrics
    if metrics is None or not inputs.dashboards:
        return {}
    stored = {family: _stored(frame) for family, frame in metrics.histograms.items()}
    scope = _Scope(bool(inputs.settings.namespaces), _annotated(inputs))
    out: dict[Board, Judged] = {}
    for board, queries in by_dashboard(inputs).items():
        judged = out[board] = Judged()
        for q in queries:
            found, unjudged = _judge(q, stored, scope)
            judged.found += found
            judged.unjudged |= unjudged
    return out


@dataclass(frozen=True)
class _Scope:
    """What the window's series may not show: the buckets of namespaces out of scope, or of idle pods."""

    namespaces: bool
    """Only the namespaces of -n were read."""
    annotated: frozenset[float]
    """The bounds pods declare for Istio's histograms (statsHistogramBuckets' istiocustom): an idle pod has no
    series of them yet."""


def _annotated(inputs: CheckInputs) -> frozenset[float]:
    topo = inputs.index.topo
    out: set[float] = set()
    for pod in (*topo.context_pods, *topo.pods):
        raw = pod.annotations.get(STATS_BUCKETS_ANNOTATION)
        try:
            value = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            continue
        for prefix, bounds in (value.items() if isinstance(value, dict) else ()):
            if str(prefix).startswith("istiocustom") and isinstance(bounds, list):
                out |= {float(b) for b in bounds if isinstance(b, int | float) and not isinstance(b, bool)}
    return frozenset(out)


def _stored(frame: pd.DataFrame) -> tuple[str, ...]:
    """The `le` values of a histogram's series in the window, as stored, in the order of their bounds."""
    if frame.empty or "le" not in frame.columns:
        return ()
    values = set(frame["le"].dropna().astype(str))
    return tuple(sorted(values, key=lambda s: (bound(s) is None, bound(s) or 0.0, s)))


def _judge(q: PanelQuery, stored: dict[str, tuple[str, ...]], scope: _Scope) -> tuple[list[_Missing], set[str]]:
    """The query's bucket selectors that select no stored bound; and the causes some of them could not be judged
    for. A selector whose bound another selector of the query over the same histogram reads (`... or ...{le=
    "500.0"}`, written for both spellings) is not named."""
    both = {RESPELLED, NOT_A_BOUND}
    if q.panel.startswith("variable $") or "_bucket" not in q.expr:
        return [], set()
    parsed = grafana_query(q.expr)
    if parsed is None:
        return [], both
    unjudged: set[str] = set()
    read: dict[str, set[float | None]] = defaultdict(set)
    pending = []
    for sel in selectors_of(parsed):
        les = sel.label("le")
        if not sel.metric.endswith("_bucket") or not les or any(GRAFANA_VARIABLE in m.value for m in les):
            continue
        family = sel.metric.removesuffix("_bucket")
        bounds = stored.get(family, ())
        if not bounds or any(m.op in ("=~", "!~") and full_match(m.value, "") is None for m in les):
            unjudged |= both  # no series of it in the window, or a regex Python reads otherwise than Prometheus
            continue
        hits = [b for b in bounds if all(m.matches(b) for m in les)]
        if hits:
            read[family] |= {bound(b) for b in hits}
        else:
            pending.append(_missing(q, family, les, bounds))
    out = []
    for m in pending:
        if m.values and set(m.values) <= read[m.family]:
            continue
        if m.cause == NOT_A_BOUND and (scope.namespaces or (
                m.family.startswith("istio_") and m.value in scope.annotated)):
            unjudged.add(NOT_A_BOUND)  # other namespaces, or pods without traffic yet, may have that bound
            continue
        out.append(m)
    return out, unjudged


def _missing(q: PanelQuery, family: str, les: tuple[Matcher, ...], bounds: tuple[str, ...]) -> _Missing:
    """Why no stored bound matches: one matches as Prometheus 2 or 3 would spell it, or an `=` value is a stored
    bound written otherwise (`0.50`), or the histogram has no such bound."""
    meant = [(text, x) for text in bounds if (x := bound(text)) is not None
             and any(alt != text and all(m.matches(alt) for m in les) for alt in spellings(x))]
    if meant:
        return _Missing(q, family, les, bounds, RESPELLED, tuple(x for _, x in meant), meant[0][0], upgrade=True)
    wanted = next((bound(m.value) for m in les if m.op == "="), None)
    stored = next((b for b in bounds if wanted is not None and bound(b) == wanted), None)
    asked = () if wanted is None else (wanted,)
    if stored is not None:
        return _Missing(q, family, les, bounds, RESPELLED, asked, stored)
    return _Missing(q, family, les, bounds, NOT_A_BOUND, asked)


_LE_BEFORE = re.compile(r"(?<![\w.:])le\s*(=~|=)\s*$")
"""`le=` or `le=~` just before a string, outside any string (not `le!=`, `scale=`)."""


def fixed_query(expr: str, fixes: Mapping[tuple[str, str], str]) -> str | None:
    """The query with each `le` matcher (outside strings) that `fixes` names by (op, value) replaced by its
    fix; None where none is."""
    out, at, hit = [], 0, False
    for token in QUOTED.finditer(expr):
        before, text = expr[at:token.start()], token.group()
        value = text[1:-1] if text[0] == "`" else re.sub(r"\\(.)", r"\1", text[1:-1])
        lead = _LE_BEFORE.search(before)
        fix = fixes.get((lead.group(1), value)) if lead is not None else None
        if lead is not None and fix is not None:
            out.append(before[:lead.start()] + fix)
            hit = True
        else:
            out.append(before + text)
        at = token.end()
    out.append(expr[at:])
    return "".join(out) if hit else None


def _nearest(value: float | None, bounds: tuple[str, ...]) -> str:
    numbers = sorted(b for b in (bound(s) for s in bounds) if b is not None and not math.isinf(b))
    if value is None or not numbers:
        return ""
    near = [b for b in numbers if b < value][-1:] + [b for b in numbers if b > value][:1]
    return " and ".join(exposition(b) for b in near)


def _finding(board: Board, found: list[_Missing]) -> Finding:
    first, cause, family = found[0], found[0].cause, found[0].family
    queries = {id(m.query): m.query for m in found}
    n = len(queries)
    panels = sorted({m.query.panel for m in found})
    matchers = sorted({x.text() for m in found for x in m.matchers})
    fixes = {(x.op, x.value): str(m.fix) for m in found if m.fix for x in m.matchers if x.op in ("=", "=~")}
    examples: list[dict[str, str | None]] = [
        {"panel": q.panel, "query": q.expr[:500], "fixed": fixed_query(q.expr, fixes) if fixes else None}
        for q in list(queries.values())[:5]]
    select = f"select{'s' * (n == 1)}"
    those = "that bucket" if len({m.values for m in found}) == 1 else "those"
    reads = (f"{board.queries(n)} of {board.words}{board.where(panels)} {select} {', '.join(matchers)} of "
             f"{family}_bucket, and no series of the window has {those} spelled so")
    damage = (" It reads nothing: an alert on it fires all the time or never can (0 where the query adds `or "
              "vector(0)`), and a recording rule over it records nothing." if board.rules else
              " It reads nothing: its panel shows no data, or 0 % where the query adds `or vector(0)`.")
    title, why, text, doc = _respelled(found, fixes) if cause == RESPELLED else _not_a_bound(first)
    return Finding(
        check=DashboardReadsMissingBucket.id, severity=Severity.WARNING,
        title=f"{board.name}: {board.queries(n)} {select} {first.shown}, {title}", detail=f"{reads}: {why}{damage}",
        subject=f"{board.subject}/{cause}/{family}", cause=cause, resource=board.resource,
        evidence=MissingBucketEvidence(board.title, n, [f"{family}_bucket"], matchers, list(first.bounds[:30]),
                                       panels[:30], examples, board.rule_file),
        suggestion=Suggestion(text, "\n".join(str(e["fixed"]) for e in examples[:3] if e["fixed"]) or None, doc))


def _respelled(found: list[_Missing], fixes: Mapping[tuple[str, str], str]) -> tuple[str, str, str, str]:
    """(the title's end, the detail's reason, the suggestion, its doc) for bounds stored otherwise than written."""
    first = found[0]
    pairs = sorted({(m.value, str(m.stored), m.upgrade) for m in found if m.value is not None})
    why = ("Prometheus 3 normalises `le` on ingestion, `500` becoming `500.0`, where Prometheus 2 kept the "
           "exposition's spelling" if any(u for *_, u in pairs) else "written otherwise than it is stored")
    stored = ", ".join(f'{exposition(v)} as le="{s}"' for v, s, _ in pairs)
    text = (f"Select the bound as {', '.join(sorted(set(fixes.values())) or [str(first.fix)])}"
            + (", which reads it on Prometheus 2 and 3 alike." if first.upgrade else ", as it is stored."))
    return f'which this Prometheus stores as le="{first.stored}"', f"this Prometheus stores {stored} ({why}).", \
        text, DOC


def _not_a_bound(first: _Missing) -> tuple[str, str, str, str]:
    """(the title's end, the detail's reason, the suggestion, its doc) for a bound the histogram does not have."""
    unit = unit_of(first.family)[0]
    unit = "" if unit == "?" else f" {unit}"
    near = _nearest(first.value, first.bounds)
    shown = ", ".join(first.bounds[:20]) + (", ..." if len(first.bounds) > 20 else "")
    istio = first.family.startswith("istio_")
    add = f"add {exposition(first.value)}{unit} to its buckets" if first.value is not None else \
        "add the bound to its buckets"
    text = (f"Read a bound the histogram has{f' ({near}{unit} are the nearest)' if near else ''}, or {add}"
            + (" (the sidecar.istio.io/statsHistogramBuckets annotation on the pods that serve it)." if istio else "."))
    return f"a bound {first.family}_bucket does not have", f"the histogram's bounds are {shown}{unit}.", text, \
        ISTIO_BUCKETS_DOC if istio else HISTOGRAMS_DOC
