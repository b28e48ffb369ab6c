"""Checkpoint state and health, computed from the stored instances (whichever replica holds them).

States (docs/architecture.md): ``disabled`` (by an admin, with a reason) / ``active`` (at least one healthy
connected instance) / ``maintenance`` (instances connected, none healthy) / ``unavailable``
(none connected). The answer's ``healthy`` is stricter than ``active``: every enrolled instance
must be connected and healthy, so that a deployment check notices a lost redundancy.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from vantage.control_plane.db import Checkpoint, Instance

DISABLED = "disabled"
ACTIVE = "active"
MAINTENANCE = "maintenance"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Presence:
    """An instance's live state: connected (a session on a replica that is alive) and healthy.

    ``healthy``: connected, and the latest heartbeat of this session did not say ``healthy:
    false`` (a freshly welcomed instance counts as healthy until its first heartbeat).
    """

    connected: bool
    healthy: bool


OFFLINE = Presence(False, False)


def presence(inst: Instance, alive_replicas: Collection[str]) -> Presence:
    """The instance's presence, given the replicas that are alive now."""
    connected = inst.session_id is not None and inst.replica_id in alive_replicas
    return Presence(connected, connected and inst.healthy)


def _ago(t: float, since: float | None) -> str:
    return "never" if since is None else f"{max(0, round(t - since))} s ago"


def instance_report(inst: Instance, live: Presence, t: float) -> dict[str, Any]:
    """One entry of the health answer's ``instances`` list."""
    health = inst.health
    connected = live.connected
    reasons: list[str] = []
    if not connected:
        reasons.append(f"instance {inst.name} is not connected (last heartbeat {_ago(t, inst.last_heartbeat)})")
    elif not live.healthy:
        reported = [str(r) for r in health.get("reasons") or [] if isinstance(r, str)]
        reasons.extend(f"instance {inst.name}: {r}" for r in reported)
        if not reported:
            reasons.append(f"instance {inst.name} reports itself unhealthy")
    return {
        "name": inst.name,
        "connected": connected,
        "last_heartbeat": inst.last_heartbeat,
        "version": health.get("version"),
        "image_digest": health.get("image_digest"),
        "healthy": live.healthy,
        "reasons": reasons,
        "host": health.get("host") or {},
        "data_protection": health.get("data_protection") or {},
        "keyid": inst.keyid,
    }


def checkpoint_state(cp: Checkpoint, lives: list[Presence]) -> str:
    """The checkpoint's state from its admin state and its instances' presence."""
    if cp.admin_state == DISABLED:
        return DISABLED
    if any(live.healthy for live in lives):
        return ACTIVE
    if any(live.connected for live in lives):
        return MAINTENANCE
    return UNAVAILABLE


def checkpoint_health(
    cp: Checkpoint, instances: list[Instance], alive_replicas: Collection[str], t: float
) -> dict[str, Any]:
    """The ``GET /api/v1/checkpoints/{cp}/health`` answer."""
    lives = [presence(inst, alive_replicas) for inst in instances]
    reports = [instance_report(inst, live, t) for inst, live in zip(instances, lives, strict=True)]
    state = checkpoint_state(cp, lives)
    reasons: list[str] = []
    if state == DISABLED:
        reasons.append(f"checkpoint is disabled: {cp.disabled_reason or 'no reason given'}")
    if not instances:
        reasons.append("no instance is enrolled")
    for report in reports:
        reasons.extend(report["reasons"])
    healthy = state == ACTIVE and bool(reports) and all(r["healthy"] for r in reports)
    return {"checkpoint": cp.name, "state": state, "healthy": healthy, "reasons": reasons, "instances": reports}
