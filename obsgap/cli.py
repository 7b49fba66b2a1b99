"""The command line: parse, wire, exit code. No logic lives here."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from obsgap import engine
from obsgap.checks import CHECK_IDS, REGISTRY, by_id
from obsgap.checks.base import doc_sections
from obsgap.checks.slo import SloUntrustworthy
from obsgap.config import (
    FAIL_ON,
    SUPPRESS_KEY,
    RunPlan,
    load_config_file,
    parse_access_log_formats,
    parse_header,
    parse_log_fields,
    parse_slos,
    resolve_window,
)
from obsgap.errors import InputError, ObsgapError
from obsgap.evidence import CheckSettings
from obsgap.interrupts import Interrupted, interruptible
from obsgap.outdir import claim_output
from obsgap.publish import Written, metrics_text, notify_webhook, push_metrics, write_metrics, write_outputs
from obsgap.render.terminal import render_table, render_yaml
from obsgap.report.notices import notices, terminal_lines
from obsgap.slo.table import slo_table
from obsgap.sources.kube.live import LiveOptions
from obsgap.sources.logs.clickhouse import ClickHouseOptions
from obsgap.sources.logs.discover import parse_log_pod
from obsgap.sources.logs.podlogs import PodLogOptions
from obsgap.sources.prometheus import PrometheusOptions, redact_url
from obsgap.sources.queries import namespace_matcher
from obsgap.sources.witnesses import parse_witness_metric
from obsgap.suppress import parse_config as parse_suppressions
from obsgap.text import safe

CONFIG_META = "obsgap.config"
SUPPRESS_META = "obsgap.suppress"


OUTPUTS = ("table", "json", "yaml", "markdown", "path", "none")


def origin_of(ctx: click.Context, param: click.Parameter) -> str:
    """Where a value came from, in the words a user can act on: the flag, the variable, or the config file."""
    source = ctx.get_parameter_source(param.name or "")
    flag = next((o for o in param.opts if o.startswith("--")), param.name or "")
    if source is ParameterSource.ENVIRONMENT and isinstance(param, click.Option) and param.envvar:
        return f"{flag} (from the environment variable {param.envvar})"
    if source is ParameterSource.DEFAULT_MAP:
        return f"{flag} (from {param.name!r} in the config file {ctx.meta.get(CONFIG_META)})"
    if source is ParameterSource.DEFAULT:
        return f"{flag} (its default)"
    return flag


class _Option(click.Option):
    """An option whose errors say where the bad value came from (flag, OBSGAP_* variable or config file)."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        if ctx is None:
            return super().get_error_hint(ctx)
        return origin_of(ctx, self)


def _opt(*decls: str, **kw: Any) -> Any:
    """A `report` option whose environment variable is OBSGAP_<LONG_FLAG> (e.g. OBSGAP_WINDOW)."""
    long = next(d for d in decls if d.startswith("--"))
    kw.setdefault("envvar", "OBSGAP_" + long[2:].upper().replace("-", "_"))
    kw.setdefault("show_envvar", True)
    kw.setdefault("cls", _Option)
    return click.option(*decls, **kw)


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        params = [p for p in ctx.command.params if isinstance(p, click.Option) and p.name and p.name != "config"]
        aliases = {o.lstrip("-").replace("-", "_"): p.name for p in params for o in p.opts if o.startswith("--")}
        own = {p.name: p.multiple for p in params if p.name}
        try:  # report's output flags are valid keys for every command (one file serves report and slo)
            values = load_config_file(Path(value), {**dict.fromkeys(REPORT_ONLY, False), **own},
                                      {k: v for k, v in aliases.items() if k != v and v})
            values = {k: v for k, v in values.items() if k in own or k == SUPPRESS_KEY}
            ctx.meta[SUPPRESS_META] = parse_suppressions(values.pop(SUPPRESS_KEY, None), f"--config {value}",
                                                         CHECK_IDS)
            ctx.default_map = values
        except InputError as exc:
            raise click.UsageError(str(exc), ctx) from exc
        ctx.meta[CONFIG_META] = value
    return value


