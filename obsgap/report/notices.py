"""What a reader must know before trusting the numbers: the run's status, the inputs it could not use, and the
checks that did not run.

The same sentences go to the terminal, the top of report.html and the first lines of summary.md.
"""

from __future__ import annotations

from collections import defaultdict

from obsgap.analysis.coverage import Headline
from obsgap.result import ScanResult
from obsgap.sources.reports import LogsReport
from obsgap.text import plural

LAYOUT_HINT = ("keep kubelet's layout (/var/log/pods/<namespace>_<pod>_<uid>/<container>/*.log) or its "
               "/var/log/containers/<pod>_<namespace>_<container>-<id>.log names when copying logs, or give a "
               "topology whose pod IPs match the addresses in the Envoy lines")


def coverage_sentence(h: Headline) -> str:
    """The coverage headline in words: over the services measured on both sides, saying how many; unknown when
    none was."""
    if h.share is None:
        return ("Telemetry coverage: unknown (no service was measured on both sides: the mesh's metrics and a "
                "witness).")
    over = plural(h.services, "service") if not h.unmeasured else \
        f"over the {h.measured} of {h.services} services measured on both sides; {h.unmeasured} not measured"
    l4 = f"; {h.l4_services} more seen at L4 only (ambient, no waypoint), in connections" if h.l4_services else ""
    return (f"Telemetry coverage: the mesh metrics counted {h.share * 100:.1f}% of the requests the witnesses saw "
            f"({over}{l4}).")


def status_line(result: ScanResult) -> str | None:
    if result.status == "complete":
        return None
    return "PARTIAL RUN: the numbers below rest on less than the inputs given — " + "; ".join(result.status_reasons)


def input_notices(logs: LogsReport) -> list[str]:
    """Counted losses of log evidence, each with what to do about it."""
    out = []
    un = logs.unattributed
    if un.requests:
        listed = ", ".join(f"{f.path} ({f.requests:,})" for f in un.files[:3])
        more = f" and {un.files_total - 3} more" if un.files_total > 3 else ""
        out.append(f"{plural(un.requests, 'logged request')} in {plural(un.files_total, 'file')} could not be "
                   f"attributed to a pod: {listed}{more}. They are left out of every comparison; to use them, "
                   f"{LAYOUT_HINT}.")
    if un.unknown_pod_requests:
        listed = ", ".join(p.pod for p in un.unknown_pods[:3])
        more = f" and {un.unknown_pods_total - 3} more" if un.unknown_pods_total > 3 else ""
        out.append(f"{plural(un.unknown_pod_requests, 'logged request')} come from "
                   f"{plural(un.unknown_pods_total, 'pod')} the topology does not have ({listed}{more}): take the "
                   "snapshot while those pods run, or widen -n.")
    if logs.clickhouse is not None and logs.clickhouse.parse_mismatch:
        out.append("the ClickHouse table was filled by an `obsgap clickhouse-schema` view that parses with other "
                   "access-log formats, --log-field mapping or obsgap version than this run: its rows may be "
                   "read differently than these logs would be. Re-create the view with this run's flags (new "
                   "rows), or read the raw table with --clickhouse-table otel_logs.")
    for u in logs.duration_unit_unknown[:3]:
        out.append(f"unit unknown for key {u.key} in {u.path} ({plural(u.requests, 'request')}): their "
                   f"durations are left out; say it with --log-field duration_ms={u.key}:ns (or :us, :ms, :s).")
    return out


def notices(result: ScanResult) -> list[str]:
    line = status_line(result)
    return ([line] if line else []) + input_notices(result.sources.logs) + result.suppressions.notices()


def terminal_lines(result: ScanResult) -> list[str]:
    """What `obsgap report` says on stderr: the status and its reasons, the input notices, the checks that did
    not run (one line per reason), the counts."""
    lines = ["status: complete (every input given was read)" if result.status == "complete" else
             "status: PARTIAL: the numbers rest on less than the inputs given"]
    lines += [f"  - {r}" for r in result.status_reasons]
    lines += input_notices(result.sources.logs) + result.suppressions.notices()
    groups: dict[str, list[str]] = defaultdict(list)
    for r in result.checks_not_run():
        reason = f"{r.status}: {r.reason}" if r.status == "error" else r.reason or r.status
        for said in result.status_reasons:  # a source's failure is said once, above
            reason = reason.replace(said, "failed, see above")
        groups[reason].append(r.check)
    ran = sum(1 for r in result.checks if r.status == "ran")
    lines.append(f"{ran} of {len(result.checks)} checks ran" + (":" if groups else ""))
    lines += [f"  - not run: {', '.join(checks)} ({reason})" for reason, checks in groups.items()]
    counts = {s: sum(1 for f in result.findings if f.severity.value == s) for s in ("critical", "warning", "info")}
    hidden = len(result.suppressions.suppressed)
    lines.append(f"{plural(len(result.findings), 'finding')} ({counts['critical']} critical, "
                 f"{counts['warning']} warning, {counts['info']} info)"
                 + (f"; {hidden} suppressed (findings.json: suppressed)" if hidden else ""))
    return lines
