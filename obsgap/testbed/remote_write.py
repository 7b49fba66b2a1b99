"""Prometheus remote write (protocol 1.0) for tests: native histograms, which promtool cannot backfill from
OpenMetrics text, pushed into a real Prometheus started with `--web.enable-remote-write-receiver
--enable-feature=native-histograms`.

Written by hand because no maintained PyPI package encodes prompb.WriteRequest with histograms: the protobuf
encoding of prometheus/prompb/types.proto (TimeSeries: labels 1, samples 2, histograms 4; Histogram: count_int 1,
sum 3, schema 4, zero_threshold 5, zero_count_int 6, positive_spans 11, positive_deltas 12, timestamp 15) and Snappy's
block format with literals only (valid Snappy: an uncompressed varint length, then literal elements).
"""

from __future__ import annotations

import struct
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint((number << 3) | wire) + payload


def _bytes(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _uint(number: int, value: int) -> bytes:
    return _field(number, 0, _varint(value))


def _double(number: int, value: float) -> bytes:
    return _field(number, 1, struct.pack("<d", value))


@dataclass(frozen=True)
class NativeHistogram:
    """One native histogram sample: exponential buckets of `schema`, the positive ones as (index, count)."""

    timestamp_ms: int
    count: int
    sum: float
    schema: int
    buckets: Sequence[tuple[int, int]]
    """(bucket index, count), sorted by index; consecutive indexes form one span."""

    def encode(self) -> bytes:
        spans: list[tuple[int, int]] = []
        deltas: list[int] = []
        previous_index, previous_count = None, 0
        for index, count in self.buckets:
            if previous_index is None or index != previous_index + 1:
                spans.append((index - (previous_index + 1 if previous_index is not None else 0), 1))
            else:
                spans[-1] = (spans[-1][0], spans[-1][1] + 1)
            deltas.append(count - previous_count)
            previous_index, previous_count = index, count
        out = _uint(1, self.count) + _double(3, self.sum) + _uint(4, _zigzag(self.schema)) + _double(5, 0.0)
        out += _uint(6, 0)
        for offset, length in spans:
            out += _bytes(11, _uint(1, _zigzag(offset)) + _uint(2, length))
        out += _bytes(12, b"".join(_varint(_zigzag(d)) for d in deltas))
        return out + _uint(15, self.timestamp_ms)


Samples = Sequence[NativeHistogram] | Sequence[tuple[int, float]]
"""Native histograms, or float samples as (timestamp ms, value)."""


def write_request(series: Sequence[tuple[Mapping[str, str], Samples]]) -> bytes:
    """A prompb.WriteRequest (labels sorted, __name__ among them)."""
    body = b""
    for labels, samples in series:
        ts = b"".join(_bytes(1, _bytes(1, k.encode()) + _bytes(2, v.encode())) for k, v in sorted(labels.items()))
        for sample in samples:
            if isinstance(sample, NativeHistogram):
                ts += _bytes(4, sample.encode())
            else:
                ts += _bytes(2, _double(1, float(sample[1])) + _uint(2, int(sample[0])))
        body += _bytes(1, ts)
    return body


def snappy_literal(data: bytes) -> bytes:
    """Snappy block format holding `data` as literals only (chunks of at most 64 KiB)."""
    out = bytearray(_varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start:start + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + struct.pack("<H", n)
        out += chunk
    return bytes(out)


def push(url: str, series: Sequence[tuple[Mapping[str, str], Samples]]) -> None:
    """POST the series to Prometheus' remote-write receiver (raises on an HTTP error)."""
    req = urllib.request.Request(f"{url}/api/v1/write", data=snappy_literal(write_request(series)), method="POST",
                                 headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                                          "X-Prometheus-Remote-Write-Version": "0.1.0"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
