"""Raw Kubernetes API objects (dicts, as `kubectl get -o json` prints them) -> Topology.

Snapshot files and the live API both end here, so they produce the same structures.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from obsgap import ambient, istio
from obsgap.model import (
    GATEWAY_API_GROUP,
    AccessLogRule,
    Condition,
    DestinationRule,
    Gateway,
    KubeGateway,
    Listener,
    MetricOverride,
    MetricsRule,
    Namespace,
    Pod,
    PolicyTarget,
    ReferenceGrant,
    Route,
    RouteDestination,
    RouteRef,
    Service,
    ServiceEntry,
    ServicePort,
    SidecarState,
    Subset,
    Telemetry,
    Topology,
    VirtualService,
    WorkloadTemplate,
)
from obsgap.sources.kube.meshconfig import access_formats, mesh_defaults

RAW = Mapping[str, Any]
_RS_HASH = re.compile(r"-[a-z0-9]{5,10}$")


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _meta(obj: RAW) -> tuple[str, str]:
    md = obj.get("metadata")
    md = md if isinstance(md, Mapping) else {}
    return str(md.get("namespace") or "default"), str(md.get("name") or "")


def _normalize(obj: RAW) -> RAW:
    """metadata/spec/status of a malformed object become empty mappings, so every reader can .get() them."""
    fixed = dict(obj)
    for key in ("metadata", "spec", "status"):
        if not isinstance(fixed.get(key), Mapping):
            fixed[key] = {}
    for key in ("labels", "annotations"):
        if not isinstance(fixed["metadata"].get(key), Mapping | None):
            fixed["metadata"] = {**fixed["metadata"], key: {}}
    return fixed


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _service(obj: RAW) -> Service:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    ports = []
    for p in spec.get("ports") or []:
        if not isinstance(p, Mapping):
            continue
        number = _int_or_none(p.get("port"))
        if number is None:
            continue
        transport = str(p.get("protocol") or "TCP")
        pname = str(p.get("name") or "")
        app = p.get("appProtocol")
        proto, source = istio.port_protocol(pname, str(app) if app else None, number, transport)
        target = p.get("targetPort")
        target_val: int | str | None = _int_or_none(target) if _int_or_none(target) is not None else target
        ports.append(ServicePort(pname, number, target_val if target is not None else number,
                                 transport, str(app) if app else None, proto, source))  # type: ignore[arg-type]
    md = obj.get("metadata") or {}
    export = _str_map(md.get("annotations")).get("networking.istio.io/exportTo", "")
    return Service(ns, name, tuple(ports), _str_map(spec.get("selector")), spec.get("clusterIP"),
                   str(spec.get("type") or "ClusterIP"), _str_map(md.get("labels")),
                   tuple(e.strip() for e in export.split(",") if e.strip()),
                   _conditions(_mapping(obj.get("status")).get("conditions")) or (),
                   _str_map(md.get("annotations")))


def _workload(obj: RAW, rs_owner: Mapping[tuple[str, str], tuple[str, str]]) -> tuple[str, str]:
    ns, name = _meta(obj)
    md = obj.get("metadata") or {}
    for ref in md.get("ownerReferences") or []:
        if not isinstance(ref, Mapping):
            continue
        kind, owner = str(ref.get("kind", "")), str(ref.get("name", ""))
        if kind == "ReplicaSet":
            if (ns, owner) in rs_owner:
                return rs_owner[(ns, owner)]
            tmpl_hash = _str_map(md.get("labels")).get("pod-template-hash")
            if tmpl_hash and owner.endswith("-" + tmpl_hash):
                return owner[: -len(tmpl_hash) - 1], "Deployment"
            return _RS_HASH.sub("", owner), "Deployment"
        if kind == "Job" and re.search(r"-\d{8,}$", owner):
            return re.sub(r"-\d{8,}$", "", owner), "CronJob"
        return owner, kind
    return name, "Pod"


def _container_ports(spec: RAW) -> tuple[tuple[str, int, str], ...]:
    """(container, port, port name) for every declared containerPort."""
    out = []
    for c in spec.get("containers") or []:
        if not isinstance(c, Mapping):
            continue
        for p in c.get("ports") or []:
            num = _int_or_none(p.get("containerPort")) if isinstance(p, Mapping) else None
            if num is not None:
                out.append((str(c.get("name", "")), num, str(p.get("name") or "")))
    return tuple(out)


def _agent_paths(spec: RAW, annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The paths kubelet's HTTP probes and, with metrics merging, Prometheus' scrapes reach through pilot-agent."""
    paths: set[str] = set()
    for c in spec.get("containers") or []:
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            http = ((c.get(probe) or {}) if isinstance(c, Mapping) else {}).get("httpGet") or {}
            if isinstance(http, Mapping) and http.get("path"):
                paths.add(str(http["path"]).split("?", 1)[0])
    if annotations.get("prometheus.io/scrape") == "true":
        scrape = annotations.get("prometheus.io/path", "/metrics")
        paths.add(scrape if scrape != "/stats/prometheus" else "/metrics")
    return tuple(sorted(paths))


