"""Shared pieces of the REST handlers: permissions, middleware, JSON and parameter helpers.

Each handler declares the permission it needs with :func:`requires`; the auth middleware checks
the bearer token against it (401 without or with an unknown token, 403 for a wrong scope).
Handlers without a declared permission are public (status, signing keys, metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vantage.control_plane import validation as v
from vantage.control_plane.auth import Principal, allows
from vantage.control_plane.core import CORE_KEY, ControlPlane

log = logging.getLogger("vantage.control_plane.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PERMISSION_ATTR = "vantage_permission"
PRINCIPAL_KEY = web.RequestKey("vantage_principal", Principal)
MAX_LIMIT = 1000


def requires(permission: str) -> Callable[[Handler], Handler]:
    """Declare the permission (``read``, ``enroll``, ``admin``) a handler needs."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, PERMISSION_ATTR, permission)
        return handler

    return mark


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=v.dump_json)


def core_of(request: web.Request) -> ControlPlane:
    return request.app[CORE_KEY]


# --- middleware --------------------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`ApiError` and aiohttp's HTTP errors into JSON answers."""
    try:
        return await handler(request)
    except v.ApiError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return web.json_response(exc.body(), status=exc.status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: val for k, val in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer-token authentication and scope checks for handlers marked with :func:`requires`."""
    route_handler = request.match_info.handler
    permission = getattr(route_handler, PERMISSION_ATTR, None)
    if permission is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise v.ApiError(401, "missing bearer token")
    principal = core_of(request).tokens.authenticate(token)
    if principal is None:
        raise v.ApiError(401, "invalid token")
    if not allows(principal.scopes, permission):
        raise v.ApiError(403, f"this token lacks the {permission} scope")
    request[PRINCIPAL_KEY] = principal
    return await handler(request)


async def json_body(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request's JSON object (422 ``body`` when it is not one)."""
    if empty_ok and not request.can_read_body:
        return {}
    try:
        data = v.parse_json(await request.read())
    except v.NonFiniteNumber as exc:
        raise v.invalid("body", f"the request body is not valid JSON: {exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise v.invalid("body", "the request body is not valid JSON") from None
    return v.check_object(data)


def name_param(request: web.Request, param: str, field: str) -> str:
    return v.check_name(request.match_info[param], field)


def limit_param(request: web.Request, default: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise v.invalid("limit", "limit must be an integer") from None
    if not 1 <= value <= MAX_LIMIT:
        raise v.invalid("limit", f"limit must be between 1 and {MAX_LIMIT}")
    return value
