"""Read `kubectl get ... -o json|yaml` output: Lists, single objects, multi-document YAML."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from obsgap.errors import InputError

SUFFIXES = {".json", ".yaml", ".yml"}


def _walk(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise InputError(f"--kube-snapshot {path}: no such file or directory")


def _flatten(doc: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(doc, Mapping):
        return
    kind = str(doc.get("kind") or "")
    if isinstance(doc.get("items"), list) and (kind.endswith("List") or not kind):
        item_kind = kind[:-4] if kind.endswith("List") and kind != "List" else None
        for item in doc["items"]:
            if isinstance(item, Mapping):
                if item_kind and not item.get("kind"):
                    item = {**item, "kind": item_kind}
                yield from _flatten(item)
    elif kind:
        yield doc


def _documents(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
            return doc if isinstance(doc, list) else [doc]
        except json.JSONDecodeError:
            pass  # YAML is a superset; let the YAML parser report the error
    return list(yaml.safe_load_all(text))


def load_snapshot(paths: list[Path]) -> tuple[list[Mapping[str, Any]], list[str]]:
    """Return (objects, gaps). A file that does not parse is a gap, not a crash."""
    objects: list[Mapping[str, Any]] = []
    gaps: list[str] = []
    for path in _walk(paths):
        try:
            docs = _documents(path)
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            gaps.append(f"{path}: not valid JSON/YAML ({first})")
            continue
        for doc in docs:
            objects.extend(_flatten(doc))
    return objects, gaps
