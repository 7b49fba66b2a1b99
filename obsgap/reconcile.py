"""Join log evidence and mesh metrics per service, pod and port: the numbers every coverage check reads.

Server-side logs are counted once per request: where both the application and the sidecar logged
a request, the larger of the two counts per pod and port is used (they see the same requests).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from obsgap.coverage import PodCoverage
from obsgap.evidence import CheckInputs
from obsgap.model import Pod, Service, ServicePort
from obsgap.text import duration_text, iso_ms

MESH_REPORTERS = ("destination", "waypoint")
REQ_COLS = ["reporter", "destination_service_name", "destination_service_namespace", "source_workload",
            "source_workload_namespace", "destination_workload", "destination_workload_namespace", "namespace",
            "pod", "destination_port", "destination_service"]


@dataclass
class PortTraffic:
    container_port: int | None
    service_port: ServicePort | None
    http_lines: int = 0
    """Log lines that carry an HTTP method: proof the port speaks HTTP."""
    per_pod: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def requests(self) -> int:
        """Per pod, the larger of the app and sidecar counts (they log the same requests)."""
        return sum(self.per_pod.values())


@dataclass
class ServiceTraffic:
    service: Service
    pods: tuple[Pod, ...]
    ports: dict[int | None, PortTraffic] = field(default_factory=dict)
    """Container port (None: the logs gave none) -> traffic."""
    pod_logs: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Pod -> server-side logged requests on declared ports."""
    mesh_requests: float = 0.0
    mesh_by_pod: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    unknown_source: float = 0.0
    source_reported: float = 0.0
    tcp_connections: float = 0.0
    client_logs: int = 0
    peer_mesh_by_pod: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """What the mesh counted for these pods under the other Services that select them (e.g. a headless one)."""
    mesh_by_source: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    """(source namespace, source workload) -> what the destination side counted from that caller."""
    source_by_source: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    """(source namespace, source workload) -> what that caller's own sidecar counted (reporter=source)."""
    caller_logs: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    """(caller namespace, caller workload) -> calls to this service in that caller's logs; workload `unknown` for
    callers without a sidecar (the mesh labels them so)."""
    covered: dict[str, PodCoverage] = field(default_factory=dict)
    """Pods whose logs cover part of the window: their logs and mesh counts here are those of that part."""
    window_seconds: float = 0.0
    covered_without_pod_metrics: bool = False
    """Some pod's logs are partial and the metrics have no pod label to count that part alone."""

    @property
    def mesh_for_pods(self) -> float:
        """Requests the mesh counted for this service's pods under any Service name."""
        return self.mesh_requests + sum(self.peer_mesh_by_pod.values())

    @property
    def server_logs(self) -> int:
        return sum(self.pod_logs.values())

    @property
    def observed(self) -> int:
        """The best count of real requests: server logs, else what callers saw."""
        return int(max(self.server_logs, self.client_logs, round(self.source_reported)))

    def comparison(self) -> Comparison:
        """The logged count and what the mesh counted for the same pods or callers: like with like."""
        basis = self.observed_by
        if basis == "server logs":
            return self._per_pod()
        if basis == "caller logs":
            logged = sum(self.caller_logs.values())
            mesh = sum(self.mesh_by_source.get(c, 0.0) for c in self.caller_logs if c[1] != UNKNOWN)
            dark = sum(n for c, n in self.caller_logs.items() if c[1] == UNKNOWN)
            if dark:
                unknown = sum(v for c, v in self.mesh_by_source.items() if c[1] == UNKNOWN)
                mesh += min(unknown, dark)  # other callers outside the mesh share that label
            return Comparison(logged, mesh, basis, True, f"{len(self.caller_logs)} calling workloads with logs")
        if basis.startswith("caller sidecar"):
            mesh = sum(self.mesh_by_source.get(c, 0.0) for c in self.source_by_source)
            return Comparison(round(sum(self.source_by_source.values())), mesh, basis, True,
                              f"{len(self.source_by_source)} calling workloads")
        return Comparison(0, self.mesh_requests, basis, False, "no logs and no caller metrics")

    def _per_pod(self) -> Comparison:
        logged_pods = [p for p, n in self.pod_logs.items() if n > 0]
        total = len(self.pods)
        note = f"logs of {len(logged_pods)} of {total} pods" if total else ""
        if self.covered:
            note += f"; {self.coverage_text()}"
        if self.covered_without_pod_metrics:
            return Comparison(self.server_logs, self.mesh_for_pods, "server logs", False,
                              f"{note}, and the metrics have no pod label to count that part alone",
                              len(logged_pods), total)
        if self.mesh_by_pod:
            shared = self.peer_mesh_by_pod.get("", 0.0) * len(logged_pods) / total if total else 0.0
            mesh = shared + sum(self.mesh_by_pod.get(p, 0.0) + self.peer_mesh_by_pod.get(p, 0.0)
                                for p in logged_pods)
            return Comparison(self.server_logs, mesh, "server logs", True, note, len(logged_pods), total)
        if len(logged_pods) >= total:
            return Comparison(self.server_logs, self.mesh_for_pods, "server logs", True, note, len(logged_pods), total)
        return Comparison(self.server_logs, self.mesh_for_pods, "server logs", False,
                          f"{note}, and the metrics have no pod label to count those pods alone",
                          len(logged_pods), total)

    def coverage_text(self) -> str:
        """How much of the window the logs cover, e.g. "logs cover 3 h 10 m of 24 h for 1 of 3 pods"."""
        if not self.covered:
            return ""
        shortest = min(self.covered.values(), key=lambda c: c.seconds)
        of = duration_text(self.window_seconds) if self.window_seconds else "the window"
        return (f"logs cover {duration_text(shortest.seconds)} of {of} for {len(self.covered)} of {len(self.pods)} "
                f"pods ({shortest.why}): compared over that part only")

    def interval(self) -> tuple[int, int] | None:
        """The shortest covered interval (epoch ms) the comparison rests on, when logs are partial."""
        if not self.covered:
            return None
        shortest = min(self.covered.values(), key=lambda c: c.seconds)
        return shortest.start_ms, shortest.end_ms

    def interval_evidence(self) -> dict[str, object]:
        """evidence.interval of a finding: the part of the window the comparison rests on, when logs are partial."""
        iv = self.interval()
        if iv is None:
            return {}
        return {"interval": {"start": iso_ms(iv[0]), "end": iso_ms(iv[1]), "pods": sorted(self.covered)}}

    @property
    def observed_by(self) -> str:
        if self.server_logs >= max(self.client_logs, self.source_reported) and self.server_logs:
            return "server logs"
        if self.client_logs >= self.source_reported and self.client_logs:
            return "caller logs"
        return "caller sidecar metrics (reporter=source)" if self.source_reported else "nothing"


