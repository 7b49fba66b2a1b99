"""--clickhouse-url chdb:PATH: the scenario's logs loaded into otel_logs as the OpenTelemetry Collector writes them
(filelog receiver with the container parser, ClickHouse exporter), read with the aggregation pushed down into the
real ClickHouse engine (chDB), give the findings the same logs give as files."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from obsgap import engine
from obsgap.config import RunPlan
from obsgap.model import Window
from obsgap.report.notices import notices
from obsgap.result import ScanResult
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.logs.clickhouse import ClickHouseOptions
from obsgap.sources.logs.envoy_format import AccessFormat
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import sources_json

DDL = Path(__file__).parent / "data" / "clickhouse" / "otel_logs.sql"
SPEC = ScenarioSpec("ch", (("app", True),),
                    (ServiceSpec("app", "client"), ServiceSpec("app", "api", replicas=2),
                     ServiceSpec("app", "billing", replicas=1, metrics_loss=0.5)),
                    (FlowSpec("app/client", "app/api", 8080, 1.0), FlowSpec("app/api", "app/billing", 8080, 0.5)),
                    end=datetime(2026, 11, 24, tzinfo=UTC), hours=0.5, scrape_interval_s=15, gzip_rotated=False)


def otel_rows(logs: Path, copies: int = 1) -> list[dict[str, Any]]:
    """What the filelog receiver (container parser) and the ClickHouse exporter write for kubelet's CRI files:
    Timestamp = the CRI time, Body = the message, k8s.* resource attributes from the file's path."""
    rows = []
    for f in sorted((logs / "pods").glob("*/*/*.log")):
        ns, pod, uid = f.parent.parent.name.split("_")
        resource = {"k8s.namespace.name": ns, "k8s.pod.name": pod, "k8s.pod.uid": uid,
                    "k8s.container.name": f.parent.name, "k8s.container.restart_count": "0"}
        for raw in f.read_text().splitlines():
            ts, stream, _flag, msg = raw.split(" ", 3)
            for _ in range(copies):
                rows.append({"Timestamp": ts.replace("T", " ").rstrip("Z"), "Body": msg,
                             "ResourceAttributes": resource, "ServiceName": resource["k8s.container.name"],
                             "LogAttributes": {"log.iostream": stream, "log.file.path": str(f)}})
    return rows


def create_view(s: Any, formats: tuple[Any, ...] = ()) -> None:
    """`obsgap clickhouse-schema`'s statements, as clickhouse-client runs them, and its settings profile as the
    Collector's inserts would then carry it (a chDB session grants no profiles: its SET is the same setting)."""
    from obsgap.sources.logs.clickhouse_schema import schema_ddl

    for statement in schema_ddl("otel_logs", "obsgap_requests", formats, None).split(";\n"):
        body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
        if body:
            s.query(body)
    s.query("SET short_circuit_function_evaluation = 'disable'")


