"""What a cluster needs to run obsgap nightly: read-only RBAC, a ConfigMap with its settings, a CronJob."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

READ = ["get", "list", "watch"]
RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["namespaces", "nodes", "services", "pods", "endpoints"], "verbs": READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "verbs": READ},
    {"apiGroups": ["networking.istio.io"],
     "resources": ["virtualservices", "destinationrules", "serviceentries", "sidecars", "gateways"], "verbs": READ},
    # the mesh's access-log format (MeshConfig); only this ConfigMap, never the others
    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["istio"], "verbs": ["get"]},
]


@dataclass(frozen=True)
class ManifestOptions:
    namespace: str = "obsgap"
    image: str = "obsgap:latest"
    """An image with obsgap installed (e.g. `pip install .` of this repository on a python:3.11-slim base)."""
    schedule: str = "0 2 * * *"
    prometheus_url: str = "http://prometheus.istio-system:9090"
    window: str = "24h"
    logs_claim: str | None = None
    """A PersistentVolumeClaim holding shipped logs (mounted read-only at /logs)."""
    reports_claim: str | None = None
    pods_log: bool = False
    """Grant pods/log (only when logs are read through the API)."""


def manifests(o: ManifestOptions) -> list[dict[str, Any]]:
    name = "obsgap"
    rules = [dict(r) for r in RULES]
    if o.pods_log:
        rules.append({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]})
    config = {"prometheus_url": o.prometheus_url, "window": o.window, "fail_on": "never"}
    args = ["obsgap", "report", "--config", "/etc/obsgap/obsgap.yaml", "--in-cluster", "--out-root", "/reports"]
    mounts = [{"name": "config", "mountPath": "/etc/obsgap", "readOnly": True},
              {"name": "reports", "mountPath": "/reports"}]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "reports", **({"persistentVolumeClaim": {"claimName": o.reports_claim}} if o.reports_claim
                               else {"emptyDir": {}})}]
    if o.logs_claim:
        args += ["--logs", "/logs"]
        mounts.append({"name": "logs", "mountPath": "/logs", "readOnly": True})
        volumes.append({"name": "logs", "persistentVolumeClaim": {"claimName": o.logs_claim, "readOnly": True}})
    container = {
        "name": name, "image": o.image, "args": args,
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1536Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": False, "capabilities": {"drop": ["ALL"]}},
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": o.namespace,
                                                               "labels": {"istio-injection": "disabled"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": o.namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": o.namespace}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": o.namespace},
         "data": {"obsgap.yaml": yaml.safe_dump(config, sort_keys=False)}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": o.namespace},
         "spec": {"schedule": o.schedule, "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 3,
                  "failedJobsHistoryLimit": 3,
                  "jobTemplate": {"spec": {"backoffLimit": 0, "activeDeadlineSeconds": 3600, "template": {
                      "metadata": {"labels": {"app": name, "sidecar.istio.io/inject": "false"}},
                      "spec": {"serviceAccountName": name, "restartPolicy": "Never", "containers": [container],
                               "volumes": volumes}}}}}},
    ]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_manifests(o: ManifestOptions) -> str:
    return yaml.dump_all(manifests(o), Dumper=_NoAliases, sort_keys=False)
