"""The columnar reader against the per-line reader (the reference): the same rows and the same accounting, on
realistic logs, on every edge case we know of, and on generated lines."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from obsgap.scenario.demo import demo_spec
from obsgap.scenario.simulate import build
from obsgap.sources.logs import intake
from obsgap.sources.logs.batch_lines import BatchFile, complete_by_bytes, read_lines
from obsgap.sources.logs.discover import discover
from obsgap.sources.logs.envoy_format import AccessFormat
from obsgap.sources.logs.framing import split_cri
from obsgap.sources.logs.table import LogTable, read_logs
from obsgap.sources.logs.timestamps import parse_ts_ms, ts_ms
from obsgap.sources.logs.wrappers import docker_lines

TS = "2026-11-25T04:01:26.687787294Z"
POD = "shop_catalog-7d9f8b6c5-x2x9z_0b4c3f8e-1111-2222-3333-444455556666"
ENVOY = ('[2026-11-25T04:01:26.687Z] "GET /api/v1/items/7 HTTP/1.1" 200 - via_upstream - "-" 0 1350 12 11 "-" '
         '"python-requests/2.31" "9f0c2d4e-0001" "catalog.shop.svc.cluster.local:8080" "10.44.0.5:8080" '
         'inbound|8080|| 127.0.0.6:40001 10.44.0.5:8080 10.44.0.3:46520 - default')
COLUMNS = ("ts_ms, namespace, pod, container, origin, direction, method, path, protocol, status, duration_ms, port, "
           "authority, upstream_cluster, upstream_host, downstream_local, downstream_remote, response_flags, file")


def _differing(con: duckdb.DuckDBPyConnection, a: LogTable, b: LogTable) -> int:
    """Rows in one table and not in the other, counted as multisets."""
    def rows(t: LogTable) -> str:
        return f"(SELECT {COLUMNS} FROM read_parquet('{t.glob}'))"

    def count(t: LogTable) -> int:
        return int(con.execute(f"SELECT count(*) FROM {rows(t)}").fetchone()[0]) if any(t.root.glob("*.parquet")) else 0

    if count(a) == 0 or count(b) == 0:
        return count(a) + count(b)
    return sum(int(con.execute(f"SELECT count(*) FROM ({rows(x)} EXCEPT ALL {rows(y)})").fetchone()[0])
               for x, y in ((a, b), (b, a)))


def read_both(root: Path, window: tuple[int | None, int | None] = (None, None),
              mapping: Mapping[str, str] | None = None,
              access_formats: tuple[AccessFormat, ...] = ()) -> tuple[dict, dict, int]:
    """Stats of each reader (the columnar count left out) and the number of rows that differ."""
    found = discover([str(root)])
    fast = read_logs(found, *window, mapping, workers=1, columnar=True, access_formats=access_formats)
    slow = read_logs(found, *window, mapping, workers=1, columnar=False, access_formats=access_formats)
    try:
        differing = _differing(duckdb.connect(), fast, slow)
        fast_stats, slow_stats = fast.stats.as_dict(), slow.stats.as_dict()
        assert slow_stats.pop("columnar_lines") == 0
        return fast_stats, slow_stats, differing
    finally:
        fast.close()
        slow.close()


def _cri(messages: list[str], flag: str = "F") -> str:
    return "".join(f"{TS} stdout {flag} {m}\n" for m in messages)


def _write(root: Path, container: str, name: str, text: str | bytes, gz: bool = False) -> Path:
    folder = root / "pods" / POD / container
    folder.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    path = folder / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_identical_on_a_simulated_mesh(session_tmp: Path) -> None:
    built = build(demo_spec(datetime(2026, 11, 25, 12, tzinfo=UTC), hours=0.25), session_tmp / "columnar-demo")
    fast, slow, differing = read_both(built.logs)
    assert differing == 0
    assert fast.pop("columnar_lines") >= 0.9 * fast["lines"]  # the columnar path really ran
    assert fast == slow
    assert fast["requests"] > 40_000


ENVOY_VARIANTS = [
    ENVOY,
    ENVOY.replace("inbound|8080||", "outbound|9080||reviews.bookinfo.svc.cluster.local"),
    ENVOY.replace("inbound|8080||", "outbound_.9080_._.reviews.bookinfo.svc.cluster.local"),
    ENVOY.replace("inbound|8080||", "PassthroughCluster"),
    ENVOY.replace("inbound|8080||", "InboundPassthroughCluster"),
    ENVOY.replace("inbound|8080||", "-").replace('"10.44.0.5:8080"', '"-"'),
    ENVOY.replace('"GET /api/v1/items/7 HTTP/1.1"', '"- - -"'),  # a TCP connection
    ENVOY.replace(" 12 11 ", " - - "),
    ENVOY.replace(" 200 ", " 99999999999 "),  # no status code: out of range
    ENVOY.replace(" 12 11 ", " " + "9" * 400 + " 11 "),
    ENVOY.replace("/api/v1/items/7", "/api/\tv1"),  # a tab: Python's \S and the split disagree
    ENVOY.replace("/api/v1/items/7", "/api/\u00a0v1"),  # a no-break space, whitespace to Python only
    ENVOY.replace("/api/v1/items/7", "/api/\u2003v1"),
    ENVOY.replace('"python-requests/2.31"', '"say \\"hi\\""'),  # a quote inside a quoted field
    ENVOY.replace("[2026-11-25T04:01:26.687Z]", "[2026-11-25 04:01:26.687Z]"),
    ENVOY.replace("[2026-11-25T04:01:26.687Z]", "[2026-11-25T04:01:26.687+02:00]"),
    ENVOY.replace("[2026-11-25T04:01:26.687Z]", "[2026-02-30T04:01:26.687Z]"),
    ENVOY.replace("[2026-11-25T04:01:26.687Z]", "[0000-11-25T04:01:26.687Z]"),
    ENVOY.replace("[2026-11-25T04:01:26.687Z]", "[not a time]"),
    ENVOY.replace(" 10.44.0.3:46520 - default", " 10.44.0.3:46520"),  # the line ends at the last field
    ENVOY.replace(" 10.44.0.3:46520 - default", " 10.44.0.3:46520\tglued"),
    ENVOY.replace("10.44.0.5:8080 10.44.0.3", "10.44.0.5:99999999999 10.44.0.3").replace("inbound|8080||", "-"),
    ENVOY.replace("10.44.0.5:8080 10.44.0.3", "10.44.0.5:\u00b2 10.44.0.3").replace("inbound|8080||", "-"),
    ENVOY.replace("inbound|8080||", "inbound|\u0663\u0660||"),
    ENVOY[:60],
    # a waypoint's and an HBONE upstream (tests/data/ambient, istio#50321): read line by line, the rest columnar
    (Path(__file__).parent / "data" / "ambient" / "waypoint_lines.txt").read_text().splitlines()[0],
    ENVOY.replace("inbound|8080||", "inbound-pod|8080||"),
    ENVOY.replace("inbound|8080||", "outbound|80||echo.default.svc.cluster.local").replace(
        '"10.44.0.5:8080"', '"envoy://connect_originate/10.244.0.10:80"'),
    ENVOY.replace('"10.44.0.5:8080"', '"envoy://internal_client_address/"'),
    ENVOY.replace('"python-requests/2.31"', '"envoy://agent"'),  # elsewhere, envoy:// is just text
    "[just brackets]",
    "[" + ENVOY,
]

APP_FILES: dict[str, list[object]] = {
    "flat": [{"ts": TS, "method": "GET", "path": "/a", "status": 200, "duration_ms": 12.5, "port": 8080},
             {"ts": TS, "level": "info", "msg": "not a request"}, {}],
    "ecs": [{"@timestamp": TS, "http": {"request": {"method": "POST"}, "response": {"status_code": 201}},
             "url": {"path": "/b", "full": "http://catalog.shop:8080/b?q=1"}, "event": {"duration": 3_500_000}}],
    "otel": [{"timestamp": TS, "http.request.method": "GET", "url.full": "https://user:pw@api.example.com/x",
              "http.response.status_code": 200, "server.port": 443}],
    "mixed_forms": [{"url.path": "/flat", "url": {"path": "/nested"}, "method": "GET"}],
    "flat_null_nested": [{"url.path": None, "url": {"path": "/nested"}, "method": "GET"}],
    "int_and_string": [{"method": "GET", "status": 200}, {"method": "GET", "status": "200"}],
    "float_status": [{"method": "GET", "status": 200.0}],
    "bool_status": [{"method": "GET", "status": True}],
    "string_numbers": [{"method": "GET", "status": s, "port": p} for s, p in
                       [(" 200", "8080"), ("+201", "+80"), ("2_02", "-1"), ("abc", "99999999999"), ("", "0")]],
    "big_status": [{"method": "GET", "status": 4_000_000_000}, {"method": "GET", "status": -5}],
    "durations": [{"method": "GET", "duration": d} for d in ["12ms", "1.5s", "1.2.3ms", ".", "7", " 9 us ", True]]
                 + [{"method": "GET", "latency_ms": 4}, {"method": "GET", "duration_s": 0.25}],
    "urls": [{"method": "GET", "url": u} for u in [
        "http://svc:8080/p", "http://svc/p", "https://svc", "http://svc:99999/p", "http://[::1/p", "http:///p",
        "/relative", "", "svc.ns:80/path", "http://u@svc:0/p"]]
    + [{"url": "http://svc/p", "path": "/given", "port": 9}],
    "timestamps": [{"method": "GET", "ts": t} for t in [
        1764043286, 1764043286687, 1764043286687787294, 1764043286.5, 0, -5, "2026-11-25T04:01:26.68Z",
        "2026-11-25T04:01:26.687+02:00", "2026-02-30T04:01:26.687Z", "0000-01-01T00:00:00.000Z", "garbage",
        "2026-11-25T04:01:26.687xZ", "1764043286"]],
    "second_precision": [{"method": "GET", "time": "2026-11-25T04:01:26Z"}],
    "date_only": [{"method": "GET", "time": "2026-11-25"}],
    "nan": ['{"method": "GET", "duration_ms": NaN}', '{"method": "GET", "note": "NaN is fine in a string"}'],
    "infinity_elsewhere": ['{"method": "GET", "extra": {"v": [Infinity]}}'],
    "duplicate_keys": ['{"method": "GET", "method": "POST"}'],
    "two_objects": ['{"method": "GET"} {"method": "PUT"}'],
    "trailing_text": ['{"method": "GET"} trailing'],
    "invalid_json": ['{"method": "GET"', '{not json}'],
    "k8s": [{"method": "GET", "kubernetes": {"namespace_name": "other", "pod_name": "p", "container_name": "c"}}],
    "envoy_json": [{"start_time": TS, "method": "GET", "response_code": 200, "upstream_cluster": "inbound|80||"}],
    "plain_text_mixed": [{"method": "GET", "path": "/x"}, "Started server on :8080", "", "   "],
    "arrays_and_objects": [{"method": ["GET"], "path": {"a": 1}, "status": [200]}, {"method": "GET", "path": "/"}],
    "unicode": [{"method": "GET", "path": "/caf\u00e9/\u2028/\U0001f600", "host": "h\u00f6st"}],
    "escapes": ['{"method": "G\\u0045T", "path": "/a\\"b\\\\c"}', '{"method": "GET", "path": "\\ud800"}'],
}


def _app_text(lines: list[object]) -> str:
    return _cri([line if isinstance(line, str) else json.dumps(line) for line in lines])


def test_identical_on_every_known_edge_case(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    for i, line in enumerate(ENVOY_VARIANTS):  # one file each, plus all together in one
        _write(root, f"istio-proxy-{i}", "0.log", _cri([line]))
    _write(root, "istio-proxy", "0.log", _cri(ENVOY_VARIANTS))
    for name, lines in APP_FILES.items():
        _write(root, name.replace("_", "-"), "0.log", _app_text(lines))
    # files the columnar reader must leave whole to the per-line reader, next to clean ones
    _write(root, "partial", "0.log.20261125-040000.gz", _cri([ENVOY[:50]], "P"), gz=True)
    _write(root, "partial", "0.log", _cri([ENVOY[50:]]) + _cri([ENVOY]))
    _write(root, "crlf", "0.log", _cri([ENVOY]).replace("\n", "\r\n"))
    _write(root, "latin1", "0.log", _cri([ENVOY]).encode() + b"\xff\xfe\n")
    _write(root, "no-newline", "0.log", _cri([ENVOY, json.dumps({"method": "GET"})]).rstrip("\n"))
    _write(root, "empty", "0.log", "")
    _write(root, "docker", "0.log", json.dumps({"log": ENVOY + "\n", "stream": "stdout", "time": TS}) + "\n")
    _write(root, "short-message", "0.log", f"{TS} stdout F \n{TS} stdout F\n{TS} stderr F x\n")
    short = "2026-11-25T0 stdout F "  # with {"a":1}, 29 characters: not a CRI line
    _write(root, "short-line", "0.log", f'{short}{{"a":1}}\n{short}{ENVOY}\n')
    _write(root, "gz-clean", "0.log.20261125-040000.gz", _cri([ENVOY] * 3), gz=True)
    _write(root, "gz-broken", "0.log.20261125-040000.gz", gzip.compress(_cri([ENVOY] * 50).encode())[:60])
    fast, slow, differing = read_both(root)
    assert differing == 0
    assert fast.pop("columnar_lines") > 0
    assert fast == slow
    ms = int(datetime(2026, 11, 25, 4, 1, 26, tzinfo=UTC).timestamp() * 1000)
    for window in ((ms + 1, None), (None, ms + 687), (ms + 600, ms + 3_600_000)):
        fast, slow, differing = read_both(root, window)
        assert differing == 0
        fast.pop("columnar_lines")
        assert fast == slow
        assert fast["out_of_window"] > 0
    fast, slow, differing = read_both(root, mapping={"method": "http.request.method", "duration_ms": "event.duration",
                                                     "path": "url"})
    assert differing == 0
    fast.pop("columnar_lines")
    assert fast == slow


_scalar = (st.none() | st.booleans() | st.integers(-10, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from(["GET", "200", "12ms", "http://svc:8080/p", "/p", TS, "", " 7 ", "1e3", "-"])
           | st.text(max_size=8))
_values = st.recursive(_scalar, lambda c: st.lists(c, max_size=2) | st.dictionaries(
    st.sampled_from(["method", "path", "full", "status_code", "request", "response", "duration", "port", "x"]), c,
    max_size=3), max_leaves=6)
_keys = st.sampled_from(["ts", "time", "@timestamp", "method", "path", "url", "status", "status_code", "port", "host",
                         "duration_ms", "duration", "latency", "event.duration", "http.method", "url.path", "http",
                         "url.full", "server.port", "event", "msg", "level", "request", "request.method",
                         "resp_headers", "ecs.version", "caller"])  # and the markers of Caddy, ECS and zap


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_keys, _values, max_size=6), min_size=1, max_size=6))
def test_identical_on_generated_application_lines(objects: list[dict]) -> None:
    assert_both_read_alike("app", objects)


def assert_both_read_alike(container: str, objects: list[dict]) -> None:
    """One container's file of these JSON lines: the same rows and accounting from both readers."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        _write(root, container, "0.log", _app_text(list(objects)))
        fast, slow, differing = read_both(root)
        assert differing == 0
        fast.pop("columnar_lines")
        assert fast == slow


