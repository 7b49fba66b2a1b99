"""Simulate a mesh's requests and write what a real cluster would leave behind.

From one stream of simulated requests this writes, consistently:
- `kube/topology.json`: what `kubectl get ns,svc,pods,endpointslices,...,vs,dr -A -o json` prints;
- `logs/pods/<ns>_<pod>_<uid>/<container>/0.log[.<stamp>.gz]`: CRI log files (app JSON lines and
  Istio TEXT access logs);
- `metrics.om`: OpenMetrics text with timestamps, ready for `promtool tsdb create-blocks-from openmetrics`;
- `truth.json`: the true counts and latencies, so tests know the right answers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import shutil
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from obsgap import bounds, istio
from obsgap.model import TCP_PROXIED
from obsgap.scenario import ambient, witnesses
from obsgap.scenario.spec import ENVOY_DEFAULT_BUCKETS, FlowSpec, PortSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.logs.envoy_format import render_text

CHUNK_SECONDS = 3600


@dataclass
class SimPod:
    svc: ServiceSpec
    name: str
    uid: str
    ip: str
    sidecar: bool
    app_container: str
    ambient: bool = False
    """ztunnel captures it (scenario.ambient.ambient_enrolled)."""

    @property
    def namespace(self) -> str:
        return self.svc.namespace


@dataclass
class Truth:
    """Ground truth per service key `ns/name`."""

    server_requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mesh_destination_requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    server_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Requests answered 5xx, as the server's logs show them."""
    mesh_destination_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mesh_source_requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tcp_connections: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unknown_source_requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    passthrough_requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    log_lines: int = 0
    mesh_waypoint_requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Requests a waypoint counted (reporter="waypoint") for the Service behind it."""
    ztunnel_connections: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Inbound connections ztunnel logged for the Service's pods."""
    upgraded_requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Requests that upgraded to a WebSocket (HTTP 101), lasting minutes."""
    grpc_failures: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    """Service key -> gRPC status -> calls that failed with it (HTTP 200)."""
    witness_requests: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    """witness -> service key -> requests it counted (probes left out, as obsgap leaves them out)."""

    def as_dict(self) -> dict[str, Any]:
        out = {k: dict(v) for k, v in self.__dict__.items() if isinstance(v, dict)} | {"log_lines": self.log_lines}
        out["witness_requests"] = {w: dict(v) for w, v in self.witness_requests.items()}
        out["grpc_failures"] = {k: dict(v) for k, v in self.grpc_failures.items()}
        return out


@dataclass(frozen=True)
class BuiltScenario:
    root: Path
    spec: ScenarioSpec
    topology: Path
    logs: Path
    metrics: Path
    truth: Truth


def _fmt_ts(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((t % 1) * 1e9):09d}Z"


def _envoy_ts(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((t % 1) * 1000):03d}Z"


def _labels(d: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in d.items())


class _Metrics:
    """Cumulative counters and histograms, sampled at every scrape step into per-family files."""

    def __init__(self, root: Path, prometheus3: bool = False) -> None:
        self.root = root
        self.prometheus3 = prometheus3
        self.counters: dict[str, dict[str, float]] = defaultdict(dict)
        self.hists: dict[str, dict[str, list[float]]] = defaultdict(dict)
        self.hist_bounds: dict[tuple[str, str], tuple[float, ...]] = {}
        self.gauges: dict[str, dict[str, float]] = defaultdict(dict)
        self.summaries: dict[str, dict[str, list[float]]] = defaultdict(dict)
        self.files: dict[str, TextIO] = {}
        self.types: dict[str, str] = {}
        self.new: dict[str, list[str]] = defaultdict(list)
        self.prev_t: float | None = None
        self.unscraped: set[str] = set()
        """Scrape targets (`instance`) no job scrapes: their series are never written."""

    def le(self, family: str, b: float) -> str:
        """A bucket bound as Prometheus stores it: Prometheus 3 normalised; Prometheus 2 as the exposition wrote it
        (Envoy's `{:.32g}`: `1800000`; here the others' `%g`)."""
        if self.prometheus3:
            return bounds.prometheus3(b)
        return bounds.exposition(b) if family.startswith("istio_") else f"{b:g}"

    def inc(self, family: str, labels: dict[str, str], by: float = 1.0) -> None:
        if labels.get("instance") in self.unscraped:
            return
        key = _labels(labels)
        if key not in self.counters[family]:
            self.new[family].append(key)
        self.counters[family][key] = self.counters[family].get(key, 0.0) + by
        self.types[family] = "counter"

    def set(self, family: str, labels: dict[str, str], value: float) -> None:
        self.gauges[family][_labels(labels)] = value
        self.types[family] = "gauge"

    def observe(self, family: str, labels: dict[str, str], bounds: tuple[float, ...], value: float) -> None:
        if labels.get("instance") in self.unscraped:
            return
        key = _labels(labels)
        h = self.hists[family].get(key)
        if h is None:
            h = [0.0] * (len(bounds) + 3)  # buckets..., +Inf, sum, count
            self.hists[family][key] = h
            self.new[family].append(key)
            self.hist_bounds[(family, key)] = bounds
            self.types[family] = "histogram"
        for i, b in enumerate(bounds):
            if value <= b:
                h[i] += 1
        h[len(bounds)] += 1
        h[-2] += value
        h[-1] += 1

    def observe_summary(self, family: str, labels: dict[str, str], value: float) -> None:
        """A summary without quantiles (Micrometer's default timer): _count and _sum."""
        key = _labels(labels)
        cell = self.summaries[family].get(key)
        if cell is None:
            cell = self.summaries[family][key] = [0.0, 0.0]
            self.new[family].append(key)
            self.types[family] = "summary"
        cell[0] += value
        cell[1] += 1

    def reset_pod(self, pod: str) -> None:
        """A restarted proxy starts its counters and histograms from zero."""
        marker = f'pod="{pod}"'
        for series in self.counters.values():
            for key in series:
                if marker in key:
                    series[key] = 0.0
        for hseries in self.hists.values():
            for key, h in hseries.items():
                if marker in key:
                    h[:] = [0.0] * len(h)

    def _file(self, family: str) -> TextIO:
        f = self.files.get(family)
        if f is None:
            f = (self.root / f"{family}.om.part").open("w")
            self.files[family] = f
        return f

    def _zeros(self) -> None:
        """A series appears with a 0 one scrape before its first request, so increase() sees every request."""
        if self.prev_t is None:
            return
        ts = f"{self.prev_t:.3f}"
        for family, keys in self.new.items():
            f = self._file(family)
            if family in self.counters:
                f.writelines(f"{family}_total{{{k}}} 0 {ts}\n" for k in keys)
            elif family in self.hists:
                for k in keys:
                    bounds = self.hist_bounds[(family, k)]
                    f.writelines(f'{family}_bucket{{{k},le="{self.le(family, b)}"}} 0 {ts}\n' for b in bounds)
                    f.write(f'{family}_bucket{{{k},le="+Inf"}} 0 {ts}\n{family}_sum{{{k}}} 0 {ts}\n'
                            f"{family}_count{{{k}}} 0 {ts}\n")
            elif family in self.summaries:
                f.writelines(f"{family}_sum{{{k}}} 0 {ts}\n{family}_count{{{k}}} 0 {ts}\n" for k in keys)

    def sample(self, t: float) -> None:
        self._zeros()
        self.new.clear()
        self.prev_t = t
        ts = f"{t:.3f}"
        for family, series in self.counters.items():
            f = self._file(family)
            name = family + "_total"
            f.writelines(f"{name}{{{k}}} {v:g} {ts}\n" for k, v in series.items())
        for family, series in self.gauges.items():
            f = self._file(family)
            f.writelines(f"{family}{{{k}}} {v:g} {ts}\n" for k, v in series.items())
        for family, sseries in self.summaries.items():
            f = self._file(family)
            f.writelines(f"{family}_sum{{{k}}} {c[0]:.6g} {ts}\n{family}_count{{{k}}} {c[1]:g} {ts}\n"
                         for k, c in sseries.items())
        for family, hseries in self.hists.items():
            f = self._file(family)
            out = []
            for k, h in hseries.items():
                bounds = self.hist_bounds[(family, k)]
                for i, b in enumerate(bounds):
                    out.append(f'{family}_bucket{{{k},le="{self.le(family, b)}"}} {h[i]:g} {ts}\n')
                out.append(f'{family}_bucket{{{k},le="+Inf"}} {h[len(bounds)]:g} {ts}\n')
                out.append(f"{family}_sum{{{k}}} {h[-2]:.6g} {ts}\n")
                out.append(f"{family}_count{{{k}}} {h[-1]:g} {ts}\n")
            f.writelines(out)

    def finish(self, path: Path) -> None:
        for f in self.files.values():
            f.close()
        with path.open("w") as out:
            for family in sorted(self.files):
                out.write(f"# TYPE {family} {self.types[family]}\n")
                part = self.root / f"{family}.om.part"
                with part.open() as src:
                    shutil.copyfileobj(src, out)
                part.unlink()
            out.write("# EOF\n")


class _Logs:
    """Per-container line buffers flushed to CRI files once per chunk."""

    def __init__(self, root: Path, rotate_before: float | None, stamp: str) -> None:
        self.root = root
        self.buffers: dict[Path, list[str]] = defaultdict(list)
        self.rotate_before = rotate_before
        self.stamp = stamp

    def add(self, pod: SimPod, container: str, t: float, msg: str, partial_every: int, counter: int) -> None:
        folder = self.root / "pods" / f"{pod.namespace}_{pod.name}_{pod.uid}" / container
        rotated = self.rotate_before is not None and t < self.rotate_before
        path = folder / (f"0.log.{self.stamp}.gz" if rotated else "0.log")
        ts = _fmt_ts(t)
        if partial_every and counter % partial_every == 0 and len(msg) > 20:
            cut = len(msg) // 2
            self.buffers[path].append(f"{ts} stdout P {msg[:cut]}\n")
            self.buffers[path].append(f"{ts} stdout F {msg[cut:]}\n")
        else:
            self.buffers[path].append(f"{ts} stdout F {msg}\n")

    def flush(self) -> None:
        for path, lines in self.buffers.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            opener: Any = gzip.open if path.suffix == ".gz" else open
            with opener(path, "at", encoding="utf-8") as f:
                f.writelines(lines)
        self.buffers.clear()


def _pods(spec: ScenarioSpec, rng: random.Random) -> dict[str, list[SimPod]]:
    injected = dict(spec.namespaces)
    pods: dict[str, list[SimPod]] = {}
    n = 0
    for svc in spec.services:
        rs_hash = hashlib.sha1(f"{svc.key}{spec.seed}".encode()).hexdigest()[:9]
        captured = ambient.ambient_enrolled(spec, svc)
        sidecar = (injected.get(svc.namespace, False) or svc.inject == "true") and svc.inject != "false" \
            and not svc.host_network and not svc.proxy_missing and not svc.ambient and not captured
        out = []
        for i in range(svc.replicas):
            n += 1
            suffix = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
            ip = f"10.44.{n // 250}.{n % 250 + 2}" if not svc.host_network else f"10.128.0.{n % 250 + 2}"
            out.append(SimPod(svc, f"{svc.name}-{rs_hash}-{suffix}", str(uuid.UUID(int=rng.getrandbits(128))),
                              ip, sidecar and i >= svc.pods_without_proxy, svc.name, captured))
        pods[svc.key] = out
    return pods


def _pod_object(pod: SimPod, spec: ScenarioSpec) -> dict[str, Any]:
    svc = pod.svc
    rs = pod.name.rsplit("-", 1)[0]
    annotations: dict[str, str] = dict(svc.extra_annotations)
    if svc.inject != "default":
        annotations[istio.INJECT_KEY] = svc.inject
    if svc.exclude_inbound_ports:
        annotations[istio.EXCLUDE_INBOUND] = ",".join(str(p) for p in svc.exclude_inbound_ports)
    if svc.exclude_outbound_ports:
        annotations[istio.EXCLUDE_OUTBOUND] = ",".join(str(p) for p in svc.exclude_outbound_ports)
    if svc.istio_buckets is not None:
        annotations["sidecar.istio.io/statsHistogramBuckets"] = json.dumps(
            {"istiocustom": list(svc.istio_buckets)})
    if pod.sidecar:
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": "15020",
                            "prometheus.io/path": "/stats/prometheus"})
    elif svc.metrics_port_used:
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": str(svc.metrics_port_used)})
    ports = [{"containerPort": p.target, "name": p.name[:15], "protocol": "TCP"} for p in svc.ports]
    if svc.metrics_port_used:
        ports.append({"containerPort": svc.metrics_port_used, "name": "http-metrics", "protocol": "TCP"})
    containers: list[dict[str, Any]] = [{"name": pod.app_container, "image": f"example/{svc.name}:1.0",
                                         "ports": ports}]
    if svc.probe_interval_s:
        containers[0]["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": svc.ports[0].target},
                                           "periodSeconds": svc.probe_interval_s}
    init: list[dict[str, Any]] = []
    init_status: list[dict[str, Any]] = []
    if pod.sidecar or svc.init_failed:
        containers.append({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.0"})
        init.append({"name": "istio-init", "image": "docker.io/istio/proxyv2:1.27.0"})
        state = {"waiting": {"reason": "CrashLoopBackOff"}} if svc.init_failed else \
            {"terminated": {"exitCode": 0, "reason": "Completed"}}
        init_status.append({"name": "istio-init", "state": state})
    labels = {"app": svc.name, "version": "v1", "pod-template-hash": rs.rsplit("-", 1)[1], **dict(svc.labels)}
    if svc.ambient:
        labels["istio.io/dataplane-mode"] = "ambient"
    if svc.ambient_opt_out:
        labels["istio.io/dataplane-mode"] = "none"
    if svc.ingress_gateway:
        labels["istio"] = "ingressgateway"
    if pod.ambient:
        annotations["ambient.istio.io/redirection"] = "enabled"  # what the Istio CNI marks captured pods with
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid, "labels": labels,
                     "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                          "controller": True}]},
        "spec": {"containers": containers, "initContainers": init, "hostNetwork": svc.host_network},
        "status": {"phase": "Pending" if svc.init_failed else "Running", "podIP": pod.ip,
                   "initContainerStatuses": init_status},
    }


def _topology(spec: ScenarioSpec, pods: dict[str, list[SimPod]]) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for ns, injected in spec.namespaces:
        labels = {"istio-injection": "enabled"} if injected else {}
        if ns in spec.ambient_namespaces:
            labels = {"istio.io/dataplane-mode": "ambient"}
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
    for i, svc in enumerate(spec.services):
        declared = [p for p in svc.ports if p.declared]
        if declared:
            ports = []
            for p in declared:
                entry: dict[str, Any] = {"name": p.name, "port": p.port, "targetPort": p.target, "protocol": "TCP"}
                if p.app_protocol:
                    entry["appProtocol"] = p.app_protocol
                ports.append(entry)
            svc_labels = {"app": svc.name} | ({"istio.io/use-waypoint": svc.use_waypoint} if svc.use_waypoint
                                              else {}) | ({"istio.io/ingress-use-waypoint": "true"}
                                                          if svc.ingress_use_waypoint else {})
            items.append({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": svc.name, "namespace": svc.namespace, "labels": svc_labels},
                          "spec": {"selector": {"app": svc.name}, "ports": ports,
                                   "clusterIP": "None" if svc.headless else _cluster_ip(i), "type": "ClusterIP"}})
            for alias in svc.also_selected_by:
                items.append({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": alias, "namespace": svc.namespace, "labels": {"app": svc.name}},
                              "spec": {"selector": {"app": svc.name}, "ports": ports, "clusterIP": "None"}})
            items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                          "metadata": {"name": f"{svc.name}-abcde", "namespace": svc.namespace,
                                       "labels": {"kubernetes.io/service-name": svc.name}},
                          "endpoints": [{"addresses": [p.ip]} for p in pods[svc.key]]})
        items.extend(_pod_object(p, spec) for p in pods[svc.key])
    items.extend(ambient.objects(spec))
    items.extend(dict(o) for o in spec.extra_objects)
    return {"apiVersion": "v1", "kind": "List", "items": items}


