"""The mesh's access-log formats, from Istio's MeshConfig (ConfigMap `istio` or `istio-<revision>`, key `mesh`).

`accessLogFormat` with `accessLogEncoding` TEXT (a format string) or JSON (a JSON object of key: %OPERATOR%),
and every Telemetry API extension provider `envoyFileAccessLog.logFormat` (`text`, or `labels` for JSON).
An empty `accessLogFormat` means Istio's default, which obsgap knows already.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from obsgap.model import BUILTIN_MESH_PROVIDERS
from obsgap.sources.logs.envoy_format import AccessFormat, validate

RAW = Mapping[str, Any]


def _mesh_configs(objects: Iterable[RAW]) -> Iterable[tuple[str, Any]]:
    for obj in objects:
        md: Mapping[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), Mapping) else {}
        name = str(md.get("name") or "")
        if obj.get("kind") != "ConfigMap" or not (name == "istio" or name.startswith("istio-")):
            continue
        data: Mapping[str, Any] = obj["data"] if isinstance(obj.get("data"), Mapping) else {}
        if isinstance(data.get("mesh"), str):
            yield f"ConfigMap {md.get('namespace') or 'default'}/{name}", data["mesh"]


def access_formats(objects: Iterable[RAW]) -> tuple[tuple[AccessFormat, ...], list[str]]:
    """(formats, gaps): a mesh config that does not parse, or a format that does not compile, is a gap."""
    found: list[AccessFormat] = []
    gaps: list[str] = []
    for where, text in _mesh_configs(objects):
        try:
            mesh = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            gaps.append(f"{where}: key mesh is not valid YAML ({str(exc).splitlines()[0]})")
            continue
        if not isinstance(mesh, Mapping):
            continue
        fmt = mesh.get("accessLogFormat")
        if isinstance(fmt, str) and fmt.strip():
            encoding = "json" if str(mesh.get("accessLogEncoding") or "TEXT").upper() == "JSON" else "text"
            found.append(AccessFormat(f"{where} accessLogFormat", encoding, fmt))
        for provider in mesh.get("extensionProviders") or []:
            if not isinstance(provider, Mapping) or not isinstance(provider.get("envoyFileAccessLog"), Mapping):
                continue
            log_format = provider["envoyFileAccessLog"].get("logFormat")
            if not isinstance(log_format, Mapping):
                continue
            label = f"{where} extensionProvider {provider.get('name')}"
            if isinstance(log_format.get("text"), str):
                found.append(AccessFormat(label, "text", log_format["text"]))
            elif isinstance(log_format.get("labels"), Mapping):
                found.append(AccessFormat(label, "json", json.dumps(dict(log_format["labels"]))))
    usable = []
    for f in found:
        problem = validate(f)
        if problem:
            gaps.append(f"{f.name}: cannot read logs in it ({problem})")
        else:
            usable.append(f)
    return tuple(dict.fromkeys(usable)), gaps


_ACCESS_LOG_SERVICES = ("envoyOtelAls", "envoyHttpAls", "envoyTcpAls")
_STDOUT_PATHS = ("", "/dev/stdout", "/dev/stderr")  # what kubelet keeps as the container's log (no path: stdout)


def _provider_kind(provider: Mapping[str, Any]) -> str:
    """`prometheus`, `stdout` (a file access log kubelet keeps), `access-log` (one sent elsewhere), or `other`."""
    if "prometheus" in provider:
        return "prometheus"
    file_log = provider.get("envoyFileAccessLog")
    if file_log is not None:
        path = file_log.get("path") if isinstance(file_log, Mapping) else None
        return "stdout" if (path or "") in _STDOUT_PATHS else "access-log"
    return "access-log" if any(k in provider for k in _ACCESS_LOG_SERVICES) else "other"


@dataclass(frozen=True)
class MeshDefaults:
    """What Telemetry resources build on (MeshConfig); `read` False: no MeshConfig was read, Istio's chart
    defaults are assumed."""

    read: bool = False
    root_namespace: str = "istio-system"
    metric_providers: tuple[str, ...] = ("prometheus",)
    """defaultProviders.metrics: the chart lists Prometheus unless the user set defaultProviders (then only what they
    list); a MeshConfig without defaultProviders is taken as the chart's."""
    log_providers: tuple[str, ...] = ()
    providers: Mapping[str, str] = field(default_factory=lambda: dict(BUILTIN_MESH_PROVIDERS))
    """Extension provider name (lower case: istiod compares them so) -> its kind (_provider_kind)."""


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def mesh_defaults(objects: Iterable[RAW]) -> MeshDefaults:
    """What the mesh's MeshConfig (`istio` before a revision's) says Telemetry resources build on: rootNamespace,
    defaultProviders.metrics and .accessLogging (empty where it sets none: Istio's own default), and its extension
    providers over Istio's built-in ones. Where no MeshConfig was read, Istio's chart defaults (MeshDefaults())."""
    for _where, text in sorted(_mesh_configs(objects), key=lambda c: not c[0].endswith("/istio")):
        try:
            mesh = yaml.safe_load(text)
        except yaml.YAMLError:
            continue  # access_formats reports it
        if not isinstance(mesh, Mapping):
            continue
        found = mesh.get("defaultProviders")
        defaults: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        providers = dict(BUILTIN_MESH_PROVIDERS)
        for provider in mesh.get("extensionProviders") or []:
            if isinstance(provider, Mapping) and provider.get("name"):
                providers[str(provider["name"]).lower()] = _provider_kind(provider)
        root = mesh.get("rootNamespace")
        # a MeshConfig without defaultProviders is an older or hand-made one whose stats come as the chart's did
        metrics = _names(defaults.get("metrics")) if isinstance(found, Mapping) else ("prometheus",)
        return MeshDefaults(True, root if isinstance(root, str) and root else "istio-system", metrics,
                            _names(defaults.get("accessLogging")), providers)
    return MeshDefaults()
