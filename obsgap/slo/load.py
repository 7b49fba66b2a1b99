"""SLOs from the files and objects people write them in: Sloth (`prometheus/v1` specs and the
`sloth.slok.dev/v1` PrometheusServiceLevel CRD), Pyrra (`pyrra.dev/v1alpha1` ServiceLevelObjective), OpenSLO
(`openslo/v1` SLO and SLI, and the `openslo/v1alpha` form Sloth reads), and PrometheusRule recording rules that
compute an SLI (as Sloth generates them: `slo:sli_error:ratio_rate*` with `slo:objective:ratio`).

Anything that is not one of these is skipped and counted; an SLO of a supported tool that obsgap cannot measure
(a Sloth plugin, a Pyrra bool_gauge, a non-Prometheus OpenSLO source) is a reported gap, never a silent loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import promql_parser as pp
import yaml

from obsgap.errors import InputError
from obsgap.slo.promql import parse, shape
from obsgap.slo.spec import SloSpec

SLO_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Loaded:
    slos: list[SloSpec] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    """SLOs found but not measurable, and files that could not be read, in words."""
    files: int = 0
    ignored: int = 0
    """Documents that are no SLO (other kinds in the same files)."""


def _add(out: Loaded, spec: SloSpec, namespace: Any = None) -> None:
    """An SLO whose queries all parse; one that does not is a gap named with its query."""
    try:
        for query in spec.queries:
            parse(query)
        spec = _latency_by_ratio(replace(spec, namespace=str(namespace or "")))
    except InputError as exc:
        out.gaps.append(f"{spec.origin}: SLO {spec.name}: {exc}")
        return
    out.slos.append(spec)


def _latency_by_ratio(spec: SloSpec) -> SloSpec:
    """A ratio SLI whose good (or bad) events are a histogram bucket at a bound (`..._bucket{le="500"}` against
    `..._count`) measures latency: it is judged on the requests' durations, not on their status codes."""
    if spec.kind != "ratio":
        return spec
    counted = spec.good or spec.bad
    if counted and any(s.metric.endswith("_bucket") and s.equal("le") is not None for s in shape(counted).selectors):
        return replace(spec, kind="latency")
    return spec


def _percent(value: Any) -> float | None:
    try:
        v = float(str(value).strip().rstrip("%"))
    except (TypeError, ValueError):
        return None
    return v / 100.0 if v > 1 else v


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(p)
    return d


def _sloth(doc: Mapping[str, Any], origin: str, crd: bool, out: Loaded) -> None:
    spec = doc.get("spec") if crd else doc
    namespace = _get(doc, "metadata", "namespace")
    if not isinstance(spec, Mapping):
        out.gaps.append(f"{origin}: no spec")
        return
    service = str(spec.get("service") or "")
    for slo in spec.get("slos") or []:
        if not isinstance(slo, Mapping):
            continue
        name = str(slo.get("name") or "?")
        sli = slo.get("sli") or {}
        events = sli.get("events") or {}
        raw = sli.get("raw") or {}
        error = events.get("errorQuery" if crd else "error_query")
        total = events.get("totalQuery" if crd else "total_query")
        ratio = raw.get("errorRatioQuery" if crd else "error_ratio_query")
        tool = "sloth-crd" if crd else "sloth"
        if error and total:
            _add(out, SloSpec(tool, origin, name, service, _percent(slo.get("objective")), "30d", "ratio",
                              str(total), bad=str(error)), namespace)
        elif ratio:
            _add(out, SloSpec(tool, origin, name, service, _percent(slo.get("objective")), "30d", "ratio",
                              "", ratio=str(ratio)), namespace)
        else:
            out.gaps.append(f"{origin}: SLO {name} uses a Sloth plugin or no events/raw query: not measurable")


def _pyrra(doc: Mapping[str, Any], origin: str, out: Loaded) -> None:
    spec = doc.get("spec") or {}
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "?")
    namespace = str(meta.get("namespace") or "")
    indicator = spec.get("indicator") or {}
    objective, window = _percent(spec.get("target")), str(spec.get("window") or "28d")
    service = str((meta.get("labels") or {}).get("service") or name)
    ref = f"{namespace + '/' if namespace else ''}{name}"
    where = origin if ref in origin else f"{origin} ({ref})"
    for kind, events in (("ratio", "errors"), ("latency", "success")):
        counted, total = _get(indicator, kind, events, "metric"), _get(indicator, kind, "total", "metric")
        if counted and total:
            _add(out, SloSpec("pyrra", where, name, service, objective, window, "ratio" if kind == "ratio" else
                              "latency", str(total), bad=str(counted) if kind == "ratio" else None,
                              good=None if kind == "ratio" else str(counted)), namespace)
            return
    kinds = ", ".join(indicator) or "none"
    out.gaps.append(f"{where}: Pyrra indicator {kinds} is not measurable by obsgap (ratio and latency are)")