def _cluster_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def _address(flow: FlowSpec, target: ServiceSpec, port: PortSpec, pod: SimPod) -> str:
    if flow.via:
        return f"{flow.via}.{target.namespace}.svc.cluster.local:{port.port}"
    if flow.address == "pod-ip":
        return f"{pod.ip}:{port.target}"
    if flow.address == "short-name":
        return f"{target.name}:{port.port}"
    if flow.address == "namespace-qualified":
        return f"{target.name}.{target.namespace}:{port.port}"
    if flow.address == "wrong-namespace":
        return f"{target.name}:{port.port}"  # the caller lives elsewhere: its search path misses
    return f"{target.name}.{target.namespace}.svc.cluster.local:{port.port}"


def _app_line(style: str, t: float, direction: str, method: str, path: str, url: str | None,
              status: int | None, dur: float, port: int) -> str:
    if style == "ecs":
        obj: dict[str, Any] = {"@timestamp": _fmt_ts(t), "http": {"request": {"method": method}},
                               "event": {"duration": int(dur * 1e6)}, "log": {"level": "info"}}
        if status is not None:
            obj["http"]["response"] = {"status_code": status}
        obj["url"] = {"full": url} if url else {"path": path}
        if direction == "inbound":
            obj["server"] = {"port": port}
        return json.dumps(obj)
    if style == "otel":
        obj = {"timestamp": _fmt_ts(t), "http.request.method": method, "http.response.status_code": status,
               "duration_ms": round(dur, 3), "severity": "INFO"}
        obj["url.full" if url else "url.path"] = url or path
        if direction == "inbound":
            obj["server.port"] = port
        return json.dumps(obj)
    obj = {"ts": _fmt_ts(t), "level": "info", "msg": "request", "method": method, "status": status,
           "duration_ms": round(dur, 3)}
    if url:
        obj["url"] = url
    else:
        obj["path"] = path
        obj["port"] = port
    return json.dumps(obj)


