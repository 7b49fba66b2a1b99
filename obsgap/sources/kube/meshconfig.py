"""The mesh's access-log formats, from Istio's MeshConfig (ConfigMap `istio` or `istio-<revision>`, key `mesh`).

`accessLogFormat` with `accessLogEncoding` TEXT (a format string) or JSON (a JSON object of key: %OPERATOR%),
and every Telemetry API extension provider `envoyFileAccessLog.logFormat` (`text`, or `labels` for JSON).
An empty `accessLogFormat` means Istio's default, which obsgap knows already.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

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


@dataclass(frozen=True)
class MeshDefaults:
    root_namespace: str = "istio-system"
    metric_providers: tuple[str, ...] = ("prometheus",)
    log_providers: tuple[str, ...] = ()
    stdout_log_providers: tuple[str, ...] = ("envoy",)


def _names(value: Any) -> tuple[str, ...] | None:
    return tuple(str(v) for v in value) if isinstance(value, list) and value else None


def mesh_defaults(objects: Iterable[RAW]) -> MeshDefaults:
    """What the mesh's MeshConfig (`istio` before a revision's) says Telemetry resources build on: rootNamespace,
    defaultProviders.metrics and .accessLogging, and the access-log providers that write to stdout; Istio's
    defaults where it is not read or does not say (istio-system, the Prometheus provider every install since 1.18
    lists, no default access-log provider, the built-in `envoy` provider)."""
    for _where, text in sorted(_mesh_configs(objects), key=lambda c: not c[0].endswith("/istio")):
        try:
            mesh = yaml.safe_load(text)
        except yaml.YAMLError:
            continue  # access_formats reports it
        if not isinstance(mesh, Mapping):
            continue
        found = mesh.get("defaultProviders")
        defaults: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        stdout = ["envoy"]
        for provider in mesh.get("extensionProviders") or []:
            file_log = provider.get("envoyFileAccessLog") if isinstance(provider, Mapping) else None
            if isinstance(file_log, Mapping) and file_log.get("path") == "/dev/stdout" and provider.get("name"):
                stdout.append(str(provider["name"]))
        root = mesh.get("rootNamespace")
        return MeshDefaults(root if isinstance(root, str) and root else "istio-system",
                            _names(defaults.get("metrics")) or ("prometheus",),
                            _names(defaults.get("accessLogging")) or (), tuple(dict.fromkeys(stdout)))
    return MeshDefaults()