_token = st.text(st.sampled_from([*'ab9-:/|."[] \t\u00a0\u2003', "\u0663"]), min_size=0, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(ENVOY) - 1), _token), max_size=4))
def test_identical_on_mutated_access_log_lines(edits: list[tuple[int, str]]) -> None:
    line = ENVOY
    for at, token in edits:
        line = line[:at] + token + line[at + 1:]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        _write(root, "istio-proxy", "0.log", _cri([ENVOY, line]))
        fast, slow, differing = read_both(root)
        assert differing == 0
        assert fast.pop("columnar_lines") >= 1  # the unmutated line at least
        assert fast == slow


def test_a_skewed_clock_is_measured_and_the_node_time_used(tmp_path: Path) -> None:
    """An application logging local time without its zone (an hour behind), a proxy two hours ahead, one a
    little off (within the tolerance): the first two are timed by kubelet's clock, counted and reported."""
    root = tmp_path / "logs"
    local = [{"ts": "2026-11-25T03:01:26.687Z", "method": "GET", "path": f"/{i}", "status": 200}
             for i in range(50)]
    _write(root, "app", "0.log", _app_text(local))
    ahead = ENVOY.replace("[2026-11-25T04:01:26.687Z]", "[2026-11-25T06:01:26.687Z]")
    by_line = ahead.replace("[2026-11-25T06:01:26.687Z]", "[2026-11-25 06:01:26.687Z]")  # the per-line parser's
    _write(root, "istio-proxy", "0.log", _cri([ahead] * 47 + [by_line] * 3))
    close = [{"ts": "2026-11-25T04:01:56.687Z", "method": "GET", "path": "/close", "status": 200}] * 40
    _write(root, "close", "0.log", _app_text(close))
    start = int(datetime(2026, 11, 25, 4, tzinfo=UTC).timestamp() * 1000)
    fast, slow, differing = read_both(root, (start, start + 3_600_000))
    assert differing == 0
    assert fast.pop("columnar_lines") >= 137
    assert fast == slow
    assert {(c["path"].split("/")[-2], c["offset_seconds"], c["retimed"]) for c in fast["clock_skew"]} == {
        ("app", -3600.0, 50), ("istio-proxy", 7200.0, 50)}
    assert fast["retimed"] == 100
    assert fast["out_of_window"] == 0 and fast["requests"] == 140