def _envoy_line(t: float, method: str | None, path: str, code: int, dur: float, authority: str,
                upstream: str, cluster: str, local: str, remote: str, fmt: str | None = None) -> str:
    ms = max(0, round(dur))
    if fmt is not None:
        return render_text(fmt, {
            "start": _envoy_ts(t), "method": method, "path": path if method else None,
            "protocol": "HTTP/1.1" if method else None, "code": code if method else 0, "duration": ms,
            "authority": authority if method else None, "upstream_host": upstream, "cluster": cluster,
            "downstream_local": local, "downstream_remote": remote, "bytes_received": 0, "bytes_sent": 135})
    if method is None:
        return (f'[{_envoy_ts(t)}] "- - -" 0 - - - "-" 120 450 {ms} - "-" "-" "-" "-" "{upstream}" {cluster} '
                f"127.0.0.6:40001 {local} {remote} - -")
    rid = uuid.UUID(int=int(t * 1e6) & ((1 << 128) - 1))
    return (f'[{_envoy_ts(t)}] "{method} {path} HTTP/1.1" {code} - via_upstream - "-" 0 135 {ms} {ms} "-" '
            f'"python-requests/2.31" "{rid}" "{authority}" "{upstream}" {cluster} 10.44.0.1:37652 {local} '
            f"{remote} - default")


