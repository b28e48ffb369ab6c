"""The control plane's parts wired together, and its start/stop sequence."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from sqlalchemy import select

from vantage.control_plane.alerts import CHECKPOINT_UNAVAILABLE, Alerts
from vantage.control_plane.auth import TokenStore
from vantage.control_plane.config import Settings
from vantage.control_plane.db import Database, Instance, now
from vantage.control_plane.keys import SigningKeys
from vantage.control_plane.metrics import Metrics
from vantage.control_plane.scheduler import Scheduler
from vantage.control_plane.sessions import (
    CLOSE_REPLACED,
    CLOSE_SHUTDOWN,
    HandshakeSlots,
    LiveSession,
    Registry,
    closing_task,
    send_instruction,
)

log = logging.getLogger("vantage.control_plane")


class ControlPlane:
    """Database, keys, tokens, alerts, live sessions and the scheduler of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        self.metrics = Metrics()
        self.alerts = Alerts(self.db, self.metrics, settings.webhook_url)
        self.tokens = TokenStore(self.db)
        self.keys = SigningKeys(settings.signing_key_path, self.db)
        self.registry = Registry(started_at=now())
        self.handshakes = HandshakeSlots(settings.max_unauthenticated, settings.max_unauthenticated_per_address)
        self.scheduler = Scheduler(self)
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Create the schema, load keys and the bootstrap token, start the scheduler."""
        self.db.create_schema()
        self.keys.load()
        if self.settings.admin_token:
            self.tokens.install_bootstrap(self.settings.admin_token)
        self.registry = Registry(started_at=now())
        self.scheduler.extend_deadlines(now() + self.settings.restart_grace)
        await self.alerts.start()
        self.scheduler.start()
        log.info("signing key id %s; database %s", self.keys.keyid, self.db.url.render_as_string(hide_password=True))
        if not self.settings.public_url:
            log.warning(
                "no --public-url: hellos are checked against each request's own scheme and Host; "
                "set it in production so that a hello relayed through another server is refused"
            )

    async def shutdown(self) -> None:
        """Stop scheduling and close every session ("going away": the agents reconnect)."""
        self._stopping = True  # no reassignment of the closing sessions' checks
        await self.scheduler.stop()
        for task in list(self._background):
            task.cancel()
        sessions = self.registry.all()
        for session in sessions:
            self.session_closed(session)
        await asyncio.gather(
            *(s.close(CLOSE_SHUTDOWN, "control plane shutting down") for s in sessions), return_exceptions=True
        )

    async def cleanup(self) -> None:
        """Flush pending webhook calls and close the database."""
        await self.alerts.close()
        self.db.dispose()

    # -- session events -------------------------------------------------------------------------

    async def session_opened(self, session: LiveSession) -> None:
        """A hello verified: register the session (replacing an older one of the instance)."""
        old = self.registry.add(session)
        if old is not None:
            log.info("%s: a new session from %s replaces the one from %s", session.name, session.peer, old.peer)
            closing_task(old, CLOSE_REPLACED, "replaced by a new session")
        with self.db.session() as db:
            inst = self._instance(db, session.checkpoint, session.instance)
            if inst is not None:
                inst.last_connected_at = now()
        self.metrics.connected_instances.set(len(self.registry))
        log.info("%s connected from %s", session.name, session.peer)
        self.alerts.close_alert(CHECKPOINT_UNAVAILABLE, session.checkpoint)
        rotation = self.keys.pending_rotation()
        if rotation is not None:  # it may have been offline during the last key rotation
            try:
                await send_instruction(self, session, "rotate_key", rotation.body(), key=rotation.old)
            except Exception as exc:  # noqa: BLE001 - logged; the session goes on
                log.warning("re-announcing the key rotation to %s failed: %s", session.name, exc)

    def session_closed(self, session: LiveSession) -> None:
        """Unregister ``session`` (no-op when it was replaced or already removed)."""
        if not self.registry.remove(session):
            return
        session.closed = True
        with self.db.session() as db:
            inst = self._instance(db, session.checkpoint, session.instance)
            if inst is not None:
                inst.last_disconnected_at = now()
        self.metrics.connected_instances.set(len(self.registry))
        log.info("%s disconnected", session.name)
        if not self._stopping:  # its pending checks go to another instance now (failover)
            task = asyncio.get_running_loop().create_task(
                self._reassign(session.checkpoint, session.instance), name="reassign"
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _reassign(self, checkpoint: str, instance: str) -> None:
        try:
            await self.scheduler.reassign(checkpoint, instance)
        except Exception:
            log.exception("reassigning the checks of %s/%s failed", checkpoint, instance)

    def heartbeat(self, session: LiveSession, health: dict[str, Any]) -> None:
        """Store a heartbeat's time and health."""
        t = now()
        session.last_heartbeat = t
        session.health = health
        with self.db.session() as db:
            inst = self._instance(db, session.checkpoint, session.instance)
            if inst is not None:
                inst.last_heartbeat = t
                inst.health_json = json.dumps(health)

    def stored_health(self, checkpoint: str, instance: str) -> dict[str, Any]:
        with self.db.session() as db:
            inst = self._instance(db, checkpoint, instance)
            return inst.health if inst is not None else {}

    def disconnect(self, checkpoint: str, instance: str, code: int, reason: str) -> None:
        """Close an instance's live session, if any (after removal or re-enrollment)."""
        session = self.registry.get(checkpoint, instance)
        if session is not None:
            self.session_closed(session)
            closing_task(session, code, reason)

    @staticmethod
    def _instance(db: Any, checkpoint: str, name: str) -> Instance | None:
        result: Instance | None = db.scalar(
            select(Instance).where(Instance.checkpoint == checkpoint, Instance.name == name)
        )
        return result


CORE_KEY = web.AppKey("vantage_control_plane", ControlPlane)