def _with_origin(ctx: click.Context, message: str) -> str:
    """An error naming `--flag` at its start says where that flag's value came from."""
    first = message.split(" ", 1)[0].rstrip(":")
    for param in ctx.command.params:
        if first in param.opts and ctx.get_parameter_source(param.name or "") is not ParameterSource.COMMANDLINE:
            return origin_of(ctx, param) + message[len(first):]
    return message


@contextmanager
def _exit_on_errors(interrupted: str = "") -> Iterator[None]:
    """A run's end on SIGINT/SIGTERM (128 + signal) or on an obsgap error (its exit code), in one line."""
    try:
        with interruptible():
            yield
    except Interrupted as exc:
        click.echo(f"obsgap: interrupted by {exc}{interrupted}", err=True)
        sys.exit(exc.exit_code)
    except ObsgapError as exc:
        click.echo(f"obsgap: {exc}", err=True)
        sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="obsgap")
def main() -> None:
    """obsgap: prove where an Istio mesh's telemetry lies."""


@main.command()
@click.option("--config", type=click.Path(exists=True, dir_okay=False), callback=_load_config, is_eager=True,
              expose_value=False, help="YAML file of flag values (flags and OBSGAP_* env win).")
@_opt("--prometheus-url", help="Prometheus-compatible API base URL.")
@_opt("--bearer-token-file", type=click.Path(dir_okay=False), help="File holding a bearer token.")
@_opt("--basic-auth-file", type=click.Path(dir_okay=False), help="File holding user:password.")
@_opt("--ca-file", type=click.Path(dir_okay=False), help="CA bundle for the Prometheus TLS certificate.")
@_opt("--insecure-skip-verify", is_flag=True, help="Do not verify the Prometheus TLS certificate.")
@_opt("--header", "headers", multiple=True, help="Extra HTTP header, e.g. 'X-Scope-OrgID: team-a'.")
@_opt("--query-timeout", type=float, default=60.0, show_default=True, help="Seconds per PromQL query.")
@_opt("--kube-snapshot", multiple=True, type=click.Path(), help="kubectl get -o json|yaml output.")
@_opt("--kubeconfig", type=click.Path(dir_okay=False), help="Read the topology from a live cluster.")
@_opt("--context", "kube_context", help="kubeconfig context.")
@_opt("--in-cluster", is_flag=True, help="Use the pod's service account (when run as a CronJob).")
@_opt("--logs", multiple=True, help="Log file, folder (recursive) or glob; plain or .gz.")
@_opt("--pod-logs", is_flag=True,
      help="Read the logs of every pod in scope through the Kubernetes API (pods/log; needs a live cluster).")
@_opt("--pod-logs-container", "pod_logs_containers", multiple=True,
      help="With --pod-logs: only these containers (default: istio-proxy and every application container).")
@_opt("--pod-logs-concurrency", type=click.IntRange(1, 64), default=8, show_default=True,
      help="With --pod-logs: containers read at once.")
@_opt("--pod-logs-limit-bytes", type=click.IntRange(1024), default=512 * 1024 * 1024, show_default=True,
      help="With --pod-logs: bytes read per container before its log is cut (the cut is reported).")
@_opt("--clickhouse-url", help="Read logs from ClickHouse (OpenTelemetry Collector's otel_logs), aggregated there: "
                               "http(s)://host:8123 or chdb:PATH (in-process engine).")
@_opt("--clickhouse-table", default="otel_logs", show_default=True, help="The logs table.")
@_opt("--clickhouse-database", default="default", show_default=True, help="Its database (http URLs).")
@_opt("--clickhouse-user-file", type=click.Path(dir_okay=False), help="File holding the ClickHouse user.")
@_opt("--clickhouse-password-file", type=click.Path(dir_okay=False), help="File holding the password.")
@_opt("--clickhouse-attribute", "clickhouse_attributes", multiple=True,
      help="namespace|pod|container=KEY: the ResourceAttributes key naming it (default k8s.namespace.name, ...).")
