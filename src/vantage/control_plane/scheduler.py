"""The scheduler: due monitors → signed ``run_check`` instructions; results → retries and alerts.

Rules (docs/control-plane.md, "Scheduling and alerts"):

- a due monitor goes to one connected, healthy instance of its checkpoint, never the same
  instance twice in a row when there is a choice, the least busy one otherwise;
- an error (``ok: false``) on attempt 1 is re-dispatched at once as attempt 2 to another
  connected instance (the same one only when no other is connected);
- an error on attempt 2 opens a ``monitor_down`` alert (subject: the monitor id); any success
  closes it;
- a dispatch without a result within ``timeout_s`` + margin counts as an error result;
- the pending checks of an instance whose session ends (closed, stale, removed, or its replica
  gone) are sent at once to another connected instance as the *same* attempt: a check lost with
  its instance says nothing about the target. A check moves at most :data:`MAX_REASSIGNMENTS`
  times; lost once more, it waits for its deadline like any other;
- a checkpoint (not disabled) without any connected instance for the grace period gets a
  ``checkpoint_unavailable`` alert (closed when an instance connects).

Several replicas share the work through the database. Every decision is one store transaction
(a worker thread, :mod:`.store`) that changes rows under a condition only one transaction can
meet — a due monitor is claimed under a row lock that others skip (``FOR UPDATE SKIP
LOCKED``), a dispatch leaves ``pending`` once — so each due check is dispatched once, each
result counted once and each alert raised once, whichever replica does it. A transaction
returns :class:`Effects` — instructions to deliver, alerts to publish — that the replica
carries out after the commit. An instruction for an instance held by another replica is picked
up by that replica (:func:`undelivered`), at the latest one tick later.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from vantage.checks import DataProtection
from vantage.control_plane.alerts import (
    CHECKPOINT_UNAVAILABLE,
    MONITOR_DOWN,
    AlertEvent,
    close_alert,
    open_alert,
    open_subjects,
)
from vantage.control_plane.db import Checkpoint, Dispatch, Instance, Monitor, Replica, Result, now
from vantage.control_plane.instructions import stored_payload, take_seq
from vantage.control_plane.sessions import DATA_PROTECTION_FIELDS, SessionError
from vantage.control_plane.store import rowcount
from vantage.protocol import instruction_payload

log = logging.getLogger("vantage.control_plane.scheduler")

MAX_RESULT_ID = 128
DISPATCH_RETENTION_S = 86400.0
MAX_ERROR_CHARS = 4000
MAX_PHASES_BYTES = 16 * 1024
MAX_DETAILS_BYTES = 256 * 1024
#: times one check may move to another instance because its instance went away
MAX_REASSIGNMENTS = 2
#: overdue dispatches handled per tick at most
EXPIRE_BATCH = 500
#: an envelope is sent again after a reconnect only while this much of its lifetime is left
RESEND_MARGIN_S = 5.0


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



# --- choosing an instance ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A connected instance of a checkpoint, as the database sees it."""

    name: str
    replica_id: str
    healthy: bool
    pending: int
    iss: str


def choose(candidates: list[Candidate], *, avoid: str | None, strict: bool = False) -> Candidate | None:
    """Pick an instance for a check.

    Healthy instances first; ``avoid`` (the previous instance) only when there is no other
    choice; among the rest the least busy, ties broken at random. With ``strict`` (a retry)
    any other connected instance beats ``avoid``, even an unhealthy one.
    """
    pool = list(candidates)
    if strict and avoid is not None:
        pool = [c for c in pool if c.name != avoid] or pool
    pool = [c for c in pool if c.healthy] or pool
    if not strict and avoid is not None and len(pool) > 1:
        pool = [c for c in pool if c.name != avoid] or pool
    if not pool:
        return None
    least = min(c.pending for c in pool)
    return random.choice([c for c in pool if c.pending == least])  # noqa: S311 - spreads load, decides nothing secret


