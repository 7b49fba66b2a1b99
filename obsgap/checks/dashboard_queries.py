"""What a Grafana dashboard's queries select of Istio's metrics: the selectors and their `reporter` matchers, with
the dashboard's custom variables (Istio's own `$qrep`) resolved to their options. Read by the dashboard checks."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast

import promql_parser as pp

from obsgap.checks.base import Check, CheckInputs, Skip
from obsgap.model import PanelQuery, Pod, rule_file_key
from obsgap.slo.promql import Matcher, selectors_of
from obsgap.text import full_match

_ISTIO_SELECTOR = re.compile(r'\b(istio_\w+)\s*\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}')  # quoted values may hold ${var}
_REPORTER = re.compile(r'\breporter\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
REPORTERS = ("source", "destination", "waypoint")
_L7 = re.compile(r"istio_(?:requests_total|request_duration_\w+|request_bytes\w*|response_bytes\w*)")


@dataclass(frozen=True)
class ReporterMatcher:
    """One `reporter` matcher of a selector over an Istio metric, as a dashboard query writes it."""

    query: PanelQuery
    at: int
    """Which selector of the query it belongs to (a query may hold several)."""
    metric: str
    """The metric the selector names (`istio_request_duration_milliseconds_bucket`)."""
    op: str
    value: str
    """The matched value, variables resolved to their options (`source|destination`)."""

    @property
    def text(self) -> str:
        return f'reporter{self.op}"{self.value}"'

    @property
    def l7(self) -> bool:
        """Over Istio's request metrics (count, duration, sizes), not its TCP ones."""
        return _L7.fullmatch(self.metric) is not None


T = TypeVar("T")
GRAFANA_VARIABLE = "__grafana_variable__"
"""What a dashboard variable in a label value becomes for PromQL (grafana_query), followed by its name and `:`
(`__grafana_variable__qrep:`): its value is the viewer's."""
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
"""A PromQL string: double- or single-quoted (with escapes), or in backticks (raw)."""
_ANY_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w-]+)?\}|\$(\w+)|\[\[(\w+)(?::[\w-]+)?\]\]")
_TOKEN = re.compile(GRAFANA_VARIABLE + r"(\w*):")


def _token(m: re.Match[str]) -> str:
    return f"{GRAFANA_VARIABLE}{next(g for g in m.groups() if g)}:"


def grafana_query(expr: str) -> Any | None:
    """A panel's query parsed as PromQL (promql-parser's tree): each variable in a label value replaced by
    GRAFANA_VARIABLE and its name, each other one (a range: `[$__rate_interval]`) by `5m`; None where the result is
    not PromQL (a variable elsewhere: `by ($group)`)."""
    parts, at = [], 0
    for m in QUOTED.finditer(expr):
        parts += [_ANY_VARIABLE.sub("5m", expr[at:m.start()]), _ANY_VARIABLE.sub(_token, m.group())]
        at = m.end()
    try:
        return pp.parse("".join(parts) + _ANY_VARIABLE.sub("5m", expr[at:]))
    except (ValueError, TypeError):
        return None


def admitted(matchers: Sequence[ReporterMatcher] | Sequence[Matcher]) -> set[str] | None:
    """The reporters every one of a selector's reporter matchers admits (each `op`, `value`); None where one cannot
    be read."""
    out = set(REPORTERS)
    for m in matchers:
        hits: set[str] = set()
        for r in REPORTERS:
            hit = full_match(m.value, r) if m.op in ("=~", "!~") else m.value == r
            if hit is None:
                return None
            if hit:
                hits.add(r)
        out &= hits if m.op in ("=", "=~") else set(REPORTERS) - hits
    return out


def variables(queries: list[PanelQuery]) -> Mapping[str, str]:
    """A custom variable's options as a regex alternation (`source,destination` -> `source|destination`)."""
    out = {}
    for q in queries:
        if q.panel.startswith("variable $") and "(" not in q.expr and "{" not in q.expr:
            out[q.panel.removeprefix("variable $")] = "|".join(v.strip() for v in q.expr.split(",") if v.strip())
    return out


