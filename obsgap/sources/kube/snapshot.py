"""Read `kubectl get ... -o json|yaml` output: Lists, single objects, multi-document YAML."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from obsgap.ambient import GATEWAY_POD_LABELS
from obsgap.errors import InputError
from obsgap.sources.kube.kinds import GATEWAY_API_GROUP, KIND_OF_RESOURCE, kubectl_resource

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


_KUBECTL_ERROR_LINE = re.compile(r"^\s*(Error from server.*|error: .*|Unable to connect to the server.*|"
                                 r"The connection to the server.*)$", re.MULTILINE)
_NOT_SERVED = "doesn't have a resource type"


def _complaints(paths: list[Path]) -> dict[Path, str]:
    """kubectl's first error for each snapshot file saved with its stderr beside it (`pods.json`, `pods.err`), as
    the README's command saves them; warnings are not errors."""
    out = {}
    for path in _walk(paths):
        err = path.with_suffix(".err")
        try:
            text = err.read_text(encoding="utf-8", errors="replace") if err.is_file() else ""
        except OSError:
            continue
        if match := _KUBECTL_ERROR_LINE.search(text):
            out[path] = match.group(1).strip()[:300]
    return out


def kubectl_errors(paths: list[Path]) -> tuple[dict[str, str], list[str]]:
    """(kinds whose list kubectl could not read -> why, gaps): a file of one kind that kubectl failed to fill
    (`Error from server (Forbidden)`, as the empty List it still prints) leaves that kind unread (Topology.unread),
    as a refused list does live; a kind the cluster does not serve has no objects and is only noted."""
    unread: dict[str, str] = {}
    gaps: list[str] = []
    for path, complaint in _complaints(paths).items():
        kind = KIND_OF_RESOURCE.get(path.stem)
        shown = kind.rpartition("/")[2] + (f" ({kind.rpartition('/')[0]})" if kind and "/" in kind else "") \
            if kind else str(path)
        if _NOT_SERVED in complaint:
            gaps.append(f"{shown}: not served by the cluster (kubectl: {complaint})")
        else:
            gaps.append(f"{shown}: list failed (kubectl: {complaint})")
            if kind:
                unread[kind] = gaps[-1]
    return unread, gaps


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
    if not text.strip():
        return []  # kubectl printed nothing (a kind the cluster does not serve): the `.err` beside it says so
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
                if docs and not _is_empty_list(docs):  # in a folder of one file per kind, an empty one is a kind
                    gaps.append(f"{path}: {what}")  # with no objects (or one kubectl_errors explains)
            objects.extend(found)
    if not objects:
        complaint = next((why for why in _complaints(paths).values()), None)
        raise InputError(f"--kube-snapshot {', '.join(map(str, paths))}: no Kubernetes objects found"
                         + (f" (kubectl said: {complaint})" if complaint else
                            f" ({len(gaps)} files without any)" if gaps else " (no .json/.yaml files)"))
    return objects, gaps




def _kind(obj: Mapping[str, Any]) -> str:
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    return f"{group}/{obj.get('kind')}" if group == GATEWAY_API_GROUP else str(obj.get("kind") or "")


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def _true(conditions: Any, kind: str) -> bool:
    return isinstance(conditions, list) and any(isinstance(c, Mapping) and c.get("type") == kind
                                                and c.get("status") == "True" for c in conditions)


def _cross_namespace_service(route: Mapping[str, Any]) -> str | None:
    """The first backendRef of a route to a Service of another namespace, as `ns/name`."""
    namespace = _get(route, "metadata", "namespace") or "default"
    for rule in _get(route, "spec", "rules") or []:
        for ref in _get(rule, "backendRefs") or []:
            if (isinstance(ref, Mapping) and ref.get("group") in (None, "") and ref.get("kind") in (None, "Service")
                    and ref.get("namespace") not in (None, namespace)):
                return f"{ref['namespace']}/{ref.get('name')}"
    return None


def unseen_kinds(objects: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The kinds the snapshot shows the cluster has but holds no object of (Topology.unread), each with why, in
    words. `kubectl get` prints only the kinds it is asked for, so the absence of a kind is usually the command's,
    not the cluster's; where the snapshot itself proves objects of it exist, the verdicts that rest on them are
    unknown, as where the API refused to list them: Nodes (its pods name the nodes they run on), Gateway API
    Gateways (pods a Gateway deployed, routes a Gateway accepted), ReferenceGrants (a route's controller resolved a
    backend in another namespace)."""
    objects = list(objects)
    held = {_kind(o) for o in objects}
    pods = [o for o in objects if o.get("kind") == "Pod"]
    routes = [o for o in objects if _kind(o) in (f"{GATEWAY_API_GROUP}/HTTPRoute", f"{GATEWAY_API_GROUP}/GRPCRoute")]
    proofs: dict[str, str] = {}
    nodes = {str(n) for p in pods if (n := _get(p, "spec", "nodeName"))}
    if nodes:
        proofs["Node"] = f"its pods run on {len(nodes)} node{'s' * (len(nodes) > 1)} ({sorted(nodes)[0]}…)"
    for pod in pods:
        labels = _get(pod, "metadata", "labels") or {}
        name = next((labels[k] for k in GATEWAY_POD_LABELS if isinstance(labels, Mapping) and labels.get(k)), None)
        if name:
            proofs.setdefault(f"{GATEWAY_API_GROUP}/Gateway", f"pod {_get(pod, 'metadata', 'namespace')}/"
                              f"{_get(pod, 'metadata', 'name')} was deployed for Gateway {name}")
    for route in routes:
        where = f"{route.get('kind')} {_get(route, 'metadata', 'namespace')}/{_get(route, 'metadata', 'name')}"
        for parent in _get(route, "status", "parents") or []:
            ref = _get(parent, "parentRef") or {}
            if ref.get("kind") in (None, "Gateway") and ref.get("group") in (None, GATEWAY_API_GROUP) \
                    and _true(_get(parent, "conditions"), "Accepted"):
                proofs.setdefault(f"{GATEWAY_API_GROUP}/Gateway", f"{where} is accepted by Gateway {ref.get('name')}")
            backend = _cross_namespace_service(route)
            if backend and _true(_get(parent, "conditions"), "ResolvedRefs"):
                proofs.setdefault(f"{GATEWAY_API_GROUP}/ReferenceGrant", f"the controller resolved {where}'s backend "
                                  f"{backend} in another namespace, which a ReferenceGrant must allow")
    shown = {k: k.rpartition("/")[2] + (f" ({GATEWAY_API_GROUP})" if "/" in k else "") for k in proofs}
    return {kind: f"{shown[kind]}: missing from the snapshot, though {why} (add `{kubectl_resource(kind)}` to the "
                  "kubectl get command)"
            for kind, why in proofs.items() if kind not in held}
