"""The same analysis against VictoriaMetrics (loaded through its import API) gives the same findings."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from obsgap.scenario.demo import demo_spec
from obsgap.scenario.simulate import build
from obsgap.testbed.promserver import serve_openmetrics
from obsgap.testbed.victoria import VictoriaMetricsServer
from tests.helpers import run_scenario, sources_json


def test_prometheus_and_victoriametrics_agree(tmp_path: Path, prometheus_available: None) -> None:
    if shutil.which("victoria-metrics") is None:
        pytest.fail("victoria-metrics is not installed (Debian package); `make test` installs it", pytrace=False)
    spec = demo_spec(datetime(2026, 11, 24, tzinfo=UTC), hours=0.5)
    built = build(spec, tmp_path / "demo")
    prom = serve_openmetrics(built.metrics, tmp_path / "demo")
    vm = VictoriaMetricsServer(tmp_path / "vm-data").start()
    try:
        assert vm.import_openmetrics(built.metrics) > 10_000
        on_prom = run_scenario(spec, tmp_path, server=prom, built=built, slo_latency_ms=(300.0,))
        on_vm = run_scenario(spec, tmp_path, server=vm, built=built, slo_latency_ms=(300.0,))  # type: ignore[arg-type]
    finally:
        prom.stop()
        vm.stop()
    assert sources_json(on_vm.result)["prometheus"]["status"] in ("ok", "partial")
    assert sources_json(on_vm.result)["prometheus"]["targets_api"] in (True, False)
    # VictoriaMetrics answers /api/v1/rules with an empty list unless -vmalert.proxyURL names a vmalert
    assert sources_json(on_vm.result)["prometheus"]["rules"] == 0
    key = lambda r: {(f.check, f.cause, f.subject, f.severity) for f in r.result.findings}  # noqa: E731
    assert key(on_vm) == key(on_prom) and len(key(on_prom)) > 15
    cov_prom = {(c.namespace, c.service): (c.observed, c.mesh) for c in on_prom.result.coverage}
    cov_vm = {(c.namespace, c.service): (c.observed, c.mesh) for c in on_vm.result.coverage}
    assert cov_vm == cov_prom


def test_the_scrape_interval_reads_the_same_on_victoriametrics(tmp_path: Path) -> None:
    """MetricsQL's subqueries and `timestamp()` give the scrape interval as PromQL's do, at ends off the
    subquery's grid too (tests/test_prometheus.py checks Prometheus on the same series)."""
    from datetime import timedelta

    from obsgap.sources.metrics import scrape_interval
    from obsgap.sources.prometheus import PrometheusOptions, PrometheusSource
    from tests.test_prometheus import _up_series

    if shutil.which("victoria-metrics") is None:
        pytest.fail("victoria-metrics is not installed (Debian package); `make test` installs it", pytrace=False)
    end = datetime(2026, 11, 24, tzinfo=UTC)
    _up_series(tmp_path / "up.om", end, {"kubernetes-pods": (6, 15), "node-exporter": (3, 60)})
    vm = VictoriaMetricsServer(tmp_path / "vm-data").start()
    try:
        assert vm.import_openmetrics(tmp_path / "up.om") == 6 * 240 + 3 * 60
        source = PrometheusSource(PrometheusOptions(url=vm.url))
        for window, before in ((3600, timedelta(0)), (1800, timedelta(minutes=17, seconds=13))):
            res, interval = scrape_interval(source, window, end - before, (), None)
            readings = res.frame[res.frame["what"] == "interval"]["value"].astype(float)
            assert res.error is None and sorted(set(readings)) == [15.0, 60.0]
            assert interval == 15.0
    finally:
        vm.stop()
