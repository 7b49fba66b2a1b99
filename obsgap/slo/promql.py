"""What an SLI's PromQL selects, read with a real parser (promql-parser), and the same query over another window.

SLO tools template their queries (Sloth's `{{.window}}`); a template is filled with the window before parsing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

import promql_parser as pp

from obsgap.errors import InputError
from obsgap.text import full_match

_TEMPLATE = re.compile(r"\{\{\s*\.window\s*\}\}")
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    """=, !=, =~ or !~"""
    value: str

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = full_match(self.value, value)  # Prometheus regexes are anchored
        if hit is None:
            return False
        return hit if self.op == "=~" else not hit

    def text(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


@dataclass(frozen=True)
class Selector:
    """One vector selector of the query: the metric and its label matchers."""

    metric: str
    matchers: tuple[Matcher, ...]

    def label(self, name: str) -> tuple[Matcher, ...]:
        return tuple(m for m in self.matchers if m.name == name)

    def equal(self, name: str) -> str | None:
        """The value a `name="..."` matcher pins, if any."""
        return next((m.value for m in self.matchers if m.name == name and m.op == "="), None)

    def text(self, without: frozenset[str] = frozenset()) -> str:
        inner = ",".join(m.text() for m in self.matchers if m.name not in without)
        return f"{self.metric}{{{inner}}}"

    @property
    def family(self) -> str:
        """A histogram's family name for its _bucket/_count/_sum series."""
        for suffix in ("_bucket", "_count", "_sum"):
            if self.metric.endswith(suffix):
                return self.metric[: -len(suffix)]
        return self.metric


@dataclass(frozen=True)
class QueryShape:
    """What one SLI query reads and how."""

    text: str
    """The query with its template filled, as given."""
    selectors: tuple[Selector, ...]
    rate: bool
    """The outermost range function is a per-second rate (rate/irate): a count over W is the value times W."""
    bare: bool
    """A bare selector (Pyrra, OpenSLO `counter: true`): the counter itself, to be increased over the window."""
    quantile: float | None = None
    """histogram_quantile(q, ...) reads the q-quantile."""
    aggregations: tuple[str, ...] = ()
    """`sum by (le)`, `sum`: how the query aggregates, outermost first."""
    ranges: tuple[int, ...] = ()
    """The range of every range selector, in seconds (the SLI's own window: 300 for `[5m]`)."""


def fill(template: str, window: str) -> str:
    return _TEMPLATE.sub(window, template)


def parse(query: str, window: str = "5m") -> Any:
    try:
        return pp.parse(fill(query, window))
    except (ValueError, TypeError) as exc:
        raise InputError(f"PromQL {query[:200]!r} does not parse: {exc}") from exc


def _children(expr: Any) -> Iterator[Any]:
    for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(expr, attr, None)
        if child is not None and not isinstance(child, str | int | float):
            yield child
    yield from getattr(expr, "args", None) or ()


def _nodes(expr: Any) -> Iterator[Any]:
    yield expr
    for child in _children(expr):
        yield from _nodes(child)


def _drops(aggregation: Any, label: str) -> bool:
    """Whether an aggregation's result loses `label` (`by` without it, `without` naming it, or neither); `topk` and
    its kin keep every label of the series they pick."""
    if str(aggregation.op) in _PICKS:
        return False
    modifier = aggregation.modifier
    if modifier is None:
        return True
    kept = label in modifier.labels
    return not kept if str(modifier.type) == "AggModifierType.By" else kept


_PICKS = frozenset({"topk", "bottomk", "limitk", "limit_ratio"})
_BLENDS = frozenset({"/", "==", "!=", ">", "<", ">=", "<=", "atan2"})


@dataclass(frozen=True)
class Summed:
    """A selector whose series a query adds up across a label's values."""

    selector: Selector
    blended: bool
    """The sum is divided by or compared with another vector, or divides a number, or is read as a quantile (a
    ratio, a latency): what it shows is a blend, not a multiple, of the values it adds. Divided by or compared with
    a number (an alert's threshold), it is still a multiple. Counted (`count`, `group`, `absent`) it is not
    returned at all."""


