"""histogram-inf-saturation: latency histograms whose observations pile into +Inf or the top bucket."""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from obsgap.bounds import bound, exposition
from obsgap.charts import GREEN, GREY, ORANGE, RED, Bars, Chart
from obsgap.checks.base import Check, CheckInputs, Skip, Trend
from obsgap.checks.histogram_streams import CAUSE as STREAMS
from obsgap.checks.histogram_streams import streams_finding, upgraded_cumulative
from obsgap.istio import SERVER_REPORTERS
from obsgap.model import Finding, FindingEvidence, ServiceTimeline, Severity, Snippet, Suggestion
from obsgap.suggest import configs
from obsgap.suggest.buckets import (
    Distribution,
    histogram_quantile,
    suggest_from_buckets,
    suggest_from_distribution,
    unit_of,
)
from obsgap.text import pct
from obsgap.upgrades import DURATION as STREAMS_FAMILY
from obsgap.upgrades import QUERY as STREAMS_QUERY
from obsgap.upgrades import upgrades_by_service

DOC = "https://istio.io/latest/docs/reference/config/annotations/#SidecarStatsHistogramBuckets"
KNOWN_STAT_ROOTS = frozenset({"istiocustom", "cluster", "cluster_manager", "listener", "listener_manager", "http",
                              "server", "vhost", "runtime", "control_plane", "wasm", "tcp", "http1", "http2",
                              "http3", "sds", "dns", "grpc", "envoy", "component", "reporter"})
QUANTILES = (0.5, 0.9, 0.99)
ISTIO_GROUP = ("destination_service_namespace", "destination_service_name")
APP_GROUP = ("namespace", "job", "app")
AGENT_NAMESPACE, AGENT_SERVICE = "k8s_namespace_name", "service_name"
EBPF_JOB = "ebpf:obi"
"""The job of a histogram an eBPF agent observed (OBI/Beyla): told apart from the services' own."""


@dataclass(frozen=True)
class _Hist:
    family: str
    group: tuple[str, ...]
    bounds: list[float]
    cumulative: list[float]

    @property
    def total(self) -> float:
        return self.cumulative[-1]

    @property
    def inf_share(self) -> float:
        return (self.cumulative[-1] - self.cumulative[-2]) / self.total if len(self.cumulative) > 1 else 0.0

    @property
    def top_share(self) -> float:
        if len(self.cumulative) < 3:
            return 0.0
        return (self.cumulative[-2] - self.cumulative[-3]) / self.total




def _le(value: Any) -> float:
    found = bound(value)
    return math.nan if found is None else found


def _apps_of_pods(df: pd.DataFrame, inputs: CheckInputs) -> pd.DataFrame:
    """Where the scrape config maps no `app` label onto targets, the Service of each scraped pod stands for it (so
    one job's histogram is judged per service, not as one)."""
    if df.empty or "pod" not in df.columns:
        return df
    df = df.copy()
    app = df["app"].fillna("") if "app" in df.columns else pd.Series([""] * len(df), index=df.index)
    missing = (app == "") & df["pod"].notna() & (df["pod"] != "")
    if missing.any():
        def service(ns: object, pod: object) -> str:
            found = inputs.index.services_of_pod(str(ns), str(pod))
            return found[0].name if found else ""
        app = app.copy()
        app[missing] = [service(n, p) for n, p in zip(df.loc[missing, "namespace"], df.loc[missing, "pod"],
                                                       strict=True)]
    df["app"] = app
    return df.drop(columns=["pod"])


def _histograms(family: str, df: pd.DataFrame) -> Iterator[_Hist]:
    istio = family.startswith("istio_")
    cols = ISTIO_GROUP if istio else APP_GROUP
    df = df.copy()
    for c in (*cols, "reporter", "le", AGENT_NAMESPACE, AGENT_SERVICE):
        if c not in df.columns:
            df[c] = ""
    df = df.fillna("")
    seen = df[AGENT_NAMESPACE] != ""  # an eBPF agent's series: its own target labels name the agent, not the pod
    if not istio and seen.any():
        df.loc[seen, "namespace"] = df.loc[seen, AGENT_NAMESPACE]
        df.loc[seen, "job"] = EBPF_JOB
        df.loc[seen, "app"] = df.loc[seen, AGENT_SERVICE]
    if istio and df["reporter"].isin(SERVER_REPORTERS).any():
        df = df[df["reporter"].isin(SERVER_REPORTERS)]
    df["le"] = df["le"].map(_le)  # as numbers: `500` and Prometheus 3's `500.0` are one bound
    df = df[df["le"].notna()]
    for key, rows in df.groupby(list(cols)):
        pairs = sorted((float(le), float(v)) for le, v in rows.groupby("le")["value"].sum().items())
        if len(pairs) < 2 or not math.isinf(pairs[-1][0]):
            continue
        bounds = [b for b, _ in pairs[:-1]]
        cum = [max(0.0, c) for _, c in pairs]
        for i in range(1, len(cum)):  # increase() extrapolation can leave tiny non-monotonic steps
            cum[i] = max(cum[i], cum[i - 1])
        if cum[-1] > 0:
            yield _Hist(family, tuple(str(k) for k in key), bounds, cum)