def build(spec: ScenarioSpec, out: Path, keep_latencies: bool = True) -> BuiltScenario:
    """Write the scenario under `out` (replacing it) and return where everything is."""
    if out.exists():
        shutil.rmtree(out)
    (out / "kube").mkdir(parents=True)
    (out / "logs").mkdir()
    rng = random.Random(spec.seed)
    pods = _pods(spec, rng)
    (out / "kube" / "topology.json").write_text(json.dumps(_topology(spec, pods), indent=1))

    start, end = spec.start.timestamp(), spec.end.timestamp()
    step = spec.scrape_interval_s
    midpoint = start + (end - start) / 2 if spec.gzip_rotated else None
    stamp = datetime.fromtimestamp(midpoint or start, UTC).strftime("%Y%m%d-%H%M%S")
    logs = _Logs(out / "logs", midpoint, stamp)
    metrics = _Metrics(out, spec.prometheus3)
    truth = Truth()
    services = {s.key: s for s in spec.services}
    carry: dict[int, float] = defaultdict(float)
    rr: dict[str, int] = defaultdict(int)
    counter = 0

    def scrape_labels(pod: SimPod) -> dict[str, str]:
        port = 15020 if pod.sidecar else (pod.svc.metrics_port_used or 0)
        return {"job": pod.svc.job, "namespace": pod.namespace, "pod": pod.name, "instance": f"{pod.ip}:{port}"}

    def scraped(pod: SimPod) -> bool:
        if pod.sidecar:
            return pod.svc.metrics_scraped and pod.svc.sidecar_scraped
        return pod.svc.metrics_scraped and bool(pod.svc.metrics_port_used)

    metrics.unscraped = {scrape_labels(p)["instance"] for plist in pods.values() for p in plist
                         if p.sidecar and not p.svc.sidecar_scraped} | {
        ambient.scrape_labels(w.namespace, ambient.waypoint_pod(w), ambient.waypoint_ip(spec, w))["instance"]
        for w in spec.waypoints if not w.scraped}

    def mark_up() -> None:
        for plist in pods.values():
            for p in plist:
                if scraped(p):
                    metrics.set("up", scrape_labels(p), 1)
        for proxy in _ambient_proxies(spec):
            metrics.set("up", proxy, 1)
        for agent in spec.ebpf:
            metrics.set("up", dict(witnesses.AGENTS[agent]), 1)

    def witnessed(served: witnesses.Served, pod: SimPod) -> None:
        _witnessed(served, pod, spec, metrics, truth, scrape_labels, scraped)

    mark_up()
    metrics.sample(start)
    t_prev = start
    restarts = {s.key: start + s.restart_at * (end - start) for s in spec.services if s.restart_at is not None}
    probe_carry: dict[str, float] = defaultdict(float)
    for t in _steps(start, end, step):
        _probes(spec, pods, t_prev, t, logs, probe_carry, rng, witnessed)
        for key, when in restarts.items():
            if t_prev < when <= t:
                for p in pods[key]:
                    metrics.reset_pod(p.name)
        for fi, flow in enumerate(spec.flows):
            target = services[flow.target]
            port = next(p for p in target.ports if p.port == flow.port)
            carry[fi] += flow.rps * (t - t_prev)
            n = int(carry[fi])
            carry[fi] -= n
            for i in range(n):
                ts = t_prev + (i + rng.random()) * (t - t_prev) / max(n, 1)
                ts = min(max(ts, t_prev + 1e-3), t - 1e-3)
                counter += 1
                _one_request(flow, target, port, ts, pods, services, rng, rr, logs, metrics, truth, spec,
                             counter, (scrape_labels, witnessed), keep_latencies)
        metrics.sample(t)
        t_prev = t
        if (t - start) % CHUNK_SECONDS < step:
            logs.flush()
    logs.flush()
    metrics.finish(out / "metrics.om")
    (out / "truth.json").write_text(json.dumps(truth.as_dict() | {"latencies_ms": {}}, indent=1))
    return BuiltScenario(out, spec, out / "kube" / "topology.json", out / "logs", out / "metrics.om", truth)