@_opt("--log-field", multiple=True, help="Map a field to your JSON key, e.g. method=req.verb.")
@_opt("--log-pod", "log_pods", multiple=True,
      help="FILE=NAMESPACE/POD[/CONTAINER]: the pod that wrote FILE (a path or glob); repeatable.")
@_opt("--access-log-format", "access_log_formats", multiple=True,
      help="An Envoy access-log format the sidecars use (TEXT string, or JSON labels object); repeatable.")
@_opt("--start", help="Window start (RFC 3339).")
@_opt("--end", help="Window end (RFC 3339; default now).")
@_opt("--window", help="Window length ending at --end (default 24h).")
@_opt("-n", "--namespace", "namespaces", multiple=True, help="Limit to these namespaces.")
@_opt("--out", type=click.Path(file_okay=False), help="Output folder (default <out-root>/<UTC date>/).")
@_opt("--out-root", type=click.Path(file_okay=False), default="reports", show_default=True,
      help="Where dated report folders go (earlier runs there are the baseline and the trend).")
@_opt("--baseline", type=click.Path(), help="findings.json (or its folder) to compare with; default: the last run.")
@_opt("--plotly", type=click.Choice(["embed", "cdn"]), default="embed", show_default=True,
      help="Embed plotly.js (offline) or load it from its CDN (smaller file).")
@_opt("--fail-on", type=click.Choice(FAIL_ON), default="critical", show_default=True,
              help="Exit 1 when a finding is at or above this severity.")
@_opt("--slo-latency", help="Latency SLO thresholds, e.g. 300ms,2s: suggested buckets contain them exactly.")
@_opt("--tolerance", type=float, default=0.05, show_default=True,
              help="Share of requests metrics may miss before a gap is reported.")
@_opt("--min-requests", type=int, default=20, show_default=True,
              help="Ignore services with fewer observed requests.")
@_opt("--dashboards", multiple=True, type=click.Path(), help="Grafana dashboard JSON (file or folder).")
@_opt("--slo", "slos", multiple=True, type=click.Path(),
      help="SLO file or folder (Sloth, Pyrra, OpenSLO, PrometheusRule); with a live cluster its SLO objects too.")
@_opt("--witness-metric", "witness_metrics", multiple=True,
      help="A request metric obsgap does not know, as a witness: SERIES:namespace=LABEL,pod=LABEL,status=LABEL,"
           "status_form=code|class,route=LABEL,port=LABEL (kind=ebpf,agent=NAME for an agent's); repeatable.")
@_opt("--check", "only_checks", multiple=True, help="Run only these checks.")
@_opt("-o", "--output", type=click.Choice(OUTPUTS),
      help="What goes to stdout (the files are written either way): table (default on a terminal), json (the "
           "findings.json document), yaml, markdown (summary.md), path (of findings.json; default otherwise), none.")
@_opt("--metrics-file", type=click.Path(dir_okay=False),
      help="Also write the run as metrics for node-exporter's textfile collector (replaced atomically).")
@_opt("--pushgateway", help="Also push the run as metrics to this Pushgateway (job=obsgap), e.g. "
                             "http://pushgateway.monitoring:9091.")
@_opt("--notify-webhook-file", type=click.Path(dir_okay=False),
      help="A file holding a Slack-compatible incoming-webhook URL: summary.md is posted there after the run.")