@dataclass(frozen=True, eq=False)
class SaturationEvidence(FindingEvidence):
    """A histogram whose observations pile above its top finite bound (docs/findings.md: histogram-inf-saturation)."""

    inf_share: float
    """Share of observations above the top finite bound (0..1)."""
    top_bucket_share: float
    top_finite_bound: float
    unit: str
    observations: int
    buckets: tuple[float, ...]
    cumulative: tuple[float, ...]
    """Cumulative observations per bound over the window, +Inf last."""
    suggested_buckets: tuple[float, ...]
    """The bounds to use instead, in the metric's own unit."""
    suggested_cumulative: tuple[float, ...] | None
    """The same observations in the suggested buckets (None when extrapolated without logged durations)."""
    suggestion_basis: str
    """logs or extrapolated."""
    quantile_error: Mapping[str, Mapping[str, float | None]]
    """p50/p90/p99: what histogram_quantile reports, the logs' true value, and what the suggested buckets report."""
    true_p999: float | None
    series: int | None
    """The family's label combinations (None: their count failed; so then are the costs)."""
    series_cost_before: int | None
    series_cost_after: int | None

    @property
    def impact(self) -> int:
        return self.observations


@dataclass(frozen=True, eq=False)
class BucketWasteEvidence(FindingEvidence):
    """Buckets of a costly family that no observation reached in the window."""

    empty_buckets: tuple[float, ...]
    series: int
    series_cost_before: int
    series_cost_after: int


@dataclass(frozen=True, eq=False)
class AnnotationEvidence(FindingEvidence):
    """A sidecar.istio.io/statsHistogramBuckets annotation Envoy rejects or ignores."""

    annotation: str
    problems: tuple[str, ...]
    pods: tuple[str, ...]


def _bound(b: float) -> str:
    return f"{b:g}"


