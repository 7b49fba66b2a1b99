"""Load PromQL from queries/*.promql and bind parameters without string-building PromQL in code.

A query file starts with `#` header lines (`returns:`, `labels:`, `scope:`) and has two
placeholders: `$window` (a duration) and `$selector` (one label matcher that scopes the query to
the requested namespaces, on the label named by `scope:`); `$resolution` is a subquery step of 1/24 of the window
(at least 15 s, `subquery_step_seconds`), `$grid` a subquery range whose steps on that resolution run from one step
after the window's start to its end (for a query evaluated on the grid), `$after_grid_start` the range after that
first step, `$offset_1..3` one to three times the slices' spacing (`Grid`); `$bucket_series` and `$series`
validated metric names, `$by` validated label names. `scope: family` takes the scope label and the further matchers
from the caller (a witness family's own).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from obsgap.errors import InputError

_PLACEHOLDER = re.compile(
    r"\$(window|selector|bucket_series|resolution|grid|after_grid_start|offset_[123]|series|by)\b")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def queries_dir() -> Path:
    env = os.environ.get("OBSGAP_QUERIES_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "queries", here.parent / "queries"):
        if candidate.is_dir():
            return candidate
    raise InputError("cannot find the queries/ folder; set OBSGAP_QUERIES_DIR")


@dataclass(frozen=True)
class FamilyScope:
    """What a `scope: family` query is bound with: the series, the labels to keep, the namespace label (None: the
    family cannot be scoped by a label; its rows are scoped after) and its own matchers, as (label, op, value)."""

    series: str
    by: tuple[str, ...]
    namespace_label: str | None
    matchers: tuple[tuple[str, str, str], ...] = ()
    label: str = ""
    """How the report names this query (the family's witness); the series when empty."""

    def selector(self, namespaces: tuple[str, ...]) -> str:
        if not _METRIC_NAME.match(self.series):
            raise InputError(f"{self.series!r} is not a metric name")
        for label in (*self.by, *(m[0] for m in self.matchers), *([self.namespace_label] if self.namespace_label
                                                                   else [])):
            if not _LABEL_NAME.match(label):
                raise InputError(f"{label!r} is not a label name")
        parts = [namespace_matcher(self.namespace_label, namespaces)] if self.namespace_label and namespaces else []
        for label, op, value in self.matchers:
            if op not in ("=", "!=", "=~", "!~"):
                raise InputError(f"{op!r} is not a PromQL matcher")
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            parts.append(f'{label}{op}"{escaped}"')
        return ", ".join(parts)


@dataclass(frozen=True)
class Grid:
    """A subquery's steps (`$resolution`, `$grid`, `$after_grid_start`) and the spacing of a query's slices
    (`$offset_1..3`, at least a step: PromQL refuses `offset 0s`); by default a step of
    subquery_step_seconds(window), the slices a step apart."""

    step_seconds: int
    spacing_seconds: int = 0


@dataclass(frozen=True)
class QueryFile:
    name: str
    text: str
    returns: str
    labels: tuple[str, ...]
    scope: str

    def bind(self, window_seconds: int, namespaces: tuple[str, ...] = (), bucket_series: str | None = None,
             family: FamilyScope | None = None, grid: Grid | None = None) -> str:
        if "$bucket_series" in self.text and (not bucket_series or not _METRIC_NAME.match(bucket_series)):
            raise InputError(f"query {self.name}: {bucket_series!r} is not a metric name")
        scope = self.scope.split()[0]
        if scope == "none" and "$selector" in self.text:
            raise InputError(f"query {self.name}: `scope: none` and a $selector placeholder contradict each other")
        if scope == "family":
            if family is None:
                raise InputError(f"query {self.name}: a family query needs its family")
            selector = family.selector(namespaces)
        else:
            selector = "" if scope == "none" else namespace_matcher(self.scope, namespaces)
        grid = grid or Grid(subquery_step_seconds(window_seconds))
        step = grid.step_seconds
        first_step = (max(1, int(window_seconds) // step) - 1) * step  # how long before the end the grid starts
        values = {"window": f"{int(window_seconds)}s", "selector": selector,
                  "bucket_series": bucket_series or "", "resolution": f"{step}s",
                  "grid": f"{max(1, first_step * 1000 + step * 500)}ms",
                  "after_grid_start": f"{max(1, first_step * 1000 - 1)}ms",
                  "series": family.series if family else "", "by": ", ".join(family.by) if family else "",
                  **{f"offset_{k}": f"{k * max(grid.spacing_seconds, step)}s" for k in (1, 2, 3)}}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)


def subquery_step_seconds(window_seconds: int) -> int:
    """The step of a subquery over the window: 1/24 of it, at least 15 s (a common scrape interval)."""
    return max(15, int(window_seconds) // 24)


def namespace_matcher(label: str, namespaces: tuple[str, ...]) -> str:
    """One matcher; namespaces are validated as DNS labels, so nothing can break out of the string."""
    if not namespaces:
        return f'{label}=~".*"'
    for ns in namespaces:
        if not _NAMESPACE.match(ns):
            raise InputError(f"--namespace {ns!r} is not a valid Kubernetes namespace name")
    return f'{label}=~"{"|".join(sorted(set(namespaces)))}"'


def _parse(path: Path) -> QueryFile:
    header: dict[str, str] = {}
    body: list[str] = []
    key = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and not body:
            content = line[1:].strip()
            m = re.match(r"^(\w+):\s*(.*)$", content)
            if m:
                key = m.group(1)
                header[key] = m.group(2)
            elif key:
                header[key] += " " + content
        elif line.strip():
            body.append(line)
    if "scope" not in header or not body:
        raise InputError(f"{path}: a query file needs a `# scope:` header and a query")
    return QueryFile(path.stem, "\n".join(body), header.get("returns", ""),
                     tuple(header.get("labels", "").split()), header["scope"].strip())


@cache
def load_query(name: str) -> QueryFile:
    path = queries_dir() / f"{name}.promql"
    if not path.is_file():
        raise InputError(f"no query file {path}")
    return _parse(path)


def all_queries() -> list[QueryFile]:
    return [load_query(p.stem) for p in sorted(queries_dir().glob("*.promql"))]
