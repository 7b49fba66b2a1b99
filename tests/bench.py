"""`make bench`: log ingestion throughput against the floor of reading the bytes, and peak memory; with
--scale, the whole product on a large mesh (default 2,000 services, 6,000 pods, 24 h).

Usage: python tests/bench.py [--lines N] [--files F] [--workers W]
       python tests/bench.py --scale [--services 2000] [--hours 24] [--keep DIR]
Writes N mixed CRI lines (half application JSON, half Istio TEXT access logs) in kubelet's layout (per
container three gzipped rotations, one uncompressed rotation, the live file) into a temporary folder, then
measures (best of two, alternating, after a pass that warms the cache):
  floor    reading every byte (gunzipping .gz) and counting newlines, single process
  obsgap   read_logs(): parse, normalize, write the Parquet table (all cores); then once more with the DuckDB
           summaries the checks use
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obsgap.model import Topology
from obsgap.sources.logs.discover import discover
from obsgap.sources.logs.summary import summarize
from obsgap.sources.logs.table import read_logs
from obsgap.topology import TopologyIndex

ENVOY = ('{ts} stdout F [{ets}] "GET /api/v1/items/{i} HTTP/1.1" 200 - via_upstream - "-" 0 1350 {d} {d} "-" '
         '"python-requests/2.31" "9f0c2d4e-{i:08d}" "catalog.shop.svc.cluster.local:8080" "10.44.0.5:8080" '
         "inbound|8080|| 127.0.0.6:40001 10.44.0.5:8080 10.44.0.3:46520 - default\n")


def _app(ts: str, i: int) -> str:
    return ts + " stdout F " + json.dumps({"ts": ts, "level": "info", "msg": "request", "method": "GET",
                                            "path": f"/api/v1/items/{i}", "status": 200, "duration_ms": 12.5,
                                            "port": 8080, "trace_id": f"{i:032x}"}) + "\n"


ROTATION = ("0.log.20261124-000000.gz", "0.log.20261124-060000.gz", "0.log.20261124-120000.gz",
            "0.log.20261124-180000", "0.log")  # kubelet's containerLogMaxFiles=5: older rotations compressed


ISTIO_JSON = ('{{"authority":"catalog.shop.svc.cluster.local:8080","bytes_received":0,"bytes_sent":1350,'
              '"connection_termination_details":null,"downstream_local_address":"10.44.0.5:8080",'
              '"downstream_remote_address":"10.44.0.3:46520","duration":{d},"method":"GET",'
              '"path":"/api/v1/items/{i}","protocol":"HTTP/1.1","request_id":"9f0c2d4e-{i:08d}",'
              '"requested_server_name":null,"response_code":200,"response_code_details":"via_upstream",'
              '"response_flags":"-","route_name":"default","start_time":"{ets}","upstream_cluster":"inbound|8080||",'
              '"upstream_host":"10.44.0.5:8080","upstream_local_address":"127.0.0.6:40001","upstream_service_time":"{d}",'
              '"upstream_transport_failure_reason":null,"user_agent":"python-requests/2.31","x_forwarded_for":null}}')
"""Istio 1.9+'s JSON encoding (accessLogEncoding: JSON), its keys as istio.io's sample lines show them"""


def generate(root: Path, lines: int, files: int, access_json: bool = False) -> int:
    """`files` files in kubelet's layout: per container, three gzipped rotations, one not yet compressed and
    the live file; containers alternate between an application (JSON) and its sidecar (Istio TEXT, or Istio's
    JSON encoding with `access_json`)."""
    per_file = lines // files
    total = 0
    for f in range(files):
        c = f // len(ROTATION)
        pod = f"shop_catalog-7d9f8b6c5-p{c:04d}_0b4c3f8e-1111-2222-3333-{c:012d}"
        container = "istio-proxy" if c % 2 else "catalog"
        folder = root / "pods" / pod / container
        folder.mkdir(parents=True, exist_ok=True)
        name = ROTATION[f % len(ROTATION)]
        path = folder / name
        chunks = []
        for i in range(per_file):
            sec = i * 86400 // per_file
            ts = f"2026-11-24T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.{i % 1000:03d}000000Z"
            if container == "catalog":
                chunks.append(_app(ts, i))
            elif access_json:
                chunks.append(f"{ts} stdout F " + ISTIO_JSON.format(ets=ts[:23] + "Z", i=i, d=i % 90) + "\n")
            else:
                chunks.append(ENVOY.format(ts=ts, ets=ts[:23] + "Z", i=i, d=i % 90))
        data = "".join(chunks).encode()
        path.write_bytes(gzip.compress(data, compresslevel=6) if name.endswith(".gz") else data)
        total += per_file
    return total


def generate_large(root: Path, lines: int, files: int) -> int:
    """A few large plain files, as Docker's json-file driver and `kubectl logs POD > POD.log` write them: half
    json-file records, half bare messages, alternating application JSON and Istio TEXT access logs."""
    per_file = lines // files
    root.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        access = f % 2 == 1
        docker = f % 4 < 2
        name = f"catalog-7d9f8b6c5-p{f:04d}{'-istio-proxy' if access else ''}{'-json.log' if docker else '.log'}"
        with (root / name).open("w") as out:
            for i in range(per_file):
                sec = i * 86400 // per_file
                ts = f"2026-11-24T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.{i % 1000:03d}000000Z"
                cri = ENVOY.format(ts=ts, ets=ts[:23] + "Z", i=i, d=i % 90) if access else _app(ts, i)
                msg = cri.split(" F ", 1)[1]
                out.write(json.dumps({"log": msg, "stream": "stdout", "time": ts}) + "\n" if docker else msg)
    return per_file * files


def floor(root: Path) -> tuple[float, int, int]:
    start = time.perf_counter()
    count = size = 0
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as f:
            while chunk := f.read(1 << 20):
                count += chunk.count(b"\n")
                size += len(chunk)
    return time.perf_counter() - start, count, size


def logs_vs_floor(root: Path, workers: int | None, label: str = "", repeats: int = 2) -> tuple[float, float]:
    """Best of `repeats` for the floor and for read_logs, alternating, after one pass that warms the page cache:
    on a shared VM single runs vary by a third."""
    floor(root)
    floors, parses = [], []
    for _ in range(repeats):
        f_s, f_lines, size = floor(root)
        floors.append(f_s)
        t = time.perf_counter()
        table = read_logs(discover([str(root)]), None, None, workers=workers)
        parses.append(time.perf_counter() - t)
        table.close()
    f_s, parse_s = min(floors), min(parses)
    st = table.stats
    print(f"{label}floor (read + gunzip + count newlines, 1 process) {f_s:.2f}s = {f_lines / f_s / 1e6:.2f}M lines/s "
          f"({size / f_s / 1e6:.0f} MB/s); obsgap read_logs ({workers or os.cpu_count()} workers) {parse_s:.2f}s = "
          f"{f_lines / parse_s / 1e6:.2f}M lines/s: {parse_s / f_s:.2f}x the floor "
          f"(best of {repeats}; {st.columnar_lines / max(st.lines, 1):.0%} of lines read columnar)")
    return parse_s, f_s


_PIECES: list[tuple[str, object]] = []  # the engine bound's prepared inputs, shared with its forked workers


def _engine_pass(i: int) -> None:
    """The least a columnar reader built on this machine's engines does with one piece: each JSON level parsed
    once by Arrow, or each access log matched once by RE2 (Arrow's regex). No framing, no fields, no output."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pa_json

    from obsgap.sources.logs.envoy_text import CRI_ENVOY, ENVOY_TEXT

    kind, value = _PIECES[i]
    one_thread = pa_json.ReadOptions(use_threads=False, block_size=64 << 20)
    if kind == "docker":
        log = pa_json.read_json(pa.BufferReader(value), read_options=one_thread).column("log").combine_chunks()
        kind, value = ("json", log.buffers()[2]) if log[0].as_py().startswith("{") else ("bare-envoy", log)
    if kind == "json":
        pa_json.read_json(pa.BufferReader(value), read_options=one_thread)
    else:
        pc.match_substring_regex(value, CRI_ENVOY if kind == "cri-envoy" else ENVOY_TEXT.pattern)


def engine_bound(root: Path, workers: int | None, floor_s: float) -> None:
    """How fast any reader could be that still parses every JSON line and matches every access log once with the
    engines here (pieces of 32 MB, inputs prepared beforehand), in one process and in the workers read_logs
    uses: what the goal of a few times the newline-count floor is up against on this machine."""
    import multiprocessing
    import re

    import numpy as np
    import pyarrow as pa

    def lines(data: bytes) -> pa.Array:
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        return pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(np.r_[0, ends + 1].astype(np.int64)),
                                                pa.py_buffer(data))

    _PIECES.clear()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        while data:
            cut = data.rfind(b"\n", 0, 32 << 20) + 1 or len(data)
            piece, data = data[:cut], data[cut:]
            if piece.startswith(b'{"log"'):
                _PIECES.append(("docker", piece))
            elif piece.startswith(b"{"):
                _PIECES.append(("json", piece))
            elif b" F {" in piece[:200]:  # CRI prefixes blanked, as the reader does before Arrow reads the JSON
                _PIECES.append(("json", re.sub(rb"(?m)^[^ ]+ std(?:out|err) F ", lambda m: b" " * len(m[0]), piece)))
            else:
                _PIECES.append(("cri-envoy" if b" F [" in piece[:200] else "bare-envoy", lines(piece)))
    t = time.perf_counter()
    for i in range(len(_PIECES)):
        _engine_pass(i)
    one = time.perf_counter() - t
    workers = workers or os.cpu_count() or 1
    t = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_engine_pass, range(len(_PIECES)))
    many = time.perf_counter() - t
    _PIECES.clear()
    print(f"engine bound (one Arrow JSON parse per JSON level or one RE2 match per access log, nothing else): "
          f"{one:.2f}s in 1 process = {one / floor_s:.1f}x the floor; {many:.2f}s in {workers} = "
          f"{many / floor_s:.1f}x the floor")


