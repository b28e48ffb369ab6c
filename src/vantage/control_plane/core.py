"""The control plane's parts wired together: start and stop, the periodic tick, session events.

One process is one *replica*. It registers in the ``replicas`` table and refreshes its row every
tick; a replica whose row goes stale for ``--replica-timeout`` is dead: the first replica that
notices takes its instances over (they count as disconnected, their pending checks move or wait
for the instance to reconnect) and deletes its row. A replica that finds its own row gone was
declared dead while it stalled: it closes its sessions (the agents reconnect) and registers anew.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from vantage.control_plane import scheduler as sched
from vantage.control_plane.alerts import CHECKPOINT_UNAVAILABLE, AlertEvent, Alerts, close_alert, open_counts
from vantage.control_plane.auth import TokenStore
from vantage.control_plane.config import Settings
from vantage.control_plane.db import Instance, Replica, now
from vantage.control_plane.instructions import BATCH_FEATURE, batches, sign_batch, sign_for, sign_payload
from vantage.control_plane.keys import SigningKeys
from vantage.control_plane.metrics import Metrics
from vantage.control_plane.sessions import (
    CLOSE_REPLACED,
    CLOSE_SHUTDOWN,
    CLOSE_STALE,
    HandshakeSlots,
    LiveSession,
    Registry,
    closing_task,
    ensure_open,
)
from vantage.control_plane.store import Store, rowcount

log = logging.getLogger("vantage.control_plane")

PRUNE_EVERY_S = 300.0
#: the whole pass (membership, timeouts, availability, heartbeats, …) runs at most this often;
#: claims of due monitors and deliveries for other replicas run every ``--scheduler-tick``
MAINTENANCE_S = 0.5
#: due monitors claimed per transaction
CLAIM_CHUNK = 50
#: results stored per transaction at most (group commit, :meth:`ControlPlane._store_results`)
RESULT_BATCH = 200
#: results waiting to be stored at most; beyond it the sessions wait before reading more
RESULT_QUEUE_MAX = 2000


@dataclass(frozen=True)
class QueuedResult:
    """A result read from a session, waiting for the next group commit."""

    session: LiveSession
    incoming: sched.IncomingResult
    #: ``time.time()`` when it was read: the result's ``received_at``
    received_at: float
    #: ``time.monotonic()`` when it was read
    read_at: float


@dataclass(frozen=True)
class Opened:
    """What the database said when a session opened."""

    replaced_elsewhere: bool
    resend: list[sched.Outbound]
    alerts: list[AlertEvent]


# --- transactions -------------------------------------------------------------------------------


def _register(db: Session, replica: str, t: float, host: str, timeout: float, sqlite: bool) -> bool:
    """Add this replica's row; True when other replicas are alive (refused on SQLite)."""
    others = list(db.scalars(select(Replica.id).where(Replica.last_seen >= t - timeout, Replica.id != replica)))
    if others and sqlite:
        raise RuntimeError(
            "another control plane is running on this SQLite database (replica "
            f"{others[0]}): SQLite serves one replica; use PostgreSQL for several"
        )
    db.merge(Replica(id=replica, started_at=t, last_seen=t, host=host[:255]))
    return bool(others)


def _beat(db: Session, replica: str, t: float) -> bool:
    """Refresh this replica's row; False when it is gone (declared dead by another replica)."""
    return bool(rowcount(db.execute(update(Replica).where(Replica.id == replica).values(last_seen=t))))


def _leave(db: Session, replica: str) -> None:
    db.execute(delete(Replica).where(Replica.id == replica))


