"""The name-contract table: every name a service goes by, joined in one row, with the broken links marked.

Pure function of the check inputs; the report renders it and findings.json carries it as `name_contract`.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from obsgap.evidence import CheckInputs
from obsgap.model import ContractRow, Finding, NameLink, ObjectRef, Service
from obsgap.names import HostResolver, to_fqdn
from obsgap.topology import selects


def _how(host: str, svc: Service, config_ns: str) -> str:
    if "*" in host:
        return "wildcard"
    if host.lower() == svc.fqdn:
        return "FQDN"
    if "." not in host:
        return "short name" if config_ns == svc.namespace else "short name (other namespace)"
    return "partial name"


def build_contract(inputs: CheckInputs, findings: tuple[Finding, ...] = ()) -> tuple[ContractRow, ...]:
    idx = inputs.index
    topo = idx.topo
    resolver = HostResolver(idx)
    links: dict[tuple[str, str], list[NameLink]] = {s.key: [] for s in topo.services}
    about: dict[ObjectRef, list[str]] = defaultdict(list)
    for f in findings:
        for ref in f.refs:
            about[ref].append(f.id)

    def link(key: tuple[str, str], kind: str, name: str, ref: ObjectRef, how: str = "", broken: bool = False,
             note: str = "", also: tuple[str, ...] = ()) -> None:
        ids = tuple(dict.fromkeys((*about.get(ref, ()), *also)))
        links[key].append(NameLink(kind, name, ref, how, broken or bool(ids), note, ids))

    for s in topo.services:
        ports = ", ".join(f"{p.port}/{p.name or '-'}→{p.istio_protocol}" for p in s.ports)
        sniffed = any(p.protocol_source == "sniffed" for p in s.ports)
        link(s.key, "service", s.fqdn, ObjectRef("Service", s.namespace, s.name), ports, sniffed,
             "a port has no Istio protocol" if sniffed else "")
    for vs in topo.virtual_services:
        for dest in vs.destinations:
            if not dest.host:
                continue
            target = resolver.resolve(to_fqdn(dest.host, vs.namespace), vs.namespace)
            if target is None or target.service is None:
                continue
            svc = target.service
            link(svc.key, "virtualservice", f"{vs.namespace}/{vs.name}",
                 ObjectRef("VirtualService", vs.namespace, vs.name),
                 _how(dest.host, svc, vs.namespace) + (f", subset {dest.subset}" if dest.subset else ""),
                 note=f"host {dest.host}")
    for dr in topo.destination_rules:
        target = resolver.resolve(to_fqdn(dr.host, dr.namespace), dr.namespace)
        if target is None or target.service is None:
            continue
        svc = target.service
        link(svc.key, "destinationrule", f"{dr.namespace}/{dr.name}", ObjectRef("DestinationRule", dr.namespace,
                                                                                  dr.name),
             _how(dr.host, svc, dr.namespace), note=f"host {dr.host}")
        pods = [p for p in topo.pods if p.namespace == svc.namespace and selects(svc.selector, p.labels)]
        for subset in dr.subsets:
            n = sum(1 for p in pods if all((p.subset_labels or p.labels).get(k) == v for k, v in subset.labels.items()))
            tmpl = sum(1 for t in topo.workloads if t.namespace == svc.namespace and selects(svc.selector, t.labels)
                       and all(t.labels.get(k) == v for k, v in subset.labels.items()))
            empty = n == 0 and tmpl == 0
            link(svc.key, "subset", subset.name, ObjectRef("subset", dr.namespace, f"{dr.name}/{subset.name}"),
                 f"{n} pods" + (f", {tmpl} workloads" if tmpl else ""), empty, "selects nothing" if empty else "")
    if inputs.metrics is not None:
        df = inputs.metrics.frame("mesh_requests", ["destination_service", "destination_service_name",
                                                    "destination_service_namespace"])
        seen: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for row in df.itertuples(index=False):
            seen[(str(row.destination_service_namespace), str(row.destination_service_name))][
                str(row.destination_service)] += int(float(row.value))
        for key, values in seen.items():
            if key in links:
                fqdn = f"{key[1]}.{key[0]}.svc.cluster.local"
                for value, n in values.most_common(5):
                    ok = value == fqdn
                    link(key, "metric", f'destination_service="{value}"', ObjectRef("metric", key[0], value),
                         f"{n:,} requests", not ok, "" if ok else "not the FQDN")
        up = inputs.metrics.frame("scrape_targets", ["job", "namespace", "pod"])
        jobs: dict[tuple[str, str], set[str]] = defaultdict(set)
        for row in up.itertuples(index=False):
            pod = idx.pods_by_key.get((str(row.namespace), str(row.pod)))
            if pod is not None:
                for s in idx.services_of_pod(pod.namespace, pod.name):
                    jobs[s.key].add(str(row.job))
        for key, names in jobs.items():
            for job in sorted(names):
                ref = ObjectRef("job", "", job)
                link(key, "job", job, ref, "scrapes its pods",
                     note="job name matches no service" if ref in about else "")
    if inputs.logs is not None and not inputs.logs.outbound.empty:
        # app and sidecar log the same call: per caller pod and address keep the larger count
        per_origin: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in inputs.logs.outbound.itertuples(index=False):
            if row.authority:
                per_origin[(str(row.namespace or ""), str(row.pod or ""), str(row.authority))][str(row.origin)] += \
                    int(row.requests)
        hosts: dict[tuple[str, str], Counter[tuple[str, str]]] = defaultdict(Counter)
        for (ns, _pod, authority), by_origin in per_origin.items():
            resolved = idx.resolve(authority, ns or None)
            if resolved.service is not None:
                hosts[resolved.service.key][(authority, resolved.kind)] += max(by_origin.values())
        calls: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for f in findings:
            if f.check == "call-address-not-fqdn" and f.namespace and f.service and f.cause:
                calls[(f.namespace, f.service, f.cause)].append(f.id)
        for key, counter in hosts.items():
            for (authority, kind), n in counter.most_common(6):
                link(key, "caller", authority, ObjectRef("address", key[0], authority), f"{kind}, {n:,} calls",
                     kind in ("pod-ip", "wrong-namespace"),
                     "" if kind in ("fqdn", "namespace-qualified", "short-name", "service-ip") else kind,
                     tuple(calls.get((key[0], key[1], kind), ())))
    fqdns = {s.key: s.fqdn for s in topo.services}
    out = [ContractRow(key[0], key[1], fqdns[key], tuple(ls)) for key, ls in links.items()
           if len(ls) > 1 or any(x.broken for x in ls)]
    out.sort(key=lambda r: (-r.broken, r.namespace, r.service))
    return tuple(out)
