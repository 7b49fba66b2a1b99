"""Claim the folder a run writes into, before any work: writable, not in use by another run, never an
earlier run's report.

Layout under the out-root: the first run of a UTC day writes `<root>/<YYYY-MM-DD>/`; a later run the same day
writes `<root>/<YYYY-MM-DD>T<HHMMSS>Z/` (the time it started), so the nightly report and an ad-hoc run both
keep their results and history sees both. An explicit `--out` is used as given (a report already there is
replaced, and the run says so). A lock file inside the folder keeps a second concurrent run out.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from obsgap.errors import InputError

LOCK_NAME = ".obsgap.lock"
REPORT_FILES = ("findings.json", "report.html", "summary.md")


@dataclass
class OutputClaim:
    path: Path
    created: bool
    """The run made this folder (and removes it again if it ends without a report)."""
    replaces: bool
    """An explicit --out that already holds a report."""
    _fd: int

    def release(self, wrote: bool) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path / LOCK_NAME)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if self.created and not wrote:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty: never removes anything a user put there


def _lock(path: Path, flag: str) -> int:
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot write there ({exc.strerror})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise InputError(f"{flag} {path}: another obsgap run (pid {holder}) is writing there; wait for it "
                             "to finish or choose another folder") from exc
        raise InputError(f"{flag} {path}: cannot lock it ({exc.strerror})") from exc
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _make(path: Path, flag: str, exist_ok: bool) -> bool:
    """Create the folder; True when this call created it, False when it was there (and exist_ok)."""
    try:
        path.mkdir(parents=True, exist_ok=False)
        return True
    except FileExistsError:
        if not path.is_dir():
            raise InputError(f"{flag} {path}: exists and is not a folder") from None
        if exist_ok:
            return False
        raise
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot create it ({exc.strerror})") from exc


def claim_output(out: Path | None, root: Path, day: datetime, started: datetime) -> OutputClaim:
    """The folder for this run, created and locked. Raises InputError (exit 2) before any work is done."""
    if out is not None:
        created = _make(out, "--out", exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise InputError(f"--out {out}: not writable by this user")
        fd = _lock(out, "--out")
        return OutputClaim(out, created, any((out / f).exists() for f in REPORT_FILES), fd)
    if root.exists() and not os.access(root, os.W_OK | os.X_OK):
        raise InputError(f"--out-root {root}: not writable by this user")
    candidates = [day.strftime("%Y-%m-%d"), day.strftime("%Y-%m-%d") + started.strftime("T%H%M%SZ")]
    candidates += [f"{candidates[1]}-{n}" for n in range(2, 100)]
    for name in candidates:
        path = root / name
        try:
            _make(path, "--out-root", exist_ok=False)
        except FileExistsError:
            continue  # an earlier (or concurrent) run has it: never write into another run's folder
        return OutputClaim(path, True, False, _lock(path, "--out-root"))
    raise InputError(f"--out-root {root}: too many runs for {candidates[0]}; give --out")
