"""Suppressions as pure functions: what is hidden, what is stale, what expired, what is not judged at all."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from obsgap.checks import REGISTRY
from obsgap.errors import InputError
from obsgap.model import CheckRun, Finding, Namespace, ObjectRef, Service, Severity, Topology, WorkloadTemplate
from obsgap.suppress import apply, from_annotations, parse_config

KNOWN = [c.id for c in REGISTRY]
TODAY = date(2026, 12, 6)


def finding(check: str, ns: str, svc: str | None = None, workload: str | None = None,
            resource: str | None = None) -> Finding:
    return Finding(check=check, severity=Severity.CRITICAL, title=check, detail="", subject=f"{ns}/{svc}/{workload}",
                   namespace=ns, service=svc, workload=workload, resource=resource)


def entries(text: str) -> tuple:  # type: ignore[type-arg]
    return parse_config(yaml.safe_load(text)["suppress"], "--config c.yaml", KNOWN)


def test_a_time_in_until_counts_by_its_day_and_overlapping_entries_are_both_used() -> None:
    parsed = entries("""suppress:
  - {check: envoy-bypass, namespace: shop, reason: r1, until: 2026-12-06T10:00:00}
  - {check: envoy-bypass, service: web, reason: r2}
""")
    assert parsed[0].until == date(2026, 12, 6)
    kept, did = apply([finding("envoy-bypass", "shop", "web")], parsed, TODAY, [CheckRun("envoy-bypass", "ran")])
    assert kept == () and [s.by.reason for s in did.suppressed] == ["r1"] and did.stale == ()


def test_stale_only_where_the_run_judged() -> None:
    parsed = entries("""suppress:
  - {check: envoy-bypass, namespace: payments, reason: outside -n}
  - {check: envoy-bypass, namespace: legacy, reason: not examined}
  - {check: histogram-inf-saturation, reason: did not run}
  - {check: envoy-bypass, namespace: shop, reason: "judged, nothing found"}
""")
    runs = [CheckRun("envoy-bypass", "ran", examined=frozenset({"shop", "shop/web"})),
            CheckRun("histogram-inf-saturation", "skipped", "needs metrics")]
    _kept, did = apply([], parsed, TODAY, runs, scope=("shop", "legacy"))
    assert [s.reason for s in did.stale] == ["judged, nothing found"]


def test_an_expired_entry_gives_back_only_what_no_live_entry_hides() -> None:
    parsed = entries("""suppress:
  - {check: envoy-bypass, namespace: shop, reason: old, until: 2026-01-01}
  - {check: envoy-bypass, service: web, reason: still}
  - {check: port-name-convention, reason: long gone, until: 2026-01-01}
""")
    web, api = finding("envoy-bypass", "shop", "web"), finding("envoy-bypass", "shop", "api")
    kept, did = apply([web, api], parsed, TODAY, [CheckRun("envoy-bypass", "ran"),
                                                  CheckRun("port-name-convention", "ran")])
    assert kept == (api,) and [(s.reason, ids) for s, ids in did.expired] == [("old", (api.id,))]
    assert [s.reason for s in did.stale] == ["long gone"]


def test_annotations_name_their_objects_and_unknown_checks_are_said() -> None:
    topo = Topology(
        namespaces={"shop": Namespace("shop", {}, annotations={"obsgap.io/suppress": "envoy-bypas"})},
        services=(Service("shop", "web", (), {}, annotations={"obsgap.io/suppress": "envoy-bypass",
                                                                 "obsgap.io/suppress-reason": "agent"}),),
        pods=(), workloads=(WorkloadTemplate("web", "Deployment", "front", {},
                                             annotations={"obsgap.io/suppress": "call-address-not-fqdn"}),
                            WorkloadTemplate("shop", "Deployment", "front", {},
                                             annotations={"obsgap.io/suppress": "call-address-not-fqdn"})))
    annotated, unknown = from_annotations(topo, KNOWN)
    assert unknown == ("obsgap.io/suppress on Namespace shop names no check 'envoy-bypas': it suppresses nothing "
                       "(did you mean 'envoy-bypass'?)",)
    # web/front calls shop's service: filed under shop, naming Deployment web/front; shop/front must not take it
    call = finding("call-address-not-fqdn", "shop", "catalog", "front", resource="Deployment web/front")
    bypass = finding("envoy-bypass", "shop", "web")
    _kept, did = apply([call, bypass], annotated, TODAY, [CheckRun("envoy-bypass", "ran"),
                                                        CheckRun("call-address-not-fqdn", "ran")])
    by = {s.finding.id: s.by for s in did.suppressed}
    assert by[call.id].ref == ObjectRef("Deployment", "web", "front") and by[bypass.id].reason == "agent"
    assert [s.ref for s in did.stale] == [ObjectRef("Deployment", "shop", "front")]


@pytest.mark.parametrize("text,message", [
    ("suppress: {check: envoy-bypass}", "must be a list"),
    ("suppress:\n  - {check: envoy-bypass}", "give a reason"),
    ("suppress:\n  - {check: envoy-bypass, reason: r, until: soon}", "is not a date"),
    ("suppress:\n  - {check: envoy-bypass, reason: r, port: http}", "port must be a number"),
    ("suppress:\n  - {check: envoy-bypass, reason: r, servce: x}", "unknown key(s) servce"),
])
def test_bad_entries_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(yaml.safe_load(text)["suppress"], "--config c.yaml", KNOWN)


def test_a_typed_subject_key_names_its_namespace() -> None:
    """Staleness asks whether a check examined an entry's namespace: the typed keys of port-missing-from-metrics
    name one, a metric's, a job's or an SLO's do not."""
    from obsgap.model import key_namespace

    keys = ("shop", "shop/api", "port:shop/api", "sniff:shop/api", "undeclared:shop", "scrape:shop",
            "shop/api/ebpf:obi", "metric:shop", "job:shop", "slo:sloth:f:shop", "waste:shop", "dashboard:shop/a.json")
    assert [key_namespace(k) for k in keys] == ["shop"] * 7 + [None] * 5
