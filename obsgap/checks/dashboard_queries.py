"""What a Grafana dashboard's queries select of Istio's metrics: the selectors and their `reporter` matchers, with
the dashboard's custom variables (Istio's own `$qrep`) resolved to their options. Read by the dashboard checks."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import promql_parser as pp

from obsgap.checks.base import Check, CheckInputs, Skip
from obsgap.model import PanelQuery, Pod
from obsgap.slo.promql import Matcher
from obsgap.text import full_match

_ISTIO_SELECTOR = re.compile(r'\b(istio_\w+)\s*\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}')  # quoted values may hold ${var}
_REPORTER = re.compile(r'\breporter\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}|\[\[(\w+)\]\]")
REPORTERS = ("source", "destination", "waypoint")
_L7 = re.compile(r"istio_(?:requests_total|request_duration_\w+|request_bytes\w*|response_bytes\w*)")


@dataclass(frozen=True)
class ReporterMatcher:
    """One `reporter` matcher of a selector over an Istio metric, as a dashboard query writes it."""

    query: PanelQuery
    at: int
    """Where the selector starts in the query's expression (a query may hold several)."""
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


GRAFANA_VARIABLE = "__grafana_variable__"
"""What a dashboard variable in a label value becomes for PromQL (grafana_query): its value is the viewer's."""
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_ANY_VARIABLE = re.compile(r"\$\{\w+(?::[\w-]+)?\}|\$\w+|\[\[\w+(?::[\w-]+)?\]\]")


def grafana_query(expr: str) -> Any | None:
    """A panel's query parsed as PromQL (promql-parser's tree): each variable in a label value replaced by
    GRAFANA_VARIABLE, each other one (a range: `[$__rate_interval]`) by `5m`; None where the result is not PromQL (a
    variable elsewhere: `by ($group)`)."""
    parts, at = [], 0
    for m in _STRING.finditer(expr):
        parts += [_ANY_VARIABLE.sub("5m", expr[at:m.start()]), _ANY_VARIABLE.sub(GRAFANA_VARIABLE, m.group())]
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
    metric: str
    reporters: tuple[ReporterMatcher, ...]


def istio_selectors(queries: list[PanelQuery]) -> Iterator[IstioSelector]:
    """Every selector over an Istio metric in one dashboard's queries, reporter matchers resolved (a variable the
    dashboard does not define reads as `.*`)."""
    defined = variables(queries)
    for q in queries:
        for selector in _ISTIO_SELECTOR.finditer(q.expr):
            reporters = tuple(
                ReporterMatcher(q, selector.start(), selector.group(1), op,
                                _VARIABLE.sub(lambda m: defined.get(next(g for g in m.groups() if g), ".*"), value))
                for op, value in _REPORTER.findall(selector.group(2)))
            yield IstioSelector(q, selector.start(), selector.group(1), reporters)


def reporter_matchers(queries: list[PanelQuery]) -> Iterator[ReporterMatcher]:
    """The `reporter` matchers of every selector over an Istio metric in one dashboard's queries."""
    for selector in istio_selectors(queries):
        yield from selector.reporters


class DashboardCheck(Check):
    """A check whose subjects are the dashboards given (`--dashboards`)."""

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The dashboards given (none: nothing judged, and an earlier finding is not re-checked)."""
        return frozenset(f"dashboard:{q.dashboard}" for q in inputs.dashboards)

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        evidence = finding.get("evidence") or {}
        return (f"dashboard:{evidence.get('dashboard')}",) if evidence.get("dashboard") else ()


def mesh_pods(inputs: CheckInputs) -> tuple[Pod, ...]:
    """Every pod of the mesh, those of the namespaces out of scope too: a dashboard reads the whole mesh. Raises
    Skip where none is known (a snapshot without pods): which proxies report what cannot be told, and a finding of
    an earlier run is then not re-checked rather than resolved."""
    topo = inputs.index.topo
    pods = (*topo.context_pods, *topo.pods)
    if inputs.dashboards and not pods:
        raise Skip("no pod is known (the topology holds none): which proxies report Istio's metrics cannot be told")
    return pods


def by_dashboard(inputs: CheckInputs) -> dict[str, list[PanelQuery]]:
    """The queries given, per dashboard."""
    out: dict[str, list[PanelQuery]] = defaultdict(list)
    for q in inputs.dashboards:
        out[q.dashboard].append(q)
    return out