def summed_over(expr: Any, label: str) -> list[Summed]:
    """The selectors of a parsed query whose series it adds up across the values of `label`: the innermost
    aggregation above the selector that loses the label is a `sum` (a `max`, `avg` or `count` there combines them
    otherwise; none: each value stays its own series)."""
    out: list[Summed] = []

    def walk(node: Any, summed: bool, blended: bool) -> None:
        if (isinstance(node, pp.AggregateExpr) and str(node.op) in _COUNTS) or (
                isinstance(node, pp.Call) and node.func.name in _PRESENCE):
            return  # how many series, or whether any: not what they add up to
        if isinstance(node, pp.AggregateExpr) and _drops(node, label):
            summed = str(node.op) == "sum"
        elif (isinstance(node, pp.BinaryExpr) and str(node.op) in _BLENDS
              and ((str(node.op) == "/" and _scalar(node.lhs)) or not (_scalar(node.lhs) or _scalar(node.rhs)))) or (
                isinstance(node, pp.Call) and node.func.name == "histogram_quantile"):
            blended = True  # a sum over a number (an alert's `> 50`, `/ 60`) is still a multiple of what it adds
        if isinstance(node, pp.VectorSelector):
            if summed:
                out.append(Summed(_selector(node), blended))
            return
        for child in _children(node):
            walk(child, summed, blended)

    walk(expr, False, False)
    return out


_SCALAR_CALLS = frozenset({"scalar", "time", "pi"})
_COUNTS = frozenset({"count", "count_values", "group"})
_PRESENCE = frozenset({"absent", "absent_over_time", "present_over_time", "count_over_time"})


def _scalar(node: Any) -> bool:
    """Whether an operand is a number (a literal, `time()`, `scalar(...)`, arithmetic of such), not a vector."""
    if isinstance(node, pp.NumberLiteral):
        return True
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr):
        return _scalar(node.expr)
    if isinstance(node, pp.Call):  # scalar(sum(...)) is a vector's value: a ratio through it is still a ratio
        return node.func.name in _SCALAR_CALLS and not any(
            isinstance(n, pp.VectorSelector) for arg in node.args for n in _nodes(arg))
    if isinstance(node, pp.BinaryExpr):
        return _scalar(node.lhs) and _scalar(node.rhs)
    return False


def selectors_of(expr: Any) -> list[Selector]:
    """Every vector selector of a parsed query, in the order written (one written twice: twice)."""
    return [_selector(n) for n in _nodes(expr) if isinstance(n, pp.VectorSelector)]


def _selector(vs: Any) -> Selector:
    matchers = []
    name = vs.name or ""
    for m in vs.matchers.matchers:
        if m.name == "__name__" and str(m.op) == "MatchOp.Equal":
            name = m.value
            continue
        matchers.append(Matcher(m.name, _OPS.get(str(m.op), "="), m.value))
    return Selector(name, tuple(matchers))


@lru_cache(maxsize=4096)
def shape(query: str, window: str = "5m") -> QueryShape:
    expr = parse(query, window)
    selectors: list[Selector] = []
    rate = False
    quantile = None
    aggregations: list[str] = []
    ranges: list[int] = []
    for node in _nodes(expr):
        if isinstance(node, pp.AggregateExpr):
            aggregations.append(f"{node.op} {node.modifier}".strip() if node.modifier else str(node.op))
        elif isinstance(node, pp.MatrixSelector):
            ranges.append(int(node.range.total_seconds()))
        if isinstance(node, pp.VectorSelector):
            sel = _selector(node)
            if sel not in selectors:
                selectors.append(sel)
        elif isinstance(node, pp.Call):
            name = node.func.name
            if name in ("rate", "irate") and not rate:
                rate = True
            if name == "histogram_quantile" and node.args and isinstance(node.args[0], pp.NumberLiteral):
                quantile = float(node.args[0].val)
    return QueryShape(fill(query, window), tuple(selectors), rate, isinstance(expr, pp.VectorSelector), quantile,
                      tuple(aggregations), tuple(dict.fromkeys(ranges)))


def duration(seconds: int) -> str:
    return pp.display_duration(timedelta(seconds=seconds))


def over_window(query: str, window_seconds: int) -> str:
    """The same query with every range (`[5m]`, a template) set to the window, so it measures the window."""
    w = duration(window_seconds)
    expr = parse(query, w)

    def post(node: Any) -> Any:
        if isinstance(node, pp.MatrixSelector):
            vs = node.vector_selector
            text = _selector(vs).text() + f"[{w}]"
            if vs.offset:
                text += f" offset {duration(int(vs.offset.total_seconds()))}"
            return pp.parse(text)
        return None

    return str(pp.transform(expr, post_visit=post))


def counted(query: str, window_seconds: int) -> str:
    """A query's events over the window: bare counters are increased over it, the rest measured over it."""
    s = shape(query)
    if s.bare:
        return f"sum(increase({s.selectors[0].text()}[{duration(window_seconds)}]))"
    return over_window(query, window_seconds)


def selects(selector: Selector, labels: Mapping[str, str]) -> bool:
    """Whether a series with these labels would be selected (matchers only: the metric name is the caller's)."""
    return all(m.matches(labels.get(m.name, "")) for m in selector.matchers)
