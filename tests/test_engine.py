"""The engine's order of work: Prometheus answers while the logs are read, and only once the log workers are forked
(a process forked while another thread runs can deadlock on a lock that thread held)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from obsgap.scenario.simulate import build
from obsgap.scenario.spec import FlowSpec, ScenarioSpec, ServiceSpec
from obsgap.sources.logs.source import LogFileSource
from obsgap.sources.metrics import MetricsSource
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import run_scenario

SPEC = ScenarioSpec(
    "overlap", (("shop", True),),
    (ServiceSpec("shop", "web"), ServiceSpec("shop", "cart"), ServiceSpec("shop", "stock")),
    (FlowSpec("external", "shop/web", 8080, 2.0), FlowSpec("shop/web", "shop/cart", 8080, 1.5),
     FlowSpec("shop/cart", "shop/stock", 8080, 1.0)),
    end=datetime(2026, 11, 24, tzinfo=UTC), hours=1.0, scrape_interval_s=30)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("overlap")
    built = build(SPEC, tmp / SPEC.name)
    server = serve_openmetrics(built.metrics, tmp / SPEC.name)
    yield built, server, tmp
    server.stop()


def test_prometheus_is_queried_while_the_logs_are_read_after_the_workers_fork(  # type: ignore[no-untyped-def]
        mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    built, server, tmp = mesh
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # two log workers whatever this machine has
    seen: dict[str, Any] = {}
    metrics_read, logs_read = MetricsSource.read, LogFileSource.read

    def metrics(self: MetricsSource, ctx: Any) -> Any:
        seen.update(thread=threading.current_thread().name, workers=len(multiprocessing.active_children()),
                    metrics_started=time.monotonic())
        return metrics_read(self, ctx)

    def logs(self: LogFileSource, ctx: Any) -> Any:
        try:
            return logs_read(self, ctx)
        finally:
            seen["logs_done"] = time.monotonic()

    monkeypatch.setattr(MetricsSource, "read", metrics)
    monkeypatch.setattr(LogFileSource, "read", logs)
    overlapped = run_scenario(SPEC, tmp / "overlapped", built=built, server=server)
    assert seen["thread"] == "obsgap-metrics" and seen["workers"] == 2
    assert seen["metrics_started"] < seen["logs_done"]
    # the same findings and coverage as a run that reads the metrics alone (no logs, so no thread)
    seen.clear()
    alone = run_scenario(SPEC, tmp / "alone", built=built, server=server, logs=False)
    assert seen["thread"] == threading.main_thread().name
    assert overlapped.result.sources.prometheus == alone.result.sources.prometheus
    assert {(f.check, f.cause) for f in overlapped.result.findings} >= {
        (f.check, f.cause) for f in alone.result.findings if f.check != "slo-untrustworthy"}


def test_a_failure_in_the_metrics_thread_reaches_the_caller(mesh, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    built, server, tmp = mesh

    def broken(self: MetricsSource, ctx: Any) -> Any:
        raise RuntimeError("raised in the metrics thread")

    monkeypatch.setattr(MetricsSource, "read", broken)
    with pytest.raises(RuntimeError, match="raised in the metrics thread"):
        run_scenario(SPEC, tmp / "broken", built=built, server=server)