@_opt("-q", "--quiet", is_flag=True, help="No progress or summary on stderr; stdout: the path unless -o.")
@click.pass_context
def report(ctx: click.Context, **opts: Any) -> None:
    """Reconcile metrics, logs and topology and write findings.json (exit 1 on findings, 2 bad input,
    3 a source failed)."""
    try:
        plan = replace(_plan(opts), suppressions=ctx.meta.get(SUPPRESS_META, ()))
        webhook = _webhook_url(opts["notify_webhook_file"])
        engine.preflight(plan)
        claim = claim_output(plan.out_dir, plan.out_root, plan.window.end, datetime.now(UTC))
    except InputError as exc:
        click.echo(f"obsgap: {_with_origin(ctx, str(exc))}", err=True)
        sys.exit(exc.exit_code)
    say = (lambda _m: None) if opts["quiet"] else (lambda m: click.echo(f"· {m}", err=True))
    if claim.replaces:
        say(f"replacing the report in {claim.path} (given with --out)")
    wrote = False
    try:
        with _exit_on_errors("; no report was written"):
            outcome = engine.run(replace(plan, out_dir=claim.path), say)
            written = write_outputs(outcome.result, claim.path, plan.baseline, opts["plotly"])
            wrote = True
    finally:
        claim.release(wrote)
    result = outcome.result
    output = opts["output"] or ("path" if opts["quiet"] or not sys.stdout.isatty() else "table")
    if not opts["quiet"] and output != "table":
        for line in terminal_lines(result):
            click.echo(safe(line), err=True)
    if output != "path":
        say(f"wrote {written.paths[0].parent}/ (findings.json, report.html, summary.md)")
    click.echo(stdout_text(output, written), nl=False)
    with _exit_on_errors("; the report was written"):
        failed = _publish(opts, webhook, written)
    for line in failed:  # the report stands: what could not be sent is said, and the run is a failed source
        click.echo(f"obsgap: {line} (the report was written)", err=True)
    if outcome.source_failures or failed:
        sys.exit(3)
    if any(plan.fails(f.severity) for f in result.findings):
        sys.exit(1)


@main.command(name="slo")
@click.pass_context
def slo_command(ctx: click.Context, **opts: Any) -> None:
    """Print whether each SLO's numbers can be trusted, for a quick look in an SLO review (same inputs as
    `report`; writes nothing). Exit 1 when an SLO is biased or broken, 2 bad input, 3 a source failed."""
    try:
        plan = replace(_plan(opts), suppressions=ctx.meta.get(SUPPRESS_META, ()))
        if not plan.slo_paths and plan.kube_live is None and plan.prometheus is None:
            raise InputError("obsgap slo needs SLOs: give --slo FILE|FOLDER (or a live cluster whose SLO objects "
                             "to read, or a --prometheus-url that evaluates Sloth's recording rules)")
        engine.preflight(plan)
    except InputError as exc:
        click.echo(f"obsgap: {_with_origin(ctx, str(exc))}", err=True)
        sys.exit(exc.exit_code)
    say = (lambda _m: None) if opts["quiet"] else (lambda m: click.echo(f"· {m}", err=True))
    with _exit_on_errors():
        outcome = engine.run(replace(plan, only_checks=(SloUntrustworthy.id,)), say)
    for line in notices(outcome.result):
        click.echo(safe(line), err=True)
    slo_report = outcome.result.sources.slos
    for gap in slo_report.gaps if slo_report is not None else ():
        click.echo(f"SLO not measured: {gap}", err=True)
    if not outcome.result.slos and not plan.slo_paths and plan.kube_live is None and outcome.source_failures == []:
        click.echo("obsgap: no SLO found: give --slo FILE|FOLDER; Prometheus evaluates no recording rule of Sloth's "
                   "(slo:sli_error:ratio_rate*)", err=True)
        sys.exit(2)
    click.echo(slo_table(outcome.result.slos))
    if outcome.source_failures:
        sys.exit(3)
    if any(a.verdict in ("biased", "broken") for a in outcome.result.slos):
        sys.exit(1)


REPORT_ONLY = ("output", "metrics_file", "pushgateway", "notify_webhook_file")
"""report's flags about its outputs, which `slo` (it writes nothing) does not take."""
slo_command.params[:0] = [p for p in report.params if p.name not in REPORT_ONLY]


def stdout_text(output: str, written: Written) -> str:
    """The text `-o` puts on stdout."""
    if output == "table":
        return render_table(written.report)
    if output == "json":
        return written.texts["findings.json"]
    if output == "yaml":
        return render_yaml(written.document)
    if output == "markdown":
        return written.texts["summary.md"]
    return f"{written.paths[0]}\n" if output == "path" else ""


