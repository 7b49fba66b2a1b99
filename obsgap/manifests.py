"""What a cluster needs to run obsgap nightly: read-only RBAC, a ConfigMap with its settings, a claim that keeps
the reports, a CronJob. Logs come through the Kubernetes API (pods/log) unless a claim of shipped logs is named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from obsgap.sources.kube.kinds import api_resources
from obsgap.sources.kube.live import MESH_CONFIGMAP

READ = ["get", "list", "watch"]
RULES: list[dict[str, Any]] = [
    # every kind the topology is read from (sources/kube/kinds.py: what live lists)
    *({"apiGroups": [group], "resources": resources, "verbs": READ} for group, resources in api_resources().items()),
    # SLOs whose SLIs obsgap checks (Sloth, Pyrra, prometheus-operator rules)
    {"apiGroups": ["sloth.slok.dev"], "resources": ["prometheusservicelevels"], "verbs": READ},
    {"apiGroups": ["pyrra.dev"], "resources": ["servicelevelobjectives"], "verbs": READ},
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["prometheusrules"], "verbs": READ},
]


IMAGE_REPOSITORY = "ghcr.io/obsgap/obsgap"
"""Where release images are published (`make image` tags the same name); the tag is the package version."""


def default_image() -> str:
    from importlib.metadata import version

    return f"{IMAGE_REPOSITORY}:{version('obsgap')}"


@dataclass(frozen=True)
class ManifestOptions:
    install_namespace: str = "obsgap"
    """Where obsgap's own objects go."""
    image: str = field(default_factory=default_image)
    """The release image of this version, or the one `make image IMAGE=...` built and pushed."""
    schedule: str = "0 2 * * *"
    time_zone: str = "Etc/UTC"
    """The CronJob's `timeZone` (the schedule is read in it)."""
    namespaces: tuple[str, ...] = ()
    """`report -n`: the namespaces to judge (default every one)."""
    pushgateway: str | None = None
    """`report --pushgateway`: each run's metrics pushed there (the alerts of `--alerts` read them)."""
    prometheus_url: str = "http://prometheus.istio-system:9090"
    window: str = "24h"
    logs_claim: str | None = None
    """A PersistentVolumeClaim holding shipped logs (mounted read-only at /logs) instead of pods/log."""
    reports_claim: str | None = None
    """An existing claim for the reports; None: the manifests create one (obsgap-reports)."""
    reports_size: str = "2Gi"
    ephemeral_reports: bool = False
    """Reports in an emptyDir, lost with the pod (no baseline, no trends)."""
    pod_logs: bool | None = None
    """Grant pods/log and read logs through it; None: unless a logs claim or ClickHouse is named."""
    clickhouse_url: str | None = None
    """Read logs from ClickHouse (otel_logs) instead; credentials from a Secret obsgap-clickhouse (user, password)."""
    mesh_revisions: tuple[str, ...] = ()
    """Istio revisions whose MeshConfig (ConfigMap `istio-<revision>`) the run may read besides `istio`."""

    @property
    def reads_pod_logs(self) -> bool:
        if self.pod_logs is not None:
            return self.pod_logs
        return self.logs_claim is None and self.clickhouse_url is None


USER = 65532  # the image's non-root user; fsGroup makes the reports volume writable for it
REPORTS_CLAIM = "obsgap-reports"


def manifests(o: ManifestOptions) -> list[dict[str, Any]]:
    name = "obsgap"
    rules = [dict(r) for r in RULES]
    # the mesh's access-log format (MeshConfig): its ConfigMaps by name, never the others
    rules.append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                  "resourceNames": [MESH_CONFIGMAP, *(f"{MESH_CONFIGMAP}-{rev}" for rev in o.mesh_revisions)]})
    if o.reads_pod_logs:
        rules.append({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]})
    config: dict[str, Any] = {"prometheus_url": o.prometheus_url, "window": o.window, "fail_on": "never"}
    if o.namespaces:
        config["namespace"] = list(o.namespaces)
    if o.pushgateway:
        config["pushgateway"] = o.pushgateway
    args = ["obsgap", "report", "--config", "/etc/obsgap/obsgap.yaml", "--in-cluster", "--out-root", "/reports"]
    if o.reads_pod_logs:
        args.append("--pod-logs")
    mounts = [{"name": "config", "mountPath": "/etc/obsgap", "readOnly": True},
              {"name": "reports", "mountPath": "/reports"}]
    claim = o.reports_claim or REPORTS_CLAIM
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "reports", **({"emptyDir": {}} if o.ephemeral_reports
                               else {"persistentVolumeClaim": {"claimName": claim}})}]
    if o.clickhouse_url:
        args += ["--clickhouse-url", o.clickhouse_url, "--clickhouse-user-file", "/etc/obsgap-clickhouse/user",
                 "--clickhouse-password-file", "/etc/obsgap-clickhouse/password"]
        mounts.append({"name": "clickhouse", "mountPath": "/etc/obsgap-clickhouse", "readOnly": True})
        volumes.append({"name": "clickhouse", "secret": {"secretName": "obsgap-clickhouse"}})
    if o.logs_claim:
        args += ["--logs", "/logs"]
        mounts.append({"name": "logs", "mountPath": "/logs", "readOnly": True})
        volumes.append({"name": "logs", "persistentVolumeClaim": {"claimName": o.logs_claim, "readOnly": True}})
    container = {
        "name": name, "image": o.image, "args": args,
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1536Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": USER, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": False, "capabilities": {"drop": ["ALL"]}},
    }
    created_claim: list[dict[str, Any]] = [] if o.ephemeral_reports or o.reports_claim else [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": claim, "namespace": o.install_namespace},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": o.reports_size}}}}]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": o.install_namespace,
                                                               "labels": {"istio-injection": "disabled"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": o.install_namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": o.install_namespace}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": o.install_namespace},
         "data": {"obsgap.yaml": yaml.safe_dump(config, sort_keys=False)}},
        *created_claim,
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": o.install_namespace},
         "spec": {"schedule": o.schedule, "timeZone": o.time_zone, "concurrencyPolicy": "Forbid",
                  "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                  "jobTemplate": {"spec": {"backoffLimit": 0, "activeDeadlineSeconds": 3600, "template": {
                      "metadata": {"labels": {"app": name, "sidecar.istio.io/inject": "false"}},
                      "spec": {"serviceAccountName": name, "restartPolicy": "Never", "containers": [container],
                               "securityContext": {"fsGroup": USER, "fsGroupChangePolicy": "OnRootMismatch"},
                               "volumes": volumes}}}}}},
    ]


