"""Property-based: arbitrary bytes and strings into every parser; nothing may escape as an exception."""

from __future__ import annotations

import contextlib
import gzip
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsgap.checks.base import Skip
from obsgap.sources.logs.app_json import parse_app_json
from obsgap.sources.logs.attribution import k8s_attribution
from obsgap.sources.logs.discover import discover
from obsgap.sources.logs.envoy_json import parse_envoy_json
from obsgap.sources.logs.envoy_text import parse_envoy_text
from obsgap.sources.logs.table import read_logs
from obsgap.sources.logs.timestamps import parse_ts_ms

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
                           max_leaves=12)
KEYS = ["ts", "time", "@timestamp", "method", "path", "url", "status", "duration_ms", "event", "http", "port",
        "upstream_cluster", "start_time", "response_code", "kubernetes", "resource", "latency", "duration"]


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400))
def test_envoy_text_parser_never_raises(line: str) -> None:
    parse_envoy_text(line)
    parse_envoy_text("[2026-01-01T00:00:00Z] " + line)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), json_values, max_size=8))
def test_json_parsers_never_raise(obj: dict) -> None:
    parse_envoy_json(obj)
    parse_app_json(obj)
    parse_app_json(obj, {"method": "a.b", "duration_ms": "x.y.z"})
    k8s_attribution(obj)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=True, allow_infinity=True)))
def test_timestamps_never_raise(value: object) -> None:
    parse_ts_ms(value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.booleans())
def test_reader_accounts_for_arbitrary_bytes(data: bytes, gz: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("x.log.gz" if gz else "x.log")
        compressed = gzip.compress(data)
        written = compressed[: max(10, len(data) // 2)] if gz else data
        path.write_bytes(written)
        table = read_logs(discover([str(path)]), None, None, workers=1)
        s = table.stats
        table.close()
        assert s.files == 1
        if gz:  # a truncated gzip stream is reported as damaged, with what was read before it
            if len(written) < len(compressed):
                assert "corrupt or truncated gzip" in s.skipped_files[0][1]
        elif data.startswith(b"\x1f\x8b"):
            assert s.skipped_files or s.lines == 0
        else:
            assert s.lines == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        assert s.parsed + s.unparsed <= s.lines  # every line is counted once (CRI partials join)


KINDS = ["Namespace", "Service", "Pod", "Endpoints", "EndpointSlice", "ReplicaSet", "Deployment", "VirtualService",
         "DestinationRule", "ServiceEntry", "Gateway", "Sidecar", "Weird", "Telemetry", "HTTPRoute", "GRPCRoute",
         "ReferenceGrant", "Node", "ConfigMap"]
API_VERSIONS = {"Telemetry": "telemetry.istio.io/v1", "HTTPRoute": "gateway.networking.k8s.io/v1",
                "GRPCRoute": "gateway.networking.k8s.io/v1", "ReferenceGrant": "gateway.networking.k8s.io/v1beta1"}
k8s_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=12),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(
                              st.sampled_from(["metadata", "spec", "status", "name", "namespace", "labels", "ports",
                                               "port", "targetPort", "containers", "selector", "http", "route",
                                               "destination", "host", "subsets", "hosts", "items", "podIP",
                                               "annotations", "ownerReferences", "kind", "endpoints", "addresses",
                                               "template", "weight", "mirror", "exportTo", "initContainers",
                                               "targetRefs", "targetRef", "metrics", "overrides", "accessLogging",
                                               "providers", "match", "tagOverrides", "disabled", "mode", "metric",
                                               "group", "parentRefs", "backendRefs", "rules", "matchLabels",
                                               "gatewayClassName", "listeners", "data", "mesh"]),
                              c, max_size=5), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.builds(lambda kind, gw_api, body: {**(body if isinstance(body, dict) else {}), "kind": kind,
                                                        **({"apiVersion": "gateway.networking.k8s.io/v1"}
                                                           if gw_api and kind == "Gateway" else {}),
                                                        **({"apiVersion": API_VERSIONS[kind]}
                                                           if kind in API_VERSIONS else {})},
                          st.sampled_from(KINDS), st.booleans(), k8s_values), max_size=6))
def test_topology_builder_survives_any_object_shape(objects: list[dict]) -> None:
    from obsgap.analysis import analyze
    from obsgap.checks import REGISTRY
    from obsgap.checks.base import CheckInputs
    from obsgap.evidence import CheckSettings, Evidence
    from obsgap.model import Window
    from obsgap.sources.kube.build import build_topology

    topo = build_topology(objects)
    assert sum(topo.object_counts.values()) == len(objects)
    from datetime import UTC, datetime, timedelta

    end = datetime(2026, 1, 1, tzinfo=UTC)
    ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings(), topo)
    inputs = CheckInputs(ev, analyze(ev))
    for svc in topo.services:  # the Telemetry API's resolution for sidecars and waypoints, on whatever was built
        inputs.index.request_metrics_off(svc)
        inputs.index.access_log_note(svc)
    for check in REGISTRY:
        if check.needs == ("topology",):
            with contextlib.suppress(Skip):
                check.run(inputs)  # topology-only checks must accept whatever the builder produced
                check.examined(inputs)


