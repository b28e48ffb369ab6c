"""REST API: public endpoints, tokens, signing-key rotation, and the route table (docs/control-plane.md).

The resource handlers live in :mod:`.api_checkpoints` and :mod:`.api_monitors`; permissions and
middleware in :mod:`.web_common`.
"""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from vantage import __version__
from vantage.control_plane import api_checkpoints as cps
from vantage.control_plane import api_monitors as mons
from vantage.control_plane import validation as v
from vantage.control_plane.auth import Principal
from vantage.control_plane.metrics import CONTENT_TYPE_LATEST
from vantage.control_plane.sessions import build_instruction
from vantage.control_plane.web_common import (
    PRINCIPAL_KEY,
    core_of,
    json_body,
    ok,
    requires,
)
from vantage.protocol import key_id

log = logging.getLogger("vantage.control_plane.api")


# --- public ------------------------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    return ok({"status": "ok", "version": __version__, "signing_keyid": core_of(request).keys.keyid})


async def signing_keys(request: web.Request) -> web.Response:
    return ok(core_of(request).keys.trust_json())


async def metrics(request: web.Request) -> web.Response:
    body = core_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# --- tokens and keys -----------------------------------------------------------------------------


@requires("admin")
async def create_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    v.check_known_fields(body, {"name", "scopes"})
    name = v.req_str(body, "name", max_len=128)
    scopes = v.scopes(body)
    row, token = core_of(request).tokens.create(name, scopes)
    principal: Principal = request[PRINCIPAL_KEY]
    log.info("token %d (%s, scopes %s) created by token %d", row.id, name, ",".join(scopes), principal.token_id)
    return ok({"id": row.id, "name": row.name, "scopes": scopes, "created_at": row.created_at, "token": token}, 201)


@requires("admin")
async def list_tokens(request: web.Request) -> web.Response:
    rows = core_of(request).tokens.list()
    return ok(
        {
            "tokens": [
                {"id": r.id, "name": r.name, "scopes": sorted(r.scope_set), "created_at": r.created_at,
                 "bootstrap": r.bootstrap}
                for r in rows
            ]
        }
    )


@requires("admin")
async def delete_token(request: web.Request) -> web.Response:
    try:
        token_id = int(request.match_info["id"])
    except ValueError:
        raise v.invalid("id", "token id must be an integer") from None
    if not core_of(request).tokens.delete(token_id):
        raise v.ApiError(404, "no such token")
    return ok({"deleted": True, "id": token_id})


@requires("admin")
async def rotate_signing_key(request: web.Request) -> web.Response:
    """Make a new signing key; announce it to every connected instance, signed by the old key."""
    core = core_of(request)
    body = await json_body(request, empty_ok=True)
    v.check_known_fields(body, {"grace_s"})
    grace = v.number(body, "grace_s", default=core.settings.rotation_grace, minimum=0, maximum=90 * 86400)
    sessions = core.registry.all()
    announced: list[str] = []
    failed: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        # hold every session's send lock: no instruction signed by the new key can overtake
        # the rotate_key that introduces it
        for session in sessions:
            await stack.enter_async_context(session.lock)
        rotation = core.keys.rotate(grace)
        for session in sessions:
            try:
                message = build_instruction(core, session, "rotate_key", rotation.body(), key=rotation.old)
                await session.send_locked(message)
                announced.append(session.name)
            except Exception as exc:  # noqa: BLE001 - reported in the answer and re-announced on connect
                log.warning("announcing the new signing key to %s failed: %s", session.name, exc)
                failed.append(session.name)
    return ok(
        {
            "keyid": key_id(rotation.new),
            "previous_keyid": key_id(rotation.old),
            "retire_at": rotation.retire_at,
            "announced_to": announced,
            "failed": failed,
        }
    )


def add_routes(app: web.Application) -> None:
    """Register every REST route (the websocket route is added by the app factory)."""
    r = app.router
    r.add_get("/api/v1/status", status)
    r.add_get("/api/v1/signing-keys", signing_keys)
    r.add_post("/api/v1/signing-keys/rotate", rotate_signing_key)
    r.add_get("/metrics", metrics)
    r.add_post("/api/v1/tokens", create_token)
    r.add_get("/api/v1/tokens", list_tokens)
    r.add_delete("/api/v1/tokens/{id}", delete_token)
    r.add_get("/api/v1/checkpoints", cps.list_checkpoints)
    r.add_put("/api/v1/checkpoints/{cp}", cps.put_checkpoint)
    r.add_get("/api/v1/checkpoints/{cp}", cps.get_checkpoint)
    r.add_post("/api/v1/checkpoints/{cp}/state", cps.set_checkpoint_state)
    r.add_get("/api/v1/checkpoints/{cp}/health", cps.checkpoint_health_view)
    r.add_put("/api/v1/checkpoints/{cp}/instances/{inst}", cps.put_instance)
    r.add_delete("/api/v1/checkpoints/{cp}/instances/{inst}", cps.delete_instance)
    r.add_post("/api/v1/monitors", mons.create_monitor)
    r.add_get("/api/v1/monitors", mons.list_monitors)
    r.add_get("/api/v1/monitors/{id}", mons.get_monitor)
    r.add_delete("/api/v1/monitors/{id}", mons.delete_monitor)
    r.add_get("/api/v1/monitors/{id}/results", mons.monitor_results)
    r.add_get("/api/v1/alerts", mons.list_alerts)
    r.add_put("/api/v1/releases/{channel}", mons.put_release)
    r.add_get("/api/v1/releases/{channel}", mons.get_release)
