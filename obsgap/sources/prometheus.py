"""The Prometheus-compatible source (Prometheus, Thanos, Mimir, VictoriaMetrics).

prometheus-api-client owns the connection (session, auth, TLS, retries) and the metadata calls;
instant queries go through the same session but read the whole response body, because the
library's `custom_query` drops the API's `warnings`, which the report must keep.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pandas as pd
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from obsgap.errors import InputError
from obsgap.model import PanelQuery
from obsgap.sources.queries import FamilyScope, Grid, load_query

RETRY_STATUS = (429, 500, 502, 503, 504)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class PrometheusOptions:
    url: str
    bearer_token_file: Path | None = None
    basic_auth_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float = 60.0
    retries: int = 3
    backoff_seconds: float = 0.5


@dataclass(frozen=True)
class QueryResult:
    name: str
    frame: pd.DataFrame
    """One row per returned series: its labels as columns plus `value` (float)."""
    warnings: tuple[str, ...] = ()
    error: str | None = None
    samples: int | None = None
    """Peak samples the backend reported (`stats=all`), when it reports them."""


@dataclass
class PrometheusSource:
    options: PrometheusOptions
    queries_issued: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    query_samples: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    """Query name -> how many namespace-scoped parts it was split into after hitting the sample limit."""
    _client: PrometheusConnect | None = None

    def _headers(self) -> dict[str, str]:
        headers = {k: v for k, v in self.options.headers}
        if self.options.bearer_token_file:
            path = self.options.bearer_token_file
            try:
                token = path.read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"--bearer-token-file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
            if not token:
                raise InputError(f"--bearer-token-file {path}: the file is empty (a token was expected)")
            if "\n" in token or "\r" in token:
                raise InputError(f"--bearer-token-file {path}: holds several lines; one token was expected")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def validate_credentials(self) -> None:
        """Read the credential files now (before any work), so a missing or empty one is a clear error."""
        self._headers()
        self._auth()

    def _scrub(self, text: str) -> str:
        """No secret from the URL (password, query parameter values) in any message the report keeps."""
        for secret in url_secrets(self.options.url):
            text = text.replace(secret, "REDACTED")
        return text

    def _auth(self) -> tuple[str, str] | None:
        if not self.options.basic_auth_file:
            return None
        try:
            text = self.options.basic_auth_file.read_text().strip()
        except OSError as exc:
            raise InputError(f"--basic-auth-file: {exc.strerror}") from exc
        user, sep, password = text.partition(":")
        if not sep:
            raise InputError("--basic-auth-file must contain user:password")
        return user, password

    @property
    def client(self) -> PrometheusConnect:
        if self._client is None:
            session = requests.Session()
            if self.options.insecure_skip_verify:
                session.verify = False
            elif self.options.ca_file:
                session.verify = str(self.options.ca_file)
            retry = Retry(total=self.options.retries, connect=self.options.retries, read=self.options.retries,
                          backoff_factor=self.options.backoff_seconds, status_forcelist=RETRY_STATUS,
                          allowed_methods=frozenset({"GET", "POST"}), respect_retry_after_header=True,
                          raise_on_status=False)
            # PrometheusConnect mounts its adapter with this Retry for the URL prefix.
            self._client = PrometheusConnect(url=split_url(self.options.url)[0], headers=self._headers(),
                                             auth=self._auth(), session=session, retry=retry,
                                             timeout=self.options.timeout_seconds)
        return self._client

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        c = self.client
        resp = c._session.post(f"{c.url}{path}", data=dict(params), params=split_url(self.options.url)[1],
                               headers=c.headers, auth=c.auth, timeout=self.options.timeout_seconds)
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or body.get("status") != "success":
            raise PrometheusApiClientException(f"HTTP {resp.status_code}: {_http_detail(resp, body)}")
        return body

    def query(self, name: str, window_seconds: int, at: datetime, namespaces: tuple[str, ...] = (),
              bucket_series: str | None = None, family: FamilyScope | None = None,
              grid: Grid | None = None) -> QueryResult:
        """Run queries/<name>.promql as an instant query at `at`. Failures are recorded, not raised.

        A query the backend refuses for loading too many samples is split by namespace (the query file's
        scope label), halving until each part fits; `splits` records it for the report."""
        query = load_query(name)
        label = f"{name}:{bucket_series or (family.label or family.series if family else '')}".rstrip(":")
        try:
            body = self._instant(query.bind(window_seconds, namespaces, bucket_series, family, grid), at)
        except (requests.RequestException, PrometheusApiClientException) as exc:
            scope_label = (family.namespace_label if family else None) if query.scope == "family" else query.scope
            if not _too_many_samples(exc) or not scope_label or scope_label.split()[0] == "none":
                return self._failed(label, exc)
            scope = namespaces or tuple(self._label_values(scope_label, window_seconds, at))
            if len(scope) < 2:
                return self._failed(label, exc)
            parts: list[QueryResult] = []
            half = len(scope) // 2
            for chunk in (scope[:half], scope[half:]):
                parts.append(self.query(name, window_seconds, at, chunk, bucket_series, family, grid))
            self.splits[label] = self.splits.get(label, 1) + 1
            errors = [p.error for p in parts if p.error]
            if errors:
                return QueryResult(label, pd.DataFrame(), error=errors[0])
            return QueryResult(label, pd.concat([p.frame for p in parts], ignore_index=True),
                               tuple(w for p in parts for w in p.warnings))
        return self._result(label, body)

    def query_range(self, name: str, start: datetime, end: datetime, step_seconds: int,
                    namespaces: tuple[str, ...] = ()) -> QueryResult:
        """Run queries/<name>.promql as a range query; `$window` is bound to the step. Rows: labels, t, value."""
        promql = load_query(name).bind(step_seconds, namespaces)
        self.queries_issued += 1
        try:
            body = self._get("/api/v1/query_range", {
                "query": promql, "start": f"{start.timestamp() + step_seconds:.0f}", "end": f"{end.timestamp():.0f}",
                "step": str(step_seconds)})
        except (requests.RequestException, PrometheusApiClientException) as exc:
            return self._failed(name, exc)
        self.warnings.extend(f"query {name}: {w}" for w in body.get("warnings") or [])
        rows = []
        for series in (body.get("data") or {}).get("result") or []:
            labels = dict(series.get("metric") or {})
            for t, v in series.get("values") or []:
                rows.append(labels | {"t": float(t), "value": float(v)})
        return QueryResult(name, pd.DataFrame(rows))

    def query_promql(self, label: str, promql: str, at: datetime) -> QueryResult:
        """A query obsgap did not write (an SLO's SLI), as an instant query at `at`. Failures are recorded."""
        try:
            body = self._instant(promql, at)
        except (requests.RequestException, PrometheusApiClientException) as exc:
            return self._failed(label, exc)
        return self._result(label, body)

    def _instant(self, promql: str, at: datetime) -> dict[str, Any]:
        self.queries_issued += 1
        return self._get("/api/v1/query", {"query": promql, "time": f"{at.timestamp():.3f}", "stats": "all"})

    def _failed(self, label: str, exc: BaseException) -> QueryResult:
        msg = self._scrub(f"query {label}: {_describe(exc)}")
        self.errors.append(msg)
        return QueryResult(label, pd.DataFrame(), error=msg)

    def _label_values(self, label: str, window_seconds: int, at: datetime) -> list[str]:
        """The values a split by namespace may use: only DNS labels can be scoped safely."""
        values = self.label_values(label, datetime.fromtimestamp(at.timestamp() - window_seconds, at.tzinfo), at)
        return sorted(v for v in values or [] if v and _DNS_LABEL.match(v))

    def _result(self, name: str, body: dict[str, Any]) -> QueryResult:
        warnings = tuple(f"query {name}: {w}" for w in body.get("warnings") or [])
        self.warnings.extend(self._scrub(w) for w in warnings)
        data = body.get("data") or {}
        rows = []
        for series in data.get("result") or []:
            labels = dict(series.get("metric") or {})
            value = series.get("value") or [0, "nan"]
            labels["value"] = float(value[1])
            rows.append(labels)
        samples = ((data.get("stats") or {}).get("samples") or {}).get("peakSamples")
        if samples is not None:
            self.query_samples[name] = max(int(samples), self.query_samples.get(name, 0))
        return QueryResult(name, pd.DataFrame(rows), warnings, None, samples)

    def metric_names(self, start: datetime, end: datetime) -> list[str] | None:
        """Metric names with samples in the window (label-values API), or None when it fails."""
        return self.label_values("__name__", start, end, record_error=True)

    def label_values(self, label: str, start: datetime, end: datetime,
                     record_error: bool = False) -> list[str] | None:
        """Values of a label with samples in the window, or None when the API fails."""
        try:
            values = self.client.get_label_values(label, params={"start": f"{start.timestamp():.0f}",
                                                                 "end": f"{end.timestamp():.0f}"}
                                                  | split_url(self.options.url)[1])
        except (requests.RequestException, PrometheusApiClientException, ValueError, KeyError) as exc:
            if record_error:
                self.errors.append(self._scrub(f"label values: {_describe(exc)}"))
            return None
        self.queries_issued += 1
        return [str(v) for v in values or []]

    def targets(self) -> list[dict[str, Any]] | None:
        """Active targets from /api/v1/targets, or None where the backend has no targets API."""
        try:
            return list(self.client.get_targets(state="active").get("activeTargets") or [])
        except (requests.RequestException, PrometheusApiClientException, ValueError, KeyError):
            return None

    def configuration(self) -> str | None:
        """The running configuration's YAML from /api/v1/status/config, or None where the backend serves none
        (Thanos, Mimir, VictoriaMetrics) or it could not be read."""
        data = self._status("config")
        text = data.get("yaml") if data is not None else None
        return text if isinstance(text, str) else None

    def configuration_since(self) -> datetime | None:
        """When the running configuration was loaded (the last successful load, at start or on reload:
        /api/v1/status/runtimeinfo's lastConfigTime), or None where the backend does not say, or where the last
        reload failed (reloadConfigSuccess false): a reload fails as a whole when one part refuses the new
        configuration (a rule file that does not parse), yet the scrape manager and /api/v1/status/config may have
        taken it already, while lastConfigTime stays at the last load that succeeded."""
        data = self._status("runtimeinfo")
        if data is None or data.get("reloadConfigSuccess") is False:
            return None
        return loaded_at(data.get("lastConfigTime"))

    def rules(self) -> RulesRead | None:
        """Every alerting and recording rule the backend evaluates (/api/v1/rules), one PanelQuery each (the group's
        name and file; `alert <name>` or `record <name>`; the query as Prometheus prints it), the same rule served
        twice (Thanos over an HA pair) once; and the recording rules, with their labels, as rule files hold them.
        None where the backend serves no rules API or it could not be read. VictoriaMetrics answers an empty list
        unless -vmalert.proxyURL names a vmalert: none read is not none evaluated."""
        # the firing alerts are not read: a backend that knows exclude_alerts leaves them out, others ignore it
        data = self._data("/api/v1/rules", {"exclude_alerts": "true"})
        groups = data.get("groups") if data is not None else None
        if not isinstance(groups, list):
            return None
        out: dict[PanelQuery, None] = {}
        recorded: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for group in groups:
            rules = group.get("rules") if isinstance(group, Mapping) else None
            for rule in rules if isinstance(rules, list) else ():
                if isinstance(rule, Mapping) and isinstance(rule.get("query"), str):
                    kind = _RULE_KINDS.get(str(rule.get("type")), "rule")
                    name, file = str(group.get("name") or "(unnamed)"), str(group.get("file") or "")
                    out[PanelQuery(name, f"{kind} {rule.get('name') or '(unnamed)'}", rule["query"], file)] = None
                    if kind == "record" and isinstance(rule.get("labels") or {}, Mapping):
                        recorded.setdefault(file, {}).setdefault(name, []).append(
                            {"record": str(rule.get("name")), "expr": rule["query"],
                             "labels": dict(rule.get("labels") or {})})
        return RulesRead(tuple(out), tuple(
            (file, {"groups": [{"name": g, "rules": rs} for g, rs in by_group.items()]})
            for file, by_group in recorded.items()))

    def _status(self, page: str) -> Mapping[str, Any] | None:
        """The `data` of a /api/v1/status/ page, or None where the backend serves none or it could not be read."""
        return self._data(f"/api/v1/status/{page}")

    def _data(self, path: str, params: Mapping[str, str] | None = None) -> Mapping[str, Any] | None:
        """The `data` of a GET of the API, or None where the backend serves none or it could not be read."""
        c = self.client
        try:
            resp = c._session.get(f"{c.url}{path}", params={**split_url(self.options.url)[1], **(params or {})},
                                  headers=c.headers, auth=c.auth, timeout=self.options.timeout_seconds)
            body = resp.json()
        except (requests.RequestException, ValueError):
            return None
        data = body.get("data") if isinstance(body, dict) and resp.status_code == 200 else None
        return data if isinstance(data, Mapping) else None

    def check(self) -> str | None:
        """None when reachable, else a one-line reason."""
        started = time.monotonic()
        try:
            self._get("/api/v1/query", {"query": "1"})
        except (requests.RequestException, PrometheusApiClientException) as exc:
            return self._scrub(f"{_describe(exc)} (after {time.monotonic() - started:.1f}s)")
        return None

    def status(self) -> Literal["ok", "partial", "unavailable"]:
        if self.errors and self.queries_issued and len(self.errors) >= self.queries_issued:
            return "unavailable"
        if self.errors or self.warnings:
            return "partial"
        return "ok"


_RULE_KINDS = {"alerting": "alert", "recording": "record"}


@dataclass(frozen=True)
class RulesRead:
    """What /api/v1/rules gave."""

    queries: tuple[PanelQuery, ...]
    """Every rule, one each (the dashboard checks judge them)."""
    recorded: tuple[tuple[str, Mapping[str, Any]], ...]
    """Per rule file: (its path, a rule-file document of its recording rules with their labels), as the SLO loader
    reads Sloth's generated rules."""


def _too_many_samples(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "too many samples" in text or "exceeded the sample limit" in text or "max-samples" in text


def redact_url(url: str) -> str:
    """The URL as it may be written anywhere: no user:password, no query parameter values."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    query = "&".join(f"{k}=REDACTED" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    if not (parts.username or parts.password or parts.query):
        return url
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """(base URL without query, query parameters): parameters such as `?token=` go with every request."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")), dict(parse_qsl(parts.query))