def _reap(db: Session, t: float, timeout: float) -> list[tuple[str, str]]:
    """Take over the instances of dead replicas; their (checkpoint, instance) list."""
    dead = list(
        db.scalars(
            select(Replica).where(Replica.last_seen < t - timeout).with_for_update(skip_locked=True)
        ).all()
    )
    lost: list[tuple[str, str]] = []
    for replica in dead:
        rows = db.execute(
            update(Instance)
            .where(Instance.replica_id == replica.id)
            .values(replica_id=None, session_id=None, last_disconnected_at=t)
            .returning(Instance.checkpoint, Instance.name)
        ).all()
        lost.extend((cp, name) for cp, name in rows)
        log.warning("replica %s (%s) stopped %.0f s ago; its %d instance(s) count as disconnected",
                    replica.id, replica.host, t - replica.last_seen, len(rows))
        db.delete(replica)
    return lost


def _open_session(db: Session, ctx: sched.Context, session: LiveSession) -> Opened:
    inst = db.scalar(
        select(Instance).where(Instance.checkpoint == session.checkpoint, Instance.name == session.instance)
        .with_for_update()
    )
    if inst is None:
        return Opened(False, [], [])
    replaced_elsewhere = inst.session_id is not None and inst.replica_id not in (None, ctx.me)
    inst.replica_id, inst.session_id, inst.session_url = ctx.me, session.session_id, session.control_plane
    inst.last_connected_at, inst.healthy = ctx.t, True
    resend = sched.pending_for(db, ctx, session.checkpoint, session.instance)
    event = close_alert(db, CHECKPOINT_UNAVAILABLE, session.checkpoint, ctx.t)
    return Opened(replaced_elsewhere, resend, [event] if event else [])


def _close_session(db: Session, checkpoint: str, instance: str, session_id: str, t: float) -> bool:
    """Mark the instance disconnected if ``session_id`` is still its live session."""
    return bool(rowcount(
        db.execute(
            update(Instance)
            .where(Instance.checkpoint == checkpoint, Instance.name == instance, Instance.session_id == session_id)
            .values(replica_id=None, session_id=None, last_disconnected_at=t)
        )
    ))


def _close_sessions(db: Session, ids: list[tuple[str, str, str]], t: float) -> None:
    for checkpoint, instance, session_id in ids:
        _close_session(db, checkpoint, instance, session_id, t)


_STORE_HEARTBEAT = (
    update(Instance)
    .where(Instance.checkpoint == bindparam("cp"), Instance.name == bindparam("inst"),
           Instance.session_id == bindparam("sid"))
    .values(last_heartbeat=bindparam("t"), health_json=bindparam("health"), healthy=bindparam("ok"))
)


def _flush_heartbeats(db: Session, beats: list[tuple[str, str, str, float, str, bool]]) -> None:
    """Store heartbeats: one statement executed for all sessions (executemany), in a fixed order."""
    rows = [{"cp": cp, "inst": inst, "sid": sid, "t": t, "health": health, "ok": ok}
            for cp, inst, sid, t, health, ok in sorted(beats)]
    db.connection().execute(_STORE_HEARTBEAT, rows)


def _live_sessions(db: Session, replica: str) -> dict[tuple[str, str], str]:
    """The sessions the database says this replica holds."""
    rows = db.execute(
        select(Instance.checkpoint, Instance.name, Instance.session_id).where(Instance.replica_id == replica)
    ).all()
    return {(cp, name): sid for cp, name, sid in rows if sid is not None}


def _stored_health(db: Session, checkpoint: str, instance: str) -> dict[str, Any]:
    inst = db.scalar(select(Instance).where(Instance.checkpoint == checkpoint, Instance.name == instance))
    return inst.health if inst is not None else {}


