"""The one interface of every source: preflight (is every named input there?), then read (typed evidence and a
typed source report). A new source is one adapter module with this shape, its flags and its tests.

A source that failed, or gave nothing (an empty folder, no series in the window, no pod in scope), or gave nothing
usable, says so in `problems`: one line each, naming what to do. The run is then partial (exit 3) and every number
that would have rested on it is unknown, never 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from obsgap.model import Window
from obsgap.topology import TopologyIndex

E = TypeVar("E", covariant=True)
R = TypeVar("R", covariant=True)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ReadContext:
    """What every adapter may read from the run: the window, the namespaces in scope, the topology (for
    attribution; empty while the topology itself is read) and where to say what it is doing."""

    window: Window
    namespaces: tuple[str, ...]
    index: TopologyIndex
    say: Progress
    forks_done: Callable[[], None] = lambda: None
    """A source that starts worker processes calls this once they are all started (a source that starts none may
    call it at once): the engine then reads the other sources in a thread alongside. Not before: a process forked
    while another thread runs can deadlock on a lock that thread held."""

    @property
    def start_ms(self) -> int:
        return int(self.window.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.window.end.timestamp() * 1000)


@dataclass(frozen=True)
class SourceRead(Generic[E, R]):
    evidence: E | None
    """None when the source gave nothing to compare."""
    report: R
    problems: tuple[str, ...] = ()
    """Why the source failed, gave nothing, or gave nothing usable: one line each, with what to do."""


class Source(Protocol[E, R]):
    kind: str
    """What it delivers: topology, metrics, logs or slos."""

    def preflight(self) -> None:
        """Raise InputError (exit 2) for a named input that cannot be there (a missing file, an unreadable token)."""

    def read(self, ctx: ReadContext) -> SourceRead[E, R]: ...
