"""Witnesses: who counted the real traffic obsgap holds the mesh's metrics against, and the one rule for a request
two of them saw.

Every observed count names its witness (docs/findings.md, "Witnesses"): coverage rows say it in `observed_by`,
findings in `evidence.witness`. A request seen by two witnesses of the same side (the application's log line and its
sidecar's access-log line for the same inbound request; the caller's app and its sidecar for the same call) is one
request: per cell (pod and port, or caller and address) the witness that saw more is taken, and everything computed
from that cell (totals, time bins, errors) comes from the same witness, so a chart and its table always agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SERVER_LOGS = "server-logs"
"""The served pods' own logs: the application's lines and its sidecar's inbound access-log lines."""
CALLER_LOGS = "caller-logs"
"""The calling pods' logs: the URLs the applications called, their sidecars' outbound access-log lines."""
CALLER_SIDECARS = "caller-sidecar-metrics"
"""istio_requests_total{reporter="source"}: what the callers' own sidecars counted."""

WITNESS_WORDS: Mapping[str, str] = {
    SERVER_LOGS: "server logs",
    CALLER_LOGS: "caller logs",
    CALLER_SIDECARS: "caller sidecar metrics (reporter=source)",
}


def witness_words(witness: str | None) -> str:
    """A witness in the words of a sentence ("server logs", "the app's metric http_server_requests_seconds")."""
    if witness is None:
        return "no witness"
    kind, _, detail = witness.partition(":")
    if kind == "app-metrics":
        return f"the services' own metric {detail}"
    if kind == "ebpf":
        return f"the eBPF agent {detail}"
    return WITNESS_WORDS.get(witness, witness)


@dataclass(frozen=True)
class Interval:
    """The part of the window a count covers, in epoch milliseconds [start, end)."""

    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> float:
        return max(0, self.end_ms - self.start_ms) / 1000


def same_request(by_origin: Mapping[str, int]) -> tuple[str | None, int]:
    """(the origin whose count stands for the cell, its count): two witnesses of one side saw the same requests,
    so the one that saw more is the count; a tie keeps the sidecar's (`envoy`) count. (None, 0) for no count."""
    best: tuple[str | None, int] = (None, 0)
    for origin, n in sorted(by_origin.items(), key=lambda kv: kv[0] != "envoy"):
        if best[0] is None or n > best[1]:
            best = (origin, int(n))
    return best
