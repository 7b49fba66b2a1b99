"""Report -> the run as metrics (`--metrics-file`): node-exporter's textfile collector and a Pushgateway read it,
so a nightly run reaches alerting (`obsgap manifests --alerts` has rules on these series).

Prometheus text format (0.0.4, which the textfile collector requires), ending with OpenMetrics' `# EOF` (a comment
there). Every series comes from findings.json's document, so the numbers are the report's: suppressed findings are
not counted; a coverage row without a ratio (a side not measured) has no series rather than a 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from obsgap.report.model import SEVERITIES


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, object]]) -> str:
    body = ",".join(f'{k}="{_escape(v if v is not None else "")}"' for k, v in pairs)
    return "{" + body + "}" if body else ""


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render_metrics(document: dict[str, Any], generated_at_s: float) -> str:
    out: list[str] = []

    def family(name: str, help_: str, samples: Iterable[tuple[str, float]]) -> None:
        out.extend((f"# HELP {name} {help_}", f"# TYPE {name} gauge"))
        out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    findings = Counter((f["check"], f["severity"], f["namespace"] or "") for f in document["findings"])
    # a zero only where the check ran and judged something: a check that examined nothing measured no zero
    checks_ran = [c["check"] for c in document["checks"] if c["status"] == "ran" and c.get("examined") != 0]
    zero = {(c, s, "") for c in checks_ran for s in SEVERITIES if not any(k[:2] == (c, s) for k in findings)}
    family("obsgap_findings", "Findings of the last run (suppressed ones not counted) by check, severity and "
                              "namespace; 0 for the checks that ran and found none.",
           ((_labels(zip(("check", "severity", "namespace"), key, strict=True)), n)
            for key, n in sorted({**findings, **dict.fromkeys(zero, 0)}.items())))
    suppressed = Counter((f["check"], f["severity"], f["namespace"] or "") for f in document.get("suppressed", []))
    family("obsgap_suppressed_findings", "Findings accepted by a suppression, by check, severity and namespace.",
           ((_labels(zip(("check", "severity", "namespace"), key, strict=True)), n)
            for key, n in sorted(suppressed.items())))
    family("obsgap_coverage_ratio", "Share of the requests a witness saw that the mesh's metrics counted, per "
                                    "service measured on both sides (unmeasured services have no series).",
           ((_labels((("namespace", c["namespace"]), ("service", c["service"]))), c["ratio"])
            for c in document["coverage"] if c["ratio"] is not None))
    family("obsgap_run_status", "1 for the run's status (complete: every input given was read; partial).",
           ((_labels((("status", s),)), 1 if document["status"] == s else 0) for s in ("complete", "partial")))
    family("obsgap_checks_not_run", "Checks that did not run (skipped or failed) in the last run.",
           ((_labels(()), sum(1 for c in document["checks"] if c["status"] != "ran")),))
    family("obsgap_last_run_timestamp_seconds", "When the last run ended (Unix seconds).",
           ((_labels(()), generated_at_s),))
    trust = {_labels((("slo", a["slo"]), ("tool", a.get("tool")), ("origin", a.get("origin")),
                      ("verdict", a["verdict"]))): 1 for a in document.get("slos", [])}  # a name is not unique
    family("obsgap_slo_trust", "1 for each SLO's verdict (can its numbers be trusted), by name, tool and the "
                               "file or object it came from.", trust.items())
    return "\n".join(out) + "\n# EOF\n"
