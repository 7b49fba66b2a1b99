"""Histogram arithmetic: Prometheus' histogram_quantile, and bucket layouts derived from real latencies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

NICE = (1.0, 2.0, 2.5, 5.0)


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float | None:
    """What Prometheus' histogram_quantile returns for sorted finite `bounds` and cumulative counts
    (one more than bounds: the last is +Inf). A quantile in the +Inf bucket is the top finite bound."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    total = cumulative[-1]
    rank = q * total
    for i, c in enumerate(cumulative):
        if c >= rank:
            if i == len(bounds):
                return float(bounds[-1]) if bounds else None
            upper = float(bounds[i])
            lower = float(bounds[i - 1]) if i > 0 else (0.0 if upper > 0 else upper)
            prev = cumulative[i - 1] if i > 0 else 0.0
            in_bucket = c - prev
            if in_bucket <= 0:
                return upper
            return lower + (upper - lower) * (rank - prev) / in_bucket
    return float(bounds[-1]) if bounds else None


@dataclass(frozen=True)
class Distribution:
    """Observed values as a fine log-scale histogram: (bin upper bound, count), sorted."""

    bins: tuple[tuple[float, float], ...]

    @property
    def total(self) -> float:
        return sum(c for _, c in self.bins)

    def quantile(self, q: float) -> float:
        rank, seen = q * self.total, 0.0
        for upper, c in self.bins:
            seen += c
            if seen >= rank:
                return upper
        return self.bins[-1][0]

    def cumulative(self, bounds: Sequence[float]) -> list[float]:
        """Counts per cumulative bucket `le` (plus +Inf) if these values were observed into `bounds`."""
        out, i, seen = [], 0, 0.0
        for b in bounds:
            while i < len(self.bins) and self.bins[i][0] <= b * (1 + 1e-9):
                seen += self.bins[i][1]
                i += 1
            out.append(seen)
        out.append(self.total)
        return out


def nice_ceil(x: float) -> float:
    """Smallest 1/2/2.5/5 x 10^k at or above x."""
    if x <= 0:
        return 0.0
    exp = math.floor(math.log10(x))
    for k in (exp, exp + 1):
        for m in NICE:
            v = m * 10**k
            if v >= x * (1 - 1e-12):
                return float(f"{v:.6g}")
    return float(f"{10 ** (exp + 1):.6g}")


def nice_round(x: float) -> float:
    if x <= 0:
        return 0.0
    exp = math.floor(math.log10(x))
    candidates = [m * 10**k for k in (exp - 1, exp, exp + 1) for m in NICE]
    return float(f"{min(candidates, key=lambda v: abs(math.log(v / x))):.6g}")


QUANTILE_POINTS = (0.01, 0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999)


def suggest_from_distribution(dist: Distribution, slos: Sequence[float] = (), max_buckets: int = 15) -> list[float]:
    """Bounds at the distribution's quantiles (snapped to nice numbers), the SLO thresholds exactly, and a top
    bound with headroom above p99.9."""
    top = nice_ceil(max(dist.quantile(0.999) * 2.0, max(slos, default=0.0) * 1.5))
    points = {nice_round(dist.quantile(q)) for q in QUANTILE_POINTS}
    bounds = sorted({p for p in points if 0 < p < top} | {float(s) for s in slos} | {top})
    return _thin(bounds, set(map(float, slos)) | {top}, max_buckets)


def suggest_from_buckets(bounds: Sequence[float], cumulative: Sequence[float], slos: Sequence[float] = (),
                         max_buckets: int = 15) -> list[float]:
    """Without raw latencies: keep the populated part of the old layout and extend it geometrically past the top
    bound (x2.5 steps, up to 25x), since the mass above it is unknown."""
    total = cumulative[-1] if cumulative else 0
    kept = [b for b, c in zip(bounds, cumulative, strict=False) if c < total] or list(bounds[-1:])
    top = bounds[-1]
    ext = [nice_ceil(top * f) for f in (2.5, 6, 12, 25)]
    merged = sorted({float(b) for b in kept[-8:]} | set(ext) | {float(s) for s in slos})
    return _thin(merged, set(map(float, slos)) | {ext[-1]}, max_buckets)


def _thin(bounds: list[float], keep: set[float], max_buckets: int) -> list[float]:
    """Drop the closest neighbours (never a kept bound) until the layout fits."""
    out = list(bounds)
    while len(out) > max_buckets:
        ratios = [(out[i + 1] / out[i], i) for i in range(len(out) - 1) if out[i] > 0]
        ratios.sort()
        for _, i in ratios:
            victim = i if out[i] not in keep else i + 1
            if out[victim] not in keep:
                del out[victim]
                break
        else:
            break
    return out


def unit_of(family: str) -> tuple[str, float]:
    """A histogram's unit from its name (Prometheus naming conventions), and the factor from milliseconds to it."""
    if family.endswith("_milliseconds") or "_milliseconds_" in family or family.endswith("_ms"):
        return "ms", 1.0
    if "seconds" in family:
        return "s", 0.001
    if "bytes" in family:
        return "bytes", math.nan
    return "?", math.nan