def _per_bucket(cumulative: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(max(0.0, c - (cumulative[i - 1] if i else 0.0)) for i, c in enumerate(cumulative))


def saturation_charts(h: SaturationEvidence) -> tuple[Bars, ...]:
    """Observations per bucket, the +Inf one red; then the same observations in the suggested buckets."""
    labels = (*(f"≤{_bound(b)}" for b in h.buckets), f">{_bound(h.buckets[-1])} (+Inf)")
    n = len(labels)
    colors = tuple(RED if i == n - 1 else ORANGE if i == n - 2 else GREY for i in range(n))
    current = Bars(f"Observations per bucket ({h.unit}); red: above the top bound", labels,
                   _per_bucket(h.cumulative), colors, "observations",
                   (f"suggested bounds: {', '.join(map(_bound, h.suggested_buckets))}",) if h.suggested_buckets else ())
    if h.suggested_cumulative is None or not h.suggested_buckets:
        return (current,)
    s_labels = (*(f"≤{_bound(b)}" for b in h.suggested_buckets), f">{_bound(h.suggested_buckets[-1])}")
    return current, Bars(f"The same observations in the suggested buckets ({h.unit})", s_labels,
                         _per_bucket(h.suggested_cumulative), (GREEN,) * len(s_labels), "observations")


class HistogramInfSaturation(Check):
    """What it does: discovers every histogram family in Prometheus (Istio's
    `istio_request_duration_milliseconds`, the byte histograms, the legacy
    `istio_request_duration_seconds`, and application `*_bucket` families), and for each service or
    job computes the share of observations above the largest finite bound (`+Inf`) and in the top
    finite bucket. Where logs carry request durations (Envoy `%DURATION%`, application
    `duration_ms`, ECS `event.duration`), it compares the p50/p90/p99 that `histogram_quantile`
    reports with the true ones, and suggests a bucket layout derived from the observed latencies
    (covering p99.9 with headroom, containing your `--slo-latency` thresholds exactly, at most 15
    bounds), with the error that layout would have on the same data and its series cost. Without
    logs it extends the existing layout past its top bound and says so. It also validates
    `sidecar.istio.io/statsHistogramBuckets` annotations and flags expensive families whose buckets
    stay empty. In Istio's duration histogram, WebSocket connections (its `response_code="101"` series) above
    the top bound are named apart, and the rest is judged without them.

    Why is this bad? `histogram_quantile` never returns more than the top finite bound: a service
    whose p99 is 40 s reports 10 s, and an SLO threshold above the top bucket cannot be measured at all.

    Example: an inference service instrumented with prometheus_client defaults (top bucket 10 s)
    whose requests take 5 to 60 s.

    Use instead: buckets that reach past the slowest real requests (the finding gives the annotation,
    Envoy bootstrap, prometheus_client and Go snippets), or native histograms. For WebSocket connections, whose
    recorded duration is their lifetime, no bucket helps: add `response_code!="101"` to latency queries.
    """

    id = "histogram-inf-saturation"
    title = "Latency histograms saturating +Inf"
    needs = ("metrics",)
    needs_histograms = True
    queries = ("scrape_targets", STREAMS_QUERY)
    doc_url = DOC
    causes = ("invalid-bucket-annotation", STREAMS)
    impact_unit = "observations"
    trend = Trend("saturated histograms")

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The histogram families analysed, their bucket waste where their series were counted, and the namespaces
        whose pods' annotations were read."""
        metrics = inputs.metrics
        families = metrics.histograms if metrics is not None else {}
        counted = {f"waste:{f}" for f in families if metrics is not None and f in metrics.histogram_series}
        counted |= {f"websockets:{f}" for f in families if metrics is not None and f == STREAMS_FAMILY
                    and STREAMS_QUERY in metrics.frames and STREAMS_QUERY not in metrics.failed}
        topology = inputs.topology
        read = topology is not None and "Pod" not in topology.unread  # the annotations are on the pods
        return frozenset(f"metric:{f}" for f in families) | counted | (inputs.in_scope_namespaces() if read else set())

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        """A histogram's findings are judged on its family's buckets; an annotation's on its namespace's pods."""
        if finding.get("cause") == "invalid-bucket-annotation":
            return (str(finding.get("namespace") or ""),)
        if "empty_buckets" in (finding.get("evidence") or {}):
            return (f"waste:{finding.get('metric')}",)
        if finding.get("cause") == STREAMS:  # judged on the upgraded_requests query: not re-checked where it failed
            return (f"websockets:{finding.get('metric')}",)
        return (f"metric:{finding.get('metric')}",)

    @classmethod
    def charts(cls, finding: Finding, timeline: ServiceTimeline | None) -> tuple[Chart, ...]:
        ev = finding.evidence
        return saturation_charts(ev) if isinstance(ev, SaturationEvidence) and ev.buckets else ()

    @classmethod
    def in_trend(cls, evidence: Mapping[str, Any]) -> bool:
        """A histogram whose observations pile into +Inf: not the bucket-waste or annotation findings."""
        return evidence.get("inf_share") is not None

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        metrics = inputs.metrics
        assert metrics is not None
        out: list[Finding] = list(_annotation_findings(inputs))
        if not metrics.histograms:
            if out:
                return out
            raise Skip("no histogram families (`*_bucket` series) in the window")
        upgrades = upgrades_by_service(metrics)
        for family, df in sorted(metrics.histograms.items()):
            hists = list(_histograms(family, _apps_of_pods(df, inputs)))
            unknown = upgrades is None and family == STREAMS_FAMILY
            for h in hists:
                out.extend(_judged(h, upgraded_cumulative(family, h.group, h.bounds, upgrades), inputs, unknown))
            out.extend(_waste(family, hists, metrics.histogram_series.get(family), inputs))
        return out


def _judged(h: _Hist, upgraded: list[float] | None, inputs: CheckInputs, unknown: bool = False) -> list[Finding]:
    """A histogram's findings: the WebSocket connections above its top bound, and a saturation of the rest.
    `unknown`: how many WebSocket connections it holds could not be told (their query failed)."""
    least = inputs.settings.min_requests
    if h.total < least:
        return []
    out = []
    if upgraded is not None:
        found = streams_finding(h.family, h.group, h.bounds, h.cumulative, upgraded, least)
        out += [found] if found is not None else []
        h = _without(h, upgraded)
        if h.total < least:
            return out
    if h.inf_share >= 0.01 or (h.top_share >= 0.5 and h.inf_share > 0):
        out.append(_saturation(h, inputs, logged=upgraded is None and not unknown, unknown_streams=unknown))
    return out


def _without(h: _Hist, upgraded: list[float]) -> _Hist:
    """The histogram's other observations: those of requests that did not upgrade their connection."""
    cum = [max(0.0, c - u) for c, u in zip(h.cumulative, upgraded, strict=True)]
    for i in range(1, len(cum)):
        cum[i] = max(cum[i], cum[i - 1])
    return _Hist(h.family, h.group, h.bounds, cum)


def _distribution(h: _Hist, inputs: CheckInputs) -> Distribution | None:
    """Observed durations for this histogram's subject, in the metric's unit."""
    logs = inputs.logs
    _unit, factor = unit_of(h.family)
    if logs is None or logs.durations.empty or math.isnan(factor):
        return None
    d = logs.durations
    if h.family.startswith("istio_"):
        rows = d[(d["namespace"] == h.group[0]) & (d["service"] == h.group[1])]
        prefer = "envoy"
    else:
        services = _services_of(inputs, *h.group)
        rows = d[(d["namespace"] == h.group[0]) & d["service"].isin(services)]
        prefer = "app"
    if rows.empty:
        return None
    origin = prefer if (rows["origin"] == prefer).any() else str(rows["origin"].iloc[0])
    rows = rows[rows["origin"] == origin].groupby("upper_ms")["requests"].sum().sort_index()
    return Distribution(tuple((float(u) * factor, float(c)) for u, c in rows.items()))


def _services_of(inputs: CheckInputs, namespace: str, job: str, app: str) -> list[str]:
    """Services behind an application histogram: its pods' `app` label, else the pods its job scrapes."""
    if app:
        pods = [p for p in inputs.index.topo.pods if p.namespace == namespace and p.labels.get("app") == app]
        by_label = {s.name for p in pods for s in inputs.index.services_of_pod(p.namespace, p.name)}
        if by_label:
            return sorted(by_label)
    metrics = inputs.metrics
    if metrics is None:
        return []
    up = metrics.frame("scrape_targets", ["job", "namespace", "pod"])
    names: set[str] = set()
    for row in up[(up["job"] == job) & (up["namespace"] == namespace)].itertuples(index=False):
        names.update(s.name for s in inputs.index.services_of_pod(namespace, str(row.pod)))
    return sorted(names) or [job]


def _fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:,.0f} {unit}" if abs(v) >= 100 else f"{v:.3g} {unit}"


