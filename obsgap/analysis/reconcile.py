"""Join the witnesses of real traffic and the mesh's metrics per service, pod and port: the numbers every coverage
check, the coverage table and the timelines read. Computed once per run (obsgap.analysis).

A request two witnesses of one side saw is counted once (witness.same_request): per pod and port, the application's
or the sidecar's count, whichever is larger, and everything else about that cell (its time bins) from the same one.
A side that was not measured is unknown, never 0: `Reconciliation.mesh_unmeasured` says why the mesh's side is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from obsgap.evidence import Evidence, LogEvidence, MetricsEvidence
from obsgap.intervals import CoveredCounts, PodCoverage
from obsgap.model import Pod, Service, ServicePort
from obsgap.text import duration_text, iso_ms
from obsgap.topology import TopologyIndex
from obsgap.witness import CALLER_LOGS, CALLER_SIDECARS, SERVER_LOGS, Interval, same_request, witness_words

MESH_REPORTERS = ("destination", "waypoint")
REQ_COLS = ["reporter", "destination_service_name", "destination_service_namespace", "source_workload",
            "source_workload_namespace", "destination_workload", "destination_workload_namespace", "namespace",
            "pod", "destination_port", "destination_service"]
UNKNOWN = "unknown"
NO_WITNESS = "no witness: no logs of its pods or of its callers were read, and no caller's sidecar counted it"


@dataclass
class PortTraffic:
    container_port: int | None
    service_port: ServicePort | None
    http_lines: int = 0
    """Log lines that carry an HTTP method: proof the port speaks HTTP."""
    per_pod: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def requests(self) -> int:
        """Per pod, the witness that saw more (witness.same_request)."""
        return sum(self.per_pod.values())


@dataclass(frozen=True)
class Comparison:
    """What the best witness observed against what the mesh counted for the same pods or callers."""

    observed: int | None
    """Requests the witness shows; None without a witness."""
    mesh: float | None
    """What the mesh counted for the same pods (server logs) or callers (caller logs, caller sidecars); None when the
    mesh's metrics were not measured."""
    witness: str | None
    comparable: bool
    """False when the two sides cannot be narrowed to the same pods or callers, or one was not measured."""
    note: str = ""
    reason: str | None = None
    """Why there is no ratio, in words (None when there is one)."""
    pods_with_logs: int | None = None
    pods_total: int | None = None

    @property
    def ratio(self) -> float | None:
        if not self.comparable or self.mesh is None or not self.observed:
            return None
        return round(self.mesh / self.observed, 4)

    @property
    def basis(self) -> str:
        return witness_words(self.witness)


