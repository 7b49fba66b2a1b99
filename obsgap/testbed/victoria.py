"""A real VictoriaMetrics (Debian `victoria-metrics`) on loopback, loaded through its import API.

Proves obsgap is not tied to Prometheus itself: the same analysis against a second backend that only
shares the HTTP query API (as Thanos and Mimir do).
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from obsgap.errors import SourceError
from obsgap.testbed.promserver import find_binary, free_port

_SAMPLE = re.compile(r"^(?P<series>[^\s{]+(?:\{.*\})?) (?P<value>\S+) (?P<ts>\d+(?:\.\d+)?)$")
CHUNK_LINES = 200_000


@dataclass
class VictoriaMetricsServer:
    data: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> VictoriaMetricsServer:
        self.port = self.port or free_port()
        log = (self.data.parent / "victoria-metrics.log").open("wb")
        self.process = subprocess.Popen(
            [find_binary("victoria-metrics"), f"-storageDataPath={self.data}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-retentionPeriod=100y", "-search.disableCache", "-search.latencyOffset=0s"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SourceError("victoria-metrics exited at start")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise SourceError("victoria-metrics did not become ready in time")

    def import_openmetrics(self, path: Path) -> int:
        """Send OpenMetrics text (timestamps in seconds) to /api/v1/import/prometheus (milliseconds)."""
        sent = 0
        batch: list[str] = []

        def flush() -> None:
            if batch:
                r = requests.post(f"{self.url}/api/v1/import/prometheus", data="".join(batch).encode(), timeout=300)
                r.raise_for_status()
                batch.clear()

        with path.open() as f:
            for line in f:
                if line.startswith("#"):
                    continue
                m = _SAMPLE.match(line.rstrip("\n"))
                if m is None:
                    continue
                batch.append(f"{m['series']} {m['value']} {round(float(m['ts']) * 1000)}\n")
                sent += 1
                if len(batch) >= CHUNK_LINES:
                    flush()
        flush()
        requests.get(f"{self.url}/internal/force_flush", timeout=60)
        return sent

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
