"""Can an SLO's numbers be believed? Its SLI as Prometheus computes it, held against what the logs show over the
same window and against the histogram it reads. Pure: the measurements come in (measure.py), verdicts go out.

Verdicts:
- broken: the SLI cannot measure what it claims (a selector matches no series, its `le` is no bucket bound, its
  threshold lies above the histogram's top bound): the SLO shows green or garbage whatever happens;
- biased: it measures, on the wrong sample or with the wrong value (its metric misses real traffic, its error
  ratio differs from the logs', its threshold is interpolated between bounds);
- trustworthy: the logs agree with it;
- unverified: nothing contradicts it, but one side is missing: its SLI could not be run (no metrics, a query that
  failed) or no logs of its service were read.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from obsgap.errors import InputError
from obsgap.evidence import CheckInputs
from obsgap.model import Service
from obsgap.slo.measure import Measured
from obsgap.slo.promql import Selector, selects, shape
from obsgap.suggest.buckets import unit_of

Verdict = Literal["trustworthy", "biased", "broken", "unverified"]
BROKEN = ("selector-matches-nothing", "latency-saturated")
ISTIO_SERVICE_LABELS = ("destination_service_name", "destination_service_namespace", "destination_service",
                        "destination_workload", "destination_workload_namespace", "destination_app",
                        "destination_canonical_service")
APP_SERVICE_LABELS = ("service", "app", "service_name", "app_kubernetes_io_name")


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

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(p.reason for p in self.problems)

    def as_dict(self) -> dict[str, object]:
        """findings.json: a finding's evidence and a row of `slos`."""
        spec = self.measured.spec
        return {"slo": spec.name, "tool": spec.tool, "origin": spec.origin, "verdict": self.verdict,
                "causes": [p.cause for p in self.problems], "reasons": list(self.reasons),
                "fixes": [p.fix for p in self.problems], "objective": spec.objective, "window": spec.window,
                "sli_metric": self.sli_metric, "sli_logs": self.sli_logs, "budget_metric": self.budget_metric,
                "budget_logs": self.budget_logs, "coverage": self.coverage, "requests_metric": self.requests_metric,
                "requests_logs": self.requests_logs, "threshold": self.threshold, "unit": self.unit or None,
                "bounds": list(self.bounds), "services": list(self.services), "error": self.measured.error,
                "selectors": [{"selector": s, "series": n} for s, n in self.measured.selector_series],
                "queries": [_query_facts(q) for q in spec.queries]}


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


def _services_by_istio(sel: Selector, inputs: CheckInputs) -> list[Service] | None:
    if not any(sel.label(n) for n in ISTIO_SERVICE_LABELS):
        return None
    idx = inputs.index
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


def _services_by_app(sel: Selector, inputs: CheckInputs) -> list[Service] | None:
    idx = inputs.index
    jobs = sel.label("job")
    if jobs and inputs.metrics is not None:
        found: dict[tuple[str, str], Service] = {}
        targets = inputs.metrics.frame("scrape_targets", ["job", "namespace", "pod"])
        for row in targets.itertuples(index=False):
            if selects(Selector("", jobs + sel.label("namespace")), {"job": str(row.job),
                                                                      "namespace": str(row.namespace)}):
                for svc in idx.services_of_pod(str(row.namespace), str(row.pod)):
                    found[svc.key] = svc
        if found:
            return list(found.values())
    named = [m for n in APP_SERVICE_LABELS for m in sel.label(n)]
    if named:
        return [s for s in idx.topo.services if all(m.matches(s.name) for m in named)
                and all(m.matches(s.namespace) for m in sel.label("namespace"))]
    return None


def selected_services(measured: Measured, inputs: CheckInputs) -> list[Service]:
    spec = measured.spec
    for q in (spec.total, spec.quantile, spec.good, spec.bad, spec.ratio):
        if not q:
            continue
        for sel in shape(q).selectors:
            found = _services_by_istio(sel, inputs) if sel.metric.startswith("istio_") else \
                _services_by_app(sel, inputs)
            if found:
                return found
    by_name = [s for s in inputs.index.topo.services if s.name == spec.service]
    return by_name if len(by_name) == 1 else []


