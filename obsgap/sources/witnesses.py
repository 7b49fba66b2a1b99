"""Witnesses in Prometheus: the counts of real traffic a cluster already holds beside Istio's, family by family.

A family is one metric, as a framework or an agent exports it, and what its labels mean: which name the pod, the
port, the status and the route, and whether the status is a code (`"503"`) or a class (`"5xx"`). Each family was
checked against its upstream source (tests/data/witnesses/PROVENANCE.md). One aggregation query per family present
in the window (queries/witness_requests.promql): the number of queries does not grow with services or pods.

Attribution: the services' own metrics name their pod through the scrape target's `namespace`/`pod` labels (Istio's
metrics merging keeps them); eBPF agents are scraped from their own DaemonSet pods, so their series name the observed
pod in their own labels (OBI/Beyla: `k8s_namespace_name`/`k8s_pod_name`; Hubble: `destination` as `namespace/pod`,
or `destination_namespace`/`destination_pod`).
"""

from __future__ import annotations

import re

import pandas as pd

from obsgap.errors import InputError
from obsgap.sources.queries import FamilyScope
from obsgap.witness import WitnessCounts, WitnessFamily

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def parse_witness_metric(text: str) -> WitnessFamily:
    """`--witness-metric SERIES:key=label,...`: a family obsgap does not know. Keys: namespace, pod, port, status,
    status_form (code|class), route, kind (app-metrics|ebpf), agent. `SERIES` is the counter (or `_count`)."""
    series, sep, rest = text.partition(":")
    series = series.strip()
    if not _METRIC.match(series):
        raise InputError(f"--witness-metric {text!r}: {series!r} is not a metric name (e.g. "
                         "'myapp_http_requests_total:status=code,route=handler')")
    opts: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))) if sep else ():
        key, eq, value = item.partition("=")
        if not eq or key not in ("namespace", "pod", "port", "status", "status_form", "route", "kind", "agent"):
            raise InputError(f"--witness-metric {text!r}: {item!r} is not KEY=VALUE with KEY one of namespace, pod, "
                             "port, status, status_form, route, kind, agent")
        opts[key] = value.strip()
    for key in ("namespace", "pod", "port", "status", "route"):
        if key in opts and not _LABEL.match(opts[key]):
            raise InputError(f"--witness-metric {text!r}: {key}={opts[key]!r} is not a label name")
    form = opts.get("status_form", "code")
    kind = opts.get("kind", "app-metrics")
    if form not in ("code", "class") or kind not in ("app-metrics", "ebpf"):
        raise InputError(f"--witness-metric {text!r}: status_form is code or class, kind is app-metrics or ebpf")
    if kind == "ebpf" and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", opts.get("agent", "")):
        raise InputError(f"--witness-metric {text!r}: an ebpf witness needs agent=NAME (lowercase)")
    base = series.removesuffix("_count")
    return WitnessFamily(base if kind == "app-metrics" else opts["agent"], series, "app-metrics" if kind ==
                         "app-metrics" else "ebpf", opts.get("namespace", "namespace"), opts.get("pod", "pod"),
                         "name", opts.get("port"), opts.get("status"), "class" if form == "class" else "code",
                         opts.get("route"), agent=opts.get("agent"), framework="--witness-metric")


def scope_of(family: WitnessFamily) -> FamilyScope:
    """How queries/witness_requests.promql is bound for a family."""
    return FamilyScope(family.series, family.group_by, family.namespace_label if family.pod_form == "name" else None,
                       family.matchers, family.witness)


def families_present(metric_names: list[str] | None,
                     families: tuple[WitnessFamily, ...]) -> tuple[WitnessFamily, ...]:
    """The families whose counter has samples in the window (one label-values call names them all)."""
    names = set(metric_names or ())
    return tuple(f for f in families if f.series in names)


def normalize(family: WitnessFamily, frame: pd.DataFrame) -> WitnessCounts:
    """The query's rows in the one shape every family takes (attribution, port, errors), typed."""
    cols = ["namespace", "pod", "port", "route", "requests", "errors"]
    if frame.empty:
        return WitnessCounts(family, pd.DataFrame(columns=cols))
    df = frame.copy()
    for label in family.group_by:
        if label not in df.columns:
            df[label] = ""
    df = df.fillna("")
    pods = df[family.pod_label].astype(str)
    if family.pod_form == "namespace/pod":
        split = pods.str.partition("/")
        namespace = split[0].where(split[1] == "/", df[family.namespace_label].astype(str))
        pods = split[2].where(split[1] == "/", pods)
    else:
        namespace = df[family.namespace_label].astype(str)
    port = pd.to_numeric(df[family.port_label], errors="coerce") if family.port_label else pd.Series(
        [float("nan")] * len(df))
    status = df[family.status_label].astype(str) if family.status_label else pd.Series([""] * len(df))
    value = pd.to_numeric(df["value"], errors="coerce").fillna(0.0)
    out = pd.DataFrame({
        "namespace": namespace.values, "pod": pods.values, "port": port.values,
        "route": (df[family.route_label].astype(str) if family.route_label else pd.Series([""] * len(df))).values,
        "requests": value.values, "errors": [v if family.is_error(s) else 0.0 for s, v in zip(status, value,
                                                                                            strict=True)]})
    out = out[(out["pod"] != "") & (out["requests"] > 0)]
    out = out.groupby(["namespace", "pod", "port", "route"], dropna=False, as_index=False)[["requests", "errors"]].sum()
    return WitnessCounts(family, out.reset_index(drop=True))
