"""The report: HTML in a real headless Chromium (elements, console, hostile data), summary.md, history, manifests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from obsgap.history import load_history
from obsgap.manifests import ManifestOptions, render_manifests
from obsgap.model import (
    CheckRun,
    CoverageRow,
    Finding,
    ScanResult,
    Severity,
    SourceReport,
    Suggestion,
    Window,
)
from obsgap.render.html import render_html, safe_json
from obsgap.render.markdown import render_markdown
from obsgap.render.write import write_outputs
from obsgap.scenario.demo import demo_spec
from obsgap.scenario.simulate import build
from tests.helpers import run_scenario

END = datetime(2026, 11, 24, tzinfo=UTC)
HOSTILE = [
    '<script>document.title="PWNED"</script>',
    '"><img src=x onerror="document.title=\'PWNED\'">',
    "\"onmouseover=document.title='PWNED' x=\"",
    "javascript:document.title='PWNED'",
    "line\u2028separator\u2029</script><script>document.title='PWNED'</script>",
    "{{7*7}}${7*7}<b>bold</b>",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed (Debian package `chromium`); `make test` installs it", pytrace=False)
    return path


def browse(page: Path, tmp: Path, fragment: str = "", screenshot: Path | None = None) -> tuple[str, list[str]]:
    """(DOM after scripts ran, console/CSP errors) from headless Chromium."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'chrome'}",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000", "--window-size=1400,2000"]
    url = page.resolve().as_uri() + fragment
    dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False)
    if screenshot is not None:
        subprocess.run([*args, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=False)
    errors = [line for line in dom.stderr.splitlines()
              if "CONSOLE" in line or "Content Security Policy" in line or "Uncaught" in line]
    return dom.stdout, errors


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("report")
    spec = demo_spec(END, hours=0.5)
    run = run_scenario(spec, tmp, built=build(spec, tmp / "demo"))
    return run, tmp


def test_demo_report_in_chromium(demo_run) -> None:  # type: ignore[no-untyped-def]
    run, tmp = demo_run
    out = tmp / "out"
    paths = write_outputs(run.result, out)
    assert [p.name for p in paths] == ["findings.json", "report.html", "summary.md"]
    html = (out / "report.html").read_text()
    assert html.count("Content-Security-Policy") == 1 and "'unsafe-eval'" not in html
    assert html.count("plotly.js v") == 1  # embedded once, not per figure
    assert not re.search(r'<script[^>]+src="https?:', html) and "<link" not in html  # nothing fetched
    shot = tmp / "report.png"
    dom, errors = browse(out / "report.html", tmp, "#expand", shot)
    assert errors == []
    assert 'data-rendered="1"' in dom
    n = len(run.result.findings)
    assert dom.count('class="finding sev-') == min(n, 50)
    for check in ("envoy-bypass", "histogram-inf-saturation", "job-name-mismatch"):
        assert f">{check}<" in dom
    assert dom.count('class="main-svg"') >= 3  # coverage chart plus charts of opened findings
    assert dom.count('class="chip broken"') >= 3  # broken name-contract links highlighted
    assert "probe/scrape requests left out" in dom
    assert "Telemetry coverage" in dom and re.search(r'class="value">\d+\.\d%<', dom)
    for control in ("f-severity", "f-check", "f-namespace", "f-sort", "f-group", "f-text"):
        assert f'id="{control}"' in dom
    assert shot.exists() and shot.stat().st_size > 50_000


def test_hostile_names_never_execute(tmp_path: Path) -> None:
    findings = tuple(Finding(
        check="envoy-bypass", severity=Severity.CRITICAL, title=h, detail=h, subject=f"s{i}", namespace=h,
        service=h, workload=h, cause=h, resource=h, evidence={"log_requests": 10, "mesh_requests": 1, h: h},
        suggestion=Suggestion(h, h, doc_url=HOSTILE[3])) for i, h in enumerate(HOSTILE))
    result = ScanResult(
        generated_at=END, window=Window(END - timedelta(hours=1), END),
        sources=SourceReport({"url": HOSTILE[0], "status": "partial", "queries": 1, "warnings": HOSTILE},
                             {"mode": "snapshot", "objects": {HOSTILE[1]: 1}, "gaps": HOSTILE},
                             {"files": 1, "lines": 2, "parsed": 1, "unparsed": 1, "formats": {HOSTILE[2]: 1},
                              "unparsed_by_file": [{"path": HOSTILE[1], "lines": 1, "sample": HOSTILE[0]}]}),
        checks=(CheckRun("envoy-bypass", "error", HOSTILE[0]),),
        coverage=tuple(CoverageRow(h, h, 100, 10, 0, h) for h in HOSTILE), findings=findings,
        extras={"name_contract": [{"namespace": h, "service": h, "fqdn": h, "broken": 1, "links": [
            {"kind": "caller", "name": h, "how": h, "broken": True, "note": h}]} for h in HOSTILE]})
    page = tmp_path / "report.html"
    page.write_text(render_html(result))
    dom, errors = browse(page, tmp_path, "#expand")
    assert errors == []
    assert "PWNED" not in dom.split("<title>")[1].split("</title>")[0]
    assert "<img src=" not in dom and " onmouseover=" not in dom and 'href="javascript:' not in dom
    assert dom.count("<script") == 3  # the data block, plotly.js, the page script: nothing injected
    assert dom.count('class="finding sev-critical"') == len(HOSTILE)
    assert "&lt;script&gt;document.title" in dom  # shown as text
    md = render_markdown(result)
    assert "<script>" not in md and "\u2028" not in md


def test_safe_json_cannot_close_the_script_element() -> None:
    text = safe_json({"x": "</script><script>alert(1)</script>", "y": "\u2028&"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": "</script><script>alert(1)</script>", "y": "\u2028&"}


def test_nightly_history_marks_new_resolved_and_trends(demo_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run, _ = demo_run
    root = tmp_path / "reports"
    first = replace(run.result, findings=run.result.findings[1:])  # yesterday: one finding fewer, one extra
    extra = Finding(check="port-name-convention", severity=Severity.INFO, title="old", detail="gone now",
                    subject="old/port")
    waste = Finding(check="histogram-inf-saturation", severity=Severity.INFO, title="waste", detail="empty buckets",
                    subject="app_latency_seconds/waste/10", metric="app_latency_seconds",
                    evidence={"empty_buckets": [5.0, 10.0], "series": 20000})
    write_outputs(replace(first, findings=(*first.findings, extra, waste)), root / "2026-11-23")
    write_outputs(run.result, root / "2026-11-24")
    doc = json.loads((root / "2026-11-24" / "findings.json").read_text())
    changes = {f["id"]: f["change"] for f in doc["findings"]}
    assert changes[run.result.findings[0].id] == "new"
    assert sum(1 for c in changes.values() if c == "open") == len(run.result.findings) - 1
    assert sorted(r["title"] for r in doc["resolved"]) == ["old", "waste"]
    md = (root / "2026-11-24" / "summary.md").read_text()
    assert "1 new, 2 resolved" in md and "(new)" in md
    html = (root / "2026-11-24" / "report.html").read_text()
    assert "2 findings resolved since the last run" in html and "trend-chart" in html
    data = json.loads(html.split('id="obsgap-data">')[1].split("</script>")[0])
    assert data["trend_chart"] is not None and len(data["trend_chart"]["data"][0]["x"]) == 2  # yesterday and today
    # the trend's numbers: saturated histograms are the +Inf findings only, never the bucket-waste ones
    yesterday, today = load_history(root / "2026-11-25", None).runs
    for day, findings in ((yesterday, first.findings), (today, run.result.findings)):
        saturated = [f for f in findings if f.check == "histogram-inf-saturation" and "inf_share" in f.evidence]
        assert saturated and day["saturated"] == len(saturated)  # the waste finding of yesterday is not one
    assert today["critical"] == sum(1 for f in run.result.findings if f.severity.value == "critical")
    logged = sum(c.log_requests for c in run.result.coverage)
    assert today["coverage"] == pytest.approx(sum(min(c.mesh_requests, c.log_requests)
                                                  for c in run.result.coverage) / logged)
    # an explicit --baseline wins over the sibling folders
    write_outputs(run.result, root / "2026-11-25", baseline=root / "2026-11-24")
    doc = json.loads((root / "2026-11-25" / "findings.json").read_text())
    assert all(f["change"] == "open" for f in doc["findings"]) and doc["resolved"] == []


def test_summary_is_short_and_complete(demo_run) -> None:  # type: ignore[no-untyped-def]
    run, _ = demo_run
    md = render_markdown(run.result)
    assert len(md.splitlines()) <= 20 and "Telemetry coverage" in md
    assert md.count("\n- ") == 11 and "more in report.html" in md  # ten findings and the "more" line
    first = run.result.findings[0]
    assert f"](report.html#finding-{first.id})" in md  # the report opens that finding


def test_manifests_parse_with_the_kubernetes_models() -> None:
    from kubernetes import client

    text = render_manifests(ManifestOptions(logs_claim="shipped-logs", reports_claim="obsgap-reports"))
    docs = list(yaml.safe_load_all(text))
    api = client.ApiClient()
    kinds = {}
    for doc in docs:
        model = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount", "ClusterRole": "V1ClusterRole",
                 "ClusterRoleBinding": "V1ClusterRoleBinding", "ConfigMap": "V1ConfigMap",
                 "CronJob": "V1CronJob"}[doc["kind"]]
        obj = api.deserialize(json.dumps(doc), model, "application/json")  # type: ignore[call-arg]
        kinds[doc["kind"]] = obj
    role = kinds["ClusterRole"]
    verbs = {v for r in role.rules for v in r.verbs}
    assert verbs == {"get", "list", "watch"}  # read-only: no writes, no exec
    resources = {res for r in role.rules for res in r.resources}
    assert "secrets" not in resources and "pods/exec" not in resources and "pods/log" not in resources
    (cm,) = [r for r in role.rules if "configmaps" in r.resources]
    assert cm.resource_names == ["istio"] and cm.verbs == ["get"]  # the MeshConfig only
    assert {"virtualservices", "destinationrules", "pods", "endpointslices"} <= resources
    job = kinds["CronJob"]
    assert job.spec.schedule == "0 2 * * *"
    container = job.spec.job_template.spec.template.spec.containers[0]
    assert "--logs" in container.args and container.security_context.allow_privilege_escalation is False
    config = yaml.safe_load(kinds["ConfigMap"].data["obsgap.yaml"])
    assert config["prometheus_url"].startswith("http")
    with_log = render_manifests(ManifestOptions(pods_log=True))
    assert "pods/log" in with_log
