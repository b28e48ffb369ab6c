"""Prometheus metrics, on a registry of the application's own (several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """The control plane's metrics. Labels never carry names or tokens, only bounded codes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connected_instances = Gauge(
            "vantage_cp_connected_instances", "Instances with a live, authenticated session",
            registry=self.registry,
        )
        self.results = Counter(
            "vantage_cp_results", "Check results stored", ["ok"], registry=self.registry
        )
        self.duplicate_results = Counter(
            "vantage_cp_duplicate_results", "Check results received again and dropped",
            registry=self.registry,
        )
        self.refused_results = Counter(
            "vantage_cp_refused_results", "Results refused: not bound to a check dispatched to that instance",
            ["reason"], registry=self.registry,
        )
        self.dispatches = Counter(
            "vantage_cp_dispatches", "run_check instructions sent", ["attempt"], registry=self.registry
        )
        self.reassigned = Counter(
            "vantage_cp_reassigned_checks", "Pending checks sent to another instance when theirs went away",
            registry=self.registry,
        )
        self.check_timeouts = Counter(
            "vantage_cp_check_timeouts", "Dispatched checks without a result in time",
            registry=self.registry,
        )
        self.open_alerts = Gauge(
            "vantage_cp_open_alerts", "Open alerts", ["kind"], registry=self.registry
        )
        self.ws_rejections = Counter(
            "vantage_cp_ws_rejections", "Websocket sessions refused or closed for cause", ["reason"],
            registry=self.registry,
        )
        self.agent_rejections = Counter(
            "vantage_cp_agent_rejections", "Instructions an agent reported as rejected", ["reason"],
            registry=self.registry,
        )
        self.webhook_failures = Counter(
            "vantage_cp_webhook_failures", "Alert webhook calls that failed", registry=self.registry
        )
        for kind in ("monitor_down", "checkpoint_unavailable"):
            self.open_alerts.labels(kind=kind).set(0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
