"""Charts as typed data: what a check's evidence draws, sized and drawn by the page (Plotly) when its finding opens.

A series with nothing in it is not drawn as a missing line on a zoomed axis: it becomes a sentence (`notes`).
"""

from __future__ import annotations

from dataclasses import dataclass

GREY, ORANGE, RED, GREEN, INK, PURPLE = "#7f8c8d", "#e67e22", "#c0392b", "#1e8449", "#34495e", "#8e44ad"


@dataclass(frozen=True)
class Bars:
    title: str
    labels: tuple[str, ...]
    values: tuple[float, ...]
    colors: tuple[str, ...]
    value_name: str
    """what one unit is (observations, requests), for the hover text"""
    notes: tuple[str, ...] = ()
    kind: str = "bars"
    integers: bool = True
    """Counts: the value axis shows whole numbers only."""


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    points: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Lines:
    title: str
    step_ms: int
    lines: tuple[Line, ...]
    notes: tuple[str, ...] = ()
    kind: str = "lines"


Chart = Bars | Lines
