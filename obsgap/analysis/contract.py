"""The name-contract table: every name a service goes by, joined in one row, with the links that break marked.

Pure function of the evidence, computed once before the checks. The links name the objects they stand for
(ObjectRef); the report joins them to the findings about those objects (report.build), so this table needs no
finding and no check id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

from obsgap.ambient import use_ref
from obsgap.analysis.reconcile import caller_calls
from obsgap.evidence import Evidence
from obsgap.model import ContractRow, NameLink, ObjectRef, Service
from obsgap.names import service_fqdn
from obsgap.topology import selects

Links = Iterator[tuple[tuple[str, str], NameLink]]
"""(service key, link) pairs."""


def _how(host: str, svc: Service, config_ns: str) -> str:
    if "*" in host:
        return "wildcard"
    if host.lower() == svc.fqdn:
        return "FQDN"
    if "." not in host:
        return "short name" if config_ns == svc.namespace else "short name (other namespace)"
    return "partial name"


def _services(ev: Evidence) -> Links:
    for s in ev.index.topo.services:
        ports = ", ".join(f"{p.port}/{p.name or '-'}→{p.istio_protocol}" for p in s.ports)
        sniffed = any(p.protocol_source == "sniffed" for p in s.ports)
        yield s.key, NameLink("service", s.fqdn, ObjectRef("Service", s.namespace, s.name), ports, sniffed,
                              "a port has no Istio protocol" if sniffed else "")


def _virtual_services(ev: Evidence) -> Links:
    topo = ev.index.topo
    for vs in (*topo.virtual_services, *topo.context_virtual_services):  # only in-scope Services keep their links
        for dest in vs.destinations:
            target = ev.index.config_host(dest.host, vs.namespace) if dest.host else None
            if target is None or target.service is None:
                continue
            svc = target.service
            yield svc.key, NameLink("virtualservice", f"{vs.namespace}/{vs.name}",
                                    ObjectRef("VirtualService", vs.namespace, vs.name),
                                    _how(dest.host, svc, vs.namespace) + (f", subset {dest.subset}" if dest.subset
                                                                          else ""), note=f"host {dest.host}")


def _destination_rules(ev: Evidence) -> Links:
    topo = ev.index.topo
    for dr in (*topo.destination_rules, *topo.context_destination_rules):  # only in-scope Services keep their links
        target = ev.index.config_host(dr.host, dr.namespace)
        if target is None or target.service is None:
            continue
        svc = target.service
        yield svc.key, NameLink("destinationrule", f"{dr.namespace}/{dr.name}",
                                ObjectRef("DestinationRule", dr.namespace, dr.name), _how(dr.host, svc, dr.namespace),
                                note=f"host {dr.host}")
        pods = [p for p in topo.pods if p.namespace == svc.namespace and selects(svc.selector, p.labels)]
        for subset in dr.subsets:
            n = sum(1 for p in pods if all((p.subset_labels or p.labels).get(k) == v for k, v in subset.labels.items()))
            tmpl = sum(1 for t in topo.workloads if t.namespace == svc.namespace and selects(svc.selector, t.labels)
                       and all(t.labels.get(k) == v for k, v in subset.labels.items()))
            empty = n == 0 and tmpl == 0
            ref = ObjectRef("subset", dr.namespace, f"{dr.name}/{subset.name}")
            yield svc.key, NameLink("subset", subset.name, ref, f"{n} pods" + (f", {tmpl} workloads" if tmpl else ""),
                                    empty, "selects nothing" if empty else "")


def _routes(ev: Evidence) -> Links:
    """Gateway API routes: a Service they attach to (GAMMA, a waypoint's routes) and the Services they send to."""
    for route in (*ev.index.topo.routes, *ev.index.topo.context_routes):
        ref = ObjectRef(route.kind, route.namespace, route.name)
        name = f"{route.namespace}/{route.name}"
        for parent in route.parents:
            if parent.kind == "Service":
                yield (parent.namespace, parent.name), NameLink(
                    route.kind.lower(), name, ref, "parent" + (f" :{parent.port}" if parent.port else ""),
                    note="" if parent.group == "" else 'parentRef without group: ""')
        for backend in route.backends:
            if backend.kind == "Service" and backend.group == "":
                yield (backend.namespace, backend.name), NameLink(
                    route.kind.lower(), name, ref, "backend" + (f" :{backend.port}" if backend.port else " (no port)"))


def _waypoints(ev: Evidence) -> Links:
    """The waypoint a Service asks for (istio.io/use-waypoint), broken when it cannot serve it."""
    for svc in ev.index.topo.services:
        found = ev.index.waypoint_of(svc)
        if found is None:
            continue
        req = found.request
        yield svc.key, NameLink("waypoint", f"{req.namespace}/{req.name}", use_ref(svc.namespace, svc.name, req),
                                f"istio.io/use-waypoint ({req.asked_by})", not found.serves,
                                "" if found.serves else (found.problem or ""))


def _metric_names(ev: Evidence) -> Links:
    if ev.metrics is None:
        return
    df = ev.metrics.frame("mesh_requests", ["destination_service", "destination_service_name",
                                            "destination_service_namespace"])
    seen: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in df.itertuples(index=False):
        seen[(str(row.destination_service_namespace), str(row.destination_service_name))][
            str(row.destination_service)] += int(float(row.value))
    for key, values in seen.items():
        fqdn = service_fqdn(key[1], key[0])
        for value, n in values.most_common(5):
            ok = value == fqdn
            yield key, NameLink("metric", f'destination_service="{value}"', ObjectRef("metric", key[0], value),
                                f"{n:,} requests", not ok, "" if ok else "not the FQDN")


def _jobs(ev: Evidence) -> Links:
    if ev.metrics is None:
        return
    up = ev.metrics.frame("scrape_targets", ["job", "namespace", "pod"])
    jobs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in up.itertuples(index=False):
        for s in ev.index.services_of_pod(str(row.namespace), str(row.pod)):
            jobs[s.key].add(str(row.job))
    for key, names in jobs.items():
        for job in sorted(names):
            yield key, NameLink("job", job, ObjectRef("job", "", job), "scrapes its pods")


def _callers(ev: Evidence) -> Links:
    if ev.logs is None:
        return
    hosts: dict[tuple[str, str], Counter[tuple[str, str]]] = defaultdict(Counter)
    for (ns, _pod, authority), n in caller_calls(ev.logs):
        resolved = ev.index.resolve(authority, ns or None)
        if resolved.service is not None:
            hosts[resolved.service.key][(authority, resolved.kind)] += n
    for key, counter in hosts.items():
        for (authority, kind), n in counter.most_common(6):
            broken = kind in ("pod-ip", "wrong-namespace")
            yield key, NameLink("caller", authority, ObjectRef("address", key[0], authority), f"{kind}, {n:,} calls",
                                broken, "" if kind in ("fqdn", "namespace-qualified", "short-name", "service-ip")
                                else kind)


def build_contract(ev: Evidence) -> tuple[ContractRow, ...]:
    """One row per service with more than its own name, or with a broken one."""
    topo = ev.index.topo
    links: dict[tuple[str, str], list[NameLink]] = {s.key: [] for s in topo.services}
    for part in (_services, _virtual_services, _destination_rules, _routes, _waypoints, _metric_names, _jobs,
                 _callers):
        for key, link in part(ev):
            if key in links:
                links[key].append(link)
    fqdns = {s.key: s.fqdn for s in topo.services}
    out = [ContractRow(key[0], key[1], fqdns[key], tuple(ls)) for key, ls in links.items()
           if len(ls) > 1 or any(x.broken for x in ls)]
    out.sort(key=lambda r: (-r.broken, r.namespace, r.service))
    return tuple(out)