# --- what a transaction decides ------------------------------------------------------------------


@dataclass(frozen=True)
class Outbound:
    """An instruction to hand to the session of ``checkpoint/instance`` (held by ``replica_id``).

    ``payload`` is the instruction's payload, not yet signed: the replica holding the session
    signs it when it sends it, alone or together with the other checks for that instance in
    one batch (:meth:`~.core.ControlPlane.deliver`).
    """

    check_id: str
    checkpoint: str
    instance: str
    replica_id: str
    payload: dict[str, Any]
    attempt: int
    new: bool = True
    #: ``time.time()`` when the dispatch row was made (the start of its dispatch latency)
    dispatched_at: float = 0.0


@dataclass
class Effects:
    """What to do once a transaction has committed."""

    deliveries: list[Outbound] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    timeouts: int = 0
    #: due monitors a claim locked (dispatched or not)
    claimed: int = 0

    def add(self, other: Effects) -> Effects:
        self.deliveries.extend(other.deliveries)
        self.alerts.extend(other.alerts)
        self.timeouts += other.timeouts
        return self

    def alert(self, event: AlertEvent | None) -> None:
        if event is not None:
            self.alerts.append(event)


@dataclass(frozen=True)
class Context:
    """What a scheduling transaction needs besides the database."""

    me: str
    t: float
    alive: frozenset[str]
    lifetime: int
    result_margin: float


def alive_replicas(db: Session, t: float, timeout: float) -> frozenset[str]:
    """Replicas that refreshed their row within ``timeout``."""
    return frozenset(db.scalars(select(Replica.id).where(Replica.last_seen >= t - timeout)).all())


def candidates(db: Session, checkpoint: str, alive: frozenset[str]) -> list[Candidate]:
    """The connected instances of ``checkpoint`` with their pending-check counts."""
    rows = db.execute(
        select(Instance.name, Instance.replica_id, Instance.healthy, Instance.session_url).where(
            Instance.checkpoint == checkpoint, Instance.session_id.is_not(None), Instance.replica_id.in_(alive)
        )
    ).all()
    if not rows:
        return []
    counts = dict(
        db.execute(
            select(Dispatch.instance, func.count())
            .where(Dispatch.checkpoint == checkpoint, Dispatch.status == "pending")
            .group_by(Dispatch.instance)
        ).all()
    )
    return [
        Candidate(name, replica or "", bool(healthy), int(counts.get(name, 0)), url or "")
        for name, replica, healthy, url in sorted(rows)
    ]


@dataclass(frozen=True)
class Planned:
    """A ``run_check`` to record: ``monitor`` on ``target``."""

    monitor: Monitor
    target: Candidate
    attempt: int
    #: > 0: it replaces a check lost with its instance (the monitor's schedule is left alone)
    moves: int = 0