def logged(services: list[Service], inputs: CheckInputs) -> tuple[int, int] | None:
    """(requests, errors) the services' pods logged (server side): per pod and port the app's or the sidecar's
    lines, whichever saw more (they log the same requests). None when no log of theirs was read."""
    logs = inputs.logs
    if logs is None or logs.inbound.empty or not services:
        return None
    idx = inputs.index
    pods = {(p.namespace, p.name): p for s in services for p in idx.pods_of_service(s)}
    cells: dict[tuple[str, str, object], dict[str, tuple[int, int]]] = defaultdict(dict)
    for row in logs.inbound.itertuples(index=False):
        pod = pods.get((str(row.namespace), str(row.pod)))
        if pod is None:
            continue
        port = None if pd.isna(row.port) else int(row.port)
        if port is not None and not any(idx.service_port_for_target(s, pod, port) for s in services):
            continue
        cell = cells[(pod.namespace, pod.name, port)]
        req, err = cell.get(str(row.origin), (0, 0))
        cell[str(row.origin)] = (req + int(row.requests), err + int(row.errors))
    if not cells:
        return None
    requests = errors = 0
    for by_origin in cells.values():
        req, err = max(by_origin.values())
        requests, errors = requests + req, errors + err
    return requests, errors


def _durations(services: list[Service], inputs: CheckInputs) -> list[tuple[float, int]]:
    """(upper bound in ms, requests) on the logs' 2% scale, of the origin that logged most."""
    logs = inputs.logs
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


def _bound_fix(threshold: float, bounds: tuple[float, ...], unit: str) -> str:
    below = [b for b in bounds if b < threshold]
    above = [b for b in bounds if b > threshold]
    near = " and ".join(f"{b:g} {unit}" for b in (below[-1:] + above[:1]))
    return (f"Hold the SLO at a bucket bound{f' ({near} are the nearest)' if near else ''}, or add {threshold:g} "
            f"{unit} to the histogram's buckets (obsgap --slo-latency puts it into the suggested layout).")


def _selector_problems(m: Measured, inputs: CheckInputs, services: list[Service]) -> list[Problem]:
    empty = []
    for text, n in m.selector_series:
        sel = next(s for q in m.spec.queries for s in shape(q).selectors if s.text() == text)
        if n or (sel.equal("le") is not None and m.bounds):
            continue  # a missing `le` bound: the bucket checks below say why
        empty.append(sel)
    if not empty:
        return []
    hint = ""
    if any(sel.label("job") for sel in empty) and inputs.metrics is not None and services:
        pods = {(p.namespace, p.name) for s in services for p in inputs.index.pods_of_service(s)}
        targets = inputs.metrics.frame("scrape_targets", ["job", "namespace", "pod"])
        jobs = sorted({str(r.job) for r in targets.itertuples(index=False) if (str(r.namespace), str(r.pod)) in pods})
        if jobs:
            hint = (f" The pods of {', '.join(f'{s.namespace}/{s.name}' for s in services)} are scraped as job "
                    f"{', '.join(repr(j) for j in jobs)}.")
    shown = " and ".join(sel.text() for sel in empty)
    return [Problem("selector-matches-nothing",
                    f"{shown} {'matches' if len(empty) == 1 else 'match'} no series in the window: the SLI returns "
                    f"no data and the SLO stays green whatever happens.{hint}",
                    f"Make the selector name series that exist{hint and ' (use that job)'}.", True)]


def _latency_problems(m: Measured, threshold: float | None, unit: str,
                      quantile: float | None) -> list[Problem]:
    if threshold is None or not m.bounds:
        return []
    top = m.bounds[-1]
    counts = m.bucket_counts
    inf_share = (counts[-1] - counts[-2]) / counts[-1] if len(counts) >= 2 and counts[-1] else 0.0
    if threshold > top * 1.0001 or (quantile is not None and inf_share > 1 - quantile):
        why = (f"its threshold {threshold:g} {unit} lies above the top finite bound {top:g} {unit}"
               if threshold > top * 1.0001 else
               f"{inf_share:.1%} of observations lie above the top finite bound {top:g} {unit}, so the "
               f"p{(quantile or 0) * 100:g} it reads is capped at {top:g} {unit}")
        return [Problem("latency-saturated", f"The histogram cannot show it: {why} (+Inf saturation).",
                        f"Add buckets above {max(threshold, top):g} {unit} (see histogram-inf-saturation's "
                        f"suggested layout).", True)]
    if not any(math.isclose(threshold, b, rel_tol=1e-6) for b in m.bounds):
        if quantile is None:
            return [Problem("threshold-not-a-bucket-bound",
                            f"The SLI counts le=\"{threshold:g}\", which is no bound of the histogram "
                            f"({', '.join(_num(b) for b in m.bounds)} {unit}): that series does not exist and the "
                            "SLI reads nothing.", _bound_fix(threshold, m.bounds, unit), True)]
        return [Problem("threshold-not-a-bucket-bound",
                        f"The threshold {threshold:g} {unit} is no bucket bound: histogram_quantile interpolates "
                        "between the bounds around it, so the SLI is a guess there.",
                        _bound_fix(threshold, m.bounds, unit), False)]
    return []


