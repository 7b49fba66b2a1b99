"""Root causes: findings that one cause explains, grouped under the finding whose fix removes them all.

Each rule names a root finding and the symptoms it explains, from the findings' own fields (check, cause,
namespace, service), never from their wording:

- **An unlabelled namespace** (`namespace-not-injected`, Namespace N) explains the `envoy-bypass` findings of N
  whose cause is `no-sidecar/namespace-not-enabled`, and the `slo-untrustworthy` findings about those services (an
  SLO on metrics the mesh never wrote), unless a saturated histogram explains them (`latency-saturated`).
- **Calls by pod IP** (`call-address-not-fqdn`, cause `pod-ip`, to service S) explain the `passthrough-traffic`
  finding of S (calls to a pod's address go through PassthroughCluster), a `port-missing-from-metrics` finding of S
  with cause `port-not-declared` (the port those calls use) and the other callers' pod-IP findings about S. The
  caller with the most traffic is the root.
- **A saturated histogram** (`histogram-inf-saturation` of service S) explains the `slo-untrustworthy` findings of S
  with cause `latency-saturated`.
- **Sidecars Prometheus never scrapes** (`envoy-bypass`, cause `sidecar-not-scraped`, of service S and workload W)
  explain the `port-missing-from-metrics` finding of W with cause `metrics-port-not-scraped` (the same pods' scrape
  annotation) and the `slo-untrustworthy` findings of S whose SLI misses traffic or matches nothing (an SLO on
  metrics never collected): the bypass finding counts the requests lost and carries the fix.

A finding is a symptom of at most one root (the first rule that claims it); a root is never a symptom.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from obsgap.model import Finding

Key = tuple[str, str]


@dataclass(frozen=True)
class RootRule:
    name: str
    root: Callable[[Finding], Key | None]
    """The key of the cause a root finding stands for (None: not a root of this rule)."""
    symptom: Callable[[Finding, Mapping[Key, Finding], frozenset[Key]], Key | None]
    """The key of the cause a finding is a symptom of, given the roots found (None: not a symptom)."""


def _svc(f: Finding) -> Key:
    return (f.namespace or "", f.service or "")


def _unlabelled_root(f: Finding) -> Key | None:
    return (f.namespace or "", "") if f.check == "namespace-not-injected" and f.namespace else None


def _unlabelled_symptom(f: Finding, roots: Mapping[Key, Finding], bypassed: frozenset[Key]) -> Key | None:
    key = (f.namespace or "", "")
    if key not in roots:
        return None
    if f.check == "envoy-bypass" and f.cause == "no-sidecar/namespace-not-enabled":
        return key
    if f.check == "slo-untrustworthy" and f.cause != "latency-saturated" and _svc(f) in bypassed:
        return key
    return None


def _pod_ip_root(f: Finding) -> Key | None:
    return _svc(f) if f.check == "call-address-not-fqdn" and f.cause == "pod-ip" and f.service else None


def _pod_ip_symptom(f: Finding, roots: Mapping[Key, Finding], _bypassed: frozenset[Key]) -> Key | None:
    key = _svc(f)
    if key not in roots or roots[key] is f:
        return None
    if f.check == "passthrough-traffic" or (f.check == "port-missing-from-metrics" and f.cause == "port-not-declared"):
        return key
    return key if _pod_ip_root(f) is not None else None


def _saturated_root(f: Finding) -> Key | None:
    return _svc(f) if f.check == "histogram-inf-saturation" and f.cause is None and f.service else None


def _saturated_symptom(f: Finding, roots: Mapping[Key, Finding], _bypassed: frozenset[Key]) -> Key | None:
    key = _svc(f)
    return key if key in roots and f.check == "slo-untrustworthy" and f.cause == "latency-saturated" else None


def _unscraped_root(f: Finding) -> Key | None:
    return _svc(f) if f.check == "envoy-bypass" and f.cause == "sidecar-not-scraped" and f.service else None


def _unscraped_symptom(f: Finding, roots: Mapping[Key, Finding], _bypassed: frozenset[Key]) -> Key | None:
    if f.check == "port-missing-from-metrics" and f.cause == "metrics-port-not-scraped" and f.workload:
        return next((key for key, root in roots.items()
                     if (root.namespace, root.workload) == (f.namespace, f.workload)), None)
    if f.check == "slo-untrustworthy" and f.cause in ("sli-misses-traffic", "selector-matches-nothing"):
        return _svc(f) if _svc(f) in roots else None
    return None


RULES = (RootRule("unlabelled namespace", _unlabelled_root, _unlabelled_symptom),
         RootRule("calls by pod IP", _pod_ip_root, _pod_ip_symptom),
         RootRule("saturated histogram", _saturated_root, _saturated_symptom),
         RootRule("sidecars not scraped", _unscraped_root, _unscraped_symptom))


def root_groups(findings: Iterable[Finding], impact: Callable[[Finding], int]) -> dict[str, tuple[str, ...]]:
    """Root finding id -> the ids of the symptoms it explains (roots that explain nothing are left out)."""
    findings = list(findings)
    groups: dict[str, list[str]] = {}
    claimed: set[str] = set()
    for rule in RULES:
        roots: dict[Key, Finding] = {}
        for f in sorted(findings, key=lambda f: (-f.severity.rank, -impact(f), f.id)):
            key = rule.root(f)
            if key is not None and key not in roots and f.id not in claimed:
                roots[key] = f
        bypassed = frozenset(_svc(f) for f in findings
                             if f.check == "envoy-bypass" and f.cause == "no-sidecar/namespace-not-enabled")
        root_ids = {r.id for r in roots.values()}
        for f in findings:
            if f.id in claimed or f.id in root_ids or f.id in groups:
                continue
            key = rule.symptom(f, roots, bypassed)
            if key is not None:
                groups.setdefault(roots[key].id, []).append(f.id)
                claimed.add(f.id)
    return {root: tuple(ids) for root, ids in groups.items() if ids}
