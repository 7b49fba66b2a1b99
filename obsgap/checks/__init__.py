"""Every check obsgap runs, registered in one literal tuple (no import side effects)."""

from __future__ import annotations

from obsgap.checks.base import Check
from obsgap.checks.call_address import CallAddressNotFqdn
from obsgap.checks.canary import CanaryWithoutOutlierDetection
from obsgap.checks.dashboard_bucket_sums import DashboardSumsBuckets
from obsgap.checks.dashboard_buckets import DashboardReadsMissingBucket
from obsgap.checks.dashboard_double_count import DashboardDoubleCounts
from obsgap.checks.dashboard_names import DashboardReadsUnknownName
from obsgap.checks.dashboard_reporter import DashboardMissesWaypoint
from obsgap.checks.dashboard_telemetry import DashboardReadsDisabledMetric
from obsgap.checks.destinationrules import DestinationRuleHostUnresolved, DestinationRuleSubsetUnmatched
from obsgap.checks.envoy_bypass import EnvoyBypass
from obsgap.checks.histograms import HistogramInfSaturation
from obsgap.checks.injection import NamespaceNotInjected, SidecarMissing
from obsgap.checks.job_names import JobNameMismatch
from obsgap.checks.metrics_exceed_logs import MetricsExceedLogs
from obsgap.checks.passthrough import PassthroughTraffic
from obsgap.checks.port_missing import PortMissingFromMetrics
from obsgap.checks.port_names import PortNameConvention
from obsgap.checks.route_refs import RouteRefUnresolved
from obsgap.checks.slo import SloUntrustworthy
from obsgap.checks.virtualservice_hosts import VirtualServiceHostUnresolved
from obsgap.checks.waypoints import WaypointMissing
from obsgap.checks.witness_undercounts import WitnessUndercounts

REGISTRY: tuple[type[Check], ...] = (
    EnvoyBypass,
    MetricsExceedLogs,
    WitnessUndercounts,
    PortMissingFromMetrics,
    PassthroughTraffic,
    CallAddressNotFqdn,
    HistogramInfSaturation,
    JobNameMismatch,
    VirtualServiceHostUnresolved,
    DestinationRuleSubsetUnmatched,
    DestinationRuleHostUnresolved,
    CanaryWithoutOutlierDetection,
    RouteRefUnresolved,
    WaypointMissing,
    DashboardMissesWaypoint,
    DashboardReadsDisabledMetric,
    DashboardDoubleCounts,
    DashboardReadsMissingBucket,
    DashboardReadsUnknownName,
    DashboardSumsBuckets,
    SidecarMissing,
    NamespaceNotInjected,
    PortNameConvention,
    SloUntrustworthy,
)


CHECK_IDS: tuple[str, ...] = tuple(c.id for c in REGISTRY)


def by_id(check_id: str) -> type[Check] | None:
    return next((c for c in REGISTRY if c.id == check_id), None)