def _snippets(family: str, suggested: list[float], inputs: CheckInputs, ns: str, name: str, *, agent: bool,
              istio: bool, unit: str) -> list[Snippet]:
    """Every ready-to-paste form of the new layout for who exposes the histogram: OBI's configuration; the Istio
    annotation on the workload, or on the waypoint Gateway that serves it, and Envoy's bootstrap; the client
    libraries. Envoy has no native histograms: for Istio's, Prometheus' NHCB storage only."""
    snippets: list[Snippet] = []
    if agent:
        snippets = [Snippet("OBI / Beyla configuration", configs.obi_buckets(suggested))]
    elif istio and unit == "ms":
        svc = inputs.index.services_by_key.get((ns, name))
        waypoint = inputs.index.waypoint_of(svc) if svc is not None else None
        if waypoint is not None and waypoint.serves and waypoint.gateway is not None:
            snippets = [Snippet("Waypoint Gateway", configs.waypoint_annotation(
                suggested, waypoint.gateway.namespace, waypoint.gateway.name))]
        else:
            snippets = [Snippet("Istio pod annotation", configs.istio_annotation(suggested, name))]
        snippets.append(Snippet("Envoy bootstrap", configs.envoy_bootstrap(suggested)))
    elif unit == "s":
        snippets = [Snippet("Python prometheus_client", configs.python_client(family, suggested)),
                    Snippet("Go client_golang", configs.go_client(family, suggested))]
    if istio:
        snippets.append(Snippet("Prometheus storage (NHCB)", configs.NHCB_STORAGE))
    else:
        snippets.append(Snippet("Prometheus native histograms", configs.NATIVE_HISTOGRAMS))
    return snippets