@dataclass
class ServiceTraffic:
    service: Service
    pods: tuple[Pod, ...]
    ports: dict[int | None, PortTraffic] = field(default_factory=dict)
    """Container port (None: the logs gave none) -> traffic."""
    pod_logs: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Pod -> server-side logged requests on declared ports."""
    cells: dict[tuple[str, int | None], str] = field(default_factory=dict)
    """(pod, container port) -> the origin (app, envoy) whose count stands for that cell (witness.same_request)."""
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
    window: Interval = field(default_factory=lambda: Interval(0, 0))
    covered_without_pod_metrics: bool = False
    """Some pod's logs are partial and the metrics have no pod label to count that part alone."""
    mesh_unmeasured: str | None = None
    """Why the mesh's side is unknown (no metrics, no Istio series); None when it was measured."""

    @property
    def mesh_measured(self) -> bool:
        return self.mesh_unmeasured is None

    @property
    def mesh_for_pods(self) -> float:
        """Requests the mesh counted for this service's pods under any Service name."""
        return self.mesh_requests + sum(self.peer_mesh_by_pod.values())

    @property
    def server_logs(self) -> int:
        return sum(self.pod_logs.values())

    @property
    def observed(self) -> int:
        """The best count of real requests: server logs, else what callers saw (0 without a witness)."""
        return int(max(self.server_logs, self.client_logs, round(self.source_reported)))

    @property
    def witness(self) -> str | None:
        """The witness `observed` rests on (obsgap.witness), or None."""
        if self.server_logs and self.server_logs >= max(self.client_logs, self.source_reported):
            return SERVER_LOGS
        if self.client_logs and self.client_logs >= self.source_reported:
            return CALLER_LOGS
        return CALLER_SIDECARS if self.source_reported else None

    @property
    def observed_by(self) -> str:
        return witness_words(self.witness)

    def interval(self) -> Interval:
        """The part of the window the comparison rests on: the shortest covered interval where logs are partial."""
        if not self.covered:
            return self.window
        shortest = min(self.covered.values(), key=lambda c: c.seconds)
        return Interval(shortest.start_ms, shortest.end_ms)

    def comparison(self) -> Comparison:
        """The witness's count and what the mesh counted for the same pods or callers: like with like."""
        witness = self.witness
        if witness is None:
            return Comparison(None, None if self.mesh_unmeasured else self.mesh_requests, None, False,
                              reason=NO_WITNESS)
        cmp = self._server() if witness == SERVER_LOGS else self._callers(witness)
        if self.mesh_unmeasured:
            return Comparison(cmp.observed, None, witness, False, cmp.note, f"mesh not measured: "
                              f"{self.mesh_unmeasured}", cmp.pods_with_logs, cmp.pods_total)
        return cmp

    def _callers(self, witness: str) -> Comparison:
        if witness == CALLER_LOGS:
            logged = sum(self.caller_logs.values())
            mesh = sum(self.mesh_by_source.get(c, 0.0) for c in self.caller_logs if c[1] != UNKNOWN)
            dark = sum(n for c, n in self.caller_logs.items() if c[1] == UNKNOWN)
            if dark:
                unknown = sum(v for c, v in self.mesh_by_source.items() if c[1] == UNKNOWN)
                mesh += min(unknown, dark)  # other callers outside the mesh share that label
            return Comparison(logged, mesh, witness, True, f"{len(self.caller_logs)} calling workloads with logs")
        mesh = sum(self.mesh_by_source.get(c, 0.0) for c in self.source_by_source)
        return Comparison(round(sum(self.source_by_source.values())), mesh, witness, True,
                          f"{len(self.source_by_source)} calling workloads")

    def _server(self) -> Comparison:
        logged_pods = [p for p, n in self.pod_logs.items() if n > 0]
        total = len(self.pods)
        note = f"logs of {len(logged_pods)} of {total} pods" if total else ""
        if self.covered:
            note += f"; {self.coverage_text()}"
        if self.covered_without_pod_metrics:
            return Comparison(self.server_logs, self.mesh_for_pods, SERVER_LOGS, False, note,
                              "logs cover part of the window and the metrics have no pod label to count that part "
                              "alone", len(logged_pods), total)
        if self.mesh_by_pod:
            shared = self.peer_mesh_by_pod.get("", 0.0) * len(logged_pods) / total if total else 0.0
            mesh = shared + sum(self.mesh_by_pod.get(p, 0.0) + self.peer_mesh_by_pod.get(p, 0.0)
                                for p in logged_pods)
            return Comparison(self.server_logs, mesh, SERVER_LOGS, True, note, None, len(logged_pods), total)
        if len(logged_pods) >= total:
            return Comparison(self.server_logs, self.mesh_for_pods, SERVER_LOGS, True, note, None, len(logged_pods),
                              total)
        return Comparison(self.server_logs, self.mesh_for_pods, SERVER_LOGS, False, note,
                          "only some pods' logs were read and the metrics have no pod label to count those pods alone",
                          len(logged_pods), total)

    def coverage_text(self) -> str:
        """How much of the window the logs cover, e.g. "logs cover 3 h 10 m of 24 h for 1 of 3 pods"."""
        if not self.covered:
            return ""
        shortest = min(self.covered.values(), key=lambda c: c.seconds)
        of = duration_text(self.window.seconds) if self.window.seconds else "the window"
        return (f"logs cover {duration_text(shortest.seconds)} of {of} for {len(self.covered)} of {len(self.pods)} "
                f"pods ({shortest.why}): compared over that part only")

    def interval_evidence(self) -> dict[str, object]:
        """evidence.interval of a finding: the part of the window the comparison rests on, when logs are partial."""
        if not self.covered:
            return {}
        iv = self.interval()
        return {"interval": {"start": iso_ms(iv.start_ms), "end": iso_ms(iv.end_ms), "pods": sorted(self.covered)}}


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
    """Whether the mesh counted any request in the window (istio_requests_total series)."""
    mesh_unmeasured: str | None = None
    """Why the mesh's side is unknown for every service; None when it was measured."""


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def mesh_unmeasured(ev: Evidence) -> str | None:
    """Why the mesh's counts are unknown this run, or None when they were measured (a query that returned series)."""
    metrics = ev.metrics
    if metrics is None:
        return ev.unmeasured.get("metrics", "no metrics were read")
    failed = metrics.failed.get("mesh_requests") or metrics.failed.get("mesh_tcp_connections")
    if failed:
        return f"the mesh's query failed ({failed})"
    if not metrics.has("mesh_requests") and not metrics.has("mesh_tcp_connections"):
        return "Prometheus holds no Istio series (istio_requests_total, istio_tcp_*) in the window"
    return None


