"""The command line: flags, config precedence, exit codes, and the findings.json contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from obsgap.checks import REGISTRY
from obsgap.cli import main
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.testbed.promserver import free_port, serve_openmetrics

CONTRACT_CHECKS = {"envoy-bypass", "port-missing-from-metrics", "passthrough-traffic", "call-address-not-fqdn"}
FINDING_KEYS = {"id", "check", "severity", "title", "detail", "namespace", "service", "workload", "pod", "port",
                "job", "metric", "cause", "resource", "istio_code", "evidence", "suggestion"}


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    spec = ScenarioSpec("cli", (("shop", True), ("legacy", False)),
                        (ServiceSpec("shop", "web"), ServiceSpec("legacy", "billing")),
                        (FlowSpec("shop/web", "legacy/billing", 8080, 1.0),),
                        end=datetime(2026, 11, 24, tzinfo=UTC), hours=0.5, scrape_interval_s=15)
    tmp = tmp_path_factory.mktemp("cli")
    built = build(spec, tmp / "cli")
    server = serve_openmetrics(built.metrics, tmp / "cli")
    yield spec, built, server, tmp
    server.stop()


def test_full_report_writes_the_contract_and_exits_1_on_critical(mesh) -> None:  # type: ignore[no-untyped-def]
    _spec, built, server, tmp = mesh
    out = tmp / "out"
    res = invoke("report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology),
                 "--logs", str(built.logs), "--start", "2026-11-23T23:30:00Z", "--end", "2026-11-24T00:00:00Z",
                 "--out", str(out))
    assert res.exit_code == 1, res.output
    doc = json.loads((out / "findings.json").read_text())
    assert doc["schema"] == "obsgap.findings/v1"
    assert doc["window"] == {"start": "2026-11-23T23:30:00Z", "end": "2026-11-24T00:00:00Z"}
    assert {c["check"] for c in doc["checks"]} >= CONTRACT_CHECKS
    assert doc["sources"]["prometheus"]["status"] == "ok"
    assert doc["sources"]["kubernetes"]["mode"] == "snapshot"
    logs = doc["sources"]["logs"]
    assert logs["lines"] > 0 and logs["unparsed"] == 0
    assert logs["parsed"] + logs["unparsed"] + logs["joined_partial_lines"] == logs["lines"]
    f = doc["findings"][0]
    assert set(f) >= FINDING_KEYS and f["cause"] == "no-sidecar/namespace-not-enabled"
    assert f["resource"] == "Namespace legacy" and f["istio_code"] == "IST0102"
    assert doc["coverage"][0] | {"ratio": 0.0} == doc["coverage"][0]
    assert (out / "summary.md").read_text().count("billing") >= 1
    # --fail-on never: same findings, exit 0
    assert invoke("report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology),
                  "--end", "2026-11-24T00:00:00Z", "--window", "30m", "--out", str(out),
                  "--fail-on", "never").exit_code == 0


def test_a_snapshot_alone_lists_the_checks_it_cannot_run_as_skipped(tmp_path: Path, realworld: Path) -> None:
    res = invoke("report", "--out", str(tmp_path), "--window", "1h",
                 "--kube-snapshot", str(realworld / "bookinfo" / "bookinfo.yaml"))
    # bookinfo's manifests hold Deployments and no Pod: the config checks run, but the topology is empty of what
    # logs and metrics are attributed to, and the run says so (exit 3, partial)
    assert res.exit_code == 3, res.output
    assert "kubernetes: the snapshot holds no pod" in res.output
    doc = json.loads((tmp_path / "findings.json").read_text())
    assert [c["check"] for c in doc["checks"]] == [c.id for c in REGISTRY]
    ran = {c["check"] for c in doc["checks"] if c["status"] == "ran"}
    assert ran == {"sidecar-missing", "namespace-not-injected", "port-name-convention", "witness-undercounts",
                   "canary-without-outlier-detection", "virtualservice-host-unresolved",
                   "destinationrule-subset-unmatched", "destinationrule-host-unresolved", "waypoint-missing",
                   "route-ref-unresolved", "dashboard-misses-waypoint", "dashboard-reads-disabled-metric"}
    assert all(c["reason"] for c in doc["checks"] if c["status"] == "skipped")
    assert doc["sources"]["prometheus"]["status"] == "not-configured" and doc["status"] == "partial"
    assert doc["sources"]["kubernetes"]["status"] == "empty" and doc["sources"]["kubernetes"]["pods_in_scope"] == 0
    # the terminal names the checks that did not run, one line per reason
    assert f"12 of {len(REGISTRY)} checks ran:" in res.output  # the config checks, and witness-undercounts
    assert "not run: call-address-not-fqdn (needs logs (no --logs, --pod-logs or --clickhouse-url given))" in res.output


def test_unreachable_prometheus_exits_3_and_still_writes(tmp_path: Path) -> None:
    secret = "user:hunter2"
    res = invoke("report", "--prometheus-url", f"http://{secret}@127.0.0.1:{free_port()}", "--out", str(tmp_path),
                 "--query-timeout", "2")
    assert res.exit_code == 3
    text = (tmp_path / "findings.json").read_text()
    assert json.loads(text)["sources"]["prometheus"]["status"] == "unavailable"
    assert "hunter2" not in text and "hunter2" not in res.output


def test_unreachable_sources_are_named_once(tmp_path: Path) -> None:
    """An API server and a Prometheus nobody listens on: each failure is one line naming its address and why (not
    `MaxRetryError`), and the lines about what did not run point at it instead of repeating it."""
    kubeconfig = tmp_path / "kubeconfig"
    api = f"https://127.0.0.1:{free_port()}"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": api}}], "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    prom = f"127.0.0.1:{free_port()}"
    res = CliRunner().invoke(main, ["report", "--kubeconfig", str(kubeconfig), "--prometheus-url", f"http://{prom}",
                                    "--out", str(tmp_path / "out"), "--query-timeout", "2", "-o", "none"])
    assert res.exit_code == 3
    lines = res.output.splitlines()
    assert f"  - kubernetes: API server {api} unreachable: connection refused (nothing listens there)" in lines
    assert any(line.startswith(f"  - prometheus at {prom}: cannot connect: connection refused") for line in lines)
    assert "MaxRetryError" not in res.output
    assert sum(line.count("connection refused") for line in lines) == 2  # each failure said once
    assert any("needs topology (failed, see above)" in line for line in lines)


@pytest.mark.parametrize("args,message", [
    (["--start", "yesterday"], "RFC 3339"),
    (["--window", "ten minutes"], "not a duration"),
    (["--start", "2026-01-02T00:00:00Z", "--end", "2026-01-01T00:00:00Z"], "the window is empty"),
    (["--prometheus-url", "localhost:9090"], "http://"),
    (["--header", "no-colon"], "Name: value"),
    (["--logs", "/nonexistent/dir"], "no such file"),
    (["-n", "Bad_NS", "--prometheus-url", "http://127.0.0.1:1"], "not a valid Kubernetes namespace"),
    (["--check", "nope"], "unknown check"),
    (["--kube-snapshot", str(Path(__file__).parent / "data/istio/bookinfo/bookinfo.yaml"), "--log-pod", "x.log"],
     "use FILE=NAMESPACE/POD[/CONTAINER]"),
    (["--kube-snapshot", str(Path(__file__).parent / "data/istio/bookinfo/bookinfo.yaml"),
      "--access-log-format", "plain words"], "has no %OPERATOR%"),
    (["--kube-snapshot", str(Path(__file__).parent / "data/istio/bookinfo/bookinfo.yaml"),
      "--log-field", "duration_ms=latency:weeks"], "the unit after ':'"),
])
def test_bad_usage_exits_2_with_a_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, ["report", "--out", str(tmp_path), *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_config_file_env_and_flag_precedence(tmp_path: Path, realworld: Path) -> None:
    cfg = tmp_path / "obsgap.yaml"
    cfg.write_text(f"window: 2h\nout: {tmp_path / 'from-config'}\nfail_on: never\n"
                   f"kube_snapshot: {realworld / 'bookinfo' / 'bookinfo.yaml'}\n")  # one value where a list is allowed
    res = invoke("report", "--config", str(cfg), "--end", "2026-01-01T00:00:00Z")
    assert res.exit_code == 3  # bookinfo's manifests hold no pod: partial
    doc = json.loads((tmp_path / "from-config" / "findings.json").read_text())
    assert doc["window"]["start"] == "2025-12-31T22:00:00Z"
    res = invoke("report", "--config", str(cfg), "--end", "2026-01-01T00:00:00Z",
                 env={"OBSGAP_WINDOW": "30m"})
    doc = json.loads((tmp_path / "from-config" / "findings.json").read_text())
    assert doc["window"]["start"] == "2025-12-31T23:30:00Z"
    invoke("report", "--config", str(cfg), "--end", "2026-01-01T00:00:00Z", "--window", "10m",
           env={"OBSGAP_WINDOW": "30m"})
    doc = json.loads((tmp_path / "from-config" / "findings.json").read_text())
    assert doc["window"]["start"] == "2025-12-31T23:50:00Z"


def test_checks_list_and_explain() -> None:
    res = invoke("checks")
    assert res.exit_code == 0 and all(c.id in res.output for c in REGISTRY)
    for check in REGISTRY:
        text = invoke("checks", "explain", check.id).output
        for section in ("What it does", "Why is this bad?", "Example", "Use instead"):
            assert section in text, (check.id, section)
    assert invoke("checks", "explain", "nope").exit_code == 2


def test_every_check_is_documented_and_tested() -> None:
    """The sqlfluff rule: no check without its documentation sections and a test that names it."""
    from obsgap.checks.base import doc_sections

    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != "test_cli.py")
    for check in REGISTRY:
        assert [h for h, _ in doc_sections(check)] == ["What it does", "Why is this bad?", "Example", "Use instead"]
        assert all(text for _, text in doc_sections(check)), check.id
        assert f'"{check.id}"' in tests, f"no test names {check.id}"


# --- issue 11, section 8: what a user tripped over ---------------------------------------------------------------

def test_url_secrets_never_reach_any_output(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _spec, built, server, _tmp = mesh
    out = tmp_path / "out"
    res = invoke("report", "--prometheus-url", f"{server.url}/?token=s3cr3t-value", "--kube-snapshot",
                 str(built.topology), "--end", "2026-11-24T00:00:00Z", "--window", "30m", "--out", str(out),
                 "--fail-on", "never")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "findings.json").read_text())
    assert doc["sources"]["prometheus"]["status"] == "ok"  # the parameter went with every request
    assert doc["sources"]["prometheus"]["url"] == f"{server.url}/?token=REDACTED"
    assert all("s3cr3t" not in p.read_text() for p in out.iterdir() if p.is_file()) and "s3cr3t" not in res.output
    closed = invoke("report", "--prometheus-url", f"http://me:pa55word@127.0.0.1:{free_port()}/?token=s3cr3t-value",
                    "--out", str(tmp_path / "closed"), "--query-timeout", "2")
    assert closed.exit_code == 3 and "connection refused" in closed.output
    text = "".join(p.read_text() for p in (tmp_path / "closed").iterdir() if p.is_file())
    assert "s3cr3t" not in text + closed.output and "pa55word" not in text + closed.output


def test_connection_errors_say_what_happened(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    _spec, _built, server, _tmp = mesh
    tls = invoke("report", "--prometheus-url", server.url.replace("http://", "https://"), "--out",
                 str(tmp_path / "tls"), "--query-timeout", "5")
    assert tls.exit_code == 3 and "does not speak TLS on this port" in tls.output, tls.output
    # a plain web server (Python's own) answers POST with a 501 HTML page
    web = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        html = invoke("report", "--prometheus-url", f"http://127.0.0.1:{web.server_port}", "--out",
                      str(tmp_path / "html"), "--query-timeout", "5")
    finally:
        web.shutdown()
    assert html.exit_code == 3 and "HTTP 501" in html.output and "HTML page, not the Prometheus API" in html.output
    assert "<" not in html.output
    api = invoke("report", "--prometheus-url", f"{server.url}/api/v1", "--out", str(tmp_path / "api"))
    assert api.exit_code == 2 and "give the base URL, without /api/v1" in api.output
    empty = tmp_path / "token"
    empty.write_text("\n")
    tok = invoke("report", "--prometheus-url", server.url, "--bearer-token-file", str(empty), "--out",
                 str(tmp_path / "tok"))
    assert tok.exit_code == 2 and f"--bearer-token-file {empty}: the file is empty" in tok.output
    assert not (tmp_path / "tok").exists()
    pod = invoke("report", "--in-cluster", "--out", str(tmp_path / "pod"), env={"KUBERNETES_SERVICE_HOST": ""})
    assert pod.exit_code == 2 and "--in-cluster: not running in a pod" in pod.output and "Traceback" not in pod.output


def test_plotly_from_the_cdn_is_the_embedded_version() -> None:
    import re

    from plotly.offline import get_plotlyjs

    from obsgap.render.html import PLOTLY_CDN

    embedded = re.search(r"plotly\.js v(\d+\.\d+\.\d+)", get_plotlyjs()[:5000])
    assert embedded and f"https://cdn.plot.ly/plotly-{embedded.group(1)}.min.js" == PLOTLY_CDN


def test_each_output_form_on_stdout(mesh) -> None:  # type: ignore[no-untyped-def]
    """-o json prints findings.json as written; yaml the same document; markdown summary.md; table one line per
    finding then the coverage, status and checks not run; path the path; none nothing. The files are written
    whatever -o says."""
    import yaml

    _spec, built, server, tmp = mesh
    args = ["report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology), "--logs",
            str(built.logs), "--start", "2026-11-23T23:30:00Z", "--end", "2026-11-24T00:00:00Z"]
    printed = {}
    for form in ("json", "yaml", "markdown", "table", "path", "none"):
        out = tmp / f"out-{form}"
        res = invoke(*args, "--out", str(out), "-o", form)
        assert res.exit_code == 1 and (out / "findings.json").is_file(), res.output
        printed[form] = res.stdout
    doc = json.loads((tmp / "out-json" / "findings.json").read_text())
    assert printed["json"] == (tmp / "out-json" / "findings.json").read_text()
    assert yaml.safe_load(printed["yaml"])["findings"] == json.loads(
        (tmp / "out-yaml" / "findings.json").read_text())["findings"]
    assert printed["markdown"] == (tmp / "out-markdown" / "summary.md").read_text()
    assert printed["path"] == f"{tmp / 'out-path' / 'findings.json'}\n" and printed["none"] == ""
    table = printed["table"].splitlines()
    assert table[0].split()[:3] == ["SEVERITY", "CHECK", "RESOURCE"]
    rows = [r.replace("└ ", "") for r in table[1:1 + len(doc["findings"])]]
    assert sorted((r.split()[0], r.split()[1]) for r in rows) == sorted(
        (f["severity"].upper(), f["check"]) for f in doc["findings"])
    symptoms = [f["check"] for f in doc["findings"] if f["root"] not in (None, f["id"])]
    assert sorted(r.split()[2] for r in table[1:] if "└" in r) == sorted(symptoms)  # each under its root
    assert any(line.startswith("Telemetry coverage: ") for line in table)
    assert any(line.startswith("status: complete") for line in table) and "checks ran" in printed["table"]


def test_suppressions_by_config_and_annotation(mesh) -> None:  # type: ignore[no-untyped-def]
    """A config entry hides the critical envoy-bypass (written under `suppressed` with its reason and source, not
    counted for --fail-on: exit 0); an entry past its `until` brings its finding back and says so; an entry that
    matches nothing is reported stale; an annotation on the Service hides what it names; a bad entry is exit 2."""
    from datetime import date, timedelta

    _spec, built, server, tmp = mesh
    args = ["--prometheus-url", server.url, "--logs", str(built.logs), "--start", "2026-11-23T23:30:00Z",
            "--end", "2026-11-24T00:00:00Z", "-o", "json"]
    plain = json.loads(invoke("report", *args, "--kube-snapshot", str(built.topology),
                              "--out", str(tmp / "sup0")).stdout)
    assert any(f["check"] == "envoy-bypass" and f["severity"] == "critical" for f in plain["findings"])
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    config = tmp / "suppress.yaml"
    config.write_text(f"""suppress:
  - check: envoy-bypass
    namespace: legacy
    reason: legacy batch, moves into the mesh in Q1 (OPS-12)
  - check: namespace-not-injected
    resource: Namespace legacy
    reason: accepted until yesterday
    until: {yesterday}
  - check: port-missing-from-metrics
    service: nosuch
    reason: about a service since renamed
