"""Grafana dashboard JSON -> the PromQL each panel runs (for naming the damage of a wrong job name)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from obsgap.errors import InputError
from obsgap.model import PanelQuery


def _panels(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        if "targets" in node or "panels" in node:
            yield node
        for child in node.get("panels") or []:
            yield from _panels(child)
        for row in node.get("rows") or []:
            yield from _panels(row)


def load_dashboards(paths: list[Path]) -> tuple[list[PanelQuery], list[str]]:
    """Every PromQL expression in the dashboards (panels, rows, template variables); bad files are gaps."""
    queries: list[PanelQuery] = []
    gaps: list[str] = []
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(p.rglob("*.json")))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"--dashboards {p}: no such file or directory")
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            gaps.append(f"{f}: not a Grafana dashboard ({type(exc).__name__})")
            continue
        dash = doc.get("dashboard", doc) if isinstance(doc, Mapping) else {}
        title = str(dash.get("title") or f.name) if isinstance(dash, Mapping) else f.name
        for panel in _panels(dash):
            for t in panel.get("targets") or []:
                if isinstance(t, Mapping) and isinstance(t.get("expr"), str):
                    queries.append(PanelQuery(title, str(panel.get("title") or "(untitled)"), t["expr"]))
        for var in ((dash.get("templating") or {}).get("list") or []) if isinstance(dash, Mapping) else []:
            q = var.get("query") if isinstance(var, Mapping) else None
            q = q.get("query") if isinstance(q, Mapping) else q
            if isinstance(q, str) and q:
                queries.append(PanelQuery(title, f"variable ${var.get('name')}", q))
    return queries, gaps