def _saturation(h: _Hist, inputs: CheckInputs, logged: bool = True, unknown_streams: bool = False) -> Finding:
    """`logged` False: the logged durations cannot stand for these observations (they may hold WebSocket lifetimes
    the logs do not tell apart), and the layout is extrapolated; `unknown_streams`: whether +Inf holds WebSocket
    connections could not be told."""
    unit, factor = unit_of(h.family)
    slos = [s * factor for s in inputs.settings.slo_latency_ms] if not math.isnan(factor) else []
    reported = {q: histogram_quantile(q, h.bounds, h.cumulative) for q in QUANTILES}
    dist = _distribution(h, inputs) if logged else None
    if dist is not None and dist.total > 0:
        true = {q: dist.quantile(q) for q in (*QUANTILES, 0.999)}
        suggested = suggest_from_distribution(dist, slos, inputs.settings.max_buckets)
        after_cum = dist.cumulative(suggested)
        suggested_cumulative: list[float] | None = after_cum
        after = {q: histogram_quantile(q, suggested, after_cum) for q in QUANTILES}
        basis = f"from {int(dist.total):,} logged durations"
    else:
        true = {}
        suggested = suggest_from_buckets(h.bounds, h.cumulative, slos, inputs.settings.max_buckets)
        after = {}
        suggested_cumulative = None
        basis = "extrapolated from the existing buckets (no logged durations: the tail above the top bound is unknown)"
    series = inputs.metrics.histogram_series.get(h.family) if inputs.metrics else None
    istio = h.family.startswith("istio_")
    ns, name = h.group[0], h.group[1]
    agent = not istio and name == EBPF_JOB
    if not istio:
        app = h.group[2]
        services = _services_of(inputs, ns, name, app)
        name = app or (services[0] if len(services) == 1 else name)
    subject = f"{ns}/{name}" + (" (seen by OBI)" if agent else "")
    top = h.bounds[-1]
    q_err = {f"p{int(q * 100)}": {"reported": reported[q], "true": true.get(q),
                                  "suggested": after.get(q)} for q in QUANTILES}
    if true:
        lines = [f"{k}: histogram says {_fmt(v['reported'], unit)}, logs say {_fmt(v['true'], unit)}, the "
                 f"suggested buckets would say {_fmt(v['suggested'], unit)}" for k, v in q_err.items()]
    else:
        lines = ["reported " + ", ".join(f"{k} {_fmt(v['reported'], unit)}" for k, v in q_err.items())
                 + " (no logged durations to compare)"]
    detail = (f"{pct(h.inf_share)} of {int(h.total):,} observations of {h.family} for {subject} are above the top "
              f"finite bucket ({top:g} {unit}), {pct(h.top_share)} in the top bucket: histogram_quantile cannot "
              f"report anything above {top:g} {unit}. " + "; ".join(lines) + f". Suggested buckets {basis}."
              + (" Whether +Inf holds WebSocket connections (HTTP 101, recorded at close with their lifetime) could "
                 "not be told: their query failed." if unknown_streams else ""))
    snippets = _snippets(h.family, suggested, inputs, ns, name, agent=agent, istio=istio, unit=unit)
    return Finding(
        check="histogram-inf-saturation", severity=Severity.CRITICAL if h.inf_share >= 0.1 else Severity.WARNING,
        title=f"{subject}: {pct(h.inf_share)} of {h.family} above {exposition(top)} {unit}",
        detail=detail, subject=f"{h.family}/{ns}/{name}" + ("/ebpf" if agent else ""), namespace=ns or None,
        service=name, job=None if istio else h.group[1], metric=h.family,
        resource=f"Service {ns}/{name}" if inputs.index.services_by_key.get((ns, name)) else None,
        evidence=SaturationEvidence(
            round(h.inf_share, 4), round(h.top_share, 4), top, unit, int(h.total), tuple(h.bounds),
            tuple(h.cumulative), tuple(suggested),
            None if suggested_cumulative is None else tuple(suggested_cumulative), "logs" if true else "extrapolated",
            q_err, true.get(0.999), series, None if series is None else series * (len(h.bounds) + 3),
            None if series is None else series * (len(suggested) + 3)),
        suggestion=Suggestion.of(f"Use buckets up to {suggested[-1]:g} {unit} ({len(suggested)} bounds).",
                                 tuple(snippets), DOC))


