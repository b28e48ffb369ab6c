"""The agent's status file and the ``vantage agent healthcheck`` verdict.

The running agent rewrites ``<state dir>/status.json`` atomically on every heartbeat and on
every session state change.  ``healthcheck`` (Docker ``HEALTHCHECK``) reads it and reports
healthy only when the agent holds a *connected* session with the control plane whose last
heartbeat is recent: a container that runs but cannot reach or authenticate to the control
plane is of no use as a checkpoint instance, and the update task must not replace the other
instance of the pair until the new one has proved that it is connected.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vantage._fs import atomic_write

STATUS_FILE = "status.json"
#: Seconds added to 3 heartbeat intervals before a status is considered stale.
STALE_MARGIN_S = 10.0

CONNECTED = "connected"
CONNECTING = "connecting"
DISCONNECTED = "disconnected"
STOPPED = "stopped"


@dataclass
class Status:
    """What the agent tells ``healthcheck`` (and an operator looking at the state dir)."""

    state: str = CONNECTING
    pid: int = field(default_factory=os.getpid)
    version: str = ""
    started_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    connected_since: float | None = None
    last_heartbeat_at: float | None = None
    heartbeat_interval: float | None = None
    healthy: bool = True
    reasons: list[str] = field(default_factory=list)
    last_error: str | None = None
    outbox_pending: int = 0
    outbox_dropped: int = 0

    def write(self, state_dir: Path, now: float | None = None) -> None:
        """Write the status file atomically (no directory fsync: it is rewritten constantly)."""
        self.updated_at = time.time() if now is None else now
        data = json.dumps(asdict(self), sort_keys=True).encode() + b"\n"
        atomic_write(state_dir / STATUS_FILE, data, mode=0o644, sync_dir=False)


def read_status(state_dir: Path) -> dict[str, Any]:
    """The last status the agent wrote; :class:`ValueError` with a reason if unusable."""
    path = state_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no status file {path} (agent not started yet?)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a status object")  # noqa: TRY004 - one error type for callers
    return data


def evaluate(
    status: dict[str, Any], now: float | None = None, max_age: float | None = None
) -> tuple[bool, str]:
    """Decide health from a status: ``(healthy, one-line reason)``.

    Healthy means: state ``connected`` and a heartbeat within ``max_age`` seconds (default three
    heartbeat intervals plus :data:`STALE_MARGIN_S`).
    """
    now = time.time() if now is None else now
    state = status.get("state")
    if state != CONNECTED:
        detail = status.get("last_error") or "no session"
        return False, f"not connected to the control plane ({state}): {detail}"
    interval = status.get("heartbeat_interval")
    if max_age is None:
        max_age = 3 * float(interval if isinstance(interval, int | float) else 15) + STALE_MARGIN_S
    last = status.get("last_heartbeat_at")
    if not isinstance(last, int | float):
        return False, "connected but no heartbeat sent yet"
    age = now - float(last)
    if age > max_age:
        return False, f"last heartbeat {age:.0f}s ago (more than {max_age:.0f}s): agent stuck or stopped"
    reasons = status.get("reasons") or []
    note = f"; self-check warnings: {', '.join(map(str, reasons))}" if reasons else ""
    return True, f"connected, last heartbeat {age:.0f}s ago{note}"


def healthcheck(state_dir: Path, now: float | None = None, max_age: float | None = None) -> tuple[bool, str]:
    """Read the status file and evaluate it.

    Also checks that the process that wrote it still exists, so a killed agent is noticed at
    once instead of after ``max_age``.  This assumes the same PID namespace as the agent, which
    holds for Docker's ``HEALTHCHECK`` and ``docker exec`` (run it inside the container).
    """
    try:
        status = read_status(state_dir)
    except ValueError as exc:
        return False, str(exc)
    pid = status.get("pid")
    if status.get("state") != STOPPED and isinstance(pid, int) and pid > 0 and not _process_exists(pid):
        return False, f"the agent process (pid {pid}) that wrote the status is gone"
    return evaluate(status, now=now, max_age=max_age)


# os.kill(pid, 0) probes a process on POSIX; on Windows it terminates it. The agent is its
# container's main process there, so the container stops with it and the heartbeat's age decides
# (docs/windows.md).
_CAN_PROBE_PID = os.name != "nt"


def _process_exists(pid: int) -> bool:
    if not _CAN_PROBE_PID:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
