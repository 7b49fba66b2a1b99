"""Logs through the Kubernetes API (`--pod-logs`): GET /api/v1/namespaces/{ns}/pods/{pod}/log for every pod in
scope, with the official client, written as kubelet's CRI files so the file readers take them unchanged.

Per container: `timestamps=true` (the time kubelet received each line: the node's clock), `sinceTime` = the
window's start less a margin (a line older than the start proves the logs reach back to it), `previous=true` as
well for a container whose last run ended within the window, and a byte limit whose cut is reported. The kubelet
serves only a container's current log file (10 MiB by default): a busy pod's logs begin hours after the window
does. That is normal; intervals.py compares such logs only with the metrics of the interval they cover.
A failure on one container (403, 404, 500, a broken connection) is a gap of that container, never a failed run.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from obsgap.model import Pod
from obsgap.sources.reports import ContainerCut, ContainerGap, PodLogsReport, SkippedPod

PROXY = "istio-proxy"
SINCE_MARGIN_MS = 5 * 60 * 1000
"""Ask for lines from a little before the window: one older than its start shows the logs reach back to it."""
DEFAULT_LIMIT_BYTES = 512 * 1024 * 1024
CHUNK = 1 << 16
NO_UID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class PodLogOptions:
    containers: tuple[str, ...] = ()
    """Only these containers (by name); empty: istio-proxy and every application container."""
    concurrency: int = 8
    limit_bytes: int = DEFAULT_LIMIT_BYTES
    """Per container and run (current or previous): beyond it the log is cut, and the cut reported."""


@dataclass
class ContainerLog:
    namespace: str
    pod: str
    container: str
    previous: bool = False
    path: str | None = None
    bytes: int = 0
    lines: int = 0
    first_ms: int | None = None
    """kubelet's time of the first line received (the node's clock)."""
    last_ms: int | None = None
    cut: bool = False
    """The byte limit ended the log: later lines were not read."""
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.pod}/{self.container}" + (" (previous)" if self.previous else "")


@dataclass
class PodLogReport:
    logs: list[ContainerLog] = field(default_factory=list)
    skipped_pods: list[tuple[str, str]] = field(default_factory=list)
    """(namespace/pod, why) for pods not asked: not started yet, no container selected."""

    def summary(self) -> PodLogsReport:
        """The typed report (findings.json sources.logs.pod_logs): what the API gave, the gaps and cuts listed."""
        ok = [c for c in self.logs if c.error is None]
        return PodLogsReport(
            containers=len(self.logs), read=len(ok), bytes=sum(c.bytes for c in ok), lines=sum(c.lines for c in ok),
            gaps=tuple(ContainerGap(c.where, c.error) for c in self.logs if c.error)[:200],
            gaps_total=sum(1 for c in self.logs if c.error),
            cut=tuple(ContainerCut(c.where, c.bytes) for c in self.logs if c.cut)[:200],
            skipped_pods=tuple(SkippedPod(p, r) for p, r in self.skipped_pods)[:200])


def _ms(ts: bytes) -> int | None:
    text = ts.decode("ascii", "replace")
    try:
        head = datetime.fromisoformat(text[:19]).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    frac = text[20:23] if len(text) > 20 and text[19] == "." else ""
    return int(head * 1000) + (int(frac.ljust(3, "0")) if frac.isdigit() else 0)


def to_cri(lines: Iterable[bytes], log: ContainerLog) -> Iterator[bytes]:
    """`<RFC3339Nano> <message>` lines (the API with timestamps=true) as CRI lines `<time> stdout F <message>`:
    the API has joined kubelet's partial lines and does not say which stream a line came from."""
    for line in lines:
        ts, sep, msg = line.partition(b" ")
        if not sep or len(ts) < 20 or ts[4:5] != b"-":
            yield line + b"\n"  # not stamped: the readers report it as they find it
            continue
        log.lines += 1
        when = _ms(ts)
        if when is not None:
            log.first_ms = when if log.first_ms is None else log.first_ms
            log.last_ms = when
        yield ts + b" stdout F " + msg + b"\n"


def _lines(chunks: Iterable[bytes], log: ContainerLog, limit: int) -> Iterator[bytes]:
    """Complete lines of a streamed body; at the byte limit the incomplete last line is dropped."""
    pending = b""
    for chunk in chunks:
        log.bytes += len(chunk)
        pending += chunk
        *whole, pending = pending.split(b"\n")
        yield from whole
        if log.bytes >= limit:
            log.cut = True
            return
    if pending:
        yield pending


def _status_text(resp: Any) -> str:
    reason = f"HTTP {resp.status} {resp.reason or ''}".strip()
    try:
        body = json.loads(resp.response.read(4096) or b"{}")
        message = body.get("message") if isinstance(body, dict) else None
    except (ValueError, OSError):
        message = None
    return f"{reason}: {message}" if message else reason


