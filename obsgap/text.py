"""Small wording helpers shared by every layer (no I/O, no imports from the package)."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """`1 file`, `2 files`, `1,234 requests`."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")