def _waste(family: str, hists: list[_Hist], family_series: int | None, inputs: CheckInputs) -> Iterator[Finding]:
    """Per bucket layout (workloads may override it): buckets no observation ever reached, at real cost (none
    told where the family's series count failed: the family's waste is then not examined)."""
    if family_series is None:
        return
    layouts: dict[tuple[float, ...], list[_Hist]] = defaultdict(list)
    for h in hists:
        layouts[tuple(h.bounds)].append(h)
    for bounds_t, group in layouts.items():
        bounds = list(bounds_t)
        series = round(family_series * len(group) / len(hists))
        if series < inputs.settings.waste_series:
            continue
        used = set()
        for h in group:
            prev = 0.0
            for b, c in zip(h.bounds, h.cumulative, strict=False):
                if c > prev:
                    used.add(b)
                prev = c
        empty = [b for b in bounds if b not in used]
        if len(empty) < len(bounds) / 2:
            continue
        yield _waste_finding(family, bounds, empty, series, len(layouts) > 1)


def _waste_finding(family: str, bounds: list[float], empty: list[float], series: int, several: bool) -> Finding:
    cost = series * (len(bounds) + 3)
    saved = series * len(empty)
    layout = f" (layout with top bound {bounds[-1]:g})" if several else ""
    return Finding(
        check="histogram-inf-saturation", severity=Severity.INFO,
        title=f"{family}{layout}: {len(empty)} of {len(bounds)} buckets never receive an observation",
        detail=(f"{family} has {series:,} label combinations x {len(bounds) + 3} series each = {cost:,} series, but "
                f"buckets {', '.join(f'{b:g}' for b in empty[:12])} stayed empty everywhere in the window: dropping "
                f"them saves {saved:,} series without losing resolution."),
        subject=f"{family}/waste/{bounds[-1]:g}", metric=family,
        evidence=BucketWasteEvidence(tuple(empty), series, cost, cost - saved),
        suggestion=Suggestion("Drop the empty buckets from the layout (or use native histograms).", None, DOC))


def _annotation_problems(raw: str) -> list[str]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return [f"not valid JSON ({exc.msg} at position {exc.pos})"]
    if not isinstance(value, dict):
        return ["must be a JSON object of stat-name prefix -> list of bounds"]
    problems = []
    for prefix, bounds in value.items():
        root = str(prefix).split(".", 1)[0]
        if root not in KNOWN_STAT_ROOTS:
            problems.append(f"unknown stat prefix {prefix!r} (Istio's metrics are under 'istiocustom')")
        if not isinstance(bounds, list) or not all(isinstance(b, int | float) and not isinstance(b, bool)
                                                    for b in bounds):
            problems.append(f"{prefix}: bounds must be a list of numbers")
            continue
        if any(b <= 0 for b in bounds):
            problems.append(f"{prefix}: bounds must be positive")
        if any(b2 <= b1 for b1, b2 in itertools.pairwise(bounds)):
            problems.append(f"{prefix}: bounds must be strictly increasing")
    return problems


def _annotation_findings(inputs: CheckInputs) -> Iterator[Finding]:
    by_workload: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for pod in inputs.index.topo.pods:
        raw = pod.annotations.get(configs.STATS_BUCKETS_ANNOTATION)
        if raw is not None:
            by_workload[(pod.namespace, pod.workload, raw)].append(pod.name)
    for (ns, workload, raw), pods in sorted(by_workload.items()):
        problems = _annotation_problems(raw)
        if not problems:
            continue
        yield Finding(
            check="histogram-inf-saturation", severity=Severity.WARNING,
            title=f"{workload}: invalid {configs.STATS_BUCKETS_ANNOTATION} annotation",
            detail=(f"The annotation on {len(pods)} pod(s) of {ns}/{workload} is rejected or ignored: "
                    + "; ".join(problems) + ". istioctl does not check it; Envoy falls back to default buckets."),
            subject=f"{ns}/{workload}/annotation", namespace=ns, workload=workload,
            cause="invalid-bucket-annotation", resource=f"Deployment {ns}/{workload}",
            evidence=AnnotationEvidence(raw[:500], tuple(problems), tuple(pods[:10])),
            suggestion=Suggestion("Fix the annotation value.", configs.istio_annotation(
                [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000], workload), DOC))
