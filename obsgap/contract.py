"""The name-contract table: every name a service goes by, joined in one row, with the broken links marked.

Pure function of the check inputs; the report renders it and findings.json carries it as `name_contract`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from obsgap.evidence import CheckInputs
from obsgap.model import Finding, Service
from obsgap.names import HostResolver, to_fqdn
from obsgap.topology import selects


@dataclass
class NameLink:
    kind: str
    """service, virtualservice, destinationrule, subset, metric, job, caller."""
    name: str
    how: str = ""
    broken: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "how": self.how, "broken": self.broken, "note": self.note}


@dataclass
class ContractRow:
    namespace: str
    service: str
    fqdn: str
    links: list[NameLink] = field(default_factory=list)

    @property
    def broken(self) -> int:
        return sum(1 for link in self.links if link.broken)

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "service": self.service, "fqdn": self.fqdn, "broken": self.broken,
                "links": [link.as_dict() for link in self.links]}


def _how(host: str, svc: Service, config_ns: str) -> str:
    if "*" in host:
        return "wildcard"
    if host.lower() == svc.fqdn:
        return "FQDN"
    if "." not in host:
        return "short name" if config_ns == svc.namespace else "short name (other namespace)"
    return "partial name"


def build_contract(inputs: CheckInputs, findings: tuple[Finding, ...] = ()) -> list[ContractRow]:
    idx = inputs.index
    topo = idx.topo
    resolver = HostResolver(idx)
    rows = {s.key: ContractRow(s.namespace, s.name, s.fqdn) for s in topo.services}
    broken_subjects = {(f.resource or "") for f in findings}
    for s in topo.services:
        ports = ", ".join(f"{p.port}/{p.name or '-'}→{p.istio_protocol}" for p in s.ports)
        rows[s.key].links.append(NameLink("service", s.fqdn, ports,
                                          broken=any(p.protocol_source == "sniffed" for p in s.ports),
                                          note="a port has no Istio protocol" if any(
                                              p.protocol_source == "sniffed" for p in s.ports) else ""))
    for vs in topo.virtual_services:
        for dest in vs.destinations:
            if not dest.host:
                continue
            fqdn = to_fqdn(dest.host, vs.namespace)
            target = resolver.resolve(fqdn, vs.namespace)
            if target is None or target.service is None:
                continue
            svc = target.service
            broken = f"VirtualService {vs.namespace}/{vs.name}" in broken_subjects
            rows[svc.key].links.append(NameLink(
                "virtualservice", f"{vs.namespace}/{vs.name}", _how(dest.host, svc, vs.namespace)
                + (f", subset {dest.subset}" if dest.subset else ""), broken, f"host {dest.host}"))
    for dr in topo.destination_rules:
        target = resolver.resolve(to_fqdn(dr.host, dr.namespace), dr.namespace)
        if target is None or target.service is None:
            continue
        svc = target.service
        rows[svc.key].links.append(NameLink("destinationrule", f"{dr.namespace}/{dr.name}",
                                            _how(dr.host, svc, dr.namespace), False, f"host {dr.host}"))
        pods = [p for p in topo.pods if p.namespace == svc.namespace and selects(svc.selector, p.labels)]
        for subset in dr.subsets:
            n = sum(1 for p in pods if all((p.subset_labels or p.labels).get(k) == v for k, v in subset.labels.items()))
            tmpl = sum(1 for t in topo.workloads if t.namespace == svc.namespace and selects(svc.selector, t.labels)
                       and all(t.labels.get(k) == v for k, v in subset.labels.items()))
            rows[svc.key].links.append(NameLink("subset", subset.name, f"{n} pods" + (f", {tmpl} workloads"
                                                                                      if tmpl else ""),
                                                broken=n == 0 and tmpl == 0, note="selects nothing" if n == 0
                                                and tmpl == 0 else ""))
    if inputs.metrics is not None:
        df = inputs.metrics.frame("mesh_requests", ["destination_service", "destination_service_name",
                                                    "destination_service_namespace"])
        seen: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for row in df.itertuples(index=False):
            seen[(str(row.destination_service_namespace), str(row.destination_service_name))][
                str(row.destination_service)] += int(float(row.value))
        for key, values in seen.items():
            if key in rows:
                for value, n in values.most_common(5):
                    ok = value == rows[key].fqdn
                    rows[key].links.append(NameLink("metric", f'destination_service="{value}"', f"{n:,} requests",
                                                    broken=not ok, note="" if ok else "not the FQDN"))
        up = inputs.metrics.frame("scrape_targets", ["job", "namespace", "pod"])
        jobs: dict[tuple[str, str], set[str]] = defaultdict(set)
        for row in up.itertuples(index=False):
            pod = idx.pods_by_key.get((str(row.namespace), str(row.pod)))
            if pod is not None:
                for s in idx.services_of_pod(pod.namespace, pod.name):
                    jobs[s.key].add(str(row.job))
        mismatched = {f.job for f in findings if f.check == "job-name-mismatch"}
        for key, names in jobs.items():
            for job in sorted(names):
                rows[key].links.append(NameLink("job", job, "scrapes its pods", broken=job in mismatched,
                                                note="job name matches no service" if job in mismatched else ""))
    if inputs.logs is not None and not inputs.logs.outbound.empty:
        # app and sidecar log the same call: per caller pod and address keep the larger count
        per_origin: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in inputs.logs.outbound.itertuples(index=False):
            if row.authority:
                per_origin[(str(row.namespace or ""), str(row.pod or ""), str(row.authority))][str(row.origin)] += \
                    int(row.requests)
        hosts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for (ns, _pod, authority), by_origin in per_origin.items():
            resolved = idx.resolve(authority, ns or None)
            if resolved.service is not None:
                hosts[resolved.service.key][f"{authority}|{resolved.kind}"] += max(by_origin.values())
        for key, counter in hosts.items():
            for label, n in counter.most_common(6):
                authority, kind = label.rsplit("|", 1)
                rows[key].links.append(NameLink("caller", authority, f"{kind}, {n:,} calls",
                                                broken=kind in ("pod-ip", "wrong-namespace"),
                                                note="" if kind in ("fqdn", "namespace-qualified", "short-name",
                                                                    "service-ip") else kind))
    out = [r for r in rows.values() if len(r.links) > 1 or r.broken]
    out.sort(key=lambda r: (-r.broken, r.namespace, r.service))
    return out

