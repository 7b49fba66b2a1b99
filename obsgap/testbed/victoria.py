"""A real VictoriaMetrics (Debian `victoria-metrics`) on loopback, loaded through its import API.

Proves obsgap is not tied to Prometheus itself: the same analysis against a second backend that only
shares the HTTP query API (as Thanos and Mimir do).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

from obsgap.testbed.promserver import find_binary, free_port, stop_process, wait_ready

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
        wait_ready(self.process, f"{self.url}/health", "victoria-metrics", timeout)
        return self

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
        stop_process(self.process)
        self.process = None