def _probes_per_second(spec: RAW) -> float:
    """kubelet's HTTP probes per second over every container (1 / periodSeconds each; 10 s when not given)."""
    rate = 0.0
    for c in spec.get("containers") or []:
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            body = (c.get(probe) or {}) if isinstance(c, Mapping) else {}
            if isinstance(body, Mapping) and isinstance(body.get("httpGet"), Mapping):
                period = _int_or_none(body.get("periodSeconds")) or 10
                rate += 1.0 / max(period, 1) if probe != "startupProbe" else 0.0
    return rate


def _names(items: Any) -> tuple[str, ...]:
    return tuple(str(c.get("name", "")) for c in items or [] if isinstance(c, Mapping))


def _pod(obj: RAW, namespaces: Mapping[str, Namespace], rs_owner: Mapping[tuple[str, str], tuple[str, str]],
         nodes: Mapping[str, Mapping[str, str]], mesh_ambient: bool = False) -> Pod:
    ns, name = _meta(obj)
    md = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    labels, annotations = _str_map(md.get("labels")), _str_map(md.get("annotations"))
    ns_labels = namespaces[ns].labels if ns in namespaces else {}
    workload, kind = _workload(obj, rs_owner)
    node = str(spec["nodeName"]) if spec.get("nodeName") else None
    return Pod(
        namespace=ns, name=name, ip=status.get("podIP"), labels=labels, annotations=annotations,
        containers=_names(spec.get("containers")), container_ports=_container_ports(spec),
        init_containers=_names(spec.get("initContainers")), workload=workload, workload_kind=kind,
        sidecar=istio.sidecar_state(ns, ns_labels, md, spec, status, mesh_ambient),
        exclusions=istio.traffic_exclusions(annotations),
        host_network=bool(spec.get("hostNetwork")), phase=str(status.get("phase") or "Running"), node=node,
        subset_labels=istio.augment_labels(labels, spec.get("nodeName"), nodes.get(str(spec.get("nodeName")))),
        agent_paths=_agent_paths(spec, annotations), probes_per_second=_probes_per_second(spec),
        uid=str(md["uid"]) if md.get("uid") else None, started_ms=_epoch_ms(status.get("startTime")),
        restarts=_restarts(status),
    )


