"""Read `kubectl get ... -o json|yaml` output: Lists, single objects, multi-document YAML."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from obsgap.ambient import GATEWAY_POD_LABELS
from obsgap.errors import InputError
from obsgap.model import GATEWAY_API_GROUP, Condition, Topology
from obsgap.sources.kube.kinds import KIND_OF_RESOURCE, kind_label, kind_of, kubectl_resource
from obsgap.topology import reference_granted

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
_ERR_BYTES = 65536
"""kubectl's stderr is read this far: its error is on one of the first lines."""


def _saved_with_stderr(paths: list[Path]) -> Iterator[tuple[Path, str | None, str | None]]:
    """(snapshot file, kubectl's first error beside it, why that error could not be read) for each file saved with
    its stderr beside it (`pods.json`, `pods.err`), as the README's command saves them; warnings are not errors."""
    for path in _walk(paths):
        err = path.with_suffix(".err")
        if not err.is_file():
            continue
        try:
            with err.open("rb") as fh:
                text = fh.read(_ERR_BYTES).decode("utf-8", errors="replace")
        except OSError as exc:
            yield path, None, f"{err}: cannot read it ({exc.strerror or type(exc).__name__})"
            continue
        match = _KUBECTL_ERROR_LINE.search(text)
        yield path, match.group(1).strip()[:300] if match else None, None


def _complaints(paths: list[Path]) -> dict[Path, str]:
    return {path: complaint for path, complaint, _ in _saved_with_stderr(paths) if complaint}


def _empty(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return not fh.read(4096).strip()
    except OSError:
        return False  # _documents says why it cannot be read


def kubectl_errors(paths: list[Path], objects: list[Mapping[str, Any]]) -> tuple[dict[str, str], list[str], set[str]]:
    """(kinds whose list kubectl could not read -> why, gaps, kinds the cluster does not serve), from the files
    the README's command saves, one per kind with kubectl's stderr beside it. A list kubectl failed (`Error from
    server (Forbidden)`, beside the empty List it still prints), an error file that cannot be read, or a file
    kubectl left empty without saying the cluster lacks the kind (killed, not found on PATH) leaves that kind
    unread (Topology.unread), as a refused list does live, unless another file of the snapshot (`objects`) holds
    that kind; a kind the cluster does not serve has no objects and is only noted."""
    held = {kind_of(o) for o in objects}
    unread: dict[str, str] = {}
    gaps: list[str] = []
    not_served: set[str] = set()
    for path, complaint, unreadable in _saved_with_stderr(paths):
        kind = KIND_OF_RESOURCE.get(path.stem)
        shown = kind_label(kind) if kind else str(path)
        if complaint and _NOT_SERVED in complaint:
            gaps.append(f"{shown}: not served by the cluster (kubectl: {complaint})")
            not_served |= {kind} if kind else set()
            continue
        if complaint:
            gaps.append(f"{shown}: list failed (kubectl: {complaint})")
        elif unreadable:
            gaps.append(f"{shown}: list failed? kubectl's error output {unreadable}")
        elif _empty(path):
            gaps.append(f"{shown}: list failed (kubectl wrote nothing, and no error it explains: was it killed?)")
        else:
            continue
        if kind in held:
            gaps[-1] = f"{shown}: read from another file of the snapshot, where one kubectl call could not"
        elif kind:
            unread[kind] = gaps[-1]
    return unread, gaps, not_served


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


def _true(conditions: tuple[Condition, ...], kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in conditions)


def unseen_kinds(topo: Topology) -> dict[str, str]:
    """The kinds some of whose objects the snapshot shows exist but does not hold (Topology.unread), each with why,
    in words. `kubectl get` prints only what it is asked for (and a namespace's objects only, under -n), so a
    missing object is usually the command's doing, not the cluster's; where the snapshot's own objects name one it
    lacks, the verdicts that rest on that kind are unknown, as where the API refused to list it: a Node a pod runs
    on, a Gateway API Gateway that deployed pods or accepted a route, a ReferenceGrant that must allow a
    cross-namespace backend the route's controller resolved. Computed before the topology is scoped by -n."""
    proofs: dict[str, str] = {}
    pods = (*topo.pods, *topo.context_pods)
    nodes = sorted({p.node for p in pods if p.node and p.node not in topo.nodes})
    if nodes:
        proofs["Node"] = f"its pods run on node {nodes[0]}" + (f" and {len(nodes) - 1} more" if len(nodes) > 1 else "")
    gateways = {(g.namespace, g.name) for g in topo.kube_gateways}
    gateway_kind, grant_kind = f"{GATEWAY_API_GROUP}/Gateway", f"{GATEWAY_API_GROUP}/ReferenceGrant"
    for pod in pods:
        name = next((pod.labels[k] for k in GATEWAY_POD_LABELS if pod.labels.get(k)), None)
        if name and (pod.namespace, name) not in gateways:
            proofs.setdefault(gateway_kind, f"pod {pod.namespace}/{pod.name} was deployed for Gateway "
                                            f"{pod.namespace}/{name}")
    for route in (*topo.routes, *topo.context_routes):
        where = f"{route.kind} {route.namespace}/{route.name}"
        parents = {(r.namespace, r.name): r for r in route.parents}
        for namespace, name, conditions in route.parent_status:
            ref = parents.get((namespace, name))
            if ref is not None and (ref.group, ref.kind) == (GATEWAY_API_GROUP, "Gateway") \
                    and _true(conditions, "Accepted") and (namespace, name) not in gateways:
                proofs.setdefault(gateway_kind, f"{where} is accepted by Gateway {namespace}/{name}")
        if not any(_true(conditions, "ResolvedRefs") for _, _, conditions in route.parent_status):
            continue
        for ref in route.backends:
            if (ref.group, ref.kind) == ("", "Service") and ref.namespace != route.namespace \
                    and not reference_granted(route, ref, topo.reference_grants):
                proofs.setdefault(grant_kind, f"the controller resolved {where}'s backend {ref.namespace}/{ref.name}"
                                              ", which only a ReferenceGrant in its namespace allows")
    return {kind: f"{kind_label(kind)}: missing from the snapshot, though {why} (add `{kubectl_resource(kind)}` to "
                  "the kubectl get command, across every namespace)" for kind, why in proofs.items()}
