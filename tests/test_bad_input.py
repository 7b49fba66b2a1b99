"""Bad input is an error with a place, never a clean result; interrupts and concurrent runs leave nothing behind."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from obsgap.cli import main
from obsgap.sources.dashboards import load_dashboards

# A line from istio.io's access-log task (DESIGN.md), saved as `kubectl logs POD > file` would: no CRI prefix.
ISTIO_IO_LINE = ('[2020-11-25T21:26:18.409Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 4 4 "-" '
                 '"curl/7.73.0-DEV" "84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "10.44.1.27:80" '
                 'outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 '
                 '- default')


def run_cli(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def assert_clean_error(res, *parts: str) -> None:  # type: ignore[no-untyped-def]
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    for part in parts:
        assert part in res.output, (part, res.output)


# --- section 2: inputs that yield nothing usable -------------------------------------------------------------

@pytest.mark.parametrize("name,text,place", [
    ("malformed.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n   labels: {}\n",
     "malformed.yaml:5:10: not valid YAML"),
    ("truncated.json", '{"apiVersion": "v1", "kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "a"',
     "truncated.json:1:"),
    ("values.yaml", "replicaCount: 2\nimage:\n  tag: latest\n", "holds no Kubernetes objects"),
    ("pods.yaml", 'Error from server (Forbidden): pods is forbidden: User "dev" cannot list resource "pods" in API '
                  'group "" at the cluster scope\n', "holds an error message, not objects"),
    ("empty.json", '{"apiVersion": "v1", "kind": "List", "items": [], "metadata": {"resourceVersion": ""}}',
     "is an empty List"),
])
def test_a_snapshot_that_yields_nothing_is_an_error_with_its_place(tmp_path: Path, name: str, text: str,
                                                                   place: str) -> None:
    (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    res = run_cli("report", "--kube-snapshot", str(tmp_path / name), "--out", str(out))
    assert_clean_error(res, place)
    assert not out.exists(), "a failed run leaves no output folder behind"
    if name == "truncated.json":
        assert "truncated?" in res.output


def test_a_snapshot_folder_kubectl_could_not_fill_says_what_kubectl_said(tmp_path: Path) -> None:
    """The README's snapshot command run without a cluster: every kind's file is empty, and kubectl's error is
    beside each. The error is kubectl's, not 'no .json files'."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    for resource in ("namespaces", "pods", "services"):
        (folder / f"{resource}.json").write_text("")
        (folder / f"{resource}.err").write_text("E1206 23:01:02.123456   4242 memcache.go:265] couldn't get current "
                                                "server API group list\nThe connection to the server localhost:8080 "
                                                "was refused - did you specify the right host or port?\n")
    res = run_cli("report", "--kube-snapshot", str(folder), "--out", str(tmp_path / "o"))
    assert_clean_error(res, "no Kubernetes objects found (kubectl said: The connection to the server localhost:8080")


def test_no_inputs_at_all_is_an_error(tmp_path: Path) -> None:
    assert_clean_error(run_cli("report", "--out", str(tmp_path / "o")), "nothing to read", "--prometheus-url")
    assert not (tmp_path / "o").exists()


def test_a_namespace_filter_matching_nothing_lists_the_namespaces(tmp_path: Path, realworld: Path) -> None:
    res = run_cli("report", "--kube-snapshot", str(realworld / "istio-analyzers" / "injection.yaml"),
                  "-n", "defualt", "--out", str(tmp_path / "o"))
    assert_clean_error(res, "--namespace defualt: no such namespace", "default", "busted", "foo")


def test_unattributed_log_lines_are_counted_per_file_and_said_loudly(tmp_path: Path, realworld: Path) -> None:
    logs = tmp_path / "pulled"
    logs.mkdir()
    (logs / "proxy.log").write_text((ISTIO_IO_LINE + "\n") * 7)
    (logs / "other.log").write_text((ISTIO_IO_LINE + "\n") * 3)
    out = tmp_path / "out"
    res = run_cli("report", "--kube-snapshot", str(realworld / "bookinfo" / "bookinfo.yaml"), "--logs", str(logs),
                  "--start", "2020-11-25T21:00:00Z", "--end", "2020-11-25T22:00:00Z", "--out", str(out))
    assert res.exit_code == 3, res.output  # the logs gave nothing to compare: that source failed
    assert "10 logged requests in 2 files could not be attributed to a pod" in res.output
    assert "none of the 10 logged requests could be attributed to a pod" in res.output
    assert f"{logs / 'proxy.log'} (7)" in res.output and f"{logs / 'other.log'} (3)" in res.output
    doc = json.loads((out / "findings.json").read_text())
    un = doc["sources"]["logs"]["unattributed"]
    assert un["requests"] == 10 and {f["path"]: f["requests"] for f in un["files"]} == {
        str(logs / "proxy.log"): 7, str(logs / "other.log"): 3}
    assert doc["status"] == "partial" and any("attributed to a pod" in r for r in doc["status_reasons"])
    html = (out / "report.html").read_text()
    banner = html.split('id="run-status"')[1].split("</section>")[0]
    assert "Partial run" in banner and "10 logged requests in 2 files could not be attributed" in banner
    summary = (out / "summary.md").read_text().splitlines()
    assert "PARTIAL RUN" in summary[0]  # the first line a chat shows
    assert any(line.startswith("> ") and "attributed to a pod" in line for line in summary[:6])


