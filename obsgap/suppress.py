"""Accepted findings: suppressions from the config file (`suppress:`) and from annotations on the objects findings
name (`obsgap.io/suppress: check[,check]`, with `obsgap.io/suppress-reason`).

A suppressed finding is still computed and written (findings.json `suppressed`, collapsed in the HTML) with the
reason and where the suppression came from; it does not count for `--fail-on`, for the report's counts or for
"Fix first", and it is never "resolved" by being hidden. A config entry past its `until` date suppresses nothing
and says so (the finding is back, with the entry that expired); an entry that matches no finding is reported as
stale, since suppressions rot when what they named is renamed or fixed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from obsgap.errors import InputError
from obsgap.model import Finding, Topology

ANNOTATION = "obsgap.io/suppress"
REASON_ANNOTATION = "obsgap.io/suppress-reason"


@dataclass(frozen=True)
class Suppression:
    check: str
    reason: str
    source: str
    """Where it was written: `config FILE, suppress[N]` or `annotation on KIND NAMESPACE/NAME`."""
    resource: str | None = None
    """A finding's `resource` as findings.json spells it (e.g. `Namespace legacy`)."""
    namespace: str | None = None
    service: str | None = None
    port: int | None = None
    until: date | None = None
    pod: str | None = None
    """Annotations on a Pod: findings about that pod."""
    workload: str | None = None
    """Annotations on a Deployment, StatefulSet or DaemonSet: findings about that workload."""

    def matches(self, f: Finding) -> bool:
        return (self.check in (f.check, "*") and (self.resource is None or self.resource == f.resource)
                and (self.namespace is None or self.namespace == f.namespace)
                and (self.service is None or self.service == f.service)
                and (self.port is None or self.port == f.port) and (self.pod is None or self.pod == f.pod)
                and (self.workload is None or self.workload == f.workload))

    def describe(self) -> str:
        scope = ", ".join(f"{k}={v}" for k, v in (("resource", self.resource), ("namespace", self.namespace),
                                                  ("service", self.service), ("port", self.port),
                                                  ("pod", self.pod), ("workload", self.workload)) if v is not None)
        return f"{self.check}" + (f" ({scope})" if scope else "") + f" from {self.source}"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "reason": self.reason, "source": self.source, "resource": self.resource,
                "namespace": self.namespace, "service": self.service, "port": self.port, "pod": self.pod,
                "workload": self.workload, "until": self.until.isoformat() if self.until else None}


@dataclass(frozen=True)
class SuppressedFinding:
    finding: Finding
    by: Suppression


@dataclass(frozen=True)
class Suppressions:
    """What the suppressions did to one run's findings."""

    suppressed: tuple[SuppressedFinding, ...] = ()
    expired: tuple[tuple[Suppression, tuple[str, ...]], ...] = ()
    """Entries past their `until` that would have matched: (entry, the ids of the findings it no longer hides)."""
    stale: tuple[Suppression, ...] = ()
    """Entries and annotations that matched no finding of this run (judged only when their check ran)."""

    def notices(self) -> list[str]:
        out = [f"suppression expired on {s.until}: {s.describe()} no longer hides "
               f"{len(ids)} finding{'s' if len(ids) != 1 else ''} (reason was: {s.reason})" for s, ids in self.expired]
        out += [f"stale suppression: {s.describe()} matches no finding; remove it or correct it" for s in self.stale]
        return out


