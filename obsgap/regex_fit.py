"""Whether an anchored regex matches a text some of whose parts are unknown: never, always, or it depends.

Used by obsgap.relabel for a rule that reads labels whose values obsgap does not know. The regex is read by Python's
own parser (the one `re` compiles with, DOTALL and ASCII as Prometheus's RE2 reads a relabel regex) into a
nondeterministic automaton; the text is the known parts with a free run of any characters for each unknown one.
`never` is decided exactly and in polynomial time (the product of the two automata has no accepting path).
`always` asks that no text of that shape escapes the regex, which needs the automaton made deterministic: that
can grow exponentially (`(a|b)*a(a|b){20}`), so the search stops after a bounded number of states and answers
`maybe`. Written by hand: regex-intersection libraries (interegular, greenery) determinise without a bound, and a
nightly run must not hang on one rule of a configuration. Syntax outside a plain regular language (anchors inside,
lookarounds, backreferences, possessive repeats, inline flags) is `maybe`.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any, Literal

Fit = Literal["never", "always", "maybe"]
Intervals = tuple[tuple[int, int], ...]
"""A set of characters: sorted, disjoint, inclusive code-point ranges."""

_TOP = 0x10FFFF
_ANY: Intervals = ((0, _TOP),)
_CATEGORIES: dict[object, Intervals] = {  # with re.ASCII, as RE2 reads them
    sre.CATEGORY_DIGIT: ((48, 57),),
    sre.CATEGORY_WORD: ((48, 57), (65, 90), (95, 95), (97, 122)),
    sre.CATEGORY_SPACE: ((9, 10), (12, 13), (32, 32)),  # RE2: [\t\n\f\r ], no \v
}
_NEGATED = {sre.CATEGORY_NOT_DIGIT: sre.CATEGORY_DIGIT, sre.CATEGORY_NOT_WORD: sre.CATEGORY_WORD,
            sre.CATEGORY_NOT_SPACE: sre.CATEGORY_SPACE}
MAX_STATES = 20_000
"""Automaton states a regex may need (its counted repeats copied out); beyond, the fit is `maybe`."""
MAX_SUBSETS = 4_000
"""Deterministic states the `always` search may visit before it answers `maybe`."""
MAX_WORK = 500_000
"""Steps either search may take (product states visited; subset states times characters tried) before it answers
`maybe`: a bound on time, whatever the regex or the text (a long known text against a large automaton)."""
_WILD = -1


class _Unsupported(Exception):
    """Syntax the automaton does not model."""


def _complement(chars: Intervals) -> Intervals:
    out, start = [], 0
    for lo, hi in chars:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _TOP:
        out.append((start, _TOP))
    return tuple(out)


def _normal(chars: list[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(chars):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return tuple(out)


def _contains(chars: Intervals, c: int) -> bool:
    i = bisect.bisect_right(chars, (c, _TOP + 1)) - 1
    return i >= 0 and chars[i][0] <= c <= chars[i][1]


@dataclass
class _Automaton:
    edges: list[list[tuple[Intervals, int]]] = field(default_factory=list)
    empty: list[list[int]] = field(default_factory=list)
    """Moves that read nothing."""

    def state(self) -> int:
        if len(self.edges) >= MAX_STATES:
            raise _Unsupported("too many states")
        self.edges.append([])
        self.empty.append([])
        return len(self.edges) - 1

    def closure(self, states: frozenset[int] | set[int]) -> frozenset[int]:
        seen, todo = set(states), list(states)
        while todo:
            for nxt in self.empty[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return frozenset(seen)

    def sequence(self, items: Sequence[tuple[Any, Any]], at: int) -> int:
        for op, arg in items:
            at = self.item(op, arg, at)
        return at

    def item(self, op: Any, arg: Any, at: int) -> int:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            chars = _chars(op, arg)
            end = self.state()
            self.edges[at].append((chars, end))
            return end
        if op is sre.BRANCH:
            end = self.state()
            for alternative in arg[1]:
                start = self.state()
                self.empty[at].append(start)
                self.empty[self.sequence(alternative, start)].append(end)
            return end
        if op is sre.SUBPATTERN:
            _group, add_flags, del_flags, items = arg
            if add_flags or del_flags:
                raise _Unsupported("inline flags")
            return self.sequence(items, at)
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            least, most, items = arg
            for _ in range(least):
                at = self.sequence(items, at)
            if most == sre.MAXREPEAT:
                loop = self.state()
                self.empty[at].append(loop)
                self.empty[self.sequence(items, loop)].append(loop)
                return loop
            exits = [at]
            for _ in range(most - least):
                at = self.sequence(items, at)
                exits.append(at)
            end = self.state()
            for x in exits:
                self.empty[x].append(end)
            return end
        raise _Unsupported(str(op))


def _chars(op: Any, arg: Any) -> Intervals:
    if op is sre.LITERAL:
        return ((int(arg), int(arg)),)
    if op is sre.NOT_LITERAL:
        return _complement(((int(arg), int(arg)),))
    if op is sre.ANY:
        return _ANY
    negate, parts = False, []
    for kind, value in arg:
        if kind is sre.NEGATE:
            negate = True
        elif kind is sre.LITERAL:
            parts.append((value, value))
        elif kind is sre.RANGE:
            parts.append(value)
        elif kind is sre.CATEGORY and value in _CATEGORIES:
            parts += _CATEGORIES[value]
        elif kind is sre.CATEGORY and value in _NEGATED:
            parts += _complement(_CATEGORIES[_NEGATED[value]])
        else:
            raise _Unsupported(str(kind))
    chars = _normal(parts)
    return _complement(chars) if negate else chars


@functools.lru_cache(maxsize=1024)
def _automaton(regex: str) -> tuple[_Automaton, int, int] | None:
    """(the automaton, its start, its accepting state), or None where the regex is outside what it models."""
    try:
        parsed = sre_parse.parse(regex, re.DOTALL | re.ASCII)
        if parsed.state.flags & ~(re.DOTALL | re.ASCII):
            raise _Unsupported("global inline flags")  # a leading `(?i)` is the pattern's flag, not a group's
        a = _Automaton()
        start = a.state()
        return a, start, a.sequence(list(parsed), start)
    except (_Unsupported, re.error, RecursionError, OverflowError):
        return None


def _text(separator: str, parts: Sequence[str | None]) -> list[int]:
    items: list[int] = []
    for i, part in enumerate(parts):
        if i:
            items += [ord(c) for c in separator]
        items += [_WILD] if part is None else [ord(c) for c in part]
    return items


@functools.lru_cache(maxsize=4096)
def fits(regex: str, separator: str, parts: tuple[str | None, ...]) -> Fit:
    """Whether `regex`, anchored at both ends, matches the parts joined by `separator`, where a part that is None
    may be any text: `never` (for no text in those parts), `always` (for every text), or `maybe` (some texts, or
    not known)."""
    built = _automaton(regex)
    if built is None:
        return "maybe"
    a, start, accept = built
    text = _text(separator, parts)
    can = _can_match(a, start, accept, text)
    if can is None:
        return "maybe"
    if not can:
        return "never"
    return "always" if _always(a, start, accept, text) else "maybe"


def _can_match(a: _Automaton, start: int, accept: int, text: list[int]) -> bool | None:
    """Whether some text of the shape makes the regex match: a path through the product of the two automata; None
    where the search would visit more than MAX_WORK product states."""
    seen = {(0, s) for s in a.closure({start})}
    todo = list(seen)
    while todo:
        if len(seen) > MAX_WORK:
            return None
        pos, state = todo.pop()
        if pos == len(text) and state == accept:
            return True
        nexts: list[tuple[int, int]] = [(pos, s) for s in a.empty[state]]
        if pos < len(text):
            c = text[pos]
            if c == _WILD:
                nexts.append((pos + 1, state))
                nexts += [(pos, s) for chars, s in a.edges[state] if chars]
            else:
                nexts += [(pos + 1, s) for chars, s in a.edges[state] if _contains(chars, c)]
        for n in nexts:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return False


def _always(a: _Automaton, start: int, accept: int, text: list[int]) -> bool:
    """Whether every text of the shape makes the regex match: both automata made deterministic together over one
    character of each class no edge tells apart; False where that takes more than MAX_SUBSETS states or MAX_WORK
    steps."""
    bounds = {0} | {c for c in text if c != _WILD} | {c + 1 for c in text if c != _WILD}
    for edges in a.edges:
        for chars, _ in edges:
            for lo, hi in chars:
                bounds.update((lo, hi + 1))
    alphabet = sorted(b for b in bounds if b <= _TOP)

    def skip(positions: set[int]) -> frozenset[int]:
        out, todo = set(positions), list(positions)
        while todo:
            p = todo.pop()
            if p < len(text) and text[p] == _WILD and p + 1 not in out:
                out.add(p + 1)
                todo.append(p + 1)
        return frozenset(out)

    first = (skip({0}), a.closure({start}))
    seen, todo = {first}, [first]
    work = 0
    while todo:
        positions, states = todo.pop()
        if len(text) in positions and accept not in states:
            return False
        work += (len(states) + len(positions)) * len(alphabet)
        if work > MAX_WORK:
            return False
        for c in alphabet:
            moved = {p + 1 for p in positions if p < len(text) and text[p] == c} | \
                {p for p in positions if p < len(text) and text[p] == _WILD}
            if not moved:
                continue
            step = (skip(moved), a.closure({s for st in states for chars, s in a.edges[st] if _contains(chars, c)}))
            if step not in seen:
                if len(seen) >= MAX_SUBSETS:
                    return False
                seen.add(step)
                todo.append(step)
    return True
