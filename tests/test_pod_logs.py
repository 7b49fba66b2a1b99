"""--pod-logs: logs read through the Kubernetes API with the official client, against a loopback API server that
serves pods/log as kubelet does, and a real Prometheus. The same mesh read from kubelet's files is the reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from obsgap import engine
from obsgap.config import RunPlan
from obsgap.model import ScanResult, Window
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.kube.live import LiveOptions
from obsgap.sources.logs.podlogs import PodLogOptions
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import serve_openmetrics
from tests.kube_api import cluster_of_scenario, serving

SPEC = ScenarioSpec("podlogs", (("app", True),),
                    (ServiceSpec("app", "client"), ServiceSpec("app", "api", replicas=2),
                     ServiceSpec("app", "billing", replicas=1, metrics_loss=0.5)),
                    (FlowSpec("app/client", "app/api", 8080, 1.0), FlowSpec("app/api", "app/billing", 8080, 0.5)),
                    end=datetime(2026, 11, 24, tzinfo=UTC), hours=0.5, scrape_interval_s=15, gzip_rotated=False)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("podlogs")
    built = build(SPEC, tmp / "mesh")
    server = serve_openmetrics(built.metrics, tmp / "mesh")
    files = engine.run(RunPlan(window=Window(SPEC.start, SPEC.end), prometheus=PrometheusOptions(url=server.url),
                               kube_snapshots=(built.topology,), logs=(str(built.logs),))).result
    yield built, server, files
    server.stop()


def _run(server: Any, kubeconfig: Path, opts: PodLogOptions | None = None) -> tuple[ScanResult, list[str]]:
    outcome = engine.run(RunPlan(window=Window(SPEC.start, SPEC.end), prometheus=PrometheusOptions(url=server.url),
                                 kube_live=LiveOptions(str(kubeconfig), "test"), pod_logs=opts or PodLogOptions()))
    return outcome.result, outcome.source_failures


def _answer(result: ScanResult) -> tuple[set[Any], set[Any]]:
    return ({(c.service, c.log_requests, c.mesh_requests) for c in result.coverage},
            {(f.check, f.cause, f.service) for f in result.findings})


def test_pod_logs_give_the_answer_of_kubelets_files(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, files = mesh
    cluster = cluster_of_scenario(built.topology, built.logs)
    with serving(cluster, tmp_path) as kubeconfig:
        result, failures = _run(server, kubeconfig)
    assert failures == []
    assert _answer(result) == _answer(files)
    assert ("envoy-bypass", "unexplained", "billing") in _answer(result)[1]
    pod_logs = result.sources.logs["pod_logs"]
    containers = sum(1 for o in cluster.objects if o["kind"] == "Pod" for _ in o["spec"]["containers"])
    assert pod_logs["containers"] == pod_logs["read"] == containers and pod_logs["gaps_total"] == 0
    logs = [s for s in cluster.seen if s.endswith("/log") or "/log?" in s]
    assert len(logs) == containers
    # timestamps from kubelet, from a little before the window's start
    assert all("timestamps=true" in s and "sinceTime=2026-11-23T23%3A25%3A00Z" in s for s in logs), logs[0]
    assert result.sources.logs["unattributed"]["requests"] == 0


def test_a_forbidden_pod_is_a_gap_of_that_pod_and_a_byte_limit_is_reported(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, _files = mesh
    cluster = cluster_of_scenario(built.topology, built.logs)
    client_pod = next(o["metadata"]["name"] for o in cluster.objects
                      if o["kind"] == "Pod" and o["metadata"]["name"].startswith("client"))
    cluster.failing[("app", client_pod)] = 403
    with serving(cluster, tmp_path) as kubeconfig:
        result, failures = _run(server, kubeconfig, PodLogOptions(limit_bytes=20_000))
    pod_logs = result.sources.logs["pod_logs"]
    assert pod_logs["gaps_total"] == 2  # its app container and its sidecar
    assert all(g["container"].startswith(f"app/{client_pod}/") and "HTTP 403" in g["error"]
               and "forbidden" in g["error"] for g in pod_logs["gaps"])
    assert pod_logs["cut"] and all(c["bytes"] >= 20_000 for c in pod_logs["cut"])
    assert failures == [] and result.status == "partial"
    assert any("pod logs" in r and "could not be read" in r for r in result.status_reasons)


def test_only_the_chosen_containers_are_read(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, _files = mesh
    cluster = cluster_of_scenario(built.topology, built.logs)
    with serving(cluster, tmp_path) as kubeconfig:
        result, _failures = _run(server, kubeconfig, PodLogOptions(containers=("istio-proxy",)))
    asked = {s.split("container=")[1].split("&")[0] for s in cluster.seen if "/log?" in s}
    assert asked == {"istio-proxy"}
    assert set(result.sources.logs["formats"]) <= {"envoy-text"}


def test_a_restarted_container_is_read_from_its_previous_run_too(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, files = mesh
    cluster = cluster_of_scenario(built.topology, built.logs)
    pod = next(o for o in cluster.objects if o["kind"] == "Pod" and o["metadata"]["name"].startswith("billing"))
    name, app = pod["metadata"]["name"], pod["spec"]["containers"][0]["name"]
    lines = cluster.logs.pop(("app", name, app, False))
    cut = len(lines) // 2
    restart_at = lines[cut][0]
    cluster.logs[("app", name, app, True)] = lines[:cut]
    cluster.logs[("app", name, app, False)] = lines[cut:]
    pod["status"]["containerStatuses"] = [{"name": app, "restartCount": 1, "lastState": {
        "terminated": {"exitCode": 137, "finishedAt": restart_at[:19] + "Z"}}}]
    with serving(cluster, tmp_path) as kubeconfig:
        result, _failures = _run(server, kubeconfig)
    assert any("previous=true" in s and f"/pods/{name}/log" in s for s in cluster.seen)
    assert _answer(result) == _answer(files)  # both runs' lines, none twice


def test_pod_logs_need_a_live_cluster(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from obsgap.cli import main

    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}]}))
    res = CliRunner().invoke(main, ["report", "--kube-snapshot", str(snap), "--pod-logs", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code == 2 and "--pod-logs reads logs through the Kubernetes API" in res.output


