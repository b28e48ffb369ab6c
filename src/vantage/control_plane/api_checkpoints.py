"""REST operations: checkpoints, their state and health, instance enrollment."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vantage.control_plane import validation as v
from vantage.control_plane.alerts import CHECKPOINT_UNAVAILABLE, AlertEvent, close_alert
from vantage.control_plane.db import Checkpoint, CheckpointCredential, Instance, now
from vantage.control_plane.health import checkpoint_health, checkpoint_state, presence
from vantage.control_plane.schema import Anything, Arr, Bool, Map, Nullable, Num, Obj, Str
from vantage.control_plane.sessions import CLOSE_REMOVED
from vantage.control_plane.web_common import Args, core_of, endpoint, ok
from vantage.protocol import key_id, public_key_from_b64

log = logging.getLogger("vantage.control_plane.api")

TIME = Num(description="unix seconds")
NAME = Str(rule="name")
LABELS = Map(Str(max_len=255), max_props=64, max_key=63, description="short names to short strings")
CREDENTIALS = Arr(Str(rule="credential_name"), max_items=v.MAX_CREDENTIALS, unique=True,
                  description="names of credentials the checkpoint holds (never values)")
STATE = Str(enum=("active", "maintenance", "unavailable", "disabled"))

CHECKPOINT_BODY = Obj({"description": Str(max_len=1000), "labels": LABELS, "credentials": CREDENTIALS},
                      name="CheckpointUpdate")
INSTANCE_SUMMARY = Obj(
    {"name": NAME, "public_key": Str(max_len=44), "keyid": Str(rule="key_id"), "enrolled_at": TIME,
     "connected": Bool(), "last_heartbeat": Nullable(TIME)},
    required=("name", "public_key", "keyid", "enrolled_at", "connected", "last_heartbeat"),
)
CHECKPOINT_FIELDS = {
    "name": NAME, "description": Str(max_len=1000), "labels": LABELS, "credentials": Arr(Str()), "state": STATE,
    "admin_state": Str(enum=("active", "disabled")), "disabled_reason": Nullable(Str()), "created_at": TIME,
    "updated_at": TIME, "instances": Arr(INSTANCE_SUMMARY),
}
CHECKPOINT = Obj(CHECKPOINT_FIELDS, required=tuple(CHECKPOINT_FIELDS), name="Checkpoint")
CHECKPOINT_CHANGED = Obj({**CHECKPOINT_FIELDS, "changed": Bool()}, required=(*CHECKPOINT_FIELDS, "changed"),
                         name="CheckpointChanged")
STATE_BODY = Obj({"state": Str(enum=("active", "disabled")), "reason": Str(max_len=1000)}, required=("state",),
                 name="StateChange")
HEALTH_INSTANCE_FIELDS = {
    "name": NAME, "connected": Bool(), "last_heartbeat": Nullable(TIME), "version": Nullable(Str()),
    "image_digest": Nullable(Str()), "healthy": Bool(), "reasons": Arr(Str()), "host": Anything("object"),
    "data_protection": Anything("object"), "keyid": Str(rule="key_id"),
}
HEALTH = Obj(
    {"checkpoint": NAME, "state": STATE, "healthy": Bool(), "reasons": Arr(Str()),
     "instances": Arr(Obj(HEALTH_INSTANCE_FIELDS, required=tuple(HEALTH_INSTANCE_FIELDS)))},
    required=("checkpoint", "state", "healthy", "reasons", "instances"), name="Health",
)
ENROLL_BODY = Obj({"public_key": Str(max_len=64, description="base64 of the raw 32-byte Ed25519 public key"),
                   "replace": Bool()}, required=("public_key",), name="Enrollment")
ENROLLED_FIELDS = {"checkpoint": NAME, "instance": NAME, "public_key": Str(max_len=44),
                   "keyid": Str(rule="key_id"), "enrolled_at": TIME, "changed": Bool()}
ENROLLED = Obj(ENROLLED_FIELDS, required=tuple(ENROLLED_FIELDS), name="Enrolled")
REMOVED = Obj({"deleted": Bool(), "checkpoint": NAME, "instance": NAME}, required=("deleted", "checkpoint", "instance"))


# --- in a store transaction -----------------------------------------------------------------------


def credential_names(db: Session, checkpoint: str) -> list[str]:
    """The credential names ``checkpoint`` declared (sorted; the values never reach the control plane)."""
    query = select(CheckpointCredential.name).where(CheckpointCredential.checkpoint == checkpoint)
    return sorted(db.scalars(query).all())


def load_checkpoint(db: Session, name: str) -> tuple[Checkpoint, list[Instance]]:
    cp = db.get(Checkpoint, name)
    if cp is None:
        raise v.ApiError(404, f"unknown checkpoint {name!r}", "checkpoint")
    instances = list(db.scalars(select(Instance).where(Instance.checkpoint == name).order_by(Instance.name)).all())
    return cp, instances


def checkpoint_json(db: Session, name: str, alive: frozenset[str]) -> dict[str, Any]:
    cp, instances = load_checkpoint(db, name)
    lives = [presence(i, alive) for i in instances]
    return {
        "name": cp.name,
        "description": cp.description,
        "labels": cp.labels,
        "credentials": credential_names(db, name),
        "state": checkpoint_state(cp, lives),
        "admin_state": cp.admin_state,
        "disabled_reason": cp.disabled_reason,
        "created_at": cp.created_at,
        "updated_at": cp.updated_at,
        "instances": [
            {"name": i.name, "public_key": i.public_key, "keyid": i.keyid, "enrolled_at": i.enrolled_at,
             "connected": live.connected, "last_heartbeat": i.last_heartbeat}
            for i, live in zip(instances, lives, strict=True)
        ],
    }


def _list(db: Session, alive: frozenset[str]) -> list[dict[str, Any]]:
    names = db.scalars(select(Checkpoint.name).order_by(Checkpoint.name)).all()
    return [checkpoint_json(db, name, alive) for name in names]


def _put(db: Session, name: str, body: dict[str, Any], t: float, alive: frozenset[str]) -> tuple[dict[str, Any], bool]:
    cp = db.get(Checkpoint, name)
    created = cp is None
    description, labels, credentials = body.get("description"), body.get("labels"), body.get("credentials")
    if cp is None:
        cp = Checkpoint(name=name, description=description or "", labels_json=json.dumps(labels or {}),
                        admin_state="active", disabled_reason=None, created_at=t, updated_at=t)
        db.add(cp)
        changed = True
    else:
        changed = False
        if description is not None and description != cp.description:
            cp.description, changed = description, True
        if labels is not None and labels != cp.labels:
            cp.labels_json, changed = json.dumps(labels), True
        if changed:
            cp.updated_at = t
    db.flush()
    if credentials is not None and credentials != credential_names(db, name):
        db.execute(delete(CheckpointCredential).where(CheckpointCredential.checkpoint == name))
        db.add_all(CheckpointCredential(checkpoint=name, name=c) for c in credentials)
        cp.updated_at, changed = t, True
        db.flush()
    return {**checkpoint_json(db, name, alive), "changed": changed}, created


def _set_state(db: Session, name: str, state: str, reason: str | None, t: float,
               alive: frozenset[str]) -> tuple[dict[str, Any], AlertEvent | None]:
    cp, _ = load_checkpoint(db, name)
    changed = (cp.admin_state, cp.disabled_reason) != (state, reason)
    cp.admin_state, cp.disabled_reason = state, reason
    if changed:
        cp.updated_at = t
    db.flush()
    event = close_alert(db, CHECKPOINT_UNAVAILABLE, name, t) if state == "disabled" else None
    return {**checkpoint_json(db, name, alive), "changed": changed}, event


def _health(db: Session, name: str, alive: frozenset[str], t: float) -> dict[str, Any]:
    cp, instances = load_checkpoint(db, name)
    return checkpoint_health(cp, instances, alive, t)


def _enroll(db: Session, cp_name: str, inst_name: str, public_key: str, replace: bool, t: float) -> tuple[int, dict[str, Any]]:
    load_checkpoint(db, cp_name)
    inst = db.scalar(select(Instance).where(Instance.checkpoint == cp_name, Instance.name == inst_name))
    if inst is None:
        inst = Instance(checkpoint=cp_name, name=inst_name, public_key=public_key, keyid=key_id(public_key),
                        enrolled_at=t, updated_at=t, seq=0, healthy=True)
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
    else:  # the old key's session must not live on, on whichever replica holds it
        inst.public_key, inst.keyid, inst.enrolled_at, inst.updated_at = public_key, key_id(public_key), t, t
        inst.replica_id = inst.session_id = None
        status_code, changed = 200, True
    return status_code, {"checkpoint": inst.checkpoint, "instance": inst.name, "public_key": inst.public_key,
                         "keyid": inst.keyid, "enrolled_at": inst.enrolled_at, "changed": changed}


def _remove(db: Session, cp_name: str, inst_name: str) -> None:
    load_checkpoint(db, cp_name)
    inst = db.scalar(select(Instance).where(Instance.checkpoint == cp_name, Instance.name == inst_name))
    if inst is None:
        raise v.ApiError(404, f"instance {cp_name}/{inst_name} is not enrolled", "instance")
    db.delete(inst)


# --- operations -----------------------------------------------------------------------------------


@endpoint("GET", "/api/v1/checkpoints", "All checkpoints", permission="read",
          responses={200: Obj({"checkpoints": Arr(CHECKPOINT)}, required=("checkpoints",))}, tag="checkpoints")
async def list_checkpoints(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    return ok({"checkpoints": await core.store.run(_list, core.alive)})


@endpoint("PUT", "/api/v1/checkpoints/{cp}", "Create or update a checkpoint (absent fields are left as they are)",
          permission="enroll", body=CHECKPOINT_BODY, body_required=False,
          responses={200: CHECKPOINT_CHANGED, 201: CHECKPOINT_CHANGED}, tag="checkpoints")
async def put_checkpoint(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    name = args.path["cp"]
    answer, created = await core.store.run(_put, name, args.body, now(), core.alive)
    if created:
        log.info("checkpoint %s created", name)
    return ok(answer, 201 if created else 200)


@endpoint("GET", "/api/v1/checkpoints/{cp}", "A checkpoint and its instances", permission="read",
          responses={200: CHECKPOINT}, tag="checkpoints")
async def get_checkpoint(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    return ok(await core.store.run(checkpoint_json, args.path["cp"], core.alive))


@endpoint("POST", "/api/v1/checkpoints/{cp}/state", "Disable a checkpoint (with a reason) or make it active again",
          permission="admin", body=STATE_BODY, responses={200: CHECKPOINT_CHANGED}, tag="checkpoints")
async def set_checkpoint_state(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    name = args.path["cp"]
    state = args.body["state"]
    reason = args.body.get("reason", "").strip()
    if state == "disabled" and not reason:
        raise v.invalid("reason", "a reason is required to disable a checkpoint")
    answer, event = await core.store.run(_set_state, name, state, reason if state == "disabled" else None, now(),
                                         core.alive)
    if answer["changed"]:
        log.info("checkpoint %s set %s%s", name, state, f" ({reason})" if state == "disabled" else "")
    core.alerts.publish([event] if event else [])
    return ok(answer)


@endpoint("GET", "/api/v1/checkpoints/{cp}/health", "State and health of a checkpoint and each instance",
          permission="read", responses={200: HEALTH}, tag="checkpoints")
async def checkpoint_health_view(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    return ok(await core.store.run(_health, args.path["cp"], core.alive, now()))


@endpoint("PUT", "/api/v1/checkpoints/{cp}/instances/{inst}",
          "Enroll an instance's identity key: 201 new, 200 same key, 409 another key unless replace",
          permission="enroll", body=ENROLL_BODY, responses={200: ENROLLED, 201: ENROLLED}, tag="checkpoints")
async def put_instance(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    cp_name, inst_name = args.path["cp"], args.path["inst"]
    public_key = args.body["public_key"]
    try:
        public_key_from_b64(public_key)
    except ValueError as exc:
        raise v.invalid("public_key", f"public_key: {exc}") from None
    status_code, answer = await core.store.run(_enroll, cp_name, inst_name, public_key,
                                               bool(args.body.get("replace", False)), now())
    if answer["changed"]:
        log.info("instance %s/%s enrolled (keyid %s)", cp_name, inst_name, answer["keyid"])
    if answer["changed"] and status_code == 200:  # replaced: the old key's session must not live on
        await core.disconnect(cp_name, inst_name, CLOSE_REMOVED, "identity key replaced")
    return ok(answer, status_code)


@endpoint("DELETE", "/api/v1/checkpoints/{cp}/instances/{inst}", "Remove an instance (its session is closed)",
          permission="enroll", responses={200: REMOVED}, tag="checkpoints")
async def delete_instance(request: web.Request, args: Args) -> web.Response:
    core = core_of(request)
    cp_name, inst_name = args.path["cp"], args.path["inst"]
    await core.store.run(_remove, cp_name, inst_name)
    await core.disconnect(cp_name, inst_name, CLOSE_REMOVED, "instance removed")
    log.info("instance %s/%s removed", cp_name, inst_name)
    return ok({"deleted": True, "checkpoint": cp_name, "instance": inst_name})