def new_dispatches(db: Session, ctx: Context, planned: list[Planned]) -> list[Outbound]:
    """Record ``run_check`` instructions: one ``seq`` reservation per instance, one INSERT for all rows.

    Each row keeps its instruction's payload (with its nonce and ``seq``); the replica holding
    the instance's session signs it when it sends it. Checks for an instance that is no longer
    enrolled are left out. The monitor rows are updated here, so every dispatch takes its
    monitor's row lock: a claim by another replica skips the monitor meanwhile.
    """
    wanted: dict[tuple[str, str], int] = {}
    for plan in planned:
        key = (plan.monitor.checkpoint, plan.target.name)
        wanted[key] = wanted.get(key, 0) + 1
    next_seq: dict[tuple[str, str], int] = {}
    for (checkpoint, instance), count in sorted(wanted.items()):  # a fixed order of row locks
        last = take_seq(db, checkpoint, instance, count)
        if last is not None:
            next_seq[(checkpoint, instance)] = last - count + 1
    t = now()
    rows: list[dict[str, Any]] = []
    out: list[Outbound] = []
    for plan in planned:
        monitor, target = plan.monitor, plan.target
        key = (monitor.checkpoint, target.name)
        if key not in next_seq:
            continue
        seq, next_seq[key] = next_seq[key], next_seq[key] + 1
        monitor.last_instance = target.name
        due_at = None
        if plan.attempt == 1 and not plan.moves:
            due_at = monitor.next_due
            due = monitor.next_due + monitor.interval_s
            monitor.next_due = due if due > ctx.t else ctx.t + monitor.interval_s
        check_id = str(uuid.uuid4())
        body = {"check_id": check_id, "monitor_id": monitor.id, "attempt": plan.attempt, "check": monitor.spec}
        payload = instruction_payload(iss=target.iss, aud=f"{monitor.checkpoint}/{target.name}", kind="run_check",
                                      body=body, seq=seq, lifetime=ctx.lifetime)
        rows.append({
            "check_id": check_id, "monitor_id": monitor.id, "checkpoint": monitor.checkpoint,
            "instance": target.name, "attempt": plan.attempt, "dispatched_at": t, "due_at": due_at,
            "deadline": t + monitor.timeout_s + ctx.result_margin, "status": "pending",
            "replica_id": target.replica_id, "sent_at": t if target.replica_id == ctx.me else None,
            "payload_json": json.dumps(payload, separators=(",", ":")), "moves": plan.moves,
        })
        out.append(Outbound(check_id, monitor.checkpoint, target.name, target.replica_id, payload, plan.attempt,
                            dispatched_at=t))
    if rows:
        db.execute(insert(Dispatch), rows)
    return out


def new_dispatch(
    db: Session, ctx: Context, monitor: Monitor, target: Candidate, *, attempt: int, moves: int = 0
) -> Outbound | None:
    """One :func:`new_dispatches`; None when the instance is gone."""
    out = new_dispatches(db, ctx, [Planned(monitor, target, attempt, moves)])
    return out[0] if out else None


def dispatch_isolated(db: Session, ctx: Context, planned: list[Planned]) -> list[Outbound]:
    """:func:`new_dispatches` for all of ``planned`` at once, or one by one when that fails.

    One monitor that cannot be dispatched must not stop the others: after a failure of the
    whole, each is tried in a savepoint of its own, and one that fails again is logged and
    skipped until its next due time.
    """
    if not planned:
        return []
    try:
        with db.begin_nested():
            return new_dispatches(db, ctx, planned)
    except Exception:
        log.exception("dispatching %d checks together failed; dispatching them one by one", len(planned))
    out: list[Outbound] = []
    for plan in planned:
        try:
            with db.begin_nested():
                out.extend(new_dispatches(db, ctx, [plan]))
        except Exception:
            log.exception("monitor %s cannot be dispatched; skipped until its next due time", plan.monitor.id)
            plan.monitor.next_due = ctx.t + plan.monitor.interval_s
    return out


# --- transactions ------------------------------------------------------------------------------


def claim_due(db: Session, ctx: Context, batch: int) -> Effects:
    """Dispatch due monitors (attempt 1) to connected healthy instances; each monitor once.

    The due monitors are locked with ``SKIP LOCKED``: a monitor another replica is dispatching
    (or retrying) right now is left to it. After locking, the "no pending dispatch" condition is
    read again in a new statement, which sees everything committed before the locks were taken.
    """
    busy = select(Dispatch.check_id).where(Dispatch.monitor_id == Monitor.id, Dispatch.status == "pending")
    due = list(
        db.scalars(
            select(Monitor)
            .join(Checkpoint, Checkpoint.name == Monitor.checkpoint)
            .where(Monitor.next_due <= ctx.t, Checkpoint.admin_state != "disabled", ~busy.exists())
            .order_by(Monitor.next_due)
            .limit(batch)
            .with_for_update(skip_locked=True, of=Monitor)
        ).all()
    )
    effects = Effects(claimed=len(due))
    if not due:
        return effects
    still_busy = set(
        db.scalars(
            select(Dispatch.monitor_id).where(
                Dispatch.monitor_id.in_([m.id for m in due]), Dispatch.status == "pending"
            )
        ).all()
    )
    by_checkpoint: dict[str, list[Candidate]] = {}
    planned: list[Planned] = []
    for monitor in due:
        if monitor.id in still_busy:
            continue
        pool = by_checkpoint.get(monitor.checkpoint)
        if pool is None:
            pool = by_checkpoint[monitor.checkpoint] = candidates(db, monitor.checkpoint, ctx.alive)
        target = choose([c for c in pool if c.healthy], avoid=monitor.last_instance)
        if target is None:
            continue  # stays due; the checkpoint's state and alert tell why
        planned.append(Planned(monitor, target, attempt=1))
        pool[pool.index(target)] = replace(target, pending=target.pending + 1)
    effects.deliveries.extend(dispatch_isolated(db, ctx, planned))
    return effects


