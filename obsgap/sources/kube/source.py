"""The Kubernetes source: the topology from `kubectl get -o json|yaml` snapshots or a live cluster (read-only), and
the Grafana dashboards whose queries name jobs.

Empty: a topology with no pod in the namespaces in scope has nothing to attribute logs or metrics to; the run is
partial and says so (the config checks still read its Services and Istio objects).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from obsgap.errors import InputError, SourceError
from obsgap.model import PanelQuery, Topology
from obsgap.sources.base import ReadContext, SourceRead
from obsgap.sources.dashboards import load_dashboards
from obsgap.sources.kube.build import build_topology
from obsgap.sources.kube.kinds import SNAPSHOT_COMMAND
from obsgap.sources.kube.live import LiveOptions, load_live
from obsgap.sources.kube.snapshot import kubectl_errors, load_snapshot, unseen_kinds
from obsgap.sources.reports import DashboardsReport, KubernetesReport


def check_namespaces(wanted: tuple[str, ...], known: set[str], where: str) -> None:
    """A -n filter naming a namespace the sources do not have is a typo or the wrong cluster: an error that
    lists what exists."""
    missing = [ns for ns in wanted if ns not in known]
    if missing and known:
        shown = ", ".join(sorted(known)[:40]) + (f", … ({len(known)} in all)" if len(known) > 40 else "")
        raise InputError(f"--namespace {', '.join(missing)}: no such namespace in {where}; namespaces there: "
                         f"{shown}")
    if missing:
        raise InputError(f"--namespace {', '.join(missing)}: {where} has no namespaces at all")


def scope_topology(topo: Topology, namespaces: tuple[str, ...]) -> Topology:
    """The topology of the namespaces in scope: its objects are the subjects of the checks. The pods of the other
    namespaces stay known as context (callers, addresses), and so do their Services and DestinationRules (the names
    config in scope refers to); Gateways, ServiceEntries and ReferenceGrants are kept whole."""
    if not namespaces:
        return topo
    keep = set(namespaces)
    return replace(
        topo, namespaces={k: v for k, v in topo.namespaces.items() if k in keep},
        services=tuple(s for s in topo.services if s.namespace in keep),
        context_services=tuple(s for s in topo.services if s.namespace not in keep),
        pods=tuple(p for p in topo.pods if p.namespace in keep),
        context_pods=tuple(p for p in topo.pods if p.namespace not in keep),
        virtual_services=tuple(v for v in topo.virtual_services if v.namespace in keep),
        context_virtual_services=tuple(v for v in topo.virtual_services if v.namespace not in keep),
        destination_rules=tuple(d for d in topo.destination_rules if d.namespace in keep),
        context_destination_rules=tuple(d for d in topo.destination_rules if d.namespace not in keep),
        routes=tuple(r for r in topo.routes if r.namespace in keep),
        context_routes=tuple(r for r in topo.routes if r.namespace not in keep),
        workloads=tuple(w for w in topo.workloads if w.namespace in keep),
        context_workloads=tuple(w for w in topo.workloads if w.namespace not in keep),
    )


@dataclass(frozen=True)
class TopologySource:
    snapshots: tuple[Path, ...] = ()
    live: LiveOptions | None = None
    kind: str = "topology"

    def preflight(self) -> None:
        for path in self.snapshots:
            if not path.exists():
                raise InputError(f"--kube-snapshot {path}: no such file or directory")

    @property
    def configured(self) -> bool:
        return bool(self.snapshots) or self.live is not None

    def read(self, ctx: ReadContext) -> SourceRead[Topology, KubernetesReport]:
        if self.snapshots:
            objects, gaps = load_snapshot(list(self.snapshots))
            failed, failures, not_served = kubectl_errors(list(self.snapshots), objects)
            topo = build_topology(objects, [*gaps, *failures], failed)
            unseen = {k: why for k, why in unseen_kinds(topo).items() if k not in failed and k not in not_served}
            topo = replace(topo, gaps=(*topo.gaps, *unseen.values()), unread={**topo.unread, **unseen})
            return self._built(topo, "snapshot", ctx)
        if self.live is not None:
            ctx.say("reading the cluster's objects")
            try:
                objects, gaps, unread = load_live(self.live)
            except SourceError as exc:
                return SourceRead(None, KubernetesReport("live", "unavailable", error=str(exc)), (str(exc),))
            return self._built(build_topology(objects, gaps, unread), "live", ctx)
        return SourceRead(None, KubernetesReport("none", "not-configured"))

    def _built(self, topo: Topology, mode: str, ctx: ReadContext) -> SourceRead[Topology, KubernetesReport]:
        assert mode in ("snapshot", "live")
        if ctx.namespaces:
            check_namespaces(ctx.namespaces, set(topo.namespaces), "the Kubernetes topology")
        scoped = scope_topology(topo, ctx.namespaces)
        report = KubernetesReport("snapshot" if mode == "snapshot" else "live", "ok", dict(topo.object_counts),
                                  tuple(topo.gaps), pods_in_scope=len(scoped.pods))
        if report.denied:
            report = replace(report, status="partial")
        if scoped.pods:
            return SourceRead(scoped, report)
        where = f"the namespaces in scope ({', '.join(ctx.namespaces)})" if ctx.namespaces else "it"
        what = "the snapshot" if mode == "snapshot" else "the cluster"
        todo = (f"take the snapshot with every kind: `{SNAPSHOT_COMMAND}`" if mode == "snapshot"
                else "check that the service account can list pods")
        problem = f"kubernetes: {what} holds no pod in {where}: nothing to attribute logs or metrics to ({todo})"
        return SourceRead(scoped, replace(report, status="empty", error=problem), (problem,))


@dataclass(frozen=True)
class DashboardSource:
    paths: tuple[Path, ...] = ()
    kind: str = "dashboards"

    def preflight(self) -> None:
        for path in self.paths:
            if not path.exists():
                raise InputError(f"--dashboards {path}: no such file or directory")

    def read(self, ctx: ReadContext) -> SourceRead[tuple[PanelQuery, ...], DashboardsReport]:
        if not self.paths:
            return SourceRead((), DashboardsReport())
        panels, gaps = load_dashboards(list(self.paths))
        problems = tuple(f"--dashboards {gap}" for gap in gaps)  # a folder without a dashboard: it gave nothing
        if not panels and not gaps:
            problems = (f"--dashboards {', '.join(map(str, self.paths))}: no PromQL query in the dashboards given",)
        return SourceRead(tuple(panels), DashboardsReport(len(self.paths), len(panels), tuple(gaps)), problems)