_stamp_chars = st.sampled_from([*"0123456789-:T .,Z+z", "\u0663", "\u00b2"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 29), _stamp_chars), max_size=3), st.integers(0, 30),
       st.sampled_from(["2026-11-25T04:01:26.687787294+05:30", "2026-11-25T04:01:26-08:00",
                        "2026-11-25T23:59:59,5+14:00", "2026-12-31T23:59:59.999-00:00", "1970-01-01T00:00:00.1+01:00",
                        "2026-11-25T04:01:26Z", "2026-11-25 04:01:26", "2026-11-25T04:01:26.12Z", "2026-11-25",
                        "2026-11-25T04:01:26.5"]))
@example([], 0, "2017-01-12T08:58:07.372015644-08:00")  # Echo's docs
@example([(19, "+")], 0, "2026-11-25T04:01:26-08:00")
def test_vectorised_timestamps_equal_the_parser(edits: list[tuple[int, str]], cut: int, other: str) -> None:
    values = []
    for stamp in ("2026-11-25T04:01:26.687787294Z", other):
        for at, char in edits:
            stamp = stamp[:at] + char + stamp[at + 1:]
        values += [stamp, stamp[:cut] + stamp[-1:], stamp[:cut] + stamp[-6:]]
    values += ["2026-11-25T04:01:26.687Z", "2026-11-25T04:01:26.687+02:00", None]
    assert ts_ms(pa.array(values)).to_pylist() == [parse_ts_ms(v) for v in values]


