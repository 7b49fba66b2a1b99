"""Settings for one run: flags > environment (OBSGAP_*) > config file, validated once into a RunPlan."""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from obsgap.errors import InputError
from obsgap.evidence import CheckSettings
from obsgap.model import Severity, Window
from obsgap.sources.kube.live import LiveOptions
from obsgap.sources.logs.clickhouse import ClickHouseOptions
from obsgap.sources.logs.discover import LogPod
from obsgap.sources.logs.envoy_format import AccessFormat, validate
from obsgap.sources.logs.podlogs import PodLogOptions
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.suppress import Suppression
from obsgap.witness import WitnessFamily

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
FAIL_ON = ("critical", "warning", "info", "never")


def parse_duration(text: str, flag: str = "--window") -> timedelta:
    """`90s`, `15m`, `24h`, `7d`, or combinations such as `1h30m`."""
    total = 0.0
    rest = text.strip()
    if not rest:
        raise InputError(f"{flag}: empty duration")
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", rest):
        total += float(m.group(1)) * _UNITS[m.group(2)]
    if re.sub(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", "", rest) or total <= 0:
        raise InputError(f"{flag} {text!r} is not a duration (examples: 30m, 24h, 7d)")
    return timedelta(seconds=total)


def parse_time(text: str, flag: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise InputError(f"{flag} {text!r} is not an RFC 3339 time (example: 2026-11-24T00:00:00Z)") from exc
    if dt.tzinfo is None:
        raise InputError(f"{flag} {text!r} needs a time zone (add Z for UTC)")
    return dt.astimezone(UTC)


def resolve_window(start: str | None, end: str | None, window: str | None,
                   now: datetime | None = None) -> Window:
    end_dt = parse_time(end, "--end") if end else (now or datetime.now(UTC)).replace(microsecond=0)
    if start:
        if window:
            raise InputError("--start and --window both given: give one of them")
        start_dt = parse_time(start, "--start")
    else:
        start_dt = end_dt - parse_duration(window or "24h")
    if start_dt >= end_dt:
        raise InputError("--start must be before --end: the window is empty")
    return Window(start_dt, end_dt)


def parse_slos(text: str | None) -> tuple[float, ...]:
    """`300ms,2s` -> (300.0, 2000.0) milliseconds."""
    if not text:
        return ()
    parts = [part for part in text.split(",") if part.strip()]
    return tuple(sorted(parse_duration(part, "--slo-latency").total_seconds() * 1000 for part in parts))


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or re.search(r"[\r\n]", text):
        raise InputError(f"--header {text!r} must look like 'Name: value'")
    return name.strip(), value.strip()


def yaml_place(exc: yaml.YAMLError) -> str:
    """`line L, column C: what the parser expected` from a PyYAML error (1-based, as editors count)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


SUPPRESS_KEY = "suppress"


def load_config_file(path: Path, options: Mapping[str, bool], aliases: Mapping[str, str]) -> dict[str, Any]:
    """A YAML mapping of `report` flags with `_` for `-` (e.g. prometheus_url).

    `options` maps every option's name to whether it takes several values (a single value is then
    accepted as a list of one); `aliases` maps flag spellings (`header`) to option names (`headers`). The
    `suppress` list (accepted findings) is returned under its own key, as written.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"--config {path}: not valid YAML: {yaml_place(exc)}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--config {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InputError(f"--config {path}: expected a mapping of flag names to values, found a "
                         f"{type(data).__name__}")
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key == SUPPRESS_KEY:  # not a flag: the accepted findings (suppress.parse_config reads them)
            out[key] = value
            continue
        name = aliases.get(key, key)
        if name not in options:
            near = difflib.get_close_matches(key, [*options, *aliases], n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; valid keys: {', '.join(sorted(options))}"
            raise InputError(f"--config {path}: unknown key {raw_key!r}{hint}")
        if options[name]:
            value = list(value) if isinstance(value, list | tuple) else [value]
        elif isinstance(value, list | tuple | Mapping):
            raise InputError(f"--config {path}: {raw_key!r} takes one value, not a {type(value).__name__}")
        out[name] = value
    return out


def parse_log_fields(items: Sequence[str]) -> dict[str, str]:
    known = {"ts", "method", "path", "url", "status", "port", "host", "duration_ms"}
    out = {}
    for item in items:
        name, sep, key = item.partition("=")
        if not sep or name not in known or not key:
            raise InputError(f"--log-field {item!r}: use FIELD=KEY with FIELD one of {', '.join(sorted(known))}")
        unit = key.rpartition(":")[2] if ":" in key else None
        if name == "duration_ms" and unit is not None and unit not in ("ns", "us", "µs", "ms", "s", "m"):
            raise InputError(f"--log-field {item!r}: the unit after ':' must be one of ns, us, ms, s, m")
        out[name] = key
    return out


def parse_access_log_formats(items: Sequence[str]) -> tuple[AccessFormat, ...]:
    """`--access-log-format`: an Envoy TEXT format string, or a JSON object of key: %OPERATOR% (JSON encoding)."""
    out = []
    for i, item in enumerate(items, 1):
        encoding = "text"
        with contextlib.suppress(ValueError):
            if isinstance(json.loads(item), dict):
                encoding = "json"
        fmt = AccessFormat(f"--access-log-format #{i}", encoding, item)
        problem = validate(fmt)
        if problem:
            raise InputError(f"--access-log-format {item[:80]!r}: {problem}")
        out.append(fmt)
    return tuple(out)


@dataclass(frozen=True)
class RunPlan:
    window: Window
    out_dir: Path | None = None
    """An explicit --out; None: a new folder under out_root (see obsgap.outdir)."""
    out_root: Path = Path("reports")
    baseline: Path | None = None
    namespaces: tuple[str, ...] = ()
    prometheus: PrometheusOptions | None = None
    kube_snapshots: tuple[Path, ...] = ()
    kube_live: LiveOptions | None = None
    logs: tuple[str, ...] = ()
    clickhouse: ClickHouseOptions | None = None
    """--clickhouse-url: read logs from ClickHouse's otel_logs, the aggregation pushed down."""
    pod_logs: PodLogOptions | None = None
    """--pod-logs: read the pods' logs through the Kubernetes API (needs kube_live)."""
    log_fields: Mapping[str, str] = field(default_factory=dict)
    access_log_formats: tuple[AccessFormat, ...] = ()
    suppressions: tuple[Suppression, ...] = ()
    """The config file's accepted findings (annotations are read from the topology at run time)."""
    """Envoy access-log formats given by the user, tried before the mesh's and Istio's defaults."""
    log_pods: tuple[LogPod, ...] = ()
    """--log-pod: which pod wrote the files whose path does not say."""
    fail_on: str = "critical"
    settings: CheckSettings = field(default_factory=CheckSettings)
    only_checks: tuple[str, ...] = ()
    dashboards: tuple[Path, ...] = ()
    slo_paths: tuple[Path, ...] = ()
    """--slo: SLO files or folders (Sloth, Pyrra, OpenSLO, PrometheusRule)."""
    witness_families: tuple[WitnessFamily, ...] = ()
    """--witness-metric: request metrics obsgap does not know, as witnesses beside the known families."""
    known_witnesses: bool = True
    """Look for the known witness families too (False: only `witness_families`)."""

    def fails(self, severity: Severity) -> bool:
        if self.fail_on == "never":
            return False
        return severity.rank >= Severity(self.fail_on).rank