def _epoch_ms(value: Any) -> int | None:
    """An RFC 3339 time of the API (`2026-11-24T00:00:00Z`) in epoch ms, or None."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _restarts(status: RAW) -> dict[str, tuple[int, int | None]]:
    out: dict[str, tuple[int, int | None]] = {}
    for cs in status.get("containerStatuses") or []:
        if isinstance(cs, Mapping) and cs.get("name"):
            ended = _mapping(_mapping(cs.get("lastState")).get("terminated")).get("finishedAt")
            out[str(cs["name"])] = (_int_or_none(cs.get("restartCount")) or 0, _epoch_ms(ended))
    return out


def _mapping(value: Any) -> RAW:
    return value if isinstance(value, Mapping) else {}


def _template(obj: RAW, namespaces: Mapping[str, Namespace], mesh_ambient: bool = False) -> WorkloadTemplate:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    template = _mapping(spec.get("template"))
    meta, pod_spec = _mapping(template.get("metadata")), _mapping(template.get("spec"))
    ns_labels = namespaces[ns].labels if ns in namespaces else {}
    state = istio.sidecar_state(ns, ns_labels, meta, pod_spec, {}, mesh_ambient)
    return WorkloadTemplate(ns, str(obj.get("kind")), name, _str_map(meta.get("labels")),
                            _int_or_none(spec.get("replicas")), state.placeholder and not state.expected,
                            _str_map(_mapping(obj.get("metadata")).get("annotations")))


def _destination(d: Any, kind: str = "route") -> RouteDestination | None:
    """A route entry; one with no destination host is kept with host "" (istioctl reports it too)."""
    if not isinstance(d, Mapping):
        return None
    dest = d.get("destination", d) if kind == "route" else d
    if not isinstance(dest, Mapping):
        return None
    if not dest.get("host"):
        return RouteDestination("", None, None, _int_or_none(d.get("weight")), kind)  # type: ignore[arg-type]
    port = dest.get("port") or {}
    return RouteDestination(str(dest["host"]), dest.get("subset"),
                            _int_or_none(port.get("number")) if isinstance(port, Mapping) else None,
                            _int_or_none(d.get("weight")), kind)  # type: ignore[arg-type]


def _virtual_service(obj: RAW) -> VirtualService:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    dests: list[RouteDestination] = []
    weighted: list[tuple[RouteDestination, ...]] = []
    for proto in ("http", "tcp", "tls"):
        for route in spec.get(proto) or []:
            if not isinstance(route, Mapping):
                continue
            this_route = [r for r in (_destination(d) for d in route.get("route") or []) if r]
            dests.extend(this_route)
            if len([r for r in this_route if r.weight]) >= 2:
                weighted.append(tuple(this_route))
            mirror = _destination(route.get("mirror"), "mirror") if route.get("mirror") else None
            if mirror:
                dests.append(mirror)
            for m in route.get("mirrors") or []:
                md = _destination(m.get("destination") if isinstance(m, Mapping) else None, "mirror")
                if md:
                    dests.append(md)
    return VirtualService(ns, name, tuple(str(h) for h in spec.get("hosts") or []),
                          tuple(str(g) for g in spec.get("gateways") or []), tuple(dests),
                          tuple(str(e) for e in spec.get("exportTo") or []), tuple(weighted))


def _destination_rule(obj: RAW) -> DestinationRule:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    tp = spec.get("trafficPolicy") or {}
    subsets = tuple(
        Subset(str(s.get("name", "")), _str_map(s.get("labels")),
               bool((s.get("trafficPolicy") or {}).get("outlierDetection")))
        for s in spec.get("subsets") or [] if isinstance(s, Mapping))
    return DestinationRule(ns, name, str(spec.get("host") or ""), subsets, bool(tp.get("outlierDetection")),
                           tuple(str(e) for e in spec.get("exportTo") or []))


def _service_entry(obj: RAW) -> ServiceEntry:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    ports = tuple(p for p in (_int_or_none(p.get("number")) for p in spec.get("ports") or []
                              if isinstance(p, Mapping)) if p is not None)
    return ServiceEntry(ns, name, tuple(str(h) for h in spec.get("hosts") or []), ports,
                        tuple(str(e) for e in spec.get("exportTo") or []))


def _gateway(obj: RAW) -> Gateway:
    ns, name = _meta(obj)
    hosts = [str(h) for s in (obj.get("spec") or {}).get("servers") or [] if isinstance(s, Mapping)
             for h in s.get("hosts") or []]
    return Gateway(ns, name, tuple(hosts))




def _gateway_api(obj: RAW) -> bool:
    return str(obj.get("apiVersion") or "").split("/")[0] == GATEWAY_API_GROUP


def _conditions(raw: Any) -> tuple[Condition, ...] | None:
    if not isinstance(raw, list):
        return None
    return tuple(Condition(str(c.get("type") or ""), str(c.get("status") or ""), str(c.get("reason") or ""),
                           str(c.get("message") or "")) for c in raw if isinstance(c, Mapping))


def _listener(raw: RAW) -> Listener:
    allowed = _mapping(raw.get("allowedRoutes"))
    namespaces = _mapping(allowed.get("namespaces"))
    selector = _mapping(namespaces.get("selector"))
    kinds = tuple(str(k.get("kind")) for k in allowed.get("kinds") or [] if isinstance(k, Mapping) and k.get("kind"))
    return Listener(str(raw.get("name") or ""), _int_or_none(raw.get("port")), str(raw.get("protocol") or ""),
                    str(raw["hostname"]) if raw.get("hostname") else None, str(namespaces.get("from") or "Same"),
                    _str_map(selector.get("matchLabels")), kinds)


def _kube_gateway(obj: RAW) -> KubeGateway:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return KubeGateway(ns, name, str(spec.get("gatewayClassName") or ""),
                       tuple(_listener(raw) for raw in spec.get("listeners") or [] if isinstance(raw, Mapping)),
                       _str_map((obj.get("metadata") or {}).get("labels")),
                       _conditions(status.get("conditions")) if status else None)


def _ref(raw: RAW, route_ns: str, parent: bool) -> RouteRef:
    """A reference with the API's defaults (apis/v1/shared_types.go, object_reference_types.go)."""
    given = "group" in raw
    group = str(raw.get("group") if given and raw.get("group") is not None else
                ("" if not parent else GATEWAY_API_GROUP))
    kind = str(raw.get("kind") or ("Gateway" if parent else "Service"))
    return RouteRef(group, kind, str(raw.get("namespace") or route_ns), str(raw.get("name") or ""),
                    _int_or_none(raw.get("port")), str(raw["sectionName"]) if raw.get("sectionName") else None,
                    given)