def url_secrets(url: str) -> list[str]:
    """What must never be written: the URL's password and its query parameter values."""
    parts = urlsplit(url)
    found = [v for _, v in parse_qsl(parts.query) if len(v) >= 3]
    if parts.password:
        found.append(parts.password)
    return sorted(found, key=len, reverse=True)


def _http_detail(resp: requests.Response, body: Mapping[str, Any]) -> str:
    if body.get("error"):
        return str(body["error"])[:300]
    text = resp.text.strip()
    if re.match(r"(?is)^(<!doctype|<html|<\?xml)", text):
        return (f"{resp.reason or 'error'} (the answer is an HTML page, not the Prometheus API: check the URL, its "
                "path prefix and any proxy in front of it)")
    if "HTTP request to an HTTPS server" in text:
        return f"{text[:120]} (use https://)"
    return text[:200] or resp.reason or "no body"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text or "record layer failure" in text:
            return "TLS handshake failed: the server does not speak TLS on this port (use http:// instead of https://?)"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return "TLS certificate not trusted (give --ca-file, or --insecure-skip-verify to test)"
        return "TLS error"
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "timed out" in text.lower() or "ReadTimeout" in text:
            return "timed out (no answer within the query timeout, retries exhausted)"
        if "Max retries exceeded" in text and "ResponseError" in text:
            return "server kept failing (retries exhausted)"
        if "Connection refused" in text:
            return "cannot connect: connection refused (nothing listens on that host and port)"
        if "Name or service not known" in text or "Temporary failure in name resolution" in text or \
                "nodename nor servname" in text:
            return "cannot connect: the host name does not resolve"
        if "RemoteDisconnected" in text or "BadStatusLine" in text:
            return "cannot connect: the server closed the connection (https:// to an http port, or not HTTP?)"
        return "cannot connect"
    return text[:300]


def loaded_at(value: object) -> datetime | None:
    """runtimeinfo's lastConfigTime (RFC 3339, as Go prints it) in UTC; None for anything else: no zone, Go's zero
    time or the epoch (no load known), a date out of range."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        loaded = parsed.astimezone(UTC) if parsed is not None and parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None
    return loaded if loaded is not None and loaded.timestamp() > 0 else None