def outcome(db: Session, ctx: Context, monitor_id: str, instance: str, attempt: int, *, ok: bool,
            error: str | None) -> Effects:
    """Retry, open or close ``monitor_down`` after a result (or a missing one)."""
    effects = Effects()
    monitor = db.get(Monitor, monitor_id, with_for_update=True)
    cp = db.get(Checkpoint, monitor.checkpoint) if monitor is not None else None
    if monitor is None or cp is None:
        return effects
    if ok:
        effects.alert(close_alert(db, MONITOR_DOWN, monitor.id, ctx.t))
        return effects
    if cp.admin_state == "disabled":
        return effects  # no retries and no monitor_down from a checkpoint an admin took out of service
    if attempt < 2:
        target = choose(candidates(db, monitor.checkpoint, ctx.alive), avoid=instance, strict=True)
        if target is None:
            log.warning("monitor %s failed on %s and no instance is connected for attempt 2", monitor.id, instance)
            return effects
        out = new_dispatch(db, ctx, monitor, target, attempt=attempt + 1)
        if out is not None:
            effects.deliveries.append(out)
        return effects
    effects.alert(open_alert(
        db, MONITOR_DOWN, monitor.id,
        f"monitor {monitor.name} failed twice on checkpoint {monitor.checkpoint} (last on {instance}): "
        f"{error or 'error'}",
        ctx.t,
    ))
    return effects


@dataclass
class Received:
    """What became of a result."""

    status: str  # "stored", "duplicate", "refused"
    effects: Effects = field(default_factory=Effects)


def record_result(db: Session, ctx: Context, checkpoint: str, instance: str, incoming: IncomingResult) -> Received:
    """Store a result of a check dispatched to this very instance, once; then retry or alert.

    The dispatch row is locked first, so two deliveries of the same result (say, to two
    replicas after a reconnect) are decided one after the other.
    """
    d = db.get(Dispatch, incoming.check_id, with_for_update=True)
    if d is None or (d.checkpoint, d.instance) != (checkpoint, instance) or d.status == "cancelled":
        return Received("refused")
    if db.get(Result, incoming.id) is not None:
        return Received("duplicate")
    db.add(
        Result(
            id=incoming.id, monitor_id=d.monitor_id, check_id=incoming.check_id, checkpoint=checkpoint,
            instance=instance, attempt=d.attempt, ok=incoming.ok, error=incoming.error,
            duration_ms=incoming.duration_ms, started_at=incoming.started_at,
            phases_json=json.dumps(incoming.phases), details_json=json.dumps(incoming.details),
            received_at=ctx.t,
        )
    )
    received = Received("stored")
    if d.status == "pending":  # a late result (after a timeout or a move) is stored, nothing more
        d.status = "done"
        received.effects = outcome(db, ctx, d.monitor_id, instance, d.attempt, ok=incoming.ok, error=incoming.error)
    return received