UNKNOWN = "unknown"



@dataclass(frozen=True)
class Comparison:
    observed: int
    """Requests the evidence shows."""
    mesh: float
    """What the mesh counted for the same pods (server logs) or the same callers (caller logs or metrics)."""
    basis: str
    comparable: bool
    """False when the metrics cannot be narrowed to the pods or callers the evidence covers."""
    note: str = ""
    pods_with_logs: int | None = None
    pods_total: int | None = None

    @property
    def ratio(self) -> float | None:
        return round(self.mesh / self.observed, 4) if self.comparable and self.observed > 0 else None


@dataclass
class UndeclaredPort:
    pod: Pod
    port: int
    requests: int
    http_lines: int


@dataclass
class Reconciliation:
    services: dict[tuple[str, str], ServiceTraffic]
    undeclared: list[UndeclaredPort]
    metrics_present: bool


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def reconcile(inputs: CheckInputs) -> Reconciliation:
    """Computed once per run and shared by every check that reads it."""
    cached = inputs.memo.get("reconcile")
    if cached is None:
        cached = inputs.memo["reconcile"] = _reconcile(inputs)
    return cached


def _reconcile(inputs: CheckInputs) -> Reconciliation:
    idx = inputs.index
    services: dict[tuple[str, str], ServiceTraffic] = {}

    def traffic(svc: Service) -> ServiceTraffic:
        st = services.get(svc.key)
        if st is None:
            st = ServiceTraffic(svc, idx.pods_of_service(svc), window_seconds=inputs.window.seconds)
            services[svc.key] = st
        return st

    undeclared: dict[tuple[str, str, int], UndeclaredPort] = {}
    logs = inputs.logs
    if logs is not None and not logs.inbound.empty:
        # (service key, pod, container port) -> [app requests, envoy requests]
        cells: dict[tuple[tuple[str, str], str, int | None], list[int]] = defaultdict(lambda: [0, 0])
        for row in logs.inbound.itertuples(index=False):
            pod = idx.pods_by_key.get((str(row.namespace), str(row.pod)))
            if pod is None or not idx.in_scope(pod):
                continue
            port = _int(row.port)
            candidates = idx.services_of_pod(pod.namespace, pod.name)
            target: tuple[Service, ServicePort | None] | None = None
            if port is not None:
                for svc in candidates:
                    sp = idx.service_port_for_target(svc, pod, port)
                    if sp is not None:
                        target = (svc, sp)
                        break
                if target is None:
                    if pod.sidecar.present and _is_proxy_port(port):
                        continue
                    key = (pod.namespace, pod.name, port)
                    u = undeclared.setdefault(key, UndeclaredPort(pod, port, 0, 0))
                    u.requests = max(u.requests, int(row.requests))
                    u.http_lines += int(row.http_requests)
                    continue
            elif candidates:
                target = (candidates[0], None)
            if target is None:
                continue
            svc, sp = target
            cells[(svc.key, pod.name, port)][0 if row.origin == "app" else 1] += int(row.requests)
            traffic(svc).ports.setdefault(port, PortTraffic(port, sp)).http_lines += int(row.http_requests)
        covered = inputs.covered
        for (svc_key, pod_name, port), (app, envoy) in cells.items():
            cov = covered.covered(svc_key[0], pod_name) if covered is not None else None
            if cov is not None and covered is not None:  # partial logs: the counts of the bins they cover
                app = covered.logs.get((svc_key[0], pod_name, "app", port), 0)
                envoy = covered.logs.get((svc_key[0], pod_name, "envoy", port), 0)
                services[svc_key].covered[pod_name] = cov
            services[svc_key].pod_logs[pod_name] += max(app, envoy)
            services[svc_key].ports[port].per_pod[pod_name] += max(app, envoy)

    metrics = inputs.metrics
    metrics_present = False
    if metrics is not None:
        req = metrics.frame("mesh_requests", REQ_COLS)
        metrics_present = not req.empty
        for row in req.itertuples(index=False):
            found = idx.services_by_key.get((row.destination_service_namespace, row.destination_service_name))
            if found is None:
                continue
            st = traffic(found)
            value = float(row.value)
            source = (str(row.source_workload_namespace), str(row.source_workload))
            if row.reporter in MESH_REPORTERS:
                st.mesh_requests += value
                st.mesh_by_source[source] += value
                if row.pod:
                    st.mesh_by_pod[row.pod] += value
                if row.source_workload == UNKNOWN:
                    st.unknown_source += value
            elif row.reporter == "source":
                st.source_reported += value
                st.source_by_source[source] += value
        tcp = metrics.frame("mesh_tcp_connections", REQ_COLS)
        for row in tcp.itertuples(index=False):
            found = idx.services_by_key.get((row.destination_service_namespace, row.destination_service_name))
            if found is not None and row.reporter in MESH_REPORTERS:
                traffic(found).tcp_connections += float(row.value)

    covered = inputs.covered
    if covered is not None:
        for st in services.values():
            for pod_name in st.covered:
                if covered.mesh_by_pod_known:
                    st.mesh_by_pod[pod_name] = covered.mesh.get(
                        (st.service.namespace, st.service.name, pod_name), 0.0)
                else:
                    st.covered_without_pod_metrics = True

    if logs is not None and not logs.outbound.empty:
        per_caller: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for row in logs.outbound.itertuples(index=False):
            if not row.authority:
                continue
            cell = per_caller[(str(row.namespace), str(row.pod), str(row.authority))]
            cell[0 if row.origin == "app" else 1] += int(row.requests)
        for (ns, pod_name, authority), (app, envoy) in per_caller.items():
            resolved = idx.resolve(authority, ns or None)
            if resolved.service is not None and resolved.kind != "wrong-namespace":
                st = traffic(resolved.service)
                st.client_logs += max(app, envoy)
                caller = idx.pods_by_key.get((ns, pod_name))
                who = (caller.namespace, caller.workload) if caller is not None and caller.sidecar.present \
                    else (ns, UNKNOWN)
                st.caller_logs[who] += max(app, envoy)

    # Server logs of a pod land on one of the Services selecting it; what callers sent through the others
    # is counted under their names: credit it back, per pod.
    for st in services.values():
        if not st.pod_logs:
            continue
        for pod in st.pods:
            for other in idx.services_of_pod(pod.namespace, pod.name):
                peer = services.get(other.key)
                if peer is None or peer is st:
                    continue
                if peer.mesh_by_pod:
                    st.peer_mesh_by_pod[pod.name] += peer.mesh_by_pod.get(pod.name, 0.0)
                elif peer.pods:  # no per-pod labels in the metrics: the pod's even share of the peer's count
                    st.peer_mesh_by_pod[""] += peer.mesh_requests / len(peer.pods)
    return Reconciliation(services, sorted(undeclared.values(), key=lambda u: -u.requests), metrics_present)


def _is_proxy_port(port: int) -> bool:
    """Envoy's own ports (15000-15090) are not application traffic."""
    return 15000 <= port <= 15090
