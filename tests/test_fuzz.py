"""Property-based: arbitrary bytes and strings into every parser; nothing may escape as an exception."""

from __future__ import annotations

import contextlib
import gzip
import tempfile
from pathlib import Path

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
         "DestinationRule", "ServiceEntry", "Gateway", "Sidecar", "Weird"]
k8s_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=12),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(
                              st.sampled_from(["metadata", "spec", "status", "name", "namespace", "labels", "ports",
                                               "port", "targetPort", "containers", "selector", "http", "route",
                                               "destination", "host", "subsets", "hosts", "items", "podIP",
                                               "annotations", "ownerReferences", "kind", "endpoints", "addresses",
                                               "template", "weight", "mirror", "exportTo", "initContainers"]),
                              c, max_size=5), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.builds(lambda kind, body: {**(body if isinstance(body, dict) else {}), "kind": kind},
                          st.sampled_from(KINDS), k8s_values), max_size=6))
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
    for check in REGISTRY:
        if check.needs == ("topology",):
            with contextlib.suppress(Skip):
                check.run(inputs)  # topology-only checks must accept whatever the builder produced
                check.examined(inputs)
