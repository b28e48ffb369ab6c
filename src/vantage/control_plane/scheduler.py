"""The scheduler: due monitors → signed ``run_check`` instructions; results → retries and alerts.

Rules (DESIGN §5):

- a due monitor goes to one connected, healthy instance of its checkpoint, never the same
  instance twice in a row when there is a choice, the least busy one otherwise;
- an error (``ok: false``) on attempt 1 is re-dispatched at once as attempt 2 to another
  connected instance (the same one only when no other is connected);
- an error on attempt 2 opens a ``monitor_down`` alert (subject: the monitor id); any success
  closes it;
- a dispatch without a result within ``timeout_s`` + margin counts as an error result;
- the pending checks of an instance whose session ends (closed, stale, removed) are sent at
  once to another connected instance as the *same* attempt: a check lost with its instance says
  nothing about the target, so it is not counted as an error. A check is moved at most
  :data:`MAX_REASSIGNMENTS` times; lost once more, it waits for its deadline like any other;
- a checkpoint (not disabled) without any connected instance for the grace period gets a
  ``checkpoint_unavailable`` alert (closed when an instance connects);
- an instance that missed its heartbeats is stale: its socket is closed.

Dispatches are rows in the database, so a restart keeps the attempt bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from vantage.checks import DataProtection
from vantage.control_plane.alerts import CHECKPOINT_UNAVAILABLE, MONITOR_DOWN
from vantage.control_plane.db import Checkpoint, Dispatch, Monitor, Result, now
from vantage.control_plane.sessions import (
    CLOSE_STALE,
    DATA_PROTECTION_FIELDS,
    LiveSession,
    SessionError,
    closing_task,
    send_instruction,
)

if TYPE_CHECKING:
    from vantage.control_plane.core import ControlPlane

log = logging.getLogger("vantage.control_plane.scheduler")

MAX_RESULT_ID = 128
PRUNE_EVERY_S = 300.0
DISPATCH_RETENTION_S = 86400.0
MAX_ERROR_CHARS = 4000
MAX_PHASES_BYTES = 16 * 1024
MAX_DETAILS_BYTES = 256 * 1024
#: times one check may move to another instance because its instance went away
MAX_REASSIGNMENTS = 2

@dataclass(frozen=True)
class IncomingResult:
    """A result message's fields, checked and bounded."""

    id: str
    check_id: str
    ok: bool
    error: str | None
    duration_ms: float | None
    started_at: float | None
    phases: dict[str, Any]
    details: dict[str, Any]


def _opt_number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SessionError("malformed_result", f"{name} must be a number")
    return float(value)


def _bounded_object(value: Any, name: str, limit: int) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SessionError("malformed_result", f"{name} must be an object")
    if len(json.dumps(value)) > limit:
        log.warning("result %s larger than %d bytes; not stored", name, limit)
        return {"truncated": True}
    return value


def parse_result(result: dict[str, Any]) -> IncomingResult:
    """Check a result message (docs/protocol.md); :class:`SessionError` when malformed."""
    rid = result.get("id")
    if not isinstance(rid, str) or not 0 < len(rid) <= MAX_RESULT_ID:
        raise SessionError("malformed_result", "id must be a short non-empty string")
    check_id = result.get("check_id", rid)
    if not isinstance(check_id, str) or not 0 < len(check_id) <= MAX_RESULT_ID:
        raise SessionError("malformed_result", "check_id must be a short non-empty string")
    ok = result.get("ok")
    if not isinstance(ok, bool):
        raise SessionError("malformed_result", "ok must be true or false")
    error = result.get("error")
    if error is not None and not isinstance(error, str):
        error = str(error)
    return IncomingResult(
        id=rid,
        check_id=check_id,
        ok=ok,
        error=error[:MAX_ERROR_CHARS] if error is not None else None,
        duration_ms=_opt_number(result.get("duration_ms"), "duration_ms"),
        started_at=_opt_number(result.get("started_at"), "started_at"),
        phases=_bounded_object(result.get("phases"), "phases", MAX_PHASES_BYTES),
        details=_bounded_object(result.get("details"), "details", MAX_DETAILS_BYTES),
    )