def _probes(spec: ScenarioSpec, pods: dict[str, list[SimPod]], t_prev: float, t: float, logs: _Logs,
            carry: dict[str, float], rng: random.Random, witnessed: Callable[[witnesses.Served, SimPod], None]) -> None:
    """kubelet readiness probes: the app serves them (through pilot-agent, never Envoy), logs them, and its own
    metrics and an eBPF agent count them (with their route, /healthz)."""
    for svc in spec.services:
        if not svc.probe_interval_s or svc.init_failed:
            continue
        for pod in pods[svc.key]:
            carry[pod.name] += (t - t_prev) / svc.probe_interval_s
            while carry[pod.name] >= 1:
                carry[pod.name] -= 1
                if svc.app_logs != "none":
                    ts = t_prev + rng.random() * (t - t_prev)
                    logs.add(pod, pod.app_container, ts, _app_line(svc.app_logs, ts + svc.app_clock_offset_s,
                                                                   "inbound", "GET", "/healthz", None, 200, 0.4,
                                                                   svc.ports[0].target), 0, 0)
                witnessed(witnesses.Served(pod.namespace, pod.name, pod.app_container, svc.name, "GET", "/healthz",
                                           200, 0.4, svc.ports[0].target, None), pod)


def _witnessed(r: witnesses.Served, pod: SimPod, spec: ScenarioSpec, metrics: _Metrics, truth: Truth,
               scrape_labels: Any, scraped: Callable[[SimPod], bool]) -> None:
    """Every witness in Prometheus of one request the pod served; the truth counts traffic, not probes."""
    family = pod.svc.app_metrics if scraped(pod) else None
    key = pod.svc.key

    def count(witness: str) -> None:
        if r.route != "/healthz":
            truth.witness_requests[witness][key] += 1

    witnesses.emit(r, family, spec.ebpf, scrape_labels(pod), metrics, count, pod.sidecar, r.route == "/healthz",
                   pod.svc.app_metrics_loss)


def _steps(start: float, end: float, step: int) -> Iterable[float]:
    t = start + step
    while t <= end + 1e-9:
        yield t
        t += step