def parse_config(entries: Any, origin: str, known_checks: Sequence[str]) -> tuple[Suppression, ...]:
    """The config file's `suppress:` list; a malformed entry is a clear error naming it."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise InputError(f"{origin}: suppress must be a list of entries (check, reason, and resource or "
                         f"namespace/service/port; optional until)")
    out = []
    for i, e in enumerate(entries):
        where = f"{origin}, suppress[{i}]"
        if not isinstance(e, Mapping):
            raise InputError(f"{where}: expected a mapping, found {type(e).__name__}")
        unknown = set(e) - {"check", "reason", "resource", "namespace", "service", "port", "until", "pod", "workload"}
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        check = str(e.get("check") or "")
        if check != "*" and check not in known_checks:
            near = difflib.get_close_matches(check, known_checks, n=1)
            raise InputError(f"{where}: unknown check {check!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        reason = str(e.get("reason") or "").strip()
        if not reason:
            raise InputError(f"{where}: give a reason (who accepted this, and why)")
        until = e.get("until")
        if until is not None and not isinstance(until, date):
            try:
                until = date.fromisoformat(str(until))
            except ValueError as exc:
                raise InputError(f"{where}: until {until!r} is not a date (YYYY-MM-DD)") from exc
        port = e.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise InputError(f"{where}: port must be a number")
        text = {k: None if e.get(k) is None else str(e[k])
                for k in ("resource", "namespace", "service", "pod", "workload")}
        out.append(Suppression(check, reason, where, text["resource"], text["namespace"], text["service"], port,
                               until, text["pod"], text["workload"]))
    return tuple(out)


def from_annotations(topology: Topology | None) -> tuple[Suppression, ...]:
    """`obsgap.io/suppress: check[,check]` on a Namespace (its findings), a Service (the service's), a Pod or a
    workload (a Deployment, StatefulSet or DaemonSet: the findings about it)."""
    if topology is None:
        return ()
    out: list[Suppression] = []

    def add(annotations: Mapping[str, str], kind: str, name: str, namespace: str, service: str | None = None,
            pod: str | None = None, workload: str | None = None) -> None:
        checks = [c.strip() for c in annotations.get(ANNOTATION, "").split(",") if c.strip()]
        reason = annotations.get(REASON_ANNOTATION, "").strip() or f"{ANNOTATION} on {kind} {name} (no reason given)"
        out.extend(Suppression(c, reason, f"annotation {ANNOTATION} on {kind} {name}", namespace=namespace,
                               service=service, pod=pod, workload=workload) for c in checks)

    for ns in topology.namespaces.values():
        add(ns.annotations, "Namespace", ns.name, ns.name)
    for svc in topology.services:
        add(svc.annotations, "Service", f"{svc.namespace}/{svc.name}", svc.namespace, service=svc.name)
    for pod in topology.pods:
        add(pod.annotations, "Pod", f"{pod.namespace}/{pod.name}", pod.namespace, pod=pod.name)
    for w in topology.workloads:
        add(w.annotations, w.kind, f"{w.namespace}/{w.name}", w.namespace, workload=w.name)
    return tuple(out)


def apply(findings: Iterable[Finding], entries: Sequence[Suppression], today: date,
          ran: Iterable[str]) -> tuple[tuple[Finding, ...], Suppressions]:
    """(the findings still reported, what the suppressions did). `ran`: the checks that ran (an entry for a
    check that did not run is not stale: nothing was judged)."""
    live = [s for s in entries if s.until is None or s.until >= today]
    expired = [s for s in entries if s.until is not None and s.until < today]
    kept: list[Finding] = []
    suppressed: list[SuppressedFinding] = []
    used: set[int] = set()
    findings = list(findings)
    for f in findings:
        hit = next((i for i, s in enumerate(live) if s.matches(f)), None)
        if hit is None:
            kept.append(f)
        else:
            used.add(hit)
            suppressed.append(SuppressedFinding(f, live[hit]))
    ran_checks = set(ran)
    back = [(s, tuple(f.id for f in findings if s.matches(f))) for s in expired]
    stale = [s for i, s in enumerate(live) if i not in used] + [s for s, ids in back if not ids]
    return tuple(kept), Suppressions(tuple(suppressed), tuple((s, ids) for s, ids in back if ids),
                                     tuple(s for s in stale if s.check == "*" or s.check in ran_checks))
