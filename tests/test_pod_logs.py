"""--pod-logs: logs read through the Kubernetes API with the official client, against a loopback API server that
serves pods/log as kubelet does, and a real Prometheus. The same mesh read from kubelet's files is the reference."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from obsgap import engine
from obsgap.config import RunPlan
from obsgap.model import Window
from obsgap.result import ScanResult
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.kube.live import LiveOptions
from obsgap.sources.logs.podlogs import PodLogOptions
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import sources_json
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
    return ({(c.service, c.observed, c.mesh) for c in result.coverage},
            {(f.check, f.cause, f.service) for f in result.findings})


def test_pod_logs_give_the_answer_of_kubelets_files(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, files = mesh
    cluster = cluster_of_scenario(built.topology, built.logs)
    with serving(cluster, tmp_path) as kubeconfig:
        result, failures = _run(server, kubeconfig)
    assert failures == []
    assert _answer(result) == _answer(files)
    assert ("envoy-bypass", "unexplained", "billing") in _answer(result)[1]
    pod_logs = sources_json(result)["logs"]["pod_logs"]
    containers = sum(1 for o in cluster.objects if o["kind"] == "Pod" for _ in o["spec"]["containers"])
    assert pod_logs["containers"] == pod_logs["read"] == containers and pod_logs["gaps_total"] == 0
    logs = [s for s in cluster.seen if s.endswith("/log") or "/log?" in s]
    assert len(logs) == containers
    # timestamps from kubelet, from a little before the window's start
    assert all("timestamps=true" in s and "sinceTime=2026-11-23T23%3A25%3A00Z" in s for s in logs), logs[0]
    assert sources_json(result)["logs"]["unattributed"]["requests"] == 0


def test_a_forbidden_pod_is_a_gap_of_that_pod_and_a_byte_limit_is_reported(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, server, _files = mesh
    cluster = cluster_of_scenario(built.topology, built.logs)
    client_pod = next(o["metadata"]["name"] for o in cluster.objects
                      if o["kind"] == "Pod" and o["metadata"]["name"].startswith("client"))
    cluster.failing[("app", client_pod)] = 403
    with serving(cluster, tmp_path) as kubeconfig:
        result, failures = _run(server, kubeconfig, PodLogOptions(limit_bytes=20_000))
    pod_logs = sources_json(result)["logs"]["pod_logs"]
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
    assert set(sources_json(result)["logs"]["formats"]) <= {"envoy-text"}


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




def _busy(cluster, pod_prefix: str, share: float) -> str:  # type: ignore[no-untyped-def]
    """kubelet keeps only the last `share` of this pod's containers' logs (its current file)."""
    pod = next(o["metadata"]["name"] for o in cluster.objects
               if o["kind"] == "Pod" and o["metadata"]["name"].startswith(pod_prefix))
    for (ns, name, container, _prev), lines in cluster.logs.items():
        if name == pod:
            size = sum(len(f"{ts} {m}\n".encode()) for ts, m in lines)
            cluster.busy_tail_bytes[(ns, name, container)] = int(size * share)
    return pod


def test_truncated_logs_make_no_false_gap_and_a_real_gap_is_still_found(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One api pod (healthy) and the billing pod (half of its requests missing from the metrics) have kubelet
    serving only the last third of their logs: compared with the whole window's metrics, api would look
    over-counted and billing's gap would hide; compared over the part the logs cover, neither happens."""
    built, server, files = mesh
    cluster = cluster_of_scenario(built.topology, built.logs)
    api_pod = _busy(cluster, "api", 1 / 3)
    billing_pod = _busy(cluster, "billing", 1 / 3)
    with serving(cluster, tmp_path) as kubeconfig:
        result, failures = _run(server, kubeconfig)
    assert failures == []
    found = {(f.check, f.cause, f.service) for f in result.findings}
    assert found == _answer(files)[1]  # the same findings as from the complete files
    billing = next(f for f in result.findings if f.check == "envoy-bypass" and f.service == "billing")
    ratio = billing.evidence["ratio"]
    assert 0.35 <= ratio <= 0.65, ratio  # metrics_loss 0.5, measured over the covered third
    interval = billing.evidence["interval"]
    assert interval["pods"] == [billing_pod]
    start, end = (datetime.fromisoformat(interval[k].replace("Z", "+00:00")) for k in ("start", "end"))
    assert end == SPEC.end and 8 * 60 <= (end - start).total_seconds() <= 11 * 60  # about a third of 30 min
    assert "logs cover" in billing.detail
    rows = {c.service: c for c in result.coverage}
    assert re.match(r"logs cover (9|10) m of 30 m for 1 of 2 pods \(only its later logs were kept",
                    rows["api"].logs_cover)
    # where callers saw the whole window, the row compares with them; the partial server logs are said
    assert rows["billing"].logs_cover.startswith("logs cover") and 0.4 <= rows["billing"].ratio <= 0.6
    assert rows["api"].ratio is not None and 0.9 <= rows["api"].ratio <= 1.1
    # one range query for the covered bins, whatever the number of pods
    assert sources_json(result)["prometheus"]["range_query_files"] == ["mesh_requests_by_pod_over_time"]
    assert api_pod != billing_pod


