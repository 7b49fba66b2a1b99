"""Expand --logs arguments into files, and read namespace/pod/container from Kubernetes log paths."""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from obsgap.errors import InputError

# /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log[.<rotation>][.gz]
_PODS_DIR = re.compile(r"^(?P<ns>[a-z0-9-]+)_(?P<pod>[a-z0-9.-]+)_(?P<uid>[0-9a-fA-F-]{8,})$")
# /var/log/containers/<pod>_<namespace>_<container>-<64 hex id>.log
_CONTAINERS_FILE = re.compile(
    r"^(?P<pod>[a-z0-9.-]+)_(?P<ns>[a-z0-9-]+)_(?P<container>[a-z0-9-]+)-(?P<id>[0-9a-f]{64})\.log")


_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class Attribution:
    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class Discovered:
    files: tuple[Path, ...]
    skipped: tuple[tuple[str, str], ...]
    """(path, reason) for arguments or entries that could not be read."""


def attribution_from_path(path: Path) -> Attribution | None:
    m = _CONTAINERS_FILE.match(path.name)
    if m:
        return Attribution(m["ns"], m["pod"], m["container"])
    parts = path.parts
    if len(parts) >= 3:
        pm = _PODS_DIR.match(parts[-3])
        if pm:
            return Attribution(pm["ns"], pm["pod"], parts[-2])
    return None


def _walk(root: str, real_dir: str | None = None) -> Iterator[tuple[Path, bool, str]]:
    """(path, is a symlink, real folder) for every file below root, in path order; symlinked folders are not
    followed. One scandir per folder, strings until the end: a node can hold tens of thousands of log files."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    real_dir = real_dir or os.path.realpath(root)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        symlink = entry.is_symlink()
        if not symlink and entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, os.path.join(real_dir, entry.name))
        elif symlink and entry.is_dir():
            continue
        else:
            yield Path(entry.path), symlink, real_dir


def check(args: list[str]) -> None:
    """What discover() refuses, without walking the folders (a run's preflight: discover() runs once, to read)."""
    for arg in args:
        path = Path(arg)
        if path.is_dir() or path.is_file() or path.is_symlink():
            continue
        if any(ch in arg for ch in "*?["):
            if next(glob.iglob(arg, recursive=True), None) is None:
                raise InputError(f"--logs {arg}: the pattern matches no file")
            continue
        raise InputError(f"--logs {arg}: no such file or directory")


def discover(args: list[str]) -> Discovered:
    """Files for each argument: a file, a folder (recursive), or a glob. Broken links are skipped, counted."""
    check(args)
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(p: Path, symlink: bool | None = None, real_dir: str | None = None) -> None:
        if symlink is None:
            symlink = p.is_symlink()
        if symlink and not p.exists():
            skipped.append((str(p), "symlink to a missing file"))
            return
        if symlink or real_dir is None:
            try:
                real = str(p.resolve())
            except OSError as exc:
                skipped.append((str(p), f"unresolvable: {exc.strerror or exc}"))
                return
        else:
            real = os.path.join(real_dir, p.name)
        if real in seen:
            return  # /var/log/containers links point into /var/log/pods
        seen.add(real)
        files.append(p)

    for arg in args:
        path = Path(arg)
        if path.is_dir():
            for entry, symlink, real_dir in _walk(str(path)):
                add(entry, symlink, real_dir)
        elif path.is_file() or path.is_symlink():
            add(path)
        else:  # a glob: check() refused the rest
            for m in sorted(glob.glob(arg, recursive=True)):
                mp = Path(m)
                if mp.is_dir():
                    for entry, symlink, real_dir in _walk(str(mp)):
                        add(entry, symlink, real_dir)
                else:
                    add(mp)
    return Discovered(tuple(files), tuple(skipped))


@dataclass(frozen=True)
class LogPod:
    """`--log-pod PATTERN=NAMESPACE/POD[/CONTAINER]`: files matching PATTERN (a path or glob) came from that pod."""

    pattern: str
    namespace: str
    pod: str
    container: str | None = None

    def matches(self, path: str) -> bool:
        return fnmatch.fnmatchcase(path, self.pattern) or fnmatch.fnmatchcase(os.path.basename(path), self.pattern)


def parse_log_pod(item: str) -> LogPod:
    pattern, sep, target = item.rpartition("=")
    parts = target.split("/")
    if not sep or not pattern or len(parts) not in (2, 3) or not all(_DNS.match(p) for p in parts[:2]):
        raise InputError(f"--log-pod {item!r}: use FILE=NAMESPACE/POD[/CONTAINER] (FILE may be a glob)")
    return LogPod(pattern, parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def file_attributions(files: tuple[Path, ...], log_pods: tuple[LogPod, ...],
                      pods: dict[str, str]) -> dict[str, tuple[str | None, str | None, str | None]]:
    """For files kubelet's layout does not name: the first --log-pod that matches, else a file named after a pod
    of the topology (`kubectl logs POD > POD.log`; `pods` maps unique pod names to their namespace)."""
    out: dict[str, tuple[str | None, str | None, str | None]] = {}
    for f in files:
        if attribution_from_path(f) is not None:
            continue
        path = str(f)
        given = next((lp for lp in log_pods if lp.matches(path)), None)
        if given is not None:
            out[path] = (given.namespace, given.pod, given.container)
            continue
        stem = f.name.split(".log")[0]
        if stem in pods:
            out[path] = (pods[stem], stem, None)
    return out