@dataclass(frozen=True)
class IstioSelector:
    """One selector over an Istio metric in a dashboard query, with its `reporter` matchers (none: every reporter)."""

    query: PanelQuery
    at: int
    """Which selector of the query it is (a query may hold several)."""
    metric: str
    reporters: tuple[ReporterMatcher, ...]
    matchers: tuple[Matcher, ...] = ()
    """Its other label matchers, variables resolved as the reporter's are (none where the query is not PromQL)."""


def istio_selectors(queries: list[PanelQuery]) -> Iterator[IstioSelector]:
    """Every selector over an Istio metric in one dashboard's queries, reporter matchers resolved (a variable the
    dashboard does not define reads as `.*`). Read from the parsed query (single-quoted values, a metric without
    braces); where it is not PromQL once its variables are replaced, from its text."""
    defined = variables(queries)

    def resolved(value: str) -> str:
        value = _TOKEN.sub(lambda m: defined.get(m.group(1), ".*"), value)
        return _ANY_VARIABLE.sub(lambda m: defined.get(next(g for g in m.groups() if g), ".*"), value)

    for q in queries:
        parsed = grafana_query(q.expr)
        if parsed is None:
            yield from _written_selectors(q, resolved)
            continue
        for at, sel in enumerate(selectors_of(parsed)):
            if not sel.metric.startswith("istio_"):
                continue
            ms = tuple(Matcher(m.name, m.op, resolved(m.value)) for m in sel.matchers)
            yield IstioSelector(q, at, sel.metric,
                                tuple(ReporterMatcher(q, at, sel.metric, m.op, m.value) for m in ms
                                      if m.name == "reporter"),
                                tuple(m for m in ms if m.name != "reporter"))


def _written_selectors(q: PanelQuery, resolved: Callable[[str], str]) -> Iterator[IstioSelector]:
    """The selectors with braces of a query that does not parse, as written: their reporter matchers only."""
    for selector in _ISTIO_SELECTOR.finditer(q.expr):
        reporters = tuple(ReporterMatcher(q, selector.start(), selector.group(1), op, resolved(value))
                          for op, value in _REPORTER.findall(selector.group(2)))
        yield IstioSelector(q, selector.start(), selector.group(1), reporters)


@dataclass(frozen=True)
class Board:
    """Where queries are read: a Grafana dashboard (its title), or a rule group Prometheus evaluates (its name and
    the file it was loaded from)."""

    title: str
    rule_file: str | None = None

    @classmethod
    def of(cls, query: PanelQuery) -> Board:
        return cls(query.dashboard, query.rule_file)

    @property
    def rules(self) -> bool:
        return self.rule_file is not None

    @property
    def file_key(self) -> str:
        """The rule file as it identifies the group across reloads (model.rule_file_key)."""
        return rule_file_key(self.rule_file or "")

    @property
    def key(self) -> str:
        """The subject key a later run examines it under."""
        return f"rules:{self.file_key}:{self.title}" if self.rules else f"dashboard:{self.title}"

    @property
    def subject(self) -> str:
        return f"rules/{self.file_key}/{self.title}" if self.rules else f"dashboard/{self.title}"

    @property
    def name(self) -> str:
        """How a title names it: the dashboard's title, `rule group <name>`."""
        return f"rule group {self.title}" if self.rules else self.title

    @property
    def words(self) -> str:
        """How a sentence names it."""
        return f"rule group {self.title!r} ({self.rule_file or 'file unknown'})" if self.rules \
            else f"dashboard {self.title!r}"

    @property
    def resource(self) -> str:
        return f"Rule group {self.file_key}/{self.title}" if self.rules else f"Dashboard {self.title}"

    def queries(self, n: int) -> str:
        """`n` of its queries, in words: `3 queries`, `1 rule`."""
        noun = ("rule", "rules") if self.rules else ("query", "queries")
        return f"{n} {noun[n != 1]}"

    def where(self, panels: Sequence[str]) -> str:
        """Where those queries sit: ` (in 2 panels)`; nothing for rules (each is its own)."""
        return "" if self.rules else f" (in {len(panels)} panel{'s' * (len(panels) != 1)})"


