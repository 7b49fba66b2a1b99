"""Which bytes each read task takes: files grouped by container, large plain files cut into byte ranges.

A range always ends at the end of a complete message: never after a CRI `P` line, whose message goes on in
the next line. So the ranges of one file are read independently (in parallel, each within bounded memory) and
give exactly the messages the whole file gives.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from obsgap.sources.logs.framing import continues

TASK_BYTES = 32 * 1024 * 1024
"""A task reads about this much; a plain file larger than it is cut into ranges of about this size."""
MIN_TASK_BYTES = 1 << 20
"""Smaller tasks cost more in start-up than they gain in balance."""
SCAN_LIMIT = 8 * 1024 * 1024
"""How far past a nominal cut to look for the end of a message before giving up that cut."""


@dataclass(frozen=True)
class Piece:
    path: str
    span: tuple[int, int] | None = None
    """[start, end) in bytes, or None for the whole file"""
    size: int = 0


@dataclass(frozen=True)
class TaskPlan:
    files: tuple[str, ...]
    spans: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def rotation_key(path: str) -> tuple[str, int, str, int]:
    """Order kubelet's files of one container: older rotated `N.log.<stamp>[.gz]` before the live `N.log`."""
    folder, name = os.path.split(path)
    restart, _, rest = name.partition(".log")
    stamp = rest.lstrip(".").removesuffix(".gz")
    return (folder, int(restart) if restart.isdigit() else 0, stamp or "~", 0 if stamp else 1)


def _size(path: str) -> int:
    with contextlib.suppress(OSError):  # unreadable files are reported when read
        return os.stat(path).st_size
    return 0


def _is_gzip(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def message_end_after(f: object, offset: int, limit: int = SCAN_LIMIT) -> int | None:
    """The first offset after `offset` where a line begins that starts a new message (the line before it is
    complete and not a `P` line), or None when there is none within `limit` bytes or before the end."""
    seek, read = f.seek, f.read  # type: ignore[attr-defined]
    seek(offset)
    buffer = read(min(limit, 1 << 16))
    first = buffer.find(b"\n")
    while first < 0 and len(buffer) < limit:
        more = read(1 << 16)
        if not more:
            return None
        buffer += more
        first = buffer.find(b"\n")
    if first < 0:
        return None
    at = first + 1  # the start of the first line wholly after `offset`
    while True:
        end = buffer.find(b"\n", at)
        while end < 0:
            if len(buffer) >= limit:
                return None
            more = read(1 << 16)
            if not more:
                return None
            buffer += more
            end = buffer.find(b"\n", at)
        if not continues(buffer[at:end]):
            return offset + end + 1
        at = end + 1


def split(path: str, size: int, target: int = TASK_BYTES) -> list[Piece]:
    """A plain file larger than `target` as consecutive ranges of about `target` bytes, each ending at the
    end of a message; a gzip file (which cannot be entered in the middle) or a small one whole."""
    if size <= target or _is_gzip(path):
        return [Piece(path, None, size)]
    cuts = [0]
    try:
        with open(path, "rb") as f:
            nominal = target
            while nominal < size:
                cut = message_end_after(f, max(nominal, cuts[-1]) - 1)
                if cut is None or cut >= size:
                    break
                cuts.append(cut)
                nominal = cut + target
    except OSError:
        return [Piece(path, None, size)]
    cuts.append(size)
    return [Piece(path, (a, b), b - a) for a, b in itertools.pairwise(cuts) if b > a]


def plan(files: tuple[str, ...] | list[str], workers: int, task_bytes: int | None = None) -> list[TaskPlan]:
    """Tasks of at most about `task_bytes`, and at least four per worker so that all cores stay busy to the end.
    A container's files (one folder, one `N.log` with its rotations) stay in one task, in rotation order, since a
    message may go on from one rotated file into the next; only a cut inside a large file (always at a message's
    end) may start a new task. Plain files side by side in one folder (`kubectl logs POD > POD.log`) are
    separate tasks. Plain strings: pathlib costs seconds at 20,000 files."""
    task_bytes = task_bytes or TASK_BYTES
    groups: dict[str, list[str]] = {}
    for f in map(str, files):
        folder, name = os.path.split(f)
        groups.setdefault(os.path.join(folder, name.partition(".log")[0]), []).append(f)
    sizes = {f: _size(f) for group in groups.values() for f in group}
    target = max(MIN_TASK_BYTES, min(task_bytes, sum(sizes.values()) // (4 * workers)))
    tasks: list[list[Piece]] = [[]]
    in_task: set[str] = set()
    total = 0
    for parent in sorted(groups):
        pieces = [p for f in sorted(groups[parent], key=rotation_key) for p in split(f, sizes[f], target)]
        for i, piece in enumerate(pieces):
            cut_here = i == 0 or (piece.span is not None and piece.span[0] > 0)
            seen = piece.path in in_task  # one range of a file per task
            if cut_here and tasks[-1] and (total + piece.size > target or seen):
                tasks.append([])
                in_task = set()
                total = 0
            tasks[-1].append(piece)
            in_task.add(piece.path)
            total += piece.size
    return [TaskPlan(tuple(p.path for p in task), {p.path: p.span for p in task if p.span is not None})
            for task in tasks if task]
