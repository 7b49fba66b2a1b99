"""port-name-convention: Service ports whose name and appProtocol give Istio no protocol (IST0118)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from obsgap.checks.base import Check, CheckInputs
from obsgap.istio import SYSTEM_NAMESPACES
from obsgap.model import Finding, FindingEvidence, ObjectRef, Service, ServicePort, Severity, Suggestion

DOC = "https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/"
MANAGED_GATEWAY_LABEL = "gateway.istio.io/managed"


@dataclass(frozen=True, eq=False)
class PortEvidence(FindingEvidence):
    """The Service port Istio cannot tell the protocol of."""

    port_name: str
    target_port: int | str | None
    type: str | None = None
    """ExternalName for such Services (their port is the only protocol hint)."""


class PortNameConvention(Check):
    """What it does: finds Service ports that neither set `appProtocol` nor have a name of the form
    `<protocol>[-<suffix>]` (http, http2, https, grpc, grpc-web, tcp, tls, udp, mongo, redis, mysql),
    so Istio must sniff the protocol. Services in system namespaces, Istio's own (labelled `istio` or
    `release: istio`) and gateways Istio manages are skipped, as istioctl does. Same as IST0118; on an
    ExternalName Service (which has no pods to sniff, and where `tcp` is not enough) IST0150.

    Why is this bad? Sniffing works for plain HTTP/1.1 but fails for server-first protocols and adds
    latency; when it fails, HTTP is proxied as TCP and request metrics vanish for that port.

    Example: `ports: [{port: 8080}]` (unnamed) or `name: web`.

    Use instead: `name: http-web` or `appProtocol: http`.
    """

    id = "port-name-convention"
    title = "Service ports with no Istio protocol"
    needs = ("topology",)
    kinds = ("Service",)
    istio_code = "IST0118"
    doc_url = DOC

    @classmethod
    def run(cls, inputs: CheckInputs) -> Sequence[Finding]:
        out = []
        for svc in inputs.index.topo.services:
            if svc.namespace in SYSTEM_NAMESPACES or MANAGED_GATEWAY_LABEL in svc.labels or _istio_own(svc):
                continue
            for sp in svc.ports:
                if svc.type == "ExternalName" and (sp.protocol_source == "sniffed" or sp.name == "tcp"):
                    out.append(_external_name(svc, sp))
                    continue
                if sp.protocol_source != "sniffed":
                    continue
                shown = sp.name or "(unnamed)"
                out.append(Finding(
                    check=cls.id, severity=Severity.INFO,
                    title=f"{svc.name}:{sp.port} ({shown}) gives Istio no protocol",
                    detail=(f"Port {sp.port} of Service {svc.namespace}/{svc.name} is named {shown!r} without "
                            "appProtocol: Istio sniffs the protocol, and falls back to TCP (no request metrics) when "
                            "sniffing fails."),
                    subject=f"{svc.namespace}/{svc.name}:{sp.port}", namespace=svc.namespace, service=svc.name,
                    port=sp.port, resource=f"Service {svc.namespace}/{svc.name}", istio_code=cls.istio_code,
                    refs=(ObjectRef("Service", svc.namespace, svc.name),),
                    evidence=PortEvidence(sp.name, sp.target_port),
                    suggestion=Suggestion("Name the port <protocol>-<suffix> or set appProtocol.",
                                          f"ports:\n- name: http-{sp.name or sp.port}\n  port: {sp.port}\n"
                                          f"  appProtocol: http  # or grpc, tcp, ...", DOC)))
        return out


def _istio_own(svc: Service) -> bool:
    """istioctl's IsIstioControlPlane: an `istio` label (any value) or `release: istio`."""
    return "istio" in svc.labels or svc.labels.get("release") == "istio"


def _external_name(svc: Service, sp: ServicePort) -> Finding:
    shown = sp.name or "(unnamed)"
    return Finding(
        check=PortNameConvention.id, severity=Severity.WARNING,
        title=f"ExternalName {svc.name}:{sp.port} ({shown}) needs a protocol name",
        detail=(f"Port {sp.port} of ExternalName Service {svc.namespace}/{svc.name} is named {shown!r}: with no pods "
                "behind it Istio cannot sniff, and a plain `tcp` name hides HTTP/TLS from routing and metrics."),
        subject=f"{svc.namespace}/{svc.name}:{sp.port}", namespace=svc.namespace, service=svc.name, port=sp.port,
        resource=f"Service {svc.namespace}/{svc.name}", istio_code="IST0150",
        refs=(ObjectRef("Service", svc.namespace, svc.name),),
        evidence=PortEvidence(sp.name, None, "ExternalName"),
        suggestion=Suggestion("Name the port after its protocol (http-, https-, tls-, grpc-...) or set appProtocol.",
                              f"ports:\n- name: https  # or http, tls, grpc\n  port: {sp.port}", DOC))