""")
    res = invoke("report", "--config", str(config), *args, "--kube-snapshot", str(built.topology),
                 "--out", str(tmp / "sup1"))
    doc = json.loads(res.stdout)
    assert res.exit_code == 0, res.output  # the only critical is accepted
    assert [f["check"] for f in doc["suppressed"]] == ["envoy-bypass"]
    by = doc["suppressed"][0]["suppressed_by"]
    assert by["reason"].startswith("legacy batch") and by["source"] == f"--config {config}, suppress[0]"
    assert {f["check"] for f in doc["findings"]} == {f["check"] for f in plain["findings"]} - {"envoy-bypass"}
    assert doc["headline"]["counts"]["critical"] == 0
    expired = doc["suppressions"]["expired"]
    assert [e["check"] for e in expired] == ["namespace-not-injected"] and expired[0]["findings"] == [
        f["id"] for f in doc["findings"] if f["check"] == "namespace-not-injected"]
    assert [s["service"] for s in doc["suppressions"]["stale"]] == ["nosuch"]
    summary = (tmp / "sup1" / "summary.md").read_text()
    assert "suppression expired on" in summary and "stale suppression" in summary
    assert 'id="suppressed"' in (tmp / "sup1" / "report.html").read_text()
    # the next run, with the suppression: the finding is neither new nor resolved
    again = json.loads(invoke("report", "--config", str(config), *args, "--kube-snapshot", str(built.topology),
                              "--out", str(tmp / "sup2"), "--baseline", str(tmp / "sup0")).stdout)
    assert "envoy-bypass" not in {f["check"] for f in again["resolved"]}
    # an annotation on the Service
    topo = json.loads(built.topology.read_text())
    for item in topo["items"]:
        if item["kind"] == "Service" and item["metadata"]["name"] == "billing":
            item["metadata"].setdefault("annotations", {}).update({
                "obsgap.io/suppress": "envoy-bypass", "obsgap.io/suppress-reason": "host-network agent"})
    annotated = tmp / "annotated.json"
    annotated.write_text(json.dumps(topo))
    doc = json.loads(invoke("report", *args, "--kube-snapshot", str(annotated), "--out", str(tmp / "sup3")).stdout)
    assert [(f["check"], f["suppressed_by"]["reason"]) for f in doc["suppressed"]] == [
        ("envoy-bypass", "host-network agent")]
    assert doc["suppressed"][0]["suppressed_by"]["source"] == \
        "annotation obsgap.io/suppress on Service legacy/billing"
    # or on the Deployment the finding names
    topo = json.loads(built.topology.read_text())
    pod = next(i for i in topo["items"] if i["kind"] == "Pod" and i["metadata"]["namespace"] == "legacy")
    topo["items"].append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "billing", "namespace": "legacy",
        "annotations": {"obsgap.io/suppress": "envoy-bypass, port-name-convention"}},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": pod["metadata"]["labels"]},
                                             "spec": {"containers": [{"name": "app", "image": "billing"}]}}}})
    annotated.write_text(json.dumps(topo))
    doc = json.loads(invoke("report", *args, "--kube-snapshot", str(annotated), "--out", str(tmp / "sup4")).stdout)
    assert [(f["check"], f["suppressed_by"]["source"], f["suppressed_by"]["reason"]) for f in doc["suppressed"]] == [
        ("envoy-bypass", "annotation obsgap.io/suppress on Deployment legacy/billing",
         "obsgap.io/suppress on Deployment legacy/billing (no reason given)")]
    assert [s["check"] for s in doc["suppressions"]["stale"]] == ["port-name-convention"]
    bad = tmp / "bad.yaml"
    bad.write_text("suppress:\n  - check: envoy-bypas\n    reason: x\n")
    res = CliRunner().invoke(main, ["report", "--config", str(bad), *args])
    assert res.exit_code == 2 and "did you mean 'envoy-bypass'" in res.output


def test_checks_explain_suggests_and_takes_istio_codes() -> None:
    res = CliRunner().invoke(main, ["checks", "explain", "envoy-bypas"])
    assert res.exit_code == 2 and "did you mean envoy-bypass?" in res.output
    res = invoke("checks", "explain", "ist0102")
    assert res.exit_code == 0 and res.output.startswith("namespace-not-injected — ")
    assert "istioctl analyze: IST0102" in res.output


def _series(text: str) -> dict[str, float]:
    """The samples of Prometheus text exposition: series (name and labels as written) -> value."""
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_metrics_file_and_alert_rules_pass_promtool(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--metrics-file: promtool check metrics accepts it and its values are findings.json's; the PrometheusRule of
    `manifests --alerts` passes promtool check rules, and promtool test rules fires what those values say."""
    import subprocess

    import yaml

    from obsgap.manifests import ALERT_RULES
    from obsgap.testbed.promserver import find_binary

    description = ALERT_RULES[0]["annotations"]["description"]

    _spec, built, server, _tmp = mesh
    metrics = tmp_path / "obsgap.prom"
    res = invoke("report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology), "--logs",
                 str(built.logs), "--start", "2026-11-23T23:30:00Z", "--end", "2026-11-24T00:00:00Z",
                 "--out", str(tmp_path / "out"), "--metrics-file", str(metrics), "-o", "none")
    assert res.exit_code == 1, res.output
    text = metrics.read_text()
    lint = subprocess.run([find_binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    doc = json.loads((tmp_path / "out" / "findings.json").read_text())
    series = _series(text)
    for f in doc["findings"]:
        key = f'obsgap_findings{{check="{f["check"]}",severity="{f["severity"]}",namespace="{f["namespace"] or ""}"}}'
        assert series[key] == sum(1 for g in doc["findings"] if (g["check"], g["severity"], g["namespace"]) ==
                                  (f["check"], f["severity"], f["namespace"]))
    assert sum(v for k, v in series.items() if k.startswith("obsgap_findings{")) == len(doc["findings"])
    measured = [c for c in doc["coverage"] if c["ratio"] is not None]
    assert {k: v for k, v in series.items() if k.startswith("obsgap_coverage_ratio")} == {
        f'obsgap_coverage_ratio{{namespace="{c["namespace"]}",service="{c["service"]}"}}': c["ratio"] for c in measured}
    assert series['obsgap_run_status{status="complete"}'] == (doc["status"] == "complete")
    assert text.endswith("# EOF\n")

    rule = yaml.safe_load(invoke("manifests", "--alerts").output)
    assert rule["kind"] == "PrometheusRule"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    check = subprocess.run([find_binary("promtool"), "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    critical = [f for f in doc["findings"] if f["severity"] == "critical"]
    ratio = measured[0]
    unit = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": k, "values": f"{v:g}x60"} for k, v in series.items()
            if k.startswith(("obsgap_findings", "obsgap_coverage_ratio", "obsgap_run_status"))] + [
            {"series": "obsgap_last_run_timestamp_seconds", "values": "0x60"}],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "ObsgapCriticalFindings", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "check": f["check"], "namespace": f["namespace"]},
                 "exp_annotations": {"summary": f"obsgap: 1 critical {f['check']} finding(s) in namespace "
                                                f"{f['namespace']}", "description": description}}
                for f in critical]},
            {"eval_time": "30m", "alertname": "ObsgapCoverageLow", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": ratio["namespace"], "service": ratio["service"]},
                 "exp_annotations": {"summary": f"obsgap: the mesh counted {ratio['ratio'] * 100:g}% of the requests "
                                                f"{ratio['namespace']}/{ratio['service']} served"}}]},
            {"eval_time": "30m", "alertname": "ObsgapRunPartial", "exp_alerts": []},
            {"eval_time": "30m", "alertname": "ObsgapRunMissing", "exp_alerts": []}]}]}
    assert len(critical) == 1 and ratio["ratio"] < 0.95  # the mesh has what the alerts are about
    tests = tmp_path / "rules_test.yaml"
    tests.write_text(yaml.safe_dump(unit))
    ran = subprocess.run([find_binary("promtool"), "test", "rules", str(tests)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_pushgateway_receives_the_metrics(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--pushgateway against a real Pushgateway (Debian prometheus-pushgateway): the pushed group is the metrics
    file's series under job="obsgap"; an unreachable one is exit 3 with one line naming it, the report written."""
    import subprocess
    import time
    import urllib.request

    from obsgap.testbed.promserver import find_binary

    _spec, built, server, _tmp = mesh
    port = free_port()
    gateway = subprocess.Popen([find_binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        args = ["report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology), "--logs",
                str(built.logs), "--start", "2026-11-23T23:30:00Z", "--end", "2026-11-24T00:00:00Z", "-o", "none"]
        res = invoke(*args, "--out", str(tmp_path / "out"), "--pushgateway", url,
                     "--metrics-file", str(tmp_path / "m.prom"))
        assert res.exit_code == 1, res.output
        scraped = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
        pushed = {k: v for k, v in _series(scraped).items() if 'job="obsgap"' in k and k.startswith("obsgap_")}
        written = _series((tmp_path / "m.prom").read_text())
        findings = {k: v for k, v in written.items() if k.startswith("obsgap_findings{")}
        assert findings and all(_same_series(k, pushed) == v for k, v in findings.items())
    finally:
        gateway.terminate()
        gateway.wait(10)
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out2"), "--pushgateway", url])
    assert res.exit_code == 3 and f"--pushgateway {url}: cannot reach it" in res.output
    assert (tmp_path / "out2" / "findings.json").is_file()


def _same_series(written: str, pushed: dict[str, float]) -> float | None:
    """The pushed sample of a written series: the Pushgateway orders the labels by name, adds job and drops empty
    ones (an empty label is no label)."""
    import re

    def norm(series: str) -> tuple[str, frozenset[tuple[str, str]]]:
        name, _, labels = series.partition("{")
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)
        return name, frozenset((k, v) for k, v in pairs if v and k != "job")

    return next((v for k, v in pushed.items() if norm(k) == norm(written)), None)


def test_demo_rerun_command_runs_as_printed(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`obsgap demo --serve` prints an `obsgap report` command for the demo's data: split as a shell splits it, it
    runs and gives the findings of the demo's own run."""
    import shlex

    from obsgap.config import RunPlan
    from obsgap.engine import run
    from obsgap.model import Window
    from obsgap.scenario.demo import rerun_command
    from obsgap.sources.prometheus import PrometheusOptions

    spec, built, server, _tmp = mesh
    plan = RunPlan(window=Window(spec.start, spec.end), prometheus=PrometheusOptions(url=server.url),
                   kube_snapshots=(built.topology,), logs=(str(built.logs),))
    command = shlex.split(rerun_command(plan, tmp_path / "demo"))
    assert command[:2] == ["obsgap", "report"]
    res = invoke(*command[1:], "-o", "json")
    assert res.exit_code == 1, res.output
    assert {(f["check"], f["subject"]) for f in json.loads(res.stdout)["findings"]} == {
        (f.check, f.subject) for f in run(plan).result.findings}


def test_webhook_gets_summary_md(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--notify-webhook-file: summary.md POSTed as Slack's incoming webhooks take it ({"text": ...}) to a loopback
    receiver; a receiver that refuses is exit 3 naming its host, never the URL (a secret); a file without a URL is
    exit 2 before any work."""
    import http.server
    import threading

    _spec, built, server, _tmp = mesh
    got: list[tuple[str, str, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append((self.path, self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200 if self.path.endswith("/ok") else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        secret = tmp_path / "webhook"
        base = f"http://127.0.0.1:{httpd.server_address[1]}/services/T000/B000/"
        secret.write_text(base + "ok\n")
        args = ["report", "--prometheus-url", server.url, "--kube-snapshot", str(built.topology), "--logs",
                str(built.logs), "--start", "2026-11-23T23:30:00Z", "--end", "2026-11-24T00:00:00Z", "-o", "none"]
        res = invoke(*args, "--out", str(tmp_path / "out"), "--notify-webhook-file", str(secret))
        assert res.exit_code == 1, res.output
        (path, ctype, body), = got
        assert path == "/services/T000/B000/ok" and ctype == "application/json"
        summary = (tmp_path / "out" / "summary.md").read_text()
        assert json.loads(body) == {"text": summary.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}
        secret.write_text(base + "gone")
        res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out2"), "--notify-webhook-file", str(secret)])
        assert res.exit_code == 3 and "HTTP 404" in res.output and "127.0.0.1" in res.output
        assert "T000" not in res.output
    finally:
        httpd.shutdown()
    for bad in ("not a url", base + "ok\nsecond line", "https://hooks.example:99999/services/T000"):
        secret.write_text(bad)
        res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out3"), "--notify-webhook-file", str(secret)])
        assert res.exit_code == 2 and "expected one http(s):// webhook URL" in res.output, res.output
        assert "T000" not in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out3").exists()


def test_one_config_file_serves_report_and_slo(tmp_path: Path) -> None:
    """The nightly ConfigMap holds report's output flags (pushgateway, ...): `obsgap slo --config` on the same file
    takes it and ignores them."""
    config = tmp_path / "obsgap.yaml"
    config.write_text("pushgateway: http://pushgateway.monitoring:9091\nmetrics_file: /tmp/x.prom\nwindow: 30m\n")
    res = CliRunner().invoke(main, ["slo", "--config", str(config), "--logs", str(tmp_path)])
    assert "unknown key" not in res.output and res.exit_code == 2  # no SLO given: the one error left
    assert "obsgap slo needs SLOs" in res.output
    # with a Prometheus, the SLOs of its recording rules are looked for: an unreachable one is a source failure
    res = CliRunner().invoke(main, ["slo", "--config", str(config), "--prometheus-url", "http://127.0.0.1:1"])
    assert "unknown key" not in res.output and res.exit_code == 3