class _Builder:
    """One reconciliation's state while the witnesses are added, step by step."""

    def __init__(self, ev: Evidence) -> None:
        self.ev = ev
        self.idx: TopologyIndex = ev.index
        self.services: dict[tuple[str, str], ServiceTraffic] = {}
        self.undeclared: dict[tuple[str, str, int], UndeclaredPort] = {}
        self.unmeasured = mesh_unmeasured(ev)
        w = ev.window
        self.window = Interval(int(w.start.timestamp() * 1000), int(w.end.timestamp() * 1000))

    def traffic(self, svc: Service) -> ServiceTraffic:
        st = self.services.get(svc.key)
        if st is None:
            st = ServiceTraffic(svc, self.idx.pods_of_service(svc), window=self.window,
                                mesh_unmeasured=self.unmeasured)
            self.services[svc.key] = st
        return st

    def target_of(self, pod: Pod, port: int | None) -> tuple[Service, ServicePort | None] | None:
        """The Service (and its port) a pod's inbound request on a container port belongs to."""
        candidates = self.idx.services_of_pod(pod.namespace, pod.name)
        if port is None:
            return (candidates[0], None) if candidates else None
        for svc in candidates:
            sp = self.idx.service_port_for_target(svc, pod, port)
            if sp is not None:
                return svc, sp
        return None

    def server_logs(self, logs: LogEvidence, covered: CoveredCounts | None) -> None:
        cells: dict[tuple[tuple[str, str], str, int | None], dict[str, int]] = defaultdict(dict)
        for row in logs.inbound.itertuples(index=False):
            pod = self.idx.pods_by_key.get((str(row.namespace), str(row.pod)))
            if pod is None or not self.idx.in_scope(pod):
                continue
            port = _int(row.port)
            target = self.target_of(pod, port)
            if target is None:
                if port is not None and not (pod.sidecar.present and _is_proxy_port(port)):
                    self._undeclared(pod, port, int(row.requests), int(row.http_requests))
                continue
            svc, sp = target
            cell = cells[(svc.key, pod.name, port)]
            cell[str(row.origin)] = cell.get(str(row.origin), 0) + int(row.requests)
            self.traffic(svc).ports.setdefault(port, PortTraffic(port, sp)).http_lines += int(row.http_requests)
        for (svc_key, pod_name, port), by_origin in cells.items():
            st = self.services[svc_key]
            origin, n = same_request(by_origin)
            cov = covered.covered(svc_key[0], pod_name) if covered is not None else None
            if cov is not None and covered is not None:  # partial logs: the counts of the bins they cover
                origin, n = same_request({o: covered.logs.get((svc_key[0], pod_name, o, port), 0) for o in by_origin})
                st.covered[pod_name] = cov
            st.cells[(pod_name, port)] = origin or "envoy"
            st.pod_logs[pod_name] += n
            st.ports[port].per_pod[pod_name] += n

    def _undeclared(self, pod: Pod, port: int, requests: int, http_lines: int) -> None:
        u = self.undeclared.setdefault((pod.namespace, pod.name, port), UndeclaredPort(pod, port, 0, 0))
        u.requests = max(u.requests, requests)
        u.http_lines += http_lines

    def mesh(self, metrics: MetricsEvidence) -> bool:
        req = metrics.frame("mesh_requests", REQ_COLS)
        for row in req.itertuples(index=False):
            found = self.idx.services_by_key.get((row.destination_service_namespace, row.destination_service_name))
            if found is None:
                continue
            st = self.traffic(found)
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
        for row in metrics.frame("mesh_tcp_connections", REQ_COLS).itertuples(index=False):
            found = self.idx.services_by_key.get((row.destination_service_namespace, row.destination_service_name))
            if found is not None and row.reporter in MESH_REPORTERS:
                self.traffic(found).tcp_connections += float(row.value)
        return not req.empty

    def covered_mesh(self, covered: CoveredCounts) -> None:
        for st in self.services.values():
            for pod_name in st.covered:
                if covered.mesh_by_pod_known:
                    st.mesh_by_pod[pod_name] = covered.mesh.get((st.service.namespace, st.service.name, pod_name), 0.0)
                else:
                    st.covered_without_pod_metrics = True

    def caller_logs(self, logs: LogEvidence) -> None:
        for (ns, pod_name, authority), n in caller_calls(logs):
            resolved = self.idx.resolve(authority, ns or None)
            if resolved.service is None or resolved.kind == "wrong-namespace":
                continue
            st = self.traffic(resolved.service)
            st.client_logs += n
            caller = self.idx.pods_by_key.get((ns, pod_name))
            meshed = caller is not None and caller.sidecar.present
            who = (caller.namespace, caller.workload) if caller is not None and meshed else (ns, UNKNOWN)
            st.caller_logs[who] += n

    def peer_credit(self) -> None:
        """Server logs of a pod land on one of the Services selecting it; what callers sent through the others is
        counted under their names: credit it back, per pod."""
        for st in self.services.values():
            if not st.pod_logs:
                continue
            for pod in st.pods:
                for other in self.idx.services_of_pod(pod.namespace, pod.name):
                    peer = self.services.get(other.key)
                    if peer is None or peer is st:
                        continue
                    if peer.mesh_by_pod:
                        st.peer_mesh_by_pod[pod.name] += peer.mesh_by_pod.get(pod.name, 0.0)
                    elif peer.pods:  # no per-pod labels in the metrics: the pod's even share of the peer's count
                        st.peer_mesh_by_pod[""] += peer.mesh_requests / len(peer.pods)


