"""REST API: public endpoints, tokens and signing-key rotation (docs/control-plane.md, "REST API").

The checkpoint and monitor operations live in :mod:`.api_checkpoints` and :mod:`.api_monitors`;
the route table, permissions and middleware in :mod:`.web_common`; the OpenAPI document, made
from the same declarations, in :mod:`.openapi`.
"""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from vantage import __version__
from vantage.control_plane import api_checkpoints, api_monitors, openapi
from vantage.control_plane import validation as v
from vantage.control_plane.auth import Principal
from vantage.control_plane.metrics import CONTENT_TYPE_LATEST
from vantage.control_plane.schema import Arr, Bool, Nullable, Num, Obj, Str
from vantage.control_plane.web_common import (
    PRINCIPAL_KEY,
    Args,
    add_rest_routes,
    core_of,
    endpoint,
    ok,
)
from vantage.protocol import key_id

log = logging.getLogger("vantage.control_plane.api")

KEYID = Str(rule="key_id")
TIME = Num(description="unix seconds")
SCOPE = Str(enum=v.SCOPES)

# --- public ------------------------------------------------------------------------------------

STATUS = Obj({"status": Str(enum=("ok",)), "version": Str(), "signing_keyid": KEYID},
             required=("status", "version", "signing_keyid"), name="Status")
TRUSTED_KEY = Obj(
    {"keyid": KEYID, "public_key": Str(max_len=44), "status": Str(enum=("active", "retired")),
     "not_after": Nullable(Num(integer=True))},
    required=("keyid", "public_key", "status", "not_after"), name="TrustedKey",
)
TRUSTED_KEYS = Obj({"keys": Arr(TRUSTED_KEY)}, required=("keys",), name="TrustedKeys")


@endpoint("GET", "/api/v1/status", "Liveness, version and the signing key id", responses={200: STATUS}, tag="public")
async def status(request: web.Request, args: Args) -> web.Response:
    return ok({"status": "ok", "version": __version__, "signing_keyid": core_of(request).keys.keyid})


@endpoint("GET", "/api/v1/signing-keys", "The trusted public keys (the trusted-keys file of docs/protocol.md)",
          responses={200: TRUSTED_KEYS}, tag="public")
async def signing_keys(request: web.Request, args: Args) -> web.Response:
    return ok(await core_of(request).keys.trust_json())


@endpoint("GET", "/metrics", "Prometheus metrics", responses={200: CONTENT_TYPE_LATEST.split(";")[0]}, tag="public")
async def metrics(request: web.Request, args: Args) -> web.Response:
    body = core_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@endpoint("GET", "/api/v1/openapi.json", "This document", responses={200: "application/json"}, tag="public")
async def openapi_document(request: web.Request, args: Args) -> web.Response:
    return ok(openapi.document())


# --- tokens and keys -----------------------------------------------------------------------------

TOKEN_FIELDS = {"id": Num(integer=True), "name": Str(max_len=128), "scopes": Arr(SCOPE), "created_at": TIME}
NEW_TOKEN = Obj({"name": Str(max_len=128, nonblank=True), "scopes": Arr(SCOPE, min_items=1, max_items=3, unique=True)},
                required=("name", "scopes"), name="NewToken")
CREATED_TOKEN = Obj({**TOKEN_FIELDS, "token": Str(description="the secret, shown this once")},
                    required=(*TOKEN_FIELDS, "token"), name="CreatedToken")
TOKEN = Obj({**TOKEN_FIELDS, "bootstrap": Bool()}, required=(*TOKEN_FIELDS, "bootstrap"), name="Token")
TOKEN_ID = {"id": Str(max_len=20, description="token id (an integer)")}


@endpoint("POST", "/api/v1/tokens", "Create an API token", permission="admin", body=NEW_TOKEN,
          responses={201: CREATED_TOKEN}, tag="tokens")
async def create_token(request: web.Request, args: Args) -> web.Response:
    name, scopes = args.body["name"], args.body["scopes"]
    row, token = await core_of(request).tokens.create(name, scopes)
    principal: Principal = request[PRINCIPAL_KEY]
    log.info("token %d (%s, scopes %s) created by token %d", row.id, name, ",".join(scopes), principal.token_id)
    return ok({"id": row.id, "name": row.name, "scopes": scopes, "created_at": row.created_at, "token": token}, 201)


@endpoint("GET", "/api/v1/tokens", "List the API tokens (never their secrets)", permission="admin",
          responses={200: Obj({"tokens": Arr(TOKEN)}, required=("tokens",), name="Tokens")}, tag="tokens")
async def list_tokens(request: web.Request, args: Args) -> web.Response:
    rows = await core_of(request).tokens.list()
    return ok({"tokens": [{"id": r.id, "name": r.name, "scopes": sorted(r.scope_set), "created_at": r.created_at,
                           "bootstrap": r.bootstrap} for r in rows]})


@endpoint("DELETE", "/api/v1/tokens/{id}", "Revoke an API token", permission="admin", path_params=TOKEN_ID,
          responses={200: Obj({"deleted": Bool(), "id": Num(integer=True)}, required=("deleted", "id"))},
          tag="tokens")
async def delete_token(request: web.Request, args: Args) -> web.Response:
    raw = args.path["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise v.invalid("id", "token id must be an integer")
    token_id = int(raw)
    if not await core_of(request).tokens.delete(token_id):
        raise v.ApiError(404, "no such token")
    return ok({"deleted": True, "id": token_id})


ROTATE = Obj({"grace_s": Num(minimum=0, maximum=90 * 86400, description="seconds the old key stays trusted")},
             name="Rotation")
ROTATED = Obj(
    {"keyid": KEYID, "previous_keyid": KEYID, "retire_at": Num(integer=True), "announced_to": Arr(Str()),
     "failed": Arr(Str())},
    required=("keyid", "previous_keyid", "retire_at", "announced_to", "failed"), name="Rotated",
)


@endpoint("POST", "/api/v1/signing-keys/rotate", "Rotate the signing key", permission="admin", body=ROTATE,
          body_required=False, responses={200: ROTATED}, tag="keys")
async def rotate_signing_key(request: web.Request, args: Args) -> web.Response:
    """Make a new signing key; announce it to every connected instance, signed by the old key."""
    core = core_of(request)
    grace = float(args.body.get("grace_s", core.settings.rotation_grace))
    if len(core.alive - {core.replica_id}):
        raise v.ApiError(409, "other replicas are running: rotate the key with one replica, then give the new "
                              "key file to the others")
    sessions = core.registry.all()
    announced: list[str] = []
    failed: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        # hold every session's send lock: no instruction signed by the new key can overtake
        # the rotate_key that introduces it
        for session in sessions:
            await stack.enter_async_context(session.lock)
        rotation = await core.keys.rotate(grace)
        for session in sessions:
            try:
                await core.send_instruction(session, "rotate_key", rotation.body(), key=rotation.old, locked=True)
                announced.append(session.name)
            except Exception as exc:  # noqa: BLE001 - reported in the answer and re-announced on connect
                log.warning("announcing the new signing key to %s failed: %s", session.name, exc)
                failed.append(session.name)
    return ok({"keyid": key_id(rotation.new), "previous_keyid": key_id(rotation.old),
               "retire_at": rotation.retire_at, "announced_to": announced, "failed": failed})


def add_routes(app: web.Application) -> None:
    """Register every REST route (the websocket route is added by the app factory)."""
    assert api_checkpoints and api_monitors  # their operations register on import
    add_rest_routes(app)
