"""Parsers on real-format lines: istio.io's access-log example, TCP lines, JSON encodings, app conventions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from obsgap.sources.logs.app_json import app_schema, parse_app_json
from obsgap.sources.logs.app_text import parse_app_text
from obsgap.sources.logs.attribution import k8s_attribution
from obsgap.sources.logs.envoy_fields import cluster_parts
from obsgap.sources.logs.envoy_format import builtin_text_formats
from obsgap.sources.logs.envoy_json import parse_envoy_json
from obsgap.sources.logs.envoy_text import match_envoy_text, parse_envoy_text
from obsgap.sources.logs.timestamps import parse_ts_ms
from obsgap.sources.logs.values import lookup

# Verbatim from istio.io's access-log task (DESIGN.md).
ISTIO_EXAMPLE = (
    '[2020-11-25T21:26:18.409Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 4 4 "-" '
    '"curl/7.73.0-DEV" "84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "10.44.1.27:80" '
    "outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 - default"
)


def test_istio_doc_example_outbound() -> None:
    row = parse_envoy_text(ISTIO_EXAMPLE)
    assert row is not None
    assert row["ts_ms"] == 1606339578409
    assert (row["method"], row["path"], row["status"]) == ("GET", "/status/418", 418)
    assert row["direction"] == "outbound" and row["port"] == 8000
    assert row["authority"] == "httpbin:8000"
    assert row["upstream_cluster"] == "outbound|8000||httpbin.foo.svc.cluster.local"
    assert row["duration_ms"] == 4.0 and row["downstream_remote"] == "10.44.1.23:46520"


REAL_LINES = yaml.safe_load((Path(__file__).parent / "data" / "access_logs" / "istio_text_lines.yaml").read_text())


@pytest.mark.parametrize("case", REAL_LINES, ids=[f"{c['format']}-{i}" for i, c in enumerate(REAL_LINES)])
def test_every_istio_default_format_reads_real_lines(case: dict) -> None:  # type: ignore[type-arg]
    """Lines from istio.io and users' issues, one per Istio release's default format, read field by field."""
    found = match_envoy_text(case["line"], builtin_text_formats())
    assert found is not None, case["source"]
    row, fmt = found
    assert fmt.name == case["format"], case["source"]
    for key, want in case["expect"].items():
        assert row[key] == want, (key, row[key], want, case["source"])
    assert row["ts_ms"] == parse_ts_ms(case["line"][1:25])


def test_the_builtin_formats_cover_every_release_once() -> None:
    names = [f.name for f in builtin_text_formats()]
    assert names == ["istio-1.9+", "istio-1.8-1.10", "istio-1.3-1.7", "istio-1.2", "istio-1.1", "istio-1.0"]
    assert {c["format"] for c in REAL_LINES} == set(names)  # a real line for each


def test_tcp_line_has_no_method_and_code_zero() -> None:
    line = ('[2026-01-02T03:04:05.678Z] "- - -" 0 - - - "-" 120 450 40 - "-" "-" "-" "-" "10.44.1.27:3306" '
            "inbound|3306|| 127.0.0.6:3333 10.44.1.27:3306 10.44.1.23:46520 - -")
    row = parse_envoy_text(line)
    assert row is not None
    assert row["method"] is None and row["protocol"] == "tcp" and row["status"] == 0 and row["port"] == 3306


@pytest.mark.parametrize("cluster,direction,port,host", [
    ("outbound|9080||reviews.default.svc.cluster.local", "outbound", 9080, "reviews.default.svc.cluster.local"),
    ("outbound_.9080_._.reviews.default.svc.cluster.local", "outbound", 9080, "reviews.default.svc.cluster.local"),
    ("outbound|9080|v2|reviews.default.svc.cluster.local", "outbound", 9080, "reviews.default.svc.cluster.local"),
    ("inbound|9080||", "inbound", 9080, None),
    ("InboundPassthroughCluster", "inbound", None, None),
    ("InboundPassthroughClusterIpv4", "inbound", None, None),
    ("PassthroughCluster", "outbound", None, None),
    ("BlackHoleCluster", "outbound", None, None),
])
def test_cluster_names_old_and_new(cluster: str, direction: str, port: int | None, host: str | None) -> None:
    assert cluster_parts(cluster) == (direction, port, host)


def test_passthrough_port_from_upstream_host() -> None:
    line = ISTIO_EXAMPLE.replace("outbound|8000||httpbin.foo.svc.cluster.local", "PassthroughCluster").replace(
        '"httpbin:8000" "10.44.1.27:80"', '"10.44.1.27:8080" "10.44.1.27:8080"')
    row = parse_envoy_text(line)
    assert row is not None and row["port"] == 8080 and row["upstream_cluster"] == "PassthroughCluster"


def test_envoy_json_encoding() -> None:
    obj = {"start_time": "2026-01-02T03:04:05.678Z", "method": "POST", "path": "/cart", "protocol": "HTTP/2",
           "response_code": 503, "response_flags": "UF", "duration": 12, "authority": "cart.shop:8080",
           "upstream_cluster": "outbound|8080||cart.shop.svc.cluster.local", "upstream_host": "10.0.0.9:8080",
           "downstream_local_address": "10.96.0.5:8080", "downstream_remote_address": "10.0.0.3:50000"}
    row = parse_envoy_json(obj)
    assert row is not None
    assert (row["status"], row["response_flags"], row["port"], row["direction"]) == (503, "UF", 8080, "outbound")
    assert parse_envoy_json({"msg": "hello"}) is None


@pytest.mark.parametrize("obj,expect", [
    ({"ts": "2026-01-02T03:04:05Z", "method": "GET", "path": "/a", "status": 200, "duration_ms": 5, "port": 8080},
     ("inbound", "GET", "/a", 200, 5.0, 8080, None)),
    ({"@timestamp": "2026-01-02T03:04:05Z", "http": {"request": {"method": "GET"},
                                                     "response": {"status_code": 404}},
      "url": {"path": "/b"}, "event": {"duration": 2_000_000}, "server": {"port": 9000}},
     ("inbound", "GET", "/b", 404, 2.0, 9000, None)),
    ({"timestamp": 1767322800, "http.request.method": "PUT", "url.full": "https://api.example.com:8443/x",
      "http.response.status_code": 201, "latency_ms": "1.5s"},
     ("outbound", "PUT", "/x", 201, 1500.0, 8443, "api.example.com:8443")),
    ({"time": "2026-01-02T03:04:05Z", "http.method": "GET", "http.url": "http://reviews:9080/r",
      "http.status_code": 200, "elapsed_ms": 7},
     ("outbound", "GET", "/r", 200, 7.0, 9080, "reviews:9080")),
    ({"time": "2026-01-02T03:04:05Z", "method": "GET", "uri": "/c", "status_code": "500"},
     ("inbound", "GET", "/c", 500, None, None, None)),
    # ECS nests url/http objects: the `url` object must not be taken for the URL string
    ({"@timestamp": "2026-01-02T03:04:05Z", "http": {"request": {"method": "GET"}, "response": {"status_code": 200}},
      "url": {"full": "http://10.44.0.127:8080/api"}, "event": {"duration": 7145788}, "log": {"level": "info"}},
     ("outbound", "GET", "/api", 200, 7.145788, 8080, "10.44.0.127:8080")),
])
def test_app_json_conventions(obj: dict, expect: tuple) -> None:
    row = parse_app_json(obj)
    assert row is not None
    got = (row["direction"], row["method"], row["path"], row["status"], row["duration_ms"], row["port"],
           row["authority"])
    assert got == expect


def test_app_json_non_request_and_user_mapping() -> None:
    assert parse_app_json({"level": "info", "msg": "started", "status": "ready"}) is None
    obj = {"req": {"verb": "DELETE", "route": "/d"}, "res": {"code": 204}, "took": 3}
    assert parse_app_json(obj) is None
    row = parse_app_json(obj, {"method": "req.verb", "path": "req.route", "status": "res.code",
                                       "duration_ms": "took"})
    assert row is not None and (row["method"], row["path"], row["status"], row["duration_ms"]) == \
        ("DELETE", "/d", 204, 3.0)


@pytest.mark.parametrize("value,ms", [
    ("2026-01-02T03:04:05.123456789Z", 1767323045123),
    ("2026-01-02T04:04:05.5+01:00", 1767323045500),
    ("2026-01-02T03:04:05Z", 1767323045000),
    (1767323045, 1767323045000),
    (1767323045123, 1767323045123),
    (1767323045123456789, 1767323045123),
    ("yesterday", None),
])
def test_timestamps(value: object, ms: int | None) -> None:
    assert parse_ts_ms(value) == ms


def test_k8s_attribution_fluent_bit_and_otel() -> None:
    fb = {"log": "x", "kubernetes": {"namespace_name": "shop", "pod_name": "cart-1", "container_name": "app"}}
    assert k8s_attribution(fb) == ("shop", "cart-1", "app")
    otel = {"resource": {"attributes": {"k8s.namespace.name": "pay", "k8s.pod.name": "p-1",
                                        "k8s.container.name": "srv"}}}
    assert k8s_attribution(otel) == ("pay", "p-1", "srv")
    flat = {"k8s.namespace.name": "a", "k8s.pod.name": "b", "k8s.container.name": "c"}
    assert k8s_attribution(flat) == ("a", "b", "c")
    dotted = {"resource.attributes.k8s.pod.name": "p", "msg": "x"}
    assert k8s_attribution(dotted) == (None, "p", None)
    assert k8s_attribution({"msg": "no attribution"}) == (None, None, None)


APP_CASES = yaml.safe_load((Path(__file__).parent / "data" / "app_logs" / "schemas.yaml").read_text())


@pytest.mark.parametrize("case", APP_CASES, ids=[c["source"][:40] for c in APP_CASES])
def test_application_lines_are_read_by_their_schema(case: dict) -> None:  # type: ignore[type-arg]
    import orjson

    if case.get("text"):
        row = parse_app_text(case["line"])
        assert (row is None) is (case["expect"] is None), case["source"]
        for key, want in (case["expect"] or {}).items():
            assert row is not None and row[key] == want, (key, row, case["source"])
        return
    obj = orjson.loads(case["line"])
    schema = app_schema(lambda k: lookup(obj, k) is not None)
    assert (schema.name if schema else None) == case["schema"], case["source"]
    row = parse_app_json(obj)
    if case["expect"] is None:
        assert row is None, case["source"]
        return
    assert row is not None, case["source"]
    for key, want in case["expect"].items():
        got = row.get(key)
        assert got == (pytest.approx(want) if isinstance(want, float) else want), (key, got, case["source"])


def test_a_mapping_says_the_unit() -> None:
    obj = {"method": "GET", "path": "/x", "status": 200, "latency": 14743}
    row = parse_app_json(obj, {"duration_ms": "latency:ns"})
    assert row is not None and row["duration_ms"] == pytest.approx(0.014743) and "_unknown_unit" not in row


def test_a_mesh_json_format_with_epoch_start_times() -> None:
    """neonKUBE's Envoy JSON labels (github.com/nforgeio/neonKUBE/issues/873): %START_TIME(%s.%6f)% is epoch
    seconds, %REQ(:Host)% the authority; other keys are opaque."""
    from obsgap.sources.logs.envoy_format import compile_json

    fmt = compile_json({"authority": "%REQ(:AUTHORITY)%", "mode": "%PROTOCOL%", "duration": "%DURATION%",
                        "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%", "route_name": "%ROUTE_NAME%",
                        "response_code": "%RESPONSE_CODE%", "start_time": "%START_TIME(%s.%6f)%",
                        "method": "%REQ(:METHOD)%", "host": "%REQ(:Host)%", "upstream_cluster": "%UPSTREAM_CLUSTER%"},
                       "neonkube")
    row = parse_envoy_json({"authority": "shop:80", "mode": "HTTP/2", "duration": "12",
                                    "downstream_local_address": "10.1.0.7:8080", "route_name": "default",
                                    "response_code": "503", "start_time": "1606339578.409123", "method": "GET",
                                    "host": "shop:80", "upstream_cluster": "inbound|8080||"}, fmt)
    assert row is not None and row["ts_ms"] == 1606339578409 and row["status"] == 503
    assert (row["protocol"], row["port"], row["direction"], row["duration_ms"]) == ("HTTP/2", 8080, "inbound", 12.0)


JSON_LINES = yaml.safe_load((Path(__file__).parent / "data" / "access_logs" / "istio_json_lines.yaml").read_text())


@pytest.mark.parametrize("case", JSON_LINES)
def test_istio_json_encoding_reads_real_lines(case: dict) -> None:  # type: ignore[type-arg]
    import orjson

    row = parse_envoy_json(orjson.loads(case["line"]))
    assert row is not None, case["source"]
    for key, want in case["expect"].items():
        assert row[key] == want, (key, row[key], want)
    assert row["ts_ms"] == parse_ts_ms(orjson.loads(case["line"])["start_time"])


def test_real_json_lines_cover_every_json_encoding() -> None:
    """Istio's JSON encoding changed twice: string values with the mixer key (1.3-1.8), then typed values and
    nulls. Real lines of each are read above."""
    releases = {case.get("release", "1.9+") for case in JSON_LINES}
    assert {"1.3-1.8", "1.9+", "1.14+"} <= releases
