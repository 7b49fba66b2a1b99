"""The streaming reader: wrappers, attribution, accounting of every line, damaged files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from obsgap.errors import InputError
from obsgap.sources.logs.discover import attribution_from_path, discover
from obsgap.sources.logs.table import read_logs
from tests.helpers import sources_json

T0 = "2026-01-02T03:04:05.000000001Z"
ENVOY = ('[2026-01-02T03:04:05.100Z] "GET /a HTTP/1.1" 200 - via_upstream - "-" 0 10 7 7 "-" "curl" "id" '
         '"cart:8080" "10.0.0.5:8080" inbound|8080|| 127.0.0.6:1 10.0.0.5:8080 10.0.0.9:4444 - default')
APP = json.dumps({"ts": "2026-01-02T03:04:06Z", "method": "GET", "path": "/a", "status": 200, "duration_ms": 3})
POD_DIR = "shop_cart-7d9f-abcde_0b4c3f8e-1111-2222-3333-444455556666"
WINDOW = (1767322800000, 1767326400000)  # 03:00–04:00 UTC


def _cri(msg: str, flag: str = "F", ts: str = T0) -> str:
    return f"{ts} stdout {flag} {msg}\n"


def _read(paths: list[Path]):  # type: ignore[no-untyped-def]
    table = read_logs(discover([str(p) for p in paths]), *WINDOW, workers=1)
    rows = table.query("SELECT * FROM requests ORDER BY ts_ms")
    stats = table.stats
    table.close()
    return rows, stats


def test_attribution_from_both_kubelet_layouts() -> None:
    a = attribution_from_path(Path(f"/var/log/pods/{POD_DIR}/istio-proxy/0.log"))
    assert a is not None and (a.namespace, a.pod, a.container) == ("shop", "cart-7d9f-abcde", "istio-proxy")
    rotated = attribution_from_path(Path(f"/x/{POD_DIR}/app/3.log.20260102-030405.gz"))
    assert rotated is not None and rotated.container == "app"
    c = attribution_from_path(Path("/var/log/containers/cart-7d9f-abcde_shop_app-" + "a" * 64 + ".log"))
    assert c is not None and (c.namespace, c.pod, c.container) == ("shop", "cart-7d9f-abcde", "app")
    assert attribution_from_path(Path("/tmp/random.log")) is None


def test_cri_partial_lines_are_joined_and_everything_is_counted(tmp_path: Path) -> None:
    d = tmp_path / POD_DIR / "app"
    d.mkdir(parents=True)
    half = len(APP) // 2
    (d / "0.log").write_text(
        _cri(APP) + _cri(APP[:half], "P") + _cri(APP[half:], "F") + _cri("plain text, not a request")
        + _cri(json.dumps({"level": "info", "msg": "started"}))
        + _cri(APP.replace("03:04:06", "05:00:00")))  # out of window
    rows, stats = _read([tmp_path])
    assert len(rows) == 2
    assert set(rows["namespace"]) == {"shop"} and set(rows["pod"]) == {"cart-7d9f-abcde"}
    assert stats.lines == 6 and stats.requests == 2 and stats.out_of_window == 1
    assert stats.unparsed == 1 and stats.formats["json-other"] == 1
    assert stats.unparsed_by_file[0][2].startswith("plain text")
    assert stats.joined_partial_lines == 1
    assert stats.parsed + stats.unparsed + stats.joined_partial_lines == stats.lines  # every line accounted for


def test_docker_json_fluent_bit_and_gzip(tmp_path: Path) -> None:
    docker = tmp_path / "docker.log"
    docker.write_text(json.dumps({"log": ENVOY + "\n", "stream": "stdout", "time": T0}) + "\n")
    fluent = tmp_path / "fluent.log.gz"
    with gzip.open(fluent, "wt") as f:
        f.write(json.dumps({"log": APP, "kubernetes": {"namespace_name": "pay", "pod_name": "p-1",
                                                        "container_name": "srv"}}) + "\n")
    rows, stats = _read([docker, fluent])
    assert stats.wrappers == {"docker-json": 1, "fluent-bit": 1}
    envoy = rows[rows["origin"] == "envoy"].iloc[0]
    assert envoy["direction"] == "inbound" and envoy["port"] == 8080
    app = rows[rows["origin"] == "app"].iloc[0]
    assert (app["namespace"], app["pod"], app["container"]) == ("pay", "p-1", "srv")


def test_damaged_inputs_are_counted_not_fatal(tmp_path: Path) -> None:
    good = tmp_path / "good.log"
    good.write_text(_cri(ENVOY) * 3)
    corrupt = tmp_path / "corrupt.log.gz"
    data = gzip.compress((_cri(ENVOY) * 200).encode())
    corrupt.write_bytes(data[: len(data) // 2])
    binary = tmp_path / "binary.log"
    binary.write_bytes(b"\xff\xfe\x00garbage\n" + _cri(ENVOY).encode())
    empty = tmp_path / "empty.log"
    empty.write_text("")
    (tmp_path / "dangling.log").symlink_to(tmp_path / "missing.log")
    rows, stats = _read([tmp_path])
    assert stats.invalid_utf8 == 1 and stats.unparsed == 1
    reasons = dict(stats.skipped_files)
    assert "symlink to a missing file" in reasons[str(tmp_path / "dangling.log")]
    assert "corrupt or truncated gzip" in reasons[str(corrupt)]
    # good + binary's valid line + whatever the corrupt file yielded before its damage
    assert len(rows) >= 4 and (rows["origin"] == "envoy").all()


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    locked = tmp_path / "locked.log"
    locked.write_text(_cri(ENVOY))
    locked.chmod(0)
    try:
        rows, stats = _read([locked])
    finally:
        locked.chmod(0o644)
    if stats.lines:  # root ignores file modes: then the line is simply read
        assert len(rows) == 1
    else:
        assert "ermission" in dict(stats.skipped_files)[str(locked)]


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        discover([str(tmp_path / "nope")])
    with pytest.raises(InputError, match="matches no file"):
        discover([str(tmp_path / "*.nothing")])


def test_glob_and_dedup_of_symlinked_containers_dir(tmp_path: Path) -> None:
    pods = tmp_path / "pods" / POD_DIR / "app"
    pods.mkdir(parents=True)
    (pods / "0.log").write_text(_cri(APP))
    containers = tmp_path / "containers"
    containers.mkdir()
    (containers / ("cart-7d9f-abcde_shop_app-" + "b" * 64 + ".log")).symlink_to(pods / "0.log")
    found = discover([str(tmp_path / "pods"), str(containers / "*.log")])
    assert len(found.files) == 1


def test_one_megabyte_lines(tmp_path: Path) -> None:
    d = tmp_path / POD_DIR / "app"
    d.mkdir(parents=True)
    big_json = json.dumps({"ts": "2026-01-02T03:04:06Z", "method": "POST", "path": "/upload", "status": 200,
                           "body": "x" * 1_000_000})
    (d / "0.log").write_text(_cri(big_json) + _cri("y" * 1_000_000) + _cri(APP))
    rows, stats = _read([tmp_path])
    assert len(rows) == 2 and set(rows["path"]) == {"/upload", "/a"}
    assert stats.unparsed == 1 and len(stats.unparsed_by_file[0][2]) == 160


def test_partial_line_continues_in_the_next_rotated_file(tmp_path: Path) -> None:
    d = tmp_path / POD_DIR / "app"
    d.mkdir(parents=True)
    cut = len(APP) // 3
    # kubelet rotated in the middle of a long message: its P lines end the old file, its F line opens the new one
    with gzip.open(d / "0.log.20260102-030405.gz", "wt") as f:
        f.write(_cri(APP) + _cri(APP[:cut], "P"))
    (d / "0.log").write_text(_cri(APP[cut:2 * cut], "P") + _cri(APP[2 * cut:]) + _cri(APP))
    rows, stats = _read([tmp_path])
    assert len(rows) == 3 and stats.requests == 3 and stats.unparsed == 0
    assert "cri-unterminated-partial" not in stats.wrappers


def test_partial_line_that_never_ends_is_still_counted(tmp_path: Path) -> None:
    d = tmp_path / POD_DIR / "app"
    d.mkdir(parents=True)
    (d / "0.log").write_text(_cri(APP) + _cri(APP[:10], "P"))
    rows, stats = _read([tmp_path])
    assert len(rows) == 1 and stats.wrappers["cri-unterminated-partial"] == 1 and stats.unparsed == 1


def test_ipv6_addresses_attribute_lines_to_their_pod(tmp_path: Path) -> None:
    """A dual-stack pod: Envoy writes `[fd00::7]:8080`; the line is credited to the pod with that IP."""
    import json as _json
    from datetime import UTC, datetime

    from obsgap import engine
    from obsgap.config import RunPlan
    from obsgap.model import Window

    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "api-0", "namespace": "shop", "labels": {"app": "api"}},
           "spec": {"containers": [{"name": "api", "ports": [{"containerPort": 8080}]}, {"name": "istio-proxy"}]},
           "status": {"podIP": "fd00::7", "phase": "Running"}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"},
           "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}}
    (tmp_path / "cluster.json").write_text(_json.dumps({"apiVersion": "v1", "kind": "List", "items": [ns, svc, pod]}))
    line = ('[2026-11-24T10:00:00.000Z] "GET /items HTTP/1.1" 200 - via_upstream - "-" 0 12 3 2 "-" "curl/8.5.0" '
            '"0b1c" "api.shop:80" "[fd00::7]:8080" inbound|8080|| [::6]:41000 [fd00::7]:8080 [fd00::3]:52044 '
            'outbound_.80_._.api.shop.svc.cluster.local default')
    (tmp_path / "proxy.log").write_text((line + "\n") * 25)
    window = Window(datetime(2026, 11, 24, 9, tzinfo=UTC), datetime(2026, 11, 24, 11, tzinfo=UTC))
    result = engine.run(RunPlan(window=window, kube_snapshots=(tmp_path / "cluster.json",),
                                logs=(str(tmp_path / "proxy.log"),))).result
    assert sources_json(result)["logs"]["unattributed"]["requests"] == 0
    (row,) = [c for c in result.coverage if c.service == "api"]
    assert row.observed == 25


def test_a_format_given_with_the_flag_is_used_and_reported(tmp_path: Path) -> None:
    from obsgap.config import parse_access_log_formats

    fmt = ("%START_TIME% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %DURATION% %UPSTREAM_CLUSTER% "
           "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%")
    formats = parse_access_log_formats([fmt])
    lines = [f"2026-11-24T10:00:0{i}.000Z GET /orders/{i} 200 7 inbound|9000|| 10.1.2.3:9000 10.1.2.9:5500"
             for i in range(3)]
    log = tmp_path / "istio-proxy.log"
    log.write_text("\n".join(lines) + "\n")
    table = read_logs(discover([str(log)]), None, None, workers=1, access_formats=formats)
    try:
        assert table.stats.requests == 3 and table.stats.unparsed == 0
        rows = table.query("SELECT method, path, status, port, duration_ms, direction FROM requests ORDER BY path")
        assert rows.to_dict("records")[0] == {"method": "GET", "path": "/orders/0", "status": 200, "port": 9000,
                                              "duration_ms": 7.0, "direction": "inbound"}
        reported = table.stats.as_dict()["access_log_formats"]
        assert reported["formats"] == {"--access-log-format #1": {"files": 1, "lines": 3}}
        assert reported["files"] == [{"path": str(log), "format": "--access-log-format #1", "lines": 3}]
    finally:
        table.close()
    # without it, the same lines are unrecognized (and say so)
    plain = read_logs(discover([str(log)]), None, None, workers=1)
    try:
        assert plain.stats.requests == 0 and plain.stats.unparsed == 3
    finally:
        plain.close()


@pytest.mark.parametrize("bad,problem", [("no operators at all", "has no %OPERATOR%"),
                                         ('{"ts": "%START_TIME%"}', "no %RESPONSE_CODE% key")])
def test_a_format_that_cannot_work_is_an_error(bad: str, problem: str) -> None:
    from obsgap.config import parse_access_log_formats

    with pytest.raises(InputError, match=problem):
        parse_access_log_formats([bad])


def test_a_duration_without_a_unit_is_reported_not_guessed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(json.dumps({"ts": "2026-11-24T10:00:00Z", "method": "GET", "path": f"/{i}",
                                       "status": 200, "latency": 14743}) + "\n" for i in range(4)))
    table = read_logs(discover([str(log)]), None, None, workers=1)
    try:
        stats = table.stats.as_dict()
        assert stats["requests"] == 4
        assert stats["duration_unit_unknown"] == [{"path": str(log), "key": "latency", "requests": 4}]
        assert table.query("SELECT count(*) AS n FROM requests WHERE duration_ms IS NOT NULL")["n"][0] == 0
    finally:
        table.close()
    mapped = read_logs(discover([str(log)]), None, None, workers=1, mapping={"duration_ms": "latency:ns"})
    try:
        assert mapped.stats.as_dict()["duration_unit_unknown"] == []
        ms = mapped.query("SELECT max(duration_ms) AS d FROM requests")["d"][0]
        assert abs(ms - 0.014743) < 1e-9
    finally:
        mapped.close()