def assess(m: Measured, inputs: CheckInputs) -> SloAssessment:
    spec = m.spec
    services = selected_services(m, inputs)
    problems = _selector_problems(m, inputs, services)
    logs = logged(services, inputs)
    source = spec.good or spec.quantile or spec.total
    sels = shape(source).selectors if source else ()
    family = sels[0].family if sels else ""
    unit, to_ms = _unit(family)
    threshold: float | None = None
    quantile = shape(spec.quantile).quantile if spec.quantile else None
    if spec.kind == "latency":
        le = next((s.equal("le") for s in sels if s.equal("le") is not None), None)
        threshold = float(le) if le is not None else None
    elif spec.kind == "quantile":
        threshold = spec.threshold
    problems += _latency_problems(m, threshold, unit, quantile)

    sli_metric = sli_logs = None
    durations = _durations(services, inputs) if spec.kind != "ratio" and to_ms else []
    if spec.kind == "quantile":
        sli_metric = m.quantile_value
        true = _quantile(durations, quantile) if quantile is not None else None
        sli_logs = true / to_ms if true is not None else None
    else:
        sli_metric = None if m.ratio is None else 1 - m.ratio
        if spec.kind == "ratio" and logs is not None and logs[0]:
            sli_logs = 1 - logs[1] / logs[0]
        elif spec.kind == "latency" and threshold is not None and durations:
            sli_logs = _share_within(durations, threshold * to_ms)
    requests_logs = logs[0] if logs else None
    requests_metric = round(m.total) if m.total is not None else None
    coverage = requests_metric / requests_logs if requests_metric is not None and requests_logs else None
    tolerance = inputs.tolerance()
    enough = (requests_logs or 0) >= inputs.settings.min_requests
    if enough and coverage is not None and coverage < 1 - tolerance and requests_metric:
        shown = ", ".join(f"{s.namespace}/{s.name}" for s in services)
        problems.append(Problem(
            "sli-misses-traffic",
            f"The SLI's metric counted {requests_metric:,} of the {requests_logs:,} requests the logs of {shown} "
            f"show ({1 - coverage:.1%} unseen: bypassing Envoy, excluded or TCP-proxied ports, or lost metrics): "
            "it is computed on a biased sample.",
            "Fix the gap the coverage findings for this service name, or measure the SLO from the application's "
            "own metrics, which see every request.", False))
    if enough and sli_metric is not None and sli_logs is not None and spec.kind != "quantile" and \
            not any(p.broken for p in problems):
        budget = 1 - spec.objective if spec.objective is not None and spec.objective < 1 else None
        noise = 3 * math.sqrt(max(sli_logs * (1 - sli_logs), 1e-9) / max(requests_logs or 1, 1))
        allowed = max(noise, 0.2 * budget if budget else 0.0, 0.002)
        if abs(sli_metric - sli_logs) > allowed:
            what = "error ratio" if spec.kind == "ratio" else "share of fast requests"
            problems.append(Problem(
                "error-ratio-differs",
                f"The metrics give an {what} of {1 - sli_metric:.3%} bad, the logs {1 - sli_logs:.3%} over the same "
                "window" + (" (errors on traffic the mesh does not see count only in the logs)"
                            if spec.kind == "ratio" else "") + ".",
                "Find the requests the metric misses or miscounts (see sli-misses-traffic and the coverage table) "
                "before the budget is spent or saved on this SLI.", False))
    verdict: Verdict
    if any(p.broken for p in problems):
        verdict = "broken"
    elif problems:
        verdict = "biased"
    elif m.error or sli_metric is None or sli_logs is None or not enough:
        verdict = "unverified"  # one side of the comparison is missing: nothing confirms the SLI
    else:
        verdict = "trustworthy"
    return SloAssessment(
        m, tuple(f"{s.namespace}/{s.name}" for s in services), verdict, tuple(problems),
        None if sli_metric is None else round(sli_metric, 6), None if sli_logs is None else round(sli_logs, 6),
        None if spec.kind == "quantile" else _burn(sli_metric, spec.objective),
        None if spec.kind == "quantile" else _burn(sli_logs, spec.objective),
        None if coverage is None else round(coverage, 4), requests_metric, requests_logs, threshold, unit, m.bounds)
