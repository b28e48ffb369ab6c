"""Alerts: at most one open alert per (kind, subject); opening/closing notifies a webhook.

The webhook call runs in a background task with a short timeout: a slow or failing receiver is
logged and counted, never allowed to block the scheduler or the sessions.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from sqlalchemy import func, select

from vantage.control_plane.db import Alert, Database, now
from vantage.control_plane.metrics import Metrics

log = logging.getLogger("vantage.control_plane.alerts")

MONITOR_DOWN = "monitor_down"
CHECKPOINT_UNAVAILABLE = "checkpoint_unavailable"
KINDS = (MONITOR_DOWN, CHECKPOINT_UNAVAILABLE)
WEBHOOK_TIMEOUT_S = 5.0


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "subject": alert.subject,
        "opened_at": alert.opened_at,
        "closed_at": alert.closed_at,
        "message": alert.message,
    }


class Alerts:
    """Opens and closes alerts in the database and notifies the optional webhook."""

    def __init__(self, db: Database, metrics: Metrics, webhook_url: str | None = None) -> None:
        self.db = db
        self.metrics = metrics
        self.webhook_url = webhook_url
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.webhook_url:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S))
        self.refresh_gauge()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=WEBHOOK_TIMEOUT_S)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def open(self, kind: str, subject: str, message: str) -> Alert | None:
        """Open an alert unless one is open for (kind, subject); returns the new alert or None."""
        with self.db.session() as session:
            existing = session.scalar(
                select(Alert).where(Alert.kind == kind, Alert.subject == subject, Alert.closed_at.is_(None))
            )
            if existing is not None:
                return None
            alert = Alert(kind=kind, subject=subject, opened_at=now(), closed_at=None, message=message)
            session.add(alert)
        log.warning("alert opened: %s %s: %s", kind, subject, message)
        self.refresh_gauge()
        self._notify("opened", alert)
        return alert

    def close_alert(self, kind: str, subject: str) -> Alert | None:
        """Close the open alert for (kind, subject), if any; returns it."""
        with self.db.session() as session:
            alert = session.scalar(
                select(Alert).where(Alert.kind == kind, Alert.subject == subject, Alert.closed_at.is_(None))
            )
            if alert is None:
                return None
            alert.closed_at = now()
        log.info("alert closed: %s %s", kind, subject)
        self.refresh_gauge()
        self._notify("closed", alert)
        return alert

    def is_open(self, kind: str, subject: str) -> bool:
        with self.db.session() as session:
            return (
                session.scalar(
                    select(Alert.id).where(
                        Alert.kind == kind, Alert.subject == subject, Alert.closed_at.is_(None)
                    )
                )
                is not None
            )

    def list(self, *, open_only: bool | None, limit: int) -> list[Alert]:
        """Alerts, newest first; ``open_only`` True/False filters, None returns all."""
        query = select(Alert).order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(limit)
        if open_only is True:
            query = query.where(Alert.closed_at.is_(None))
        elif open_only is False:
            query = query.where(Alert.closed_at.is_not(None))
        with self.db.session() as session:
            return list(session.scalars(query).all())

    def refresh_gauge(self) -> None:
        with self.db.session() as session:
            rows = session.execute(
                select(Alert.kind, func.count()).where(Alert.closed_at.is_(None)).group_by(Alert.kind)
            ).all()
            counts: dict[str, int] = dict(rows)
        for kind in set(KINDS) | set(counts):
            self.metrics.open_alerts.labels(kind=kind).set(counts.get(kind, 0))

    def _notify(self, event: str, alert: Alert) -> None:
        if not self.webhook_url or self._http is None:
            return
        task = asyncio.get_running_loop().create_task(self._post({"event": event, "alert": alert_json(alert)}))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, payload: dict[str, Any]) -> None:
        assert self._http is not None and self.webhook_url is not None
        try:
            async with self._http.post(self.webhook_url, json=payload) as response:
                if response.status >= 300:
                    raise RuntimeError(f"HTTP {response.status}")
        except Exception as exc:  # noqa: BLE001 - any failure is logged, never propagated
            self.metrics.webhook_failures.inc()
            log.warning("alert webhook failed (%s %s): %s", payload["event"], payload["alert"]["kind"], exc)
