"""Unknown is a value (issue 22): on the nights an input is missing, obsgap says what it could not measure, never
"clean" or "0 %". Every case through the command line against a real Prometheus, as a CronJob runs it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from obsgap.checks import REGISTRY
from obsgap.cli import main
from obsgap.history import load_history
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.testbed.promserver import free_port, serve_openmetrics

END = datetime(2026, 11, 24, tzinfo=UTC)
WINDOW = ["--start", "2026-11-23T23:00:00Z", "--end", "2026-11-24T00:00:00Z"]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    spec = ScenarioSpec(
        "unknowns", (("shop", True), ("legacy", False)),
        (ServiceSpec("shop", "web"), ServiceSpec("shop", "cart"), ServiceSpec("shop", "recommend", inject="false"),
         ServiceSpec("legacy", "billing"),
         ServiceSpec("shop", "slow", latency_median_ms=1500, istio_buckets=(10, 50, 100, 500))),
        (FlowSpec("external", "shop/web", 8080, 2.0), FlowSpec("shop/web", "shop/cart", 8080, 1.5),
         FlowSpec("shop/web", "shop/recommend", 8080, 1.0), FlowSpec("shop/web", "legacy/billing", 8080, 0.5),
         FlowSpec("shop/web", "shop/slow", 8080, 0.5)),
        end=END, hours=1.0, scrape_interval_s=30)
    tmp = tmp_path_factory.mktemp("unknowns")
    built = build(spec, tmp / "mesh")
    server = serve_openmetrics(built.metrics, tmp / "mesh")
    yield built, server, tmp
    server.stop()


def _doc(out: Path) -> dict[str, Any]:
    return json.loads((out / "findings.json").read_text())


def _full(built: Any, url: str, *more: str) -> list[str]:
    return ["report", "--prometheus-url", url, "--kube-snapshot", str(built.topology), "--logs", str(built.logs),
            *WINDOW, "--query-timeout", "3", *more]


def test_logs_alone_run_no_check_and_say_so(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, _, _ = mesh
    res = invoke("report", "--logs", str(built.logs), *WINDOW, "--out", str(tmp_path))
    assert res.exit_code == 3, res.output
    doc = _doc(tmp_path)
    assert doc["status"] == "partial" and all(c["status"] == "skipped" for c in doc["checks"])
    assert doc["status_reasons"] == ["no check could run: no --kube-snapshot or --kubeconfig/--context/--in-cluster "
                                     "given; no --prometheus-url given"]
    assert doc["headline"]["coverage"] is None and doc["headline"]["checks_ran"] == 0
    assert "status: PARTIAL" in res.output and f"0 of {len(REGISTRY)} checks ran:" in res.output
    html = (tmp_path / "report.html").read_text()
    assert "No check could run" in html and "No findings: the telemetry matches" not in html
    assert 'class="value">unknown<' in html
    md = (tmp_path / "summary.md").read_text()
    assert md.splitlines()[0].endswith("PARTIAL RUN: the numbers below rest on less than the inputs given")
    assert "Telemetry coverage: unknown" in md


def test_an_empty_logs_folder_is_an_empty_source(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, _ = mesh
    empty = tmp_path / "logs"
    empty.mkdir()
    res = invoke("report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology), "--logs",
                 str(empty), *WINDOW, "--out", str(tmp_path / "out"))
    assert res.exit_code == 3, res.output
    doc = _doc(tmp_path / "out")
    logs = doc["sources"]["logs"]
    assert logs["status"] == "empty" and logs["files"] == 0
    assert doc["status"] == "partial"
    assert doc["status_reasons"] == [f"logs: {empty} holds no log file (an empty mount, or the wrong folder?)"]
    skipped = {c["check"]: c["reason"] for c in doc["checks"] if c["status"] == "skipped"}
    assert skipped["call-address-not-fqdn"].startswith(f"needs logs (logs: {empty} holds no log file")
    # the mesh's side was measured; the witness of each service is its callers' sidecars, not 0 logged requests
    rows = {r["service"]: r for r in doc["coverage"]}
    assert rows["cart"]["observed_by"] == "caller-sidecar-metrics" and rows["cart"]["ratio"] is not None


def test_a_prometheus_with_no_data_in_the_window_is_an_empty_source(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, _ = mesh
    res = invoke("report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology),
                 "--logs", str(built.logs), "--start", "2026-11-23T23:00:00Z", "--end", "2026-11-24T00:00:00Z",
                 "--out", str(tmp_path / "ok"))
    assert res.exit_code == 1
    # the same mesh a week later: Prometheus answers, but holds nothing for that window
    res = invoke("report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology),
                 "--start", "2026-12-01T00:00:00Z", "--end", "2026-12-01T01:00:00Z", "--out", str(tmp_path / "o"))
    assert res.exit_code == 3, res.output
    doc = _doc(tmp_path / "o")
    prom = doc["sources"]["prometheus"]
    assert prom["status"] == "empty" and prom["istio_series"] is False
    assert doc["status_reasons"][0].startswith("prometheus: no Istio series (istio_requests_total, istio_tcp_*) in "
                                               "the window 2026-12-01 00:00–2026-12-01 01:00 UTC")
    bypass = next(c for c in doc["checks"] if c["check"] == "envoy-bypass")
    assert bypass["status"] == "skipped" and doc["coverage"] == [] and doc["headline"]["coverage"] is None


def test_a_night_with_prometheus_down_resolves_nothing(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, _ = mesh
    root = tmp_path / "reports"
    first = invoke(*_full(built, server.url, "--out", str(root / "2026-11-24")))
    assert first.exit_code == 1
    before = _doc(root / "2026-11-24")
    assert before["status"] == "complete" and before["headline"]["coverage"] is not None
    metric_findings = [f for f in before["findings"] if f["check"] in ("envoy-bypass", "histogram-inf-saturation")]
    assert {f["cause"] for f in metric_findings if f["check"] == "envoy-bypass"} >= {
        "no-sidecar/inject-annotation", "no-sidecar/namespace-not-enabled", "caller-outside-mesh"}
    down = f"http://127.0.0.1:{free_port()}"
    res = invoke(*_full(built, down, "--out", str(root / "2026-11-25")))
    assert res.exit_code == 3
    doc = _doc(root / "2026-11-25")
    assert doc["status"] == "partial" and doc["status_reasons"][0].startswith(f"prometheus at {down[7:]}: cannot")
    # coverage: the logs were read, the mesh's side was not; no ratio, no 0 %, each row says why
    assert doc["headline"]["coverage"] is None and doc["headline"]["measured_services"] == 0
    assert doc["coverage"] and all(r["mesh_requests"] is None and r["ratio"] is None and r["observed_requests"]
                                   and r["reason"].startswith("mesh not measured: prometheus at 127.0.0.1:")
                                   for r in doc["coverage"])
    # nothing the metric checks found is called resolved: it is carried, with why
    assert doc["resolved"] == []
    carried = {f["id"]: f for f in doc["not_rechecked"]}
    for f in metric_findings:
        assert carried[f["id"]]["reason"].startswith(f"{f['check']} did not run: needs metrics (prometheus at")
    assert not any(f["change"] == "new" for f in doc["findings"])
    md = (root / "2026-11-25" / "summary.md").read_text()
    assert f"0 new, 0 resolved, {len(carried)} not re-checked" in md and "Telemetry coverage: unknown" in md
    html = (root / "2026-11-25" / "report.html").read_text()
    assert f"0 new · 0 resolved · {len(carried)} not re-checked" in html and 'id="not-rechecked"' in html
    # the terminal: the status, its reason, and the checks that did not run, one line per reason
    lines = [line for line in res.output.splitlines() if not line.startswith("· ")]
    assert lines[0] == "status: PARTIAL: the numbers rest on less than the inputs given"
    assert lines[1].startswith(f"  - prometheus at {down[7:]}: cannot connect")
    not_run = [line for line in lines if line.startswith("  - not run: ")]
    assert len(not_run) == 1 and "envoy-bypass" in not_run[0] and "histogram-inf-saturation" in not_run[0]
    # the trend has a gap for that night, not a drop to 0
    runs = load_history(root / "2026-11-26", None).runs
    assert [r.coverage is None for r in runs] == [False, True]
    assert [r.saturated for r in runs] == [1, None]
    # and the night after, with Prometheus back, the carried findings are open again, not new
    res = invoke(*_full(built, server.url, "--out", str(root / "2026-11-26")))
    after = _doc(root / "2026-11-26")
    assert after["status"] == "complete" and after["not_rechecked"] == []
    changes = {f["id"]: f["change"] for f in after["findings"]}
    assert all(changes[f["id"]] == "open" for f in metric_findings)


def test_a_narrower_run_resolves_only_what_it_checked(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, _ = mesh
    root = tmp_path / "reports"
    invoke(*_full(built, server.url, "--out", str(root / "2026-11-24")))
    before = _doc(root / "2026-11-24")
    res = invoke(*_full(built, server.url, "--out", str(root / "2026-11-25"), "--check", "envoy-bypass",
                        "--check", "histogram-inf-saturation"))
    assert res.exit_code == 1
    doc = _doc(root / "2026-11-25")
    assert doc["resolved"] == []
    others = [f for f in before["findings"] if f["check"] not in ("envoy-bypass", "histogram-inf-saturation")]
    assert others and {f["id"] for f in others} == {f["id"] for f in doc["not_rechecked"]}
    assert all(f["reason"] == f"{f['check']} was not selected in this run" for f in doc["not_rechecked"])


def test_a_namespace_with_no_pod_is_an_empty_topology(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, _ = mesh
    snapshot = json.loads(built.topology.read_text())
    snapshot["items"].append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "empty"}})
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(snapshot))
    res = invoke("report", "--prometheus-url", server.url, "--kube-snapshot", str(path), *WINDOW, "-n", "empty",
                 "--out", str(tmp_path / "out"))
    assert res.exit_code == 3
    doc = _doc(tmp_path / "out")
    assert doc["sources"]["kubernetes"]["status"] == "empty" and doc["sources"]["kubernetes"]["pods_in_scope"] == 0
    assert doc["status_reasons"][0].startswith("kubernetes: the snapshot holds no pod in the namespaces in scope "
                                               "(empty)")


def test_every_timeline_sums_to_its_coverage_count(demo_run) -> None:  # type: ignore[no-untyped-def]
    """The app and its sidecar log the same requests: a timeline counts each once, by the coverage table's rule."""
    run, _ = demo_run
    rows = {(r.namespace, r.service): r for r in run.result.coverage}
    checked = 0
    for key, timeline in run.result.timelines.items():
        row = rows.get(key)
        if row is None or row.witness != "server-logs" or row.logs_cover:
            continue
        assert timeline.logged.total == row.observed, key
        if row.mesh is not None and row.comparable and timeline.mesh is not None:
            assert timeline.mesh.total == pytest.approx(row.mesh, rel=0.05, abs=5), key
        checked += 1
    assert checked >= 8
    frontend = run.result.timelines[("shop", "frontend")]
    assert frontend.logged.total == rows[("shop", "frontend")].observed == run.built.truth.server_requests[
        "shop/frontend"]