def fetch_one(api: Any, log: ContainerLog, since: datetime, limit: int, root: str, uid: str, restart: int,
              stop: threading.Event) -> ContainerLog:
    """Stream one container's log into root/pods/<ns>_<pod>_<uid>/<container>/<restart>.log."""
    from urllib3.exceptions import HTTPError

    query: list[tuple[str, Any]] = [("container", log.container), ("timestamps", "true"),
                                    ("sinceTime", since.strftime("%Y-%m-%dT%H:%M:%SZ")), ("limitBytes", limit)]
    if log.previous:
        query.append(("previous", "true"))
    try:
        request = api.param_serialize(method="GET", resource_path="/api/v1/namespaces/{namespace}/pods/{name}/log",
                                      path_params={"namespace": log.namespace, "name": log.pod},
                                      query_params=query, header_params={"Accept": "text/plain"},
                                      auth_settings=["BearerToken"])
        resp = api.call_api(*request, _request_timeout=(10, 120))
    except (HTTPError, OSError, ValueError) as exc:
        log.error = f"connection failed: {type(exc).__name__}"
        return log
    except Exception as exc:  # the client's ApiException (status 0: no connection)
        log.error = f"request failed: {getattr(exc, 'reason', None) or type(exc).__name__}"
        return log
    try:
        if resp.status != 200:
            log.error = _status_text(resp)
            return log
        folder = os.path.join(root, "pods", f"{log.namespace}_{log.pod}_{uid}", log.container)
        os.makedirs(folder, exist_ok=True)
        log.path = os.path.join(folder, f"{restart}.log")
        with open(log.path, "wb") as out:
            chunks = itertools.takewhile(lambda _c: not stop.is_set(), resp.response.stream(CHUNK))
            for line in to_cri(_lines(chunks, log, limit), log):
                out.write(line)
    except (HTTPError, OSError) as exc:
        log.error = f"read failed after {log.bytes:,} bytes: {type(exc).__name__}"
    finally:
        resp.response.release_conn()
    return log


def _wanted(pod: Pod, opts: PodLogOptions) -> list[str]:
    if opts.containers:
        return [c for c in pod.containers if c in opts.containers]
    return list(pod.containers)


def plan_fetches(pods: Iterable[Pod], opts: PodLogOptions, start_ms: int,
                 report: PodLogReport) -> list[tuple[ContainerLog, str, int]]:
    """(log to fetch, pod uid, restart number) for every container of every pod in scope; previous runs too for a
    container whose last run ended within the window."""
    out: list[tuple[ContainerLog, str, int]] = []
    for pod in pods:
        if pod.phase == "Pending":
            report.skipped_pods.append((f"{pod.namespace}/{pod.name}", "Pending: no container has run"))
            continue
        containers = _wanted(pod, opts)
        if not containers:
            report.skipped_pods.append((f"{pod.namespace}/{pod.name}", "no container selected"))
            continue
        for name in containers:
            count, ended = pod.restarts.get(name, (0, None))
            uid = pod.uid or NO_UID
            if count and (ended is None or ended >= start_ms):
                out.append((ContainerLog(pod.namespace, pod.name, name, previous=True), uid, count - 1))
            out.append((ContainerLog(pod.namespace, pod.name, name), uid, count))
    return out


BATCH_BYTES = 256 * 1024 * 1024
"""Logs fetched before they are read and removed: the disk they take is bounded by this, not by the cluster."""


def fetch_pod_logs(api: Any, pods: Iterable[Pod], start_ms: int, root: str, opts: PodLogOptions,
                   progress: Callable[[int, int], None] | None = None,
                   batch_bytes: int | None = None) -> Iterator[tuple[PodLogReport, list[ContainerLog]]]:
    """Fetch every selected container's log into `root` (kubelet's layout), `opts.concurrency` at a time, and
    yield (the report so far, the logs fetched since the last yield) whenever about `batch_bytes` were written:
    the caller reads those files and removes them before the next batch is fetched."""
    report = PodLogReport()
    fetches = plan_fetches(pods, opts, start_ms, report)
    since = datetime.fromtimestamp((start_ms - SINCE_MARGIN_MS) / 1000, UTC)
    budget = batch_bytes or BATCH_BYTES
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, opts.concurrency))
    step = max(1, opts.concurrency) * 4
    pending: list[ContainerLog] = []
    try:
        for first in range(0, len(fetches), step):
            futures = [pool.submit(fetch_one, api, log, since, opts.limit_bytes, root, uid, restart, stop)
                       for log, uid, restart in fetches[first:first + step]]
            for future in futures:
                log = future.result()
                report.logs.append(log)
                pending.append(log)
                if progress:
                    progress(len(report.logs), len(fetches))
            if sum(c.bytes for c in pending) >= budget:
                yield report, pending
                pending = []
        yield report, pending
    except BaseException:
        stop.set()  # an interrupt: running streams end at their next chunk, queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