def record_results(
    db: Session, ctx: Context, items: list[tuple[str, str, IncomingResult, float]]
) -> list[Received | None]:
    """Store each ``(checkpoint, instance, result, received_at)`` like :func:`record_result`, in one transaction.

    The usual case — results of pending checks — takes a few statements for the whole group
    (:func:`_record_together`). Should that fail, each result is decided in a savepoint of its
    own: one that fails again (logged; None in its place, so it is not acknowledged and its
    agent sends it again) does not undo or stop the others.
    """
    try:
        with db.begin_nested():
            return list(_record_together(db, ctx, items))
    except Exception:
        log.exception("storing %d results together failed; storing them one by one", len(items))
    outcomes: list[Received | None] = []
    for checkpoint, instance, incoming, received_at in items:
        try:
            with db.begin_nested():
                outcomes.append(record_result(db, replace(ctx, t=received_at), checkpoint, instance, incoming))
        except Exception:
            log.exception("result %s of %s/%s could not be stored", incoming.id[:64], checkpoint, instance)
            outcomes.append(None)
    return outcomes


def _record_together(db: Session, ctx: Context, items: list[tuple[str, str, IncomingResult, float]]) -> list[Received]:
    """:func:`record_result` for many results: the rows read, locked and written a statement each.

    Dispatch rows, then monitor rows, are locked in key order (as one result at a time would
    lock them). A success needs nothing more unless its monitor has an open ``monitor_down``
    (or failed earlier in this group); a failure goes through :func:`outcome` (retry or alert).
    """
    check_ids = sorted({incoming.check_id for _cp, _inst, incoming, _t in items})
    dispatches = {
        d.check_id: d
        for d in db.scalars(
            select(Dispatch).where(Dispatch.check_id.in_(check_ids)).order_by(Dispatch.check_id).with_for_update()
        ).all()
    }
    stored = set(db.scalars(select(Result.id).where(Result.id.in_([i.id for _c, _n, i, _t in items]))).all())
    received: list[Received] = []
    rows: list[dict[str, Any]] = []
    decided: list[tuple[Received, Dispatch, IncomingResult, float]] = []
    for checkpoint, instance, incoming, received_at in items:
        d = dispatches.get(incoming.check_id)
        if d is None or (d.checkpoint, d.instance) != (checkpoint, instance) or d.status == "cancelled":
            received.append(Received("refused"))
            continue
        if incoming.id in stored:
            received.append(Received("duplicate"))
            continue
        stored.add(incoming.id)
        rows.append({
            "id": incoming.id, "monitor_id": d.monitor_id, "check_id": incoming.check_id, "checkpoint": checkpoint,
            "instance": instance, "attempt": d.attempt, "ok": incoming.ok, "error": incoming.error,
            "duration_ms": incoming.duration_ms, "started_at": incoming.started_at,
            "phases_json": json.dumps(incoming.phases), "details_json": json.dumps(incoming.details),
            "received_at": received_at,
        })
        result = Received("stored")
        received.append(result)
        if d.status == "pending":  # a late result (after a timeout or a move) is stored, nothing more
            d.status = "done"
            decided.append((result, d, incoming, received_at))
    if rows:
        db.execute(insert(Result), rows)
    monitor_ids = sorted({d.monitor_id for _r, d, _i, _t in decided})
    if monitor_ids:
        db.execute(select(Monitor.id).where(Monitor.id.in_(monitor_ids)).order_by(Monitor.id).with_for_update())
    attention = open_subjects(db, MONITOR_DOWN, monitor_ids)
    for result, d, incoming, received_at in decided:
        if incoming.ok and d.monitor_id not in attention:
            continue  # nothing to close, nothing to retry
        result.effects = outcome(db, replace(ctx, t=received_at), d.monitor_id, d.instance, d.attempt,
                                 ok=incoming.ok, error=incoming.error)
        attention.add(d.monitor_id)  # a later result of the same monitor in this group looks again
    return received


