"""REST operations: monitors and their results, alerts, releases."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from vantage.checks import CheckSpecError, validate_spec
from vantage.control_plane import validation as v
from vantage.control_plane.alerts import (
    MONITOR_DOWN,
    AlertEvent,
    alert_json,
    close_alert,
    list_alerts,
    open_subjects,
)
from vantage.control_plane.api_checkpoints import credential_names
from vantage.control_plane.db import Checkpoint, Dispatch, Monitor, Release, Result, now
from vantage.control_plane.openapi import CHECK_SPEC
from vantage.control_plane.schema import Anything, Arr, Bool, Nullable, Num, Obj, Str
from vantage.control_plane.web_common import LIMIT, Args, IntQuery, core_of, endpoint, limit_of, ok
from vantage.protocol import make_release

log = logging.getLogger("vantage.control_plane.api")

DEFAULT_INTERVAL_S = 60.0
MAX_INTERVAL_S = 7 * 86400.0
TIME = Num(description="unix seconds")
NAME = Str(rule="name")

MONITOR_BODY = Obj(
    {"name": Str(max_len=200, nonblank=True), "checkpoint": NAME,
     "interval_s": Num(minimum=1, maximum=MAX_INTERVAL_S, description="seconds between runs (default 60)")},
    required=("name", "checkpoint", "type"), extra=CHECK_SPEC, name="NewMonitor",
)
MONITOR_FIELDS = {
    "id": Str(max_len=36), "name": Str(max_len=200), "checkpoint": NAME, "interval_s": Num(), "timeout_s": Num(),
    "created_at": TIME, "next_due": TIME, "last_instance": Nullable(Str()), "down": Bool(), "type": Str(),
    "target": Anything(),
}
MONITOR = Obj(MONITOR_FIELDS, required=tuple(MONITOR_FIELDS), extra=Anything(), name="Monitor",
              description="the monitor, with its check spec's fields alongside")
RESULT_FIELDS = {
    "id": Str(max_len=200), "check_id": Str(max_len=128), "instance": NAME, "attempt": Num(integer=True),
    "ok": Bool(), "error": Nullable(Str()), "duration_ms": Nullable(Num()), "started_at": Nullable(TIME),
    "received_at": TIME, "phases": Anything("object"), "details": Anything("object"),
}
RESULTS = Obj({"results": Arr(Obj(RESULT_FIELDS, required=tuple(RESULT_FIELDS)))}, required=("results",),
              name="Results")
ALERT_FIELDS = {"id": Num(integer=True), "kind": Str(enum=("monitor_down", "checkpoint_unavailable")),
                "subject": Str(max_len=200), "opened_at": TIME, "closed_at": Nullable(TIME), "message": Str()}
ALERTS = Obj({"alerts": Arr(Obj(ALERT_FIELDS, required=tuple(ALERT_FIELDS)))}, required=("alerts",), name="Alerts")
RELEASE_BODY = Obj(
    {"image": Str(max_len=512, description="repository reference without whitespace or @digest"),
     "digest": Str(rule="digest"), "version": Str(rule="version")},
    required=("image", "digest", "version"), name="NewRelease",
)
PUBLISHED_FIELDS = {"channel": Str(rule="channel"), "image": Str(max_len=512), "digest": Str(rule="digest"),
                    "version": Str(rule="version"), "previous_version": Nullable(Str()), "changed": Bool()}
PUBLISHED = Obj(PUBLISHED_FIELDS, required=tuple(PUBLISHED_FIELDS), name="Published")
ENVELOPE = Obj(
    {"payloadType": Str(), "payload": Str(max_len=2_000_000),
     "signatures": Arr(Obj({"keyid": Str(), "sig": Str()}, required=("keyid", "sig")))},
    required=("payloadType", "payload", "signatures"), name="Envelope",
    description="the release manifest, signed (docs/protocol.md)",
)
OPEN_QUERY = Str(enum=("true", "false", "1", "0", "yes", "no"), description="only open (true) or closed (false) alerts")


def monitor_json(m: Monitor, down: bool) -> dict[str, Any]:
    return {
        **m.spec, "id": m.id, "name": m.name, "checkpoint": m.checkpoint, "interval_s": m.interval_s,
        "timeout_s": m.timeout_s, "created_at": m.created_at, "next_due": m.next_due,
        "last_instance": m.last_instance, "down": down,
    }


# --- in a store transaction -----------------------------------------------------------------------


def _create(db: Session, name: str, cp_name: str, interval: float, spec: dict[str, Any], t: float) -> dict[str, Any]:
    if db.get(Checkpoint, cp_name) is None:
        raise v.invalid("checkpoint", f"unknown checkpoint {cp_name!r}")
    credential = spec.get("credential")
    if credential is not None:
        declared = credential_names(db, cp_name)
        if credential not in declared:
            raise v.invalid(
                "credential",
                f"checkpoint {cp_name!r} has no credential {credential!r} "
                f"(declared: {', '.join(declared) or 'none'}); add it to the checkpoint's "
                "checkpoint_credentials and redeploy, which declares the names here",
            )
    monitor = Monitor(
        id=str(uuid.uuid4()), name=name, checkpoint=cp_name, spec_json=json.dumps(spec, allow_nan=False),
        interval_s=interval, timeout_s=float(spec["timeout_s"]), created_at=t, next_due=t, last_instance=None,
    )
    db.add(monitor)
    return monitor_json(monitor, False)


def _list(db: Session, checkpoint: str | None) -> list[dict[str, Any]]:
    query = select(Monitor).order_by(Monitor.created_at)
    if checkpoint is not None:
        query = query.where(Monitor.checkpoint == checkpoint)
    monitors = list(db.scalars(query).all())
    down = open_subjects(db, MONITOR_DOWN, [m.id for m in monitors])
    return [monitor_json(m, m.id in down) for m in monitors]


def _load(db: Session, monitor_id: str) -> Monitor:
    monitor = db.get(Monitor, monitor_id) if len(monitor_id) <= 36 else None
    if monitor is None:
        raise v.ApiError(404, "unknown monitor", "id")
    assert isinstance(monitor, Monitor)
    return monitor


def _get(db: Session, monitor_id: str) -> dict[str, Any]:
    monitor = _load(db, monitor_id)
    return monitor_json(monitor, bool(open_subjects(db, MONITOR_DOWN, [monitor.id])))


def _delete(db: Session, monitor_id: str, t: float) -> tuple[str, AlertEvent | None]:
    monitor = _load(db, monitor_id)
    db.delete(monitor)
    db.execute(delete(Result).where(Result.monitor_id == monitor.id))
    db.execute(update(Dispatch).where(Dispatch.monitor_id == monitor.id, Dispatch.status == "pending")
               .values(status="cancelled"))
    return monitor.name, close_alert(db, MONITOR_DOWN, monitor.id, t)


def _results(db: Session, monitor_id: str, limit: int) -> list[dict[str, Any]]:
    monitor = _load(db, monitor_id)
    rows = db.scalars(
        select(Result).where(Result.monitor_id == monitor.id).order_by(Result.received_at.desc(), Result.id)
        .limit(limit)
    ).all()
    return [
        {"id": r.id, "check_id": r.check_id, "instance": r.instance, "attempt": r.attempt, "ok": r.ok,
         "error": r.error, "duration_ms": r.duration_ms, "started_at": r.started_at, "received_at": r.received_at,
         "phases": json.loads(r.phases_json or "{}"), "details": json.loads(r.details_json or "{}")}
        for r in rows
    ]


def _alerts(db: Session, open_only: bool | None, limit: int) -> list[dict[str, Any]]:
    return [alert_json(a) for a in list_alerts(db, open_only=open_only, limit=limit)]


def _publish(db: Session, channel: str, image: str, digest: str, version: str, t: float) -> tuple[bool, str | None, bool]:
    row = db.get(Release, channel, with_for_update=True)
    if row is None:
        db.add(Release(channel=channel, image=image, digest=digest, version=version, updated_at=t))
        return True, None, True
    previous = row.version
    changed = (row.image, row.digest, row.version) != (image, digest, version)
    if changed:
        row.image, row.digest, row.version, row.updated_at = image, digest, version, t
    return False, previous, changed


def _release(db: Session, channel: str) -> Release | None:
    return db.get(Release, channel)


# --- operations -----------------------------------------------------------------------------------


@endpoint("POST", "/api/v1/monitors", "Create a monitor: a check spec run on a checkpoint every interval_s",
          permission="admin", body=MONITOR_BODY, responses={201: MONITOR}, tag="monitors")
async def create_monitor(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    body = args.body
    interval = float(body.get("interval_s", DEFAULT_INTERVAL_S))
    spec_in = {k: val for k, val in body.items() if k not in MONITOR_BODY.fields}
    try:
        spec = validate_spec(spec_in)
    except CheckSpecError as exc:
        raise v.invalid(exc.field, exc.message) from None
    answer = await core.store.run(_create, body["name"], body["checkpoint"], interval, spec, now())
    log.info("monitor %s (%s) created on %s", answer["id"], answer["name"], answer["checkpoint"])
    return ok(answer, 201)


@endpoint("GET", "/api/v1/monitors", "All monitors, or those of one checkpoint", permission="read",
          query={"checkpoint": NAME}, responses={200: Obj({"monitors": Arr(MONITOR)}, required=("monitors",))},
          tag="monitors")
async def list_monitors(request: web.Request, args: Args) -> web.Response:
    return ok({"monitors": await core_of(request).store.run(_list, args.query.get("checkpoint"))})


@endpoint("GET", "/api/v1/monitors/{id}", "A monitor", permission="read", responses={200: MONITOR}, tag="monitors")
async def get_monitor(request: web.Request, args: Args) -> web.Response:
    return ok(await core_of(request).store.run(_get, args.path["id"]))


@endpoint("DELETE", "/api/v1/monitors/{id}", "Delete a monitor: its pending check is cancelled, results dropped",
          permission="admin", responses={200: Obj({"deleted": Bool(), "id": Str()}, required=("deleted", "id"))},
          tag="monitors")
async def delete_monitor(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    monitor_id = args.path["id"]
    name, event = await core.store.run(_delete, monitor_id, now())
    core.alerts.publish([event] if event else [])
    log.info("monitor %s (%s) deleted", monitor_id, name)
    return ok({"deleted": True, "id": monitor_id})


@endpoint("GET", "/api/v1/monitors/{id}/results", "A monitor's results, newest first", permission="read",
          query={"limit": IntQuery()}, responses={200: RESULTS}, tag="monitors")
async def monitor_results(request: web.Request, args: Args) -> web.Response:
    return ok({"results": await core_of(request).store.run(_results, args.path["id"], limit_of(args, 50))})


@endpoint("GET", "/api/v1/alerts", "Alerts, newest first", permission="read",
          query={"open": OPEN_QUERY, "limit": IntQuery(LIMIT)}, responses={200: ALERTS}, tag="alerts")
async def list_alerts_view(request: web.Request, args: Args) -> web.Response:
    raw = args.query.get("open")
    open_only = None if raw is None else raw in ("true", "1", "yes")
    return ok({"alerts": await core_of(request).store.run(_alerts, open_only, limit_of(args, 100))})


@endpoint("PUT", "/api/v1/releases/{channel}", "Publish a release on a channel", permission="admin",
          body=RELEASE_BODY, responses={200: PUBLISHED, 201: PUBLISHED}, tag="releases")
async def put_release(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    channel = args.path["channel"]
    image, digest, version = args.body["image"], args.body["digest"], args.body["version"]
    if not v.IMAGE_RE.fullmatch(image):
        raise v.invalid("image", "image must be a repository reference without whitespace or digest")
    try:  # the same checks the signer applies; a failure here is a 422, not a 500
        make_release(core.keys.current, channel=channel, version=version, image=image, digest=digest)
    except ValueError as exc:
        raise v.invalid("image", str(exc)) from None
    created, previous, changed = await core.store.run(_publish, channel, image, digest, version, now())
    if changed:
        log.info("release %s published on channel %s (%s@%s)", version, channel, image, digest)
    return ok({"channel": channel, "image": image, "digest": digest, "version": version,
               "previous_version": previous, "changed": changed}, 201 if created else 200)


@endpoint("GET", "/api/v1/releases/{channel}", "The signed release manifest of a channel", permission="read",
          responses={200: ENVELOPE}, tag="releases")
async def get_release(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    channel = args.path["channel"]
    row = await core.store.run(_release, channel)
    if row is None:
        raise v.ApiError(404, f"nothing published on channel {channel!r}", "channel")
    return ok(make_release(core.keys.current, channel=channel, version=row.version, image=row.image,
                           digest=row.digest))
