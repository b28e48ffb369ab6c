"""Checkpoint state and health, computed from stored instances and the live sessions.

States (docs/control-plane.md): ``disabled`` (by an admin, with a reason) / ``active`` (at least one healthy
connected instance) / ``maintenance`` (instances connected, none healthy) / ``unavailable``
(none connected). The answer's ``healthy`` is stricter than ``active``: every enrolled instance
must be connected and healthy, so that a deployment check notices a lost redundancy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vantage.control_plane.db import Checkpoint, Instance

DISABLED = "disabled"
ACTIVE = "active"
MAINTENANCE = "maintenance"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class LiveView:
    """What the live session of an instance knows (None health: no heartbeat yet this session)."""

    health: dict[str, Any] | None


def instance_healthy(live: LiveView | None) -> bool:
    """Connected, and the last heartbeat of this session (if any) did not report unhealthy."""
    if live is None:
        return False
    return live.health is None or live.health.get("healthy") is not False


def _ago(t: float, since: float | None) -> str:
    return "never" if since is None else f"{max(0, round(t - since))} s ago"


def instance_report(inst: Instance, live: LiveView | None, t: float) -> dict[str, Any]:
    """One entry of the health answer's ``instances`` list."""
    health = inst.health
    connected = live is not None
    reasons: list[str] = []
    if not connected:
        reasons.append(f"instance {inst.name} is not connected (last heartbeat {_ago(t, inst.last_heartbeat)})")
    elif not instance_healthy(live):
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
        "healthy": connected and instance_healthy(live),
        "reasons": reasons,
        "host": health.get("host") or {},
        "data_protection": health.get("data_protection") or {},
        "keyid": inst.keyid,
    }


def checkpoint_state(cp: Checkpoint, lives: list[LiveView | None]) -> str:
    """The checkpoint's state from its admin state and its instances' live views."""
    if cp.admin_state == DISABLED:
        return DISABLED
    connected = [live for live in lives if live is not None]
    if any(instance_healthy(live) for live in connected):
        return ACTIVE
    if connected:
        return MAINTENANCE
    return UNAVAILABLE


def checkpoint_health(
    cp: Checkpoint, instances: list[Instance], lives: dict[str, LiveView], t: float
) -> dict[str, Any]:
    """The ``GET /api/v1/checkpoints/{cp}/health`` answer."""
    reports = [instance_report(inst, lives.get(inst.name), t) for inst in instances]
    state = checkpoint_state(cp, [lives.get(inst.name) for inst in instances])
    reasons: list[str] = []
    if state == DISABLED:
        reasons.append(f"checkpoint is disabled: {cp.disabled_reason or 'no reason given'}")
    if not instances:
        reasons.append("no instance is enrolled")
    for report in reports:
        reasons.extend(report["reasons"])
    healthy = state == ACTIVE and bool(reports) and all(r["healthy"] for r in reports)
    return {"checkpoint": cp.name, "state": state, "healthy": healthy, "reasons": reasons, "instances": reports}