def overdue(db: Session, t: float) -> list[str]:
    """Pending dispatches past their deadline (a bounded batch)."""
    query = (
        select(Dispatch.check_id)
        .where(Dispatch.status == "pending", Dispatch.deadline < t)
        .order_by(Dispatch.deadline)
        .limit(EXPIRE_BATCH)
    )
    return list(db.scalars(query).all())


def expire(db: Session, ctx: Context, check_id: str, error: str) -> Effects:
    """Count a pending dispatch as an error result (stored with id ``<check_id>:timeout``)."""
    d = db.get(Dispatch, check_id, with_for_update=True)
    if d is None or d.status != "pending":
        return Effects()  # answered meanwhile, or handled by another replica
    d.status = "timeout"
    synthetic = f"{check_id}:timeout"
    if db.get(Result, synthetic) is None:
        db.add(
            Result(
                id=synthetic, monitor_id=d.monitor_id, check_id=check_id, checkpoint=d.checkpoint,
                instance=d.instance, attempt=d.attempt, ok=False, error=error, duration_ms=None,
                started_at=d.dispatched_at, phases_json="{}", details_json=json.dumps({"synthetic": True}),
                received_at=ctx.t,
            )
        )
    log.warning("check %s on %s/%s (attempt %d): %s", check_id, d.checkpoint, d.instance, d.attempt, error)
    effects = outcome(db, ctx, d.monitor_id, d.instance, d.attempt, ok=False, error=error)
    effects.timeouts += 1
    return effects


def set_aside(db: Session, check_id: str) -> None:
    """Mark a dispatch that could not be processed as ``error``, so that no tick tries it again."""
    db.execute(update(Dispatch).where(Dispatch.check_id == check_id).values(status="error"))


def reassign(db: Session, ctx: Context, checkpoint: str, instance: str) -> Effects:
    """Send the pending checks of ``instance``, whose session ended, to another instance now.

    Each becomes a new dispatch with the same attempt number on another connected instance
    (healthy first), and the old one is marked ``reassigned``: a result the old instance still
    delivers later (from its outbox, after a reconnect) is stored under its own id without
    further bookkeeping, like a late result. Nothing moves when the instance is connected again
    (it delivers what it ran, and is sent what it missed), when no other instance is connected,
    nor after :data:`MAX_REASSIGNMENTS` moves of the same check; those wait for their deadline.
    """
    effects = Effects()
    cp = db.get(Checkpoint, checkpoint)
    if cp is None or cp.admin_state == "disabled":
        return effects  # taken out of service: its pending checks just run out
    inst = db.scalar(select(Instance).where(Instance.checkpoint == checkpoint, Instance.name == instance))
    if inst is not None and inst.session_id is not None and inst.replica_id in ctx.alive:
        return effects  # it is back already
    lost = list(
        db.scalars(
            select(Dispatch)
            .where(Dispatch.status == "pending", Dispatch.checkpoint == checkpoint, Dispatch.instance == instance)
            .order_by(Dispatch.dispatched_at)
        ).all()
    )
    pool = [c for c in candidates(db, checkpoint, ctx.alive) if c.name != instance]
    for d in lost:
        target = choose(pool, avoid=instance, strict=True)
        if target is None or d.moves >= MAX_REASSIGNMENTS:
            continue
        monitor = db.get(Monitor, d.monitor_id, with_for_update=True)
        moved = rowcount(db.execute(
            update(Dispatch).where(Dispatch.check_id == d.check_id, Dispatch.status == "pending")
            .values(status="reassigned")
        ))
        if monitor is None or not moved:
            continue  # answered, cancelled or moved meanwhile
        out = new_dispatch(db, ctx, monitor, target, attempt=d.attempt, moves=d.moves + 1)
        if out is not None:
            log.info("check %s (monitor %s, attempt %d) lost with %s/%s; sending it to %s/%s",
                     d.check_id, d.monitor_id, d.attempt, checkpoint, instance, checkpoint, target.name)
            effects.deliveries.append(out)
            pool[pool.index(target)] = replace(target, pending=target.pending + 1)
    return effects


