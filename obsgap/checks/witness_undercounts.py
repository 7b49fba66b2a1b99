"""witness-undercounts: two witnesses of the same pods disagree; the one that counted clearly fewer misses requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from obsgap.analysis.reconcile import Served, ServiceTraffic
from obsgap.checks.base import Check, CheckInputs
from obsgap.model import Finding, FindingEvidence, Severity, Suggestion
from obsgap.text import pct
from obsgap.witness import SERVER_LOGS, witness_words

DOC = "https://opentelemetry.io/docs/specs/semconv/http/http-metrics/"
_FIX = {
    "server-logs": ("Log every request while auditing: remove access-log filters or sampling (Telemetry API "
                    "accessLogging), make the application log its requests, and check the log pipeline."),
    "app-metrics": ("Make the metrics middleware see every route and every pod: register it before the routers, "
                    "scrape every pod (prometheus.io/scrape), and keep the family's series through relabelling."),
    "ebpf": ("Run the eBPF agent on every node the service's pods run on, and include the service in its "
             "discovery (OBI/Beyla `discovery.instrument`)."),
}


@dataclass(frozen=True, eq=False)
class WitnessGap(FindingEvidence):
    """One witness of a service's served requests against the one that counted most, over the same pods."""

    witness: str
    """The witness that counted fewer."""
    observed_requests: int
    reference_witness: str
    reference_requests: int
    ratio: float
    pods: dict[str, tuple[int, int]] = field(default_factory=dict)
    """pod -> (this witness's count, the reference's), for the pods that differ most."""

    @property
    def impact(self) -> int:
        return max(0, self.reference_requests - self.observed_requests)


class WitnessUndercounts(Check):
    """What it does: where two or more witnesses saw the same pods serve requests (their logs, the services' own
    request metrics, an eBPF agent such as OBI or Beyla), compares what each counted over the same pods and window,
    and reports a witness that counted clearly fewer than the one that counted most, beyond the scrape-edge
    tolerance. Coverage always rests on the witness that saw most; this check says which one fell short, and on
    which pods.

    Why is this bad? A witness that misses requests would, alone, make a bypass look smaller or a port look quiet.
    It is also a gap of its own: logs that drop requests, a metrics middleware registered after some routers or
    missing on some pods, an eBPF agent absent from some nodes.

    Example: `checkout`'s application metrics count 14,400 requests; its access logs 7,200, because a Telemetry
    resource logs only errors and slow requests.

    Use instead: fix the undercounting witness (the finding says how for each kind), so every witness of the service
    agrees within the tolerance.
    """

    id = "witness-undercounts"
    title = "Witnesses that count fewer requests than another witness of the same pods"
    needs = ("topology",)
    kinds = ("Service", "Pod")
    doc_url = DOC
    causes = ("server-logs", "app-metrics", "ebpf")

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """Each witness of the services seen by two or more over the whole window (a witness whose query failed
        tonight is not among them)."""
        return frozenset(f"{st.service.namespace}/{st.service.name}/{w}" for st in _compared(inputs) for w in st.served)

    @classmethod
    def keys_of(cls, finding: Mapping[str, Any]) -> tuple[str, ...]:
        """A witness's shortfall is judged where that witness was read beside another."""
        evidence = finding.get("evidence") or {}
        return (f"{finding.get('namespace')}/{finding.get('service')}/{evidence.get('witness')}",)

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        out = []  # no service seen by two witnesses: nothing judged (examined() says so), nothing found
        for st in _compared(inputs):
            reference = st.primary
            assert reference is not None
            for served in st.served.values():
                if served is not reference:
                    found = _gap(st, served, reference, inputs)
                    if found is not None:
                        out.append(found)
        return out


def _compared(inputs: CheckInputs) -> list[ServiceTraffic]:
    """The services two or more witnesses saw, over the whole window (partial logs cover less of it than the metric
    witnesses: not like with like)."""
    return [st for st in inputs.analysis.traffic.services.values() if len(st.served) >= 2 and not st.covered]


def _gap(st: ServiceTraffic, served: Served, reference: Served, inputs: CheckInputs) -> Finding | None:
    own = served.by_pod_all_ports
    ref_pods = reference.by_pod_all_ports
    if served.witness == SERVER_LOGS:  # a pod none of whose lines were read is unknown to the logs, not silent
        ref_pods = {p: n for p, n in ref_pods.items() if p in own}
    expected = sum(ref_pods.values())
    counted = sum(own.get(p, 0) for p in ref_pods)
    if expected < inputs.settings.min_requests or expected - counted <= max(inputs.tolerance() * expected, 2.0):
        return None
    svc = st.service
    share = (expected - counted) / expected
    kind = served.witness.partition(":")[0]
    worst = sorted(ref_pods, key=lambda p: own.get(p, 0) - ref_pods[p])[:10]
    who, ref_who = witness_words(served.witness), witness_words(reference.witness)
    why = inputs.index.access_log_note(svc) if served.witness == SERVER_LOGS else ""
    return Finding(
        check=WitnessUndercounts.id, severity=Severity.WARNING if share >= 0.1 else Severity.INFO,
        title=f"{svc.name}: {who} counted {pct(share)} fewer requests than {ref_who}",
        detail=(f"Over the same {len(ref_pods)} pods of {svc.namespace}/{svc.name} and the same window, {ref_who} "
                f"counted {expected:,} requests and {who} {counted:,}, beyond the {pct(inputs.tolerance())} "
                "tolerance: the second misses requests. Coverage rests on the first." + why),
        subject=f"{svc.namespace}/{svc.name}/{served.witness}", namespace=svc.namespace, service=svc.name,
        cause=kind if kind in WitnessUndercounts.causes else None, resource=f"Service {svc.namespace}/{svc.name}",
        evidence=WitnessGap(served.witness, counted, reference.witness, expected, round(counted / expected, 4),
                            {p: (own.get(p, 0), ref_pods[p]) for p in worst}),
        suggestion=Suggestion(_FIX.get(kind, _FIX["app-metrics"]), None, DOC))
