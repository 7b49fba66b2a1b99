"""A real Prometheus on loopback, serving OpenMetrics text backfilled with promtool.

Used by the demo, the test suite and the benchmark, so all three query the same real backend.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml

from obsgap.errors import SourceError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not path:
        raise SourceError(f"{name} not found: install Debian's `prometheus` package (apt-get install prometheus)")
    return path


def wait_ready(process: subprocess.Popen[bytes], url: str, what: str, timeout: float) -> None:
    """Poll `url` until it answers 200; a process that exits or never answers is a SourceError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SourceError(f"{what} exited at start")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_process(process)
    raise SourceError(f"{what} did not become ready in time")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def backfill(openmetrics: Path, tsdb: Path) -> None:
    tsdb.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([find_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                           "--max-block-duration=24h", str(openmetrics), str(tsdb)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SourceError(f"promtool backfill failed: {proc.stderr.strip()[-500:]}")


@dataclass
class PrometheusServer:
    tsdb: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()
    scrape_configs: tuple[Mapping[str, Any], ...] = ()
    """Scrape jobs for the configuration (what /api/v1/status/config shows; their targets need not exist)."""
    rule_files: tuple[Path, ...] = ()
    """Prometheus rule files it evaluates (what /api/v1/rules shows). Written absolute: Prometheus reads a relative
    one against its configuration file's folder, and a pattern that matches no file is no error."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.port = self.port or free_port()
        config = self.tsdb.parent / "prometheus.yml"
        config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1h", "evaluation_interval": "1h"},
                                          "rule_files": [str(f.resolve()) for f in self.rule_files],
                                          "scrape_configs": [dict(c) for c in self.scrape_configs]}))
        self.log_path = self.tsdb.parent / "prometheus.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [find_binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.tsdb}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y",
             "--query.lookback-delta=5m", "--web.enable-admin-api", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.process, f"{self.url}/-/ready", "prometheus", timeout)
        except SourceError as exc:
            raise SourceError(f"{exc}: {self.log_path.read_text()[-800:]}") from exc
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_openmetrics(openmetrics: Path, workdir: Path, scrape_configs: tuple[Mapping[str, Any], ...] = (),
                      rule_files: tuple[Path, ...] = ()) -> PrometheusServer:
    """Backfill `openmetrics` into a fresh TSDB under `workdir` and start Prometheus on it."""
    tsdb = workdir / "tsdb"
    if tsdb.exists():
        shutil.rmtree(tsdb)
    backfill(openmetrics, tsdb)
    return PrometheusServer(tsdb, scrape_configs=scrape_configs, rule_files=rule_files).start()
