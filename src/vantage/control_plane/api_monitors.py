"""REST handlers: monitors and their results, alerts, releases."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select

from vantage.checks import CheckSpecError, validate_spec
from vantage.control_plane import validation as v
from vantage.control_plane.alerts import MONITOR_DOWN, alert_json
from vantage.control_plane.api_checkpoints import credential_names
from vantage.control_plane.core import ControlPlane
from vantage.control_plane.db import Checkpoint, Dispatch, Monitor, Release, Result, now
from vantage.control_plane.web_common import core_of, json_body, limit_param, ok, requires
from vantage.protocol import make_release

log = logging.getLogger("vantage.control_plane.api")

MONITOR_FIELDS = {"name", "checkpoint", "interval_s"}
DEFAULT_INTERVAL_S = 60.0
MAX_INTERVAL_S = 7 * 86400.0


def _monitor_json(core: ControlPlane, m: Monitor) -> dict[str, Any]:
    return {
        **m.spec,
        "id": m.id,
        "name": m.name,
        "checkpoint": m.checkpoint,
        "interval_s": m.interval_s,
        "timeout_s": m.timeout_s,
        "created_at": m.created_at,
        "next_due": m.next_due,
        "last_instance": m.last_instance,
        "down": core.alerts.is_open(MONITOR_DOWN, m.id),
    }


@requires("admin")
async def create_monitor(request: web.Request) -> web.Response:
    core = core_of(request)
    body = await json_body(request)
    name = v.req_str(body, "name", max_len=200)
    cp_name = v.check_name(body.get("checkpoint"), "checkpoint")
    interval = v.number(body, "interval_s", default=DEFAULT_INTERVAL_S, minimum=1, maximum=MAX_INTERVAL_S)
    spec_in = {k: val for k, val in body.items() if k not in MONITOR_FIELDS}
    try:
        spec = validate_spec(spec_in)
    except CheckSpecError as exc:
        raise v.invalid(exc.field, exc.message) from None
    t = now()
    with core.db.session() as db:
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
            id=str(uuid.uuid4()), name=name, checkpoint=cp_name, spec_json=json.dumps(spec),
            interval_s=interval, timeout_s=float(spec["timeout_s"]), created_at=t, next_due=t, last_instance=None,
        )
        db.add(monitor)
    log.info("monitor %s (%s) created on %s", monitor.id, name, cp_name)
    return ok(_monitor_json(core, monitor), 201)


@requires("read")
async def list_monitors(request: web.Request) -> web.Response:
    core = core_of(request)
    query = select(Monitor).order_by(Monitor.created_at)
    if "checkpoint" in request.query:
        query = query.where(Monitor.checkpoint == v.check_name(request.query["checkpoint"], "checkpoint"))
    with core.db.session() as db:
        monitors = list(db.scalars(query).all())
    return ok({"monitors": [_monitor_json(core, m) for m in monitors]})


def _load_monitor(db: Any, monitor_id: str) -> Monitor:
    monitor = db.get(Monitor, monitor_id) if len(monitor_id) <= 36 else None
    if monitor is None:
        raise v.ApiError(404, "unknown monitor", "id")
    assert isinstance(monitor, Monitor)
    return monitor


@requires("read")
async def get_monitor(request: web.Request) -> web.Response:
    core = core_of(request)
    with core.db.session() as db:
        monitor = _load_monitor(db, request.match_info["id"])
    return ok(_monitor_json(core, monitor))


@requires("admin")
async def delete_monitor(request: web.Request) -> web.Response:
    core = core_of(request)
    with core.db.session() as db:
        monitor = _load_monitor(db, request.match_info["id"])
        db.delete(monitor)
        db.execute(delete(Result).where(Result.monitor_id == monitor.id))
        cancelled = list(
            db.scalars(select(Dispatch).where(Dispatch.monitor_id == monitor.id, Dispatch.status == "pending"))
        )
        for d in cancelled:
            d.status = "cancelled"
    for d in cancelled:
        core.scheduler.release_slot(d.checkpoint, d.instance)
    core.alerts.close_alert(MONITOR_DOWN, monitor.id)
    log.info("monitor %s (%s) deleted", monitor.id, monitor.name)
    return ok({"deleted": True, "id": monitor.id})


def _result_json(r: Result) -> dict[str, Any]:
    return {
        "id": r.id,
        "check_id": r.check_id,
        "instance": r.instance,
        "attempt": r.attempt,
        "ok": r.ok,
        "error": r.error,
        "duration_ms": r.duration_ms,
        "started_at": r.started_at,
        "received_at": r.received_at,
        "phases": json.loads(r.phases_json or "{}"),
        "details": json.loads(r.details_json or "{}"),
    }


@requires("read")
async def monitor_results(request: web.Request) -> web.Response:
    core = core_of(request)
    limit = limit_param(request, 50)
    with core.db.session() as db:
        monitor = _load_monitor(db, request.match_info["id"])
        rows = db.scalars(
            select(Result)
            .where(Result.monitor_id == monitor.id)
            .order_by(Result.received_at.desc(), Result.id)
            .limit(limit)
        ).all()
        return ok({"results": [_result_json(r) for r in rows]})


# --- alerts and releases -------------------------------------------------------------------------


@requires("read")
async def list_alerts(request: web.Request) -> web.Response:
    raw = request.query.get("open")
    open_only: bool | None
    if raw is None:
        open_only = None
    elif raw.lower() in ("true", "1", "yes"):
        open_only = True
    elif raw.lower() in ("false", "0", "no"):
        open_only = False
    else:
        raise v.invalid("open", "open must be true or false")
    alerts = core_of(request).alerts.list(open_only=open_only, limit=limit_param(request, 100))
    return ok({"alerts": [alert_json(a) for a in alerts]})


def _release_fields(body: dict[str, Any]) -> tuple[str, str, str]:
    v.check_known_fields(body, {"image", "digest", "version"})
    image = v.req_str(body, "image", max_len=512)
    if not v.IMAGE_RE.fullmatch(image):
        raise v.invalid("image", "image must be a repository reference without whitespace or digest")
    digest = v.check_rule("digest", v.req_str(body, "digest", max_len=71), "digest")
    version = v.check_rule("version", v.req_str(body, "version", max_len=64), "version")
    return image, digest, version


@requires("admin")
async def put_release(request: web.Request) -> web.Response:
    core = core_of(request)
    channel = v.check_rule("channel", request.match_info["channel"], "channel")
    image, digest, version = _release_fields(await json_body(request))
    try:  # the same checks the signer applies; a failure here is a 422, not a 500
        make_release(core.keys.current, channel=channel, version=version, image=image, digest=digest)
    except ValueError as exc:
        raise v.invalid("image", str(exc)) from None
    with core.db.session() as db:
        row = db.get(Release, channel)
        created = row is None
        previous = None if row is None else row.version
        changed = created or (row is not None and (row.image, row.digest, row.version) != (image, digest, version))
        if row is None:
            db.add(Release(channel=channel, image=image, digest=digest, version=version, updated_at=now()))
        elif changed:
            row.image, row.digest, row.version, row.updated_at = image, digest, version, now()
    if changed:
        log.info("release %s published on channel %s (%s@%s)", version, channel, image, digest)
    return ok(
        {"channel": channel, "image": image, "digest": digest, "version": version,
         "previous_version": previous, "changed": changed},
        201 if created else 200,
    )


@requires("read")
async def get_release(request: web.Request) -> web.Response:
    core = core_of(request)
    channel = v.check_rule("channel", request.match_info["channel"], "channel")
    with core.db.session() as db:
        row = db.get(Release, channel)
    if row is None:
        raise v.ApiError(404, f"nothing published on channel {channel!r}", "channel")
    envelope = make_release(
        core.keys.current, channel=channel, version=row.version, image=row.image, digest=row.digest
    )
    return ok(envelope)
