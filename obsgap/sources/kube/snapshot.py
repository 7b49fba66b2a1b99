"""Read `kubectl get ... -o json|yaml` output: Lists, single objects, multi-document YAML."""

from __future__ import annotations

import json
import re
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
    elif kind and ("apiVersion" in doc or isinstance(doc.get("metadata"), Mapping)):
        yield doc


_EMPTY_LIST = "is an empty List (kubectl found nothing there: wrong namespace or context?)"
_NO_OBJECTS = ("holds no Kubernetes objects (expected documents with apiVersion, kind and metadata, or a List "
               "with items, as kubectl get -o json|yaml prints them)")


def _is_empty_list(docs: list[Any]) -> bool:
    return any(isinstance(d, Mapping) and d.get("items") == [] for d in docs)


_KUBECTL_ERROR = re.compile(r"^\s*(Error from server|error:|Unable to connect to the server|The connection to the "
                            r"server|No resources found|Forbidden|Unauthorized|E\d{4} )", re.IGNORECASE)


def _documents(path: Path) -> list[Any]:
    """The file's documents. A file that does not parse is an InputError naming line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"--kube-snapshot {path}: not text (byte {exc.start} is not UTF-8); expected the output "
                         "of kubectl get -o json|yaml") from exc
    except OSError as exc:
        raise InputError(f"--kube-snapshot {path}: cannot read it ({exc.strerror})") from exc
    if _KUBECTL_ERROR.match(text):
        first = text.strip().splitlines()[0][:200]
        raise InputError(f"--kube-snapshot {path}: holds an error message, not objects: {first!r} "
                         "(kubectl failed when this file was saved)")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"--kube-snapshot {path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
                             + (" (the file ends early: truncated?)" if exc.pos >= len(text.rstrip()) else "")
                             ) from exc
        return doc if isinstance(doc, list) else [doc]
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"--kube-snapshot {path}{where}: not valid YAML: {problem}") from exc


def load_snapshot(paths: list[Path]) -> tuple[list[Mapping[str, Any]], list[str]]:
    """Return (objects, gaps). A named file that does not parse or holds no Kubernetes object is an InputError;
    in a folder, files without objects (a kustomization, a values file) are noted as gaps. A snapshot with no
    object at all is an InputError: it can never be a clean result."""
    objects: list[Mapping[str, Any]] = []
    gaps: list[str] = []
    for arg in paths:
        for path in _walk([arg]):
            docs = _documents(path)
            found = [obj for doc in docs for obj in _flatten(doc)]
            if not found:
                what = _EMPTY_LIST if _is_empty_list(docs) else _NO_OBJECTS
                if path == arg:
                    raise InputError(f"--kube-snapshot {path}: {what}")
                gaps.append(f"{path}: {what}")
            objects.extend(found)
    if not objects:
        raise InputError(f"--kube-snapshot {', '.join(map(str, paths))}: no Kubernetes objects found"
                         + (f" ({len(gaps)} files without any)" if gaps else " (no .json/.yaml files)"))
    return objects, gaps