def test_a_file_inflating_past_the_limit_is_read_in_pieces(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A .gz that inflates to more than the columnar reader holds at once is read in pieces that end at a message's
    end (long messages split in `P` lines included), with the rows and accounting of the per-line reader."""
    root = tmp_path / "logs"
    apps = [json.dumps({"ts": TS, "method": "GET", "path": f"/{i}" + "x" * (i % 50), "status": 200}) for i in range(60)]
    long = "".join(f"{TS} stdout P {a[:20]}\n{TS} stdout F {a[20:]}\n" for a in apps[:20])
    _write(root, "istio-proxy", "0.log.20261125-040000.gz", _cri([ENVOY] * 40), gz=True)
    _write(root, "app", "0.log.20261125-040000.gz", long + _cri(apps[20:]), gz=True)
    _write(root, "small", "0.log", _cri([ENVOY] * 2))
    monkeypatch.setattr(intake, "LARGEST_FILE", 3000)
    monkeypatch.setattr(intake, "PIECE_BYTES", 700)
    pieces = list(intake.gzip_pieces(next((root / "pods" / POD / "app").iterdir())))
    assert len(pieces) > 5 and all(p.rstrip(b"\n").rsplit(b"\n", 1)[-1].split(b" ")[2] != b"P" for p in pieces)
    fast, slow, differing = read_both(root)
    assert differing == 0
    assert fast.pop("columnar_lines") == fast["lines"] - fast["joined_partial_lines"] == 102  # every piece columnar
    assert fast == slow and fast["requests"] == 42 + 60 and fast["files"] == 3


def test_a_corrupt_gzip_read_in_pieces_keeps_what_came_before_and_says_so(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "logs"
    path = _write(root, "istio-proxy", "0.log.20261125-040000.gz", _cri([ENVOY] * 400), gz=True)
    path.write_bytes(path.read_bytes()[:-200])  # truncated
    monkeypatch.setattr(intake, "LARGEST_FILE", 3000)
    monkeypatch.setattr(intake, "PIECE_BYTES", 4000)
    table = read_logs(discover([str(root)]), None, None, workers=1)
    try:
        assert 0 < table.stats.requests < 400
        assert len(table.stats.skipped_files) == 1 and "corrupt or truncated gzip" in table.stats.skipped_files[0][1]
    finally:
        table.close()


_near_cri = st.tuples(
    st.sampled_from([TS, "2026-11-25T04:01:26Z", "2026-11-25T0", "2026-11-2", "2026-11-25Té", "2026 11-25T04:01:26Z",
                     "20é6-11-25T04:01:26Z", "2026-11-25 04:01:26Z", "", "a" * 60]),
    st.sampled_from([" ", "  ", "\t", ""]), st.sampled_from(["stdout", "stderr", "stdin", "Stdout"]),
    st.sampled_from([" ", ""]), st.sampled_from(["F", "P", "f", "FF"]), st.sampled_from([" ", "", "  "]),
    st.sampled_from(["", "{}", "x", "é" * 3, "{\"a\": 1}", " lead"]),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_near_cri, min_size=1, max_size=8))
def test_cri_lines_the_columnar_reader_takes_split_as_the_parser_splits_them(texts: list[str]) -> None:

    texts = [t.replace("\n", "") for t in texts] + [f"{TS} stdout F {{}}"]
    data = ("\n".join(texts) + "\n").encode()
    lines = read_lines([BatchFile(Path("x"), data, None)])  # type: ignore[arg-type]
    complete = complete_by_bytes(lines)
    for text, ok, space in zip(texts, complete, lines.first_space, strict=True):
        if ok:  # the columnar reader cuts the bytes at the first space
            raw = text.encode()
            assert split_cri(text) == (raw[:space].decode(), "F", raw[space + len(" stdout F "):].decode())
    assert complete[-1]


def _docker(messages: list[str], newline: bool = True) -> str:
    return "".join(json.dumps({"log": m + ("\n" if newline else ""), "stream": "stdout", "time": TS}) + "\n"
                   for m in messages)


def test_docker_json_files_take_the_columnar_path_with_the_same_rows(tmp_path: Path) -> None:
    """Docker's json-file records are converted to CRI lines exactly as the per-line reader unwraps them."""
    root = tmp_path / "logs"
    apps = [json.dumps({"ts": TS, "method": "GET", "path": f"/é/{i}", "status": 200, "duration_ms": 3}) for i in
            range(30)]
    _write(root, "istio-proxy", "0.log", _docker(ENVOY_VARIANTS * 3))
    _write(root, "app", "0.log", _docker(apps))
    _write(root, "app-partial", "0.log", _docker(apps[:5], newline=False))  # records without their newline
    _write(root, "app-extra", "0.log", _docker(apps[:5]).replace('"stream"', '"attrs": {}, "stream"'))  # not plain
    fast, slow, differing = read_both(root)
    assert differing == 0
    columnar = fast.pop("columnar_lines")
    assert columnar >= 35 + len(ENVOY_VARIANTS), columnar  # the plain records went columnar (edge cases need not)
    assert fast == slow and fast["wrappers"] == {"docker-json": len(ENVOY_VARIANTS) * 3 + 40}


def test_bare_files_take_the_columnar_path_with_the_same_rows(tmp_path: Path) -> None:
    """`kubectl logs POD > POD.log`: bare messages, no node time; wrapped or blank lines keep a file per-line."""
    root = tmp_path / "logs"
    root.mkdir()
    apps = [json.dumps({"ts": TS, "method": "GET", "path": f"/{i}", "status": 200, "duration_ms": 3}) for i in
            range(30)]
    (root / "web-0.log").write_text("\n".join(apps + ENVOY_VARIANTS) + "\n")
    (root / "web-1.log").write_text("\n".join([*apps, "plain text", ""]) + "\n")  # a blank line: per-line
    (root / "web-2.log").write_text("\n".join([*apps[:3], f"{TS} {ENVOY}"]) + "\n")  # kubectl --timestamps inside
    (root / "web-3.log").write_text("\n".join(apps[:5]))  # no final newline
    # access logs alone: no node time, so a start time misread (`[[2026-...]`) cannot hide behind kubelet's
    (root / "web-4.log").write_text("\n".join(ENVOY_VARIANTS) + "\n")
    (root / "web-5.log").write_text("\n".join(ENVOY_VARIANTS + apps) + "\n")  # the proxy's lines first
    fast, slow, differing = read_both(root)
    assert differing == 0
    columnar = fast.pop("columnar_lines")
    # web-0's and web-5's access logs in the strict shape are read columnar beside their JSON, whichever comes
    # first (kubectl logs --all-containers)
    assert columnar >= 35 + 30 + 3 * 16 and fast == slow, (columnar, fast, slow)
    assert "cri" not in fast["wrappers"] and fast["undated"] == slow["undated"]


def test_json_after_the_proxy_lines_is_read_columnar_with_the_mesh_own_formats_too(tmp_path: Path) -> None:
    """A file that begins with the proxy's lines and goes on with the application's JSON (kubectl logs
    --all-containers): the JSON is read columnar whether the access logs are in the default shape or in formats the
    mesh declares (which the per-line parser reads), with the same rows as the per-line reader."""
    from obsgap.config import parse_access_log_formats

    root = tmp_path / "logs"
    root.mkdir()
    apps = [json.dumps({"ts": TS, "method": "GET", "path": f"/{i}", "status": 200, "duration_ms": 3}) for i in
            range(30)]
    (root / "web-0.log").write_text("\n".join([ENVOY] * 5 + apps) + "\n")
    _write(root, "istio-proxy", "0.log", _cri([ENVOY] * 5 + apps))
    istio_default = ('[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
                     "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
                     '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
                     '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
                     '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% '
                     "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
                     "%REQUESTED_SERVER_NAME% %ROUTE_NAME%")
    for formats in ((), parse_access_log_formats([istio_default])):
        fast, slow, differing = read_both(root, access_formats=formats)
        assert differing == 0
        assert fast.pop("columnar_lines") >= 2 * len(apps) + (0 if formats else 10)
        assert fast == slow and fast["requests"] == 2 * (5 + len(apps)), (fast, formats)


_docker_record = st.fixed_dictionaries({
    "log": st.text(alphabet=st.sampled_from(list('ab "\\{}<>&é\t\n\r\u2028/')), max_size=12).map(
        lambda t: t + st_suffix(t)),
    "stream": st.sampled_from(["stdout", "stderr", "stdin"]),
    "time": st.sampled_from([TS, "2026-11-25T04:01:26.1Z", "2026-11-25T04:01:26Z", ""]),
})


def st_suffix(text: str) -> str:
    return "\n" if len(text) % 3 else ""  # most records end in their newline, some do not


@settings(max_examples=300, deadline=None)
@given(st.lists(_docker_record, min_size=1, max_size=6))
@example([{"log": "", "stream": "stdout", "time": TS}, {"log": "<\n\n", "stream": "stdout", "time": TS}])
@example([{"log": "a\n", "stream": "stdout", "time": TS + "\n"}])
def test_docker_records_convert_to_the_cri_lines_of_their_messages(records: list[dict]) -> None:
    """docker_lines gives `<time> <stream> F <log without its trailing newlines>` per record, as the per-line
    reader reads each record, or declines when a record's line would not be one message."""
    import pyarrow.json as pa_json

    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    table = pa_json.read_json(pa.BufferReader(data), parse_options=pa_json.ParseOptions(
        explicit_schema=pa.schema([(k, pa.string()) for k in ("log", "stream", "time")])))
    expected = [f"{r['time']} {r['stream']} F {r['log'].rstrip(chr(10))}\n" for r in records]
    one_message = all(line.count("\n") == 1 and "\r" not in line for line in expected)
    assert docker_lines(table) == ("".join(expected).encode() if one_message else None)


ISTIO_JSON_LINES = yaml.safe_load(
    (Path(__file__).parent / "data" / "access_logs" / "istio_json_lines.yaml").read_text())


def test_istio_json_access_logs_take_the_columnar_path_with_the_same_rows(tmp_path: Path) -> None:
    """Real lines in Istio's JSON encoding (1.3-1.8 strings, 1.9+ numbers and nulls), one release per sidecar as a
    mesh writes them, at each position of the file: read columnar, row for row as the per-line reader reads them."""
    root = tmp_path / "logs"
    by_release: dict[str, list[str]] = {}
    for case in ISTIO_JSON_LINES:
        by_release.setdefault(case.get("release", "1.9+"), []).append(case["line"])
    for n, lines in enumerate(by_release.values()):
        _write(root, f"istio-proxy-{n}", "0.log", _cri(lines * 20))
    fast, slow, differing = read_both(root)
    assert differing == 0
    columnar = fast.pop("columnar_lines")
    assert fast == slow and fast["formats"] == {"envoy-json": 20 * len(ISTIO_JSON_LINES)}, (fast, slow)
    assert columnar == fast["lines"]  # every line columnar


_ENVOY_JSON_TEXT = st.sampled_from(["-", "", "200", " 200", "0", "1732400000", "1732400000.5", "1732400000\n",
                                    "\u0661\u0667\u0663\u0662\u0664\u0660\u0660\u0660\u0660\u0660", TS,
                                    "2026-11-25T04:01:26.687Z", "HTTP/1.1", "12", "1e3", "nan", "99999999999",
                                    "outbound|9080||reviews.default.svc.cluster.local", "inbound|8080||",
                                    "10.44.0.5:8080", "[fd00::1]:80", "\u0663\u0660"]) | st.text(max_size=6)
_ENVOY_JSON_KINDS = {"text": _ENVOY_JSON_TEXT, "int": st.integers(-5, 2**33), "float": st.floats(0, 1e12),
                     "null": st.none()}
_ENVOY_JSON_KEYS = ("method", "path", "protocol", "duration", "upstream_cluster", "upstream_host",
                    "downstream_local_address", "authority", "downstream_remote_address", "response_flags")


@st.composite
def _istio_json_run(draw: st.DrawFn) -> list[dict]:
    """Lines of one sidecar: each key keeps one JSON type on every line, as one Istio release writes them (mixed
    types send a run to the per-line reader, which would test nothing); text keys may be null on some lines."""
    keys = ["start_time", "response_code", *draw(st.lists(st.sampled_from(_ENVOY_JSON_KEYS), unique=True))]
    # the types Envoy writes: a float is a time or a duration, never a code or a name (those go line by line)
    kinds = {k: draw(st.sampled_from(["text", "int", "float"] if k in ("start_time", "duration")
                                     else ["text", "int"] if k == "response_code" else ["text", "int", "null"]))
             for k in keys}
    n = draw(st.integers(1, 5))
    return [{k: draw(_ENVOY_JSON_KINDS[kinds[k]] if kinds[k] != "text" or k in ("start_time", "response_code")
                     else _ENVOY_JSON_TEXT | st.none()) for k in keys} for _ in range(n)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_istio_json_run())
def test_identical_on_generated_istio_json_access_logs(objects: list[dict]) -> None:
    assert_both_read_alike("istio-proxy", objects)


APP_SCHEMA_LINES = yaml.safe_load((Path(__file__).parent / "data" / "app_logs" / "schemas.yaml").read_text())


def test_real_application_json_lines_take_the_columnar_path_with_the_same_rows(tmp_path: Path) -> None:
    """Each framework's real line (Echo, Caddy, zap, pino-http, ECS, ...) repeated in a file of its own: the same
    rows and accounting as the per-line reader, every line columnar (an object-valued marker such as Caddy's
    resp_headers, ECS's url.full being the server's own request, whole-second timestamps that Arrow would take for
    timestamps, a duration key of unknown unit)."""
    root = tmp_path / "logs"
    json_cases = [c for c in APP_SCHEMA_LINES if c["line"].startswith("{")]
    for n, case in enumerate(json_cases):
        _write(root, f"app-{n}", "0.log", _cri([case["line"]] * 10))
    fast, slow, differing = read_both(root)
    assert differing == 0
    columnar = fast.pop("columnar_lines")
    assert fast == slow, (fast, slow)
    assert columnar == 10 * len(json_cases)
    # a bare latency of no known schema: read, its duration left out, and the key reported for --log-field
    assert [(u["key"], u["requests"]) for u in fast["duration_unit_unknown"]] == [("latency", 10)]


_ecs_url = st.sampled_from(["http://shop.example:8080/cart?x=1", "https://u:p@pay.example/p", "/relative", "",
                            "http://[fd00::1]:81/x", "http://bad:port/x", "svc:8080/y", "http://h\u00f6st/"])
_ecs_line = st.fixed_dictionaries(
    {"ecs.version": st.just("8.10.0"), "url": st.fixed_dictionaries(
        {"full": _ecs_url}, optional={"path": st.sampled_from(["/cart", "", "/a b"]),
                                      "domain": st.sampled_from(["shop.example", ""])})},
    optional={"http": st.fixed_dictionaries({"request": st.fixed_dictionaries({"method": st.just("GET")}),
                                             "response": st.fixed_dictionaries({"status_code": st.just(200)})}),
              "host": st.sampled_from(["", "front.example"]), "port": st.sampled_from([8080, 0]),
              "event": st.fixed_dictionaries({"duration": st.integers(0, 10**9)})})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ecs_line, min_size=1, max_size=5))
def test_identical_on_generated_server_logs_of_their_own_requests(objects: list[dict]) -> None:
    """ECS: url.full is the request the server handled, so its host is the authority only when none is given."""
    assert_both_read_alike("app", objects)
