"""sidecar-missing and namespace-not-injected: the injection side of the name contract."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from obsgap.ambient import DATAPLANE_MODE
from obsgap.checks.base import Check, CheckInputs
from obsgap.istio import NO_SIDECAR_CAUSES, SYSTEM_NAMESPACES, mesh_is_ambient, namespace_injection_enabled
from obsgap.model import Finding, FindingEvidence, Pod, Severity, Suggestion

DOC = "https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/"
DOC_AMBIENT = "https://istio.io/latest/docs/ambient/usage/add-workloads/"
CONTROL_PLANE_NAMESPACES = frozenset({"istio-system"})


@dataclass(frozen=True, eq=False)
class WorkloadEvidence(FindingEvidence):
    """The workload (kind and name) of the pod or pod template the finding is about."""

    workload: str


@dataclass(frozen=True, eq=False)
class NamespaceEvidence(FindingEvidence):
    """A namespace's pods and its labels (none of which asks for injection)."""

    pods: int
    labels: dict[str, str] = field(default_factory=dict)


class SidecarMissing(Check):
    """What it does: lists pods that Istio's injection rules say should run `istio-proxy` (namespace
    labelled `istio-injection=enabled` or `istio.io/rev`, or the pod asks for it) but do not, with the
    reason: no proxy at all (created before the label, or the webhook was down) or an Istio init
    container (`istio-init`, `istio-validation`) that never completed. Native sidecars (an
    `istio-proxy` init container with `restartPolicy: Always`) count as present. Same as IST0103.

    Why is this bad? Such pods serve traffic that no mesh metric, policy or mTLS covers, while the
    namespace label makes everyone believe they are in the mesh.

    Example: a Deployment created before `kubectl label ns shop istio-injection=enabled`.

    Use instead: `kubectl rollout restart` the workload so the injector adds the proxy.
    """

    id = "sidecar-missing"
    title = "Pods that should have istio-proxy and do not"
    needs = ("topology",)
    kinds = ("Pod", "Namespace")
    istio_code = "IST0103"
    doc_url = DOC
    causes = (*NO_SIDECAR_CAUSES, "ambient/not-captured")

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        out = []
        for pod in inputs.index.topo.pods:
            state = pod.sidecar
            if state.placeholder:
                out.append(_placeholder(cls.id, pod))
                continue
            if state.present or not state.expected or pod.namespace in CONTROL_PLANE_NAMESPACES:
                continue
            if state.reason not in ("no-sidecar/unknown", "no-sidecar/init-container", "ambient/not-captured"):
                continue
            if state.reason == "ambient/not-captured":
                out.append(_not_captured(cls.id, pod))
                continue
            restart = f"kubectl rollout restart {pod.workload_kind.lower()}/{pod.workload} -n {pod.namespace}" \
                if pod.workload_kind in ("Deployment", "StatefulSet", "DaemonSet") else \
                f"kubectl delete pod {pod.name} -n {pod.namespace}  # let its controller recreate it"
            out.append(Finding(
                check=cls.id, severity=Severity.WARNING, title=f"{pod.name} has no working istio-proxy",
                detail=f"Pod {pod.namespace}/{pod.name} should be in the mesh but is not: {state.evidence}.",
                subject=f"{pod.namespace}/{pod.name}", namespace=pod.namespace, workload=pod.workload,
                pod=pod.name, cause=state.reason, resource=f"Pod {pod.namespace}/{pod.name}",
                istio_code=cls.istio_code, evidence=WorkloadEvidence(f"{pod.workload_kind} {pod.workload}"),
                suggestion=Suggestion("Recreate the pod so the injector adds istio-proxy.", restart, DOC)))
        for t in inputs.index.topo.workloads:
            if t.uninjected_placeholder:
                out.append(Finding(
                    check=cls.id, severity=Severity.WARNING,
                    title=f"{t.kind} {t.name} has only the istio-proxy placeholder (image: auto)",
                    detail=(f"{t.kind} {t.namespace}/{t.name} declares istio-proxy with `image: auto`, but no "
                            "injection rule selects its pods: they will start with a container whose image "
                            "cannot be pulled."),
                    subject=f"{t.namespace}/{t.kind}/{t.name}", namespace=t.namespace, workload=t.name,
                    cause="no-sidecar/namespace-not-enabled", resource=f"{t.kind} {t.namespace}/{t.name}",
                    istio_code="IST0146", evidence=WorkloadEvidence(f"{t.kind} {t.name}"),
                    suggestion=Suggestion("Enable injection for its namespace, or label the pod template "
                                          'sidecar.istio.io/inject: "true".',
                                          f"kubectl label namespace {t.namespace} istio-injection=enabled", DOC)))
        return out


