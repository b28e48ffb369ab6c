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
from vantage.control_plane.instructions import sign_for
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
    send_envelope,
)
from vantage.control_plane.store import Store, rowcount

log = logging.getLogger("vantage.control_plane")

PRUNE_EVERY_S = 300.0
#: due monitors claimed per transaction
CLAIM_CHUNK = 50


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
        self.store = Store(settings.db_url)
        self.metrics = Metrics()
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
        for task in list(self._background):
            task.cancel()
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
        while True:
            await self.tick()
            await asyncio.sleep(self.settings.scheduler_tick)

    async def tick(self) -> None:
        """One pass. Each step fails on its own: an error is logged and the others go on."""
        for step in (self._membership, self._flush_heartbeats, self._expire_stale_sessions, self._sync_sessions,
                     self._deliver_undelivered, self._expire_dispatches, self._check_availability,
                     self._dispatch_due, self._housekeeping):
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler step %s failed", step.__name__)

    def context(self) -> sched.Context:
        return sched.Context(
            me=self.replica_id, t=now(), alive=self.alive | {self.replica_id}, key=self.keys.current,
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
        """Send the instructions meant for this replica's sessions."""
        for out in outbound:
            if out.new:
                self.metrics.dispatches.labels(attempt=str(out.attempt)).inc()
            if out.replica_id != self.replica_id:
                continue  # its replica picks it up
            session = self.registry.get(out.checkpoint, out.instance)
            try:
                if session is None:
                    raise ConnectionError(f"{out.checkpoint}/{out.instance} is not connected here")
                await send_envelope(session, out.envelope)
            except ConnectionError as exc:  # it left meanwhile: its checks move (or wait for it)
                log.info("check %s not sent: %s", out.check_id, exc)
                self._background_task(self._reassign(out.checkpoint, out.instance))
            else:
                log.debug("sent check %s (attempt %d) to %s/%s", out.check_id, out.attempt, out.checkpoint,
                          out.instance)

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
        """Keep a heartbeat; the next tick stores it (with every other session's).

        A heartbeat that changes whether the instance is healthy is stored at once: scheduling
        reads it from the database.
        """
        was_healthy = session.healthy
        session.last_heartbeat = now()
        session.health = health
        self._beats[(session.checkpoint, session.instance)] = session
        if session.healthy != was_healthy:
            self._background_task(self._flush_heartbeats())

    async def handle_result(self, session: LiveSession, message: dict[str, Any]) -> None:
        """Store a result once (dedupe by id), ack it after the commit, then retry or alert."""
        incoming = sched.parse_result(message)
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
        received = await self.store.run(sched.record_result, self.context(), session.checkpoint, session.instance,
                                        incoming)
        if received.status == "refused":
            log.warning("%s sent result %s for a check not dispatched to it, or cancelled; refused",
                        session.name, incoming.id[:64])
            self.metrics.refused_results.labels(reason="not_dispatched_to_this_instance").inc()
        elif received.status == "duplicate":
            self.metrics.duplicate_results.inc()
        else:
            self.metrics.results.labels(ok=str(incoming.ok).lower()).inc()
        try:
            await session.send({"type": "ack", "id": incoming.id})
        finally:  # the result is committed: retry or alert even if the ack can no longer be sent
            await self.apply(received.effects)

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
            if session.closed or session.ws.closed:
                raise ConnectionError(f"{session.name} is disconnected")
            await session.send_locked({"type": "instruction", "envelope": envelope})
        else:
            await send_envelope(session, envelope)

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