def _publish(opts: dict[str, Any], webhook: str | None, written: Written) -> list[str]:
    """The run sent where the flags say (metrics file, Pushgateway, webhook); one line per step that failed."""
    metrics = metrics_text(written) if opts["metrics_file"] or opts["pushgateway"] else ""
    steps = [(bool(opts["metrics_file"]), lambda: write_metrics(Path(opts["metrics_file"]), metrics)),
             (bool(opts["pushgateway"]), lambda: push_metrics(opts["pushgateway"], metrics)),
             (webhook is not None, lambda: notify_webhook(str(webhook), written))]
    failed = []
    for wanted, step in steps:
        if wanted:
            try:
                step()
            except ObsgapError as exc:
                failed.append(str(exc))
    return failed


def _webhook_url(path: str | None) -> str | None:
    """The webhook URL from its file (a secret: never echoed)."""
    if not path:
        return None
    try:
        url = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--notify-webhook-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})"
                         ) from exc
    if not _http_url(url):
        raise InputError(f"--notify-webhook-file {path}: expected one http(s):// webhook URL in the file (a host, "
                         "no spaces or line breaks)")
    return url


def _http_url(url: str) -> bool:
    """An http(s) URL with a host, a valid port and no whitespace or control characters (what urllib can send)."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    return parts.scheme in ("https", "http") and bool(parts.hostname) and port_ok and \
        not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url)


def _prometheus(o: dict[str, Any]) -> PrometheusOptions | None:
    if not o["prometheus_url"]:
        return None
    if not o["prometheus_url"].startswith(("http://", "https://")):
        raise InputError("--prometheus-url must start with http:// or https://")
    if re.search(r"/api/v1(/.*)?$", o["prometheus_url"].split("?", 1)[0]):
        raise InputError(f"--prometheus-url {redact_url(o['prometheus_url'])}: give the base URL, without "
                         "/api/v1 (e.g. http://prometheus:9090, or Mimir's http://mimir/prometheus)")
    return PrometheusOptions(
        url=o["prometheus_url"],
        bearer_token_file=Path(o["bearer_token_file"]) if o["bearer_token_file"] else None,
        basic_auth_file=Path(o["basic_auth_file"]) if o["basic_auth_file"] else None,
        ca_file=Path(o["ca_file"]) if o["ca_file"] else None,
        insecure_skip_verify=o["insecure_skip_verify"],
        headers=tuple(parse_header(h) for h in o["headers"]), timeout_seconds=o["query_timeout"])


def _live(o: dict[str, Any]) -> LiveOptions | None:
    if not (o["kubeconfig"] or o["kube_context"] or o["in_cluster"]):
        return None
    if o["kube_snapshot"]:
        raise InputError("--kube-snapshot and a live cluster (--kubeconfig/--context/--in-cluster) both given: "
                         "give one of them")
    return LiveOptions(o["kubeconfig"], o["kube_context"], o["in_cluster"])


def _pod_logs(o: dict[str, Any], live: LiveOptions | None) -> PodLogOptions | None:
    if not o["pod_logs"]:
        if o["pod_logs_containers"]:
            raise InputError("--pod-logs-container needs --pod-logs")
        return None
    if live is None:
        raise InputError("--pod-logs reads logs through the Kubernetes API: give a live cluster "
                         "(--kubeconfig/--context/--in-cluster)")
    return PodLogOptions(tuple(o["pod_logs_containers"]), o["pod_logs_concurrency"], o["pod_logs_limit_bytes"])


def _checked(o: dict[str, Any]) -> None:
    """The flags' values that need no source to be judged."""
    for header in o["headers"]:
        parse_header(header)
    for ns in o["namespaces"]:
        namespace_matcher("namespace", (ns,))
    unknown = [c for c in o["only_checks"] if by_id(c) is None]
    if unknown:
        raise InputError(f"--check: unknown check(s) {', '.join(unknown)} (see `obsgap checks`)")
    if o.get("metrics_file") and not Path(o["metrics_file"]).resolve().parent.is_dir():
        raise InputError(f"--metrics-file {o['metrics_file']}: its folder does not exist")
    if o.get("pushgateway") and not _http_url(str(o["pushgateway"])):
        raise InputError(f"--pushgateway {redact_url(str(o['pushgateway']))}: give an http(s)://host[:port] URL")
    if not 0 <= o["tolerance"] < 1:
        raise InputError("--tolerance must be between 0 and 1")