def protect(incoming: IncomingResult, data_protection: dict[str, Any]) -> tuple[IncomingResult, bool]:
    """Apply the instance's reported data-protection switches once more (second line of defence).

    The agent strips before sending; re-applying the same :class:`DataProtection` is a no-op for
    a correct agent. Returns the (possibly) cleaned result and whether anything changed.
    """
    dp = DataProtection(**{k: data_protection.get(k) is True for k in DATA_PROTECTION_FIELDS})
    if not dp.active:
        return incoming, False
    original = {"error": incoming.error, "phases": incoming.phases, "details": incoming.details}
    cleaned = dp.apply(original)
    if cleaned == original:
        return incoming, False
    return (
        replace(incoming, error=cleaned["error"], phases=cleaned["phases"] or {}, details=cleaned["details"] or {}),
        True,
    )


def choose(sessions: list[LiveSession], *, avoid: str | None, strict: bool = False) -> LiveSession | None:
    """Pick a session for a check.

    Healthy instances first; ``avoid`` (the previous instance) only when there is no other
    choice; among the rest the least busy, ties broken at random. With ``strict`` (a retry)
    any other connected instance beats ``avoid``, even an unhealthy one.
    """
    pool = [s for s in sessions if not s.closed]
    if strict and avoid is not None:
        pool = [s for s in pool if s.instance != avoid] or pool
    pool = [s for s in pool if s.healthy] or pool
    if not strict and avoid is not None and len(pool) > 1:
        pool = [s for s in pool if s.instance != avoid] or pool
    if not pool:
        return None
    least = min(s.pending for s in pool)
    return random.choice([s for s in pool if s.pending == least])