def test_a_dashboard_that_is_not_a_dashboard_is_exit_2_naming_the_place(tmp_path: Path, realworld: Path) -> None:
    """A file that is not JSON, an empty one, a JSON list, and dashboards whose panels, targets or templating have
    another shape than Grafana's: each is bad input, exit 2 with one line naming the file (and the line and column
    where JSON says them), never a traceback, and nothing is written. Beside Istio's Mesh Dashboard, a dashboard
    whose templating is Grafana's empty list is read; a folder without any dashboard gave nothing (partial, 3)."""
    bad = {"broken.json": ('{"title": "x", "panels": [', "broken.json:1:27: not a Grafana dashboard: not valid JSON"),
           "empty.json": ("", "empty.json:1:1: not a Grafana dashboard: not valid JSON"),
           "list.json": ("[]", "list.json: not a Grafana dashboard (a JSON list, not an object)"),
           "odd.json": (json.dumps({"title": "Odd", "templating": {"list": 5}, "panels": [
               {"title": "ok", "targets": []}, {"title": "t", "targets": 5}, {"title": "p", "panels": 5}, 7]}),
               "odd.json: not a Grafana dashboard: panel 't''s 'targets' is not a list; panel 'p''s 'panels' is not "
               "a list; a panel of the dashboard is not an object; templating's 'list' is not a list")}
    snapshot = realworld / "bookinfo" / "bookinfo.yaml"
    for name, (text, said) in bad.items():
        folder = tmp_path / name.removesuffix(".json")
        folder.mkdir()
        (folder / "mesh.json").write_text((realworld / "addons" / "istio-mesh-dashboard.gen.json").read_text())
        (folder / name).write_text(text)
        out = tmp_path / f"out-{name}"
        res = run_cli("report", "--kube-snapshot", str(snapshot), "--dashboards", str(folder), "--out", str(out))
        assert res.exit_code == 2, res.output
        errors = [line for line in res.stderr.splitlines() if line.startswith("obsgap:")]
        assert len(errors) == 1 and f"--dashboards {folder / said}" in errors[0], (name, res.stderr)
        assert not out.exists() and "Traceback" not in res.output
    fine = tmp_path / "fine"
    fine.mkdir()
    (fine / "templating.json").write_text(json.dumps({"title": "T", "templating": [], "panels": [
        {"title": "p", "targets": [{"expr": "sum(istio_requests_total)"}]}]}))
    (fine / "mesh.json").write_text((realworld / "addons" / "istio-mesh-dashboard.gen.json").read_text())
    out = tmp_path / "out-fine"
    res = run_cli("report", "--kube-snapshot", str(snapshot), "--dashboards", str(fine), "--out", str(out), "-o",
                  "none")
    alone, gaps = load_dashboards([fine / "mesh.json"])
    doc = json.loads((out / "findings.json").read_text())
    assert gaps == [] and doc["sources"]["kubernetes"]["dashboards"]["queries"] == len(alone) + 1
    assert not any("--dashboards" in r for r in doc["status_reasons"])
    empty = tmp_path / "none"
    empty.mkdir()
    res = run_cli("report", "--kube-snapshot", str(snapshot), "--dashboards", str(empty), "--out",
                  str(tmp_path / "out2"), "-o", "none")
    assert res.exit_code == 3 and "no Grafana dashboard (*.json) in it" in res.output


# --- section 3: configuration ----------------------------------------------------------------------------------

def test_config_unknown_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("windw: 3h\n")
    assert_clean_error(run_cli("report", "--config", str(cfg)), f"--config {cfg}: unknown key 'windw'",
                       "did you mean 'window'?")


def test_config_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("window: 3h\nlogs: [a, b\nout: x\n")
    assert_clean_error(run_cli("report", "--config", str(cfg)), f"--config {cfg}: not valid YAML: line 3, column 4")


def test_config_list_where_one_value_belongs_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("window: [1h, 2h]\n")
    assert_clean_error(run_cli("report", "--config", str(cfg)), "'window' takes one value")


