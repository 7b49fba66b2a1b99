"""Join the witnesses of real traffic and the mesh's metrics per service, pod and port: the numbers every coverage
check, the coverage table and the timelines read. Computed once per run (obsgap.analysis).

A request two witnesses of one side saw is counted once (witness.same_request): per pod and port, the application's
or the sidecar's count, whichever is larger, and everything else about that cell (its time bins) from the same one.
A side that was not measured is unknown, never 0: `Reconciliation.mesh_unmeasured` says why the mesh's side is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from obsgap.evidence import Evidence, LogEvidence, MetricsEvidence
from obsgap.intervals import CoveredCounts, PodCoverage
from obsgap.istio import SERVER_REPORTERS, UNKNOWN
from obsgap.model import Pod, Service, ServicePort
from obsgap.text import duration_text, iso_ms, plural
from obsgap.topology import Dataplane, TopologyIndex
from obsgap.witness import (
    CALLER_LOGS,
    CALLER_SIDECARS,
    SERVER_LOGS,
    ZTUNNEL_LOGS,
    Interval,
    WitnessCounts,
    same_request,
    witness_words,
)

REQ_COLS = ["reporter", "destination_service_name", "destination_service_namespace", "source_workload",
            "source_workload_namespace", "destination_workload", "destination_workload_namespace", "namespace",
            "pod", "destination_port", "destination_service"]
INBOUND_PASSTHROUGH = "InboundPassthroughCluster"
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
    unit: str = "requests"
    """requests, or connections where the mesh sees the service at L4 only (ambient without a waypoint)."""

    @property
    def ratio(self) -> float | None:
        if not self.comparable or self.mesh is None or not self.observed:
            return None
        return round(self.mesh / self.observed, 4)

    @property
    def basis(self) -> str:
        return witness_words(self.witness)


@dataclass
class Served:
    """What one witness of the served pods (their logs, the services' own metrics, an eBPF agent) counted, per
    container port and pod."""

    witness: str
    ports: dict[int | None, PortTraffic] = field(default_factory=dict)
    """Container port (None: the witness gives none) -> traffic."""
    cells: dict[tuple[str, int | None], str] = field(default_factory=dict)
    """Logs only: (pod, container port) -> the origin (app, envoy) whose count stands for that cell."""
    errors: dict[str, int] = field(default_factory=dict)
    """Metric witnesses: pod -> requests answered 5xx."""
    undeclared: dict[str, int] = field(default_factory=dict)
    """pod -> requests it saw the pod serve on container ports no Service declares (port-missing-from-metrics)."""
    probes_estimated: dict[str, int] = field(default_factory=dict)
    """Witnesses that cannot tell kubelet's probes by their path: pod -> the probes taken off its count (expected
    from the probes' periods)."""

    @property
    def by_pod(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for pt in self.ports.values():
            for pod, n in pt.per_pod.items():
                out[pod] += n
        return out

    @property
    def total(self) -> int:
        return sum(pt.requests for pt in self.ports.values())

    @property
    def by_pod_all_ports(self) -> dict[str, int]:
        """by_pod with the requests on undeclared ports: everything it saw each pod serve."""
        out = dict(self.by_pod)
        for pod, n in self.undeclared.items():
            out[pod] = out.get(pod, 0) + n
        return out

    @property
    def total_all_ports(self) -> int:
        return self.total + sum(self.undeclared.values())

    @property
    def knows_ports(self) -> bool:
        """False when some of its counts name no port (a framework's metric without one)."""
        return None not in self.ports


WITNESS_ORDER = (SERVER_LOGS, "app-metrics", "ebpf")
"""Among witnesses that counted as many requests, the one whose detail goes furthest (logs give ports and
methods per line) stands for the service."""


def _rank(witness: str) -> int:
    kind = witness.partition(":")[0]
    return WITNESS_ORDER.index(kind) if kind in WITNESS_ORDER else len(WITNESS_ORDER)


@dataclass
class ServiceTraffic:
    service: Service
    pods: tuple[Pod, ...]
    served: dict[str, Served] = field(default_factory=dict)
    """Every witness of the served pods (obsgap.witness): server-logs, app-metrics:<family>, ebpf:<agent>."""
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
    dataplane: Dataplane = "sidecar"
    """How the mesh sees its requests (TopologyIndex.dataplane): `ztunnel` counts connections only."""
    connections_logged: dict[str, int] = field(default_factory=dict)
    """pod -> inbound connections ztunnel's access logs show (ambient mode; witness ztunnel-logs)."""

    @property
    def l4_only(self) -> bool:
        """Ambient pods and no waypoint that serves the Service: the mesh counts its connections, by design."""
        return self.dataplane == "ztunnel"

    @property
    def mesh_measured(self) -> bool:
        return self.mesh_unmeasured is None

    @property
    def primary(self) -> Served | None:
        """The witness of the served pods that counted most (their detail breaks ties): what the coverage row and
        the checks compare with the mesh. The others are held against it (witness-undercounts)."""
        if not self.served:
            return None
        return max(self.served.values(), key=lambda w: (w.total, -_rank(w.witness)))

    @property
    def ports(self) -> dict[int | None, PortTraffic]:
        return self.primary.ports if self.primary is not None else {}

    @property
    def cells(self) -> dict[tuple[str, int | None], str]:
        return self.primary.cells if self.primary is not None else {}

    @property
    def served_by_pod(self) -> dict[str, int]:
        """Pod -> requests the primary witness saw it serve on declared ports."""
        return self.primary.by_pod if self.primary is not None else {}

    @property
    def served_requests(self) -> int:
        return self.primary.total if self.primary is not None else 0

    def served_by(self, witness: str) -> Served:
        found = self.served.get(witness)
        if found is None:
            found = self.served[witness] = Served(witness)
        return found

    @property
    def mesh_for_pods(self) -> float:
        """Requests the mesh counted for this service's pods under any Service name."""
        return self.mesh_requests + sum(self.peer_mesh_by_pod.values())

    @property
    def observed(self) -> int:
        """The best count of real requests: what the served pods' witness saw, else what callers saw (0 without a
        witness)."""
        return int(max(self.served_requests, self.client_logs, round(self.source_reported)))

    @property
    def witness(self) -> str | None:
        """The witness `observed` rests on (obsgap.witness), or None."""
        served = self.served_requests
        if served and served >= max(self.client_logs, self.source_reported) and self.primary is not None:
            return self.primary.witness
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
        """The witness's count and what the mesh counted for the same pods or callers: like with like. A service
        the mesh sees at L4 only (ambient, no waypoint) compares connections: ztunnel's logs against its metrics."""
        if self.l4_only:
            return self._connections()
        witness = self.witness
        if witness is None:
            return Comparison(None, None if self.mesh_unmeasured else self.mesh_requests, None, False,
                              reason=NO_WITNESS)
        cmp = self._callers(witness) if witness in (CALLER_LOGS, CALLER_SIDECARS) else self._server(witness)
        if self.mesh_unmeasured:
            return Comparison(cmp.observed, None, witness, False, cmp.note, f"mesh not measured: "
                              f"{self.mesh_unmeasured}", cmp.pods_with_logs, cmp.pods_total)
        return cmp

    def _connections(self) -> Comparison:
        mesh = None if self.mesh_unmeasured else self.tcp_connections
        requests = f"; {self.observed:,} requests seen by {self.observed_by}" if self.observed else ""
        if not self.connections_logged:
            return Comparison(None, mesh, None, False, f"L4 only (ambient, no waypoint){requests}",
                              "L4 only by design (ambient, no waypoint): ztunnel counts connections, not requests, "
                              "and no witness of connections (ztunnel's access logs) was read", unit="connections")
        logged = sum(self.connections_logged.values())
        seen, total = len(self.connections_logged), len(self.pods)
        note = f"ztunnel logs of {seen} of {total} pods{requests}"
        if self.mesh_unmeasured:
            return Comparison(logged, None, ZTUNNEL_LOGS, False, note, f"mesh not measured: {self.mesh_unmeasured}",
                              seen, total, unit="connections")
        if seen < total:  # ztunnel's metrics name the Service, not the pod: some pods' lines cannot be compared
            return Comparison(logged, mesh, ZTUNNEL_LOGS, False, note, "ztunnel's logs show only some pods and its "
                              "metrics count the Service's connections, not each pod's", seen, total,
                              unit="connections")
        return Comparison(logged, mesh, ZTUNNEL_LOGS, True, note, None, seen, total, unit="connections")

    def _callers(self, witness: str) -> Comparison:
        if witness == CALLER_LOGS:
            logged = sum(self.caller_logs.values())
            mesh = sum(self.mesh_by_source.get(c, 0.0) for c in self.caller_logs if c[1] != UNKNOWN)
            dark = sum(n for c, n in self.caller_logs.items() if c[1] == UNKNOWN)
            if dark:
                unknown = sum(v for c, v in self.mesh_by_source.items() if c[1] == UNKNOWN)
                mesh += min(unknown, dark)  # other callers outside the mesh share that label
            return Comparison(logged, mesh, witness, True,
                              f"{plural(len(self.caller_logs), 'calling workload')} with logs")
        mesh = sum(self.mesh_by_source.get(c, 0.0) for c in self.source_by_source)
        return Comparison(round(sum(self.source_by_source.values())), mesh, witness, True,
                          plural(len(self.source_by_source), "calling workload"))

    def _server(self, witness: str) -> Comparison:
        seen = [p for p, n in self.served_by_pod.items() if n > 0]
        total, served = len(self.pods), self.served_requests
        what = "logs" if witness == SERVER_LOGS else witness_words(witness)
        note = f"{what} of {len(seen)} of {total} pods" if total else ""
        if self.covered:
            note += f"; {self.coverage_text()}"
        if self.covered_without_pod_metrics:
            return Comparison(served, self.mesh_for_pods, witness, False, note,
                              "logs cover part of the window and the metrics have no pod label to count that part "
                              "alone", len(seen), total)
        if self.mesh_by_pod:
            shared = self.peer_mesh_by_pod.get("", 0.0) * len(seen) / total if total else 0.0
            mesh = shared + sum(self.mesh_by_pod.get(p, 0.0) + self.peer_mesh_by_pod.get(p, 0.0) for p in seen)
            return Comparison(served, mesh, witness, True, note, None, len(seen), total)
        if len(seen) >= total:
            return Comparison(served, self.mesh_for_pods, witness, True, note, None, len(seen), total)
        return Comparison(served, self.mesh_for_pods, witness, False, note,
                          f"only some pods were seen ({what}) and the metrics have no pod label to count those pods "
                          "alone", len(seen), total)

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
        self.passthrough_by_pod: dict[tuple[str, str], float] = {}
        """(namespace, pod) -> requests the mesh counted to a port no Service declares (InboundPassthroughCluster)."""
        w = ev.window
        self.window = Interval(int(w.start.timestamp() * 1000), int(w.end.timestamp() * 1000))

    def traffic(self, svc: Service) -> ServiceTraffic:
        st = self.services.get(svc.key)
        if st is None:
            st = ServiceTraffic(svc, self.idx.pods_of_service(svc), window=self.window,
                                mesh_unmeasured=self.unmeasured or self.idx.request_metrics_off(svc),
                                dataplane=self.idx.dataplane(svc))
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
            served = self.traffic(svc).served_by(SERVER_LOGS)
            served.ports.setdefault(port, PortTraffic(port, sp)).http_lines += int(row.http_requests)
        for u in self.undeclared.values():
            self._on_undeclared(u.pod, SERVER_LOGS, u.requests)
        for (svc_key, pod_name, port), by_origin in cells.items():
            st = self.services[svc_key]
            served = st.served_by(SERVER_LOGS)
            origin, n = same_request(by_origin)
            cov = covered.covered(svc_key[0], pod_name) if covered is not None else None
            if cov is not None and covered is not None:  # partial logs: the counts of the bins they cover
                origin, n = same_request({o: covered.logs.get((svc_key[0], pod_name, o, port), 0) for o in by_origin})
                st.covered[pod_name] = cov
            served.cells[(pod_name, port)] = origin or "envoy"
            served.ports[port].per_pod[pod_name] += n

    def witness_counts(self, wc: WitnessCounts) -> None:
        """A metric witness (the services' own metrics, an eBPF agent): per observed pod, port and route. Requests to
        the paths kubelet probes and Prometheus scrapes reach through pilot-agent are left out where the route says
        so, as for logs; a witness without a port counts for the service's one port when it has one."""
        family = wc.family
        seen: dict[tuple[str, str], tuple[Pod, Served]] = {}
        for row in wc.rows.itertuples(index=False):
            pod = self.idx.pods_by_key.get((str(row.namespace), str(row.pod)))
            if pod is None or not self.idx.in_scope(pod):
                continue
            route = str(row.route)
            if route in family.excluded_routes or (family.probes_by_path and route in pod.agent_paths):
                continue
            port = None if pd.isna(row.port) else int(row.port)
            port = port if port is not None else self._only_port(pod)
            n = round(float(row.requests))
            target = self.target_of(pod, port)
            if target is None:
                if port is not None and not (pod.sidecar.present and _is_proxy_port(port)):
                    self._undeclared(pod, port, n, n)
                    self._on_undeclared(pod, wc.witness, n)
                continue
            svc, sp = target
            served = self.traffic(svc).served_by(wc.witness)
            seen[pod.key] = (pod, served)
            pt = served.ports.setdefault(port, PortTraffic(port, sp))
            pt.per_pod[pod.name] += n
            pt.http_lines += n  # an HTTP server's own count: every request is HTTP
            served.errors[pod.name] = served.errors.get(pod.name, 0) + round(float(row.errors))
        if not family.probes_by_path:
            for pod, served in seen.values():
                if family.sees_probes == "always" or not pod.sidecar.present:
                    self._less_probes(served, pod)

    def _less_probes(self, served: Served, pod: Pod) -> None:
        """kubelet's probes, which this witness counts as requests and cannot tell by their path: their expected
        number over the window (1 / periodSeconds each) comes off the pod's busiest port."""
        expected = round(pod.probes_per_second * self.window.seconds)
        cells = [pt for pt in served.ports.values() if pt.per_pod.get(pod.name)]
        if not expected or not cells:
            return
        busiest = max(cells, key=lambda pt: pt.per_pod[pod.name])
        taken = min(expected, busiest.per_pod[pod.name])
        busiest.per_pod[pod.name] -= taken
        busiest.http_lines = max(0, busiest.http_lines - taken)
        served.probes_estimated[pod.name] = taken

    def _only_port(self, pod: Pod) -> int | None:
        """The container port a witness without ports counts for: the one port of the one Service selecting the
        pod, unless the mesh counted requests to the pod on ports no Service declares (InboundPassthroughCluster):
        then which port each request took is unknown (None)."""
        services = self.idx.services_of_pod(pod.namespace, pod.name)
        if len(services) != 1 or len(services[0].ports) != 1 or self.passthrough_by_pod.get(pod.key):
            return None
        target = services[0].ports[0].target_port
        if isinstance(target, int):
            return target
        named = [num for _, num, name in pod.container_ports if name == target]
        return named[0] if named else None

    def _on_undeclared(self, pod: Pod, witness: str, n: int) -> None:
        services = self.idx.services_of_pod(pod.namespace, pod.name)
        if services:
            served = self.traffic(services[0]).served_by(witness)
            served.undeclared[pod.name] = served.undeclared.get(pod.name, 0) + n

    def _undeclared(self, pod: Pod, port: int, requests: int, http_lines: int) -> None:
        u = self.undeclared.setdefault((pod.namespace, pod.name, port), UndeclaredPort(pod, port, 0, 0))
        u.requests = max(u.requests, requests)
        u.http_lines += http_lines

    def mesh(self, metrics: MetricsEvidence) -> bool:
        req = metrics.frame("mesh_requests", REQ_COLS)
        for row in req.itertuples(index=False):
            found = self.idx.services_by_key.get((row.destination_service_namespace, row.destination_service_name))
            if found is None:
                if row.reporter in SERVER_REPORTERS and str(row.destination_service_name).startswith(
                        INBOUND_PASSTHROUGH):
                    key = (str(row.namespace), str(row.pod))
                    self.passthrough_by_pod[key] = self.passthrough_by_pod.get(key, 0.0) + float(row.value)
                continue
            st = self.traffic(found)
            value = float(row.value)
            source = (str(row.source_workload_namespace), str(row.source_workload))
            if row.reporter in SERVER_REPORTERS:
                st.mesh_requests += value
                st.mesh_by_source[source] += value
                if row.pod and row.reporter == "destination":  # a waypoint's `pod` is its own, not the server's
                    st.mesh_by_pod[row.pod] += value
                if row.source_workload == UNKNOWN:
                    st.unknown_source += value
            elif row.reporter == "source":
                st.source_reported += value
                st.source_by_source[source] += value
        for row in metrics.frame("mesh_tcp_connections", REQ_COLS).itertuples(index=False):
            found = self.idx.services_by_key.get((row.destination_service_namespace, row.destination_service_name))
            if found is not None and row.reporter in SERVER_REPORTERS:
                self.traffic(found).tcp_connections += float(row.value)
        return not req.empty

    def ztunnel_logs(self, logs: LogEvidence) -> None:
        """Inbound connections ztunnel's access logs show per pod, for the Service each line names (`dst.service`,
        the one ztunnel's metrics count it under), else the one the pod serves on that port. Where two Services
        select a pod on one port (a StatefulSet's headless one), ztunnel names the one the caller dialled, or
        guesses one of them (istio/ztunnel src/proxy.rs guess_inbound_service), and counts it there."""
        if logs.connections.empty:
            return
        for row in logs.connections.itertuples(index=False):
            if row.direction != "inbound":
                continue
            pod = self.idx.pods_by_key.get((str(row.namespace), str(row.pod)))
            if pod is None or not self.idx.in_scope(pod):
                continue
            named = self._named_service(pod, getattr(row, "authority", None))
            target = named or self.target_of(pod, _int(row.port))
            if target is not None:
                logged = self.traffic(target[0]).connections_logged
                logged[pod.name] = logged.get(pod.name, 0) + int(row.connections)

    def _named_service(self, pod: Pod, host: object) -> tuple[Service, None] | None:
        """The pod's Service a ztunnel line names by its FQDN (`name.namespace.svc.<cluster domain>`)."""
        if not isinstance(host, str) or ".svc" not in host:
            return None
        own = {s.key: s for s in self.idx.services_of_pod(pod.namespace, pod.name)}
        found = self.idx.resolve_service_name(host, None, among=own)
        return (found, None) if found is not None else None

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
            if not st.served_requests:
                continue
            if st.primary is not None and not st.primary.knows_ports:
                for pod in st.pods:  # a witness without ports counts a pod's undeclared ports too: so must the mesh
                    st.peer_mesh_by_pod[pod.name] += self.passthrough_by_pod.get(pod.key, 0.0)
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
    for wc in ev.metrics.witnesses if ev.metrics is not None else ():
        b.witness_counts(wc)
    if ev.covered is not None:
        b.covered_mesh(ev.covered)
    if logs is not None:
        b.caller_logs(logs)
        b.ztunnel_logs(logs)
    b.peer_credit()
    return Reconciliation(b.services, sorted(b.undeclared.values(), key=lambda u: -u.requests), metrics_present,
                          b.unmeasured)


HourlyCell = tuple[str, int, int]
"""(origin, bin start ms, requests): one row of the logs' hourly counts, under its (namespace, pod, port)."""


def hourly_by_namespace(hourly: pd.DataFrame) -> dict[tuple[str, str, int | None], list[HourlyCell]]:
    """The logs' hourly counts grouped once by (namespace, pod, port), so each service reads only the rows of its
    own pods' ports (not its whole namespace's, once per service)."""
    out: dict[tuple[str, str, int | None], list[HourlyCell]] = defaultdict(list)
    if hourly.empty:
        return out
    columns = [hourly[c].astype(object).tolist() for c in ("namespace", "pod", "port", "origin", "hour_ms",
                                                             "requests")]
    for ns, pod, port, origin, hour_ms, requests in zip(*columns, strict=True):
        key = (str(ns), str(pod), None if port is None or pd.isna(port) else _int(port))
        out[key].append((str(origin), int(hour_ms), int(requests)))
    return out


def served_bins(st: ServiceTraffic, hourly: Mapping[tuple[str, str, int | None], list[HourlyCell]]) -> dict[int, int]:
    """A service's logged inbound requests per time bin, counting each cell with the witness its total was taken
    from (the same cells and witness as the coverage table, so the bins sum to its count)."""
    out: dict[int, int] = defaultdict(int)
    ns = st.service.namespace
    for (pod, port), chosen in st.cells.items():  # a property over the witnesses: once, not per row
        for origin, hour_ms, requests in hourly.get((ns, pod, port), ()):
            if origin == chosen:
                out[hour_ms] += requests
    return out


def _is_proxy_port(port: int) -> bool:
    """Envoy's own ports (15000-15090) are not application traffic."""
    return 15000 <= port <= 15090
