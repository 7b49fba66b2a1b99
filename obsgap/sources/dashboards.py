"""Grafana dashboard JSON -> the PromQL each panel runs (for naming the damage of a wrong job name)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from obsgap.errors import InputError
from obsgap.model import PanelQuery


class _Odd(list[str]):
    """What a file holds that is not a dashboard's shape, in words."""


def _items(node: Mapping[str, Any], key: str, where: str, odd: _Odd) -> list[Any]:
    """A list-valued key of a dashboard node; anything else there is noted and read as none."""
    value = node.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        odd.append(f"{where}'s {key!r} is not a list")
        return []
    return value


def _panels(node: Any, where: str, odd: _Odd, title: str | None = None) -> Iterator[Mapping[str, Any]]:
    """The panels of a node (the dashboard, a panel or a row) and the node itself where it has targets."""
    if not isinstance(node, Mapping):
        odd.append(f"a panel of {where} is not an object")
        return
    if "targets" in node or "panels" in node:
        yield node
    title = title or f"panel {str(node.get('title') or '(untitled)')[:80]!r}"
    for child in _items(node, "panels", title, odd):
        yield from _panels(child, title, odd)
    for row in _items(node, "rows", title, odd):
        yield from _panels(row, title, odd)


def _variables(dash: Mapping[str, Any], odd: _Odd) -> Iterator[tuple[str, str]]:
    """(name, query) of every template variable with a query."""
    templating = dash.get("templating")
    if not templating:
        return
    if not isinstance(templating, Mapping):
        odd.append("'templating' is not an object")
        return
    for var in _items(templating, "list", "templating", odd):
        q = var.get("query") if isinstance(var, Mapping) else None
        q = q.get("query") if isinstance(q, Mapping) else q
        if isinstance(q, str) and q:
            yield str(var.get("name")), q


def _queries(dash: Mapping[str, Any], title: str, odd: _Odd) -> list[PanelQuery]:
    out = []
    for panel in _panels(dash, "the dashboard", odd, "the dashboard"):
        name = str(panel.get("title") or "(untitled)")
        for t in _items(panel, "targets", f"panel {name[:80]!r}", odd):
            if isinstance(t, Mapping) and isinstance(t.get("expr"), str):
                out.append(PanelQuery(title, name, t["expr"]))
    out += [PanelQuery(title, f"variable ${name}", q) for name, q in _variables(dash, odd)]
    return out


def _files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    gaps: list[str] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.rglob("*.json"))
            files += found
            if not found:
                gaps.append(f"{p}: no Grafana dashboard (*.json) in it")
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"--dashboards {p}: no such file or directory")
    return files, gaps


def load_dashboards(paths: list[Path]) -> tuple[list[PanelQuery], list[str]]:
    """Every PromQL expression in the dashboards (panels, rows, template variables); a folder without one is a gap.
    A file that is not a Grafana dashboard (not JSON, not an object, a panel, target list or templating of another
    shape) is bad input: InputError naming the file and, where known, the line and column."""
    queries: list[PanelQuery] = []
    files, gaps = _files(paths)
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"--dashboards {f}:{exc.lineno}:{exc.colno}: not a Grafana dashboard: not valid JSON "
                             f"({exc.msg})") from None
        except (OSError, ValueError, RecursionError) as exc:
            raise InputError(f"--dashboards {f}: not a Grafana dashboard ({type(exc).__name__})") from None
        dash = doc.get("dashboard", doc) if isinstance(doc, Mapping) else None
        if not isinstance(dash, Mapping):
            raise InputError(f"--dashboards {f}: not a Grafana dashboard (a JSON {type(doc).__name__}, not an object)")
        odd = _Odd()
        queries += _queries(dash, str(dash.get("title") or f.name), odd)
        if odd:
            raise InputError(f"--dashboards {f}: not a Grafana dashboard: {'; '.join(dict.fromkeys(odd))}")
    return queries, gaps