class _NoAliases(yaml.SafeDumper):
    """No anchors, and text of several lines (the ConfigMap's file) as a block scalar, read as it is written."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data and not any(line != line.rstrip() for line in data.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_NoAliases.add_representer(str, _text)


def render_manifests(o: ManifestOptions) -> str:
    return yaml.dump_all(manifests(o), Dumper=_NoAliases, sort_keys=False)


ALERT_RULES: list[dict[str, Any]] = [
    {"alert": "ObsgapCriticalFindings", "expr": 'sum by (check, namespace) (obsgap_findings{severity="critical"}) > 0',
     "labels": {"severity": "warning"},
     "annotations": {"summary": "obsgap: {{ $value }} critical {{ $labels.check }} finding(s) in namespace "
                                "{{ $labels.namespace }}",
                     "description": "The mesh's telemetry misses or misnames traffic; the nightly report (summary.md, "
                                    "report.html) names the fix. Accept a finding with a suppression to silence it."}},
    {"alert": "ObsgapCoverageLow", "expr": "obsgap_coverage_ratio < 0.95", "labels": {"severity": "warning"},
     "annotations": {"summary": "obsgap: the mesh counted {{ $value | humanizePercentage }} of the requests "
                                "{{ $labels.namespace }}/{{ $labels.service }} served"}},
    {"alert": "ObsgapSloUntrustworthy", "expr": 'obsgap_slo_trust{verdict=~"biased|broken"} == 1',
     "labels": {"severity": "warning"},
     "annotations": {"summary": "obsgap: the numbers of SLO {{ $labels.slo }} are {{ $labels.verdict }}"}},
    {"alert": "ObsgapRunPartial", "expr": 'obsgap_run_status{status="partial"} == 1',
     "labels": {"severity": "info"},
     "annotations": {"summary": "obsgap: the last run read less than its inputs: its numbers are not the whole "
                                "picture"}},
    {"alert": "ObsgapRunMissing", "expr": "time() - obsgap_last_run_timestamp_seconds > 36 * 3600",
     "labels": {"severity": "warning"},
     "annotations": {"summary": "obsgap has not reported for {{ $value | humanizeDuration }}: the nightly run "
                                "fails or does not start"}},
]
"""Alerts on the series `--metrics-file` writes (render.metrics)."""


def alert_rules(namespace: str) -> dict[str, Any]:
    """A prometheus-operator PrometheusRule with ALERT_RULES."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "obsgap", "namespace": namespace},
            "spec": {"groups": [{"name": "obsgap", "rules": ALERT_RULES}]}}


def render_alerts(namespace: str) -> str:
    return yaml.dump(alert_rules(namespace), Dumper=_NoAliases, sort_keys=False, width=120)


def reports_reader(o: ManifestOptions) -> dict[str, Any]:
    """A Pod that mounts the reports claim read-only, to copy the kept reports out with `kubectl cp`."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "obsgap-reports", "namespace": o.install_namespace,
                                                            "labels": {"sidecar.istio.io/inject": "false"}},
            "spec": {"restartPolicy": "Never", "securityContext": {"runAsNonRoot": True, "runAsUser": USER},
                     "containers": [{"name": "reader", "image": o.image, "command": ["sleep", "3600"],
                                     "volumeMounts": [{"name": "reports", "mountPath": "/reports",
                                                       "readOnly": True}],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}}],
                     "volumes": [{"name": "reports", "persistentVolumeClaim": {
                         "claimName": o.reports_claim or REPORTS_CLAIM, "readOnly": True}}]}}


def render_reports_reader(o: ManifestOptions) -> str:
    return yaml.dump(reports_reader(o), Dumper=_NoAliases, sort_keys=False)
