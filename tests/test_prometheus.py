"""The Prometheus source: query files, binding, real-Prometheus answers, auth, retries, failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
import pytest

from obsgap.errors import InputError
from obsgap.model import PanelQuery
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.metrics import SAMPLED_TARGETS, scrape_interval
from obsgap.sources.prometheus import PrometheusOptions, PrometheusSource
from obsgap.sources.queries import FamilyScope, all_queries, load_query, namespace_matcher
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import sources_json


def test_every_query_file_has_a_header_and_binds() -> None:
    queries = all_queries()
    assert {q.name for q in queries} >= {"mesh_requests", "mesh_tcp_connections", "passthrough_requests",
                                         "scrape_targets", "scrape_interval"}
    family = FamilyScope("x_total", ("k8s_namespace_name", "k8s_pod_name"), "k8s_namespace_name",
                         (("k8s_pod_name", "!=", ""), ("route", "!~", 'a"b\\')))
    for q in queries:
        assert q.returns and q.scope
        bound = q.bind(3600, ("shop",), bucket_series="x_bucket", family=family)
        assert "$" not in bound
        if q.name == "scrape_interval":  # an hour on a grid of 150 s steps: from the first step after its start
            assert "[3525000ms:150s]" in bound and "[3449999ms]" in bound
        else:
            assert "[3600s]" in bound, q.name
        scope = "k8s_namespace_name" if q.scope == "family" else q.scope
        assert (f'{scope}=~"shop"' in bound) is (q.scope != "none"), q.name
    witness = next(q for q in queries if q.name == "witness_requests").bind(3600, (), family=family)
    assert witness == ('sum by (k8s_namespace_name, k8s_pod_name) (\n  increase(x_total{k8s_pod_name!="", '
                       'route!~"a\\"b\\\\"}[3600s])\n)')
    with pytest.raises(InputError):
        FamilyScope("x_total", ('a") or vector(1) #',), None).selector(())


def test_namespace_values_cannot_inject_promql() -> None:
    assert namespace_matcher("namespace", ()) == 'namespace=~".*"'
    assert namespace_matcher("namespace", ("b", "a", "a")) == 'namespace=~"a|b"'
    with pytest.raises(InputError):
        namespace_matcher("namespace", ('x"} or vector(1) #',))


@pytest.fixture(scope="module")
def small_prom(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    spec = ScenarioSpec("p", (("shop", True),), (ServiceSpec("shop", "a"), ServiceSpec("shop", "b")),
                        (FlowSpec("shop/a", "shop/b", 8080, 2.0), FlowSpec("external", "shop/a", 8080, 1.0)),
                        end=datetime(2026, 11, 24, tzinfo=UTC), hours=1, scrape_interval_s=30)
    tmp = tmp_path_factory.mktemp("prom")
    built = build(spec, tmp / "p")
    server = serve_openmetrics(built.metrics, tmp / "p")
    yield spec, built, server
    server.stop()


def test_real_prometheus_answers_match_the_simulated_truth(small_prom) -> None:  # type: ignore[no-untyped-def]
    spec, built, server = small_prom
    src = PrometheusSource(PrometheusOptions(url=server.url))
    res = src.query("mesh_requests", 3600, spec.end)
    assert res.error is None and not res.frame.empty
    dest = res.frame[res.frame["reporter"] == "destination"]
    by_svc = dest.groupby("destination_service_name")["value"].sum().round().astype(int).to_dict()
    assert by_svc == {"a": built.truth.mesh_destination_requests["shop/a"],
                      "b": built.truth.mesh_destination_requests["shop/b"]}
    # per-pod split is kept (scrape-target labels)
    assert set(dest["pod"]) == {p for p in dest["pod"] if p.startswith(("a-", "b-"))} and len(set(dest["pod"])) == 4
    up = src.query("scrape_targets", 3600, spec.end)
    assert len(up.frame) == 4 and set(up.frame["job"]) == {"kubernetes-pods"}
    _, interval = scrape_interval(src, 3600, spec.end, (), up.frame)
    assert interval == pytest.approx(30, rel=0.02)
    assert src.targets() == [] and src.status() == "ok" and src.queries_issued == 3
    # measured from sample spacing: the same over a window that the data fills only in part
    for window, end in ((7200, spec.end + timedelta(hours=1)), (3 * 3600, spec.end + timedelta(hours=2)),
                        (1800, spec.end)):
        assert scrape_interval(src, window, end, (), up.frame)[1] == pytest.approx(30, rel=0.01), (window, end)
    assert src.query_samples["mesh_requests"] > 0


def _up_series(path: Path, end: datetime, jobs: dict[str, tuple[int, int]]) -> None:
    """OpenMetrics `up` series for an hour before `end`: per job, (targets, scrape interval in seconds)."""
    lines = ["# TYPE up gauge"]
    start = int(end.timestamp()) - 3600
    for j, (job, (targets, every)) in enumerate(jobs.items()):
        for t in range(targets):
            for ts in range(start, start + 3600, every):
                lines.append(f'up{{job="{job}",instance="10.{j}.{t // 250}.{t % 250}:15020",namespace="shop"}} 1 {ts}')
    path.write_text("\n".join(sorted(lines[1:], key=lambda x: int(x.rsplit(" ", 1)[1]))).join(
        ["# TYPE up gauge\n", "\n# EOF\n"]))


@pytest.mark.parametrize(("jobs", "expected"), [
    ({"kubernetes-pods": (40, 15), "node-exporter": (3, 60), "kube-state": (2, 30)}, 15),
    ({"kubernetes-pods": (4, 15), "node-exporter": (30, 60), "kube-state": (2, 30)}, 60),
])
def test_the_scrape_interval_reads_a_few_targets_per_job_weighted_by_their_number(
        tmp_path: Path, prometheus_available: None, jobs: dict[str, tuple[int, int]], expected: int) -> None:
    """Prometheus scrapes a job's targets at the job's interval: the median over every `up` series is read from
    five of each job's targets, the jobs weighted by how many targets they have; the query names those series,
    so what it reads does not grow with the targets. Without the targets' rows, every series is read. A series
    present throughout reads its interval exactly, whatever the window and its end."""
    end = datetime(2026, 11, 24, tzinfo=UTC)
    _up_series(tmp_path / "up.om", end, jobs)
    server = serve_openmetrics(tmp_path / "up.om", tmp_path)
    try:
        src = PrometheusSource(PrometheusOptions(url=server.url))
        targets = src.query("scrape_targets", 3600, end)
        assert len(targets.frame) == sum(n for n, _ in jobs.values())
        res, interval = scrape_interval(src, 3600, end, (), targets.frame)
        assert interval == pytest.approx(expected, rel=0.002)
        for window, before in ((1800, timedelta(minutes=17, seconds=13)), (600, timedelta(minutes=7, seconds=1))):
            # evaluated off the subquery's grid, the grid's first step fell up to a step after the window's start
            # and the interval read up to 1/24 short (15 s as 14.4)
            off_grid = scrape_interval(src, window, end - before, (), targets.frame)[1]
            assert off_grid == pytest.approx(expected, rel=0.002)
        series = lambda r: len(r.frame[["job", "instance"]].drop_duplicates())  # noqa: E731 (a row per slice)
        assert series(res) == sum(min(n, SAMPLED_TARGETS) for n, _ in jobs.values())  # the sampled series only
        everything, unsampled = scrape_interval(src, 3600, end, (), None)
        assert series(everything) == len(targets.frame) and unsampled == pytest.approx(expected, rel=0.002)
        unnamed = targets.frame.assign(instance=None)  # rows that name no target: every series, not none
        assert series(scrape_interval(src, 3600, end, (), unnamed)[0]) == len(targets.frame)
    finally:
        server.stop()


def test_the_scrape_interval_reads_as_many_samples_whatever_the_window(tmp_path: Path,
                                                                       prometheus_available: None) -> None:
    """Four slices of an hour spread over the window: the samples read do not grow with the window (a 30-day SLO
    review reads as many as a night). Where no slice holds the data (a few hours of a long window), the whole window
    is read, and the interval is still measured."""
    end = datetime(2026, 11, 24, tzinfo=UTC)
    day = 86_400
    start = int(end.timestamp()) - 2 * day
    spans = {"pods": (start, start + 2 * day, 15), "sparse": (start + 28 * 3600, start + 31 * 3600, 30),
             "gappy": (start, start + 2 * day, 15)}
    gap = range(start + 2 * day - 40 * 60, start + 2 * day - 20 * 60)  # Prometheus down, in the last slice
    rows = sorted((ts, f'up{{job="{job}",instance="10.0.0.{t}:15020",namespace="shop"}} 1 {ts}')
                  for job, (lo, hi, every) in spans.items() for t in range(3) for ts in range(lo, hi, every)
                  if job != "gappy" or ts not in gap)
    (tmp_path / "up.om").write_text("# TYPE up gauge\n" + "\n".join(r for _, r in rows) + "\n# EOF\n")
    server = serve_openmetrics(tmp_path / "up.om", tmp_path)

    class Counting(PrometheusSource):
        read: list[int] = []

        def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
            body = super()._get(path, params)
            self.read.append(int(body["data"]["stats"]["samples"]["totalQueryableSamples"]))
            return body

    try:
        src = Counting(PrometheusOptions(url=server.url))
        pods = pd.DataFrame({"job": ["pods"] * 3, "instance": [f"10.0.0.{t}:15020" for t in range(3)]})
        read = {}
        for window in (6 * 3600, 47 * 3600):
            Counting.read = []
            _, interval = scrape_interval(src, window, end - timedelta(minutes=3), (), pods)
            assert interval == 15.0, window
            read[window] = Counting.read
        assert len(read[6 * 3600]) == 1 and read[6 * 3600] == read[47 * 3600]  # one query, as many samples
        gappy = pd.DataFrame({"job": ["gappy"] * 3, "instance": [f"10.0.0.{t}:15020" for t in range(3)]})
        assert scrape_interval(src, 47 * 3600, end - timedelta(minutes=3), (), gappy)[1] == 15.0  # the gap's slice
        sparse = pd.DataFrame({"job": ["sparse"] * 3, "instance": [f"10.0.0.{t}:15020" for t in range(3)]})
        Counting.read = []
        _, interval = scrape_interval(src, 47 * 3600, end - timedelta(minutes=3), (), sparse)
        assert len(Counting.read) == 2  # no slice held it: the whole window read, on the slices' grid
        assert interval == pytest.approx(30.0, rel=0.01)  # short by the samples before its first step
    finally:
        server.stop()


def test_a_scrape_interval_not_measured_is_reported_unknown(tmp_path: Path, prometheus_available: None) -> None:
    """A window without `up` samples tells no interval: the report says it was not measured (not the 30 s the
    tolerance assumes, as if it had been)."""
    from dataclasses import replace

    from obsgap.evidence import ASSUMED_SCRAPE_INTERVAL_S
    from obsgap.model import Topology, Window
    from obsgap.render.html import render_html
    from obsgap.report.build import build_report
    from obsgap.sources.base import ReadContext
    from obsgap.sources.metrics import MetricsSource
    from obsgap.topology import TopologyIndex
    from tests.test_report import hostile_result

    end = datetime(2026, 11, 24, tzinfo=UTC)
    _up_series(tmp_path / "up.om", end, {"kubernetes-pods": (3, 15)})
    server = serve_openmetrics(tmp_path / "up.om", tmp_path)
    try:
        source = MetricsSource(PrometheusOptions(url=server.url), frozenset({"scrape_interval", "scrape_targets"}))
        for later, expected in ((0, 15.0), (7, None)):
            window = Window(end + timedelta(days=later) - timedelta(hours=1), end + timedelta(days=later))
            read = source.read(ReadContext(window, (), TopologyIndex(Topology.empty()), lambda _m: None))
            assert read.report.scrape_interval_seconds == expected, later
            assert read.evidence is not None
            assert read.evidence.scrape_interval_s == (expected or ASSUMED_SCRAPE_INTERVAL_S)
        page = render_html(build_report(replace(hostile_result(), sources=replace(
            hostile_result().sources, prometheus=replace(read.report, status="ok")))))
        assert "scrape interval not measured (the tolerance assumes 30 s)" in page
    finally:
        server.stop()


def test_query_count_does_not_grow_with_services(small_prom, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from obsgap import engine
    from obsgap.config import RunPlan
    from obsgap.model import Window

    spec, built, server = small_prom
    result = engine.run(RunPlan(window=Window(spec.start, spec.end), out_dir=tmp_path,
                                prometheus=PrometheusOptions(url=server.url),
                                kube_snapshots=(built.topology,))).result
    # one query per query file, plus per histogram family (label-values lookup + buckets + series count):
    # nothing per service
    prom = sources_json(result)["prometheus"]
    fixed = {"mesh_requests", "mesh_tcp_connections", "passthrough_requests", "scrape_targets", "scrape_interval",
             "grpc_failures", "upgraded_requests"}
    assert prom["histogram_families"]["analyzed"] == ["istio_request_duration_milliseconds"]
    # + the label-values lookup, 2 per histogram family, and one range query for the time charts
    assert prom["queries"] == len(fixed) + 1 + 2 * len(prom["histogram_families"]["analyzed"]) + 1


class _Stub(BaseHTTPRequestHandler):
    """Failure injection for what a real Prometheus cannot be made to do on demand."""

    calls: list[dict[str, Any]] = []
    plan: list[tuple[int, dict[str, Any]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.calls.append({"path": self.path, "headers": dict(self.headers), "form": parse_qs(body)})
        code, payload = self.plan.pop(0) if self.plan else (200, {"status": "success",
                                                                   "data": {"resultType": "vector", "result": []}})
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer
    do_POST = _answer


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A loopback HTTP server with this handler, for as long as the block runs; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture()
def stub() -> Iterator[str]:
    _Stub.calls, _Stub.plan = [], []
    with serving(_Stub) as url:
        yield url


def test_auth_headers_tenant_and_warnings(stub: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    _Stub.plan = [(200, {"status": "success", "warnings": ["PromQL info: metric might not be a counter"],
                         "data": {"resultType": "vector", "result": [
                             {"metric": {"reporter": "destination"}, "value": [1, "5"]}]}})]
    src = PrometheusSource(PrometheusOptions(url=stub, bearer_token_file=token,
                                             headers=(("X-Scope-OrgID", "team-a"),)))
    res = src.query("mesh_requests", 60, datetime(2026, 1, 1, tzinfo=UTC))
    call = _Stub.calls[0]
    assert call["headers"]["Authorization"] == "Bearer tok-123"
    assert call["headers"]["X-Scope-OrgID"] == "team-a"
    assert "istio_requests_total" in call["form"]["query"][0]
    assert res.warnings and src.status() == "partial" and float(res.frame["value"][0]) == 5.0


def test_5xx_then_recovery_is_retried(stub: str) -> None:
    _Stub.plan = [(503, {"status": "error", "error": "busy"}), (502, {})]
    src = PrometheusSource(PrometheusOptions(url=stub, backoff_seconds=0.01))
    res = src.query("scrape_targets", 60, datetime(2026, 1, 1, tzinfo=UTC))
    assert res.error is None and len(_Stub.calls) == 3


def test_too_many_samples_is_a_clear_error(stub: str) -> None:
    _Stub.plan = [(422, {"status": "error", "errorType": "execution",
                         "error": "query processing would load too many samples into memory"})]
    src = PrometheusSource(PrometheusOptions(url=stub))
    res = src.query("mesh_requests", 60, datetime(2026, 1, 1, tzinfo=UTC))
    # no namespaces to split by on this backend: the query fails with the backend's own words
    assert res.error is not None and "too many samples" in res.error and src.status() != "ok"


def test_unreachable_backend(tmp_path: Path) -> None:
    from obsgap.testbed.promserver import free_port

    src = PrometheusSource(PrometheusOptions(url=f"http://127.0.0.1:{free_port()}", retries=1,
                                             backoff_seconds=0.01, timeout_seconds=2))
    assert src.check() is not None and "cannot connect" in (src.check() or "")


def test_basic_auth_file_format(tmp_path: Path, stub: str) -> None:
    bad = tmp_path / "bad"
    bad.write_text("no-colon")
    with pytest.raises(InputError, match="user:password"):
        PrometheusSource(PrometheusOptions(url=stub, basic_auth_file=bad)).client  # noqa: B018
    good = tmp_path / "good"
    good.write_text("alice:pw\n")
    PrometheusSource(PrometheusOptions(url=stub, basic_auth_file=good)).query(
        "scrape_targets", 60, datetime(2026, 1, 1, tzinfo=UTC))
    assert _Stub.calls[-1]["headers"]["Authorization"].startswith("Basic ")


def test_query_file_loaded_by_name() -> None:
    q = load_query("passthrough_requests")
    assert "PassthroughCluster" in q.text and q.scope == "none" and "$selector" not in q.text


def test_a_backend_that_keeps_failing_is_retried_then_said(stub: str) -> None:
    _Stub.plan = [(500, {"status": "error", "error": "boom"})] * 3
    _Stub.calls.clear()
    src = PrometheusSource(PrometheusOptions(url=stub, retries=2, backoff_seconds=0.01))
    assert (src.check() or "").startswith("HTTP 500: boom")  # the last answer, once the retries are spent
    assert len(_Stub.calls) == 3  # the first try and two retries


def test_slow_backend_past_the_timeout_is_a_clear_failure(tmp_path: Path) -> None:
    import time

    class Slow(_Stub):
        def _answer(self) -> None:
            time.sleep(3)
            super()._answer()

        do_GET = _answer
        do_POST = _answer

    with serving(Slow) as url:
        src = PrometheusSource(PrometheusOptions(url=url, timeout_seconds=0.5, retries=1, backoff_seconds=0.01))
        assert src.check() is not None and "timed out" in (src.check() or "")


def test_credentials_never_reach_any_output(stub: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from obsgap.cli import main

    token, password = "tok-SECRET-4242", "pw-SECRET-9999"
    (tmp_path / "token").write_text(token)
    (tmp_path / "basic").write_text(f"alice:{password}")
    _Stub.plan = [(200, {"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}})] + \
        [(422, {"status": "error", "errorType": "execution", "error": "boom"})] * 40
    for flag, path in (("--bearer-token-file", "token"), ("--basic-auth-file", "basic")):
        out = tmp_path / f"out-{path}"
        res = CliRunner().invoke(main, ["report", "--prometheus-url", stub, flag, str(tmp_path / path),
                                        "--out", str(out), "--window", "1h", "--header", "X-Scope-OrgID: t"])
        assert res.exit_code == 3, res.output  # the backend failed: report written, marked partial
        texts = [res.output] + [p.read_text() for p in out.iterdir()]
        for text in texts:
            assert token not in text and password not in text
        assert json.loads((out / "findings.json").read_text())["sources"]["prometheus"]["status"] in (
            "partial", "unavailable")


def test_sample_limit_splits_by_namespace_on_a_real_prometheus(tmp_path: Path, prometheus_available: None) -> None:
    from obsgap import engine
    from obsgap.config import RunPlan
    from obsgap.model import Window
    from obsgap.testbed.promserver import PrometheusServer

    namespaces = ("a", "b", "c", "d")
    spec = ScenarioSpec("split", tuple((n, n != "d") for n in namespaces),
                        (*(ServiceSpec(n, f"api-{n}") for n in namespaces), ServiceSpec("a", "client")),
                        tuple(FlowSpec("a/client", f"{n}/api-{n}", 8080, 1.0) for n in namespaces),
                        end=datetime(2026, 11, 24, tzinfo=UTC), hours=0.5, scrape_interval_s=15)
    built = build(spec, tmp_path / "s")
    server = serve_openmetrics(built.metrics, tmp_path / "s")
    plan = RunPlan(window=Window(spec.start, spec.end), out_dir=tmp_path / "o",
                   prometheus=PrometheusOptions(url=server.url), kube_snapshots=(built.topology,),
                   logs=(str(built.logs),))
    try:
        whole = engine.run(plan).result
        probe = PrometheusSource(PrometheusOptions(url=server.url))
        for ns in namespaces:
            probe.query("mesh_requests", 1800, spec.end, (ns,))
        per_ns = max(probe.query_samples.values())
        total = sources_json(whole)["prometheus"]["peak_samples"]["mesh_requests"]
        assert total > per_ns
    finally:
        server.stop()
    limited = PrometheusServer(server.tsdb, extra_args=(f"--query.max-samples={per_ns + 1}",)).start()
    try:
        split = engine.run(replace_url(plan, limited.url)).result
    finally:
        limited.stop()
    assert sources_json(split)["prometheus"]["split_by_namespace"].get("mesh_requests", 0) >= 2
    assert {(f.check, f.subject) for f in split.findings} == {(f.check, f.subject) for f in whole.findings}
    assert [(c.service, c.mesh) for c in split.coverage] == [(c.service, c.mesh)
                                                                      for c in whole.coverage]


def replace_url(plan, url):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(plan, prometheus=PrometheusOptions(url=url))


def test_rules_of_another_shape_are_left_out_not_a_traceback() -> None:
    """/api/v1/rules as some backend may answer it: rules that are no list, a group that is no object, a rule without
    a name, type or file, a query that is no string; the same rule twice (Thanos over an HA pair) is one."""
    rule = {"query": "sum(istio_requests_total)"}
    _Stub.plan = [(200, {"status": "success", "data": {"groups": [
        {"name": "g", "rules": 5}, 3, {"name": "h", "rules": [rule, rule, {"query": 7}, "x"]}]}})]
    with serving(_Stub) as url:
        read = PrometheusSource(PrometheusOptions(url=url)).rules()
    assert read is not None and read.queries == (PanelQuery("h", "rule (unnamed)", "sum(istio_requests_total)", ""),)
    assert read.recorded == ()  # no recording rule among them
    assert _Stub.calls[-1]["path"].startswith("/api/v1/rules?") and "exclude_alerts=true" in _Stub.calls[-1]["path"]


def test_backend_without_targets_api(tmp_path: Path) -> None:
    class NoTargets(_Stub):
        def _answer(self) -> None:
            if "/api/v1/targets" in self.path:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super()._answer()

        do_GET = _answer
        do_POST = _answer

    with serving(NoTargets) as url:
        src = PrometheusSource(PrometheusOptions(url=url))
        assert src.targets() is None  # Thanos/Mimir: the `up` series stand in for it
        assert src.rules() is None  # an answer without a list of rule groups: none read, not "none evaluated"
        assert src.status() == "ok"


def test_a_failed_reload_leaves_the_configuration_age_unknown(tmp_path: Path, prometheus_available: None) -> None:
    """A reload that fails as a whole (here a rule file that does not parse) keeps lastConfigTime at the last load
    that succeeded, while the scrape manager and /api/v1/status/config already took the new scrape configuration:
    the age of what is shown is then unknown. A reload that succeeds moves it on."""
    import time

    import requests
    import yaml

    from obsgap.testbed.promserver import PrometheusServer

    tsdb = tmp_path / "tsdb"
    tsdb.mkdir()
    job = {"job_name": "kubernetes-pods", "static_configs": [{"targets": ["127.0.0.1:9"]}]}
    server = PrometheusServer(tsdb, extra_args=("--web.enable-lifecycle",), scrape_configs=(job,)).start()
    try:
        source = PrometheusSource(PrometheusOptions(url=server.url))
        started = source.configuration_since()
        assert started is not None and started <= datetime.now(UTC)

        def reload(rules: str) -> int:
            (tmp_path / "rules.yml").write_text(rules)
            drop = {"source_labels": ["__name__", "namespace"], "regex": "istio_requests_total;shop", "action": "drop"}
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
                "global": {"scrape_interval": "1h", "evaluation_interval": "1h"},
                "rule_files": [str(tmp_path / "rules.yml")],
                "scrape_configs": [job | {"metric_relabel_configs": [drop]}]}))
            return requests.post(f"{server.url}/-/reload", timeout=10).status_code

        assert reload("groups: [{name: x, rules: [{record: 'a b', expr: '1'}]}]\n") == 500
        assert "istio_requests_total;shop" in (source.configuration() or "")  # shown, though the reload failed
        assert source.configuration_since() is None
        time.sleep(1.1)  # lastConfigTime has whole seconds
        assert reload("groups: []\n") == 200
        after = source.configuration_since()
        assert after is not None and after > started
    finally:
        server.stop()
