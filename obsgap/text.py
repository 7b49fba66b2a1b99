"""Small wording helpers shared by every layer (no I/O, no imports from the package)."""

from __future__ import annotations

import re
from datetime import UTC, datetime


def plural(n: int, word: str) -> str:
    """`1 file`, `2 files`, `1,234 requests`."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def pct(x: float) -> str:
    """A share as a percentage: one decimal, two just short of 100% (99.6% is not 100.0%)."""
    return f"{x * 100:.1f}%" if x < 0.995 or x >= 1 else f"{x * 100:.2f}%"


def duration_text(seconds: float) -> str:
    """A duration as a person reads it: "3 h 10 m", "45 m", "50 s"."""
    total = round(seconds)
    hours, minutes = total // 3600, total % 3600 // 60
    if hours:
        return f"{hours} h {minutes} m" if minutes else f"{hours} h"
    return f"{minutes} m" if minutes else f"{total} s"


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC: `2026-11-24T00:00:00Z`."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Characters that move a terminal's cursor, recolour it or reorder the text around them (bidi controls)."""


def clean_line(text: object) -> str:
    """Untrusted text for a terminal table whose columns must keep their width: the characters `safe` escapes
    shown as spaces."""
    return _CONTROL.sub(" ", str(text))


def safe(text: object) -> str:
    """Untrusted text for a terminal or a chat: control and bidi characters as \\xNN / \\uNNNN escapes, so a
    label value cannot rewrite the screen or disguise what it says."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                        str(text))


UNREADABLE_REGEX = (re.error, RecursionError, OverflowError)
"""What compiling a regex from untrusted input may raise: bad syntax, nesting too deep, a repeat count too large."""


RE2_DIFFERS = re.compile(r"\[:\^?[a-z]+:\]|\{,|\\[0-9]|\\Z")
"""Syntax Go's RE2 (Prometheus's regexes) and Python's `re` both accept but read differently: a POSIX class in a
bracket (`[_[:alpha:]]`: RE2 a class of letters, Python a set followed by a literal `]`), `{,n}` (RE2 literal text,
Python a repeat), `\\1` (RE2 refuses it, Python a back-reference) and `\\Z`."""


def full_match(pattern: str, text: str) -> bool | None:
    """Whether an untrusted regex (a label matcher, a dashboard's) matches the whole text as Prometheus matches it;
    None where Python cannot compile it, or may read it otherwise than RE2 (RE2_DIFFERS)."""
    if RE2_DIFFERS.search(pattern):
        return None
    try:
        return re.fullmatch(pattern, text) is not None
    except UNREADABLE_REGEX:
        return None
