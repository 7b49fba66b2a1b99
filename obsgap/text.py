"""Small wording helpers shared by every layer (no I/O, no imports from the package)."""

from __future__ import annotations

from datetime import UTC, datetime


def plural(n: int, word: str) -> str:
    """`1 file`, `2 files`, `1,234 requests`."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


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


def clean_line(text: object) -> str:
    """Untrusted text for a terminal: control characters (escape sequences, carriage returns) shown as spaces."""
    return "".join(" " if (ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029") else c for c in str(text))