def _route(obj: RAW) -> Route:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    parents = tuple(_ref(p, ns, True) for p in spec.get("parentRefs") or [] if isinstance(p, Mapping))
    backends = tuple(_ref(b, ns, False) for rule in spec.get("rules") or [] if isinstance(rule, Mapping)
                     for b in rule.get("backendRefs") or [] if isinstance(b, Mapping))
    status = tuple((str(_mapping(p.get("parentRef")).get("namespace") or ns),
                    str(_mapping(p.get("parentRef")).get("name") or ""), _conditions(p.get("conditions")) or ())
                   for p in _mapping(obj.get("status")).get("parents") or [] if isinstance(p, Mapping))
    return Route(str(obj.get("kind")), ns, name, tuple(str(h) for h in spec.get("hostnames") or []), parents,
                 backends, status)


def _metrics_rule(raw: RAW) -> MetricsRule:
    overrides = []
    for o in raw.get("overrides") or []:
        if not isinstance(o, Mapping):
            continue
        if not isinstance(o.get("match"), Mapping | None):
            raise TypeError("metrics override match is not a mapping")
        match = _mapping(o.get("match"))
        custom = match.get("customMetric")
        disabled = o.get("disabled")
        tags = tuple((str(k), str(_mapping(v).get("operation") or "UPSERT").upper())
                     for k, v in _mapping(o.get("tagOverrides")).items())
        overrides.append(MetricOverride(str(custom) if custom else str(match.get("metric") or "ALL_METRICS"),
                                        bool(custom), str(match.get("mode") or "CLIENT_AND_SERVER"),
                                        disabled if isinstance(disabled, bool) else None, tags))
    return MetricsRule(_provider_names(raw), tuple(overrides))


def _provider_names(raw: RAW) -> tuple[str, ...]:
    return tuple(str(_mapping(p).get("name")) for p in raw.get("providers") or [] if _mapping(p).get("name"))


def _access_log_rule(raw: RAW) -> AccessLogRule:
    disabled = raw.get("disabled")
    expression = _mapping(raw.get("filter")).get("expression")
    return AccessLogRule(_provider_names(raw), str(_mapping(raw.get("match")).get("mode") or "CLIENT_AND_SERVER"),
                         disabled if isinstance(disabled, bool) else None,
                         str(expression) if expression else None)


