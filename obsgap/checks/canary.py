"""canary-without-outlier-detection: weighted routes to subsets whose DestinationRule cannot eject bad hosts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from obsgap.checks.base import Check, CheckInputs
from obsgap.model import Finding, FindingEvidence, Severity, Suggestion
from obsgap.names import to_fqdn

DOC = "https://istio.io/latest/docs/reference/config/networking/destination-rule/#OutlierDetection"
CONFIG = """spec:
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 5      # counted per Envoy (per caller pod), not mesh-wide
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 50"""


@dataclass(frozen=True, eq=False)
class CanaryEvidence(FindingEvidence):
    """The weighted route and its subsets that no outlier detection protects."""

    virtual_service: str
    subsets: tuple[str, ...]


class CanaryWithoutOutlierDetection(Check):
    """What it does: finds VirtualService routes that split traffic by weight across subsets (a
    canary or blue/green) where the DestinationRule defines no `outlierDetection`, neither for the
    whole host nor for the subset.

    Why is this bad? A broken canary keeps receiving its full weight: nothing ejects its failing
    hosts. Note that `consecutive5xxErrors` is counted by each client Envoy separately, not
    mesh-wide: with many callers each sending few requests, ejection triggers late, so pair it with
    an alert on the subset's error rate.

    Example: reviews split 50/50 between v2 and v3 with a DestinationRule that only lists subsets.

    Use instead: add `trafficPolicy.outlierDetection` to the DestinationRule.
    """

    id = "canary-without-outlier-detection"
    title = "Weighted canaries with no outlier detection"
    needs = ("topology",)
    kinds = ("networking.istio.io/VirtualService", "networking.istio.io/DestinationRule")
    doc_url = DOC

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        resolver = inputs.index
        out = []
        for vs in inputs.index.topo.virtual_services:
            for ri, route in enumerate(vs.weighted_routes):
                unprotected = []
                rule_names: set[str] = set()
                for dest in route:
                    if not dest.subset or not dest.host:
                        continue
                    rules = resolver.destination_rules_for(to_fqdn(dest.host, vs.namespace), vs.namespace)
                    rule_names.update(f"{r.namespace}/{r.name}" for r in rules)
                    protected = any(r.has_outlier_detection or any(s.name == dest.subset and s.has_outlier_detection
                                                                   for s in r.subsets) for r in rules)
                    if rules and not protected:
                        unprotected.append(f"{dest.subset} ({dest.weight or 0}%)")
                if not unprotected:
                    continue
                host = route[0].host
                dr = sorted(rule_names)[0]
                out.append(Finding(
                    check=cls.id, severity=Severity.WARNING,
                    title=f"{host}: weighted split to {', '.join(unprotected)} has no outlier detection",
                    detail=(f"VirtualService {vs.namespace}/{vs.name} splits traffic by weight, but DestinationRule "
                            f"{dr} defines no outlierDetection: a failing subset keeps its full share. "
                            "consecutive5xxErrors is counted per client Envoy, not mesh-wide, so also alert on the "
                            "subset's error rate."),
                    subject=f"{vs.namespace}/{vs.name}#{ri}", namespace=vs.namespace, service=host.split(".")[0],
                    resource=f"DestinationRule {dr}",
                    evidence=CanaryEvidence(f"{vs.namespace}/{vs.name}", tuple(unprotected)),
                    suggestion=Suggestion("Add outlierDetection to the DestinationRule.", CONFIG, DOC)))
        return out
