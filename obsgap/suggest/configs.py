"""Ready-to-paste configuration for a bucket layout, for every place histograms are defined."""

from __future__ import annotations

import json
from collections.abc import Sequence

STATS_BUCKETS_ANNOTATION = "sidecar.istio.io/statsHistogramBuckets"


def _fmt(bounds: Sequence[float]) -> list[float | int]:
    return [int(b) if float(b).is_integer() else float(f"{b:.6g}") for b in bounds]


def istio_annotation(bounds_ms: Sequence[float], workload: str) -> str:
    value = json.dumps({"istiocustom": _fmt(bounds_ms)}, separators=(",", ":"))
    return (f"# Deployment {workload}: pod template annotation (Istio >= 1.19); restart to apply\n"
            f"spec:\n  template:\n    metadata:\n      annotations:\n"
            f"        {STATS_BUCKETS_ANNOTATION}: '{value}'")


def waypoint_annotation(bounds_ms: Sequence[float], namespace: str, gateway: str) -> str:
    """A waypoint's own proxy reads the same annotation: Istio copies a Gateway's spec.infrastructure.annotations
    onto the pods it deploys for it."""
    value = json.dumps({"istiocustom": _fmt(bounds_ms)}, separators=(",", ":"))
    return (f"# Gateway {namespace}/{gateway} (the waypoint serving this Service): its pods get the annotation\n"
            f"spec:\n  infrastructure:\n    annotations:\n        {STATS_BUCKETS_ANNOTATION}: '{value}'")


def envoy_bootstrap(bounds_ms: Sequence[float]) -> str:
    buckets = ", ".join(str(b) for b in _fmt(bounds_ms))
    return ("# Envoy bootstrap equivalent (first matching prefix wins)\nstats_config:\n"
            "  histogram_bucket_settings:\n  - match:\n      prefix: istiocustom\n"
            f"    buckets: [{buckets}]")


def python_client(name: str, bounds_s: Sequence[float]) -> str:
    buckets = ", ".join(str(b) for b in _fmt(bounds_s))
    return ("from prometheus_client import Histogram\n"
            f'{name.upper()} = Histogram("{name}", "Request latency in seconds",\n'
            f"    buckets=[{buckets}, float(\"inf\")])")


def go_client(name: str, bounds_s: Sequence[float]) -> str:
    buckets = ", ".join(str(b) for b in _fmt(bounds_s))
    return (f"var requestDuration = prometheus.NewHistogram(prometheus.HistogramOpts{{\n"
            f'\tName:    "{name}",\n\tHelp:    "Request latency in seconds",\n'
            f"\tBuckets: []float64{{{buckets}}},\n}})")


NATIVE_HISTOGRAMS = (
    "# Alternative: let Prometheus keep exponential (native) buckets, so no layout can saturate.\n"
    "# Prometheus >= 3.x scrape config; the client must expose native histograms (Go client: NativeHistogram*\n"
    "# options; prometheus_client for Python does not yet):\n"
    "scrape_native_histograms: true\n"
    "# or, keeping the classic buckets but storing them as one native series per histogram:\n"
    "convert_classic_histograms_to_nhcb: true")

NHCB_STORAGE = (
    "# Envoy (and so Istio's sidecars, gateways and waypoints) exposes no native histograms: no scrape setting\n"
    "# makes its buckets exponential, only the annotation above changes them. Prometheus >= 3.x can store the\n"
    "# classic buckets as one native series per histogram (cheaper, same bounds, still saturating at the top one):\n"
    "convert_classic_histograms_to_nhcb: true\n"
    "# then histogram_quantile() reads istio_request_duration_milliseconds, not ..._bucket: rewrite dashboards\n"
    "# and SLOs")


def obi_buckets(bounds: list[float]) -> str:
    """OpenTelemetry eBPF Instrumentation (OBI) and Beyla: the duration histogram of their Prometheus endpoint
    (`prometheus_export.buckets.duration_histogram`, in seconds)."""
    return ("# OBI / Beyla configuration (its Prometheus endpoint's duration histogram, seconds)\n"
            "prometheus_export:\n  buckets:\n    duration_histogram: [" + ", ".join(f"{b:g}" for b in bounds) + "]")