def caller_calls(logs: LogEvidence) -> Iterable[tuple[tuple[str, str, str], int]]:
    """((caller namespace, caller pod, address), calls) from the callers' logs: the app and its sidecar log the same
    call, so per caller pod and address the witness that saw more (witness.same_request)."""
    per_caller: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    if logs.outbound.empty:
        return []
    for row in logs.outbound.itertuples(index=False):
        if not row.authority:
            continue
        cell = per_caller[(str(row.namespace or ""), str(row.pod or ""), str(row.authority))]
        cell[str(row.origin)] = cell.get(str(row.origin), 0) + int(row.requests)
    return [(key, same_request(by_origin)[1]) for key, by_origin in per_caller.items()]


def reconcile(ev: Evidence) -> Reconciliation:
    """Every witness and the mesh's counts, per service (computed once per run by obsgap.analysis)."""
    b = _Builder(ev)
    logs = ev.logs
    if logs is not None and not logs.inbound.empty:
        b.server_logs(logs, ev.covered)
    metrics_present = b.mesh(ev.metrics) if ev.metrics is not None else False
    if ev.covered is not None:
        b.covered_mesh(ev.covered)
    if logs is not None:
        b.caller_logs(logs)
    b.peer_credit()
    return Reconciliation(b.services, sorted(b.undeclared.values(), key=lambda u: -u.requests), metrics_present,
                          b.unmeasured)


def served_bins(st: ServiceTraffic, hourly: pd.DataFrame, index: TopologyIndex) -> dict[int, int]:
    """A service's logged inbound requests per time bin, counting each cell with the witness its total was taken
    from (the same cells and witness as the coverage table, so the bins sum to its count)."""
    out: dict[int, int] = defaultdict(int)
    if hourly.empty or not st.cells:
        return out
    ns = st.service.namespace
    for r in hourly.itertuples(index=False):
        if str(r.namespace) != ns:
            continue
        port = None if pd.isna(r.port) else _int(r.port)
        chosen = st.cells.get((str(r.pod), port))
        if chosen is not None and str(r.origin) == chosen:
            out[int(r.hour_ms)] += int(r.requests)
    return out


def _is_proxy_port(port: int) -> bool:
    """Envoy's own ports (15000-15090) are not application traffic."""
    return 15000 <= port <= 15090
