"""Computed once per run, before any check, as pure functions of the evidence: the reconciliation of every witness
with the mesh's counts, the coverage table, the timelines, the name contract and the SLO assessments. The checks
read it (CheckInputs.analysis); the report shows it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from obsgap.analysis.contract import build_contract
from obsgap.analysis.coverage import coverage_rows
from obsgap.analysis.reconcile import Reconciliation, reconcile
from obsgap.analysis.timelines import TREND_RANGE_QUERY, timelines
from obsgap.evidence import Evidence
from obsgap.model import ContractRow, CoverageRow, ServiceTimeline
from obsgap.slo.assess import SloAssessment, assess

ANALYSIS_QUERIES = ("mesh_requests", "mesh_tcp_connections", "scrape_targets", "grpc_failures", "upgraded_requests")
"""The instant queries the analysis reads (the engine fetches them with the checks' own)."""
ANALYSIS_RANGE_QUERIES = (TREND_RANGE_QUERY,)


@dataclass(frozen=True)
class Analysis:
    traffic: Reconciliation
    coverage: tuple[CoverageRow, ...]
    timelines: Mapping[tuple[str, str], ServiceTimeline]
    """(namespace, service) -> requests over time, logged and counted by the mesh."""
    contract: tuple[ContractRow, ...]
    slos: tuple[SloAssessment, ...]
    """Each SLO's assessment (empty when none was given)."""


def analyze(ev: Evidence) -> Analysis:
    traffic = reconcile(ev)
    return Analysis(
        traffic=traffic, coverage=coverage_rows(traffic), timelines=timelines(ev, traffic),
        contract=build_contract(ev) if ev.topology is not None else (),
        slos=tuple(assess(m, ev, traffic) for m in ev.slos or ()))
