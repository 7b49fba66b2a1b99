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

from obsgap.checks.histograms import BucketWasteEvidence
from obsgap.checks.traffic import TrafficEvidence
from obsgap.history import load_history
from obsgap.manifests import ManifestOptions, render_manifests
from obsgap.model import (
    CheckRun,
    ContractRow,
    CoverageRow,
    Finding,
    NameLink,
    ObjectRef,
    Severity,
    Suggestion,
    Window,
)
from obsgap.publish import write_outputs
from obsgap.render.html import render_html, safe_json
from obsgap.render.markdown import render_markdown
from obsgap.report.build import build_report
from obsgap.result import ScanResult
from obsgap.sources.reports import KubernetesReport, LogsReport, PrometheusReport, SourceReports, UnparsedFile

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


def test_demo_report_in_chromium(demo_run) -> None:  # type: ignore[no-untyped-def]
    run, tmp = demo_run
    out = tmp / "out"
    paths = write_outputs(run.result, out).paths
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


def hostile_result() -> ScanResult:
    """Every untrusted string the report shows, set to markup and script."""
    findings = tuple(Finding(
        check="envoy-bypass", severity=Severity.CRITICAL, title=h, detail=h, subject=f"s{i}", namespace=h,
        service=h, workload=h, cause=h, resource=h,
        evidence=TrafficEvidence.of(10, 1, h, **{h: h}),
        suggestion=Suggestion(h, h, doc_url=HOSTILE[3])) for i, h in enumerate(HOSTILE))
    return ScanResult(
        generated_at=END, window=Window(END - timedelta(hours=1), END),
        sources=SourceReports(PrometheusReport(HOSTILE[0], "partial", 1, HOSTILE),
                              KubernetesReport("snapshot", "partial", {HOSTILE[1]: 1}, HOSTILE),
                              LogsReport("ok", files=1, lines=2, parsed=1, unparsed=1, formats={HOSTILE[2]: 1},
                                         unparsed_by_file=(UnparsedFile(HOSTILE[1], 1, HOSTILE[0]),))),
        checks=(CheckRun("envoy-bypass", "error", HOSTILE[0]),),
        coverage=tuple(CoverageRow(h, h, 100, 10, 0, h) for h in HOSTILE), findings=findings,
        contract=tuple(ContractRow(h, h, h, (NameLink("caller", h, ObjectRef("address", h, h), h, True, h,
                                                      (findings[0].id,)),)) for h in HOSTILE))


def with_hostile_slos(result: ScanResult) -> ScanResult:
    """The same hostile strings as an SLO's name, service, origin and operator (files anyone may write)."""
    from obsgap.analysis.reconcile import reconcile
    from obsgap.evidence import CheckSettings, Evidence
    from obsgap.slo.assess import assess
    from obsgap.slo.spec import Measured, SloSpec

    rows = []
    ev = Evidence(result.window, CheckSettings())
    for i, h in enumerate(HOSTILE):
        spec = SloSpec("openslo", h, h, h, 0.99, h, "quantile", "", quantile="histogram_quantile(0.99, x_bucket)",
                       threshold=float(i), op=h)
        rows.append(assess(Measured(spec, error=h), ev, reconcile(ev)))
    return replace(result, slos=tuple(rows))


def hostile_report() -> str:
    return render_html(build_report(with_hostile_slos(hostile_result())))


def test_hostile_names_never_execute(tmp_path: Path) -> None:
    report = build_report(hostile_result())
    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    dom, errors = browse(page, tmp_path, "#expand")
    assert errors == []
    assert "PWNED" not in dom.split("<title>")[1].split("</title>")[0]
    assert "<img src=" not in dom and " onmouseover=" not in dom and 'href="javascript:' not in dom
    assert dom.count("<script") == 3  # the data block, plotly.js, the page script: nothing injected
    assert dom.count('class="finding sev-critical"') == len(HOSTILE)
    assert "&lt;script&gt;document.title" in dom  # shown as text
    md = render_markdown(report)
    assert "\u2028" not in md
    assert_inert_markdown(md, HOSTILE)