def test_errors_name_where_the_value_came_from(tmp_path: Path, realworld: Path) -> None:
    snap = str(realworld / "bookinfo" / "bookinfo.yaml")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tolerance: abc\n")
    assert_clean_error(run_cli("report", "--config", str(cfg), "--kube-snapshot", snap),
                       f"--tolerance (from 'tolerance' in the config file {cfg})")
    cfg.write_text("window: ten minutes\n")
    assert_clean_error(run_cli("report", "--config", str(cfg), "--kube-snapshot", snap),
                       f"--window (from 'window' in the config file {cfg}) 'ten minutes' is not a duration")
    assert_clean_error(run_cli("report", "--kube-snapshot", snap, env={"OBSGAP_WINDOW": "zz"}),
                       "--window (from the environment variable OBSGAP_WINDOW) 'zz' is not a duration")
    assert_clean_error(run_cli("report", "--kube-snapshot", snap, env={"OBSGAP_MIN_REQUESTS": "many"}),
                       "--min-requests (from the environment variable OBSGAP_MIN_REQUESTS)")
    res = run_cli("report", "--kube-snapshot", snap, "--window", "zz")
    assert_clean_error(res, "--window 'zz' is not a duration")
    assert "from the" not in res.output


# --- section 4: outputs, locks, interrupts ---------------------------------------------------------------------

def test_baseline_and_out_are_checked_before_any_work(tmp_path: Path, realworld: Path) -> None:
    snap = str(realworld / "bookinfo" / "bookinfo.yaml")
    assert_clean_error(run_cli("report", "--kube-snapshot", snap, "--baseline", str(tmp_path / "nope.json"),
                               "--out", str(tmp_path / "o")), "--baseline", "no such file")
    assert not (tmp_path / "o").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_clean_error(run_cli("report", "--kube-snapshot", snap, "--out", str(blocker / "sub")),
                       f"--out {blocker / 'sub'}: cannot create it")
    assert_clean_error(run_cli("report", "--kube-snapshot", snap, "--out", str(blocker)), "--out", "is a file")


def test_a_second_run_the_same_day_keeps_the_first(tmp_path: Path, realworld: Path) -> None:
    snap = str(realworld / "bookinfo" / "bookinfo.yaml")
    root = tmp_path / "reports"
    first = run_cli("report", "--kube-snapshot", snap, "--out-root", str(root), "--end", "2026-11-24T02:00:00Z", "-q")
    second = run_cli("report", "--kube-snapshot", snap, "--out-root", str(root), "--end", "2026-11-24T02:00:00Z", "-q")
    assert first.exit_code == 3 and second.exit_code == 3  # bookinfo's manifests hold no pod: a partial run
    folders = sorted(p.name for p in root.iterdir())
    assert len(folders) == 2 and folders[0] == "2026-11-24" and folders[1].startswith("2026-11-24T")
    assert first.output.strip() == str(root / "2026-11-24" / "findings.json")
    assert second.output.strip() == str(root / folders[1] / "findings.json")
    assert all((root / f / "findings.json").is_file() and not (root / f / ".obsgap.lock").exists() for f in folders)


def test_a_concurrent_run_on_the_same_folder_fails_clearly(tmp_path: Path, realworld: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    with open(out / ".obsgap.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        res = run_cli("report", "--kube-snapshot", str(realworld / "bookinfo" / "bookinfo.yaml"), "--out", str(out))
    assert_clean_error(res, f"--out {out}: another obsgap run (pid 4242) is writing there")
    assert not (out / "findings.json").exists()


def _big_logs(folder: Path, files: int = 8, lines: int = 200_000) -> None:
    """Enough plain access-log lines to keep both log workers busy for a few seconds."""
    for i in range(files):
        pod = folder / f"shop_web-{i}_0000-{i}" / "istio-proxy"
        pod.mkdir(parents=True)
        line = "2020-11-25T21:26:18.409000000Z stdout F " + ISTIO_IO_LINE + "\n"
        (pod / "0.log").write_text(line * lines)


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended between the listing and the read
            continue
        kids.update(int(k) for k in text)
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupt_exits_128_plus_signal_and_leaves_nothing(tmp_path: Path, realworld: Path, sig: int,
                                                               code: int) -> None:
    logs, scratch, out = tmp_path / "logs", tmp_path / "tmp", tmp_path / "reports"
    scratch.mkdir()
    _big_logs(logs)
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.Popen([sys.executable, "-m", "obsgap", "report", "--kube-snapshot",
                             str(realworld / "bookinfo" / "bookinfo.yaml"), "--logs", str(logs),
                             "--start", "2020-11-25T21:00:00Z", "--end", "2020-11-25T22:00:00Z",
                             "--out-root", str(out)], env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the run should be reading logs with its workers"
    time.sleep(0.3)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole foreground process group
    else:
        proc.send_signal(sig)  # a CronJob's pod termination reaches the main process only
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"interrupted by {signal.Signals(sig).name}" in err
    time.sleep(0.5)
    assert not [w for w in workers if _alive(w)], "workers end with the parent"
    assert list(scratch.iterdir()) == [], "temporary log tables are removed"
    assert not out.exists() or list(out.rglob("*")) == [], "no half-written report"
