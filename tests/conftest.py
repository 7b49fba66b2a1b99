"""Shared fixtures: a real Prometheus (Debian package) fed by promtool backfill, and scenario runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# Unmodified upstream Istio inputs, copied into the repository (tests/data/istio/PROVENANCE.md).
REALWORLD = Path(__file__).resolve().parent / "data" / "istio"


def require_binary(name: str) -> None:
    """Under CI a missing real component is a failure, never a skip."""
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed (Debian package `prometheus`); `make test` installs it", pytrace=False)


@pytest.fixture(scope="session")
def realworld() -> Path:
    if not REALWORLD.is_dir():
        pytest.fail(f"Istio test inputs missing at {REALWORLD} (tests/data/istio is part of the repository)",
                    pytrace=False)
    return REALWORLD


@pytest.fixture(scope="session")
def prometheus_available() -> None:
    require_binary("prometheus")
    require_binary("promtool")


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("obsgap")
    yield path
    if os.environ.get("OBSGAP_KEEP_TMP") is None:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, prometheus_available: None):  # type: ignore[no-untyped-def]
    """The demo mesh (half an hour) through the whole engine against a real Prometheus: (Run, its folder)."""
    from datetime import UTC, datetime

    from obsgap.scenario.demo import demo_spec
    from obsgap.scenario.simulate import build
    from tests.helpers import run_scenario

    tmp = tmp_path_factory.mktemp("report")
    spec = demo_spec(datetime(2026, 11, 24, tzinfo=UTC), hours=0.5)
    return run_scenario(spec, tmp, built=build(spec, tmp / "demo")), tmp