def assert_inert_markdown(md: str, hostile: list[str]) -> None:
    """summary.md reads the same in GitHub Markdown and in Slack: GitHub (CommonMark + GFM autolinks) makes no
    link, emphasis, heading or HTML of it, Slack sees none of the backslash escapes it would print, and every
    hostile string is shown whole inside a code span."""
    from markdown_it import MarkdownIt

    html = MarkdownIt("gfm-like").render(md)
    for tag in ("<a ", "<em>", "<strong>", "<h1", "<h2", "<script", "<img", "<del>", "<table"):
        assert tag not in html, tag
    assert not re.search(r"\\[^\s`]", re.sub(r"`[^`]*`", "", md))  # no backslash escapes outside code spans
    assert "**" not in md and "](" not in md
    for h in hostile:
        for word in re.split(r"\s+", h.replace("\u2028", " ").replace("\u2029", " ").strip()):
            if word and not re.fullmatch(r"[\w.,;:()'\"=+?%/-]*", word):
                assert f"`{word.replace('`', 'ʼ')}`" in md, word


def test_markdown_neutralises_markup_without_escapes() -> None:
    from obsgap.render.markdown import md

    assert md("40% of http_requests_total (p99)") == "40% of `http_requests_total` (p99)"
    assert md("ping @channel :fire: see https://evil.example/x") == \
        "ping `@channel` `:fire:` see `https://evil.example/x`"
    assert md("- starts like a list") == "`-` starts like a list" and md("a`b") == "`aʼb`"
    # punctuation stays outside the span, and a span the text already has is kept as written
    assert md("(--slo FILE|FOLDER, or x)") == "(--slo `FILE|FOLDER`, or x)"
    assert md("no `up` series (`*_bucket` series)") == "no `up` series (`*_bucket` series)"
    assert md("see `<script>`, then") == "see `<script>`, then"


def test_outputs_write_numbers_as_meant_and_terminal_text_inert() -> None:
    from obsgap.render.json_out import _clean
    from obsgap.render.terminal import safe

    assert _clean({"objective": 0.9990000000000001, "ratio": 1 / 3}) == {"objective": 0.999,
                                                                         "ratio": 0.333333333333}
    assert safe("api\x1b[2J\r\nx") == "api\\x1b[2J\\x0d\\x0ax"
    from obsgap.text import clean_line  # the SLO table's cells: the same characters, as spaces (bidi too)
    assert clean_line("slo\x1b[2J\u202egnp.exe") == "slo [2J gnp.exe"