def _plan(o: dict[str, Any]) -> RunPlan:
    window = resolve_window(o["start"], o["end"], o["window"])
    _checked(o)
    prom, live = _prometheus(o), _live(o)
    clickhouse = _clickhouse(o)
    pod_logs = _pod_logs(o, live)
    if clickhouse is not None and (o["logs"] or pod_logs is not None):
        raise InputError("--clickhouse-url reads the logs from ClickHouse: give it, or --logs/--pod-logs, not both")
    if not (prom or live or o["kube_snapshot"] or o["logs"] or clickhouse):
        raise InputError("nothing to read: give --prometheus-url, --kube-snapshot (or --kubeconfig/--context/"
                         "--in-cluster), and/or --logs")
    return RunPlan(
        window=window, out_dir=Path(o["out"]) if o["out"] else None, out_root=Path(o["out_root"]),
        baseline=Path(o["baseline"]) if o["baseline"] else None, namespaces=tuple(o["namespaces"]), prometheus=prom,
        kube_snapshots=tuple(Path(p) for p in o["kube_snapshot"]), kube_live=live, logs=tuple(o["logs"]),
        pod_logs=pod_logs, clickhouse=clickhouse,
        log_fields=parse_log_fields(o["log_field"]), fail_on=o["fail_on"],
        access_log_formats=parse_access_log_formats(o["access_log_formats"]),
        log_pods=tuple(parse_log_pod(p) for p in o["log_pods"]),
        settings=CheckSettings(tolerance=o["tolerance"], min_requests=o["min_requests"],
                               namespaces=tuple(o["namespaces"]), slo_latency_ms=parse_slos(o["slo_latency"])),
        only_checks=tuple(o["only_checks"]), dashboards=tuple(Path(p) for p in o["dashboards"]),
        slo_paths=tuple(Path(p) for p in o["slos"]),
        witness_families=tuple(parse_witness_metric(w) for w in o["witness_metrics"]))


def _clickhouse(o: dict[str, Any]) -> ClickHouseOptions | None:
    if not o["clickhouse_url"]:
        return None
    keys = _attribute_keys(o["clickhouse_attributes"])
    for flag in ("clickhouse_user_file", "clickhouse_password_file"):
        if o[flag] and not Path(o[flag]).is_file():
            raise InputError(f"--{flag.replace('_', '-')} {o[flag]}: no such file")
    return ClickHouseOptions(url=o["clickhouse_url"], table=o["clickhouse_table"], database=o["clickhouse_database"],
                             user_file=Path(o["clickhouse_user_file"]) if o["clickhouse_user_file"] else None,
                             password_file=Path(o["clickhouse_password_file"]) if o["clickhouse_password_file"]
                             else None, **keys)


def _attribute_keys(items: tuple[str, ...]) -> dict[str, str]:
    keys = {}
    for item in items:
        what, sep, key = item.partition("=")
        if not sep or what not in ("namespace", "pod", "container") or not key:
            raise InputError(f"--clickhouse-attribute {item!r}: give namespace=KEY, pod=KEY or container=KEY")
        keys[f"{what}_key"] = key
    return keys


@main.group(invoke_without_command=True)
@click.pass_context
def checks(ctx: click.Context) -> None:
    """List the checks (`obsgap checks explain ID` for one)."""
    if ctx.invoked_subcommand is None:
        width = max(len(c.id) for c in REGISTRY)
        for c in REGISTRY:
            needs = ", ".join(c.needs)
            click.echo(f"{c.id:<{width}}  {c.title}  [needs: {needs}]")