def tokenizers(root: Path) -> None:
    """Issue 25's question for the large layout: would DuckDB as the tokenizer make the columnar reader faster?
    Per kind of file, one process, one thread, best of three, on the bytes as the reader holds them (CRI lines,
    with the newline count of the same bytes as the floor): DuckDB's CSV reader (25 columns of CRI and Istio TEXT)
    against the RE2 match and quote split that select and cut them today, and all of envoy_columns; DuckDB's JSON
    reader against Arrow's on the application JSON and on Docker's records."""
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pa_json

    from obsgap.sources.logs.batch_lines import BatchFile, json_only, read_lines
    from obsgap.sources.logs.envoy_text import CRI_ENVOY, envoy_columns
    from obsgap.sources.logs.intake import clean
    from obsgap.sources.logs.json_columns import read_json_lines
    from obsgap.sources.logs.task import FileStats

    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute("SET enable_progress_bar = false")

    def best(fn: Any) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    def duck(data: bytes, reader: str) -> float:
        fd = os.memfd_create("lines")
        os.write(fd, data)
        try:
            query = "SELECT * FROM " + reader.replace("PATH", f"/proc/self/fd/{fd}")
            return best(lambda: con.sql(query).to_arrow_table())
        finally:
            os.close(fd)

    def report(label: str, data: bytes, figures: dict[str, float]) -> None:
        floor_s = best(lambda: data.count(b"\n"))
        n = data.count(b"\n")
        print(f"{label}: {n:,} lines; " + ", ".join(
            f"{name} {s:.2f}s ({s / floor_s:.0f}x)" for name, s in figures.items()) + f" (floor {floor_s:.3f}s)")

    files = sorted(p for p in root.iterdir() if p.is_file())
    text_file = next(f for f in files if "istio-proxy" in f.name and not f.name.endswith("-json.log"))
    app_file = next(f for f in files if "istio-proxy" not in f.name and not f.name.endswith("-json.log"))
    docker_file = next(f for f in files if "istio-proxy" in f.name and f.name.endswith("-json.log"))
    cleaned = clean(text_file.read_bytes())
    assert cleaned is not None
    data = cleaned[0]
    lines = read_lines([BatchFile(text_file, data, FileStats(str(text_file)), 0, "", False, None)]).text
    columns = {f"c{i}": "VARCHAR" for i in range(25)}
    report("Istio TEXT, as CRI lines", data, {
        "DuckDB read_csv": duck(data, "read_csv('PATH', delim=' ', quote='\"', escape='\"', header=false, "
                                      f"columns={columns}, auto_detect=false, strict_mode=true, ignore_errors=true)"),
        "RE2 match + quote split": best(lambda: (pc.match_substring_regex(lines, CRI_ENVOY),
                                                 pc.split_pattern(lines, '"'))),
        "envoy_columns (all fields)": best(lambda: envoy_columns(lines))})
    cleaned = clean(app_file.read_bytes())
    assert cleaned is not None
    app = read_lines([BatchFile(app_file, cleaned[0], FileStats(str(app_file)), 0, "", False, None)])
    blanked, is_json = json_only(app)
    report("application JSON, as CRI lines", cleaned[0], {
        # every line's keys (sample_size=-1): with the default sample, keys first seen later are dropped unsaid
        "DuckDB read_json": duck(blanked.tobytes(), "read_json('PATH', format='newline_delimited', "
                                                    "sample_size=-1, dateformat='-', timestampformat='-')"),
        "DuckDB read_json, keys from the first 20,480 lines": duck(
            blanked.tobytes(), "read_json('PATH', format='newline_delimited', dateformat='-', timestampformat='-')"),
        "Arrow read_json": best(lambda: read_json_lines(pa.py_buffer(blanked), int(np.count_nonzero(is_json))))})
    raw = docker_file.read_bytes()
    schema = pa.schema([(k, pa.string()) for k in ("log", "stream", "time")])
    report("Docker json-file records", raw, {
        "DuckDB read_json": duck(raw, "read_json('PATH', format='newline_delimited', "
                                      "columns={'log': 'VARCHAR', 'stream': 'VARCHAR', 'time': 'VARCHAR'})"),
        "Arrow read_json": best(lambda: pa_json.read_json(pa.BufferReader(raw), read_options=pa_json.ReadOptions(
            use_threads=False, block_size=64 << 20), parse_options=pa_json.ParseOptions(explicit_schema=schema)))})


