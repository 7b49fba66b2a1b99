"""Write every output of one run into its folder: read history, build the report model, render, replace the files.

The only module of the report that touches the disk; the renderers are pure functions of the model."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obsgap.errors import InputError, SourceError
from obsgap.history import load_history
from obsgap.render.html import PlotlyMode, render_html
from obsgap.render.json_out import render_json, result_dict
from obsgap.render.markdown import render_markdown
from obsgap.render.metrics import render_metrics
from obsgap.report.build import build_report
from obsgap.report.model import Report
from obsgap.result import ScanResult
from obsgap.sources.prometheus import redact_url
from obsgap.text import safe


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class Written:
    """What one run wrote: its paths (findings.json first), the report model and the texts, for stdout."""

    paths: list[Path]
    report: Report
    document: dict[str, Any]
    texts: dict[str, str]


def write_outputs(result: ScanResult, out_dir: Path, baseline: Path | None = None,
                  plotly: PlotlyMode = "embed") -> Written:
    """report.html, summary.md, then findings.json (what history reads) last. Everything is rendered first;
    the files are then replaced with SIGINT/SIGTERM held back, so an interrupt never leaves half a report.
    Returns the paths written (findings.json first), the model and the texts."""
    out_dir.mkdir(parents=True, exist_ok=True)  # the CLI claims it first; library callers may not have
    report = build_report(result, load_history(out_dir, baseline))
    document = result_dict(report)
    texts = {"report.html": render_html(report, plotly, document), "summary.md": render_markdown(report),
             "findings.json": render_json(document)}
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        for name, text in texts.items():
            _atomic_write(out_dir / name, text)
    except OSError as exc:
        raise InputError(f"--out {out_dir}: cannot write the report ({exc.strerror})") from exc
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return Written([out_dir / "findings.json", out_dir / "report.html", out_dir / "summary.md"], report, document,
                   texts)


def metrics_text(written: Written) -> str:
    """The run as metrics (render.metrics), once for the file and the Pushgateway alike."""
    return render_metrics(written.document, written.report.result.generated_at.timestamp())


def write_metrics(path: Path, text: str) -> None:
    """The metrics file, replaced atomically: the textfile collector never reads half a file."""
    try:
        _atomic_write(path, text)
    except OSError as exc:
        raise InputError(f"--metrics-file {path}: cannot write it ({exc.strerror})") from exc


def _send(url: str, body: bytes, method: str, content_type: str, what: str, timeout_s: float) -> None:
    """One HTTP request of a publishing step; a failure is a SourceError starting with `what` (which names the
    destination as it may be shown), never a traceback."""
    import urllib.error
    import urllib.request

    try:
        request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        detail = safe(exc.read().decode("utf-8", "replace").strip()[:300])
        raise SourceError(f"{what}: HTTP {exc.code}" + (f": {detail}" if detail else "")) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise SourceError(f"{what}: cannot reach it ({safe(getattr(exc, 'reason', None) or type(exc).__name__)})"
                          ) from exc


def push_metrics(url: str, text: str, timeout_s: float = 30.0) -> None:
    """The metrics PUT to a Pushgateway under job="obsgap" (replacing the last run's group)."""
    _send(url.rstrip("/") + "/metrics/job/obsgap", text.encode(), "PUT", "text/plain; version=0.0.4; charset=utf-8",
          f"--pushgateway {redact_url(url)}", timeout_s)  # no user:password or query values in any message


SLACK_TEXT_LIMIT = 40_000
"""Slack truncates a message's text beyond 40,000 characters; summary.md is cut before that, and says so."""


def notify_webhook(url: str, written: Written, timeout_s: float = 30.0) -> None:
    """summary.md POSTed to a Slack-compatible incoming webhook as {"text": ...}. The URL is a secret: errors name
    its host only."""
    import json
    from urllib.parse import urlsplit

    # Slack reads <...> as links and mentions (<!channel>): its three control characters go as entities
    text = written.texts["summary.md"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(text) > SLACK_TEXT_LIMIT:
        text = text[:SLACK_TEXT_LIMIT - 200].rsplit("\n", 1)[0] + "\n… cut here: the whole summary is in summary.md\n"
    _send(url, json.dumps({"text": text}).encode(), "POST", "application/json",
          f"--notify-webhook-file: the webhook at {urlsplit(url).hostname or '(no host)'}", timeout_s)
