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
from datetime import date, datetime
from typing import Any

from obsgap.errors import InputError
from obsgap.model import CheckRun, Finding, ObjectRef, Topology, key_namespace

ANNOTATION = "obsgap.io/suppress"
REASON_ANNOTATION = "obsgap.io/suppress-reason"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


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
    """A finding's `workload` (with `namespace`, the finding's)."""
    ref: ObjectRef | None = None
    """Annotations on a Deployment, StatefulSet or DaemonSet: the findings that name that object (their `resource`
    or the objects they are about), whatever namespace the finding itself is filed under."""

    def matches(self, f: Finding) -> bool:
        return (self.check in (f.check, "*") and (self.resource is None or self.resource == f.resource)
                and (self.namespace is None or self.namespace == f.namespace)
                and (self.service is None or self.service == f.service)
                and (self.port is None or self.port == f.port) and (self.pod is None or self.pod == f.pod)
                and (self.workload is None or self.workload == f.workload)
                and (self.ref is None or self._names_ref(f)))

    def _names_ref(self, f: Finding) -> bool:
        """The finding is about the annotated workload: its resource or one of its objects is that workload, or
        (when it names no workload of its own) its workload and namespace are the workload's."""
        assert self.ref is not None
        spelled = f"{self.ref.kind} {self.ref.namespace}/{self.ref.name}"
        if f.resource == spelled or self.ref in f.refs:
            return True
        names_a_workload = (f.resource or "").split(" ", 1)[0] in WORKLOAD_KINDS
        return not names_a_workload and f.workload == self.ref.name and f.namespace == self.ref.namespace

    def describe(self) -> str:
        scope = ", ".join(f"{k}={v}" for k, v in (("resource", self.resource), ("namespace", self.namespace),
                                                  ("service", self.service), ("port", self.port),
                                                  ("pod", self.pod), ("workload", self.workload)) if v is not None)
        if self.ref is not None:
            scope = ", ".join(x for x in (scope, f"{self.ref.kind} {self.ref.namespace}/{self.ref.name}") if x)
        return f"{self.check}" + (f" ({scope})" if scope else "") + f" from {self.source}"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "reason": self.reason, "source": self.source, "resource": self.resource,
                "namespace": self.namespace, "service": self.service, "port": self.port, "pod": self.pod,
                "workload": self.workload,
                "object": f"{self.ref.kind} {self.ref.namespace}/{self.ref.name}" if self.ref else None,
                "until": self.until.isoformat() if self.until else None}


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
    """Entries and annotations that matched no finding of what this run judged."""
    unknown: tuple[str, ...] = ()
    """Annotations naming a check obsgap does not have, one line each."""

    def notices(self) -> list[str]:
        out = [f"suppression expired on {s.until}: {s.describe()} no longer hides "
               f"{len(ids)} finding{'s' if len(ids) != 1 else ''} (reason was: {s.reason})" for s, ids in self.expired]
        out += [f"stale suppression: {s.describe()} matches no finding; remove it or correct it" for s in self.stale]
        return out + list(self.unknown)


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
        if isinstance(until, datetime):  # YAML reads `2027-03-31T00:00:00` as a time: the day is what counts
            until = until.date()
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


def from_annotations(topology: Topology | None,
                     known_checks: Sequence[str]) -> tuple[tuple[Suppression, ...], tuple[str, ...]]:
    """`obsgap.io/suppress: check[,check]` on a Namespace (its findings), a Service (the service's), a Pod or a
    workload (a Deployment, StatefulSet or DaemonSet: the findings that name it). Returns (the suppressions, one
    line per check name no check has, which suppresses nothing)."""
    if topology is None:
        return (), ()
    out: list[Suppression] = []
    unknown: list[str] = []

    def add(annotations: Mapping[str, str], kind: str, name: str, **scope: Any) -> None:
        checks = [c.strip() for c in annotations.get(ANNOTATION, "").split(",") if c.strip()]
        reason = annotations.get(REASON_ANNOTATION, "").strip() or f"{ANNOTATION} on {kind} {name} (no reason given)"
        for c in checks:
            if c != "*" and c not in known_checks:
                near = difflib.get_close_matches(c, known_checks, n=1)
                unknown.append(f"{ANNOTATION} on {kind} {name} names no check {c!r}: it suppresses nothing"
                               + (f" (did you mean {near[0]!r}?)" if near else ""))
                continue
            out.append(Suppression(c, reason, f"annotation {ANNOTATION} on {kind} {name}", **scope))

    for ns in topology.namespaces.values():
        add(ns.annotations, "Namespace", ns.name, namespace=ns.name)
    for svc in topology.services:
        add(svc.annotations, "Service", f"{svc.namespace}/{svc.name}", namespace=svc.namespace, service=svc.name)
    for pod in topology.pods:
        add(pod.annotations, "Pod", f"{pod.namespace}/{pod.name}", namespace=pod.namespace, pod=pod.name)
    for w in topology.workloads:
        add(w.annotations, w.kind, f"{w.namespace}/{w.name}", ref=ObjectRef(w.kind, w.namespace, w.name))
    return tuple(out), tuple(unknown)


def _judged(s: Suppression, runs: Mapping[str, CheckRun], scope: Sequence[str]) -> bool:
    """Whether this run judged what the entry names, so that matching nothing means it is stale: its check ran
    (any check, for `*`), its namespace is in the -n scope, and the check examined that namespace."""
    checked = [r for r in runs.values() if r.status == "ran"] if s.check == "*" else \
        [r for r in (runs.get(s.check),) if r is not None and r.status == "ran"]
    if not checked:
        return False
    ns = s.namespace or (s.ref.namespace if s.ref else None)
    if ns is None:
        return True
    if scope and ns not in scope:
        return False
    return any(r.examined is None or any(key_namespace(k) == ns for k in r.examined) for r in checked)


def apply(findings: Iterable[Finding], entries: Sequence[Suppression], today: date, runs: Iterable[CheckRun],
          scope: Sequence[str] = (), unknown: Sequence[str] = ()) -> tuple[tuple[Finding, ...], Suppressions]:
    """(the findings still reported, what the suppressions did). An entry is stale only when this run judged what
    it names (`_judged`) and it matched nothing; an expired entry lists the findings it no longer hides (those no
    live entry hides), and one that would match nothing is stale."""
    live = [s for s in entries if s.until is None or s.until >= today]
    expired = [s for s in entries if s.until is not None and s.until < today]
    kept: list[Finding] = []
    suppressed: list[SuppressedFinding] = []
    used: set[int] = set()
    findings = list(findings)
    for f in findings:
        hits = [i for i, s in enumerate(live) if s.matches(f)]
        used.update(hits)
        if hits:
            suppressed.append(SuppressedFinding(f, live[hits[0]]))
        else:
            kept.append(f)
    by_check = {r.check: r for r in runs}
    shown = {f.id for f in kept}
    back = [(s, tuple(f.id for f in findings if s.matches(f))) for s in expired]
    stale = [s for i, s in enumerate(live) if i not in used] + [s for s, ids in back if not ids]
    return tuple(kept), Suppressions(
        tuple(suppressed), tuple((s, tuple(i for i in ids if i in shown)) for s, ids in back
                                 if any(i in shown for i in ids)),
        tuple(s for s in stale if _judged(s, by_check, scope)), tuple(unknown))