def _prometheus_query(metric: Any) -> str | None:
    source = _get(metric, "metricSource") or metric
    kind = str(_get(source, "type") or "Prometheus")
    query = _get(source, "spec", "query") or _get(source, "query")
    if kind.lower() not in ("prometheus", "") or not query:
        return None
    return str(query)


def _openslo_v1(doc: Mapping[str, Any], origin: str, slis: Mapping[str, Mapping[str, Any]], out: Loaded) -> None:
    spec = doc.get("spec") or {}
    name = str(_get(doc, "metadata", "name") or "?")
    namespace = _get(doc, "metadata", "namespace")
    service = str(spec.get("service") or "")
    indicator = spec.get("indicator")
    sli = _get(indicator, "spec") if indicator else slis.get(str(spec.get("indicatorRef") or ""))
    if not isinstance(sli, Mapping):
        out.gaps.append(f"{origin}: SLO {name}: its SLI ({spec.get('indicatorRef') or 'inline'}) is not in the files")
        return
    window = str(_get((spec.get("timeWindow") or [{}])[0], "duration") or "")
    for objective in spec.get("objectives") or [{}]:
        target = _percent(_get(objective, "target"))
        ratio = sli.get("ratioMetric")
        if isinstance(ratio, Mapping):
            total = _prometheus_query(ratio.get("total"))
            good, bad = _prometheus_query(ratio.get("good")), _prometheus_query(ratio.get("bad"))
            if total and (good or bad):
                _add(out, SloSpec("openslo", origin, name, service, target, window, "ratio", total,
                                  bad=bad, good=None if bad else good), namespace)
                continue
        threshold = sli.get("thresholdMetric")
        query = _prometheus_query(threshold) if isinstance(threshold, Mapping) else None
        value = _get(objective, "value")
        if query and isinstance(value, int | float):
            _add(out, SloSpec("openslo", origin, name, service, target, window, "quantile", "",
                              quantile=query, threshold=float(value), op=str(_get(objective, "op") or "lt")), namespace)
            continue
        out.gaps.append(f"{origin}: SLO {name}: no Prometheus ratioMetric or thresholdMetric obsgap can measure")


def _openslo_v1alpha(doc: Mapping[str, Any], origin: str, out: Loaded) -> None:
    spec = doc.get("spec") or {}
    name = str(_get(doc, "metadata", "name") or "?")
    window = ""
    tw = spec.get("timeWindows") or []
    if tw and isinstance(tw[0], Mapping):
        window = f"{tw[0].get('count', '')}{str(tw[0].get('unit', ''))[:1].lower()}"
    for objective in spec.get("objectives") or []:
        metrics = _get(objective, "ratioMetrics") or {}
        good, total = _get(metrics, "good", "query"), _get(metrics, "total", "query")
        if good and total:
            _add(out, SloSpec("openslo", origin, name, str(spec.get("service") or ""),
                                    _percent(objective.get("target")), window, "ratio", str(total), good=str(good)))
        else:
            out.gaps.append(f"{origin}: SLO {name}: an objective without ratioMetrics good/total queries")


def _number(expr: str) -> float | None:
    """The constant of `vector(0.999)` or `0.999` (Sloth's slo:objective:ratio)."""
    try:
        node = pp.parse(expr)
    except ValueError:
        return None
    if isinstance(node, pp.Call) and node.func.name == "vector" and isinstance(node.args[0], pp.NumberLiteral):
        return float(node.args[0].val)
    return float(node.val) if isinstance(node, pp.NumberLiteral) else None


def _split_ratio(expr: str) -> tuple[str, str] | None:
    """`(bad) / (total)` -> (bad, total), so the rule's events can be counted, not only its ratio."""
    node = parse(expr)
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    if isinstance(node, pp.BinaryExpr) and str(node.op) == "/" and node.modifier is None:
        return str(node.lhs), str(node.rhs)
    return None


