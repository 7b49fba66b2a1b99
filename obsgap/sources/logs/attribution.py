"""The attribution rule: which namespace, pod and container wrote a request.

In order: what the line's own wrapper says (Fluent Bit's `kubernetes.*`, OpenTelemetry's `k8s.*`, `kubectl --prefix`,
stern), then the file's path (kubelet's layout), then what the run was told (--log-pod, a file named after a pod).
Per line (k8s_attribution, base_attribution) and per file for the columnar reader (file_columns).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from obsgap.sources.logs.discover import attribution_from_path
from obsgap.sources.logs.task import ReadTask
from obsgap.sources.logs.values import as_text, first_scalar, key_heads

K8S_KEYS = {
    "namespace": ("kubernetes.namespace_name", "k8s.namespace.name", "resource.k8s.namespace.name",
                  "resource.attributes.k8s.namespace.name"),
    "pod": ("kubernetes.pod_name", "k8s.pod.name", "resource.k8s.pod.name", "resource.attributes.k8s.pod.name"),
    "container": ("kubernetes.container_name", "k8s.container.name", "resource.k8s.container.name",
                  "resource.attributes.k8s.container.name"),
}


K8S_HEADS = ("kubernetes", "k8s", "resource")


def k8s_attribution(obj: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    if not any(k.startswith(K8S_HEADS) for k in obj):
        return None, None, None
    heads = key_heads(obj)
    namespace, pod, container = (as_text(first_scalar(obj, K8S_KEYS[k], heads)) for k in K8S_KEYS)
    return namespace, pod, container


def base_attribution(path: Path, task: ReadTask | None = None) -> tuple[str | None, str | None, str | None]:
    """Who wrote a file: kubelet's path layout, else what the run was told (--log-pod, the file's name)."""
    where = attribution_from_path(path)
    if where:
        return where.namespace, where.pod, where.container
    return task.file_pods.get(str(path), (None, None, None)) if task is not None else (None, None, None)


PER_FILE_COLUMNS = ("namespace", "pod", "container", "file")


def file_columns(paths: list[Path], names: list[str], index: np.ndarray, task: ReadTask) -> dict[str, pa.Array]:
    """base_attribution and the file name of each row (`index`: its file), as dictionary columns whose codes are
    the file index: no string is copied per row."""
    attrs = [base_attribution(p, task) for p in paths]
    per_file: dict[str, list[str | None]] = {
        "namespace": [a[0] for a in attrs], "pod": [a[1] for a in attrs], "container": [a[2] for a in attrs],
        "file": list(names)}
    codes = pa.array(index.astype(np.int32))
    columns = {}
    for name, values in per_file.items():
        known = pa.array([v is not None for v in values])
        columns[name] = pa.DictionaryArray.from_arrays(
            pc.if_else(known.take(codes), codes, pa.scalar(None, pa.int32())),
            pa.array([v or "" for v in values], pa.string()))  # the entry of an unknown value is never used
    return columns