def insert(s: Any, rows: list[dict[str, Any]], data: Path, batches: int = 1) -> None:
    """The rows inserted as the Collector's exporter does, in `batches` inserts."""
    size = -(-len(rows) // batches)
    for k in range(batches):
        data.write_text("".join(json.dumps(r) + "\n" for r in rows[k * size:(k + 1) * size]))
        s.query(f"INSERT INTO otel_logs (Timestamp, Body, ResourceAttributes, ServiceName, LogAttributes) "
                f"SELECT parseDateTime64BestEffort(Timestamp, 9, 'UTC'), Body, ResourceAttributes, ServiceName, "
                f"LogAttributes FROM file('{data}', JSONEachRow, 'Timestamp String, Body String, "
                f"ResourceAttributes Map(String, String), ServiceName String, LogAttributes Map(String, String)')")


def load(path: Path, logs: Path, copies: int = 1, view: bool = False) -> None:
    from chdb import session

    s = session.Session(str(path))
    s.query(DDL.read_text())
    if view:
        create_view(s)
    insert(s, otel_rows(logs, copies), path.parent / f"{path.name}.jsonl", batches=4 if view else 1)
    s.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("clickhouse")
    built = build(SPEC, tmp / "mesh")
    server = serve_openmetrics(built.metrics, tmp / "mesh")
    files = _run(server, built.topology, logs=(str(built.logs),))
    yield built, server, files, tmp
    server.stop()


def _run(server: Any, topology: Path, **kw: Any) -> ScanResult:
    return engine.run(RunPlan(window=Window(SPEC.start, SPEC.end), prometheus=PrometheusOptions(url=server.url),
                              kube_snapshots=(topology,), **kw)).result


def _answer(result: ScanResult) -> tuple[set[Any], set[Any]]:
    return ({(c.service, c.observed, c.mesh) for c in result.coverage},
            {(f.check, f.cause, f.service) for f in result.findings})


def test_clickhouse_gives_the_answer_of_the_files(mesh) -> None:  # type: ignore[no-untyped-def]
    built, server, files, tmp = mesh
    load(tmp / "ch1", built.logs)
    result = _run(server, built.topology, clickhouse=ClickHouseOptions(url=f"chdb:{tmp / 'ch1'}"))
    assert _answer(result) == _answer(files)
    assert ("envoy-bypass", "unexplained", "billing") in _answer(result)[1]
    logs = sources_json(result)["logs"]
    assert logs["requests"] == sources_json(files)["logs"]["requests"]
    assert logs["unparsed"] == 0 and set(logs["formats"]) == set(sources_json(files)["logs"]["formats"])
    report = logs["clickhouse"]
    assert report["queries"] == 1 and report["sql"][0].startswith("SELECT grouping_set")  # one scan
    assert len(result.sources.logs.clickhouse.seconds) == 1 if result.sources.logs.clickhouse else False
    assert report["rows_scanned"] == logs["lines"]
    assert "otel_logs" not in report["sql"][0]  # the table name is a bound parameter, as every outside value


def test_the_logs_parsed_at_ingest_give_the_answer_of_the_raw_table(mesh) -> None:  # type: ignore[no-untyped-def]
    """`obsgap clickhouse-schema`'s view, fed by the Collector's inserts (four batches), fills a table of typed
    requests; report on that table gives the findings and counts of the raw table and the files, with no parse."""
    built, server, files, tmp = mesh
    load(tmp / "view", built.logs, view=True)
    o = ClickHouseOptions(url=f"chdb:{tmp / 'view'}", table="obsgap_requests")
    result = _run(server, built.topology, clickhouse=o)
    assert _answer(result) == _answer(files)
    logs, want = sources_json(result)["logs"], sources_json(files)["logs"]
    assert (logs["requests"], logs["lines"], logs["formats"]) == (want["requests"], want["lines"], want["formats"])
    report = logs["clickhouse"]
    assert report["parsed_at_ingest"] and not report["parse_mismatch"] and report["queries"] == 1
    assert "extractGroups" not in report["sql"][0] and "JSONExtract" not in report["sql"][0]  # no parse at read
    raw = _run(server, built.topology, clickhouse=ClickHouseOptions(url=f"chdb:{tmp / 'view'}"))
    assert _answer(raw) == _answer(result) and not sources_json(raw)["logs"]["clickhouse"]["parsed_at_ingest"]
    # a run whose formats differ from the view's is told its rows were parsed by other rules
    other = _run(server, built.topology, clickhouse=o, access_log_formats=(
        AccessFormat("custom", "text", "[%START_TIME%] %REQ(:METHOD)% %RESPONSE_CODE%\n"),))
    assert sources_json(other)["logs"]["clickhouse"]["parse_mismatch"]
    assert any("obsgap clickhouse-schema" in n for n in notices(other))


def test_rows_returned_do_not_grow_with_the_lines(mesh) -> None:  # type: ignore[no-untyped-def]
    """Three times the lines (each logged thrice) return the same number of rows: only aggregates leave."""
    built, server, _files, tmp = mesh
    load(tmp / "ch2", built.logs)
    load(tmp / "ch3", built.logs, copies=3)
    once = _run(server, built.topology, clickhouse=ClickHouseOptions(url=f"chdb:{tmp / 'ch2'}"))
    thrice = _run(server, built.topology, clickhouse=ClickHouseOptions(url=f"chdb:{tmp / 'ch3'}"))
    assert sources_json(thrice)["logs"]["lines"] == 3 * sources_json(once)["logs"]["lines"]
    assert thrice.sources.logs.clickhouse is not None and once.sources.logs.clickhouse is not None
    assert thrice.sources.logs.clickhouse.rows_returned == once.sources.logs.clickhouse.rows_returned
    assert sources_json(once)["logs"]["clickhouse"]["rows_returned"] < sources_json(once)["logs"]["lines"] / 10


def test_the_parse_sql_is_layered() -> None:
    """Each column one level above the deepest column it reads (never beside it: ClickHouse would expand it at
    every use); a cycle is refused; the real parse has its columns in more than a handful of levels."""
    from obsgap.sources.logs.clickhouse import ClickHouseOptions, build_relation
    from obsgap.sources.logs.clickhouse_parse import Columns

    c = Columns()
    for alias, expr in (("a", "length(body)"), ("b", "a + 1"), ("d", "b + a"), ("e", "x.1 + {p0:Int64}")):
        c.add(alias, expr)
    assert c.levels() == [["a", "e"], ["b"], ["d"]]
    looped = Columns()
    looped.add("a", "b + 1")
    looped.add("b", "a + 1")
    with pytest.raises(ValueError, match="read each other"):
        looped.levels()
    sql = build_relation(ClickHouseOptions(url="chdb:/x"), 0, 1, (), None).sql
    assert sql.count("FROM (") >= 8 and "SELECT *" not in sql


FIELDS = {"start": "2026-11-24T00:00:08.000Z", "method": "GET", "path": "/orders/2?x=1", "protocol": "HTTP/1.1",
          "code": 200, "flags": "-", "duration": 7, "bytes_received": 0, "bytes_sent": 135,
          "authority": "orders.shop:8080", "upstream_host": "10.44.0.5:8080", "cluster": "inbound|8080||",
          "downstream_local": "10.44.0.5:8080", "downstream_remote": "10.44.0.3:46520"}
"""A request as the TEXT formats write it (render_text puts `-` for every other operator)."""

ODD_VALUES = {"path": ['/a"b', "/a\x0bb", "/a\u00a0b", "/a]b", "/\u00e9t\u00e9"],
              "start": ["2026-11-24 00:00:08", '2026"11'], "authority": ["orders shop", "", "a\tb"],
              "cluster": ["in\tbound", "in\x0bbound", "a\u3000b"],
              "downstream_remote": ["[fd00::3]:46520", "]"], "flags": ['U"F']}
"""Values that put a quote, a tab, a vertical tab, a space or a non-ASCII space where each kind of group is."""


def test_text_access_logs_split_at_quotes_read_as_their_pattern_reads_them(tmp_path: Path) -> None:
    """ClickHouse reads a TEXT access log by splitting it at its quotes and whitespace where the format's SplitPlan
    says where each group lies (several times cheaper than RE2's submatches). On the lines of every builtin format
    and of a mesh's own, with odd values in each kind of group and odd line ends, every parsed column equals the
    reading by the pattern's groups alone; and a format whose values are glued to literals has no plan."""
    from obsgap.sources.logs.clickhouse import connect
    from obsgap.sources.logs.clickhouse_parse import Params, parse_lines
    from obsgap.sources.logs.envoy_format import builtin_text_formats, compile_text, render_text, split_plan

    own = ('[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
           '"%REQ(X-TENANT)%" %DURATION% "%REQ(:AUTHORITY)%" %UPSTREAM_CLUSTER% %DOWNSTREAM_LOCAL_ADDRESS% '
           '%DOWNSTREAM_REMOTE_ADDRESS%\n')
    formats = (AccessFormat("ConfigMap istio-system/istio accessLogFormat", "text", own),)
    assert split_plan(compile_text(own, "own")) is not None
    assert split_plan(compile_text("%START_TIME% code=%RESPONSE_CODE% %DURATION%", "glued")) is None
    assert split_plan(compile_text('%REQ(:METHOD)% [%START_TIME%] "%REQ(:PATH)%"', "late bracket")) is None
    sources = [own, *(f.source for f in builtin_text_formats())]
    lines = []
    for source in sources:
        plain = render_text(source, FIELDS)
        cut = plain.rsplit(" ", 1)[0]  # the last field empty, with and without its space
        lines += [plain, plain + "  ", plain + "\t", plain + "\x0b", plain + " \u3000", plain + "\x1c", cut + " ", cut,
                  plain.replace(" ", "  ", 1), plain.replace('"', '""', 1)]
        lines += [render_text(source, FIELDS | {key: value}) for key, values in ODD_VALUES.items() for value in values]
    read = []
    for split in (True, False):
        p = Params()
        body = p.add(lines, "Array(String)")
        source = (f"SELECT toInt64(i) AS node_ms, line AS body, 'ns' AS namespace, concat('p', toString(i)) AS pod, "
                  f"'c' AS container FROM (SELECT arrayJoin(arrayEnumerate({body})) AS i, {body}[i] AS line)")
        sql = parse_lines(source, formats, None, p, split=split)
        assert all(f"split{i}" in sql for i in range(len(sources))) == split
        conn = connect(ClickHouseOptions(url=f"chdb:{tmp_path}"))
        frame = conn.query(f"SELECT * FROM ({sql}) ORDER BY node_ms SETTINGS short_circuit_function_evaluation = "
                           f"'disable'", p.values)
        conn.close()
        read.append(frame.astype(object).where(frame.notna(), None).to_dict("records"))
    split_rows, pattern_rows = read
    assert len(split_rows) == len(lines)
    for line, by_split, by_pattern in zip(lines, split_rows, pattern_rows, strict=True):
        assert by_split == by_pattern, line
    kinds = Counter(r["kind"] for r in split_rows)
    assert kinds["envoy-text"] >= 8 * len(sources), kinds  # most lines are access logs: the test reads the fields


def test_unicode_whitespace_in_a_text_access_log_reads_as_in_the_files(tmp_path: Path) -> None:
    """Python's `\\S` excludes every Unicode space, RE2's only ASCII ones: ClickHouse matches the Envoy and the
    application text formats with Python's classes spelled out (envoy_format.for_re2), so a field holding U+3000 or
    U+00A0, or a line ending in one, is the kind and the fields the per-line parser makes of it."""
    from obsgap.sources.logs.envoy_format import builtin_text_formats, render_text

    source = builtin_text_formats()[0].source
    lines = [render_text(source, FIELDS | {"cluster": "a\u3000b"}), render_text(source, FIELDS | {"flags": "U\u00a0F"}),
             render_text(source, FIELDS) + "\u3000", render_text(source, FIELDS | {"path": "/a\u00a0b"}),
             "GET /a\u00a0b 200 3.1 ms - 12", "GET /ab 200 3.1 ms - 12"]  # morgan's `dev` format
    kinds = _parse_both(tmp_path, lines)
    # only the line ending in U+3000 is an access log: the path is a word of the request too (`"%METHOD% %PATH% ..."`)
    assert kinds["envoy-text istio-1.9+"] == 1 and kinds["app-text"] == 1 and kinds["unrecognized"] == 4, kinds


def test_bad_clickhouse_input_is_a_clear_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from obsgap.cli import main

    res = CliRunner().invoke(main, ["report", "--clickhouse-url", f"chdb:{tmp_path / 'nope'}", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code == 2 and "no such data directory" in res.output
    res = CliRunner().invoke(main, ["report", "--clickhouse-url", "clickhouse.example:9000", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code == 2 and "give http(s)://host:8123 or chdb:PATH" in res.output
    res = CliRunner().invoke(main, ["report", "--clickhouse-url", "chdb:/x", "--clickhouse-attribute", "pod",
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--clickhouse-attribute" in res.output


def test_the_cronjob_reads_clickhouse_when_told() -> None:
    import yaml

    from obsgap.manifests import ManifestOptions, render_manifests

    docs = list(yaml.safe_load_all(render_manifests(ManifestOptions(clickhouse_url="http://clickhouse.logs:8123"))))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    assert not any("pods/log" in r["resources"] for r in role["rules"])
    job = next(d for d in docs if d["kind"] == "CronJob")
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--clickhouse-url") + 1] == "http://clickhouse.logs:8123"
    assert "--pod-logs" not in container["args"]


def _parse_both(tmp_path: Path, lines: list[str], formats: tuple[Any, ...] = ()) -> Counter[str]:
    """The lines loaded into otel_logs: the fields and times ClickHouse computes, at read and at ingest (the
    view of `obsgap clickhouse-schema`), equal the Python parser's row for row. Returns the kinds ClickHouse
    gave."""
    from chdb import session

    from obsgap.sources.logs.clickhouse import ClickHouseOptions, build_relation, connect
    from obsgap.sources.logs.recognise import recognise
    from obsgap.sources.logs.task import FileStats, ReadTask

    path = tmp_path / "ch"
    s = session.Session(str(path))
    s.query(DDL.read_text())
    create_view(s, formats)
    rows = [{"Timestamp": f"2026-11-24 00:{i // 60:02d}:{i % 60:02d}", "Body": line, "ResourceAttributes": {
        "k8s.namespace.name": "ns", "k8s.pod.name": f"p{i}", "k8s.container.name": "c"}, "ServiceName": "x",
        "LogAttributes": {}} for i, line in enumerate(lines)]
    insert(s, rows, tmp_path / "rows.jsonl")
    s.close()
    read = []
    for table in ("otel_logs", "obsgap_requests"):
        o = ClickHouseOptions(url=f"chdb:{path}", table=table)
        rel = build_relation(o, 0, 4_000_000_000_000, formats, None, parsed=table == "obsgap_requests")
        conn = connect(o)
        read.append(conn.query(f"SELECT pod, by_address, kind, access_format, origin, method, path, status, "
                               f"duration_ms, port, direction, authority, upstream_cluster, upstream_host, protocol, "
                               f"downstream_local, downstream_remote, response_flags, own_ms FROM ({rel.sql}) "
                               f"ORDER BY pod SETTINGS short_circuit_function_evaluation = 'disable'", rel.params))
        conn.close()
    at_read, at_ingest = (frame.astype(object).where(frame.notna(), None) for frame in read)
    assert at_ingest.to_dict("records") == at_read.to_dict("records") and len(at_read) == len(lines)
    got = at_read
    by_pod = {r.pod: r for r in got.itertuples(index=False)}
    task = ReadTask((), "", None, None, access_formats=formats)
    wrong = []
    for i, line in enumerate(lines):
        row, _ = recognise(line, None, task, FileStats("x"))
        ch = by_pod[f"p{i}"]
        if row is None:
            assert ch.kind in ("json-other", "unrecognized", "empty"), (line, ch.kind)
            continue
        if row["ts_ms"] is not None:
            assert ch.own_ms is not None and int(ch.own_ms) == row["ts_ms"], (row["ts_ms"], ch.own_ms, line[:90])
        if row.get("_by_address"):  # a proxy's line about another pod: attributed by address, not where it was read
            assert ch.by_address and ch.origin == row["origin"], (line[:90], ch.by_address, ch.origin)
        keys = ("method", "path", "status", "port", "direction", "authority", "upstream_cluster", "protocol",
                "downstream_remote") + (("upstream_host", "downstream_local", "response_flags")
                                        if row["origin"] in ("ztunnel", "waypoint") else ())
        for key in keys:
            want, have = row[key], getattr(ch, key)
            have = None if have is None or have == "" else have
            if (have if have is None else type(want)(have) if want is not None else have) != want:
                wrong.append((key, want, have, line[:90]))
        want_d, have_d = row["duration_ms"], ch.duration_ms
        if not ((want_d is None and have_d is None) or (None not in (want_d, have_d)
                                                         and abs(float(have_d) - want_d) < 1e-6)):
            wrong.append(("duration_ms", want_d, have_d, line[:90]))
    assert wrong == []
    return Counter(str(r.kind) + (f" {r.access_format}" if r.access_format else "") for r in by_pod.values())


def test_every_real_line_parses_in_clickhouse_as_the_file_reader_parses_it(tmp_path: Path) -> None:
    """The real lines of tests/data (every Istio default TEXT format since 1.0, the JSON encodings, application
    schemas and text access logs, ztunnel's and a waypoint's lines) loaded into otel_logs: the fields and times
    ClickHouse computes from the same definitions equal the Python parsers' row for row."""
    import yaml

    data = Path(__file__).parent / "data"
    lines = [c["line"] for name in ("istio_text_lines.yaml", "istio_json_lines.yaml")
             for c in yaml.safe_load((data / "access_logs" / name).read_text())]
    lines += [c["line"] for c in yaml.safe_load((data / "app_logs" / "schemas.yaml").read_text())]
    # ambient mode: ztunnel's lines (TEXT and JSON) and a waypoint's, attributed by the addresses they name
    lines += [x for x in (data / "ambient" / "ztunnel_lines.txt").read_text().splitlines()
              if x and not x.startswith(("#", "source:"))]
    lines += (data / "ambient" / "waypoint_lines.txt").read_text().splitlines()
    kinds = Counter(k.split(" ")[0] for k in _parse_both(tmp_path, lines).elements())
    assert sum(kinds[k] for k in ("envoy-text", "envoy-json", "app-json", "app-text", "ztunnel")) >= 15
    assert kinds["app-text"] >= 4 and kinds["envoy-text"] >= 11 and kinds["envoy-json"] >= 5, kinds
    assert kinds["ztunnel"] == 11, kinds


CUSTOM_JSON = {"when": "%START_TIME%", "verb": "%REQ(:METHOD)%", "route": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
               "code": "%RESPONSE_CODE%", "took": "%DURATION%", "cluster": "%UPSTREAM_CLUSTER%",
               "peer": "%DOWNSTREAM_REMOTE_ADDRESS%", "local": "%DOWNSTREAM_LOCAL_ADDRESS%",
               "host": "%REQ(:AUTHORITY)%", "flags": "%RESPONSE_FLAGS%"}
"""A mesh's own JSON access-log format (meshConfig accessLogEncoding: JSON with accessLogFormat), keys renamed."""


def test_a_custom_json_format_and_mixed_lines_parse_in_clickhouse_as_in_the_files(tmp_path: Path) -> None:
    """A mesh's own JSON format beside Istio's JSON, application JSON, Istio TEXT, ztunnel and garbage lines of the
    same container (the sidecar, the application and a caller mixed as kubectl logs --all-containers shows them):
    each line takes the kind and fields the Python parser gives it."""
    from obsgap.sources.logs.envoy_format import AccessFormat

    fmt = AccessFormat("ConfigMap istio-system/istio accessLogFormat", "json", json.dumps(CUSTOM_JSON))
    custom = [json.dumps({"when": f"2026-11-24T00:00:0{i}.250Z", "verb": "GET", "route": f"/orders/{i}",
                          "code": 200 + i, "took": 12 + i, "cluster": "inbound|8080||", "peer": "10.44.0.3:46520",
                          "local": "10.44.0.5:8080", "host": "orders.shop:8080", "flags": "-"}) for i in range(3)]
    custom.append(json.dumps({"when": "2026-11-24T00:00:05Z", "verb": "POST", "route": "/pay", "code": 503,
                              "took": 3, "cluster": "outbound|8080||payments.shop.svc.cluster.local",
                              "peer": "10.44.0.5:40112", "local": "10.96.0.9:8080", "host": "payments.shop:8080",
                              "flags": "UF"}))
    istio_json = json.dumps({"start_time": "2026-11-24T00:00:06.000Z", "method": "GET", "path": "/",
                             "response_code": 200, "duration": 4, "upstream_cluster": "inbound|9090||",
                             "downstream_local_address": "10.44.0.5:9090", "authority": "orders:9090"})
    app = json.dumps({"ts": "2026-11-24T00:00:07Z", "method": "GET", "path": "/orders/1", "status": 200,
                      "latency": "12ms"})
    text = ('[2026-11-24T00:00:08.000Z] "GET /orders/2 HTTP/1.1" 200 - via_upstream - "-" 0 135 7 6 "-" "curl/8" '
            '"id-1" "orders.shop:8080" "10.44.0.5:8080" inbound|8080|| 127.0.0.6:40001 10.44.0.5:8080 '
            '10.44.0.3:46520 - default')
    ztunnel = ('2026-11-24T00:00:09.000000Z\tinfo\taccess\tconnection complete\tsrc.addr=10.44.0.3:51000 '
               'dst.addr=10.44.0.5:8080 direction="inbound" bytes_sent=10 bytes_recv=20 duration="3ms"')
    lines = [*custom, istio_json, app, text, ztunnel, "{not json", "{}", "panic: runtime error", ""]
    kinds = _parse_both(tmp_path, lines, (fmt,))
    assert kinds[f"envoy-json {fmt.name}"] == 4 and kinds["envoy-json istio-json"] == 1, kinds
    assert kinds["app-json"] == 1 and kinds["envoy-text istio-1.9+"] == 1 and kinds["ztunnel"] == 1, kinds


def test_the_mesh_format_is_read_in_clickhouse_too(tmp_path: Path, prometheus_available: None) -> None:
    """Sidecars logging in the mesh's own accessLogFormat (from the snapshot's `istio` ConfigMap): ClickHouse
    matches that format's compiled pattern, and the planted gap is found as from the files."""
    from dataclasses import replace

    from tests.test_coverage import CUSTOM_FORMAT, _mesh_configmap, scenario

    base = scenario("custom-format", ServiceSpec("app", "api", pods_without_proxy=0, metrics_loss=0.4,
                                                 app_logs="none"))
    spec = replace(base, access_log_format=CUSTOM_FORMAT, extra_objects=(_mesh_configmap(CUSTOM_FORMAT),))
    built = build(spec, tmp_path / spec.name)
    server = serve_openmetrics(built.metrics, tmp_path / spec.name)
    try:
        def run(**kw: Any) -> ScanResult:
            return engine.run(RunPlan(window=Window(spec.start, spec.end),
                                      prometheus=PrometheusOptions(url=server.url),
                                      kube_snapshots=(built.topology,), **kw)).result

        files = run(logs=(str(built.logs),))
        load(tmp_path / "ch", built.logs)
        ch = run(clickhouse=ClickHouseOptions(url=f"chdb:{tmp_path / 'ch'}"))
    finally:
        server.stop()
    assert _answer(ch) == _answer(files)
    assert ("envoy-bypass", "unexplained", "api") in _answer(ch)[1]
    formats = sources_json(ch)["logs"]["access_log_formats"]["formats"]
    assert set(formats) == {"ConfigMap istio-system/istio accessLogFormat"}
    assert sources_json(ch)["logs"]["unparsed"] == 0


def test_a_skewed_clock_is_judged_in_clickhouse_as_in_the_files(tmp_path: Path, prometheus_available: None) -> None:
    """An application logging local time an hour off: ClickHouse applies clock.py's rule (per container) and
    times its requests by the Collector's Timestamp, as the file readers do."""
    from dataclasses import replace

    from obsgap.scenario.spec import ServiceSpec as S

    spec = replace(SPEC, name="skew", services=(S("app", "client"), S("app", "api", replicas=2,
                                                                        app_clock_offset_s=3600),
                                                S("app", "billing", replicas=1, metrics_loss=0.5)))
    built = build(spec, tmp_path / "skew")
    server = serve_openmetrics(built.metrics, tmp_path / "skew")
    try:
        files = _run(server, built.topology, logs=(str(built.logs),))
        load(tmp_path / "ch", built.logs)
        ch = _run(server, built.topology, clickhouse=ClickHouseOptions(url=f"chdb:{tmp_path / 'ch'}"))
    finally:
        server.stop()
    assert sources_json(files)["logs"]["retimed"] > 0
    assert sources_json(ch)["logs"]["retimed"] == sources_json(files)["logs"]["retimed"]
    assert {round(c["offset_seconds"]) for c in sources_json(ch)["logs"]["clock_skew"]} == {3600}
    assert _answer(ch) == _answer(files)


def test_clickhouse_schema_prints_ddl_that_runs(tmp_path: Path) -> None:
    """`obsgap clickhouse-schema` prints the profile for the user named (quoted as an identifier), the table and
    the view, with the flags' formats; its statements run in ClickHouse; a bad flag is one clear line, exit 2."""
    from chdb import session
    from click.testing import CliRunner

    from obsgap.cli import main

    out = CliRunner().invoke(main, ["clickhouse-schema", "--insert-user", "otel`x", "--ttl-days", "7",
                                    "--access-log-format", '{"start_time": "%START_TIME%", "code": '
                                                           '"%RESPONSE_CODE%"}'])
    assert out.exit_code == 0, out.output
    assert "SETTINGS short_circuit_function_evaluation = 'disable' TO `otel\\`x`;" in out.output
    assert "INTERVAL 7 DAY" in out.output and "'start_time'" in out.output
    s = session.Session(str(tmp_path / "ch"))
    s.query(DDL.read_text())
    for statement in out.output.split(";\n"):
        body = "\n".join(x for x in statement.splitlines() if not x.startswith(("--", "CREATE SETTINGS"))).strip()
        if body:
            s.query(body)
    made = s.query("SELECT name, engine FROM system.tables WHERE name LIKE 'obsgap_requests%' ORDER BY name", "CSV")
    s.close()
    assert str(made).split() == ['"obsgap_requests","MergeTree"', '"obsgap_requests_mv","MaterializedView"']
    bad = CliRunner().invoke(main, ["clickhouse-schema", "--clickhouse-attribute", "pod"])
    assert bad.exit_code == 2 and "--clickhouse-attribute 'pod'" in bad.output