def board_key(evidence: Mapping[str, Any]) -> tuple[str, ...]:
    """The subject key of a dashboard check's finding, from its evidence (`dashboard`, `rule_file`)."""
    if not evidence.get("dashboard"):
        return ()
    return (Board(str(evidence["dashboard"]), evidence.get("rule_file")).key,)


class DashboardCheck(Check):
    """A check whose subjects are the dashboards given (`--dashboards`) and the rule groups Prometheus evaluates."""

    _memo: ClassVar[tuple[CheckInputs, Any] | None] = None

    @classmethod
    def once(cls, inputs: CheckInputs, compute: Callable[[CheckInputs], T]) -> T:
        """`compute(inputs)` once per run: the engine asks run, then examined, which share it."""
        if cls._memo is None or cls._memo[0] is not inputs:
            cls._memo = (inputs, compute(inputs))
        return cast(T, cls._memo[1])

    @classmethod
    def forget(cls) -> None:
        """Called by examined, the last to ask: the run's evidence is not kept past it."""
        cls._memo = None

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The dashboards given and the rule groups read (none: nothing judged, and an earlier finding is not
        re-checked)."""
        return frozenset(Board.of(q).key for q in inputs.dashboards)

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        return board_key(finding.get("evidence") or {})


@dataclass
class Judged:
    """One dashboard's (or rule group's) judgement by a check keyed per cause."""

    found: list[Any] = field(default_factory=list)
    """What the check found (each with its `cause`)."""
    unjudged: set[str] = field(default_factory=set)
    """The causes some query could not be judged for."""


class PerCauseDashboardCheck(DashboardCheck):
    """A dashboard check that judges each dashboard (or rule group) per cause: its subject keys are
    `<board key>/<cause>`, examined where every query could be judged for that cause or a finding names it, so a
    cause not judged tonight is never resolved by another one's judgement."""

    @classmethod
    def judge(cls, inputs: CheckInputs) -> dict[Board, Judged]:
        raise NotImplementedError

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        judged = cls.judged(inputs)
        cls.forget()
        return frozenset(f"{b.key}/{cause}" for b, j in judged.items() for cause in cls.causes
                         if cause not in j.unjudged or any(x.cause == cause for x in j.found))

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(f"{key}/{finding.get('cause')}" for key in board_key(finding.get("evidence") or {}))

    @classmethod
    def judged(cls, inputs: CheckInputs) -> dict[Board, Judged]:
        """The judgement, computed once per run: run and examined share it."""
        return cls.once(inputs, cls.judge)


def mesh_pods(inputs: CheckInputs) -> tuple[Pod, ...]:
    """Every pod of the mesh, those of the namespaces out of scope too: a dashboard reads the whole mesh. Raises
    Skip where none is known (a snapshot without pods): which proxies report what cannot be told, and a finding of
    an earlier run is then not re-checked rather than resolved."""
    topo = inputs.index.topo
    pods = (*topo.context_pods, *topo.pods)
    if inputs.dashboards and not pods:
        raise Skip("no pod is known (the topology holds none): which proxies report Istio's metrics cannot be told")
    return pods


def by_dashboard(inputs: CheckInputs) -> dict[Board, list[PanelQuery]]:
    """The queries read, per dashboard and rule group."""
    out: dict[Board, list[PanelQuery]] = defaultdict(list)
    for q in inputs.dashboards:
        out[Board.of(q)].append(q)
    return out
