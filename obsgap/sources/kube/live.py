"""Read the topology from a live API server with the official `kubernetes` client.

Every list is paginated (limit 500 + continue). A missing CRD (404) or a forbidden list (403)
becomes a noted gap; an expired continue token (410) restarts that list once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from obsgap.errors import InputError, SourceError
from obsgap.sources.kube.kinds import CUSTOM_KINDS, kind_label

PAGE_SIZE = 500
ISTIO_NAMESPACE, MESH_CONFIGMAP = "istio-system", "istio"
@dataclass(frozen=True)
class LiveOptions:
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False


def api_client(opts: LiveOptions) -> Any:
    """The official client, configured from the kubeconfig or the pod's service account."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    if opts.in_cluster:
        try:
            config.load_incluster_config()
        except ConfigException as exc:
            raise InputError(f"--in-cluster: not running in a pod with a service account ({exc}); outside the "
                             "cluster use --kubeconfig/--context") from exc
        return client.ApiClient()
    try:
        return config.new_client_from_config(config_file=opts.kubeconfig, context=opts.context)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = f"--kubeconfig {opts.kubeconfig}" if opts.kubeconfig else "the kubeconfig (~/.kube/config)"
        raise InputError(f"{where}: cannot load it: {exc}") from exc


def _paginate(list_fn: Callable[..., Any], kind: str, **kwargs: Any) -> list[Mapping[str, Any]]:
    from kubernetes.client.exceptions import ApiException

    items: list[Mapping[str, Any]] = []
    token: str | None = None
    restarted = False
    while True:
        try:
            resp = list_fn(limit=PAGE_SIZE, _continue=token, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status == 410 and token and not restarted:
                items, token, restarted = [], None, True
                continue
            raise
        body = json.loads(resp.data)
        for item in body.get("items") or []:
            if isinstance(item, dict):
                item.setdefault("kind", kind)
                items.append(item)
        token = (body.get("metadata") or {}).get("continue") or None
        if not token:
            return items


def unreachable(api: Any, exc: BaseException) -> SourceError:
    """The API server could not be reached: its address and why, in words (urllib3 wraps the cause in
    MaxRetryError after its retries)."""
    host = getattr(getattr(api, "configuration", None), "host", None) or "(unknown address)"
    cause: BaseException = getattr(exc, "reason", None) or exc
    text = f"{type(cause).__name__} {cause}"
    why = ("connection refused (nothing listens there)" if "refused" in text.lower() else
           "the host name does not resolve" if "resolution" in text or "not known" in text else
           "TLS handshake failed" if "SSL" in text or "certificate" in text.lower() else
           "timed out" if "timed out" in text.lower() or "Timeout" in text else type(cause).__name__)
    return SourceError(f"kubernetes: API server {host} unreachable: {why}")


def mesh_configmaps(objects: list[Mapping[str, Any]]) -> list[str]:
    """The MeshConfig ConfigMaps to read: `istio`, and `istio-<revision>` for each revision the pods' sidecars were
    injected by (their `istio.io/rev` annotation, set by the injector; `default` is `istio`)."""
    revisions = set()
    for pod in objects:
        annotations = (pod.get("metadata") or {}).get("annotations") if pod.get("kind") == "Pod" else None
        rev = annotations.get("istio.io/rev") if isinstance(annotations, Mapping) else None
        if isinstance(rev, str) and rev not in ("", "default"):
            revisions.add(rev)
    return [MESH_CONFIGMAP, *(f"{MESH_CONFIGMAP}-{rev}" for rev in sorted(revisions))]


def load_live(opts: LiveOptions) -> tuple[list[Mapping[str, Any]], list[str], dict[str, str]]:
    """Return (objects, gaps, unread kinds -> why) read from the cluster (Topology.unread). Raises SourceError when
    the API is unreachable."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = api_client(opts)
    core, apps, disc = client.CoreV1Api(api), client.AppsV1Api(api), client.DiscoveryV1Api(api)
    custom = client.CustomObjectsApi(api)
    lists: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
        ("Namespace", core.list_namespace, {}),
        ("Node", core.list_node, {}),
        ("Service", core.list_service_for_all_namespaces, {}),
        ("Pod", core.list_pod_for_all_namespaces, {}),
        ("Endpoints", core.list_endpoints_for_all_namespaces, {}),
        ("EndpointSlice", disc.list_endpoint_slice_for_all_namespaces, {}),
        ("ReplicaSet", apps.list_replica_set_for_all_namespaces, {}),
        ("Deployment", apps.list_deployment_for_all_namespaces, {}),
        ("StatefulSet", apps.list_stateful_set_for_all_namespaces, {}),
        ("DaemonSet", apps.list_daemon_set_for_all_namespaces, {}),
    ]
    objects: list[Mapping[str, Any]] = []
    gaps: list[str] = []
    unread: dict[str, str] = {}
    for kind, fn, kwargs in lists:
        try:
            objects.extend(_paginate(fn, kind, **kwargs))
        except ApiException as exc:
            if exc.status in (401, 403, 404):
                gaps.append(f"{kind}: list {'forbidden' if exc.status == 403 else 'failed'} (HTTP {exc.status})")
                unread[kind] = gaps[-1]
                continue
            raise SourceError(f"kubernetes: listing {kind} failed: HTTP {exc.status} {exc.reason}") from exc
        except (HTTPError, OSError) as exc:
            raise unreachable(api, exc) from exc
    for name in mesh_configmaps(objects):
        try:
            resp = core.read_namespaced_config_map(name, ISTIO_NAMESPACE, _preload_content=False)
            cm = json.loads(resp.data)  # type: ignore[arg-type]
            cm.setdefault("kind", "ConfigMap")
            objects.append(cm)
        except ApiException as exc:
            if exc.status == 404 and name == MESH_CONFIGMAP:
                continue  # a mesh of revisions only: each revision's own ConfigMap holds its config
            revision = name.removeprefix(f"{MESH_CONFIGMAP}-") if name != MESH_CONFIGMAP else None
            why = {403: "read forbidden", 404: "not found"}.get(exc.status, "read failed")
            grant = f" (obsgap manifests --mesh-revision {revision} grants it)" if revision and exc.status == 403 \
                else ""
            gaps.append(f"ConfigMap {ISTIO_NAMESPACE}/{name}: {why} (HTTP {exc.status}): the access-log format of "
                        f"{'revision ' + revision if revision else 'the mesh'} is unknown{grant}")
        except (HTTPError, OSError) as exc:
            raise unreachable(api, exc) from exc
    for group, versions, kinds in CUSTOM_KINDS:
        for kind, plural in kinds.items():
            objects.extend(_custom(custom, group, versions, kind, plural, gaps, unread))
    return objects, gaps, unread


def _custom(custom: Any, group: str, versions: tuple[str, ...], kind: str, plural: str,
            gaps: list[str], unread: dict[str, str]) -> list[Mapping[str, Any]]:
    """Every object of one custom kind, in the first version the cluster serves; a missing CRD or a refused list
    is a gap, and a refused list leaves the kind unread (`group/Kind`). Items carry their apiVersion (a Gateway API
    Gateway is told from Istio's by its group)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    errors = []
    for version in versions:
        try:
            items = _paginate(custom.list_cluster_custom_object, kind, group=group, version=version, plural=plural)
        except ApiException as exc:
            errors.append(exc.status)
            if exc.status == 404:
                continue
            break
        except (HTTPError, OSError) as exc:
            raise unreachable(custom.api_client, exc) from exc
        for item in items:
            if isinstance(item, dict):
                item.setdefault("apiVersion", f"{group}/{version}")
        return items
    if errors and errors[-1] != 404:
        gaps.append(f"{kind_label(f'{group}/{kind}')}: list {'forbidden' if errors[-1] == 403 else 'failed'} "
                    f"(HTTP {errors[-1]})")
        unread[f"{group}/{kind}"] = gaps[-1]
    else:
        gaps.append(f"{kind}: CRD {plural}.{group} not found")
    return []