@dataclass
class _Request:
    """One simulated request: who called whom, how it went, and every place that records it."""

    flow: FlowSpec
    target: ServiceSpec
    port: PortSpec
    ts: float
    server: SimPod
    caller: SimPod | None
    dur: float
    status: int
    spec: ScenarioSpec
    logs: _Logs
    metrics: _Metrics
    truth: Truth
    counter: int
    scrape_labels: Any
    witnessed: Any
    """(served, pod) -> None: every witness in Prometheus of a request the pod served."""
    method: str = "GET"
    grpc_status: int | None = None
    """The call's gRPC status, for a gRPC port (its HTTP status is then 200)."""

    @property
    def protocol_labels(self) -> dict[str, str]:
        """request_protocol, response_code and, for gRPC, grpc_response_status, as Istio labels the request."""
        if self.grpc_status is None:
            return {"request_protocol": "http", "response_code": str(self.status)}
        return {"request_protocol": "grpc", "response_code": str(self.status),
                "grpc_response_status": str(self.grpc_status)}

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def path(self) -> str:
        return self.flow.path

    @property
    def address(self) -> str:
        return _address(self.flow, self.target, self.port, self.server)

    @property
    def tcp_proxied(self) -> bool:
        return istio.port_protocol(self.port.name, self.port.app_protocol, self.port.port)[0] in TCP_PROXIED

    @property
    def caller_sidecar(self) -> bool:
        """The call passes through the caller's own sidecar."""
        c = self.caller
        return c is not None and c.sidecar and self.port.port not in c.svc.exclude_outbound_ports


def _one_request(flow: FlowSpec, target: ServiceSpec, port: PortSpec, ts: float,
                 pods: dict[str, list[SimPod]], services: dict[str, ServiceSpec], rng: random.Random,
                 rr: dict[str, int], logs: _Logs, metrics: _Metrics, truth: Truth, spec: ScenarioSpec,
                 counter: int, recorders: tuple[Any, Any], keep_latencies: bool) -> None:
    tpods = [p for p in pods[target.key] if not target.init_failed]
    if not tpods:
        return
    server = tpods[rr[target.key] % len(tpods)]
    rr[target.key] += 1
    caller: SimPod | None = None
    if flow.caller != "external":
        cpods = pods[flow.caller]
        caller = cpods[rr[flow.caller] % len(cpods)]
        rr[flow.caller] += 1
    dur = target.latency_median_ms * math.exp(rng.gauss(0, target.latency_sigma))
    status = 500 if rng.random() < target.error_rate else 200
    if target.websocket_share and rng.random() < target.websocket_share and _grpc_status(target, port, rng) is None:
        status, dur = 101, target.websocket_minutes * 60_000 * math.exp(rng.gauss(0, 0.3))
        truth.upgraded_requests[target.key] += 1
    grpc_status = _grpc_status(target, port, rng)
    if grpc_status is not None:
        status = 200  # a gRPC call's HTTP status; its own travels in the grpc-status trailer
        if grpc_status:
            truth.grpc_failures[target.key][grpc_status] += 1
    req = _Request(flow, target, port, ts, server, caller, dur, status, spec, logs, metrics, truth, counter,
                   *recorders, grpc_status=grpc_status)
    if caller is not None and not _client_side(req, caller):
        return
    _server_side(req, rng, keep_latencies)


def _grpc_status(target: ServiceSpec, port: PortSpec, rng: random.Random) -> int | None:
    """The gRPC status of a call to a gRPC port (None for any other port)."""
    if istio.port_protocol(port.name, port.app_protocol, port.port)[0] != "grpc":
        return None
    draw = rng.random()
    for code, share in target.grpc_errors:
        if draw < share:
            return code
        draw -= share
    return 0


def _client_side(r: _Request, caller: SimPod) -> bool:
    """The caller's app log and its sidecar's line and metrics; False when the call reaches no server."""
    csvc = caller.svc
    reaches = r.flow.address != "wrong-namespace"
    if csvc.app_logs != "none" and csvc.log_outbound_calls:
        r.logs.add(caller, caller.app_container, r.ts,
                   _app_line(csvc.app_logs, r.ts + csvc.app_clock_offset_s, "outbound", r.method, r.path,
                             f"http://{r.address}{r.path}", r.status if reaches else None, r.dur + 1.0, r.port.port),
                   r.spec.partial_every, r.counter)
        r.truth.log_lines += 1
    if not reaches:
        r.truth.failed_calls[f"{caller.namespace}/{csvc.name}->{r.key}"] += 1
        return False
    if r.caller_sidecar:
        _client_sidecar(r, caller)
    return True


def _client_sidecar(r: _Request, caller: SimPod) -> None:
    csvc, target, port = caller.svc, r.target, r.port
    fqdn = f"{r.flow.via or target.name}.{target.namespace}.svc.cluster.local"
    passthrough = r.flow.address == "pod-ip"
    cluster = "PassthroughCluster" if passthrough else f"outbound|{port.port}||{fqdn}"
    if csvc.envoy_access_logs:
        r.logs.add(caller, "istio-proxy", r.ts,
                   _envoy_line(r.ts, None if r.tcp_proxied else r.method, r.path, r.status, r.dur + 0.5, r.address,
                               f"{r.server.ip}:{port.target}", cluster, r.address if passthrough else
                               f"10.96.0.1:{port.port}", f"{caller.ip}:46520", r.spec.access_log_format),
                   0, r.counter)
        r.truth.log_lines += 1
    src = {"reporter": "source", "source_workload": csvc.name, "source_workload_namespace": caller.namespace,
           "source_app": csvc.name}
    if passthrough:
        labels = src | {"destination_service": f"{r.server.ip}:{port.target}",
                        "destination_service_name": "PassthroughCluster",
                        "destination_service_namespace": "unknown", "destination_workload": "unknown",
                        "destination_workload_namespace": "unknown", "request_protocol": "http",
                        "response_code": str(r.status), "response_flags": "-",
                        "connection_security_policy": "unknown"}
        r.metrics.inc("istio_requests", labels | r.scrape_labels(caller))
        r.truth.passthrough_requests[r.key] += 1
        return
    dest = {"destination_service": fqdn, "destination_service_name": r.flow.via or target.name,
            "destination_service_namespace": target.namespace,
            "destination_workload": target.name if r.server.sidecar else "unknown",
            "destination_workload_namespace": target.namespace if r.server.sidecar else "unknown"}
    if r.tcp_proxied:
        r.metrics.inc("istio_tcp_connections_opened", src | dest | r.scrape_labels(caller))
        return
    labels = src | dest | r.protocol_labels | {"response_flags": "-", "connection_security_policy": "unknown"}
    r.metrics.inc("istio_requests", labels | r.scrape_labels(caller))
    r.truth.mesh_source_requests[r.key] += 1


