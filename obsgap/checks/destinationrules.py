"""destinationrule-host-unresolved (IST0174) and destinationrule-subset-unmatched (IST0173)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from obsgap.checks.base import Check, CheckInputs
from obsgap.istio import NODE_LOCALITY_LABELS
from obsgap.model import Finding, FindingEvidence, ObjectRef, Severity, Suggestion
from obsgap.names import to_fqdn
from obsgap.topology import TopologyIndex, selects

DOC = "https://istio.io/latest/docs/reference/config/networking/destination-rule/"


@dataclass(frozen=True, eq=False)
class HostEvidence(FindingEvidence):
    """The DestinationRule's host as written and as Istio expands it."""

    host: str
    fqdn: str


@dataclass(frozen=True, eq=False)
class SubsetEvidence(FindingEvidence):
    """A subset whose labels select none of the service's pods."""

    subset: str
    labels: dict[str, str]
    service_selector: dict[str, str]
    candidates: int
    """Pods the service's selector picks."""


class DestinationRuleHostUnresolved(Check):
    """What it does: resolves each DestinationRule's `host` relative to its namespace and reports
    hosts that match no Service or ServiceEntry. Same as IST0174.

    Why is this bad? The rule's load balancing, TLS and outlier detection apply to nothing: the
    traffic you meant to protect runs with defaults.

    Example: `host: fake-svc.default.svc.cluster.local` when no `fake-svc` exists.

    Use instead: the FQDN of the Service the rule is for.
    """

    id = "destinationrule-host-unresolved"
    title = "DestinationRules whose host matches no service"
    needs = ("topology",)
    kinds = ("Service", "networking.istio.io/DestinationRule", "networking.istio.io/ServiceEntry")
    istio_code = "IST0174"
    doc_url = DOC

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        resolver = inputs.index
        out = []
        for dr in inputs.index.topo.destination_rules:
            fqdn = to_fqdn(dr.host, dr.namespace)
            if resolver.config_host(fqdn, dr.namespace) is not None:
                continue
            out.append(Finding(
                check=cls.id, severity=Severity.WARNING, title=f"DestinationRule {dr.name}: host {dr.host} is unknown",
                detail=(f"DestinationRule {dr.namespace}/{dr.name} targets {dr.host} ({fqdn}), which matches no "
                        "Service or ServiceEntry: its traffic policy applies to nothing."),
                subject=f"{dr.namespace}/{dr.name}", namespace=dr.namespace, resource=f"DestinationRule "
                f"{dr.namespace}/{dr.name}", istio_code=cls.istio_code, evidence=HostEvidence(dr.host, fqdn),
                refs=(ObjectRef("DestinationRule", dr.namespace, dr.name),),
                suggestion=Suggestion("Set host to the FQDN of an existing Service.", None, DOC)))
        return out


def _on_unread_nodes(labels: Mapping[str, str], idx: TopologyIndex) -> bool:
    """A subset that selects by node locality, where the Nodes could not be listed: what it selects is unknown."""
    return "Node" in idx.topo.unread and any(k in NODE_LOCALITY_LABELS for k in labels)


def _selected(selector: Mapping[str, str], labels_list: list[Mapping[str, str]]) -> int:
    return sum(1 for labels in labels_list if all(labels.get(k) == v for k, v in selector.items()))


class DestinationRuleSubsetUnmatched(Check):
    """What it does: for each subset of each DestinationRule whose host is a Kubernetes Service,
    counts the pods (and, for snapshots without pods, the workloads' pod templates) that carry both
    the Service's selector and the subset's labels, and reports subsets that select none. Same as
    IST0173.

    Why is this bad? Routes to that subset fail with 503 (no healthy upstream), and a canary split
    silently sends its share nowhere.

    Example: subset `v3` with `version: v3` while only `version: v1` and `v2` pods exist.

    Use instead: fix the subset labels, or deploy the version it names.
    """

    id = "destinationrule-subset-unmatched"
    title = "DestinationRule subsets that select no pods"
    needs = ("topology",)
    kinds = ("Service", "Pod", "networking.istio.io/DestinationRule")
    istio_code = "IST0173"
    doc_url = DOC

    @classmethod
    def examined(cls, inputs: CheckInputs) -> frozenset[str]:
        """The namespaces in scope, but those of DestinationRules with a subset by node locality where the Nodes
        could not be listed."""
        idx = inputs.index
        unknown = {dr.namespace for dr in idx.topo.destination_rules
                   if any(_on_unread_nodes(s.labels, idx) for s in dr.subsets)}
        return inputs.in_scope_namespaces() - unknown

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        idx = inputs.index
        resolver = idx
        out = []
        for dr in idx.topo.destination_rules:
            target = resolver.config_host(to_fqdn(dr.host, dr.namespace), dr.namespace)
            if target is None or target.service is None:
                continue
            svc = target.service
            candidates = [p.subset_labels or p.labels for p in (*idx.topo.pods, *idx.topo.context_pods)
                          if p.namespace == svc.namespace]
            candidates += [t.labels for t in (*idx.topo.workloads, *idx.topo.context_workloads)
                           if t.namespace == svc.namespace]
            candidates = [c for c in candidates if not svc.selector or selects(svc.selector, c)]
            for subset in dr.subsets:
                if _selected(subset.labels, candidates) or _on_unread_nodes(subset.labels, idx):
                    continue
                labels = ", ".join(f"{k}={v}" for k, v in subset.labels.items())
                out.append(Finding(
                    check=cls.id, severity=Severity.WARNING,
                    title=f"DestinationRule {dr.name}: subset {subset.name} selects no pods",
                    detail=(f"Subset {subset.name} of DestinationRule {dr.namespace}/{dr.name} ({labels}) matches no "
                            f"pod of Service {svc.namespace}/{svc.name}: routes to it get no healthy upstream."),
                    subject=f"{dr.namespace}/{dr.name}/{subset.name}", namespace=dr.namespace, service=svc.name,
                    resource=f"DestinationRule {dr.namespace}/{dr.name}", istio_code=cls.istio_code,
                    refs=(ObjectRef("subset", dr.namespace, f"{dr.name}/{subset.name}"),),
                    evidence=SubsetEvidence(subset.name, dict(subset.labels), dict(svc.selector), len(candidates)),
                    suggestion=Suggestion(f"Make subset {subset.name}'s labels match the pods' labels.", None, DOC)))
        return out
