"""SLO objects from a live cluster, read-only: Sloth's PrometheusServiceLevel, Pyrra's ServiceLevelObjective and
prometheus-operator's PrometheusRule. A CRD that is not installed or a list that is forbidden is a noted gap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from obsgap.sources.kube.live import LiveOptions, _paginate, api_client, unreachable

SLO_KINDS = (("PrometheusServiceLevel", "sloth.slok.dev", "v1", "prometheusservicelevels"),
             ("ServiceLevelObjective", "pyrra.dev", "v1alpha1", "servicelevelobjectives"),
             ("PrometheusRule", "monitoring.coreos.com", "v1", "prometheusrules"))


def load_live_slos(opts: LiveOptions) -> tuple[list[tuple[str, Mapping[str, Any]]], list[str]]:
    """((origin, object) pairs, gaps)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    custom = client.CustomObjectsApi(api_client(opts))
    found: list[tuple[str, Mapping[str, Any]]] = []
    gaps: list[str] = []
    for kind, group, version, plural in SLO_KINDS:
        try:
            items = _paginate(custom.list_cluster_custom_object, kind, group=group, version=version, plural=plural)
        except ApiException as exc:
            if exc.status == 404:
                gaps.append(f"{kind}: CRD {plural}.{group} not installed")
            else:
                gaps.append(f"{kind}: list {'forbidden' if exc.status == 403 else 'failed'} (HTTP {exc.status}): "
                            f"the service account needs `list` on {plural}.{group}")
            continue
        except (HTTPError, OSError) as exc:
            raise unreachable(custom.api_client, exc) from exc
        for item in items:
            meta = item.get("metadata") or {}
            item = dict(item)
            item.setdefault("apiVersion", f"{group}/{version}")
            found.append((f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')}", item))
    return found, gaps
