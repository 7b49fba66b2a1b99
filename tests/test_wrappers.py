"""Every way logs reach a user's disk, end to end: the same mesh read from kubelet's CRI files and from each
wrapper (Docker's json-file, Fluent Bit json_lines, kubectl --timestamps / --prefix, stern, plain `kubectl logs
POD > POD.log`) gives the same coverage, every line attributed to the right pod."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from obsgap import engine
from obsgap.config import RunPlan
from obsgap.model import Window
from obsgap.result import ScanResult
from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.logs.discover import LogPod
from obsgap.sources.logs.timestamps import parse_ts_ms
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import sources_json

SPEC = ScenarioSpec("wrap", (("app", True),),
                    (ServiceSpec("app", "client"), ServiceSpec("app", "api", replicas=2),
                     ServiceSpec("app", "billing", replicas=1, metrics_loss=0.5)),
                    (FlowSpec("app/client", "app/api", 8080, 1.0), FlowSpec("app/api", "app/billing", 8080, 0.5)),
                    end=datetime(2026, 11, 24, tzinfo=UTC), hours=0.5, scrape_interval_s=15, gzip_rotated=False)


def _containers(logs: Path) -> list[tuple[str, str, str, list[tuple[str, str, str]]]]:
    """(namespace, pod, container, [(timestamp, stream, message)]) of every CRI file the scenario wrote."""
    out = []
    for f in sorted((logs / "pods").glob("*/*/*.log")):
        ns, pod, _uid = f.parent.parent.name.split("_")
        lines = [tuple(line.split(" ", 3)) for line in f.read_text().splitlines()]
        out.append((ns, pod, f.parent.name, [(ts, stream, msg) for ts, stream, _flag, msg in lines]))
    return out


def fluent_bit(logs: Path, out: Path) -> tuple[LogPod, ...]:
    with (out / "fluent-bit.jsonl").open("w") as fh:
        for ns, pod, container, lines in _containers(logs):
            for ts, stream, msg in lines:
                fh.write(json.dumps({"date": parse_ts_ms(ts) / 1000, "log": msg + "\n", "stream": stream, "time": ts,
                                     "kubernetes": {"pod_name": pod, "namespace_name": ns,
                                                    "container_name": container, "labels": {"app": "x"}}}) + "\n")
    return ()


def docker_json_file(logs: Path, out: Path) -> tuple[LogPod, ...]:
    """Docker's json-file driver: /var/lib/docker/containers/<id>/<id>-json.log, named by --log-pod."""
    given = []
    for n, (ns, pod, container, lines) in enumerate(_containers(logs)):
        cid = f"{n + 1:064x}"
        (out / cid).mkdir()
        with (out / cid / f"{cid}-json.log").open("w") as fh:
            fh.writelines(json.dumps({"log": msg + "\n", "stream": stream, "time": ts}) + "\n"
                          for ts, stream, msg in lines)
        given.append(LogPod(f"*/{cid}/*-json.log", ns, pod, container))
    return tuple(given)


def kubectl_timestamps(logs: Path, out: Path) -> tuple[LogPod, ...]:
    given = []
    for ns, pod, container, lines in _containers(logs):
        name = f"{pod}.{container}.txt"
        (out / name).write_text("".join(f"{ts} {msg}\n" for ts, _s, msg in lines))
        given.append(LogPod(name, ns, pod, container))
    return tuple(given)


def kubectl_prefix(logs: Path, out: Path) -> tuple[LogPod, ...]:
    with (out / "all.log").open("w") as fh, (out / "all-stamped.log").open("w") as stamped:
        for n, (_ns, pod, container, lines) in enumerate(_containers(logs)):
            for ts, _s, msg in lines:
                (stamped if n % 2 else fh).write(f"[pod/{pod}/{container}] " + (f"{ts} " if n % 2 else "") + msg + "\n")
    return ()


def stern(logs: Path, out: Path) -> tuple[LogPod, ...]:
    with (out / "stern.log").open("w") as fh:
        for _ns, pod, container, lines in _containers(logs):
            fh.writelines(f"{pod} {container} {msg}\n" for _ts, _s, msg in lines)
    return ()


def plain_named_after_the_pod(logs: Path, out: Path) -> tuple[LogPod, ...]:
    for _ns, pod, _container, lines in _containers(logs):
        with (out / f"{pod}.log").open("a") as fh:  # kubectl logs POD --all-containers > POD.log
            fh.writelines(f"{msg}\n" for _ts, _s, msg in lines)
    return ()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("wrappers")
    built = build(SPEC, tmp / "wrap")
    server = serve_openmetrics(built.metrics, tmp / "wrap")
    yield built, server, tmp
    server.stop()


def _run(built, server, logs: Path, log_pods: tuple[LogPod, ...] = ()) -> ScanResult:  # type: ignore[no-untyped-def]
    return engine.run(RunPlan(window=Window(SPEC.start, SPEC.end), prometheus=PrometheusOptions(url=server.url),
                              kube_snapshots=(built.topology,), logs=(str(logs),), log_pods=log_pods)).result


WRAPPERS: dict[str, Callable[[Path, Path], tuple[LogPod, ...]]] = {
    "docker-json": docker_json_file, "fluent-bit": fluent_bit, "kubectl-timestamps": kubectl_timestamps,
    "kubectl-prefix": kubectl_prefix,
    "stern": stern, "plain": plain_named_after_the_pod}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_each_wrapper_gives_the_same_answer_as_kubelet_files(mesh, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    built, server, _tmp = mesh
    cri = _run(built, server, built.logs)
    out = tmp_path / name
    out.mkdir()
    log_pods = WRAPPERS[name](built.logs, out)
    result = _run(built, server, out, log_pods)
    logs = sources_json(result)["logs"]
    assert logs["unparsed"] == 0 and logs["unattributed"]["requests"] == 0, logs["unattributed"]
    assert logs["unattributed"]["unknown_pod_requests"] == 0
    if name != "plain":
        assert name in logs["wrappers"], logs["wrappers"]
    if name in ("docker-json", "plain"):  # converted to CRI lines for the columnar reader, every one of them
        assert logs["columnar_lines"] == logs["lines"] > 0, logs
    assert {(c.service, c.observed, c.mesh) for c in result.coverage} == \
        {(c.service, c.observed, c.mesh) for c in cri.coverage}
    assert {(f.check, f.cause, f.service) for f in result.findings} == {(f.check, f.cause, f.service)
                                                                         for f in cri.findings}
    assert ("envoy-bypass", "unexplained", "billing") in {(f.check, f.cause, f.service) for f in result.findings}