class Scheduler:
    """Dispatches due monitors, handles results and timeouts, watches availability."""

    def __init__(self, core: ControlPlane) -> None:
        self.core = core
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        #: check id → how many times the check has already moved (only checks that moved)
        self._moves: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="vantage-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed")
            await asyncio.sleep(self.core.settings.scheduler_tick)

    async def tick(self) -> None:
        """One pass: stale sessions, overdue dispatches, availability, due monitors.

        Each step, and inside each step each dispatch, monitor and checkpoint, fails on its own:
        an error is logged and the rest goes on, so no single row can stop scheduling.
        """
        t = now()
        for step in (self.expire_stale_sessions, self.expire_dispatches, self.check_availability,
                     self.dispatch_due):
            try:
                result = step(t)
                if asyncio.iscoroutine(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler step %s failed", step.__name__)
        if t - self._pruned_at >= PRUNE_EVERY_S:
            self.prune(t)

    def prune(self, t: float) -> None:
        """Forget finished dispatches older than a day (results are kept; they are the data)."""
        self._pruned_at = t
        with self.core.db.session() as db:
            db.execute(
                delete(Dispatch).where(Dispatch.status != "pending", Dispatch.dispatched_at < t - DISPATCH_RETENTION_S)
            )

    # -- sessions and availability -------------------------------------------------------------

    def expire_stale_sessions(self, t: float) -> None:
        settings = self.core.settings
        limit = settings.stale_heartbeats * settings.heartbeat_interval
        for session in self.core.registry.all():
            if t - session.last_sign_of_life() > limit:
                log.warning("%s missed %d heartbeats; closing its session", session.name, settings.stale_heartbeats)
                self.core.metrics.ws_rejections.labels(reason="stale").inc()
                self.core.session_closed(session)
                closing_task(session, CLOSE_STALE, "heartbeats missed")

    def check_availability(self, t: float) -> None:
        grace = self.core.settings.unavailable_grace
        with self.core.db.session() as db:
            checkpoints = list(db.scalars(select(Checkpoint).where(Checkpoint.admin_state != "disabled")).all())
        for cp in checkpoints:
            if self.core.registry.for_checkpoint(cp.name):
                continue
            since = max(self.core.registry.none_connected_since(cp.name), cp.created_at)
            if t - since >= grace:
                try:
                    self.core.alerts.open(
                        CHECKPOINT_UNAVAILABLE,
                        cp.name,
                        f"no instance of checkpoint {cp.name} has been connected for {round(t - since)} s",
                    )
                except Exception:
                    log.exception("opening checkpoint_unavailable for %s failed", cp.name)

    # -- dispatching ------------------------------------------------------------------------------

    async def dispatch_due(self, t: float) -> None:
        with self.core.db.session() as db:
            busy = set(db.scalars(select(Dispatch.monitor_id).where(Dispatch.status == "pending")).all())
            due = list(
                db.scalars(
                    select(Monitor)
                    .join(Checkpoint, Checkpoint.name == Monitor.checkpoint)
                    .where(Monitor.next_due <= t, Checkpoint.admin_state != "disabled")
                    .order_by(Monitor.next_due)
                    .limit(self.core.settings.dispatch_batch)
                ).all()
            )
        for monitor in due:
            if monitor.id in busy:
                continue
            sessions = [s for s in self.core.registry.for_checkpoint(monitor.checkpoint) if s.healthy]
            target = choose(sessions, avoid=monitor.last_instance)
            if target is None:
                continue  # stays due; the checkpoint's state and alert tell why
            try:
                await self.dispatch(monitor, target, attempt=1)
            except Exception:
                log.exception("dispatching monitor %s failed", monitor.id)

    async def dispatch(self, monitor: Monitor, session: LiveSession, *, attempt: int, moves: int = 0) -> str:
        """Record and send one ``run_check``; returns its check id.

        ``moves`` > 0: it replaces a check lost with its instance (the monitor's schedule is
        left alone, and the count bounds further moves).
        """
        t = now()
        check_id = str(uuid.uuid4())
        deadline = t + monitor.timeout_s + self.core.settings.result_margin
        with self.core.db.session() as db:
            db.add(
                Dispatch(
                    check_id=check_id,
                    monitor_id=monitor.id,
                    checkpoint=monitor.checkpoint,
                    instance=session.instance,
                    attempt=attempt,
                    dispatched_at=t,
                    deadline=deadline,
                    status="pending",
                )
            )
            row = db.get(Monitor, monitor.id)
            if row is not None:
                row.last_instance = session.instance
                if attempt == 1 and not moves:
                    due = row.next_due + row.interval_s
                    row.next_due = due if due > t else t + row.interval_s
        session.pending += 1
        if moves:
            self._moves[check_id] = moves
        body = {"check_id": check_id, "monitor_id": monitor.id, "attempt": attempt, "check": monitor.spec}
        self.core.metrics.dispatches.labels(attempt=str(attempt)).inc()
        try:
            await send_instruction(self.core, session, "run_check", body)
        except Exception as exc:  # noqa: BLE001 - the socket went away: count it as an error now
            log.warning("sending check %s to %s failed: %s", check_id, session.name, exc)
            await self.fail_dispatch(check_id, f"could not send the check to {session.name}: {exc}")
        else:
            log.debug("dispatched monitor %s attempt %d to %s (check %s)", monitor.id, attempt, session.name, check_id)
        return check_id

    async def reassign(self, checkpoint: str, instance: str) -> None:
        """Send the pending checks of ``instance``, whose session ended, to another instance now.

        Each becomes a new dispatch with the same attempt number on another connected instance
        (healthy first), and the old one is marked ``reassigned``: a result the old instance
        still delivers later (from its outbox, after a reconnect) is stored under its own id
        without further bookkeeping, like a late result. Nothing moves when no other instance is
        connected (the instance may come back and deliver), nor after :data:`MAX_REASSIGNMENTS`
        moves of the same check; those wait for their deadline.
        """
        with self.core.db.session() as db:
            cp = db.get(Checkpoint, checkpoint)
            if cp is None or cp.admin_state == "disabled":
                return  # taken out of service: its pending checks just run out
            lost = list(
                db.scalars(
                    select(Dispatch).where(
                        Dispatch.status == "pending", Dispatch.checkpoint == checkpoint, Dispatch.instance == instance
                    )
                ).all()
            )
        for d in lost:
            if self.core.registry.get(checkpoint, instance) is not None:
                return  # it is back already: its outbox delivers what it ran
            moves = self._moves.get(d.check_id, 0)
            target = choose(self.core.registry.for_checkpoint(checkpoint), avoid=instance, strict=True)
            if target is None or target.instance == instance or moves >= MAX_REASSIGNMENTS:
                continue
            with self.core.db.session() as db:
                row = db.get(Dispatch, d.check_id)
                monitor = db.get(Monitor, d.monitor_id)
                if row is None or row.status != "pending" or monitor is None:
                    continue  # answered or cancelled meanwhile
                row.status = "reassigned"
            self._moves.pop(d.check_id, None)
            self.core.metrics.reassigned.inc()
            log.info(
                "check %s (monitor %s, attempt %d) lost with %s/%s; sending it to %s",
                d.check_id, d.monitor_id, d.attempt, checkpoint, instance, target.name,
            )  # fmt: skip
            await self.dispatch(monitor, target, attempt=d.attempt, moves=moves + 1)

    def extend_deadlines(self, not_before: float) -> None:
        """Give pending dispatches until at least ``not_before`` (used at start-up)."""
        with self.core.db.session() as db:
            db.execute(
                update(Dispatch)
                .where(Dispatch.status == "pending", Dispatch.deadline < not_before)
                .values(deadline=not_before)
            )

    async def expire_dispatches(self, t: float) -> None:
        with self.core.db.session() as db:
            overdue = list(
                db.scalars(select(Dispatch.check_id).where(Dispatch.status == "pending", Dispatch.deadline < t)).all()
            )
        for check_id in overdue:
            self.core.metrics.check_timeouts.inc()
            try:
                await self.fail_dispatch(check_id, "no result in time")
            except Exception:
                log.exception("timing out check %s failed; it is set aside", check_id)
                self._set_aside(check_id)

    def _set_aside(self, check_id: str) -> None:
        """Mark a dispatch that cannot be processed as ``error`` so that it is not retried every tick."""
        with self.core.db.session() as db:
            db.execute(update(Dispatch).where(Dispatch.check_id == check_id).values(status="error"))

    async def fail_dispatch(self, check_id: str, error: str) -> None:
        """Count a pending dispatch as an error result (stored with id ``<check_id>:timeout``)."""
        with self.core.db.session() as db:
            d = db.get(Dispatch, check_id)
            if d is None or d.status != "pending":
                return
            d.status = "timeout"
            db.add(
                Result(
                    id=f"{check_id}:timeout",
                    monitor_id=d.monitor_id,
                    check_id=check_id,
                    checkpoint=d.checkpoint,
                    instance=d.instance,
                    attempt=d.attempt,
                    ok=False,
                    error=error,
                    duration_ms=None,
                    started_at=d.dispatched_at,
                    phases_json="{}",
                    details_json=json.dumps({"synthetic": True}),
                    received_at=now(),
                )
            )
            snapshot = (d.monitor_id, d.checkpoint, d.instance, d.attempt)
        self._moves.pop(check_id, None)
        log.warning("check %s on %s/%s (attempt %d): %s", check_id, snapshot[1], snapshot[2], snapshot[3], error)
        self.release_slot(snapshot[1], snapshot[2])
        await self.outcome(snapshot[0], snapshot[2], snapshot[3], ok=False, error=error)

    def release_slot(self, checkpoint: str, instance: str) -> None:
        """One dispatch of the instance is finished (result, timeout or cancellation)."""
        session = self.core.registry.get(checkpoint, instance)
        if session is not None and session.pending > 0:
            session.pending -= 1

    # -- results ------------------------------------------------------------------------------

    async def handle_result(self, session: LiveSession, message: dict[str, Any]) -> None:
        """Store a result once (dedupe by id), ack it after the commit, then retry or alert."""
        incoming = parse_result(message)
        core = self.core
        if incoming.id != incoming.check_id:
            # a result is its check's: its id is the check id the control plane chose. Anything
            # else could collide with ids the control plane writes itself (``<check>:timeout``).
            log.warning("%s sent result %r for check %r: the id must be the check id; refused",
                        session.name, incoming.id[:64], incoming.check_id[:64])
            core.metrics.refused_results.labels(reason="id_is_not_the_check_id").inc()
            await session.send({"type": "ack", "id": incoming.id})
            return
        follow_up: tuple[str, int] | None = None
        with core.db.session() as db:
            if db.get(Result, incoming.id) is not None:
                core.metrics.duplicate_results.inc()
                duplicate = True
            else:
                duplicate = False
                d = db.get(Dispatch, incoming.check_id)
                if (
                    d is None
                    or d.checkpoint != session.checkpoint
                    or d.instance != session.instance
                    or d.status == "cancelled"
                ):
                    log.warning(
                        "%s sent result %s for a check not dispatched to it, or cancelled; refused",
                        session.name,
                        incoming.id[:64],
                    )
                    core.metrics.refused_results.labels(reason="not_dispatched_to_this_instance").inc()
                else:
                    incoming, changed = protect(incoming, self._data_protection(session))
                    if changed:
                        log.warning("%s sent data its data protection should have stripped; dropped", session.name)
                    db.add(
                        Result(
                            id=incoming.id,
                            monitor_id=d.monitor_id,
                            check_id=incoming.check_id,
                            checkpoint=session.checkpoint,
                            instance=session.instance,
                            attempt=d.attempt,
                            ok=incoming.ok,
                            error=incoming.error,
                            duration_ms=incoming.duration_ms,
                            started_at=incoming.started_at,
                            phases_json=json.dumps(incoming.phases),
                            details_json=json.dumps(incoming.details),
                            received_at=now(),
                        )
                    )
                    core.metrics.results.labels(ok=str(incoming.ok).lower()).inc()
                    if d.status == "pending":
                        d.status = "done"
                        follow_up = (d.monitor_id, d.attempt)
                        self._moves.pop(d.check_id, None)
        try:
            await session.send({"type": "ack", "id": incoming.id})
        finally:  # the result is committed: retry or alert even if the ack can no longer be sent
            if not duplicate and follow_up is not None:
                self.release_slot(session.checkpoint, session.instance)
                await self.outcome(
                    follow_up[0], session.instance, follow_up[1], ok=incoming.ok, error=incoming.error
                )

    def _data_protection(self, session: LiveSession) -> dict[str, Any]:
        if session.health is not None:
            dp = session.health.get("data_protection")
            return dp if isinstance(dp, dict) else {}
        return self.core.stored_health(session.checkpoint, session.instance).get("data_protection") or {}

    async def outcome(self, monitor_id: str, instance: str, attempt: int, *, ok: bool, error: str | None) -> None:
        """Retry, open or close ``monitor_down`` after a result (or a missing one)."""
        core = self.core
        with core.db.session() as db:
            monitor = db.get(Monitor, monitor_id)
            cp = db.get(Checkpoint, monitor.checkpoint) if monitor is not None else None
        if monitor is None or cp is None:
            return
        if ok:
            core.alerts.close_alert(MONITOR_DOWN, monitor.id)
            return
        if cp.admin_state == "disabled":
            return  # no retries and no monitor_down from a checkpoint an admin took out of service
        if attempt < 2:
            target = choose(core.registry.for_checkpoint(monitor.checkpoint), avoid=instance, strict=True)
            if target is None:
                log.warning("monitor %s failed on %s and no instance is connected for attempt 2", monitor.id, instance)
                return
            await self.dispatch(monitor, target, attempt=attempt + 1)
            return
        core.alerts.open(
            MONITOR_DOWN,
            monitor.id,
            f"monitor {monitor.name} failed twice on checkpoint {monitor.checkpoint} "
            f"(last on {instance}): {error or 'error'}",
        )