@checks.command()
@click.argument("check_id")
def explain(check_id: str) -> None:
    """Print a check's documentation."""
    check = by_id(check_id)
    by_code = [c for c in REGISTRY if c.istio_code and c.istio_code.lower() == check_id.lower()]
    if check is None and by_code:  # an istioctl analyze code: the checks that report it
        for c in by_code[1:]:
            click.echo(f"{c.istio_code} is also reported by {c.id} (obsgap checks explain {c.id})")
        check = by_code[0]
    if check is None:
        import difflib

        near = difflib.get_close_matches(check_id, CHECK_IDS, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(near)}?" if near else f"known: {', '.join(CHECK_IDS)}"
        codes = sorted({c.istio_code for c in REGISTRY if c.istio_code})
        click.echo(f"obsgap: unknown check {check_id!r}; {hint} (istioctl codes work too: {', '.join(codes)})",
                   err=True)
        sys.exit(2)
    click.echo(f"{check.id} — {check.title}")
    for heading, text in doc_sections(check):
        click.echo(f"\n{heading}\n" + textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="  "))
    extra = [f"needs: {', '.join(check.needs)}"]
    if check.istio_code:
        extra.append(f"istioctl analyze: {check.istio_code}")
    if check.doc_url:
        extra.append(f"Istio docs: {check.doc_url}")
    click.echo("\n" + "\n".join(extra))


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="reports/demo", show_default=True)
@click.option("--hours", type=float, default=2.0, show_default=True, help="Simulated hours of traffic.")
@click.option("--mesh", type=click.Choice(["default", "witnesses", "ambient"]), default="default", show_default=True,
              help="witnesses: no access logs and no application logs; coverage from the services' own request "
                   "metrics and an eBPF agent (OBI) alone. ambient: an ambient namespace (ztunnel, a waypoint, a "
                   "missing one, an opted-out pod), Gateway API routes, Prometheus 3's bucket spelling.")
@click.option("--serve", is_flag=True, help="Keep the demo's Prometheus serving after the report and print the "
                                            "`obsgap report` command that reads the same data (Ctrl-C ends it).")
def demo(out: str, hours: float, mesh: str, serve: bool) -> None:
    """Build a demo mesh with one of every gap, serve its metrics from a real Prometheus, run the report."""
    from obsgap.scenario.demo import run_demo

    try:
        path = run_demo(Path(out), hours, lambda m: click.echo(f"· {m}", err=True), mesh, serve)
        click.echo("open the report in a browser (findings.json and summary.md are next to it):", err=True)
        if not serve:
            click.echo("to run `obsgap report` again on this data, with flags of your own: obsgap demo --serve",
                       err=True)
    except ObsgapError as exc:
        click.echo(f"obsgap: {exc}", err=True)
        sys.exit(exc.exit_code)
    click.echo(str(path))


@main.command(name="clickhouse-schema")
@click.option("--source-table", default="otel_logs", show_default=True, help="The Collector's logs table.")
@click.option("--table", default="obsgap_requests", show_default=True,
              help="The table of parsed requests to create (read it with --clickhouse-table).")
@click.option("--insert-user", help="The ClickHouse user the Collector inserts as: print the settings profile the "
                                    "view's parse needs, granted to it.")
@click.option("--ttl-days", type=click.IntRange(0), default=0, show_default=True,
              help="Drop parsed rows after this many days (0: keep).")
@click.option("--clickhouse-attribute", "clickhouse_attributes", multiple=True,
              help="namespace|pod|container=KEY: the ResourceAttributes key naming it.")
@click.option("--log-field", multiple=True, help="Map a field to your JSON key, as `report` takes it.")
@click.option("--access-log-format", "access_log_formats", multiple=True,
              help="An Envoy access-log format the sidecars use, as `report` takes it; repeatable.")