def test_unknown_is_never_printed_as_zero(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A coverage row whose mesh side was not measured reads "not measured" in the page's table (Chromium), and the
    headline reads "unknown", never 0 or 0.0 %."""
    from tests.test_report import browse

    built, _, _ = mesh
    res = invoke(*_full(built, f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path / "out")))
    assert res.exit_code == 3
    dom, errors = browse(tmp_path / "out" / "report.html", tmp_path)
    assert errors == []
    table = dom.split('id="coverage-table"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert rows and all(">not measured<" in r and ">unknown<" in r for r in rows)
    assert not re.search(r'class="num">0(\.0%)?<', table)
    card = dom.split('id="coverage-card"')[1].split("</div>\n    </div>")[0]
    assert 'class="value">unknown<' in card and "0.0%" not in card


def test_a_carried_finding_is_rechecked_under_todays_keys() -> None:
    """A finding carried as not re-checked keeps what its keys are computed from, so a later version's keys (here
    metrics-exceed-logs' server-logs:, where an earlier version wrote the namespace) are the ones compared; keys
    stored alone would never match what is examined now, and the finding would be carried forever."""
    from obsgap.history import History, compare, past_findings
    from obsgap.model import CheckRun

    finding = {"id": "f1", "check": "metrics-exceed-logs", "title": "t", "severity": "warning", "namespace": "shop",
               "service": "orders", "cause": "server-logs-incomplete", "evidence": {"witness": "server-logs"},
               "keys": ["shop/orders", "shop"]}
    not_judged = CheckRun("metrics-exceed-logs", "ran", examined=frozenset({"caller-logs:shop/orders"}))
    carried = compare(History("night 1", past_findings({"findings": [finding]})), [], [not_judged]).not_rechecked
    assert [p.keys for p in carried] == [("server-logs:shop/orders",)]
    stored = {"not_rechecked": [p.as_dict() for p in carried]}
    assert stored["not_rechecked"][0]["evidence"] == {"witness": "server-logs"}
    stored["not_rechecked"][0]["keys"] = ["shop/orders", "shop"]  # as an earlier version wrote them
    judged = CheckRun("metrics-exceed-logs", "ran", examined=frozenset({"server-logs:shop/orders"}))
    assert [p.id for p in compare(History("night 2", past_findings(stored)), [], [judged]).resolved] == ["f1"]