_odd_value = (st.none() | st.integers() | st.text(max_size=6) | st.lists(st.text(max_size=4), max_size=2)).map(
    lambda v: v)  # one branch, not four: a wrong type in one place in ten


def _or_odd(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(*[strategy] * 9, _odd_value)


_providers = st.lists(_or_odd(st.fixed_dictionaries({"name": st.sampled_from(["prometheus", "Prometheus", "envoy",
                                                                               "otel"])})), max_size=2)
_tags = st.dictionaries(st.sampled_from(["reporter", "destination_service_name", "response_code"]),
                        _or_odd(st.fixed_dictionaries({}, optional={
                            "operation": _or_odd(st.sampled_from(["REMOVE", "UPSERT"])),
                            "value": st.text(max_size=6)})), max_size=2)
_override = st.fixed_dictionaries({}, optional={
    "match": _or_odd(st.fixed_dictionaries({}, optional={
        "metric": _or_odd(st.sampled_from(["ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "TCP_SENT_BYTES"])),
        "mode": _or_odd(st.sampled_from(["CLIENT", "SERVER", "CLIENT_AND_SERVER"])),
        "customMetric": st.sampled_from(["requests_total", "x"])})),
    "disabled": _or_odd(st.booleans()),
    "tagOverrides": _or_odd(_tags)})
_target = _or_odd(st.fixed_dictionaries({}, optional={
    "group": _or_odd(st.sampled_from(["", "core", "gateway.networking.k8s.io"])),
    "kind": _or_odd(st.sampled_from(["Service", "Gateway", "GatewayClass"])),
    "name": _or_odd(st.sampled_from(["api", "ledger", "waypoint", "istio-waypoint"])),
    "namespace": _or_odd(st.sampled_from(["shop", "other"]))}))
_log_rule = st.fixed_dictionaries({}, optional={
    "providers": _providers, "disabled": _or_odd(st.booleans()),
    "match": _or_odd(st.fixed_dictionaries({"mode": st.sampled_from(["CLIENT", "SERVER"])})),
    "filter": _or_odd(st.fixed_dictionaries({"expression": st.text(max_size=10)}))})
TELEMETRY_SPECS = st.fixed_dictionaries({
    "metrics": st.lists(st.fixed_dictionaries({"overrides": st.lists(_override, min_size=1, max_size=3)},
                                              optional={"providers": _providers}), max_size=2),
    "accessLogging": st.lists(_log_rule, max_size=2)}, optional={
    "selector": _or_odd(st.fixed_dictionaries({"matchLabels": st.dictionaries(
        st.sampled_from(["app"]), st.sampled_from(["api", "ledger"]))})),
    "targetRefs": _or_odd(st.lists(_target, max_size=2)),
    "targetRef": _target})


@settings(max_examples=150, deadline=None)
@given(st.lists(TELEMETRY_SPECS, max_size=3), st.sampled_from(["shop", "istio-system"]))
def test_telemetry_resolution_survives_any_resource_shape(specs: list[dict], namespace: str) -> None:
    """Telemetry resources of any shape, in a mesh with a sidecar service and a waypoint-served one: each is read
    or reported unreadable (never dropped), and resolving every standard metric and the access log for each service
    raises nothing."""
    from obsgap.istio import TELEMETRY_METRICS
    from obsgap.sources.kube.build import build_topology
    from obsgap.topology import TopologyIndex
    from tests.helpers import k8s_pod, k8s_service

    ambient = {**k8s_pod("ledger-0", "ledger", "10.0.0.2", sidecar=False)}
    ambient["metadata"] = {**ambient["metadata"], "labels": {"app": "ledger", "istio.io/dataplane-mode": "ambient"}}
    waypoint = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "shop"},
                "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008,
                                                                              "protocol": "HBONE"}]},
                "status": {"conditions": [{"type": "Programmed", "status": "True"}]}}
    ledger = k8s_service("ledger")
    ledger["metadata"] = {**ledger["metadata"], "labels": {"istio.io/use-waypoint": "waypoint"}}
    objects = [k8s_service("api"), k8s_pod("api-0", "api", "10.0.0.1"), ledger, ambient, waypoint,
               *({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                  "metadata": {"name": f"t{i}", "namespace": namespace}, "spec": spec}
                 for i, spec in enumerate(specs))]
    topo = build_topology(objects)
    unreadable = [g for g in topo.gaps if g.startswith("Telemetry ") and "unreadable" in g]
    assert len(topo.telemetries) + len(unreadable) == len(specs)
    idx = TopologyIndex(topo)
    assert {s.name: idx.dataplane(s) for s in topo.services} == {"api": "sidecar", "ledger": "waypoint"}
    for svc in topo.services:
        for metric in TELEMETRY_METRICS:
            idx.metric_off(svc, metric)
        idx.access_log_note(svc)
