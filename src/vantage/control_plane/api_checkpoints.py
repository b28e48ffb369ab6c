"""REST handlers: checkpoints, their state and health, instance enrollment."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from sqlalchemy import select

from vantage.control_plane import validation as v
from vantage.control_plane.alerts import CHECKPOINT_UNAVAILABLE
from vantage.control_plane.core import ControlPlane
from vantage.control_plane.db import Checkpoint, CheckpointCredential, Instance, now
from vantage.control_plane.health import LiveView, checkpoint_health, checkpoint_state
from vantage.control_plane.sessions import CLOSE_REMOVED
from vantage.control_plane.web_common import core_of, json_body, name_param, ok, requires
from vantage.protocol import key_id, public_key_from_b64

log = logging.getLogger("vantage.control_plane.api")


def live_views(core: ControlPlane, cp: str) -> dict[str, LiveView]:
    return {s.instance: s.view for s in core.registry.for_checkpoint(cp)}


def credential_names(db: Any, checkpoint: str) -> list[str]:
    """The credential names ``checkpoint`` declared (sorted; the values never reach the control plane)."""
    query = select(CheckpointCredential.name).where(CheckpointCredential.checkpoint == checkpoint)
    return sorted(db.scalars(query).all())


def _checkpoint_json(
    core: ControlPlane, cp: Checkpoint, instances: list[Instance], credentials: list[str]
) -> dict[str, Any]:
    lives = live_views(core, cp.name)
    return {
        "name": cp.name,
        "description": cp.description,
        "labels": cp.labels,
        "credentials": credentials,
        "state": checkpoint_state(cp, [lives.get(i.name) for i in instances]),
        "admin_state": cp.admin_state,
        "disabled_reason": cp.disabled_reason,
        "created_at": cp.created_at,
        "updated_at": cp.updated_at,
        "instances": [
            {
                "name": i.name,
                "public_key": i.public_key,
                "keyid": i.keyid,
                "enrolled_at": i.enrolled_at,
                "connected": i.name in lives,
                "last_heartbeat": i.last_heartbeat,
            }
            for i in instances
        ],
    }


def load_checkpoint(db: Any, name: str) -> tuple[Checkpoint, list[Instance]]:
    cp = db.get(Checkpoint, name)
    if cp is None:
        raise v.ApiError(404, f"unknown checkpoint {name!r}", "checkpoint")
    instances = list(db.scalars(select(Instance).where(Instance.checkpoint == name).order_by(Instance.name)).all())
    return cp, instances


@requires("read")
async def list_checkpoints(request: web.Request) -> web.Response:
    core = core_of(request)
    with core.db.session() as db:
        cps = list(db.scalars(select(Checkpoint).order_by(Checkpoint.name)).all())
        out = [
            _checkpoint_json(core, *load_checkpoint(db, cp.name), credential_names(db, cp.name)) for cp in cps
        ]
    return ok({"checkpoints": out})


@requires("enroll")
async def put_checkpoint(request: web.Request) -> web.Response:
    """Create or update a checkpoint; fields absent from the body are left as they are."""
    core = core_of(request)
    name = name_param(request, "cp", "checkpoint")
    body = await json_body(request, empty_ok=True)
    v.check_known_fields(body, {"description", "labels", "credentials"})
    description = v.opt_str(body, "description", max_len=1000) if "description" in body else None
    labels = v.labels(body) if "labels" in body else None
    credentials = v.credential_names(body) if "credentials" in body else None
    t = now()
    with core.db.session() as db:
        cp = db.get(Checkpoint, name)
        created = cp is None
        if cp is None:
            cp = Checkpoint(
                name=name, description=description or "", labels_json=json.dumps(labels or {}),
                admin_state="active", disabled_reason=None, created_at=t, updated_at=t,
            )
            db.add(cp)
            changed = True
        else:
            changed = False
            if description is not None and description != cp.description:
                cp.description, changed = description, True
            if labels is not None and labels != cp.labels:
                cp.labels_json, changed = json.dumps(labels), True
        if credentials is not None and credentials != credential_names(db, name):
            db.flush()
            declared = select(CheckpointCredential).where(CheckpointCredential.checkpoint == name)
            for old in list(db.scalars(declared)):
                db.delete(old)
            db.flush()
            db.add_all(CheckpointCredential(checkpoint=name, name=c) for c in credentials)
            cp.updated_at, changed = t, True
        elif changed:
            cp.updated_at = t
        db.flush()
        answer = _checkpoint_json(core, *load_checkpoint(db, name), credential_names(db, name))
    if created:
        log.info("checkpoint %s created", name)
    return ok({**answer, "changed": changed}, 201 if created else 200)


@requires("read")
async def get_checkpoint(request: web.Request) -> web.Response:
    core = core_of(request)
    name = name_param(request, "cp", "checkpoint")
    with core.db.session() as db:
        return ok(_checkpoint_json(core, *load_checkpoint(db, name), credential_names(db, name)))


@requires("admin")
async def set_checkpoint_state(request: web.Request) -> web.Response:
    core = core_of(request)
    name = name_param(request, "cp", "checkpoint")
    body = await json_body(request)
    v.check_known_fields(body, {"state", "reason"})
    state = body.get("state")
    if state not in ("active", "disabled"):
        raise v.invalid("state", "state must be active or disabled")
    reason = v.opt_str(body, "reason", max_len=1000).strip()
    if state == "disabled" and not reason:
        raise v.invalid("reason", "a reason is required to disable a checkpoint")
    with core.db.session() as db:
        cp, _ = load_checkpoint(db, name)
        new_reason = reason if state == "disabled" else None
        changed = (cp.admin_state, cp.disabled_reason) != (state, new_reason)
        cp.admin_state, cp.disabled_reason = state, new_reason
        if changed:
            cp.updated_at = now()
        db.flush()
        answer = _checkpoint_json(core, *load_checkpoint(db, name), credential_names(db, name))
    if changed:
        log.info("checkpoint %s set %s%s", name, state, f" ({reason})" if new_reason else "")
    if state == "disabled":
        core.alerts.close_alert(CHECKPOINT_UNAVAILABLE, name)
    return ok({**answer, "changed": changed})


@requires("read")
async def checkpoint_health_view(request: web.Request) -> web.Response:
    core = core_of(request)
    name = name_param(request, "cp", "checkpoint")
    with core.db.session() as db:
        cp, instances = load_checkpoint(db, name)
    return ok(checkpoint_health(cp, instances, live_views(core, name), now()))


def _instance_json(inst: Instance, changed: bool) -> dict[str, Any]:
    return {
        "checkpoint": inst.checkpoint,
        "instance": inst.name,
        "public_key": inst.public_key,
        "keyid": inst.keyid,
        "enrolled_at": inst.enrolled_at,
        "changed": changed,
    }


@requires("enroll")
async def put_instance(request: web.Request) -> web.Response:
    """Enroll: 201 new, 200 same key (unchanged), 409 another key unless ``replace``."""
    core = core_of(request)
    cp_name = name_param(request, "cp", "checkpoint")
    inst_name = name_param(request, "inst", "instance")
    body = await json_body(request)
    v.check_known_fields(body, {"public_key", "replace"})
    public_key = body.get("public_key")
    if not isinstance(public_key, str):
        raise v.invalid("public_key", "public_key (base64 of the raw 32-byte Ed25519 key) is required")
    try:
        public_key_from_b64(public_key)
    except ValueError as exc:
        raise v.invalid("public_key", f"public_key: {exc}") from None
    replace = v.opt_bool(body, "replace")
    t = now()
    with core.db.session() as db:
        load_checkpoint(db, cp_name)
        inst = db.scalar(select(Instance).where(Instance.checkpoint == cp_name, Instance.name == inst_name))
        if inst is None:
            inst = Instance(
                checkpoint=cp_name, name=inst_name, public_key=public_key, keyid=key_id(public_key),
                enrolled_at=t, updated_at=t, seq=0,
            )
            db.add(inst)
            status_code, changed = 201, True
        elif inst.public_key == public_key:
            status_code, changed = 200, False
        elif not replace:
            raise v.ApiError(
                409,
                f"instance {cp_name}/{inst_name} is enrolled with another key (keyid {inst.keyid}); "
                "send replace: true to replace it",
                "public_key",
            )
        else:
            inst.public_key, inst.keyid, inst.enrolled_at, inst.updated_at = public_key, key_id(public_key), t, t
            status_code, changed = 200, True
        answer = _instance_json(inst, changed)
    if changed:
        log.info("instance %s/%s enrolled (keyid %s)", cp_name, inst_name, answer["keyid"])
    if changed and status_code == 200:  # replaced: the old key's session must not live on
        core.disconnect(cp_name, inst_name, CLOSE_REMOVED, "identity key replaced")
    return ok(answer, status_code)


@requires("enroll")
async def delete_instance(request: web.Request) -> web.Response:
    core = core_of(request)
    cp_name = name_param(request, "cp", "checkpoint")
    inst_name = name_param(request, "inst", "instance")
    with core.db.session() as db:
        load_checkpoint(db, cp_name)
        inst = db.scalar(select(Instance).where(Instance.checkpoint == cp_name, Instance.name == inst_name))
        if inst is None:
            raise v.ApiError(404, f"instance {cp_name}/{inst_name} is not enrolled", "instance")
        db.delete(inst)
    core.disconnect(cp_name, inst_name, CLOSE_REMOVED, "instance removed")
    log.info("instance %s/%s removed", cp_name, inst_name)
    return ok({"deleted": True, "checkpoint": cp_name, "instance": inst_name})