def _not_captured(check: str, pod: Pod) -> Finding:
    """Ambient's counterpart: enrolled, but the CNI never redirected the pod's traffic to ztunnel."""
    return Finding(
        check=check, severity=Severity.WARNING, title=f"{pod.name} is enrolled in ambient mode but not captured",
        detail=f"Pod {pod.namespace}/{pod.name} should be in the ambient mesh but is not: {pod.sidecar.evidence}.",
        subject=f"{pod.namespace}/{pod.name}", namespace=pod.namespace, workload=pod.workload, pod=pod.name,
        cause=pod.sidecar.reason, resource=f"Pod {pod.namespace}/{pod.name}",
        evidence=WorkloadEvidence(f"{pod.workload_kind} {pod.workload}"),
        suggestion=Suggestion("Recreate the pod so the Istio CNI node agent captures it; check the istio-cni pod on "
                              "its node.", f"kubectl delete pod {pod.name} -n {pod.namespace}  # let its controller "
                              "recreate it", DOC_AMBIENT))


def _placeholder(check: str, pod: Pod) -> Finding:
    """istioctl's ImageAutoWithoutInjectionError: the pod carries the injector's `image: auto` placeholder."""
    return Finding(
        check=check, severity=Severity.WARNING, title=f"{pod.name} has only the istio-proxy placeholder (image: auto)",
        detail=(f"Pod {pod.namespace}/{pod.name} declares istio-proxy with `image: auto`, which the injector replaces "
                f"— but no injection happened: {pod.sidecar.evidence}."),
        subject=f"{pod.namespace}/{pod.name}", namespace=pod.namespace, workload=pod.workload, pod=pod.name,
        cause=pod.sidecar.reason, resource=f"Pod {pod.namespace}/{pod.name}", istio_code="IST0147",
        evidence=WorkloadEvidence(f"{pod.workload_kind} {pod.workload}"),
        suggestion=Suggestion("Enable injection for the pod (namespace label istio-injection=enabled, or the pod "
                              'label sidecar.istio.io/inject: "true"), then recreate it.',
                              f"kubectl label namespace {pod.namespace} istio-injection=enabled", DOC))


class NamespaceNotInjected(Check):
    """What it does: reports namespaces with no injection label (`istio-injection=enabled`, or
    `istio.io/rev` without `istio-injection`), unless they opt out explicitly
    (`istio-injection=disabled`), run in ambient mode (`istio.io/dataplane-mode=ambient`), or are
    system namespaces. Namespaces that run workloads are warnings; empty ones are informational.
    Same as IST0102.

    Why is this bad? Every pod created there runs without a sidecar: its traffic is invisible to the
    mesh metrics and appears as `source_workload="unknown"` at its destinations.

    Example: `legacy` has no labels at all and runs `billing`.

    Use instead: `kubectl label namespace legacy istio-injection=enabled`, then restart its workloads
    (or label it `istio-injection=disabled` to record that it is deliberately outside the mesh).
    """

    id = "namespace-not-injected"
    title = "Namespaces with no injection label"
    needs = ("topology",)
    kinds = ("Pod", "Namespace")
    istio_code = "IST0102"
    doc_url = DOC

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        topo = inputs.index.topo
        pods_by_ns: dict[str, int] = {}
        for p in topo.pods:
            if not p.host_network:
                pods_by_ns[p.namespace] = pods_by_ns.get(p.namespace, 0) + 1
        templates = {t.namespace for t in topo.workloads}
        out = []
        for ns in topo.namespaces.values():
            labels = ns.labels
            if not ns.declared or ns.name in SYSTEM_NAMESPACES or ns.name in CONTROL_PLANE_NAMESPACES:
                continue
            if namespace_injection_enabled(labels) or "istio-injection" in labels:
                continue
            if labels.get("istio.io/dataplane-mode") == "ambient":
                continue
            pods = pods_by_ns.get(ns.name, 0)
            busy = pods > 0 or ns.name in templates
            ambient = mesh_is_ambient(n.labels for n in topo.namespaces.values())
            label = f"{DATAPLANE_MODE}=ambient" if ambient else "istio-injection=enabled"
            out.append(Finding(
                check=cls.id, severity=Severity.WARNING if busy else Severity.INFO,
                title=f"namespace {ns.name} is not labelled for " + ("ambient mode" if ambient else "injection")
                      + (f" ({pods} pods run outside the mesh)" if pods else ""),
                detail=(f"Namespace {ns.name} has neither {DATAPLANE_MODE}=ambient nor istio-injection=enabled nor "
                        "istio.io/rev, so its pods are in no data plane (no ztunnel, no istio-proxy)"
                        + (f"; {pods} pods run there now." if pods else "; it runs no pods yet.")),
                subject=ns.name, namespace=ns.name, resource=f"Namespace {ns.name}", istio_code=cls.istio_code,
                evidence=NamespaceEvidence(pods, dict(labels)),
                suggestion=Suggestion(f"Label {ns.name} {label} (or istio-injection=disabled to record that it "
                                      "stays out).", f"kubectl label namespace {ns.name} {label}", DOC)))
        return out
