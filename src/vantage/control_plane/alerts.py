"""Alerts: at most one open alert per (kind, subject); opening/closing notifies a webhook.

Opening and closing happen inside the store transaction that decided them (a result, a
timeout, a missing checkpoint), so that whichever replica decides, the alert is raised once: a
unique index allows one open row per (kind, subject), and only the transaction that wrote the
row reports an :class:`AlertEvent`. The replica that committed it logs it and calls the
webhook, in a background task with a short timeout: a slow or failing receiver is logged and
counted, never allowed to block the scheduler or the sessions.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vantage.control_plane.db import Alert
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


@dataclass(frozen=True)
class AlertEvent:
    """An alert this transaction opened or closed (to log and send once it is committed)."""

    event: str
    alert: dict[str, Any]


# --- in a store transaction -------------------------------------------------------------------


def open_alert(db: Session, kind: str, subject: str, message: str, t: float) -> AlertEvent | None:
    """Open an alert unless one is open for (kind, subject); the event, or None."""
    open_now = select(Alert.id).where(Alert.kind == kind, Alert.subject == subject, Alert.closed_at.is_(None))
    if db.scalar(open_now) is not None:
        return None
    alert = Alert(kind=kind, subject=subject, opened_at=t, closed_at=None, message=message)
    try:
        with db.begin_nested():
            db.add(alert)
    except IntegrityError:  # another replica opened it a moment ago
        return None
    return AlertEvent("opened", alert_json(alert))


def close_alert(db: Session, kind: str, subject: str, t: float) -> AlertEvent | None:
    """Close the open alert for (kind, subject), if any; the event, or None."""
    row = db.execute(
        update(Alert)
        .where(Alert.kind == kind, Alert.subject == subject, Alert.closed_at.is_(None))
        .values(closed_at=t)
        .returning(Alert.id, Alert.kind, Alert.subject, Alert.opened_at, Alert.closed_at, Alert.message)
    ).first()
    if row is None:
        return None
    return AlertEvent("closed", dict(row._mapping))


def is_open(db: Session, kind: str, subject: str) -> bool:
    query = select(Alert.id).where(Alert.kind == kind, Alert.subject == subject, Alert.closed_at.is_(None))
    return db.scalar(query) is not None


def open_subjects(db: Session, kind: str, subjects: list[str]) -> set[str]:
    """Which of ``subjects`` have an open alert of ``kind``."""
    if not subjects:
        return set()
    query = select(Alert.subject).where(Alert.kind == kind, Alert.subject.in_(subjects), Alert.closed_at.is_(None))
    return set(db.scalars(query).all())


def list_alerts(db: Session, *, open_only: bool | None, limit: int) -> list[Alert]:
    """Alerts, newest first; ``open_only`` True/False filters, None returns all."""
    query = select(Alert).order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(limit)
    if open_only is True:
        query = query.where(Alert.closed_at.is_(None))
    elif open_only is False:
        query = query.where(Alert.closed_at.is_not(None))
    return list(db.scalars(query).all())


def open_counts(db: Session) -> dict[str, int]:
    rows = db.execute(select(Alert.kind, func.count()).where(Alert.closed_at.is_(None)).group_by(Alert.kind)).all()
    return {str(kind): int(count) for kind, count in rows}


# --- on the event loop ------------------------------------------------------------------------


class Alerts:
    """Logs committed alert events, counts open alerts, and notifies the optional webhook."""

    def __init__(self, metrics: Metrics, webhook_url: str | None = None) -> None:
        self.metrics = metrics
        self.webhook_url = webhook_url
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.webhook_url:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=WEBHOOK_TIMEOUT_S)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def publish(self, events: list[AlertEvent]) -> None:
        """Log and send events whose transaction has committed."""
        for event in events:
            alert = event.alert
            if event.event == "opened":
                log.warning("alert opened: %s %s: %s", alert["kind"], alert["subject"], alert["message"])
            else:
                log.info("alert closed: %s %s", alert["kind"], alert["subject"])
            self._notify(event)

    def set_gauge(self, counts: dict[str, int]) -> None:
        for kind in set(KINDS) | set(counts):
            self.metrics.open_alerts.labels(kind=kind).set(counts.get(kind, 0))

    def _notify(self, event: AlertEvent) -> None:
        if not self.webhook_url or self._http is None:
            return
        task = asyncio.get_running_loop().create_task(self._post({"event": event.event, "alert": event.alert}))
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