def undelivered(db: Session, me: str, t: float) -> list[Outbound]:
    """Instructions other replicas made for instances this replica holds; marked as handed over."""
    rows = list(
        db.scalars(
            select(Dispatch).where(Dispatch.status == "pending", Dispatch.replica_id == me, Dispatch.sent_at.is_(None))
        ).all()
    )
    for d in rows:
        d.sent_at = t
    return [_outbound(d, me) for d in rows]


def pending_for(db: Session, ctx: Context, checkpoint: str, instance: str) -> list[Outbound]:
    """The pending instructions of an instance that just connected here, to send (again).

    An agent runs an instruction once (its replay cache refuses a nonce it has seen), so the
    same envelope is sent again: what it missed — say, its previous replica died between the
    commit and the send — it runs now; what it had, it refuses as ``replayed`` and delivers
    from its outbox. Envelopes close to expiry are left to their deadline.
    """
    rows = list(
        db.scalars(
            select(Dispatch).where(
                Dispatch.status == "pending", Dispatch.checkpoint == checkpoint, Dispatch.instance == instance,
                Dispatch.dispatched_at > ctx.t - ctx.lifetime + RESEND_MARGIN_S,
            )
        ).all()
    )
    for d in rows:
        d.replica_id, d.sent_at = ctx.me, ctx.t
    return [replace(_outbound(d, ctx.me), new=False) for d in rows]


def _outbound(d: Dispatch, replica: str) -> Outbound:
    return Outbound(d.check_id, d.checkpoint, d.instance, replica, stored_payload(d.payload_json), d.attempt,
                    new=False, dispatched_at=d.dispatched_at)


def availability(db: Session, ctx: Context, grace: float) -> Effects:
    """``checkpoint_unavailable`` for checkpoints without a connected instance for ``grace`` seconds.

    Counted from the latest of: the last disconnect of any of its instances, its creation, and
    the start of the oldest replica alive (a control plane that was down knows nothing better).
    """
    effects = Effects()
    if not ctx.alive:
        return effects
    up_since = db.scalar(select(func.min(Replica.started_at)).where(Replica.id.in_(ctx.alive))) or ctx.t
    connected = case(
        (and_(Instance.session_id.is_not(None), Instance.replica_id.in_(ctx.alive)), 1), else_=0
    )
    per_checkpoint = {
        cp: (int(any_connected or 0), last_gone)
        for cp, any_connected, last_gone in db.execute(
            select(Instance.checkpoint, func.max(connected), func.max(Instance.last_disconnected_at))
            .group_by(Instance.checkpoint)
        ).all()
    }
    for name, created_at in db.execute(
        select(Checkpoint.name, Checkpoint.created_at).where(Checkpoint.admin_state != "disabled")
    ).all():
        any_connected, last_gone = per_checkpoint.get(name, (0, None))
        if any_connected:
            continue
        since = max(last_gone or 0.0, created_at, up_since)
        if ctx.t - since < grace:
            continue
        try:
            with db.begin_nested():  # one checkpoint's trouble must not keep the others' alerts back
                effects.alert(open_alert(
                    db, CHECKPOINT_UNAVAILABLE, name,
                    f"no instance of checkpoint {name} has been connected for {round(ctx.t - since)} s", ctx.t,
                ))
        except Exception:
            log.exception("checkpoint_unavailable for %s could not be opened", name)
    return effects


def extend_deadlines(db: Session, not_before: float) -> None:
    """Give pending dispatches until at least ``not_before`` (after the whole control plane was down)."""
    db.execute(
        update(Dispatch).where(Dispatch.status == "pending", Dispatch.deadline < not_before).values(deadline=not_before)
    )


def prune(db: Session, t: float) -> None:
    """Forget finished dispatches older than a day (results are kept; they are the data)."""
    db.execute(
        delete(Dispatch).where(Dispatch.status != "pending", Dispatch.dispatched_at < t - DISPATCH_RETENTION_S)
    )