RSS_WRAPPER = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print("cpu_s", usage.ru_utime + usage.ru_stime, file=sys.stderr)
print("maxrss_kib", usage.ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


def _timed(label: str, fn, *a, **kw):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*a, **kw)
    print(f"{label:<44} {time.perf_counter() - t:8.1f}s")
    return out


def side_by_side(cmd: list[str], commit: str, rounds: int, root: Path) -> None:
    """This working tree and `commit` (a git worktree of it) run in turn on the same mesh and Prometheus, the logs
    read once beforehand and the order swapped every round: this VM's speed drifts by a third within minutes, so
    only alternated runs compare, and whichever ran first on a cold page cache lost seconds."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    other = Path(tempfile.mkdtemp(prefix="obsgap-against-"))
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(other), commit], check=True,
                   capture_output=True)
    try:
        floor(root / "mesh" / "logs")  # the logs in the page cache before the first run, not during it
        for r in range(rounds):
            pair = (("working tree", repo), (commit, other))
            for name, tree in pair if r % 2 == 0 else pair[::-1]:  # neither always goes first
                out = root / f"report-{'this' if tree == repo else 'other'}"
                run = [*cmd[:cmd.index("--out") + 1], str(out), *cmd[cmd.index("--out") + 2:]]
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *run], capture_output=True, text=True,
                                      check=False, cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)))
                wall = time.perf_counter() - t
                tail = dict(line.split() for line in proc.stderr.strip().splitlines()[-2:])
                doc = json.loads((out / "findings.json").read_text())
                prom = doc["sources"]["prometheus"]
                peak = max((prom.get("peak_samples") or {}).values(), default=0)
                print(f"round {r} {name:<14} {wall:6.1f}s  CPU {float(tail['cpu_s']):6.1f}s  peak RSS "
                      f"{int(tail['maxrss_kib']) / 1024:.0f} MiB  exit {proc.returncode}  {prom['queries']} queries, "
                      f"peak {peak:,} samples  {len(doc['findings'])} findings", flush=True)
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(other)], check=False,
                       capture_output=True)


def scale(args: argparse.Namespace) -> None:
    import datetime as dt
    import subprocess

    from obsgap.scenario.large import large_spec
    from obsgap.scenario.simulate import build
    from obsgap.testbed.promserver import serve_openmetrics

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="obsgap-scale-"))
    stamp = root / "end.txt"
    reuse = args.reuse and stamp.exists() and (root / "mesh" / "tsdb").is_dir()
    end = (dt.datetime.fromisoformat(stamp.read_text()) if reuse
           else dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0))
    spec = large_spec(end, services=args.services, hours=args.hours, witnesses=args.witnesses)
    if reuse:
        from obsgap.scenario.simulate import BuiltScenario, Truth

        mesh = root / "mesh"
        built = BuiltScenario(mesh, spec, mesh / "kube" / "topology.json", mesh / "logs", mesh / "metrics.om", Truth())
        print(f"reusing the mesh generated in {mesh}")
    else:
        built = _timed(f"simulate {args.services} services, {args.hours:g} h", build, spec, root / "mesh",
                       keep_latencies=False)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(end.isoformat())
    files = [p for p in built.logs.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(f"  {len({p for p in built.topology.read_text().split('podIP')}) - 1:,} pods, {len(files):,} log files "
          f"({size / 1e9:.2f} GB on disk), {'(reused)' if reuse else f'{built.truth.log_lines:,}'} log lines, "
          f"{built.metrics.stat().st_size / 1e9:.2f} GB OpenMetrics")
    if reuse:
        from obsgap.testbed.promserver import PrometheusServer

        server = PrometheusServer(root / "mesh" / "tsdb").start()
    else:
        server = _timed("promtool backfill + start Prometheus", serve_openmetrics, built.metrics, root / "mesh")
    try:
        out = root / "report"
        cmd = [sys.executable, "-m", "obsgap", "report", "--prometheus-url", server.url, "--kube-snapshot",
               str(built.topology), "--logs", str(built.logs), "--start", spec.start.isoformat(), "--end",
               spec.end.isoformat(), "--out", str(out), "--fail-on", "never", "-q"]
        if args.against:
            side_by_side(cmd, args.against, args.rounds, root)
            return
        # a fresh wrapper process, so the figure is obsgap's (and its workers'), not promtool's or Prometheus'
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *cmd], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t
        rss_mib = int(proc.stderr.strip().splitlines()[-1].split()[-1]) / 1024
        if proc.returncode not in (0, 1):
            print(proc.stderr[-2000:])
        print(f"{'obsgap report end to end':<44} {wall:8.1f}s  peak RSS {rss_mib:.0f} MiB (largest obsgap "
              f"process)  exit {proc.returncode}")
    finally:
        server.stop()
    doc = json.loads((out / "findings.json").read_text())
    prom = doc["sources"]["prometheus"]
    peak = prom.get("peak_samples") or {}
    print(f"  {prom['queries']} PromQL queries; peak samples per query: max {max(peak.values(), default=0):,} "
          f"({', '.join(f'{k}={v:,}' for k, v in sorted(peak.items())[:6])})")
    print(f"  {len(doc['findings'])} findings, {len(doc['coverage'])} coverage rows, logs: "
          f"{doc['sources']['logs']['lines']:,} lines")
    for w in prom.get("witnesses") or ():
        print(f"  witness {w['witness']}: {w['pods']:,} pods")
    html = out / "report.html"
    print(f"  report.html {html.stat().st_size / 1e6:.1f} MB, findings.json "
          f"{(out / 'findings.json').stat().st_size / 1e6:.1f} MB")
    chrome = shutil.which("chromium")
    if chrome:
        base = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", f"--user-data-dir={root / 'chrome'}", "--dump-dom"]
        blank = root / "blank.html"
        blank.write_text("<!doctype html><title>x</title>")
        t = time.perf_counter()
        subprocess.run([*base, blank.as_uri()], capture_output=True, check=False)
        t_blank = time.perf_counter() - t
        t = time.perf_counter()
        dom = subprocess.run([*base, html.as_uri()], capture_output=True, text=True, check=False).stdout
        t_report = time.perf_counter() - t
        print(f"  headless Chromium: open + run scripts {t_report:.2f}s (a blank page takes {t_blank:.2f}s: "
              f"{t_report - t_blank:.2f}s for the report); rendered={'data-rendered' in dom}")
    logs_vs_floor(built.logs, None, label="  logs alone: ")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def clickhouse(root: Path, lines: int) -> None:
    """The same lines loaded into otel_logs (chDB) as the Collector writes them, read with the aggregation pushed
    down, against reading the files: time and rows returned."""
    from chdb import session

    from obsgap.intervals import time_step_ms
    from obsgap.sources.logs.clickhouse import ClickHouseOptions, ClickHouseTable, build_relation, connect
    from obsgap.sources.logs.clickhouse_schema import schema_ddl, table_fingerprint
    from obsgap.sources.logs.summary import agent_paths

    data = root.parent / f"{root.name}-otel.jsonl"
    with data.open("w") as out:
        for f in sorted((root / "pods").rglob("*")):
            if not f.is_file():
                continue
            ns, pod, _uid = f.parent.parent.name.split("_")
            opener = gzip.open if f.name.endswith(".gz") else open
            with opener(f, "rt") as fh:
                for raw in fh:
                    ts, stream, _flag, msg = raw.rstrip("\n").split(" ", 3)
                    out.write(json.dumps({"Timestamp": ts.replace("T", " ").rstrip("Z"), "Body": msg,
                                          "ResourceAttributes": {"k8s.namespace.name": ns, "k8s.pod.name": pod,
                                                                 "k8s.container.name": f.parent.name},
                                          "LogAttributes": {"log.iostream": stream}}) + "\n")
    start_ms, end_ms = 1795478400000, 1795478400000 + 86_400_000  # 2026-11-24, the generated day
    index = TopologyIndex(Topology.empty())

    def load(store: Path, view: bool) -> float:
        s = session.Session(str(store))
        s.query((Path(__file__).parent / "data" / "clickhouse" / "otel_logs.sql").read_text())
        if view:  # obsgap clickhouse-schema's statements, and the setting its profile gives the inserting user
            for statement in schema_ddl("otel_logs", "obsgap_requests", (), None).split(";\n"):
                body = "\n".join(x for x in statement.splitlines() if not x.startswith("--")).strip()
                if body:
                    s.query(body)
            s.query("SET short_circuit_function_evaluation = 'disable'")
        t = time.perf_counter()
        s.query(f"INSERT INTO otel_logs (Timestamp, Body, ResourceAttributes, LogAttributes) SELECT "
                f"parseDateTime64BestEffort(Timestamp, 9, 'UTC'), Body, ResourceAttributes, LogAttributes FROM "
                f"file('{data}', JSONEachRow, 'Timestamp String, Body String, ResourceAttributes Map(String, "
                f"String), LogAttributes Map(String, String)')")
        s.close()
        return time.perf_counter() - t

    def read(store: Path, table_name: str, lo: int, hi: int) -> tuple[float, ClickHouseTable, Any]:
        opts = ClickHouseOptions(url=f"chdb:{store}", table=table_name)
        t = time.perf_counter()
        conn = connect(opts)
        parsed = table_fingerprint(conn, table_name) is not None
        table = ClickHouseTable(conn, build_relation(opts, lo, hi, (), None, parsed=parsed), lo, hi, (),
                                agent_paths(index), time_step_ms(lo, hi))
        ev, _ = summarize(table, index, lo, hi)
        table.close()
        return time.perf_counter() - t, table, ev

    raw_store, view_store = root.parent / f"{root.name}-chdb", root.parent / f"{root.name}-chdb-view"
    raw_load, view_load = load(raw_store, False), load(view_store, True)
    print(f"loaded {lines:,} lines into otel_logs in {raw_load:.1f}s; with obsgap clickhouse-schema's view "
          f"parsing them at ingest in {view_load:.1f}s")
    t = time.perf_counter()
    files = read_logs(discover([str(root)]), start_ms, end_ms)
    summarize(files, index, start_ms, end_ms)
    files.close()
    file_s = time.perf_counter() - t
    for label, store, name in (("clickhouse raw otel_logs", raw_store, "otel_logs"),
                               ("clickhouse parsed at ingest", view_store, "obsgap_requests")):
        ch_s, table, ev = read(store, name, start_ms, end_ms)
        empty_s, _, _ = read(store, name, 0, 1000)  # the fixed cost: the same query over a window with no line
        print(f"{label} (chDB, in-process): {ch_s:.1f}s for {table.stats.lines:,} lines "
              f"({table.stats.requests:,} requests), {len(table.sent)} queries taking {table.seconds} s, "
              f"{table.rows_returned:,} rows returned; inbound rows {int(ev.inbound['requests'].sum()):,}; the same "
              f"query over an empty window (analysis, whatever the lines): {empty_s:.1f}s; "
              f"{ch_s / file_s:.1f}x the files")
    print(f"the files read and summarised: {file_s:.1f}s")
    for store in (raw_store, view_store):
        shutil.rmtree(store, ignore_errors=True)
    data.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--files", type=int, default=80)
    ap.add_argument("--layout", choices=["kubelet", "istio-json", "large"], default="kubelet",
                    help="kubelet: many small rotated CRI files; istio-json: the same, the sidecars logging in "
                         "Istio's JSON encoding; large: a few big plain files (json-file, kubectl)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--tokenizers", action="store_true",
                    help="--layout large: DuckDB's CSV and JSON readers against the RE2 and Arrow kernels, per kind")
    ap.add_argument("--clickhouse", action="store_true",
                    help="also load the lines into ClickHouse (chDB) and read them with the aggregation pushed down")
    ap.add_argument("--services", type=int, default=2000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--witnesses", action="store_true",
                    help="--scale: every service exports its own request metric and OBI watches every node")
    ap.add_argument("--keep", help="keep the generated mesh in this folder")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse a mesh generated there before")
    ap.add_argument("--against", metavar="COMMIT",
                    help="--scale: run this working tree and COMMIT in turn on the same mesh, --rounds times")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.tokenizers and args.layout != "large":
        ap.error("--tokenizers reads the large layout's files: add --layout large")
    if args.scale:
        scale(args)
        return
    root = Path(tempfile.mkdtemp(prefix="obsgap-bench-"))
    try:
        t = time.perf_counter()
        n = (generate_large(root, args.lines, args.files) if args.layout == "large"
             else generate(root, args.lines, args.files, access_json=args.layout == "istio-json"))
        print(f"generated {n:,} lines in {time.perf_counter() - t:.1f}s under {root}")
        if args.clickhouse:
            clickhouse(root, n)
            return
        if args.tokenizers:
            tokenizers(root)
            return
        floor_s = logs_vs_floor(root, args.workers)[1]
        t = time.perf_counter()
        table = read_logs(discover([str(root)]), None, None, workers=args.workers)
        ev, _ = summarize(table, TopologyIndex(Topology.empty()))
        total_s = time.perf_counter() - t
        table.close()
        rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rss_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        assert table.stats.requests == n, (table.stats.requests, n)  # every line read as a request
        print(f"obsgap read_logs + DuckDB summaries: {total_s:.2f}s = {n / total_s / 1e6:.2f}M lines/s")
        print(f"peak RSS: main {rss_self:.0f} MiB, largest worker {rss_kids:.0f} MiB; "
              f"inbound rows {int(ev.inbound['requests'].sum()):,}")
        engine_bound(root, args.workers, floor_s)  # last: its prepared inputs would count in the peak RSS above
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