def test_safe_json_cannot_close_the_script_element() -> None:
    text = safe_json({"x": "</script><script>alert(1)</script>", "y": "\u2028&"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": "</script><script>alert(1)</script>", "y": "\u2028&"}


def test_nightly_history_marks_new_resolved_and_trends(demo_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run, _ = demo_run
    root = tmp_path / "reports"
    first = replace(run.result, findings=run.result.findings[1:])  # yesterday: one finding fewer, one extra
    extra = Finding(check="port-name-convention", severity=Severity.INFO, title="old", detail="gone now",
                    subject="old/port", namespace="shop", service="frontend")
    waste = Finding(check="histogram-inf-saturation", severity=Severity.INFO, title="waste", detail="empty buckets",
                    subject="app_latency_seconds/waste/10", metric="app_latency_seconds",
                    evidence=BucketWasteEvidence((5.0, 10.0), 20000, 300000, 260000))
    write_outputs(replace(first, findings=(*first.findings, extra, waste)), root / "2026-11-23")
    write_outputs(run.result, root / "2026-11-24")
    doc = json.loads((root / "2026-11-24" / "findings.json").read_text())
    changes = {f["id"]: f["change"] for f in doc["findings"]}
    assert changes[run.result.findings[0].id] == "new"
    assert sum(1 for c in changes.values() if c == "open") == len(run.result.findings) - 1
    # the port check ran over shop: its finding is resolved; no family app_latency_seconds was read today, so the
    # bucket-waste finding about it is carried, not resolved
    assert [r["title"] for r in doc["resolved"]] == ["old"]
    assert [(r["title"], r["reason"]) for r in doc["not_rechecked"]] == [
        ("waste", "its evidence was not measured in this run")]
    md = (root / "2026-11-24" / "summary.md").read_text()
    assert "1 new, 1 resolved, 1 not re-checked" in md and "(new)" in md
    html = (root / "2026-11-24" / "report.html").read_text()
    assert "1 findings resolved since the last run" in html and "trend-chart" in html
    data = json.loads(html.split('id="obsgap-data">')[1].split("</script>")[0])
    assert data["trend_chart"] is not None and len(data["trend_chart"]["data"][0]["x"]) == 2  # yesterday and today
    # the trend's numbers: saturated histograms are the +Inf findings only, never the bucket-waste ones
    yesterday, today = load_history(root / "2026-11-25", None).runs
    for day, findings in ((yesterday, first.findings), (today, run.result.findings)):
        saturated = [f for f in findings if f.check == "histogram-inf-saturation" and "inf_share" in f.evidence]
        assert saturated and day.saturated == len(saturated)  # the waste finding of yesterday is not one
    assert today.critical == sum(1 for f in run.result.findings if f.severity.value == "critical")
    measured = [c for c in run.result.coverage if c.ratio is not None and c.observed and c.mesh is not None]
    logged = sum(c.observed or 0 for c in measured)
    assert today.coverage == pytest.approx(sum(min(c.mesh or 0, c.observed or 0) for c in measured) / logged)
    # an explicit --baseline wins over the sibling folders
    write_outputs(run.result, root / "2026-11-25", baseline=root / "2026-11-24")
    doc = json.loads((root / "2026-11-25" / "findings.json").read_text())
    assert all(f["change"] == "open" for f in doc["findings"]) and doc["resolved"] == []


def test_summary_is_short_and_complete(demo_run) -> None:  # type: ignore[no-untyped-def]
    run, _ = demo_run
    report = build_report(run.result)
    md = render_markdown(report)
    assert len(md.splitlines()) <= 22 and "Telemetry coverage" in md
    assert md.count("\n- ") == 11 and "more in report.html" in md  # ten findings and the "more" line
    first = report.top[0].finding
    assert f"(`report.html#finding-{first.id}`)" in md  # the anchor that opens that finding
    bullets = [line for line in md.splitlines() if line.startswith("- ") and "finding-" in line]
    assert bullets[0].startswith(f"- {first.severity.value.upper()} `{first.check}`")  # what to fix first, first
    assert_inert_markdown(md, [])


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
    with_log = render_manifests(ManifestOptions(pod_logs=True))
    assert "pods/log" in with_log


def test_manifests_work_as_printed() -> None:
    """The image names this version's release (the tag `make image` builds); the schedule has its timeZone; -n and
    --pushgateway reach the run's config, the ConfigMap holds it as a block scalar (readable in kubectl get -o
    yaml); --reports-reader prints a Pod with the claim mounted read-only."""
    from importlib.metadata import version

    from click.testing import CliRunner
    from kubernetes import client

    from obsgap.cli import main

    out = CliRunner().invoke(main, ["manifests", "-n", "shop", "-n", "payments", "--pushgateway",
                                    "http://pushgateway.monitoring:9091", "--time-zone", "Europe/Paris"])
    assert out.exit_code == 0, out.output
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout)}
    assert "-n/--namespace limits the nightly run to shop, payments" in out.stderr
    job = docs["CronJob"]["spec"]
    assert job["timeZone"] == "Europe/Paris"
    image = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/obsgap/obsgap:{version('obsgap')}"
    assert "  obsgap.yaml: |\n" in out.stdout
    config = yaml.safe_load(docs["ConfigMap"]["data"]["obsgap.yaml"])
    assert config["namespace"] == ["shop", "payments"] and config["pushgateway"].endswith(":9091")
    reader = CliRunner().invoke(main, ["manifests", "--reports-reader", "--reports-claim", "kept"])
    pod = client.ApiClient().deserialize(json.dumps(yaml.safe_load(reader.stdout)), "V1Pod",  # type: ignore[call-arg]
                                         "application/json")
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == "kept"
    assert pod.spec.volumes[0].persistent_volume_claim.read_only and pod.spec.containers[0].volume_mounts[0].read_only


def test_root_causes_group_the_demo_cause_pairs(demo_run) -> None:  # type: ignore[no-untyped-def]
    """The unlabelled namespace explains its bypass; a service called by pod IP explains its passthrough and
    undeclared-port findings. Fix first lists the roots (each once, its symptoms under it), findings.json and
    summary.md carry the same grouping."""
    from obsgap.render.json_out import result_dict

    run, _ = demo_run
    report = build_report(run.result)
    by = {(f.check, f.cause, f.namespace, f.service): f for f in run.result.findings}

    def one(check: str, cause: str | None, ns: str, svc: str | None) -> str:
        return by[(check, cause, ns, svc)].id

    groups = {root: {s.finding.id for s in views} for root, views in report.symptoms.items()}
    assert groups == {
        one("namespace-not-injected", None, "legacy", None): {
            one("envoy-bypass", "no-sidecar/namespace-not-enabled", "legacy", "billing")},
        one("call-address-not-fqdn", "pod-ip", "shop", "search"): {
            one("passthrough-traffic", None, "shop", "search"),
            one("port-missing-from-metrics", "port-not-declared", "shop", "search")},
        one("call-address-not-fqdn", "pod-ip", "payments", "payments"): {
            one("passthrough-traffic", None, "payments", "payments")}}
    ranked = [v.finding.id for v in report.ranked]
    symptoms = {i for ids in groups.values() for i in ids}
    assert not symptoms & set(ranked) and len(ranked) + len(symptoms) == len(run.result.findings)
    doc = result_dict(report)
    roots = {f["id"]: f["root"] for f in doc["findings"]}
    assert all(roots[i] == root for root, ids in groups.items() for i in (root, *ids))
    assert sum(1 for r in roots.values() if r is None) == len(roots) - len(groups) - len(symptoms)
    summary = render_markdown(report)
    assert "also explains 2: `passthrough-traffic`" in summary or "also explains 2: `port-missing" in summary


def test_root_rules_for_slos() -> None:
    """An SLO on a service whose requests bypass the mesh because its namespace is unlabelled is a symptom of that
    namespace; an SLO broken by a saturated latency histogram, of that histogram; an SLO broken otherwise, or on
    another service, stands alone."""
    from obsgap.report.roots import root_groups

    def f(check: str, severity: Severity, ns: str, svc: str | None, cause: str | None = None) -> Finding:
        return Finding(check=check, severity=severity, title=check, detail="", subject=f"{ns}/{svc}/{cause}",
                       namespace=ns, service=svc, cause=cause)

    unlabelled = f("namespace-not-injected", Severity.WARNING, "legacy", None)
    bypass = f("envoy-bypass", Severity.CRITICAL, "legacy", "billing", "no-sidecar/namespace-not-enabled")
    slo_billing = f("slo-untrustworthy", Severity.CRITICAL, "legacy", "billing", "selector-matches-nothing")
    saturated = f("histogram-inf-saturation", Severity.CRITICAL, "ai", "inference")
    slo_latency = f("slo-untrustworthy", Severity.CRITICAL, "ai", "inference", "latency-saturated")
    slo_other = f("slo-untrustworthy", Severity.WARNING, "ai", "inference", "threshold-not-a-bucket-bound")
    slo_elsewhere = f("slo-untrustworthy", Severity.WARNING, "legacy", "ledger", "selector-matches-nothing")
    groups = root_groups([unlabelled, bypass, slo_billing, saturated, slo_latency, slo_other, slo_elsewhere],
                         lambda _f: 0)
    assert groups == {unlabelled.id: (bypass.id, slo_billing.id), saturated.id: (slo_latency.id,)}
    # a bypass for another reason is not the namespace's doing, nor is a latency SLO its histogram breaks
    other_bypass = f("envoy-bypass", Severity.CRITICAL, "legacy", "ledger", "no-sidecar/inject-annotation")
    saturated_ledger = f("histogram-inf-saturation", Severity.CRITICAL, "legacy", "ledger")
    slo_ledger = f("slo-untrustworthy", Severity.CRITICAL, "legacy", "ledger", "latency-saturated")
    groups = root_groups([unlabelled, other_bypass, saturated_ledger, slo_ledger, slo_elsewhere], lambda _f: 0)
    assert groups == {saturated_ledger.id: (slo_ledger.id,)}


def test_coverage_chart_says_every_service_when_it_shows_every_one() -> None:
    from obsgap.model import CoverageRow
    from obsgap.render.figures import coverage_chart

    def rows(n: int) -> list[CoverageRow]:
        return [CoverageRow("ns", f"s{i}", observed=100, mesh=50) for i in range(n)]

    assert coverage_chart(rows(12), limit=30)["layout"]["title"]["text"].endswith("(every measured service)")
    assert coverage_chart(rows(40), limit=30)["layout"]["title"]["text"].endswith("(worst 30)")


def test_counts_in_words_agree_in_number() -> None:
    """One query, one finding, one service: never "(1 queries)" or "1 findings"."""
    from obsgap.report.notices import terminal_lines

    result = hostile_result()
    assert result.sources.prometheus.queries == 1
    assert "(1 query)" in render_html(build_report(result))
    assert any(line.startswith(f"{len(result.findings)} finding") for line in terminal_lines(result))
    one = replace(result, findings=result.findings[:1])
    assert "1 finding (" in "\n".join(terminal_lines(one))


def test_metrics_series_are_unique_and_zero_only_where_measured() -> None:
    """Two SLOs of one name from two files are two series (a duplicate would make the textfile collector drop the
    file); a check that ran but examined nothing, or did not run, gets no zero."""
    from obsgap.render.metrics import render_metrics

    doc = {"findings": [], "suppressed": [], "coverage": [], "status": "complete",
           "checks": [{"check": "envoy-bypass", "status": "ran", "examined": 3},
                      {"check": "port-name-convention", "status": "ran", "examined": 0},
                      {"check": "histogram-inf-saturation", "status": "skipped", "examined": None}],
           "slos": [{"slo": "requests-availability", "tool": "sloth", "origin": "a.yaml", "verdict": "biased"},
                    {"slo": "requests-availability", "tool": "sloth", "origin": "b.yaml", "verdict": "biased"}]}
    lines = [x for x in render_metrics(doc, 0).splitlines() if not x.startswith("#")]
    assert len(lines) == len(set(x.rsplit(" ", 1)[0] for x in lines))
    assert sum(1 for x in lines if x.startswith("obsgap_slo_trust{")) == 2
    zeros = {x.split('"')[1] for x in lines if x.startswith("obsgap_findings{")}
    assert zeros == {"envoy-bypass"}


def test_the_table_never_says_no_findings_when_nothing_ran() -> None:
    from obsgap.render.terminal import render_table

    result = hostile_result()
    idle = replace(result, findings=(), checks=tuple(replace(c, status="skipped", reason="needs metrics")
                                                      for c in result.checks))
    assert render_table(build_report(idle)).startswith("no check could run: nothing was measured")


def test_an_empty_name_contract_says_why() -> None:
    """The name-contract table is empty without a topology, with one that holds no Service, and where no Service is
    named beyond its own name: three different things, each said as itself (it said "No topology given." to all)."""
    from obsgap.render.html import _contract_empty

    def kube(status: str, objects: dict[str, int]) -> dict[str, object]:
        return {"sources": {"kubernetes": {"status": status, "objects": objects}}}

    assert _contract_empty(kube("not-configured", {})) == "No topology given."
    assert _contract_empty(kube("empty", {"Namespace": 1})) == "The topology holds no Service."
    assert _contract_empty(kube("ok", {"Service": 2, "Pod": 2})).startswith("No Service is named beyond its own")