def clickhouse_schema_cmd(source_table: str, table: str, insert_user: str | None, ttl_days: int,
                          clickhouse_attributes: tuple[str, ...], log_field: tuple[str, ...],
                          access_log_formats: tuple[str, ...]) -> None:
    """Print the DDL that parses the logs at ingest: a table of typed requests filled from the Collector's table
    by a materialized view (the parse `report --clickhouse-url` runs, from the same formats). Then run report with
    --clickhouse-table TABLE: no per-line parse at read time."""
    from obsgap.sources.logs.clickhouse_schema import schema_ddl

    try:
        keys = _attribute_keys(clickhouse_attributes)
        click.echo(schema_ddl(source_table, table, parse_access_log_formats(access_log_formats),
                              parse_log_fields(log_field) or None, insert_user=insert_user, ttl_days=ttl_days,
                              **keys), nl=False)
    except InputError as exc:
        click.echo(f"obsgap: {exc}", err=True)
        sys.exit(exc.exit_code)


@main.command(name="manifests")
@click.option("--install-namespace", default="obsgap", show_default=True, help="Where obsgap's own objects go.")
@click.option("--image", default=None, help="An image with obsgap installed (default: this version's release image, "
                                            "ghcr.io/obsgap/obsgap:VERSION; `make image IMAGE=...` builds one).")
@click.option("--schedule", default="0 2 * * *", show_default=True, help="Cron schedule, in --time-zone.")
@click.option("--time-zone", default="Etc/UTC", show_default=True, help="The CronJob's timeZone.")
@click.option("-n", "--namespace", "namespaces", multiple=True, help="report -n: judge only these namespaces.")
@click.option("--prometheus-url", default="http://prometheus.istio-system:9090", show_default=True)
@click.option("--window", default="24h", show_default=True)
@click.option("--logs-claim", help="PersistentVolumeClaim with shipped logs, mounted read-only at /logs (instead of "
                                   "reading logs through pods/log).")
@click.option("--reports-claim", help="An existing PersistentVolumeClaim for the reports (default: create "
                                      "obsgap-reports).")
@click.option("--reports-size", default="2Gi", show_default=True, help="Size of the reports claim created.")
@click.option("--ephemeral-reports", is_flag=True, help="Keep reports in an emptyDir (lost with the pod).")
@click.option("--pod-logs/--no-pod-logs", "pod_logs", default=None,
              help="Read logs through pods/log (RBAC: get pods/log), as report --pod-logs. Default: yes, unless "
                   "--logs-claim or --clickhouse-url.")
@click.option("--clickhouse-url", help="Read logs from ClickHouse (otel_logs); user and password from the Secret "
                                       "obsgap-clickhouse (keys user, password).")
@click.option("--pushgateway", help="Push each run's metrics to this Pushgateway (for the alerts of --alerts).")
@click.option("--mesh-revision", "mesh_revisions", multiple=True,
              help="An Istio revision (istioctl install --revision): RBAC may read its MeshConfig, ConfigMap "
                   "istio-REV in istio-system, for its access-log format. Repeatable.")
@click.option("--reports-reader", is_flag=True,
              help="Print only a Pod that mounts the reports claim read-only (then kubectl cp the reports out).")
@click.option("--alerts", is_flag=True,
              help="Print only a PrometheusRule with alerts on the series --metrics-file/--pushgateway write.")
def manifests_cmd(alerts: bool, **opts: Any) -> None:
    """Print the Kubernetes objects to run obsgap nightly: read-only RBAC, ConfigMap, CronJob."""
    from obsgap.manifests import ManifestOptions, render_alerts, render_manifests, render_reports_reader

    if alerts:
        click.echo(render_alerts(opts["install_namespace"]), nl=False)
        return
    reader = opts.pop("reports_reader")
    if opts["namespaces"]:
        click.echo(f"· -n/--namespace limits the nightly run to {', '.join(opts['namespaces'])} (as report -n); "
                   f"obsgap's own objects go to --install-namespace ({opts['install_namespace']})", err=True)
    opts["namespaces"] = tuple(opts["namespaces"])
    opts["mesh_revisions"] = tuple(opts["mesh_revisions"])
    options = ManifestOptions(**{k: v for k, v in opts.items() if not (k == "image" and v is None)})
    click.echo(render_reports_reader(options) if reader else render_manifests(options), nl=False)