def test_partial_pods_are_listed_with_their_interval(mesh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """sources.logs.partial_pods names each pod compared over part of the window, with that part and why."""
    built, server, _files = mesh
    cluster = cluster_of_scenario(built.topology, built.logs)
    _busy(cluster, "api", 1 / 3)
    _busy(cluster, "billing", 1 / 3)
    with serving(cluster, tmp_path) as kubeconfig:
        result, _ = _run(server, kubeconfig)
    partial = sources_json(result)["logs"].get("partial_pods") or []
    assert len(partial) == 2 and all(480 <= p["covered_seconds"] <= 660 for p in partial)
    assert all(p["end"] == "2026-11-24T00:00:00Z" and "kubelet rotation" in p["why"] for p in partial)


def test_the_cronjob_runs_as_printed(mesh, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`obsgap manifests` with its defaults: the CronJob's exact command line and ConfigMap, run in-process with the
    pod's service account (token, CA, KUBERNETES_SERVICE_*) against the loopback API server over TLS, logs through
    pods/log, and a real Prometheus; the reports land on the claim the manifests create, writable by fsGroup."""
    import yaml
    from click.testing import CliRunner
    from kubernetes import client
    from kubernetes.config import incluster_config

    from obsgap.cli import main
    from obsgap.manifests import ManifestOptions, render_manifests
    from tests.kube_api import serving_in_cluster

    built, server, files = mesh
    docs = list(yaml.safe_load_all(render_manifests(ManifestOptions(prometheus_url=server.url, window="30m"))))
    api = client.ApiClient()
    models = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount", "ClusterRole": "V1ClusterRole",
              "ClusterRoleBinding": "V1ClusterRoleBinding", "ConfigMap": "V1ConfigMap",
              "PersistentVolumeClaim": "V1PersistentVolumeClaim", "CronJob": "V1CronJob"}
    objs = {d["kind"]: api.deserialize(json.dumps(d), models[d["kind"]], "application/json")  # type: ignore[call-arg]
            for d in docs}
    rules = objs["ClusterRole"].rules
    assert any(r.resources == ["pods/log"] and r.verbs == ["get"] for r in rules)
    assert {v for r in rules for v in r.verbs} == {"get", "list", "watch"}
    pod = objs["CronJob"].spec.job_template.spec.template.spec
    assert pod.security_context.fs_group == pod.containers[0].security_context.run_as_user == 65532
    (reports,) = [v for v in pod.volumes if v.name == "reports"]
    assert reports.persistent_volume_claim.claim_name == objs["PersistentVolumeClaim"].metadata.name
    args = pod.containers[0].args
    assert args[:2] == ["obsgap", "report"] and "--pod-logs" in args and "--in-cluster" in args

    config = tmp_path / "obsgap.yaml"
    config.write_text(objs["ConfigMap"].data["obsgap.yaml"])
    out_root = tmp_path / "reports"
    argv = [{"/etc/obsgap/obsgap.yaml": str(config), "/reports": str(out_root)}.get(a, a) for a in args[1:]]
    cluster = cluster_of_scenario(built.topology, built.logs)
    cluster.rules = next(d for d in docs if d["kind"] == "ClusterRole")["rules"]  # the printed role, enforced
    with serving_in_cluster(cluster, tmp_path) as sa:
        monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(sa.token))
        monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(sa.ca))
        env = {"KUBERNETES_SERVICE_HOST": sa.host, "KUBERNETES_SERVICE_PORT": str(sa.port),
               "OBSGAP_END": SPEC.end.isoformat().replace("+00:00", "Z")}
        res = CliRunner().invoke(main, argv, env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output  # fail_on: never
    (folder,) = out_root.iterdir()
    doc = json.loads((folder / "findings.json").read_text())
    assert {(f["check"], f["cause"], f["service"]) for f in doc["findings"]} == _answer(files)[1]
    assert doc["sources"]["kubernetes"]["mode"] == "live" and doc["sources"]["logs"]["pod_logs"]["gaps_total"] == 0
    assert not [g for g in doc["sources"]["kubernetes"]["gaps"] if "forbidden" in g]  # the role lets it read all
    assert any("/log?" in s for s in cluster.seen)


def test_pod_logs_are_read_in_batches_that_bound_the_disk(mesh, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Fetched logs are read and removed batch by batch: never the whole cluster's logs on disk at once."""
    from obsgap.sources.logs import podlogs

    built, server, files = mesh
    monkeypatch.setattr(podlogs, "BATCH_BYTES", 150_000)
    calls: list[int] = []
    from obsgap.sources.logs import source

    real = source.read_files

    def spy(paths, reading, ctx, parts, prefix):  # type: ignore[no-untyped-def]
        calls.append(len(paths))
        fetched = next(d for d in Path(paths[0]).parents if d.name == "pods").parent
        on_disk = list(fetched.rglob("*.log"))  # the fetch folder now: this batch only
        assert len(on_disk) == len(paths)
        return real(paths, reading, ctx, parts, prefix)

    monkeypatch.setattr(source, "read_files", spy)
    cluster = cluster_of_scenario(built.topology, built.logs)
    with serving(cluster, tmp_path) as kubeconfig:
        result, failures = _run(server, kubeconfig, PodLogOptions(concurrency=2))
    assert failures == [] and len(calls) >= 2 and sum(calls) == len(cluster.logs)
    assert _answer(result) == _answer(files)
