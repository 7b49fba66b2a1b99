"""envoy-bypass: requests the logs (or callers) saw that the server-side mesh metrics never counted."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import yaml

from obsgap import relabel
from obsgap.ambient import (
    AMBIENT_CAUSES,
    DATAPLANE_MODE,
    GATEWAY_CLASS_LABEL,
    GATEWAY_POD_LABELS,
    INGRESS_USE_WAYPOINT,
    WAYPOINT_CLASS,
    is_gateway_pod,
)
from obsgap.analysis.reconcile import ServiceTraffic
from obsgap.analysis.scraping import (
    ENVOY_STATS_POD_MONITOR,
    IGNORE_LABEL,
    MERGE_ANNOTATION,
    SCRAPE_ANNOTATION,
    SidecarTarget,
    SidecarTargets,
    application_sidecar,
    says_false,
    sidecar_target_rows,
    targets_of,
)
from obsgap.charts import Chart
from obsgap.checks.base import Check, CheckInputs, Skip, severity_for_missed
from obsgap.checks.traffic import TrafficEvidence, traffic_charts
from obsgap.evidence import MetricsEvidence
from obsgap.istio import INJECT_KEY, NO_SIDECAR_CAUSES
from obsgap.model import TCP_PROXIED, Finding, KubeGateway, Pod, ServiceTimeline, Severity, Suggestion, Window
from obsgap.relabel import RelabelRule
from obsgap.sources.kube.kinds import TELEMETRY_KIND
from obsgap.text import pct
from obsgap.topology import TopologyIndex
from obsgap.witness import CALLER_LOGS, CALLER_SIDECARS

DOC_INJECTION = "https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/"
DOC_TRAFFIC = "https://istio.io/latest/docs/reference/config/annotations/"
DOC_SCRAPE = "https://istio.io/latest/docs/ops/integrations/prometheus/"

_CAUSE_TEXT = {
    "no-sidecar/inject-annotation": "injection is switched off for these pods",
    "no-sidecar/host-network": "the pods run with hostNetwork: true, which Istio never injects",
    "no-sidecar/namespace-not-enabled": "their namespace is not labelled for injection",
    "no-sidecar/init-container": "Istio's init container never completed",
    "no-sidecar/unknown": "injection is enabled but the pods have no istio-proxy",
    "ambient/pod-opted-out": "the pods opt out of ambient mode in an ambient namespace",
    "ambient/namespace-not-enrolled": "their namespace is not enrolled in ambient mode",
    "ambient/host-network": "the pods run with hostNetwork: true, which ztunnel never captures",
    "ambient/not-captured": "the pods are enrolled in ambient mode, but the CNI never redirected their traffic",
}
DOC_AMBIENT = "https://istio.io/latest/docs/ambient/usage/add-workloads/"


class EnvoyBypass(Check):
    """What it does: for every service, compares the requests its pods really served (server logs, or
    what its callers' logs and sidecars saw) with `istio_requests_total{reporter="destination"}`
    over the same window, and explains each gap: pods without a sidecar (and why), callers outside
    the mesh, callers that exclude the port from their own sidecar, sidecars Prometheus never scrapes
    (no target on their metrics port, or targets never up), a waypoint Prometheus never scrapes (its
    `reporter="waypoint"` count never collected), a scrape job's `metric_relabel_configs`
    that drop the sidecars' request counts (Prometheus's running configuration, where it serves one),
    or, failing all of those, `unexplained` with the numbers.

    Why is this bad? Every Istio dashboard, SLO and alert built on `reporter="destination"` silently
    leaves this traffic out: error rates and latency percentiles describe only the share that went
    through Envoy.

    Example: namespace `legacy` has no `istio-injection=enabled` label; `billing` serves 1,800
    requests an hour (its callers' sidecars count them) but reports none itself.

    Use instead: label the namespace (or remove `sidecar.istio.io/inject: "false"`) and restart the
    workload so every pod runs istio-proxy; the finding carries the exact command.
    """

    id = "envoy-bypass"
    title = "Traffic that bypasses the Envoy sidecar"
    needs = ("topology", "metrics")
    kinds = ("Service", "Pod", "Namespace")
    queries = ("mesh_requests", "mesh_tcp_connections", "scrape_targets")
    doc_url = DOC_INJECTION
    causes = (*NO_SIDECAR_CAUSES, *AMBIENT_CAUSES, "ambient/ingress-bypasses-waypoint", "port-excluded",
              "caller-outside-mesh", "sidecar-not-scraped", "waypoint-not-scraped", "metric-relabel-drops",
              "unexplained")

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The services both sides were measured for (over the same interval), those whose callers the mesh
        labelled, and the calls of callers whose own logs were read."""
        rec = inputs.analysis.traffic
        keys = {f"{st.service.namespace}/{st.service.name}" for st in rec.services.values()
                if not st.covered_without_pod_metrics
                and (st.comparison().ratio is not None or (st.mesh_measured and st.witness is not None))}
        if rec.mesh_unmeasured is None:  # the mesh labels every service's callers, with traffic tonight or not
            keys |= {f"outside:{s.namespace}/{s.name}" for s in inputs.index.topo.services
                     if inputs.index.request_metrics_off(s) is None}
        keys |= {_caller_key(ns, workload, f"{sns}/{service}")
                 for ns, workload, service, sns, *_ in _caller_calls(inputs)}
        return frozenset(keys)

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        """A bypass is judged on both sides of its service; callers outside the mesh on the mesh's labels alone; a
        caller's excluded port on that caller's own logs."""
        ns, service = finding.get("namespace"), finding.get("service")
        if finding.get("cause") == "port-excluded":
            evidence = finding.get("evidence") or {}
            target = f"{evidence.get('service_namespace')}/{service}"
            return (_caller_key(str(ns), str(finding.get("workload")), target),)
        if finding.get("cause") == "caller-outside-mesh":
            return (f"outside:{ns}/{service}",)
        return (f"{ns}/{service}",)

    @classmethod
    def charts(cls, finding: Finding, timeline: ServiceTimeline | None) -> tuple[Chart, ...]:
        return traffic_charts(finding, timeline)

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        rec = inputs.analysis.traffic
        if not rec.metrics_present:
            raise Skip("Prometheus returned no istio_requests_total series in the window: is it scraping the "
                       "sidecars (port 15020, /stats/prometheus)?")
        tol = inputs.tolerance()
        out: list[Finding] = []
        scraping = _scraping(inputs)
        for st in rec.services.values():
            outside = _outside_mesh(st, inputs)  # the mesh's own labels: whatever the witnesses saw
            if outside:
                out.append(outside)
            if st.observed < inputs.settings.min_requests or not st.mesh_measured:
                continue  # too little to judge; or the mesh's side unknown (not examined either)
            dark = _dark_pods(st)
            bypass = _no_sidecar(st, dark, inputs) if dark else None
            if bypass:
                out.append(bypass)
            elif not dark or st.served_requests:
                gap = _unexplained(st, tol, inputs, scraping)
                if gap:
                    out.append(gap)
        out.extend(_caller_exclusions(inputs))
        return out


def _dark_pods(st: ServiceTraffic) -> list[Pod]:
    return [p for p in st.pods if not p.sidecar.present and p.sidecar.mode != "ambient"]


def _window(inputs: CheckInputs, st: ServiceTraffic | None = None) -> str:
    """The time the numbers rest on: the window, or the part of it partial logs cover."""
    w = inputs.window
    text = f"{w.start:%Y-%m-%d %H:%M}–{w.end:%Y-%m-%d %H:%M} UTC"
    if st is not None and st.covered:
        text += f"; {st.coverage_text()}"
    return text


def _no_sidecar(st: ServiceTraffic, dark: list[Pod], inputs: CheckInputs) -> Finding | None:
    """None when the logs prove the sidecar-less pods served nothing (sidecar-missing reports them)."""
    svc = st.service
    observed = st.observed
    unlogged = ""
    if st.served_requests:
        missed = sum(st.served_by_pod.get(p.name, 0) for p in dark)
        silent = [p.name for p in dark if not st.served_by_pod.get(p.name)]
        from_callers = _callers_gap(st, inputs) if silent else 0
        if from_callers > missed:  # their own logs were not read (or name no request): the callers tell
            missed = from_callers
            unlogged = (f" No request of {', '.join(silent[:5])} is in the logs read; the callers' count tells what "
                        "the server side missed.")
    else:
        cmp = st.comparison()
        if cmp.mesh is None or cmp.observed is None:
            return None  # a side is unknown, and so is what bypassed (the service is not examined either)
        missed = max(0, cmp.observed - int(cmp.mesh))
    if missed < inputs.settings.min_requests:
        return None
    share = min(1.0, missed / observed) if observed else 1.0
    causes = Counter(p.sidecar.reason or "no-sidecar/unknown" for p in dark)
    cause = causes.most_common(1)[0][0]
    first = dark[0]
    all_dark = len(dark) == len(st.pods)
    which = "all " + str(len(dark)) + " pods" if all_dark else f"{len(dark)} of {len(st.pods)} pods"
    if cause == "no-sidecar/namespace-not-enabled":
        resource, code = f"Namespace {svc.namespace}", "IST0102"
        fix = Suggestion(
            f"Label namespace {svc.namespace} for injection and restart its workloads.",
            f"kubectl label namespace {svc.namespace} istio-injection=enabled\n"
            f"kubectl rollout restart deployment/{first.workload} -n {svc.namespace}", DOC_INJECTION)
    elif cause == "no-sidecar/inject-annotation":
        resource, code = f"Deployment {svc.namespace}/{first.workload}", None
        where = "labels" if INJECT_KEY in first.labels else "annotations"
        fix = Suggestion(
            f'In the pod template of {first.workload}, change {INJECT_KEY} from "false" to "true" (it is one of '
            f"its {where}; Istio reads the label first), then let the pods roll.",
            f"spec:\n  template:\n    metadata:\n      {where}:\n        {INJECT_KEY}: \"true\"  # was \"false\"",
            DOC_INJECTION)
    elif cause == "no-sidecar/host-network":
        resource, code = f"Deployment {svc.namespace}/{first.workload}", None
        fix = Suggestion("hostNetwork pods cannot have a sidecar: drop hostNetwork, or keep measuring this "
                         "service from its own metrics and exclude it from mesh SLOs.", None, DOC_INJECTION)
    elif cause.startswith("ambient/"):
        resource, code, fix = _ambient_fix(cause, svc.namespace, first)
    else:
        resource, code = f"Pod {first.namespace}/{first.name}", "IST0103"
        fix = Suggestion(f"Restart {first.workload} so the injector adds istio-proxy; check the injector "
                         "webhook and, with Istio CNI, the istio-validation init container logs.",
                         f"kubectl rollout restart deployment/{first.workload} -n {svc.namespace}", DOC_INJECTION)
    if cause.startswith("ambient/"):
        detail = (f"{svc.namespace}/{svc.name} served {observed:,} requests in {_window(inputs, st)} (per "
                  f"{st.observed_by}). {which.capitalize()} are outside the ambient data plane: "
                  f"{_CAUSE_TEXT.get(cause, cause)} ({first.sidecar.evidence}). About {missed:,} requests "
                  f"({pct(share)}) passed through neither ztunnel nor a waypoint: no metric, no mTLS, no policy."
                  f"{unlogged}")
    else:
        detail = (f"{svc.namespace}/{svc.name} served {observed:,} requests in {_window(inputs, st)} (per "
                  f"{st.observed_by}); Istio's server-side metrics counted {int(st.mesh_requests):,}. "
                  f"{which.capitalize()} have no istio-proxy: {_CAUSE_TEXT.get(cause, cause)} "
                  f"({first.sidecar.evidence}). About {missed:,} requests ({pct(share)}) never passed through "
                  f"Envoy.{unlogged}")
    return Finding(
        check="envoy-bypass", severity=severity_for_missed(share),
        title=f"{svc.name}: {pct(share)} of requests bypass "
              f"{'the ambient mesh' if cause.startswith('ambient/') else 'Envoy'} ({cause.split('/')[-1]})",
        detail=detail, subject=f"{svc.namespace}/{svc.name}/no-sidecar", namespace=svc.namespace,
        service=svc.name, workload=first.workload, pod=first.name if len(dark) == 1 else None, cause=cause,
        resource=resource, istio_code=code,
        evidence=TrafficEvidence.of(observed, st.mesh_requests, st.witness or CALLER_LOGS, st, ratio=_ratio(st),
                                    missed_requests=missed, observed_by=st.observed_by,
                                    pods_without_sidecar=[p.name for p in dark], pods_total=len(st.pods),
                                    causes=dict(causes)),
        suggestion=fix)


def _callers_gap(st: ServiceTraffic, inputs: CheckInputs) -> int:
    """What the callers counted beyond what the server side counted for them, past the scrape-edge tolerance; 0
    when the service's best count is not the callers' or a side is unknown."""
    if st.witness not in (CALLER_LOGS, CALLER_SIDECARS):
        return 0
    cmp = st.comparison()
    if cmp.observed is None or cmp.mesh is None:
        return 0
    gap = cmp.observed - cmp.mesh
    return int(gap) if gap > max(inputs.tolerance() * cmp.observed, 2.0) else 0


def _ambient_fix(cause: str, namespace: str, pod: Pod) -> tuple[str, str | None, Suggestion]:
    if cause == "ambient/pod-opted-out":
        return (f"Deployment {namespace}/{pod.workload}", None, Suggestion(
            f"Remove the {DATAPLANE_MODE}=none label from the pod template of {pod.workload} (or record that it "
            "is deliberately outside the mesh and exclude it from mesh SLOs).",
            f"spec:\n  template:\n    metadata:\n      labels:\n        {DATAPLANE_MODE}: none  # remove this label",
            DOC_AMBIENT))
    if cause == "ambient/namespace-not-enrolled":
        return (f"Namespace {namespace}", None, Suggestion(
            f"Enrol namespace {namespace} in ambient mode (no restart is needed).",
            f"kubectl label namespace {namespace} {DATAPLANE_MODE}=ambient", DOC_AMBIENT))
    if cause == "ambient/host-network":
        return (f"Deployment {namespace}/{pod.workload}", None, Suggestion(
            "ztunnel never captures hostNetwork pods: drop hostNetwork, or keep measuring this service from its "
            "own metrics and exclude it from mesh SLOs.", None, DOC_AMBIENT))
    return (f"Pod {namespace}/{pod.name}", None, Suggestion(
        f"Recreate {pod.workload}'s pods so the Istio CNI node agent captures them; check the istio-cni pod on "
        "their node.", f"kubectl rollout restart deployment/{pod.workload} -n {namespace}", DOC_AMBIENT))


def _http_through_sidecars(st: ServiceTraffic) -> dict[str, int]:
    """Requests per pod the served pods' witness saw on ports Envoy should count as HTTP, on pods whose requests the
    mesh counts: those with a sidecar, and ambient pods behind a waypoint that serves the Service."""
    out: dict[str, int] = defaultdict(int)
    by_name = {p.name: p for p in st.pods}
    for pt in st.ports.values():
        sp = pt.service_port
        if sp is not None and sp.istio_protocol in TCP_PROXIED:
            continue
        for pod_name, n in pt.per_pod.items():
            pod = by_name.get(pod_name)
            if pod is None or not (pod.sidecar.present or (pod.sidecar.mode == "ambient"
                                                           and st.dataplane == "waypoint")):
                continue
            if pt.container_port is not None and pod.exclusions.inbound_port_excluded(pt.container_port):
                continue
            out[pod_name] += n
    return out


@dataclass(frozen=True)
class _Scraping:
    """What the window's scrape targets and Prometheus's configuration say, read once per run."""

    targets: SidecarTargets | None
    """The sidecar targets; None where they cannot tell (the query failed, or no application sidecar is scraped)."""
    seen: SidecarTargets | None
    """The window's targets on Envoy metrics ports, judged or not (waypoints' included); None where the query
    failed."""
    up_by_pod: Mapping[tuple[str, str], tuple[SidecarTarget, ...]]
    """(namespace, pod) -> its sidecar targets that were up, where they carry a pod label."""
    rules_of: Callable[[str], list[tuple[RelabelRule, ...] | None]] | None
    """A target's `job` label -> the rules of each scrape config it may come from (the Prometheus Operator names a
    scrape config `podMonitor/ns/name/0` and its targets' job `ns/name`, which the targets API ties together);
    None where the configuration was not read."""


def _scraping(inputs: CheckInputs) -> _Scraping:
    metrics = inputs.metrics
    if metrics is None or "scrape_targets" in metrics.failed:
        return _Scraping(None, None, {}, None)
    pods = list(inputs.index.topo.pods)
    rows = sidecar_target_rows(metrics.frame("scrape_targets", ["job", "namespace", "pod", "instance"]), pods)
    found = targets_of(rows, pods)
    up_by_pod: dict[tuple[str, str], list[SidecarTarget]] = defaultdict(list)
    for t in rows:
        if t.up and t.pod:
            up_by_pod[(t.namespace, t.pod)].append(t)
    return _Scraping(found if found.judged else None, found, {k: tuple(v) for k, v in up_by_pod.items()},
                     _rules_of(metrics))


def _rules_of(metrics: MetricsEvidence) -> Callable[[str], list[tuple[RelabelRule, ...] | None]] | None:
    configs = relabel.metric_relabels(metrics.configuration) if metrics.configuration is not None else None
    if configs is None:
        return None
    pools: dict[str, set[str]] = defaultdict(set)
    for target in metrics.targets or ():
        labels = target.get("labels")
        if isinstance(labels, Mapping) and target.get("scrapePool") and labels.get("job"):
            pools[str(labels["job"])].add(str(target["scrapePool"]))

    def rules_of(job: str) -> list[tuple[RelabelRule, ...] | None]:
        return [configs.get(pool) for pool in sorted(pools.get(job) or {job})]
    return rules_of


def _unexplained(st: ServiceTraffic, tol: float, inputs: CheckInputs, scraping: _Scraping) -> Finding | None:
    svc = st.service
    if st.covered_without_pod_metrics:
        return None  # partial logs, and no pod label to count the mesh over their part alone
    if st.covered:
        tol = inputs.tolerance(min(c.seconds for c in st.covered.values()))
    if st.served_requests:
        served = _http_through_sidecars(st)
        expected = sum(served.values())
        mesh = (sum(st.mesh_by_pod.get(p, 0.0) + st.peer_mesh_by_pod.get(p, 0.0) for p in served)
                if st.mesh_by_pod else st.mesh_for_pods)
        witness = st.witness or CALLER_LOGS
    else:
        if any(sp.istio_protocol in TCP_PROXIED for sp in svc.ports):
            return None
        if st.l4_only:
            return None  # ambient without a waypoint: ztunnel reports only istio_tcp_*, by design
        cmp = st.comparison()
        if cmp.observed is None or cmp.mesh is None or cmp.witness is None:
            return None
        expected, mesh, witness = cmp.observed, cmp.mesh, cmp.witness
        served = {}  # the callers' count names no pod
    if expected < inputs.settings.min_requests:
        return None
    missed = expected - mesh
    if missed <= max(tol * expected, 2.0):
        return None
    share = min(1.0, missed / expected)
    gap = _Gap(expected, mesh, witness, missed, tol)
    explained = _ingress_past_waypoint(st, inputs, missed, tol) \
        or _not_scraped(st, inputs, scraping.targets, served, gap) or _waypoint_not_scraped(st, inputs, scraping, gap) \
        or _relabelled(st, inputs, scraping, served, gap)
    if explained is not None:
        return explained
    return Finding(
        check="envoy-bypass", severity=severity_for_missed(share),
        title=f"{svc.name}: {pct(share)} of requests missing from mesh metrics, cause unknown",
        detail=(f"{_counted_by(st)}, yet of {expected:,} requests in the logs ({_window(inputs, st)}) "
                f"{_counter(st)} counted {int(mesh):,}, beyond the "
                f"{pct(tol)} tolerance for scrape edges. No sidecar, exclusion, port, scrape or Telemetry cause "
                "explains it: look for metric relabelling (metric_relabel_configs, a monitor's metricRelabelings) "
                "that drops these series or their destination_service labels." + _relabel_hint(st, scraping)
                + (" (Telemetry resources could not be read in this run: one of them may turn these metrics off.)"
                   if TELEMETRY_KIND in inputs.index.topo.unread else "")
                + (" (Whether Prometheus scrapes these sidecars could not be told: no application sidecar's scrape "
                   "target is in the window, so the metrics come another way, or the targets query failed.)"
                   if scraping.targets is None and st.dataplane == "sidecar" else "")),
        subject=f"{svc.namespace}/{svc.name}/unexplained", namespace=svc.namespace, service=svc.name,
        cause="unexplained", resource=f"Service {svc.namespace}/{svc.name}",
        evidence=TrafficEvidence.of(expected, mesh, witness, st, tolerance=round(tol, 4)),
        suggestion=Suggestion("Look for a metric_relabel_configs rule (or a PodMonitor's metricRelabelings) that "
                              "drops istio_requests_total, or its destination_service labels, for these pods.",
                              None, DOC_TRAFFIC))


def _counted_by(st: ServiceTraffic) -> str:
    svc = st.service
    if st.dataplane == "waypoint":
        return f"A waypoint serves {svc.namespace}/{svc.name}"
    return f"Pods of {svc.namespace}/{svc.name} run istio-proxy"


def _counter(st: ServiceTraffic) -> str:
    return 'its metrics (reporter="waypoint")' if st.dataplane == "waypoint" else "the destination-side metrics"


class _Gap(NamedTuple):
    expected: int
    mesh: float
    witness: str
    missed: float
    tol: float


def _gap_finding(st: ServiceTraffic, gap: _Gap, *, why: str, detail: str, cause: str, slug: str, resource: str,
                 suggestion: Suggestion, workload: str | None = None, **evidence: Any) -> Finding:
    """A finding of a cause that explains the Service's gap: its requests counted, never collected."""
    svc = st.service
    share = min(1.0, gap.missed / gap.expected)
    return Finding(
        check="envoy-bypass", severity=severity_for_missed(share),
        title=f"{svc.name}: {pct(share)} of requests missing from mesh metrics: {why}", detail=detail,
        subject=f"{svc.namespace}/{svc.name}/{slug}", namespace=svc.namespace, service=svc.name, workload=workload,
        cause=cause, resource=resource,
        evidence=TrafficEvidence.of(gap.expected, gap.mesh, gap.witness, st, missed_requests=int(gap.missed),
                                    **evidence),
        suggestion=suggestion)


def _not_scraped(st: ServiceTraffic, inputs: CheckInputs, targets: SidecarTargets | None, served: dict[str, int],
                 gap: _Gap) -> Finding | None:
    """The Service's sidecars that no scrape target covered (or whose targets were never up) served the requests
    the mesh's metrics miss: they were counted, never collected. A pod the metrics name (a pod label on its series)
    was collected, whatever its target looks like. `served`: requests per pod by the served pods' witness; empty
    where the callers' count is the witness (then every sidecar must be uncollected and the mesh count about 0)."""
    if targets is None or st.dataplane != "sidecar":
        return None
    sidecars = [p for p in st.pods if application_sidecar(p) and inputs.index.in_scope(p)]
    lost = {p.name: state for p in sidecars if (state := targets.state(p)) != "scraped"
            and st.mesh_by_pod.get(p.name, 0.0) + st.peer_mesh_by_pod.get(p.name, 0.0) <= 0}
    through = _explains(st, served, set(lost), sidecars, gap)
    if not lost or through < inputs.settings.min_requests:
        return None
    svc = st.service
    missing = [p for p in sidecars if lost.get(p.name) == "missing"]
    down = [p for p in sidecars if lost.get(p.name) == "down"]
    said = []
    if missing:
        said.append(f"{_names(missing)} {'has' if len(missing) == 1 else 'have'} no scrape target on a sidecar "
                    "metrics port (15020, 15090, or the one their prometheus.io annotations name) in the window, "
                    f"while other sidecars do (job {', '.join(targets.jobs[:3])})")
    if down:
        said.append(f"the scrape targets of {_names(down)} were never up")
    why, fix, config = _why_not_scraped(missing, down, _neighbours(inputs, svc.namespace, sidecars), targets)
    workloads = sorted({p.workload for p in missing + down})
    return _gap_finding(
        st, gap, why=f"Prometheus never collects {len(lost)} of its {len(sidecars)} sidecars",
        detail=(f"Pods of {svc.namespace}/{svc.name} run istio-proxy and count their requests, but of "
                f"{gap.expected:,} requests ({_window(inputs, st)}) the metrics hold {int(gap.mesh):,}: "
                f"{'; '.join(said)}. {why}").strip(),
        cause="sidecar-not-scraped", slug="not-scraped", resource=f"Service {svc.namespace}/{svc.name}",
        suggestion=Suggestion(fix, config, DOC_SCRAPE), workload=workloads[0] if len(workloads) == 1 else None,
        pods=sorted(p.name for p in missing)[:20], pods_down=sorted(p.name for p in down)[:20],
        unscraped_requests=through, sidecar_jobs=list(targets.jobs[:5]))


def _waypoint_not_scraped(st: ServiceTraffic, inputs: CheckInputs, scraping: _Scraping, gap: _Gap) -> Finding | None:
    """The waypoint that serves the Service counts its requests (reporter="waypoint"), but no scrape target on an
    Envoy metrics port covered its pods in the window (or none was ever up), while this Prometheus scrapes other
    proxies itself (an application sidecar, or another waypoint): counted, never collected. Judged only for a
    waypoint inside the run's scope: the targets query is scoped by its namespace label."""
    seen, idx = scraping.seen, inputs.index
    gateway = idx.serving_waypoint(st.service) if st.dataplane == "waypoint" else None
    if seen is None or gateway is None or gap.mesh > gap.tol * gap.expected + 2:
        return None
    pods = _waypoint_pods(idx, gateway)
    if not pods or not _uncollected(seen, pods, idx):
        return None
    svc = st.service
    down = [p for p in pods if seen.state(p) == "down"]
    missing = [p for p in pods if p not in down]
    jobs = sorted({t.job for key, targets in scraping.up_by_pod.items() if key not in {p.key for p in pods}
                   for t in targets})
    fix = (f"Scrape the pods of waypoint {gateway.namespace}/{gateway.name} (they serve /stats/prometheus on 15020, "
           "and carry the prometheus.io annotations): a PodMonitor or scrape job that selects the application "
           "sidecars by a sidecar's own label (`security.istio.io/tlsMode`, `sidecar.istio.io/status`) misses "
           "waypoints; Istio's envoy-stats PodMonitor (below) selects every pod with an istio-proxy container.")
    return _gap_finding(
        st, gap, why=f"Prometheus never collects its waypoint {gateway.name}",
        detail=(f"Waypoint {gateway.namespace}/{gateway.name} serves {svc.namespace}/{svc.name} and counts its "
                f"requests (reporter=\"waypoint\"), but of {gap.expected:,} requests ({_window(inputs, st)}) the "
                f"metrics hold {int(gap.mesh):,}: {_unscraped_words(missing, down)} in the window, while this "
                "Prometheus scrapes other proxies" + (f" (job {', '.join(jobs[:3])})." if jobs else ".")),
        cause="waypoint-not-scraped", slug="waypoint-not-scraped",
        resource=f"Gateway {gateway.namespace}/{gateway.name}",
        suggestion=Suggestion(fix, ENVOY_STATS_POD_MONITOR, DOC_SCRAPE), waypoint=f"{gateway.namespace}/{gateway.name}",
        pods=sorted(p.name for p in missing)[:20], pods_down=sorted(p.name for p in down)[:20],
        sidecar_jobs=jobs[:5])


def _waypoint_pods(idx: TopologyIndex, gateway: KubeGateway) -> list[Pod]:
    """The running pods of a waypoint, within the run's scope."""
    return [p for p in idx.topo.pods if p.namespace == gateway.namespace and p.phase == "Running"
            and any(p.labels.get(k) == gateway.name for k in GATEWAY_POD_LABELS)]


def _uncollected(seen: SidecarTargets, pods: list[Pod], idx: TopologyIndex) -> bool:
    """None of the waypoint's pods was scraped, while some application sidecar or another waypoint was."""
    others = [p for p in idx.topo.pods if p not in pods and p.labels.get(GATEWAY_CLASS_LABEL) == WAYPOINT_CLASS]
    return not any(seen.state(p) == "scraped" for p in pods) \
        and (seen.judged or any(seen.state(p) == "scraped" for p in others))


def _unscraped_words(missing: list[Pod], down: list[Pod]) -> str:
    said = [f"{_names(missing)} {'has' if len(missing) == 1 else 'have'} no scrape target on an Envoy metrics port "
            "(15020, 15090)"] if missing else []
    return "; ".join(said + ([f"the scrape targets of {_names(down)} were never up"] if down else []))


def _relabelled(st: ServiceTraffic, inputs: CheckInputs, scraping: _Scraping, served: dict[str, int],
                gap: _Gap) -> Finding | None:
    """The jobs that scrape the Service's sidecars drop their request counts (or strip the labels that name the
    Service) in their metric_relabel_configs: Prometheus's running configuration, applied to the series those
    sidecars export. Claimed only where every job that scrapes a pod's sidecar loses its series for certain."""
    rules_of = scraping.rules_of
    if rules_of is None or st.dataplane != "sidecar":
        return None
    lost: dict[str, tuple[str, RelabelRule, int, str]] = {}
    for pod in st.pods:
        if not (application_sidecar(pod) and inputs.index.in_scope(pod)) \
                or st.mesh_by_pod.get(pod.name, 0.0) + st.peer_mesh_by_pod.get(pod.name, 0.0) > 0:
            continue
        fates = [(t.job, rules, _series_fate(rules, _server_series(st, pod, t.job, t.instance)))
                 for t in scraping.up_by_pod.get(pod.key, ()) for rules in rules_of(t.job)]
        if fates and all(fate is not None for *_, fate in fates):  # every job that scrapes it loses the series
            job, rules, fate = fates[0]
            if rules and fate is not None:
                lost[pod.name] = (job, rules[fate[0]], *fate)
    sidecars = [p for p in st.pods if application_sidecar(p) and inputs.index.in_scope(p)]
    through = _explains(st, served, set(lost), sidecars, gap)
    if not lost or through < inputs.settings.min_requests:
        return None
    svc = st.service
    job, rule, rule_index, what = next(iter(lost.values()))
    shown = yaml.safe_dump([dict(rule.raw)], sort_keys=False, width=120).rstrip("\n")
    pods = [p for p in st.pods if p.name in lost]
    since = inputs.metrics.configuration_since if inputs.metrics is not None else None
    return _gap_finding(
        st, gap, why=f"job {job}'s metric_relabel_configs {what} them",
        detail=(f"Pods of {svc.namespace}/{svc.name} run istio-proxy and count their requests, and Prometheus scrapes "
                f"them (job {job}), but of {gap.expected:,} requests ({_window(inputs, st)}) the metrics hold "
                f"{int(gap.mesh):,}: rule {rule_index + 1} of the job's metric_relabel_configs {what} the series "
                f"{_names(pods)} export (istio_requests_total, reporter=\"destination\"), as Prometheus's running "
                f"configuration says ({_config_in_force(since, inputs.window)})."),
        cause="metric-relabel-drops", slug="relabelled", resource=f"Service {svc.namespace}/{svc.name}",
        suggestion=Suggestion(f"Remove or narrow rule {rule_index + 1} of job {job}'s metric_relabel_configs (with "
                              "the Prometheus Operator: the monitor's metricRelabelings) so it keeps the mesh's "
                              "request metrics and their destination_service labels.", shown, DOC_TRAFFIC),
        job=job, rule=rule_index + 1, pods=sorted(lost)[:20],
        config_loaded_at=None if since is None else since.isoformat())


def _config_in_force(since: datetime | None, window: Window) -> str:
    """Whether the running configuration is the one the window was scraped under, in words."""
    if since is None:
        return "today's: the window's may have differed"
    at = f"{since.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if since <= window.start:
        return f"loaded {at}, before the window began: in force throughout it"
    return f"loaded {at}, after the window began: before then it may have differed"


def _explains(st: ServiceTraffic, served: dict[str, int], lost: set[str], sidecars: list[Pod], gap: _Gap) -> int:
    """The requests the `lost` pods account for, where they account for the gap; else 0. `served`: requests per pod
    by the served pods' witness (without a pod label on the mesh's series, they must match the gap both ways); empty
    where the callers' count is the witness (then every sidecar must be lost and the mesh count about 0)."""
    if served:
        through = sum(n for name, n in served.items() if name in lost)
        fits = through >= gap.missed * (1 - gap.tol) - 2 and (
            bool(st.mesh_by_pod) or gap.missed >= through * (1 - gap.tol) - 2)
        return through if fits else 0
    every = bool(sidecars) and len(lost) == len(sidecars) and gap.mesh <= gap.tol * gap.expected + 2
    return int(gap.missed) if every else 0


def _relabel_hint(st: ServiceTraffic, scraping: _Scraping) -> str:
    """Where the scraping jobs' rules may drop the Service's series (their verdict rests on labels whose values
    vary), in words; "" where the configuration was not read or no rule is in doubt."""
    if scraping.rules_of is None or st.dataplane != "sidecar":
        return ""
    for pod in st.pods:
        for t in scraping.up_by_pod.get(pod.key, ()):
            for rules in scraping.rules_of(t.job):
                if not rules:
                    continue
                series = _server_series(st, pod, t.job, t.instance)
                out = relabel.apply(rules, series | _VARYING, frozenset(series))
                if out.verdict == "unknown" and out.rule is not None:
                    return (f" Rule {out.rule + 1} of job {t.job}'s metric_relabel_configs may drop some of them: "
                            f"{out.why}.")
    return ""


_VARYING = {"source_workload": "unknown", "source_workload_namespace": "unknown", "source_app": "unknown",
            "source_principal": "unknown", "source_version": "unknown", "source_canonical_service": "unknown",
            "source_canonical_revision": "latest", "source_cluster": "unknown", "destination_principal": "unknown",
            "destination_version": "unknown", "destination_canonical_service": "unknown",
            "destination_canonical_revision": "latest", "destination_cluster": "unknown", "request_protocol": "http",
            "response_code": "200", "grpc_response_status": "", "response_flags": "-",
            "connection_security_policy": "mutual_tls", "destination_service": "unknown",
            "destination_workload": "unknown", "destination_workload_namespace": "unknown"}
"""Labels of istio_requests_total whose values vary from series to series, or that obsgap cannot be sure of:
stand-ins a rule may not decide on."""


def _server_series(st: ServiceTraffic, pod: Pod, job: str, instance: str) -> dict[str, str]:
    """The labels every server-side request-count series of the pod carries, as its scrape target adds them."""
    svc = st.service
    return {"__name__": "istio_requests_total", "job": job, "instance": instance, "namespace": pod.namespace,
            "pod": pod.name, "reporter": "destination", "destination_service_name": svc.name,
            "destination_service_namespace": svc.namespace}


_READ_BY = ("__name__", "reporter", "destination_service_name", "destination_service_namespace")
"""What the mesh's request query reads a series by: a rule that changes one loses the series for obsgap."""


def _series_fate(rules: tuple[RelabelRule, ...] | None, series: dict[str, str]) -> tuple[int, str] | None:
    """(the rule, `drops` or `strips the labels that name the Service in`) where the rules lose the series for
    certain; None where they keep it, or may."""
    if rules is None:
        return None
    out = relabel.apply(rules, series | _VARYING, frozenset(series))
    if out.verdict == "dropped" and out.rule is not None:
        return out.rule, "drops"
    if out.verdict == "kept" and out.labels is not None:
        changed = [n for n in _READ_BY if n in out.certain and out.labels.get(n) != series[n]]
        if changed:
            return _first_touching(rules, series, changed[0]), "strips the labels that name the Service in"
    return None


def _first_touching(rules: tuple[RelabelRule, ...], series: dict[str, str], label: str) -> int:
    """The first rule after which `label` no longer has its value."""
    for i in range(len(rules)):
        out = relabel.apply(rules[:i + 1], series | _VARYING, frozenset(series))
        if out.labels is not None and out.labels.get(label) != series[label]:
            return i
    return len(rules) - 1


def _neighbours(inputs: CheckInputs, namespace: str, own: list[Pod]) -> list[Pod]:
    """The application sidecars of other workloads in the namespace."""
    workloads = {p.workload for p in own}
    return [p for p in inputs.index.topo.pods
            if p.namespace == namespace and p.workload not in workloads and application_sidecar(p)]


def _names(pods: list[Pod]) -> str:
    shown = ", ".join(p.name for p in pods[:3])
    return shown + (f" and {len(pods) - 3} more" if len(pods) > 3 else "")


def _carry(pods: list[Pod], which: list[Pod]) -> str:
    return "They carry" if len(which) == len(pods) else f"{len(which)} of them carry"


def _why_not_scraped(missing: list[Pod], down: list[Pod], neighbours: list[Pod],
                     targets: SidecarTargets) -> tuple[str, str, str | None]:
    """(what the pods' own objects and their namespace say, the fix in words, a config that fixes it or None)."""
    also = " Also find why the other pods' targets were never up (`up == 0`)." if missing and down else ""
    if not missing:
        return ("", "Find why those targets were never up (`up == 0` for the whole window): the port unreachable "
                "from Prometheus (a NetworkPolicy), or the pods not ready.", None)
    ignored = [p for p in missing if IGNORE_LABEL in p.labels]
    if ignored:
        return (f"{_carry(missing, ignored)} the {IGNORE_LABEL} label, which Istio's envoy-stats PodMonitor skips.",
                f"Remove the {IGNORE_LABEL} label from the workload's pod template.{also}", None)
    no_scrape = [p for p in missing if says_false(p.annotations, SCRAPE_ANNOTATION)]
    if no_scrape:
        return (f'{_carry(missing, no_scrape)} prometheus.io/scrape: "false": the injector then advertises no merged '
                "metrics endpoint, and annotation-based scrape jobs skip them.",
                f'Remove prometheus.io/scrape: "false" from the pod template.{also}', None)
    unmerged = [p for p in missing if says_false(p.annotations, MERGE_ANNOTATION)]
    if unmerged:
        return (f'{_carry(missing, unmerged)} {MERGE_ANNOTATION}: "false": the injector then leaves their '
                "prometheus.io port and path at the app's own metrics, so jobs that follow those annotations "
                "(Istio's envoy-stats PodMonitor among them) scrape the app, not the sidecar.",
                "Scrape the sidecar's own stats (container port http-envoy-prom, 15090, path /stats/prometheus), or "
                f"turn metrics merging back on.{also}", None)
    ns = missing[0].namespace
    if any(targets.state(p) == "scraped" for p in neighbours):
        return (f"Other workloads' sidecars in namespace {ns} are scraped: a selector or relabel rule of the job "
                "leaves these pods out.", "Find the job's pod selector or `keep`/`drop` relabel rule that leaves "
                f"these pods out (their labels or annotations differ from their neighbours').{also}", None)
    podmonitor = ("Make the job that scrapes the other sidecars select these pods: with the Prometheus Operator, "
                  "Istio's envoy-stats PodMonitor (namespaceSelector any: true); with annotation-based discovery, "
                  f"the job's namespaces.{also}")
    if neighbours:
        return (f"No sidecar of namespace {ns} is scraped: the job's discovery leaves the namespace out.",
                podmonitor, ENVOY_STATS_POD_MONITOR)
    return (f"No other workload's sidecar runs in namespace {ns}: whether the job leaves out the namespace or only "
            "these pods cannot be told.", podmonitor, ENVOY_STATS_POD_MONITOR)


def _ingress_past_waypoint(st: ServiceTraffic, inputs: CheckInputs, missed: float, tol: float) -> Finding | None:
    """A waypoint serves the Service, but an ingress gateway sends its requests straight to the pods: Istio sends
    ingress traffic through a Service's waypoint only with `istio.io/ingress-use-waypoint: "true"` on the Service
    or its namespace. The waypoint never counts those requests; the gateway's own reporter="source" does."""
    if st.dataplane != "waypoint":
        return None
    svc, idx = st.service, inputs.index
    ns = idx.topo.namespaces.get(svc.namespace)
    if INGRESS_USE_WAYPOINT in svc.labels or (ns is not None and INGRESS_USE_WAYPOINT in ns.labels):
        return None  # opted in (or decided otherwise on purpose): nothing this rule explains
    gateways = {(ns_, wl) for (ns_, wl) in st.source_by_source if _is_gateway(idx, ns_, wl)}
    through = sum(st.source_by_source[g] for g in gateways)
    if through < inputs.settings.min_requests or through < missed * (1 - tol) - 2:
        return None
    share = min(1.0, missed / st.observed) if st.observed else 1.0
    names = ", ".join(f"{n}/{w}" for n, w in sorted(gateways))
    return Finding(
        check="envoy-bypass", severity=severity_for_missed(share),
        title=f"{svc.name}: {pct(share)} of requests come from the ingress gateway and skip its waypoint",
        detail=(f"A waypoint serves {svc.namespace}/{svc.name}, and it counted {int(st.mesh_requests):,} requests "
                f"(reporter=\"waypoint\"); the ingress gateway ({names}) alone sent {int(through):,} (its "
                f"reporter=\"source\"), about {int(missed):,} of which no waypoint saw. Without "
                f"{INGRESS_USE_WAYPOINT}=true on the Service or its namespace, Istio sends ingress traffic straight "
                "to the pods: no L7 metric, policy or telemetry of the waypoint applies to it."),
        subject=f"{svc.namespace}/{svc.name}/ingress-past-waypoint", namespace=svc.namespace, service=svc.name,
        cause="ambient/ingress-bypasses-waypoint", resource=f"Service {svc.namespace}/{svc.name}",
        evidence=TrafficEvidence.of(st.observed, st.mesh_requests, st.witness or CALLER_LOGS, st,
                                    missed_requests=int(missed), ingress_requests=int(through),
                                    gateways=sorted(f"{n}/{w}" for n, w in gateways)),
        suggestion=Suggestion(f"Let the ingress gateway use {svc.name}'s waypoint.",
                              f"kubectl label service {svc.name} -n {svc.namespace} {INGRESS_USE_WAYPOINT}=true",
                              DOC_AMBIENT))


def _is_gateway(idx: TopologyIndex, namespace: str, workload: str) -> bool:
    """An ingress (or egress) gateway's workload (ambient.is_gateway_pod)."""
    return any(is_gateway_pod(pod) for pod in idx.topo.pods + idx.topo.context_pods
               if (pod.namespace, pod.workload) == (namespace, workload))


def _outside_mesh(st: ServiceTraffic, inputs: CheckInputs) -> Finding | None:
    svc = st.service
    if not st.mesh_measured or st.unknown_source < inputs.settings.min_requests or st.mesh_requests <= 0:
        return None
    share = st.unknown_source / st.mesh_requests
    if share < 0.1:
        return None
    callers = _remote_callers(st, inputs)
    who = ", ".join(callers[:5]) if callers else "addresses not in the topology"
    return Finding(
        check="envoy-bypass", severity=Severity.WARNING if share >= 0.5 else Severity.INFO,
        title=f"{svc.name}: {pct(share)} of requests come from callers outside the mesh",
        detail=(f"{int(st.unknown_source):,} of {int(st.mesh_requests):,} requests to {svc.namespace}/{svc.name} "
                f"carry source_workload=\"unknown\": the callers have no sidecar ({who}). Their calls never pass a "
                "client-side Envoy, so reporter=\"source\" dashboards, client-side retries/timeouts and mTLS "
                "do not cover them."),
        subject=f"{svc.namespace}/{svc.name}/outside-mesh", namespace=svc.namespace, service=svc.name,
        cause="caller-outside-mesh", resource=f"Service {svc.namespace}/{svc.name}",
        evidence=TrafficEvidence.of(st.observed if st.witness else None, st.mesh_requests, st.witness,
                                    ratio=_ratio(st), unknown_source_requests=int(st.unknown_source),
                                    callers=callers[:20]),
        suggestion=Suggestion("Inject the calling workloads, or route outside callers through the ingress gateway.",
                              None, DOC_INJECTION))


def _remote_callers(st: ServiceTraffic, inputs: CheckInputs) -> list[str]:
    logs = inputs.logs
    if logs is None or logs.by_remote.empty:
        return []
    names = {p.name for p in st.pods}
    rows = logs.by_remote[logs.by_remote["pod"].isin(names)]
    counts: Counter[str] = Counter()
    for row in rows.itertuples(index=False):
        pod = inputs.index.pods_by_ip.get(str(row.remote_ip))
        if pod is not None and pod.sidecar.present:
            continue
        label = f"{pod.namespace}/{pod.workload}" if pod else f"{row.remote_ip} (outside the cluster)"
        counts[label] += int(row.requests)
    return [name for name, _ in counts.most_common()]


def _caller_key(namespace: str, workload: str, service: str) -> str:
    return f"caller:{namespace}/{workload}->{service}"


def _caller_calls(inputs: CheckInputs) -> list[tuple[str, str, str, str, int | None, int, Pod]]:
    """The calls in the logs of callers with a sidecar, made by the application itself (what its sidecar is told
    to skip, or not): (caller namespace, workload, service, its namespace, port, calls, caller pod)."""
    logs = inputs.logs
    if logs is None or logs.outbound.empty:
        return []
    idx = inputs.index
    out = []
    for row in logs.outbound.itertuples(index=False):
        pod = idx.pods_by_key.get((str(row.namespace), str(row.pod)))
        if pod is None or not pod.sidecar.present or not row.authority or row.origin != "app":
            continue
        resolved = idx.resolve(str(row.authority), pod.namespace)
        if resolved.service is not None:
            out.append((pod.namespace, pod.workload, resolved.service.name, resolved.service.namespace, resolved.port,
                        int(row.requests), pod))
    return out


def _caller_exclusions(inputs: CheckInputs) -> list[Finding]:
    """Callers whose own sidecar is told to skip the destination port: client-side metrics miss the calls."""
    hits: Counter[tuple[str, str, str, str, int]] = Counter()
    for ns, workload, service, service_ns, port, calls, pod in _caller_calls(inputs):
        if port is not None and port in pod.exclusions.exclude_outbound_ports:
            hits[(ns, workload, service_ns, service, port)] += calls
    out = []
    for (ns, workload, sns, sname, port), n in hits.items():
        if n < inputs.settings.min_requests:
            continue
        out.append(Finding(
            check="envoy-bypass", severity=Severity.WARNING,
            title=f"{workload} skips its sidecar when calling {sname}:{port}",
            detail=(f"{ns}/{workload} excludes outbound port {port} from its sidecar "
                    "(traffic.sidecar.istio.io/excludeOutboundPorts), and its logs show "
                    f"{n:,} calls to {sns}/{sname} on that port: no reporter=\"source\" metrics, no mTLS "
                    "origination and no client-side retries for them."),
            subject=f"{ns}/{workload}->{sns}/{sname}:{port}/excluded", namespace=ns, service=sname,
            workload=workload, port=port, cause="port-excluded", resource=f"Deployment {ns}/{workload}",
            evidence=TrafficEvidence.of(n, 0, CALLER_LOGS, ratio=0.0, service_namespace=sns),
            suggestion=Suggestion(f"Remove {port} from traffic.sidecar.istio.io/excludeOutboundPorts on {workload}.",
                                  None, DOC_TRAFFIC)))
    return out


def _ratio(st: ServiceTraffic) -> float | None:
    return round(st.mesh_requests / st.observed, 4) if st.observed else None
