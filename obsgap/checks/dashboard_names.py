"""dashboard-reads-unknown-name: dashboard queries and rules that select a workload, Service or namespace by a name the
mesh does not have (the name contract, read from the other side: the names people query by)."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from obsgap.checks.base import CheckInputs, Skip
from obsgap.checks.dashboard_queries import (
    GRAFANA_VARIABLE,
    Board,
    Judged,
    PerCauseDashboardCheck,
    by_dashboard,
    grafana_query,
    mesh_pods,
)
from obsgap.istio import TELEMETRY_METRICS, telemetry_metric
from obsgap.model import Finding, FindingEvidence, PanelQuery, Severity, Suggestion
from obsgap.slo.promql import Matcher, Selector, selectors_of
from obsgap.text import full_match

DOC = "https://istio.io/latest/docs/reference/config/metrics/#labels"
NAME_LABELS = {  # label -> (the kind of name, the label naming its namespace)
    "source_workload": ("workload", "source_workload_namespace"),
    "destination_workload": ("workload", "destination_workload_namespace"),
    "destination_service_name": ("service", "destination_service_namespace"),
    "destination_service": ("host", None),
    "source_workload_namespace": ("namespace", None),
    "destination_workload_namespace": ("namespace", None),
    "destination_service_namespace": ("namespace", None),
}
CAUSES = {"workload": "unknown-workload", "service": "unknown-service", "host": "unknown-service",
          "namespace": "unknown-namespace", "metric": "unknown-metric"}
METRIC = "unknown-metric"
_ISTIO_FAMILY = re.compile(r"istio_(?:requests?|responses?|tcp)_\w+")
"""The names of Istio's standard metrics' families, misspelled or not (`istio_request_total`)."""
RETIRED = {"istio_request_duration_seconds": "istio_request_duration_milliseconds"}
"""Names Istio's proxies exported before telemetry v2 (Istio 1.5) and no longer do: the histogram is in
milliseconds under its new name (istio#31516, flagger#478)."""
_SUFFIXES = ("_bucket", "_sum", "_count")
_SERIES_NAMES = ("source_workload_namespace", "source_workload", "destination_workload_namespace",
                 "destination_workload", "destination_service_namespace", "destination_service_name")
_FRAMES = ("mesh_requests", "mesh_tcp_connections")
_JOB_SUFFIX = re.compile(r"-\d{8,10}$")
"""What Istio strips from a CronJob's Job name to name the workload (pkg/kube GetDeployMetaFromPod)."""
WORKLOAD_NAME_LABEL = "service.istio.io/workload-name"
"""A pod label Istio (1.25+) names the workload by, overriding the controller's name."""
SPECIAL = frozenset({"unknown", "PassthroughCluster", "BlackHoleCluster", "InboundPassthroughCluster",
                     "InboundPassthroughClusterIpv4", "InboundPassthroughClusterIpv6"})
"""Values Istio's proxies write for what has no workload or Service name."""


@dataclass(frozen=True, eq=False)
class UnknownNameEvidence(FindingEvidence):
    """The dashboard's (or rule group's) queries that select a name no pod, controller, Service or series has."""

    dashboard: str
    """The dashboard's title, or the rule group's name."""
    queries: int
    names: list[dict[str, Any]]
    """Each matcher that names nothing: `label`, `matcher` (as obsgap reads it), `closest` (the most similar name
    the mesh has, or null), `namespaces` (where the selector pins a namespace: those the name exists in)."""
    panels: list[str] = field(default_factory=list)
    rule_file: str | None = None
    """For a rule group Prometheus evaluates: the file it was loaded from."""


class DashboardReadsUnknownName(PerCauseDashboardCheck):
    """What it does: reads every Grafana dashboard given (`--dashboards`) and every alerting and recording rule
    Prometheus evaluates (/api/v1/rules) for selectors over Istio's standard metrics that name a workload
    (`source_workload`, `destination_workload`), a Service (`destination_service_name`, `destination_service`) or a
    namespace (`*_namespace`) with `=` or `=~`, and holds each name against those the mesh has: the topology's pods,
    controllers, Services and ServiceEntries, and the window's request and TCP series. A name none of them has
    selects nothing. So does a metric named as Istio's standard ones are that Istio does not export and no series
    of the window has: a typo (`istio_request_total`), or `istio_request_duration_seconds`, which telemetry v2
    renamed to `istio_request_duration_milliseconds` in Istio 1.5.

    Why is this bad? The query reads no series, and nothing says so: an alert on it cannot fire (one on `absent()`
    fires all the time), a panel shows no data, which reads as no traffic. The names differ more often than one
    thinks: Istio's Helm chart names its ingress gateway after the release (`istio-ingress`), istioctl's profiles
    `istio-ingressgateway`; a Service renamed, a namespace per environment.

    Example: Istio's stability-test alert `Ingress200RateLow`, `source_workload="istio-ingressgateway"`, on a mesh
    whose gateway was installed with `helm install istio-ingress istio/gateway`.

    Use instead: the name the mesh has (the closest one is suggested), or a regex that holds every installation's
    (`source_workload=~"istio-ingress(gateway)?"`).
    """

    id = "dashboard-reads-unknown-name"
    title = "Dashboards and rules selecting a name the mesh does not have"
    needs = ("topology", "metrics")
    queries = _FRAMES
    kinds = ("Service", "Pod", "Namespace", "networking.istio.io/ServiceEntry")
    doc_url = DOC
    causes = ("unknown-workload", "unknown-service", "unknown-namespace", METRIC)
    impact_unit = "dashboard queries"
    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        out = []
        for board, judged in cls.judged(inputs).items():
            by_cause: dict[str, list[_Unknown]] = defaultdict(list)
            for u in judged.found:
                by_cause[u.cause].append(u)
            out += [_finding(board, cause, found) for cause, found in sorted(by_cause.items())]
        return out

    @classmethod
    def judge(cls, inputs: CheckInputs) -> dict[Board, Judged]:
        """Per dashboard (or rule group) and cause: a regex Python reads otherwise than Prometheus, or (under -n) a
        name not pinned to a namespace in scope, leaves its kind unjudged."""
        return _judge_all(inputs)


@dataclass(frozen=True)
class _Unknown:
    query: PanelQuery
    matcher: Matcher
    cause: str
    closest: str | None
    elsewhere: tuple[str, ...] = ()
    """The namespaces where the name exists, the selector pinning it to another one."""
    pinned: bool = False
    """The selector pins the name's namespace (`=`)."""


@dataclass(frozen=True)
class _Known:
    """Every name the mesh has, by kind: from the topology (in scope and not) and the window's series."""

    names: Mapping[str, frozenset[tuple[str, str]]]
    """kind -> (namespace, name); hosts and namespaces with an empty namespace."""
    scope: frozenset[str]
    """The namespaces of -n (none: the whole mesh was read)."""
    metrics: frozenset[str] | None = None
    """The metric names with samples in the window; None where they were not read."""
    _sorted: dict[tuple[str, str | None], list[str]] = field(default_factory=dict, compare=False, repr=False)

    def candidates(self, kind: str, namespace: str | None) -> list[str]:
        """The names of a kind (in one namespace, or any), sorted once per run: a mesh's rules ask for them per
        matcher."""
        key = (kind, namespace)
        if key not in self._sorted:
            self._sorted[key] = sorted({n for ns, n in self.names[kind] if namespace in (None, ns)})
        return self._sorted[key]

    def has(self, kind: str, value: str) -> bool:
        """A name that is not among the candidates yet is the mesh's: a Service's FQDN under any cluster domain
        (`reviews.bookinfo.svc.corp.local`)."""
        if kind != "host":
            return False
        name, _, rest = value.partition(".")
        namespace, _, tail = rest.partition(".")
        return tail.startswith("svc.") and (namespace, name) in self.names["service"]

    def elsewhere(self, kind: str, value: str) -> list[str]:
        """The namespaces where a name the selector pins to another one exists."""
        return sorted({ns for ns, n in self.names[kind] if n == value and ns})


def _known(inputs: CheckInputs) -> _Known:
    topo = inputs.index.topo
    metrics = inputs.metrics
    failed = [q for q in _FRAMES if metrics is None or q in metrics.failed]
    if metrics is None or failed:
        raise Skip(f"the query {failed[0]} failed: the names in the window's series are unknown")
    frames = [metrics.frame(q, [*_SERIES_NAMES, "destination_service"]) for q in _FRAMES]
    if all(f.empty for f in frames):
        raise Skip("Prometheus holds no series of istio_requests_total or istio_tcp_connections_opened_total in the "
                   "window (in the namespaces in scope): which names the mesh's traffic carries is unknown")
    pods = (*topo.context_pods, *topo.pods)
    services = (*topo.context_services, *topo.services)
    workloads = {(p.namespace, w) for p in pods for w in (p.workload, p.name, p.labels.get(WORKLOAD_NAME_LABEL),
                                                          p.labels.get("deploymentconfig")) if w} | {
        (w.namespace, _JOB_SUFFIX.sub("", w.name) if w.kind == "Job" else w.name)
        for w in (*topo.workloads, *topo.context_workloads)}
    hosts = {h for se in topo.service_entries for h in se.hosts}
    svc = {(s.namespace, s.name) for s in services} | {(se.namespace, h) for se in topo.service_entries
                                                       for h in se.hosts}
    namespaces = set(topo.namespaces) | {p.namespace for p in pods} | {s.namespace for s in services}
    for frame in frames:
        columns = {c: frame[c].astype(str) for c in (*_SERIES_NAMES, "destination_service")}
        workloads |= set(zip(columns["source_workload_namespace"], columns["source_workload"], strict=True))
        workloads |= set(zip(columns["destination_workload_namespace"], columns["destination_workload"], strict=True))
        svc |= set(zip(columns["destination_service_namespace"], columns["destination_service_name"], strict=True))
        hosts |= set(columns["destination_service"])
        namespaces |= {n for c in _SERIES_NAMES if c.endswith("_namespace") for n in columns[c]}
    return _Known({"workload": frozenset(workloads), "service": frozenset(svc),
                   "host": frozenset(("", h) for h in hosts if h), "namespace": frozenset(("", n) for n in namespaces)},
                  frozenset(inputs.settings.namespaces), metrics.metric_names)


def _judge_all(inputs: CheckInputs) -> dict[Board, Judged]:
    if not inputs.dashboards:
        return {}
    mesh_pods(inputs)  # none known: which names the mesh has cannot be told
    known = _known(inputs)
    out: dict[Board, Judged] = {}
    for board, queries in by_dashboard(inputs).items():
        judged = out[board] = Judged()
        for q in queries:
            _judge(q, known, judged)
    return out


def _judge(q: PanelQuery, known: _Known, judged: Judged) -> None:
    """The query's matchers on names the mesh does not have, unless another selector of the query over the same
    metric names one it has under the same label (`... or ...{source_workload="istio-ingress"}`, written for both)."""
    if q.panel.startswith("variable $") or "istio_" not in q.expr:
        return
    parsed = grafana_query(q.expr)
    if parsed is None:
        judged.unjudged |= set(CAUSES.values())
        return
    found: list[tuple[Selector, _Unknown]] = []
    read: set[tuple[str, str]] = set()
    selectors = selectors_of(parsed)
    judged.found += _unknown_metrics(q, selectors, known, judged)
    for sel in selectors:
        if telemetry_metric(sel.family) is None:
            continue
        equal = {m.name: m.value for m in sel.matchers  # a variable's or Istio's "unknown": no namespace pinned
                 if m.op == "=" and GRAFANA_VARIABLE not in m.value and m.value not in SPECIAL}
        for m in sel.matchers:
            if m.name not in NAME_LABELS or m.op not in ("=", "=~") or GRAFANA_VARIABLE in m.value:
                continue
            kind, ns_label = NAME_LABELS[m.name]
            namespace = equal.get(ns_label) if ns_label else None
            if known.scope and (kind == "namespace" or namespace not in known.scope):
                judged.unjudged.add(CAUSES[kind])  # other namespaces' names were not all read
                continue
            verdict = _names(m, known.candidates(kind, namespace))
            if verdict is None:
                judged.unjudged.add(CAUSES[kind])
            elif verdict or (m.op == "=" and known.has(kind, m.value)):
                read.add((sel.family, CAUSES[kind]))
            else:
                elsewhere = known.elsewhere(kind, m.value) if namespace is not None and m.op == "=" else []
                closest = m.value if elsewhere else _closest(m.value, known.candidates(kind, None))
                found.append((sel, _Unknown(q, m, CAUSES[kind], closest, tuple(elsewhere), namespace is not None)))
    judged.found += [u for sel, u in found if (sel.family, u.cause) not in read]


def _unknown_metrics(q: PanelQuery, selectors: list[Selector], known: _Known, judged: Judged) -> list[_Unknown]:
    """The query's selectors over a name shaped as Istio's standard metrics' that Istio does not export and no
    series of the window has (`istio_request_total`, the retired `istio_request_duration_seconds`), unless the
    query also reads one of Istio's standard metrics (Istio's own dashboards `or` the retired name in)."""
    odd = [s for s in selectors if _ISTIO_FAMILY.fullmatch(s.metric) and telemetry_metric(s.family) is None]
    if not odd or any(telemetry_metric(s.family) is not None for s in selectors):
        return []
    if known.metrics is None:
        judged.unjudged.add(METRIC)
        return []
    out = []
    standard = [m.prometheus + x for m in TELEMETRY_METRICS.values() for x in ("", *_SUFFIXES)]
    for sel in odd:
        if sel.metric in known.metrics:
            continue
        suffix = next((x for x in _SUFFIXES if sel.metric.endswith(x)), "")
        family = sel.metric.removesuffix(suffix) if suffix else sel.metric
        closest = RETIRED[family] + suffix if family in RETIRED else _closest(sel.metric, standard)
        out.append(_Unknown(q, Matcher("__name__", "=", sel.metric), METRIC, closest))
    return out


def _names(m: Matcher, candidates: list[str]) -> bool | None:
    """Whether the matcher selects a name the mesh has (or one Istio writes for none); None where its regex cannot
    be read alike."""
    empty = full_match(m.value, "") if m.op == "=~" else m.value == ""
    if empty is None or empty:
        return None  # unreadable alike, or matching series without the label (a Telemetry REMOVE)
    if m.op == "=":
        return m.value in SPECIAL or m.value in candidates
    return any(m.matches(c) for c in (*candidates, *SPECIAL))


def _closest(value: str, candidates: list[str]) -> str | None:
    match = difflib.get_close_matches(value, candidates, n=1, cutoff=0.6)
    return match[0] if match else None


def _finding(board: Board, cause: str, found: list[_Unknown]) -> Finding:
    queries = {id(u.query): u.query for u in found}
    n = len(queries)
    panels = sorted({u.query.panel for u in found})
    names: list[dict[str, Any]] = list({u.matcher.text(): {
        "label": u.matcher.name, "matcher": u.matcher.value if cause == METRIC else u.matcher.text(),
        "closest": u.closest, "namespaces": list(u.elsewhere)} for u in found}.values())
    first, more = names[0], len(names) - 1
    kind = {"unknown-workload": "workload", "unknown-service": "Service", "unknown-namespace": "namespace",
            METRIC: "metric"}[cause]
    said = "; ".join(str(x["matcher"]) + _hint(x) for x in names[:8]) + (
        f"; and {len(names) - 8} more" if len(names) > 8 else "")
    one = n == 1
    it = "it" if one else "them"
    if board.rules:
        damage = (f" {'It reads' if one else 'They read'} no series: an alert on {it} cannot fire (one on `absent()` "
                  f"fires all the time), a recording rule over {it} records nothing.")
    else:
        damage = (" It reads no series: its panel shows" if one else " They read no series: their panels show") + \
            " no data, which reads as no traffic."
    fix = "Select the names the mesh has: " + "; ".join(
        f"{x['matcher']}{_hint(x) or ' (no name of that kind is close)'}" for x in names[:5]) + "."
    return Finding(
        check=DashboardReadsUnknownName.id, severity=Severity.WARNING,
        title=f"{board.name}: {board.queries(n)} {'read' if cause == METRIC else 'select'}{'s' * one} "
              f"{first['matcher']}"
              + (f" and {more} other name{'s' * (more > 1)}" if more else "")
              + f", {'each ' if more else ''}a {kind} the mesh does not have",
        detail=(f"{board.queries(n)} of {board.words}{board.where(panels)} {'read' if cause == METRIC else 'select'}"
                f"{'s' * one} {said}: " + (_NO_METRIC if cause == METRIC else (
                    "no pod, controller, Service or ServiceEntry of the topology and no series of the window has "
                    + ("that name" if not more else "those names")
                    + (" (where the selector pins a namespace, in that namespace)." if any(u.pinned for u in found)
                       else "."))) + damage),
        subject=f"{board.subject}/{cause}", cause=cause, resource=board.resource,
        evidence=UnknownNameEvidence(board.title, n, names[:30], panels[:30], board.rule_file),
        suggestion=Suggestion(fix, None, DOC))


_NO_METRIC = ("Istio's proxies export no metric of that name and no series of the window has it (Istio 1.5's "
              "telemetry v2 renamed istio_request_duration_seconds to istio_request_duration_milliseconds, in "
              "milliseconds).")


def _hint(name: Mapping[str, Any]) -> str:
    if name["namespaces"]:
        return f" (it exists in namespace{'s' * (len(name['namespaces']) > 1)} {', '.join(name['namespaces'])})"
    return f" (the mesh has {name['closest']!r})" if name["closest"] else ""