def _telemetry(obj: RAW) -> Telemetry:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not isinstance(selector, Mapping | None) or not isinstance(_mapping(selector).get("matchLabels"),
                                                                   Mapping | None):
        raise TypeError("selector is not a mapping")  # read as none, it would make the resource namespace-wide
    return Telemetry(ns, name, str(obj["metadata"].get("creationTimestamp") or ""),
                     _str_map(_mapping(spec.get("selector")).get("matchLabels")),
                     _policy_targets(spec),
                     tuple(_metrics_rule(m) for m in spec.get("metrics") or [] if isinstance(m, Mapping)),
                     tuple(_access_log_rule(a) for a in spec.get("accessLogging") or [] if isinstance(a, Mapping)))


def _policy_targets(spec: RAW) -> tuple[PolicyTarget, ...]:
    """targetRefs, else the older single targetRef (istiod's GetTargetRefs); the empty group is `core`, as istiod
    canonicalises it. A reference without a kind or name matches nothing but still keeps the resource off the
    sidecars, as istiod counts it; a targetRefs that is no list, or a targetRef that is no mapping, makes the resource
    unreadable (read as none, it would make the resource namespace-wide)."""
    refs, ref = spec.get("targetRefs"), spec.get("targetRef")
    if not isinstance(refs, list | None) or not isinstance(ref, Mapping | None):
        raise TypeError("targetRefs is not a list, or targetRef not a mapping")
    chosen = refs or ([ref] if ref is not None else [])
    return tuple(PolicyTarget(str(r.get("group") or "core"), str(r.get("kind") or ""), str(r.get("name") or ""),
                              str(r.get("namespace") or "")) if isinstance(r, Mapping) else PolicyTarget("", "", "")
                 for r in chosen)


def _reference_grant(obj: RAW) -> ReferenceGrant:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    froms = tuple((str(f.get("group") or ""), str(f.get("kind") or ""), str(f.get("namespace") or ""))
                  for f in spec.get("from") or [] if isinstance(f, Mapping))
    tos = tuple((str(t.get("group") or ""), str(t.get("kind") or ""), str(t["name"]) if t.get("name") else None)
                for t in spec.get("to") or [] if isinstance(t, Mapping))
    return ReferenceGrant(ns, name, froms, tos)


def _not_captured(pods: tuple[Pod, ...]) -> tuple[Pod, ...]:
    """Where the CNI marks captured pods (ambient.istio.io/redirection: enabled on some pod of the snapshot), an
    ambient pod without the mark was never captured: created before the node agent ran, or its setup failed."""
    if not any(p.annotations.get(ambient.REDIRECTION) == "enabled" for p in pods):
        return pods
    out = []
    for p in pods:  # a pod not running (pending, completed) has not been set up, or no longer is
        if p.sidecar.mode == "ambient" and ambient.REDIRECTION not in p.annotations and p.phase == "Running":
            p = replace(p, sidecar=SidecarState(
                "none", "ambient/not-captured", True,
                f"enrolled in ambient, but without the {ambient.REDIRECTION} annotation the CNI sets on every pod it "
                "captures (other pods carry it): its traffic does not pass through ztunnel"))
        out.append(p)
    return tuple(out)


