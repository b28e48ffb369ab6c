"""Prometheus metrics, on a registry of the application's own (several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "Metrics"]

#: seconds; fine below 100 ms, where the dispatch and result paths are meant to stay
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


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
        self.dispatch_send = Histogram(
            "vantage_cp_dispatch_send_seconds",
            "From a check's dispatch row (made in the claim transaction) to its instruction written to the socket",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.result_commit = Histogram(
            "vantage_cp_result_commit_seconds",
            "From a result read from its socket to its transaction committed (the ack follows)",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.db_wait = Histogram(
            "vantage_cp_db_wait_seconds", "Time a transaction waited for a database worker",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.db_transaction = Histogram(
            "vantage_cp_db_transaction_seconds", "Time a transaction ran on its database worker (retries included)",
            ["transaction"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.instruction_frames = Counter(
            "vantage_cp_instruction_frames", "Instruction frames sent: single instructions and batches",
            ["kind"], registry=self.registry,
        )
        self.webhook_failures = Counter(
            "vantage_cp_webhook_failures", "Alert webhook calls that failed", registry=self.registry
        )
        for kind in ("monitor_down", "checkpoint_unavailable"):
            self.open_alerts.labels(kind=kind).set(0)

    def observe_transaction(self, name: str, waited: float, ran: float) -> None:
        """A :class:`~.store.Store` transaction's timings (``name``: the function's, a code name)."""
        self.db_wait.observe(waited)
        self.db_transaction.labels(transaction=name).observe(ran)

    def render(self) -> bytes:
        return generate_latest(self.registry)
