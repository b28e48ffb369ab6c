"""Run-time settings of the control plane (filled by the CLI, or directly by tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Everything that tunes a running control plane.

    ``admin_token`` is the secret itself (read from ``--admin-token-file``); it is only ever
    hashed, never logged.
    """

    db_url: str
    signing_key_path: Path
    admin_token: str | None = None
    public_url: str | None = None
    heartbeat_interval: float = 15.0
    #: heartbeats an instance may miss before it is stale (docs/architecture.md: 3)
    stale_heartbeats: int = 3
    unavailable_grace: float = 120.0
    webhook_url: str | None = None
    scheduler_tick: float = 1.0
    #: added to a check's timeout_s before a missing result counts as an error
    result_margin: float = 10.0
    #: after a start, pending dispatches get at least this long for their results: the agents
    #: must first reconnect, and the downtime was not the checks' fault
    restart_grace: float = 60.0
    #: instruction lifetime (exp - iat); the agent caps it at 300 s, the issue at 60 s
    instruction_lifetime: int = 60
    #: how long a rotated-out signing key stays trusted
    rotation_grace: float = 86400.0
    #: largest websocket message accepted (bytes)
    max_msg_size: int = 1024 * 1024
    #: seconds from the websocket upgrade until the hello must have been verified (a deadline:
    #: pings and pongs do not extend it)
    hello_timeout: float = 10.0
    #: connections that have not authenticated yet, at most: in total, and from one address
    max_unauthenticated: int = 1024
    max_unauthenticated_per_address: int = 64
    #: per-session message budget: sustained rate (messages/s) and burst. Far above what an agent
    #: needs (≥ 200 results/s, each acknowledged, plus heartbeats), it still bounds what one
    #: buggy or compromised agent can cost: every result is a database transaction.
    message_rate: float = 1000.0
    message_burst: float = 2000.0
    #: monitors dispatched per scheduler tick at most
    dispatch_batch: int = 500
    #: a replica whose row was not refreshed for this long is dead: its instances count as
    #: disconnected and another replica takes over their checks
    replica_timeout: float = 10.0