def _endpoint_ips(objs: Iterable[RAW]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for obj in objs:
        try:
            out.update(_endpoint_ips_of(obj))
        except (AttributeError, TypeError, ValueError):
            continue  # a malformed Endpoints object only loses its IP mapping
    return out


def _endpoint_ips_of(obj: RAW) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    ns, name = _meta(obj)
    if obj.get("kind") == "EndpointSlice":
        svc = _str_map(obj["metadata"].get("labels")).get("kubernetes.io/service-name", name)
        for ep in obj.get("endpoints") or []:
            for ip in (ep or {}).get("addresses") or []:
                out[str(ip)] = (ns, svc)
    else:
        for subset in obj.get("subsets") or []:
            for addr in (subset or {}).get("addresses") or []:
                if isinstance(addr, Mapping) and addr.get("ip"):
                    out[str(addr["ip"])] = (ns, name)
    return out


def build_topology(objects: Iterable[RAW], gaps: Iterable[str] = (), unread: Mapping[str, str] | None = None) \
        -> Topology:
    """Turn raw objects of any supported kind into a Topology; unknown kinds are counted, not fatal. `unread`: the
    kinds the API refused to list (Topology.unread)."""
    by_kind: dict[str, list[RAW]] = {}
    counts: Counter[str] = Counter()
    gap_list = list(gaps)
    for raw in objects:
        if not isinstance(raw, Mapping):
            gap_list.append(f"ignored a {type(raw).__name__} where a Kubernetes object was expected")
            continue
        obj = _normalize(raw)
        kind = str(obj.get("kind") or "")
        counts[kind] += 1
        by_kind.setdefault(kind, []).append(obj)

    namespaces = {n: Namespace(n, _str_map((o.get("metadata") or {}).get("labels")),
                               annotations=_str_map((o.get("metadata") or {}).get("annotations")))
                  for o in by_kind.get("Namespace", []) for n in [_meta(o)[1]]}
    # Pods in namespaces the snapshot does not include get an unlabelled namespace.
    for o in by_kind.get("Pod", []) + by_kind.get("Service", []):
        namespaces.setdefault(_meta(o)[0], Namespace(_meta(o)[0], {}, declared=False))
    nodes = {_meta(o)[1]: _str_map(o["metadata"].get("labels")) for o in by_kind.get("Node", [])}
    rs_owner: dict[tuple[str, str], tuple[str, str]] = {}
    for rs in by_kind.get("ReplicaSet", []):
        refs = rs["metadata"].get("ownerReferences")
        for ref in refs if isinstance(refs, list) else []:
            if isinstance(ref, Mapping) and ref.get("name"):
                rs_owner[_meta(rs)] = (str(ref["name"]), str(ref.get("kind", "Deployment")))

    def convert(kind: str, fn: Any) -> tuple[Any, ...]:
        out = []
        for o in by_kind.get(kind, []):
            try:
                out.append(fn(o))
            except (AttributeError, TypeError, ValueError, KeyError) as exc:
                gap_list.append(f"{kind} {'/'.join(_meta(o))}: unreadable ({type(exc).__name__})")
        return tuple(out)

    mesh_ambient = istio.mesh_is_ambient(n.labels for n in namespaces.values())
    gateway_api = [o for o in by_kind.get("Gateway", []) if _gateway_api(o)]
    by_kind["Gateway"] = [o for o in by_kind.get("Gateway", []) if not _gateway_api(o)]
    by_kind["KubeGateway"] = gateway_api
    log_formats, format_gaps = access_formats(by_kind.get("ConfigMap", []))
    mesh = mesh_defaults(by_kind.get("ConfigMap", []))
    gap_list.extend(format_gaps)
    return Topology(
        namespaces=namespaces, access_log_formats=log_formats,
        services=convert("Service", _service),
        pods=_not_captured(convert("Pod", lambda o: _pod(o, namespaces, rs_owner, nodes, mesh_ambient))),
        virtual_services=convert("VirtualService", _virtual_service),
        destination_rules=convert("DestinationRule", _destination_rule),
        service_entries=convert("ServiceEntry", _service_entry),
        gateways=convert("Gateway", _gateway),
        kube_gateways=convert("KubeGateway", _kube_gateway),
        routes=convert("HTTPRoute", _route) + convert("GRPCRoute", _route),
        reference_grants=convert("ReferenceGrant", _reference_grant),
        telemetries=tuple(sorted(convert("Telemetry", _telemetry), key=lambda t: (t.created, t.name, t.namespace))),
        mesh_root_namespace=mesh.root_namespace, mesh_metric_providers=mesh.metric_providers,
        mesh_log_providers=mesh.log_providers, mesh_providers=mesh.providers,
        workloads=tuple(t for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
                        for t in convert(kind, lambda o: _template(o, namespaces, mesh_ambient))
                        if kind != "ReplicaSet" or not t.labels.get("pod-template-hash")),
        endpoint_ips=_endpoint_ips(by_kind.get("Endpoints", []) + by_kind.get("EndpointSlice", [])),
        nodes=nodes, object_counts=dict(sorted(counts.items())),
        gaps=tuple(gap_list), unread=dict(unread or {}),
    )