def _rules(groups: Iterable[Any], origin: str, out: Loaded, namespace: Any = None) -> None:
    """Recording rules that compute an SLI, one SLO per Sloth id: the first `slo:sli_error:ratio_rate*` rule that
    reads raw metrics (the longer windows Sloth derives from it read its own recordings)."""
    rules = [r for g in groups for r in (_get(g, "rules") or []) if isinstance(r, Mapping) and r.get("record")]
    objectives: dict[str, float] = {}
    for r in rules:
        if str(r["record"]) == "slo:objective:ratio":
            value = _number(str(r.get("expr") or ""))
            if value is not None:
                objectives[str((r.get("labels") or {}).get("sloth_id") or "")] = value
    seen: set[str] = set()
    for r in rules:
        record, expr = str(r["record"]), str(r.get("expr") or "")
        labels = r.get("labels") or {}
        slo_id = str(labels.get("sloth_id") or record)
        if not record.startswith("slo:sli_error:ratio_rate") or slo_id in seen or "slo:sli_error:" in expr:
            continue
        seen.add(slo_id)
        name = str(labels.get("sloth_slo") or record)
        service = str(labels.get("sloth_service") or "")
        objective = objectives.get(slo_id)
        where = f"{origin} ({record} {slo_id})"
        try:
            split = _split_ratio(expr)
        except InputError as exc:  # one SLI that does not parse is a gap; the file's other SLOs still count
            out.gaps.append(f"{where}: SLO {name}: {exc}")
            continue
        if split:
            _add(out, SloSpec("prometheus-rule", where, name, service, objective, "30d", "ratio", split[1],
                              bad=split[0]), namespace)
        else:
            _add(out, SloSpec("prometheus-rule", where, name, service, objective, "30d", "ratio", "",
                              ratio=expr), namespace)


def load_documents(docs: Iterable[tuple[str, Any]]) -> Loaded:
    """(origin, parsed YAML document) pairs -> SLOs. OpenSLO SLIs referenced by name may be anywhere in `docs`."""
    out = Loaded()
    listed = [(o, d) for o, d in docs if isinstance(d, Mapping)]
    slis = {str(_get(d, "metadata", "name")): d.get("spec") or {} for _, d in listed
            if str(d.get("apiVersion", "")).startswith("openslo/") and d.get("kind") == "SLI"}
    for origin, doc in listed:
        api, kind = str(doc.get("apiVersion") or ""), str(doc.get("kind") or "")
        try:
            if doc.get("version") == "prometheus/v1":
                _sloth(doc, origin, False, out)
            elif api.startswith("sloth.slok.dev/") and kind == "PrometheusServiceLevel":
                _sloth(doc, origin, True, out)
            elif api.startswith("pyrra.dev/") and kind == "ServiceLevelObjective":
                _pyrra(doc, origin, out)
            elif api == "openslo/v1" and kind == "SLO":
                _openslo_v1(doc, origin, slis, out)
            elif api == "openslo/v1alpha" and kind == "SLO":
                _openslo_v1alpha(doc, origin, out)
            elif kind == "PrometheusRule" or (not api and isinstance(doc.get("groups"), list)):
                groups = _get(doc, "spec", "groups") if kind == "PrometheusRule" else doc.get("groups")
                _rules(groups or [], origin, out, _get(doc, "metadata", "namespace"))
            elif kind == "List":
                inner = load_documents((origin, item) for item in doc.get("items") or [])
                out.slos += inner.slos
                out.gaps += inner.gaps
                out.ignored += inner.ignored
            elif kind != "SLI":
                out.ignored += 1
        except InputError as exc:
            out.gaps.append(f"{origin}: {exc}")
    return out


def _files(paths: Iterable[Path]) -> list[Path]:
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SLO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"--slo {path}: no such file or directory")
    return found


def load_files(paths: Iterable[Path]) -> Loaded:
    """--slo PATH (files or folders). A file that does not parse as YAML is exit 2 (bad input), named with its
    line; one that parses but holds no SLO is counted."""
    docs: list[tuple[str, Any]] = []
    files = _files(paths)
    for path in files:
        try:
            parsed = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            raise InputError(f"--slo {path}{where}: not YAML ({getattr(exc, 'problem', None) or exc})") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--slo {path}: cannot be read ({exc})") from exc
        docs += [(f"{path}#{i + 1}" if len(parsed) > 1 else str(path), d) for i, d in enumerate(parsed) if d]
    loaded = load_documents(docs)
    loaded.files = len(files)
    return loaded