def _server_side(r: _Request, rng: random.Random, keep_latencies: bool) -> None:
    """What the server's app, its own metrics, and its sidecar (or ztunnel) record of the request."""
    target, server, key = r.target, r.server, r.key
    r.truth.server_requests[key] += 1
    r.truth.server_errors[key] += r.status >= 500
    if keep_latencies:
        r.truth.latencies_ms[key].append(r.dur)
    if target.app_logs != "none":
        r.logs.add(server, server.app_container, r.ts,
                   _app_line(target.app_logs, r.ts + target.app_clock_offset_s, "inbound", r.method, r.path, None,
                             r.status, r.dur, r.port.target),
                   r.spec.partial_every, r.counter)
        r.truth.log_lines += 1
    r.witnessed(witnesses.Served(server.namespace, server.name, server.app_container, target.name, r.method, r.path,
                                 r.status, r.dur, r.port.target, f"{r.caller.namespace}/{r.caller.name}" if r.caller
                                 else None, r.counter), server)
    if target.app_histogram and target.metrics_port and target.metrics_scraped:
        hl = {"method": r.method, "job": target.job, "namespace": server.namespace, "pod": server.name,
              "app": target.name,
              "instance": f"{server.ip}:{15020 if server.sidecar else target.metrics_port}"}
        r.metrics.observe(target.app_histogram, hl, target.app_buckets, r.dur / 1000.0)
    if server.ambient:
        _ambient_server(r, rng)
        return
    if server.sidecar and r.port.target not in target.exclude_inbound_ports:
        _server_sidecar(r, rng)


def _ambient_proxies(spec: ScenarioSpec) -> list[dict[str, str]]:
    """The scrape targets of ztunnel and the waypoints' pods."""
    out = [ambient.scrape_labels(ambient.ZTUNNEL_NAMESPACE, ambient.ZTUNNEL_POD, ambient.ZTUNNEL_IP)] \
        if spec.ambient_namespaces or any(s.ambient for s in spec.services) else []
    return out + [ambient.scrape_labels(w.namespace, ambient.waypoint_pod(w), ambient.waypoint_ip(spec, w))
                  for w in spec.waypoints if w.programmed and w.scraped]


def _ambient_server(r: _Request, rng: random.Random) -> None:
    """An ambient pod's request: ztunnel counts a connection (one per request here) and logs it; a waypoint that
    serves the Service (and is reached through its VIP) counts the request itself, reporter="waypoint", unless a
    planted loss (ServiceSpec.metrics_loss) drops that count."""
    target, server, key, spec = r.target, r.server, r.key, r.spec
    caller = r.caller
    from_ingress = caller is not None and caller.svc.ingress_gateway and not target.ingress_use_waypoint
    wp = ambient.serving_waypoint(spec, target) if r.flow.address != "pod-ip" and not from_ingress else None
    in_mesh = caller is not None and (caller.sidecar or caller.ambient)
    if wp is not None:
        src = {"source_workload": wp.name, "source_workload_namespace": wp.namespace}
        src_pod: tuple[str, str] | None = (wp.namespace, ambient.waypoint_pod(wp))
        src_ip = ambient.waypoint_ip(spec, wp)
    else:
        src = {"source_workload": caller.svc.name if in_mesh and caller else "unknown",
               "source_workload_namespace": caller.namespace if in_mesh and caller else "unknown"}
        src_pod = (caller.namespace, caller.name) if in_mesh and caller else None
        src_ip = caller.ip if caller else "10.128.7.9"
    served_as = r.flow.via or target.name  # the Service dialled: its clusterIP tells ztunnel (Forwarded host=)
    fqdn = f"{served_as}.{target.namespace}.svc.cluster.local"
    dest = {"destination_service": fqdn, "destination_service_name": served_as,
            "destination_service_namespace": target.namespace, "destination_workload": target.name,
            "destination_workload_namespace": target.namespace}
    ztunnel = ambient.scrape_labels(ambient.ZTUNNEL_NAMESPACE, ambient.ZTUNNEL_POD, ambient.ZTUNNEL_IP)
    r.metrics.inc("istio_tcp_connections_opened", {"reporter": "destination"} | src | dest | ztunnel)
    r.truth.tcp_connections[key] += 1
    ztunnel_pod = SimPod(target, ambient.ZTUNNEL_POD, ambient.ZTUNNEL_UID, ambient.ZTUNNEL_IP, False, "istio-proxy")
    ztunnel_pod.svc = replace(target, namespace=ambient.ZTUNNEL_NAMESPACE)
    r.logs.add(ztunnel_pod, "istio-proxy", r.ts + r.dur / 1000.0, ambient.ztunnel_line(
        r.ts + r.dur / 1000.0, src_pod, src_ip, (server.namespace, server.name), server.ip, r.port.target, fqdn,
        r.dur, src_pod is not None), 0, r.counter)
    r.truth.ztunnel_connections[key] += 1
    r.truth.log_lines += 1
    if wp is None or r.tcp_proxied:
        return
    caller_src = {"source_workload": caller.svc.name if in_mesh and caller else "unknown",
                  "source_workload_namespace": caller.namespace if in_mesh and caller else "unknown"}
    labels = {"reporter": "waypoint"} | caller_src | dest | {"request_protocol": "http",
                                                             "response_code": str(r.status), "response_flags": "-"}
    scrape = ambient.scrape_labels(wp.namespace, ambient.waypoint_pod(wp), ambient.waypoint_ip(spec, wp))
    if not (target.metrics_loss and rng.random() < target.metrics_loss):
        r.metrics.inc("istio_requests", labels | {"connection_security_policy": "mutual_tls"} | scrape)
        if target.istio_histogram:
            r.metrics.observe("istio_request_duration_milliseconds", labels | scrape,
                              target.istio_buckets or ENVOY_DEFAULT_BUCKETS, r.dur)
        if wp.scraped:
            r.truth.mesh_waypoint_requests[key] += 1
    waypoint = SimPod(target, ambient.waypoint_pod(wp), f"wp-{wp.name}", ambient.waypoint_ip(spec, wp), False,
                      "istio-proxy")
    waypoint.svc = replace(target, namespace=wp.namespace)
    rid = str(uuid.UUID(int=int(r.ts * 1e6) & ((1 << 128) - 1)))
    r.logs.add(waypoint, "istio-proxy", r.ts, ambient.waypoint_line(
        _envoy_ts(r.ts), r.method, r.path, r.status, r.dur, f"{target.name}:{r.port.port}", server.ip, r.port.target,
        r.port.port, fqdn, _cluster_ip(spec.services.index(target)), src_ip if caller else "10.128.7.9", rid),
        0, r.counter)
    r.truth.log_lines += 1


