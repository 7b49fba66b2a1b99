"""Run a scenario end to end: simulate, backfill a real Prometheus, run the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obsgap import engine
from obsgap.config import RunPlan
from obsgap.evidence import CheckSettings
from obsgap.model import Finding, Window
from obsgap.result import ScanResult
from obsgap.scenario.simulate import BuiltScenario, build
from obsgap.scenario.spec import ScenarioSpec
from obsgap.sources.prometheus import PrometheusOptions
from obsgap.testbed.promserver import PrometheusServer, serve_openmetrics


@dataclass
class Run:
    built: BuiltScenario
    result: ScanResult
    failures: list[str]

    def findings(self, check: str | None = None) -> list[Finding]:
        return [f for f in self.result.findings if check is None or f.check == check]

    def triples(self, check: str | None = None) -> set[tuple[str, str | None, str | None]]:
        """(check, cause, service-or-workload) of every finding: what a test compares exactly."""
        return {(f.check, f.cause, f.service or f.workload) for f in self.findings(check)}


def run_scenario(spec: ScenarioSpec, tmp: Path, *, logs: bool = True, metrics: bool = True,
                 topology: bool = True, server: PrometheusServer | None = None,
                 built: BuiltScenario | None = None, slo_paths: tuple[Path, ...] = (),
                 dashboards: tuple[Path, ...] = (), rule_files: tuple[Path, ...] = (),
                 namespaces: tuple[str, ...] = (), only_checks: tuple[str, ...] = (), **settings: object) -> Run:
    built = built or build(spec, tmp / spec.name)
    own = None
    if metrics and server is None:
        own = server = serve_openmetrics(built.metrics, tmp / spec.name, rule_files=rule_files)
    try:
        plan = RunPlan(
            window=Window(spec.start, spec.end), out_dir=tmp / f"{spec.name}-out",
            prometheus=PrometheusOptions(url=server.url) if metrics and server else None,
            kube_snapshots=(built.topology,) if topology else (), logs=(str(built.logs),) if logs else (),
            slo_paths=slo_paths, dashboards=dashboards, settings=CheckSettings(**settings),  # type: ignore[arg-type]
            namespaces=namespaces, only_checks=only_checks,
        )
        outcome = engine.run(plan)
    finally:
        if own is not None:
            own.stop()
    return Run(built, outcome.result, outcome.source_failures)


def operator_rule_file(prometheusrule: Path, out: Path) -> Path:
    """The rule file the Prometheus Operator writes for a PrometheusRule: its spec, as YAML."""
    import yaml

    out.write_text(yaml.safe_dump(yaml.safe_load(prometheusrule.read_text())["spec"]))
    return out


def sources_json(result: ScanResult) -> dict[str, Any]:
    """findings.json `sources` of a run, as automation reads it."""
    return result.sources.as_json()


def two_nights(check: Any, yesterday: Any, tonight: Any) -> tuple[list[str], list[str], Any]:
    """One check over two nights' evidence, compared as the nightly run compares them (through findings.json's
    form): (yesterday's titles, tonight's titles, the history.Comparison)."""
    from obsgap.analysis import analyze
    from obsgap.engine import run_checks
    from obsgap.history import History, compare, past_findings
    from obsgap.render.json_out import finding_dict

    _, before = run_checks((check,), yesterday, analyze(yesterday))
    history = History("yesterday", past_findings({"findings": [finding_dict(f) for f in before]}))
    runs, after = run_checks((check,), tonight, analyze(tonight))
    return [f.title for f in before], [f.title for f in after], compare(history, [f.id for f in after], runs)


def unexamined(result: ScanResult) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """Findings whose check did not examine them under any of their own keys in the same run: such a finding, absent
    a later night, would be carried as not re-checked for ever (its keys and its check's examined() disagree).
    Also every key, found or examined, of a kind model.key_namespace does not know (suppressions would not see the
    namespace it names)."""
    from obsgap.model import GLOBAL_KEY_KINDS, NAMESPACED_KEY_KINDS, key_kind
    from obsgap.render.json_out import finding_dict

    runs = {c.check: c for c in result.checks}
    known = {None, *NAMESPACED_KEY_KINDS, *GLOBAL_KEY_KINDS}
    out = [(c.check, None, (key,)) for c in result.checks for key in sorted(c.examined or ())
           if key_kind(key) not in known]
    out += [(f.check, f.cause, (key,)) for f in result.findings for key in finding_dict(f)["keys"]
            if key_kind(key) not in known]
    for f in result.findings:
        keys = tuple(finding_dict(f)["keys"])
        examined = runs[f.check].examined
        if examined is not None and not set(keys) & examined:
            out.append((f.check, f.cause, keys))
    return out


def k8s_service(name: str, namespace: str = "shop", port: int = 80, target_port: int = 8080,
                port_name: str = "http") -> dict[str, Any]:
    """A Service as `kubectl get -o json` gives it, selecting app=<name>, with one port."""
    return {"kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": port_name, "port": port, "targetPort": target_port}]}}


def k8s_pod(name: str, app: str, ip: str, namespace: str = "shop", port: int = 8080, sidecar: bool = True,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A running Pod labelled app=<app>, serving on one container port, with istio-proxy unless told otherwise."""
    containers = [{"name": app, "ports": [{"containerPort": port}]}, *([{"name": "istio-proxy"}] * sidecar)]
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": {"app": app},
                                        "annotations": annotations or {}},
            "spec": {"containers": containers}, "status": {"podIP": ip, "phase": "Running"}}
