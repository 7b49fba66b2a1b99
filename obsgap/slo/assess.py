"""Can an SLO's numbers be believed? Its SLI as Prometheus computes it, held against what the witnesses show over the
same window and against the histogram it reads. Pure (obsgap.analysis computes it once): the measurements come in
(measure.py), verdicts go out.

Verdicts:
- broken: the SLI cannot measure what it claims (a selector matches no series, its `le` is no bucket bound, its
  threshold lies above the histogram's top bound);
- biased: it measures, on the wrong sample or with the wrong value (its metric misses real traffic, its error
  ratio differs from the logs', its threshold is interpolated between bounds);
- trustworthy: the logs agree with it;
- unverified: nothing contradicts it, but one side is missing: its SLI could not be run (no metrics, a query that
  failed) or no logs of its service were read; or how it counts its gRPC failures or WebSocket connections could
  not be told (`unverified_because`).

A latency SLI (a histogram's bucket at a bound against its count, or a quantile) is judged on the logged requests'
durations; an availability SLI on their status codes. The server logs are counted with the coverage table's rule
(witness.same_request), cell by cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

from obsgap.ambient import SAFE_REPORTER, reporter_misses_waypoint
from obsgap.bounds import bound, promql_matcher
from obsgap.errors import InputError
from obsgap.evidence import Evidence
from obsgap.istio import UNKNOWN, grpc_status, telemetry_metric
from obsgap.model import Service
from obsgap.names import split_host_port
from obsgap.slo.grpc import GRPC_CAUSE, Judgement, unseen_failures
from obsgap.slo.promql import Selector, selects, shape
from obsgap.slo.spec import Measured, SloSpec
from obsgap.slo.websockets import WEBSOCKET_CAUSE, Upgrades, counted_slow, upgrades_read
from obsgap.suggest.buckets import unit_of
from obsgap.text import pct
from obsgap.topology import MetricOff

if TYPE_CHECKING:  # the analysis package imports this module: a runtime import of it would run in a circle
    from obsgap.analysis.reconcile import Reconciliation

Verdict = Literal["trustworthy", "biased", "broken", "unverified"]
BROKEN = ("selector-matches-nothing", "latency-saturated")
ISTIO_SERVICE_LABELS = ("destination_service_name", "destination_service_namespace", "destination_service",
                        "destination_workload", "destination_workload_namespace", "destination_app",
                        "destination_canonical_service")
APP_SERVICE_LABELS = ("service", "app", "service_name", "app_kubernetes_io_name")
NAMESPACE_LABELS = ("destination_service_namespace", "destination_workload_namespace", "namespace",
                    "k8s_namespace_name")
NAME_LABELS = ("destination_service_name", "destination_canonical_service", "destination_app", *APP_SERVICE_LABELS)


@dataclass(frozen=True)
class Problem:
    cause: str
    reason: str
    fix: str
    broken: bool


@dataclass(frozen=True)
class SloAssessment:
    measured: Measured
    services: tuple[str, ...]
    """namespace/name of the Services the SLI selects (through its labels, its jobs' pods, or its own name)."""
    verdict: Verdict
    problems: tuple[Problem, ...]
    sli_metric: float | None
    """Share of good events by the metrics over the window (quantile SLOs: the quantile they report)."""
    sli_logs: float | None
    budget_metric: float | None
    """(1 - SLI) / (1 - objective): the error budget the window's SLI spends, as a burn rate (1: exactly it)."""
    budget_logs: float | None
    coverage: float | None
    """Events the SLI's metric counted / requests the logs show, for the services it selects."""
    requests_metric: int | None
    requests_logs: int | None
    threshold: float | None
    """A latency SLI's threshold, in its histogram's unit."""
    unit: str
    bounds: tuple[float, ...]
    namespace: str | None = None
    """Where its findings belong: the namespace of the Service it selects, else the one its selectors name, else the
    SLO object's own."""
    service: str | None = None
    """The Service it selects, else the one its selectors name, else the service the SLO names."""
    grpc_judged: bool = False
    """Whether the gRPC failures it may count as good were judged (slo.grpc): a finding of that cause is re-checked
    only then."""
    websockets_judged: bool = False
    """Whether the WebSocket connections it may count were judged (slo.websockets): a finding of that cause is
    re-checked only then."""
    unverified_because: str | None = None
    """Why nothing contradicts it yet it is not trustworthy, where that is not a missing side of the comparison:
    its Services serve gRPC, or it reads WebSocket connections, and how it counts them could not be told."""

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(p.reason for p in self.problems)

    @property
    def label(self) -> str:
        """How a title names it: the SLO's service and name, e.g. `feature-store/requests-availability`."""
        spec = self.measured.spec
        owner = spec.service or self.service or spec.namespace
        return f"{owner}/{spec.name}" if owner and owner != spec.name else spec.name

    def as_dict(self) -> dict[str, object]:
        """findings.json: a finding's evidence and a row of `slos`."""
        spec = self.measured.spec
        return {"slo": spec.name, "tool": spec.tool, "origin": spec.origin, "verdict": self.verdict,
                "causes": [p.cause for p in self.problems], "reasons": list(self.reasons),
                "fixes": [p.fix for p in self.problems], "objective": _round(spec.objective), "window": spec.window,
                "sli_metric": self.sli_metric, "sli_logs": self.sli_logs, "budget_metric": self.budget_metric,
                "budget_logs": self.budget_logs, "coverage": self.coverage, "requests_metric": self.requests_metric,
                "requests_logs": self.requests_logs, "threshold": self.threshold, "unit": self.unit or None,
                "bounds": list(self.bounds), "services": list(self.services), "error": self.measured.error,
                "kind": spec.kind, "slo_namespace": spec.namespace or None, "slo_service": spec.service or None,
                "unverified_because": self.unverified_because,
                "selectors": [{"selector": s, "series": n} for s, n in self.measured.selector_series],
                "queries": [_query_facts(q) for q in spec.queries]}


def _round(x: float | None) -> float | None:
    """0.9990000000000001 (99.9 / 100) as 0.999: a float that prints as its author wrote it."""
    return None if x is None else round(x, 10)


def _query_facts(query: str) -> dict[str, object]:
    """What the parser learnt of one SLI query: its metrics, aggregation and own window."""
    try:
        s = shape(query)
    except InputError:
        return {"query": query}
    return {"query": s.text, "metrics": sorted({sel.metric for sel in s.selectors}), "aggregations": list(
        s.aggregations), "ranges_seconds": list(s.ranges), "rate": s.rate, "quantile": s.quantile}


def _unit(family: str) -> tuple[str, float]:
    """A histogram's time unit and its factor to milliseconds (unit_of, the histogram checks' rule);
    ("", 0) for a histogram that is not of time."""
    unit, from_ms = unit_of(family)
    return (unit, 1 / from_ms) if unit in ("ms", "s") else ("", 0.0)


# --- which services an SLI is about ----------------------------------------------------------


def _services_by_istio(sel: Selector, ev: Evidence) -> list[Service] | None:
    if not any(sel.label(n) for n in ISTIO_SERVICE_LABELS):
        return None
    idx = ev.index
    out = []
    for svc in idx.topo.services:
        pods = idx.pods_of_service(svc)
        labels = {"destination_service_name": svc.name, "destination_service_namespace": svc.namespace,
                  "destination_service": svc.fqdn, "destination_app": svc.name,
                  "destination_canonical_service": svc.name, "destination_workload_namespace": svc.namespace,
                  "destination_workload": pods[0].workload if pods else svc.name}
        if all(m.matches(labels[m.name]) for m in sel.matchers if m.name in ISTIO_SERVICE_LABELS):
            out.append(svc)
    return out


def _services_by_job(sel: Selector, ev: Evidence) -> list[Service]:
    jobs = sel.label("job")
    if not jobs or ev.metrics is None:
        return []
    found: dict[tuple[str, str], Service] = {}
    targets = ev.metrics.frame("scrape_targets", ["job", "namespace", "pod"])
    for row in targets.itertuples(index=False):
        if selects(Selector("", jobs + sel.label("namespace")), {"job": str(row.job), "namespace": str(row.namespace)}):
            for svc in ev.index.services_of_pod(str(row.namespace), str(row.pod)):
                found[svc.key] = svc
    return list(found.values())


def _services_by_app(sel: Selector, ev: Evidence) -> list[Service] | None:
    found = _services_by_job(sel, ev)
    if found:
        return found
    named = [m for n in APP_SERVICE_LABELS for m in sel.label(n)]
    if named:
        return [s for s in ev.index.topo.services if all(m.matches(s.name) for m in named)
                and all(m.matches(s.namespace) for m in sel.label("namespace"))]
    return None


def selected_services(measured: Measured, ev: Evidence) -> list[Service]:
    spec = measured.spec
    for q in (spec.total, spec.quantile, spec.good, spec.bad, spec.ratio):
        if not q:
            continue
        for sel in shape(q).selectors:
            found = _services_by_istio(sel, ev) if sel.metric.startswith("istio_") else _services_by_app(sel, ev)
            if found:
                return found
    by_name = [s for s in ev.index.topo.services if s.name == spec.service]
    return by_name if len(by_name) == 1 else []


def _named(spec: SloSpec) -> tuple[str | None, str | None]:
    """The (namespace, service) an SLI's selectors pin with `=` matchers, whether or not such a Service exists."""
    namespace = service = None
    for q in spec.queries:
        for sel in shape(q).selectors:
            fqdn = sel.equal("destination_service")
            if fqdn and "." in fqdn:
                parts = split_host_port(fqdn)[0].split(".")
                service, namespace = service or parts[0], namespace or parts[1]
            namespace = namespace or next((v for n in NAMESPACE_LABELS if (v := sel.equal(n))), None)
            service = service or next((v for n in NAME_LABELS if (v := sel.equal(n))), None)
    return namespace, service


def _owner(spec: SloSpec, services: list[Service]) -> tuple[str | None, str | None]:
    if services:
        return services[0].namespace, services[0].name
    namespace, service = _named(spec)
    return namespace or spec.namespace or None, service or spec.service or None


# --- what the witnesses show -----------------------------------------------------------------


def logged(services: list[Service], ev: Evidence, traffic: Reconciliation) -> tuple[int, int] | None:
    """(requests, errors) the services' pods logged (server side), each cell (pod, port) counted with the witness
    the coverage table took for it. None when no log of theirs was read."""
    logs = ev.logs
    if logs is None or logs.inbound.empty or not services:
        return None
    chosen: dict[tuple[str, str, int | None], str] = {}
    for svc in services:
        st = traffic.services.get(svc.key)
        for (pod, port), origin in (st.cells.items() if st is not None else ()):
            chosen[(svc.namespace, pod, port)] = origin
    if not chosen:
        return None
    requests = errors = 0
    for row in logs.inbound.itertuples(index=False):
        port = None if pd.isna(row.port) else int(row.port)
        if chosen.get((str(row.namespace), str(row.pod), port)) == str(row.origin):
            requests += int(row.requests)
            errors += int(row.errors)
    return requests, errors


def _durations(services: list[Service], ev: Evidence) -> list[tuple[float, int]]:
    """(upper bound in ms, requests) on the logs' 2% scale, of the origin that logged most."""
    logs = ev.logs
    if logs is None or logs.durations.empty:
        return []
    keys = {(s.namespace, s.name) for s in services}
    df = logs.durations
    df = df[[(str(a), str(b)) in keys for a, b in zip(df["namespace"], df["service"], strict=True)]]
    if df.empty:
        return []
    origin = df.groupby("origin")["requests"].sum().idxmax()
    df = df[df["origin"] == origin].groupby("upper_ms", as_index=False)["requests"].sum()
    return sorted((float(u), int(n)) for u, n in zip(df["upper_ms"], df["requests"], strict=True))


def _share_within(durations: list[tuple[float, int]], threshold_ms: float) -> float | None:
    total = sum(n for _, n in durations)
    return sum(n for u, n in durations if u <= threshold_ms * 1.0001) / total if total else None


def _quantile(durations: list[tuple[float, int]], q: float) -> float | None:
    total = sum(n for _, n in durations)
    seen = 0
    for upper, n in durations:
        seen += n
        if total and seen >= q * total:
            return upper
    return None


def _burn(sli: float | None, objective: float | None) -> float | None:
    if sli is None or objective is None or objective >= 1:
        return None
    return round((1 - sli) / (1 - objective), 3)


def _num(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e5 else f"{x:.0f}"


# --- problems --------------------------------------------------------------------------------

_EMPTY_EFFECT = {
    "total": ("counts no events at all: the SLI is 0/0, the SLO shows no data and its burn-rate alerts never fire, "
              "whatever happens"),
    "bad": "counts no bad events: the SLO reads 100% and stays green whatever happens",
    "good": "counts no good events: the SLO reads 0% and its alerts page although the service may be fine",
    "ratio": "returns no data: the SLO shows no data and its alerts never fire, whatever happens",
    "quantile": "returns no data: the SLO shows no data and its alerts never fire, whatever happens",
}


def _role(spec: SloSpec, sel: Selector) -> str:
    """Which of the SLI's queries an empty selector breaks; the total's emptiness decides first."""
    for role in ("total", "ratio", "quantile", "bad", "good"):
        query = getattr(spec, role)
        if query and sel in shape(query).selectors:
            return role
    return "total"


def _job_hint(empty: list[Selector], ev: Evidence, services: list[Service]) -> str:
    if not any(sel.label("job") for sel in empty) or ev.metrics is None or not services:
        return ""
    pods = {(p.namespace, p.name) for s in services for p in ev.index.pods_of_service(s)}
    targets = ev.metrics.frame("scrape_targets", ["job", "namespace", "pod"])
    jobs = sorted({str(r.job) for r in targets.itertuples(index=False) if (str(r.namespace), str(r.pod)) in pods})
    if not jobs:
        return ""
    return (f" The pods of {', '.join(f'{s.namespace}/{s.name}' for s in services)} are scraped as job "
            f"{', '.join(repr(j) for j in jobs)}.")


def _selector_problems(m: Measured, ev: Evidence, services: list[Service],
                       explained: frozenset[str] = frozenset()) -> list[Problem]:
    """Selectors that match no series (`explained`: those another problem already accounts for)."""
    empty = []
    for text, n in m.selector_series:
        if n is None or text in explained:
            continue  # its count failed (m.error says why): no proof that it matches nothing
        sel = next(s for q in m.spec.queries for s in shape(q).selectors if s.text() == text)
        le = sel.equal("le")
        if not n and le is not None and m.bounds and m.error is None:
            spelled = _respelled(le, m)
            if spelled is not None:
                return [spelled]
        if n or (le is not None and m.bounds):
            continue  # a missing `le` bound: the bucket checks below say why
        empty.append(sel)
    if not empty:
        return []
    hint = _job_hint(empty, ev, services)
    roles = [_role(m.spec, sel) for sel in empty]
    effect = _EMPTY_EFFECT[next(r for r in ("total", "ratio", "quantile", "bad", "good") if r in roles)]
    shown = " and ".join(sel.text() for sel in empty)
    return [Problem("selector-matches-nothing",
                    f"{shown} {'matches' if len(empty) == 1 else 'match'} no series in the window, so the SLI "
                    f"{effect}.{hint}", f"Make the selector name series that exist{hint and ' (use that job)'}.",
                    True)]


def _reporter_problems(m: Measured, ev: Evidence, services: list[Service]) -> list[Problem]:
    """An SLI over Istio's request metrics that selects reporter="destination" (or "source") for a Service a
    waypoint serves: the waypoint reports its requests as reporter="waypoint", so the SLI reads none of them."""
    served = [s for s in services if ev.index.dataplane(s) == "waypoint"]
    if not served:
        return []
    counts = dict(m.selector_series)
    for q in m.spec.queries:
        for sel in shape(q).selectors:
            if not sel.metric.startswith("istio_"):
                continue
            missing = [x for x in sel.label("reporter") if reporter_misses_waypoint(x.op, x.value)
                       and x.op in ("=", "=~") and "destination" in x.value]  # the server side it means to read
            if not missing:
                continue
            names = ", ".join(f"{s.namespace}/{s.name}" for s in served)
            side = "destination"
            empty = not counts.get(sel.text()) and m.error is None  # a failed count is no proof of emptiness
            return [Problem(
                "selector-matches-nothing" if empty else "sli-misses-traffic",
                f"{sel.text()} selects {missing[0].text()}, but a waypoint serves {names}: it reports their requests "
                'as reporter="waypoint" (Istio 1.22 and later), so the SLI ' +
                ("matches no series" if empty else "misses the requests the waypoint served") + " (istio#61815).",
                f"Select {SAFE_REPORTER[side]} instead of {missing[0].text()}.", True)]
    return []


SERVER_REPORTER = {"sidecar": "destination", "waypoint": "waypoint"}
"""The reporter of the server side's series, by how the mesh sees the Service (TopologyIndex.dataplane)."""


def _telemetry_problems(m: Measured, ev: Evidence, services: list[Service],
                        traffic: Reconciliation) -> tuple[list[Problem], frozenset[str]]:
    """An SLI over one of Istio's metrics for a Service whose proxies a Telemetry resource (or the MeshConfig) keeps
    from reporting that metric, or from writing a label its selectors match on: the SLI reads none, or only part,
    of its requests. The proxies are those of the side the SLI reads: its sidecars or waypoint where its `reporter`
    matchers admit the server's reporter and not `source`; its callers' sidecars where they admit only `source`
    (the callers are the workloads the server side counted requests from). One problem per metric (a histogram's
    bucket and count selectors together); (the problems, broken first; the selectors they explain)."""
    counts = dict(m.selector_series)
    by_metric: dict[str, list[Selector]] = {}
    for sel in dict.fromkeys(s for q in m.spec.queries for s in shape(q).selectors):
        metric = telemetry_metric(sel.family)
        if metric is not None:
            by_metric.setdefault(metric, []).append(sel)
    problems: list[Problem] = []
    explained: set[str] = set()
    for metric, sels in by_metric.items():
        labels = tuple(sorted({x.name for sel in sels for x in sel.matchers} - {"__name__"}))
        client = all(_reads_client_side(sel) for sel in sels)
        off = [(s, found) for s in services if (found := _side_off(s, sels, metric, labels, client, ev, traffic))]
        if not off:
            continue
        series = [counts.get(sel.text()) for sel in sels]
        everywhere = all(found.everywhere for _, found in off) and len(off) == len(services)
        if 0 in series and not everywhere:
            continue  # partly off and nothing matched: no traffic, or another cause (the selector checks say)
        empty = all(n == 0 for n in series)
        whys = "; ".join(f"for {s.namespace}/{s.name}, {found.why}" for s, found in off)
        shares = [found.share for _, found in off]
        missed = f" ({pct(shares[0])} of its requests)" if len(off) == 1 and shares[0] is not None else ""
        side = 'as its callers\' sidecars report it (reporter="source")' if client else "as the server side reports it"
        problems.append(Problem(
            "selector-matches-nothing" if empty else "sli-misses-traffic",
            f"{' and '.join(sel.text() for sel in sels)} {'reads' if len(sels) == 1 else 'read'} {sels[0].family} "
            f"{side}, but {whys}: the SLI "
            + ("matches no series." if empty else f"misses the requests of those proxies{missed}."),
            (f"Select {SAFE_REPORTER['destination']} (the server side counts the same requests), or re-enable "
             f"{metric} for the client side in that Telemetry resource (or drop its tag override)." if client else
             f"Re-enable {metric} for the server side in that Telemetry resource (or drop its tag override), or "
             "measure the SLO from the application's own metrics."), empty))
        explained.update(sel.text() for sel in sels)
    return sorted(problems, key=lambda p: not p.broken), frozenset(explained)


def _side_off(svc: Service, sels: list[Selector], metric: str, labels: tuple[str, ...], client: bool, ev: Evidence,
              traffic: Reconciliation) -> MetricOff | None:
    """Why the proxies of the side the selectors read cannot count `metric` for the Service, or None."""
    if client:
        st = traffic.services.get(svc.key)
        if st is None:
            return None
        callers = {c: n for c, n in st.mesh_by_source.items() if c[1] != UNKNOWN and n > 0}
        return ev.index.callers_metric_off(callers, metric, labels, total=sum(st.mesh_by_source.values()))
    if any(_reads_server_side(sel, ev.index.dataplane(svc)) for sel in sels):
        return ev.index.metric_off(svc, metric, labels)
    return None


def _reads_server_side(sel: Selector, dataplane: str) -> bool:
    server = SERVER_REPORTER.get(dataplane)
    reporter = sel.label("reporter")
    return server is not None and bool(reporter) and all(x.matches(server) for x in reporter) \
        and not all(x.matches("source") for x in reporter)


def _reads_client_side(sel: Selector) -> bool:
    """Its `reporter` matchers admit `source` and neither server reporter: it reads the callers' count alone."""
    reporter = sel.label("reporter")
    return bool(reporter) and all(x.matches("source") for x in reporter) \
        and not any(all(x.matches(server) for x in reporter) for server in ("destination", "waypoint"))


def _respelled(le: str, m: Measured) -> Problem | None:
    """A bound the histogram has, spelled otherwise than the selector spells it: Prometheus 3 stores `le` as
    `500.0` (and `1.8e+06`) where Prometheus 2 kept the exposition's `500`. The selector then matches nothing."""
    value = bound(le)
    if value is None:
        return None
    stored = next((text for b, text in zip(m.bounds, m.bound_labels, strict=False) if b == value), None)
    if stored is None or stored == le:
        return None
    safe = promql_matcher("le", value)
    return Problem("selector-matches-nothing",
                   f'le="{le}" matches no series: this Prometheus stores that bound as le="{stored}" (Prometheus 3 '
                   "normalises `le` and `quantile` on ingestion; Prometheus 2 kept the exposition's spelling), so "
                   "the SLI reads nothing.",
                   f'Select the bound as {safe}, which matches it on Prometheus 2 and 3 alike (or le="{stored}" on '
                   "this one).", True)


def _latency_problems(m: Measured, threshold: float | None, unit: str, quantile: float | None,
                      websockets: float = 0.0) -> list[Problem]:
    """`websockets`: observations of upgraded connections above the top bound that the SLI reads (their
    lifetimes, not request latency)."""
    if threshold is None or not m.bounds:
        return []
    top = m.bounds[-1]
    counts = m.bucket_counts
    above = counts[-1] - counts[-2] if len(counts) >= 2 else 0.0
    inf_share = above / counts[-1] if len(counts) >= 2 and counts[-1] else 0.0
    if threshold > top * 1.0001 or (quantile is not None and inf_share > 1 - quantile):
        why = (f"its threshold {threshold:g} {unit} lies above the top finite bound {top:g} {unit}"
               if threshold > top * 1.0001 else
               f"{inf_share:.1%} of observations lie above the top finite bound {top:g} {unit}, so the "
               f"p{(quantile or 0) * 100:g} it reads is capped at {top:g} {unit}")
        if threshold <= top * 1.0001 and websockets >= 0.5 * above > 0:
            return [Problem("latency-saturated", f"The histogram cannot show it: {why}, and {websockets:,.0f} of "
                            "them are WebSocket connections (HTTP 101), recorded when they close with their "
                            "lifetime as their duration (+Inf saturation by connection lifetimes).",
                            'Leave upgraded connections out of the SLI: add response_code!="101" to its selectors '
                            "(larger buckets would only measure the lifetimes).", True)]
        return [Problem("latency-saturated", f"The histogram cannot show it: {why} (+Inf saturation).",
                        f"Add buckets above {max(threshold, top):g} {unit} (see histogram-inf-saturation's "
                        f"suggested layout).", True)]
    if not any(math.isclose(threshold, b, rel_tol=1e-6) for b in m.bounds):
        fix = _bound_fix(threshold, m.bounds, unit)
        if quantile is None:
            return [Problem("threshold-not-a-bucket-bound",
                            f"The SLI counts le=\"{threshold:g}\", which is no bound of the histogram "
                            f"({', '.join(_num(b) for b in m.bounds)} {unit}): that series does not exist and the "
                            "SLI reads nothing.", fix, True)]
        return [Problem("threshold-not-a-bucket-bound",
                        f"The threshold {threshold:g} {unit} is no bucket bound: histogram_quantile interpolates "
                        "between the bounds around it, so the SLI is a guess there.", fix, False)]
    return []


def _websocket_problem(m: Measured, sides: _Sides, up: Upgrades, ev: Evidence) -> list[Problem]:
    """A latency SLI that counts WebSocket connections among its slow events (their duration is the connection's
    lifetime)."""
    found = counted_slow(m, up, sides.threshold, sides.sli_metric)
    if found is None or found[0] < ev.settings.min_requests:
        return []
    slow, would = found
    said = f" Without them its share of fast requests, {pct(sides.sli_metric or 0.0)}, would be {pct(would)}." \
        if would is not None else ""
    return [Problem(
        WEBSOCKET_CAUSE,
        f"{slow:,.0f} of the events the SLI counts as slower than {sides.threshold:g} {sides.unit} are WebSocket "
        "connections (HTTP 101): Envoy records one when it closes, with the connection's lifetime as its duration, "
        f"so the SLI spends the error budget on connection lifetimes.{said}",
        'Leave upgraded connections out of the SLI: add response_code!="101" to its selectors.', False)]


def _bound_fix(threshold: float, bounds: tuple[float, ...], unit: str) -> str:
    below = [b for b in bounds if b < threshold]
    above = [b for b in bounds if b > threshold]
    near = " and ".join(f"{b:g} {unit}" for b in (below[-1:] + above[:1]))
    return (f"Hold the SLO at a bucket bound{f' ({near} are the nearest)' if near else ''}, or add {threshold:g} "
            f"{unit} to the histogram's buckets (obsgap --slo-latency puts it into the suggested layout).")


@dataclass(frozen=True)
class _Sides:
    """An SLI by the metrics and by the logs, over the same window."""

    sli_metric: float | None
    sli_logs: float | None
    requests_metric: int | None
    requests_logs: int | None
    threshold: float | None
    unit: str

    @property
    def coverage(self) -> float | None:
        if self.requests_metric is None or not self.requests_logs:
            return None
        return self.requests_metric / self.requests_logs


def _threshold(spec: SloSpec) -> float | None:
    if spec.kind == "quantile":
        return spec.threshold
    if spec.kind != "latency":
        return None
    for q in (spec.good, spec.bad, spec.total):
        for s in shape(q).selectors if q else ():
            le = s.equal("le")
            if le is not None:
                try:
                    return float(le)
                except ValueError:
                    return None
    return None


def _sides(m: Measured, ev: Evidence, services: list[Service], traffic: Reconciliation) -> _Sides:
    spec = m.spec
    source = spec.good or spec.bad or spec.quantile or spec.total
    sels = shape(source).selectors if source else ()
    unit, to_ms = _unit(sels[0].family if sels else "")
    logs = logged(services, ev, traffic)
    durations = _durations(services, ev) if spec.kind != "ratio" and to_ms else []
    threshold = _threshold(spec)
    sli_metric = sli_logs = None
    if spec.kind == "quantile":
        quantile = shape(spec.quantile).quantile if spec.quantile else None
        sli_metric = m.quantile_value
        true = _quantile(durations, quantile) if quantile is not None else None
        sli_logs = true / to_ms if true is not None else None
    else:
        sli_metric = None if m.ratio is None else 1 - m.ratio
        if spec.kind == "ratio" and logs is not None and logs[0]:
            sli_logs = 1 - logs[1] / logs[0]
        elif spec.kind == "latency" and threshold is not None and durations:
            sli_logs = _share_within(durations, threshold * to_ms)
    return _Sides(sli_metric, sli_logs, round(m.total) if m.total is not None else None, logs[0] if logs else None,
                  threshold, unit)


def _traffic_problem(sides: _Sides, services: list[Service], ev: Evidence) -> list[Problem]:
    cov = sides.coverage
    if (sides.requests_logs or 0) < ev.settings.min_requests or cov is None or not sides.requests_metric \
            or cov >= 1 - ev.tolerance():
        return []
    shown = ", ".join(f"{s.namespace}/{s.name}" for s in services)
    return [Problem(
        "sli-misses-traffic",
        f"The SLI's metric counted {sides.requests_metric:,} of the {sides.requests_logs:,} requests the logs of "
        f"{shown} show ({1 - cov:.1%} unseen: bypassing Envoy, excluded or TCP-proxied ports, or lost metrics): "
        "it is computed on a biased sample.",
        "Fix the gap the coverage findings for this service name, or measure the SLO from the application's own "
        "metrics, which see every request.", False)]


def _value_problem(spec: SloSpec, sides: _Sides, ev: Evidence) -> list[Problem]:
    if spec.kind == "quantile" or sides.sli_metric is None or sides.sli_logs is None \
            or (sides.requests_logs or 0) < ev.settings.min_requests:
        return []
    budget = 1 - spec.objective if spec.objective is not None and spec.objective < 1 else None
    noise = 3 * math.sqrt(max(sides.sli_logs * (1 - sides.sli_logs), 1e-9) / max(sides.requests_logs or 1, 1))
    allowed = max(noise, 0.2 * budget if budget else 0.0, 0.002)
    if abs(sides.sli_metric - sides.sli_logs) <= allowed:
        return []
    what = "an error ratio" if spec.kind == "ratio" else "a share of slow requests"
    return [Problem(
        "error-ratio-differs",
        f"The metrics give {what} of {1 - sides.sli_metric:.3%} bad, the logs {1 - sides.sli_logs:.3%} over the "
        "same window" + (" (errors on traffic the mesh does not see count only in the logs)"
                         if spec.kind == "ratio" else "") + ".",
        "Find the requests the metric misses or miscounts (see sli-misses-traffic and the coverage table) before the "
        "budget is spent or saved on this SLI.", False)]


def _grpc_problem(m: Measured, ev: Evidence, services: list[Service]) -> tuple[list[Problem], Judgement]:
    """gRPC failures the SLI counts as good: broken where its bad-events selector matches no series at all (it can
    never see an error: the SLO reads 100%), else biased."""
    judged = unseen_failures(m, ev, services)
    unseen = judged.unseen
    if unseen is None or unseen.calls < ev.settings.min_requests:
        return [], judged
    names = ", ".join(f"{s.namespace}/{s.name}" for s in services)
    worst = sorted(unseen.failures.items(), key=lambda kv: -kv[1])
    statuses = "; ".join(f"{grpc_status(code)[0]} ({code}): {n:,.0f}" for code, n in worst[:5])
    blind = unseen.bad and dict(m.selector_series).get(unseen.selector.text()) == 0
    ratio = 0.0 if blind and m.ratio is None else m.ratio  # no bad series: no errors, to the SLI
    would = ""
    if m.total and ratio is not None:
        corrected = min(1.0, ratio + unseen.calls / m.total)
        would = f" Its error ratio over the window, {pct(ratio)}, would be {pct(corrected)}."
    web = (" UNKNOWN (2) is also what Istio reports for gRPC-Web calls, whose trailers the grpc_web filter clears "
           "(istio#58430): if these are, they may be successes." if "2" in unseen.failures else "")
    codes = "|".join(str(c) for c in unseen.meant)
    return [Problem(
        GRPC_CAUSE,
        f"{unseen.selector.text()} counts {unseen.calls:,.0f} gRPC calls to {names} that failed in the window "
        f"({statuses}) as good: a gRPC call's HTTP status is 200 whatever its outcome (its status travels in the "
        f"grpc-status trailer; Istio labels it grpc_response_status), and the SLI classifies by "
        f"{unseen.matcher.text()}" + (": its selector matches no series, and the SLO reads 100% whatever fails."
                                      if blind else ".") + would + web,
        f"Classify gRPC calls by their status: count {unseen.selector.metric}{{request_protocol=\"grpc\", "
        f"grpc_response_status=~\"{codes}\"}} (with the SLI's other matchers; the statuses Envoy maps to the HTTP "
        "codes the SLI counts) among the bad events, and add request_protocol!=\"grpc\" to its response_code "
        "selector so an upstream's own HTTP error is not counted twice.", blind)], judged


def _verdict(m: Measured, problems: list[Problem], sides: _Sides, ev: Evidence) -> Verdict:
    if any(p.broken for p in problems):
        return "broken"
    if problems:
        return "biased"
    enough = (sides.requests_logs or 0) >= ev.settings.min_requests
    if m.error or sides.sli_metric is None or sides.sli_logs is None or not enough:
        return "unverified"  # one side of the comparison is missing: nothing confirms the SLI
    return "trustworthy"


def assess(m: Measured, ev: Evidence, traffic: Reconciliation) -> SloAssessment:
    spec = m.spec
    services = selected_services(m, ev)
    sides = _sides(m, ev, services, traffic)
    quantile = shape(spec.quantile).quantile if spec.quantile else None
    telemetry, explained = _telemetry_problems(m, ev, services, traffic)
    grpc, judged = _grpc_problem(m, ev, services)
    if grpc and judged.unseen is not None:
        explained |= {judged.unseen.selector.text()}
    reporter = _reporter_problems(m, ev, services)
    problems = reporter or [*telemetry, *grpc, *_selector_problems(m, ev, services, explained)]
    up = upgrades_read(m, ev, services)
    problems += _latency_problems(m, sides.threshold, sides.unit, quantile, up.above(m.bounds[-1]) if m.bounds else 0)
    websockets_judged = up.judged and not m.error and not any(p.broken for p in problems)
    if websockets_judged:
        problems += _websocket_problem(m, sides, up, ev)
    problems += _traffic_problem(sides, services, ev)
    if not any(p.broken for p in problems):
        problems += _value_problem(spec, sides, ev)
    namespace, service = _owner(spec, services)
    cov = sides.coverage
    verdict = _verdict(m, problems, sides, ev)
    because = _unverified_because(judged, up)
    if verdict == "trustworthy" and because:
        verdict = "unverified"
    return SloAssessment(
        m, tuple(f"{s.namespace}/{s.name}" for s in services), verdict, tuple(problems),
        None if sides.sli_metric is None else round(sides.sli_metric, 6),
        None if sides.sli_logs is None else round(sides.sli_logs, 6),
        None if spec.kind == "quantile" else _burn(sides.sli_metric, spec.objective),
        None if spec.kind == "quantile" else _burn(sides.sli_logs, spec.objective),
        None if cov is None else round(cov, 4), sides.requests_metric, sides.requests_logs, sides.threshold,
        sides.unit, m.bounds, namespace, service, grpc_judged=judged.judged and not reporter and not m.error,
        websockets_judged=websockets_judged, unverified_because=because if verdict == "unverified" else None)


def _unverified_because(grpc: Judgement, up: Upgrades) -> str | None:
    """Why an SLI nothing contradicts cannot be called trustworthy, where its gRPC or WebSocket events could not be
    judged."""
    if grpc.grpc_traffic and not grpc.judged:
        return ("its Services serve gRPC calls, and whether it counts their failures could not be told (the "
                "grpc_failures query failed, or its selector picks series that query does not tell apart)")
    if up.unknown:
        return ("it reads Istio's duration histogram, and how many WebSocket connections it counts could not be told "
                "(the upgraded_requests query failed)")
    return None