def _server_sidecar(r: _Request, rng: random.Random) -> None:
    target, server, port, key = r.target, r.server, r.port, r.key
    caller = r.caller if r.caller_sidecar else None
    src = {"reporter": "destination",
           "source_workload": caller.svc.name if caller else "unknown",
           "source_workload_namespace": caller.namespace if caller else "unknown",
           "source_app": caller.svc.name if caller else "unknown"}
    if caller is None:
        r.truth.unknown_source_requests[key] += 1
    local = f"{server.ip}:{port.target}"
    if not port.declared:
        cluster = "InboundPassthroughCluster"
        labels = src | {"destination_service": "InboundPassthroughCluster",
                        "destination_service_name": "InboundPassthroughCluster",
                        "destination_service_namespace": "unknown", "destination_workload": target.name,
                        "destination_workload_namespace": target.namespace, "request_protocol": "http",
                        "response_code": str(r.status), "response_flags": "-",
                        "connection_security_policy": "none"}
        r.metrics.inc("istio_requests", labels | r.scrape_labels(server))
    else:
        cluster = f"inbound|{port.target}||"
        served_as = r.flow.via or target.name
        dest = {"destination_service": f"{served_as}.{target.namespace}.svc.cluster.local",
                "destination_service_name": served_as, "destination_service_namespace": target.namespace,
                "destination_workload": target.name, "destination_workload_namespace": target.namespace}
        if r.tcp_proxied:
            r.metrics.inc("istio_tcp_connections_opened", src | dest | r.scrape_labels(server))
            r.truth.tcp_connections[key] += 1
        else:
            _server_requests(r, src | dest | r.protocol_labels | {
                "response_flags": "-", "connection_security_policy": "mutual_tls" if caller else "none"}, rng)
    if target.envoy_access_logs:
        remote_ip = r.caller.ip if r.caller else "10.128.7.9"
        r.logs.add(server, "istio-proxy", r.ts,
                   _envoy_line(r.ts, None if r.tcp_proxied else r.method, r.path, r.status, r.dur, r.address, local,
                               cluster, local, f"{remote_ip}:46520", r.spec.access_log_format), 0, r.counter)
        r.truth.log_lines += 1


def _server_requests(r: _Request, labels: dict[str, str], rng: random.Random) -> None:
    """istio_requests_total and the duration histogram of the server's sidecar, unless a planted loss drops them."""
    target, key = r.target, r.key
    lost = bool(target.metrics_loss) and rng.random() < target.metrics_loss
    if lost or not target.sidecar_scraped:
        return
    r.metrics.inc("istio_requests", labels | r.scrape_labels(r.server))
    r.truth.mesh_destination_requests[key] += 1
    r.truth.mesh_destination_errors[key] += r.status >= 500
    hist_labels = {k: v for k, v in labels.items() if k != "connection_security_policy"}
    if target.istio_histogram:
        r.metrics.observe("istio_request_duration_milliseconds", hist_labels | r.scrape_labels(r.server),
                          target.istio_buckets or ENVOY_DEFAULT_BUCKETS, r.dur)
