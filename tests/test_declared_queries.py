"""Whatever reads a query declares it; the engine fetches exactly the union of the declarations."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from obsgap import engine
from obsgap.checks import REGISTRY
from obsgap.config import RunPlan
from obsgap.evidence import CheckSettings, MetricsEvidence, UndeclaredQuery
from obsgap.model import Window
from obsgap.scenario.demo import DEMO_SLOS_MS, demo_spec
from obsgap.scenario.simulate import build
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import serve_openmetrics
from tests.helpers import sources_json

END = datetime(2026, 11, 24, tzinfo=UTC)


def test_reading_an_undeclared_query_raises() -> None:
    frame = pd.DataFrame([{"job": "a", "value": 1.0}])
    metrics = MetricsEvidence({"scrape_targets": frame, "mesh_requests": frame})
    view = metrics.for_reader(("mesh_requests",))
    assert len(view.frame("mesh_requests")) == 1
    with pytest.raises(UndeclaredQuery, match="scrape_targets"):
        view.frame("scrape_targets")
    with pytest.raises(UndeclaredQuery):
        view.has("scrape_targets")
    assert len(metrics.frame("scrape_targets")) == 1  # the engine's own, unrestricted evidence


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("declared")
    spec = demo_spec(END, hours=0.5)
    built = build(spec, tmp / "demo")
    (tmp / "slos.yaml").write_text((resources.files("obsgap.scenario") / "demo_slos.yaml").read_text())
    server = serve_openmetrics(built.metrics, tmp / "demo")
    yield spec, built, server, tmp
    server.stop()


def _run(demo, only: tuple[str, ...]):  # type: ignore[no-untyped-def]
    spec, built, server, tmp = demo
    plan = RunPlan(window=Window(spec.start, spec.end), out_dir=tmp / "out", only_checks=only,
                   prometheus=PrometheusOptions(url=server.url), kube_snapshots=(built.topology,),
                   logs=(str(built.logs),), settings=CheckSettings(slo_latency_ms=DEMO_SLOS_MS),
                   slo_paths=(tmp / "slos.yaml",))
    return engine.run(plan).result


def test_every_check_alone_reads_only_what_it_declared(demo) -> None:  # type: ignore[no-untyped-def]
    full = _run(demo, ())
    assert sources_json(full)["prometheus"]["query_files"] == sorted(engine.declared_queries(REGISTRY))
    for check in REGISTRY:
        alone = _run(demo, (check.id,))
        (run,) = alone.checks
        assert run.status == "ran", (check.id, run.reason)
        assert sources_json(alone)["prometheus"]["query_files"] == sorted(engine.declared_queries((check,))), check.id
        # the coverage table declares its own queries: one check selected, the same table as a full run
        assert alone.coverage == full.coverage, check.id
        assert [f.id for f in alone.findings] == [f.id for f in full.findings if f.check == check.id], check.id


def test_engine_readers_declare_what_they_read(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The coverage and contract tables, run on views holding only their declarations, still see everything."""
    full = _run(demo, ("sidecar-missing",))
    assert sum(r.mesh for r in full.coverage) > 0, "the mesh counted requests: coverage reads metrics"
    assert any(link.kind == "job" for row in full.contract for link in row.links)