class ControlPlane:
    """Store, keys, tokens, alerts, live sessions and the scheduler of one replica."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = Store(settings.db_url, observe=self.metrics.observe_transaction)
        self.alerts = Alerts(self.metrics, settings.webhook_url)
        self.tokens = TokenStore(self.store)
        self.keys = SigningKeys(settings.signing_key_path, self.store)
        self.registry = Registry()
        self.handshakes = HandshakeSlots(settings.max_unauthenticated, settings.max_unauthenticated_per_address)
        self.replica_id = str(uuid.uuid4())
        self.alive: frozenset[str] = frozenset()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._beats: dict[tuple[str, str], LiveSession] = {}
        self._pruned_at = 0.0
        self._results: list[QueuedResult] = []
        self._results_queued = asyncio.Event()
        self._results_drained = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the schema, join the replicas, load keys and the bootstrap token, start ticking."""
        settings = self.settings
        await self.store.create_schema()
        t = now()
        shared = await self.store.run(
            _register, self.replica_id, t, socket.gethostname(), settings.replica_timeout, self.store.is_sqlite
        )
        await self.keys.load(shared=shared)
        if settings.admin_token:
            await self.tokens.install_bootstrap(settings.admin_token)
        if not shared:  # the whole control plane was down: pending checks get time for their results
            await self.store.run(sched.extend_deadlines, t + settings.restart_grace)
        await self.alerts.start()
        await self._refresh_alive()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="vantage-tick")
        self._committer = asyncio.get_running_loop().create_task(self._store_results(), name="vantage-results")
        log.info("replica %s; signing key id %s; database %s", self.replica_id, self.keys.keyid,
                 self.store.db.url.render_as_string(hide_password=True))
        if shared:
            log.info("joined the replicas already running on this database")
        if not settings.public_url:
            log.warning(
                "no --public-url: hellos are checked against each request's own scheme and Host; "
                "set it in production so that a hello relayed through another server is refused"
            )

    async def shutdown(self) -> None:
        """Stop ticking and close every session ("going away": the agents reconnect)."""
        self._stopping = True  # no reassignment of the closing sessions' checks
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._committer is not None:  # results read but not stored are not acknowledged: sent again
            self._committer.cancel()
            await asyncio.gather(self._committer, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        try:  # the health view keeps what the instances said last
            await self._flush_heartbeats()
        except Exception:
            log.exception("storing the last heartbeats failed")
        sessions = self.registry.all()
        for session in sessions:
            self.registry.remove(session)
            session.closed = True
        await self.store.run(_close_sessions, [(s.checkpoint, s.instance, s.session_id) for s in sessions], now())
        await asyncio.gather(
            *(s.close(CLOSE_SHUTDOWN, "control plane shutting down") for s in sessions), return_exceptions=True
        )

    async def cleanup(self) -> None:
        """Flush pending webhook calls, leave the replicas, close the database."""
        await self.alerts.close()
        try:
            await self.store.run(_leave, self.replica_id)
        except Exception as exc:  # noqa: BLE001 - the row then simply goes stale
            log.warning("could not remove this replica's row: %s", exc)
        self.store.close()

    # -- the tick -----------------------------------------------------------------------------

    async def _run(self) -> None:
        """Every tick a dispatch pass; the whole pass every ``max(tick, MAINTENANCE_S)``.

        Checks leave as soon as they are due (within a tick), while the bookkeeping that
        tolerates half a second does not take the database worker every tick.
        """
        period = max(self.settings.scheduler_tick, MAINTENANCE_S)
        maintained = float("-inf")
        while True:
            if time.monotonic() - maintained >= period:
                maintained = time.monotonic()
                await self.tick()
            else:
                await self._steps(self._deliver_undelivered, self._dispatch_due)
            await asyncio.sleep(self.settings.scheduler_tick)

    async def tick(self) -> None:
        """One whole pass. Each step fails on its own: an error is logged and the others go on."""
        await self._steps(self._membership, self._flush_heartbeats, self._expire_stale_sessions, self._sync_sessions,
                          self._deliver_undelivered, self._expire_dispatches, self._check_availability,
                          self._dispatch_due, self._housekeeping)

    @staticmethod
    async def _steps(*steps: Callable[[], Awaitable[None]]) -> None:
        for step in steps:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler step %s failed", step.__name__)

    def context(self) -> sched.Context:
        return sched.Context(
            me=self.replica_id, t=now(), alive=self.alive | {self.replica_id},
            lifetime=self.settings.instruction_lifetime, result_margin=self.settings.result_margin,
        )

    async def _refresh_alive(self) -> None:
        alive = await self.store.run(sched.alive_replicas, now(), self.settings.replica_timeout)
        self.alive = alive | {self.replica_id}

    async def _membership(self) -> None:
        t = now()
        if not await self.store.run(_beat, self.replica_id, t):
            log.error("this replica was declared dead (it stalled for over %g s); closing its sessions and "
                      "joining again", self.settings.replica_timeout)
            for session in self.registry.all():
                self.registry.remove(session)
                closing_task(session, CLOSE_SHUTDOWN, "replica restarting")
            await self.store.run(_register, self.replica_id, t, socket.gethostname(),
                                 self.settings.replica_timeout, self.store.is_sqlite)
        lost = await self.store.run(_reap, t, self.settings.replica_timeout)
        await self._refresh_alive()
        for checkpoint, instance in lost:
            await self._reassign(checkpoint, instance)

    async def _flush_heartbeats(self) -> None:
        beats, self._beats = self._beats, {}
        rows = [
            (s.checkpoint, s.instance, s.session_id, s.last_heartbeat or now(), json.dumps(s.health or {}), s.healthy)
            for s in beats.values() if not s.closed
        ]
        if rows:
            await self.store.run(_flush_heartbeats, rows)

    async def _expire_stale_sessions(self) -> None:
        settings = self.settings
        limit = settings.stale_heartbeats * settings.heartbeat_interval
        t = now()
        for session in self.registry.all():
            last = session.last_heartbeat if session.last_heartbeat is not None else session.connected_at
            if t - last > limit:
                log.warning("%s missed %d heartbeats; closing its session", session.name, settings.stale_heartbeats)
                self.metrics.ws_rejections.labels(reason="stale").inc()
                closing_task(session, CLOSE_STALE, "heartbeats missed")
                await self.session_closed(session)

    async def _sync_sessions(self) -> None:
        """Close local sessions the database no longer gives to this replica.

        Another replica took the instance (a newer session), or the instance was removed or
        re-enrolled through another replica's API.
        """
        if not self.registry:
            return
        asked_at = time.monotonic()
        owned = await self.store.run(_live_sessions, self.replica_id)
        for session in self.registry.all():
            if session.closed or session.stored_at is None or session.stored_at > asked_at:
                continue  # not in the database yet when it was asked
            if owned.get((session.checkpoint, session.instance)) != session.session_id:
                log.info("%s has a newer session elsewhere, or was removed; closing this one", session.name)
                self.registry.remove(session)
                closing_task(session, CLOSE_REPLACED, "replaced by a newer session")

    async def _deliver_undelivered(self) -> None:
        """Instructions other replicas made for this replica's sessions (one indexed query)."""
        await self.deliver(await self.store.run(sched.undelivered, self.replica_id, now()))

    async def _expire_dispatches(self) -> None:
        check_ids = await self.store.run(sched.overdue, now())
        for check_id in check_ids:
            try:
                effects = await self.store.run(sched.expire, self.context(), check_id, "no result in time")
            except Exception:
                log.exception("timing out check %s failed; it is set aside", check_id)
                await self.store.run(sched.set_aside, check_id)
                continue
            self.metrics.check_timeouts.inc(effects.timeouts)
            await self.apply(effects)

    async def _check_availability(self) -> None:
        await self.apply(await self.store.run(sched.availability, self.context(), self.settings.unavailable_grace))

    async def _dispatch_due(self) -> None:
        """Claim due monitors in small transactions, sending each chunk before claiming the next.

        Short transactions keep row locks brief and let the first checks leave while later
        ones are still being signed; at most ``dispatch_batch`` per tick.
        """
        left = self.settings.dispatch_batch
        while left > 0:
            chunk = min(CLAIM_CHUNK, left)
            effects = await self.store.run(sched.claim_due, self.context(), chunk)
            await self.apply(effects)
            left -= chunk
            if effects.claimed < chunk:
                return

    async def _housekeeping(self) -> None:
        self.alerts.set_gauge(await self.store.run(open_counts))
        t = now()
        if t - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = t
            await self.store.run(sched.prune, t)

    # -- carrying out what a transaction decided ------------------------------------------------

    async def apply(self, effects: sched.Effects) -> None:
        self.alerts.publish(effects.alerts)
        await self.deliver(effects.deliveries)

    async def deliver(self, outbound: list[sched.Outbound]) -> None:
        """Send the instructions meant for this replica's sessions, per instance in their order.

        An instance whose latest heartbeat announced ``instruction_batch`` gets its checks of
        this call as one signed batch (or a few, :func:`~.instructions.batches`), the others
        one envelope each. Instructions are signed here, while the session's send lock is held:
        after a key rotation nothing signed by the new key can overtake its ``rotate_key``.
        """
        per_session: dict[tuple[str, str], list[sched.Outbound]] = {}
        for out in outbound:
            if out.new:
                self.metrics.dispatches.labels(attempt=str(out.attempt)).inc()
            if out.replica_id == self.replica_id:  # else its replica picks it up
                per_session.setdefault((out.checkpoint, out.instance), []).append(out)
        if per_session:
            await asyncio.gather(*(self._deliver_to(cp, inst, outs) for (cp, inst), outs in per_session.items()))

    async def _deliver_to(self, checkpoint: str, instance: str, outs: list[sched.Outbound]) -> None:
        session = self.registry.get(checkpoint, instance)
        try:
            if session is None:
                raise ConnectionError(f"{checkpoint}/{instance} is not connected here")
            await self._send_checks(session, outs)
        except ConnectionError as exc:  # it left meanwhile: its checks move (or wait for it)
            log.info("%d check(s) not sent: %s", len(outs), exc)
            self._background_task(self._reassign(checkpoint, instance))
        except Exception:  # a payload that cannot be signed: its checks run out at their deadline
            log.exception("checks %s for %s/%s could not be sent", [o.check_id for o in outs], checkpoint, instance)
        else:
            log.debug("sent %d check(s) to %s/%s", len(outs), checkpoint, instance)

    async def _send_checks(self, session: LiveSession, outs: list[sched.Outbound]) -> None:
        payloads = [out.payload for out in outs]
        async with session.lock:
            ensure_open(session)
            key = self.keys.current
            if len(payloads) > 1 and session.has_feature(BATCH_FEATURE):
                for batch in batches(payloads):
                    if len(batch) == 1:
                        await self._send_frame(session, "instruction", sign_payload(key, batch[0]))
                    else:
                        await self._send_frame(session, "instruction_batch", sign_batch(key, batch))
            else:
                for payload in payloads:
                    await self._send_frame(session, "instruction", sign_payload(key, payload))
        sent = time.time()
        for out in outs:
            if out.new:
                self.metrics.dispatch_send.observe(max(0.0, sent - out.dispatched_at))

    async def _send_frame(self, session: LiveSession, kind: str, envelope: dict[str, Any]) -> None:
        await session.send_locked({"type": kind, "envelope": envelope})
        self.metrics.instruction_frames.labels(kind=kind).inc()

    def _background_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reassign(self, checkpoint: str, instance: str) -> None:
        if self._stopping:
            return
        try:
            effects = await self.store.run(sched.reassign, self.context(), checkpoint, instance)
        except Exception:
            log.exception("reassigning the checks of %s/%s failed", checkpoint, instance)
            return
        self.metrics.reassigned.inc(len(effects.deliveries))
        await self.apply(effects)

    # -- session events (the websocket endpoint calls these) ----------------------------------------

    async def session_opened(self, session: LiveSession) -> None:
        """A hello verified: register the session (replacing an older one of the instance)."""
        old = self.registry.add(session)
        if old is not None:
            log.info("%s: a new session from %s replaces the one from %s", session.name, session.peer, old.peer)
            closing_task(old, CLOSE_REPLACED, "replaced by a new session")
        opened = await self.store.run(_open_session, self.context(), session)
        session.stored_at = time.monotonic()
        self.metrics.connected_instances.set(len(self.registry))
        log.info("%s connected from %s%s", session.name, session.peer,
                 " (it was connected to another replica)" if opened.replaced_elsewhere else "")
        self.alerts.publish(opened.alerts)
        rotation = self.keys.pending_rotation()
        if rotation is not None:  # it may have been offline during the last key rotation
            try:
                await self.send_instruction(session, "rotate_key", rotation.body(), key=rotation.old)
            except Exception as exc:  # noqa: BLE001 - logged; the session goes on
                log.warning("re-announcing the key rotation to %s failed: %s", session.name, exc)
        await self.deliver(opened.resend)

    async def session_closed(self, session: LiveSession) -> None:
        """Unregister ``session`` (no-op when it was replaced or already removed)."""
        if not self.registry.remove(session):
            return
        session.closed = True
        self.metrics.connected_instances.set(len(self.registry))
        await self.store.run(_close_session, session.checkpoint, session.instance, session.session_id, now())
        log.info("%s disconnected", session.name)
        await self._reassign(session.checkpoint, session.instance)  # its pending checks go elsewhere now

    def heartbeat(self, session: LiveSession, health: dict[str, Any]) -> None:
        """Keep a heartbeat; the next whole pass stores it (with every other session's).

        A session's first heartbeat (version, host facts) and one that changes whether the
        instance is healthy are stored at once: scheduling and the health view read them from
        the database.
        """
        first, was_healthy = session.health is None, session.healthy
        session.last_heartbeat = now()
        session.health = health
        self._beats[(session.checkpoint, session.instance)] = session
        if first or session.healthy != was_healthy:
            self._background_task(self._flush_heartbeats())

    async def handle_result(self, session: LiveSession, message: dict[str, Any]) -> None:
        """Queue a result for the next group commit (:meth:`_store_results`), which acks it.

        The session goes on reading meanwhile; only when :data:`RESULT_QUEUE_MAX` results are
        waiting does it wait for the queue to drain (back-pressure on the agents).
        """
        incoming = sched.parse_result(message)
        read_at, received_at = time.monotonic(), now()
        if incoming.id != incoming.check_id:
            # a result is its check's: its id is the check id the control plane chose. Anything
            # else could collide with ids the control plane writes itself (``<check>:timeout``).
            log.warning("%s sent result %r for check %r: the id must be the check id; refused",
                        session.name, incoming.id[:64], incoming.check_id[:64])
            self.metrics.refused_results.labels(reason="id_is_not_the_check_id").inc()
            await session.send({"type": "ack", "id": incoming.id})
            return
        incoming, changed = sched.protect(incoming, await self._data_protection(session))
        if changed:
            log.warning("%s sent data its data protection should have stripped; dropped", session.name)
        while len(self._results) >= RESULT_QUEUE_MAX:
            self._results_drained.clear()
            await self._results_drained.wait()
        self._results.append(QueuedResult(session, incoming, received_at, read_at))
        self._results_queued.set()

    async def _store_results(self) -> None:
        """Group commit: store every queued result in one transaction, then ack each and act.

        Results read while a transaction runs go with the next one, so under load one commit
        covers many results and the database's commit rate, not the result rate, sets the
        pace. The group takes a few statements; should it fail, each result is decided in a
        savepoint of its own (:func:`~.scheduler.record_results`): one that cannot be stored is
        not acknowledged (its agent sends it again) and does not keep the others back.
        """
        while True:
            await self._results_queued.wait()
            self._results_queued.clear()
            while self._results:
                group, self._results = self._results[:RESULT_BATCH], self._results[RESULT_BATCH:]
                self._results_drained.set()
                try:
                    await self._store_group(group)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the task must live on: later results are stored as usual
                    log.exception("storing %d result(s) failed; those not acknowledged are sent again", len(group))

    async def _store_group(self, group: list[QueuedResult]) -> None:
        outcomes = await self.store.run(
            sched.record_results, self.context(),
            [(q.session.checkpoint, q.session.instance, q.incoming, q.received_at) for q in group],
        )
        committed = time.monotonic()
        effects = sched.Effects()
        for queued, received in zip(group, outcomes, strict=True):
            self.metrics.result_commit.observe(committed - queued.read_at)
            if received is not None:
                self._count_result(queued, received)
                effects.add(received.effects)
        try:
            await asyncio.gather(*(self._ack(q) for q, r in zip(group, outcomes, strict=True) if r is not None))
        finally:  # committed: retry or alert even if an ack could not be sent
            await self.apply(effects)

    def _count_result(self, queued: QueuedResult, received: sched.Received) -> None:
        incoming, session = queued.incoming, queued.session
        if received.status == "refused":
            log.warning("%s sent result %s for a check not dispatched to it, or cancelled; refused",
                        session.name, incoming.id[:64])
            self.metrics.refused_results.labels(reason="not_dispatched_to_this_instance").inc()
        elif received.status == "duplicate":
            self.metrics.duplicate_results.inc()
        else:
            self.metrics.results.labels(ok=str(incoming.ok).lower()).inc()

    async def _ack(self, queued: QueuedResult) -> None:
        try:
            ensure_open(queued.session)
            await queued.session.send({"type": "ack", "id": queued.incoming.id})
        except Exception as exc:  # noqa: BLE001 - stored; the agent sends it again and it is acknowledged then
            log.info("ack of %s not sent: %s", queued.incoming.id[:64], exc)

    async def _data_protection(self, session: LiveSession) -> dict[str, Any]:
        if session.health is not None:
            dp = session.health.get("data_protection")
            return dp if isinstance(dp, dict) else {}
        stored = await self.store.run(_stored_health, session.checkpoint, session.instance)
        dp = stored.get("data_protection")
        return dp if isinstance(dp, dict) else {}

    # -- instructions and sessions for the REST API ----------------------------------------------

    async def send_instruction(self, session: LiveSession, kind: str, body: dict[str, Any], *, key: Any = None,
                               locked: bool = False) -> None:
        """Sign an instruction for ``session``'s instance and send it (raises if the socket is gone)."""
        envelope = await self.store.run(
            sign_for, key if key is not None else self.keys.current, iss=session.control_plane,
            checkpoint=session.checkpoint, instance=session.instance, kind=kind, body=body,
            lifetime=self.settings.instruction_lifetime,
        )
        if envelope is None:
            raise ConnectionError(f"{session.name} is no longer enrolled")
        if locked:
            ensure_open(session)
            await session.send_locked({"type": "instruction", "envelope": envelope})
        else:
            ensure_open(session)
            await session.send({"type": "instruction", "envelope": envelope})

    async def stored_health(self, checkpoint: str, instance: str) -> dict[str, Any]:
        return await self.store.run(_stored_health, checkpoint, instance)

    async def disconnect(self, checkpoint: str, instance: str, code: int, reason: str) -> None:
        """Close an instance's live session here, if any (after removal or re-enrollment)."""
        session = self.registry.get(checkpoint, instance)
        if session is not None:
            closing_task(session, code, reason)
            await self.session_closed(session)


__all__ = ["CORE_KEY", "ControlPlane"]

CORE_KEY = web.AppKey("vantage_control_plane", ControlPlane)
