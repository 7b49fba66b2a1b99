"""Which sidecars Prometheus scrapes: the scrape targets (`up` over the window) that serve a pod's Envoy metrics.

Istio's sidecars serve their metrics on the pilot-agent status port (15020, /stats/prometheus, with the app's own
metrics merged in) or on Envoy's own 15090 (`http-envoy-prom`); the injector points a pod's `prometheus.io/port` at
15020 unless metrics merging is off (`prometheus.istio.io/merge-metrics: "false"`) or the pod says
`prometheus.io/scrape: "false"` (pkg/kube/inject/webhook.go, applyPrometheusMerge). A pod's sidecar is scraped when
some target names the pod (its namespace and pod labels, else its IP) on one of those ports. Where no target of the
window is on a sidecar port at all, the metrics reach this Prometheus another way (federation, remote write, an
OpenTelemetry pipeline): nothing is judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import pandas as pd

from obsgap.ambient import is_gateway_pod
from obsgap.model import Pod
from obsgap.names import split_host_port

SIDECAR_METRICS_PORTS = frozenset({15020, 15090})
STATS_PATH = "/stats/prometheus"
IGNORE_LABEL = "istio-prometheus-ignore"
"""Istio's envoy-stats PodMonitor (samples/addons/extras/prometheus-operator.yaml) skips pods with this label."""
MERGE_ANNOTATION = "prometheus.istio.io/merge-metrics"
SCRAPE_ANNOTATION = "prometheus.io/scrape"
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
"""What Go's strconv.ParseBool reads as false, as the injector parses these annotations."""


def says_false(annotations: Mapping[str, str], key: str) -> bool:
    """An annotation the injector reads as false: its key compared once sanitised to a label name (`.` and `/` as
    `_`, strutil.SanitizeLabelName), its value by ParseBool."""
    wanted = _label_name(key)
    return any(_label_name(k) == wanted and v in _FALSE for k, v in annotations.items())


def _label_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


ENVOY_STATS_POD_MONITOR = """\
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: envoy-stats-monitor
  namespace: istio-system
  labels:
    monitoring: istio-proxies
    release: istio
spec:
  selector:
    matchExpressions:
    - {key: istio-prometheus-ignore, operator: DoesNotExist}
  namespaceSelector:
    any: true
  jobLabel: envoy-stats
  podMetricsEndpoints:
  - path: /stats/prometheus
    interval: 15s
    relabelings:
    - action: keep
      sourceLabels: [__meta_kubernetes_pod_container_name]
      regex: "istio-proxy"
    - action: keep
      sourceLabels: [__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape]
    - action: replace
      regex: (\\d+);(([A-Fa-f0-9]{1,4}::?){1,7}[A-Fa-f0-9]{1,4})
      replacement: '[$2]:$1'
      sourceLabels:
      - __meta_kubernetes_pod_annotation_prometheus_io_port
      - __meta_kubernetes_pod_ip
      targetLabel: __address__
    - action: replace
      regex: (\\d+);((([0-9]+?)(\\.|$)){4})
      replacement: $2:$1
      sourceLabels:
      - __meta_kubernetes_pod_annotation_prometheus_io_port
      - __meta_kubernetes_pod_ip
      targetLabel: __address__
    - action: labeldrop
      regex: "__meta_kubernetes_pod_label_(.+)"
    - sourceLabels: [__meta_kubernetes_namespace]
      action: replace
      targetLabel: namespace
    - sourceLabels: [__meta_kubernetes_pod_name]
      action: replace
      targetLabel: pod"""
"""Istio's own PodMonitor for the sidecars' metrics, as istio/istio ships it (samples/addons/extras/
prometheus-operator.yaml at 86c9f01, Apache-2.0): every namespace, the port the pods' prometheus.io annotations
name."""


@dataclass(frozen=True)
class SidecarTargets:
    """The window's scrape targets on sidecar metrics ports."""

    up: frozenset[tuple[str, str]]
    """(namespace, pod), or ("", ip) for a target without a pod label, of sidecars some target scraped at least
    once."""
    down: frozenset[tuple[str, str]]
    """... whose targets were never up in the window."""
    jobs: tuple[str, ...]
    """The jobs that scrape sidecars, most targets first."""
    judged: bool
    """Some application sidecar (no gateway's) of the topology is scraped here: this Prometheus scrapes sidecars
    itself. ztunnel, waypoints and gateways serve the same ports, so their targets alone prove nothing."""

    def state(self, pod: Pod) -> str:
        """`scraped`, `down` (targets, never up) or `missing` (no target)."""
        keys = ((pod.namespace, pod.name), ("", pod.ip or ""))
        if any(k in self.up for k in keys):
            return "scraped"
        return "down" if any(k in self.down for k in keys) else "missing"


def targets_of(rows: Iterable[SidecarTarget], pods: Iterable[Pod]) -> SidecarTargets:
    """The window's sidecar targets (`rows`: sidecar_target_rows'), and whether they judge anything: some
    application sidecar of the topology's `pods` is scraped. A target names its pod by its pod label, else by its
    address."""
    pods = list(pods)
    up: set[tuple[str, str]] = set()
    down: set[tuple[str, str]] = set()
    jobs: dict[str, int] = {}
    for t in rows:
        key = (t.namespace, t.pod) if t.pod else ("", t.host)
        (up if t.up else down).add(key)
        jobs[t.job] = jobs.get(t.job, 0) + 1
    found = SidecarTargets(frozenset(up), frozenset(down - up), tuple(sorted(jobs, key=lambda j: (-jobs[j], j))),
                           False)
    judged = any(found.state(p) == "scraped" for p in pods if application_sidecar(p))
    return replace(found, judged=judged)


def application_sidecar(pod: Pod) -> bool:
    """A running pod whose sidecar serves its app's requests (reporter=destination): no gateway's Envoy."""
    return pod.sidecar.present and pod.phase == "Running" and not is_gateway_pod(pod)


@dataclass(frozen=True)
class SidecarTarget:
    """One scrape target of the window on a sidecar metrics port."""

    job: str
    namespace: str
    pod: str
    instance: str
    host: str
    up: bool
    """Up at least once in the window."""


def sidecar_target_rows(targets: pd.DataFrame, pods: Iterable[Pod]) -> list[SidecarTarget]:
    """The scrape_targets rows on 15020, 15090, or the port a pod's annotations point at Envoy's stats path on."""
    stats_ports = {(p.ip, int(annotated)) for p in pods
                   if p.ip and p.annotations.get("prometheus.io/path") == STATS_PATH
                   and (annotated := p.annotations.get("prometheus.io/port", "")).isdigit()}
    out = []
    for row in targets.itertuples(index=False):
        host, port = split_host_port(str(row.instance))
        if port in SIDECAR_METRICS_PORTS or (host, port) in stats_ports:
            out.append(SidecarTarget(str(row.job), str(row.namespace), str(row.pod), str(row.instance), host,
                                     float(row.value) > 0))
    return out
