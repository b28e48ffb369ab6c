"""Shared pieces of the REST API: the route table, permissions, middleware, JSON helpers.

Every REST operation is declared once with :func:`endpoint`: method, path, permission, the
schemas of its path and query parameters and of its body, and of its answers. The declaration
registers the route, validates the request before the handler runs (a 422 naming the field),
and is what :mod:`.openapi` turns into the OpenAPI document. The auth middleware checks the
bearer token against the declared permission (401 without or with an unknown token, 403 for a
wrong scope); operations without one are public (status, signing keys, metrics, the document).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from vantage.control_plane import validation as v
from vantage.control_plane.auth import Principal, allows
from vantage.control_plane.core import CORE_KEY, ControlPlane
from vantage.control_plane.schema import Num, Obj, Schema, Str

log = logging.getLogger("vantage.control_plane.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PERMISSION_ATTR = "vantage_permission"
PRINCIPAL_KEY = web.RequestKey("vantage_principal", Principal)
MAX_LIMIT = 1000

#: path parameters by name, wherever they appear
PATH_PARAMS: dict[str, Schema] = {
    "cp": Str(rule="name", description="checkpoint name"),
    "inst": Str(rule="name", description="instance name"),
    "channel": Str(rule="channel", description="release channel"),
    "id": Str(max_len=64, description="monitor id"),
}
FIELD_NAMES = {"cp": "checkpoint", "inst": "instance", "channel": "channel", "id": "id"}


@dataclass(frozen=True)
class Args:
    """A request's validated parts."""

    path: dict[str, Any]
    query: dict[str, Any]
    body: dict[str, Any]


ArgsHandler = Callable[[web.Request, Args], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One REST operation, as declared."""

    method: str
    path: str
    handler: ArgsHandler
    summary: str
    permission: str | None
    body: Obj | None
    body_required: bool
    query: Mapping[str, Schema]
    path_params: Mapping[str, Schema]
    responses: Mapping[int, Schema | str]
    tag: str

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


ROUTES: list[Route] = []


def endpoint(
    method: str, path: str, summary: str, *, permission: str | None = None, body: Obj | None = None,
    body_required: bool = True, query: Mapping[str, Schema] | None = None,
    path_params: Mapping[str, Schema] | None = None, responses: Mapping[int, Schema | str], tag: str,
) -> Callable[[ArgsHandler], ArgsHandler]:
    """Declare a REST operation (see the module docstring); ``responses``: status → schema (or a media type)."""

    def register(handler: ArgsHandler) -> ArgsHandler:
        names = re.findall(r"{(\w+)}", path)
        params = {name: (path_params or {}).get(name, PATH_PARAMS.get(name)) for name in names}
        missing = [name for name, schema in params.items() if schema is None]
        if missing:
            raise ValueError(f"{path}: no schema for path parameter(s) {missing}")
        ROUTES.append(Route(method, path, handler, summary, permission, body, body_required, query or {},
                            {k: s for k, s in params.items() if s is not None}, responses, tag))
        return handler

    return register


def make_handler(route: Route) -> Handler:
    """The aiohttp handler of ``route``: validate, then call the declared handler."""

    async def handle(request: web.Request) -> web.StreamResponse:
        path = {
            name: schema.validate(request.match_info[name], FIELD_NAMES.get(name, name))
            for name, schema in route.path_params.items()
        }
        query = {name: schema.validate(request.query[name], name) for name, schema in route.query.items()
                 if name in request.query}
        body: dict[str, Any] = {}
        if route.body is not None:
            raw = await json_body(request, empty_ok=not route.body_required)
            body = route.body.validate(raw, "body")
        return await route.handler(request, Args(path, query, body))

    handle.__name__ = route.handler.__name__
    if route.permission is not None:
        setattr(handle, PERMISSION_ATTR, route.permission)
    return handle


def add_rest_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, make_handler(route))


# --- answers -------------------------------------------------------------------------------------


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=v.dump_json)


def core_of(request: web.Request) -> ControlPlane:
    return request.app[CORE_KEY]


ERROR = Obj(
    {"error": Str(description="what went wrong"), "field": Str(description="the field to blame, when there is one")},
    required=("error",), name="Error",
)


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
    """Bearer-token authentication and scope checks for operations that declare a permission."""
    route_handler = request.match_info.handler
    permission = getattr(route_handler, PERMISSION_ATTR, None)
    if permission is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise v.ApiError(401, "missing bearer token")
    principal = await core_of(request).tokens.authenticate(token)
    if principal is None:
        raise v.ApiError(401, "invalid token")
    if not allows(principal.scopes, permission):
        raise v.ApiError(403, f"this token lacks the {permission} scope")
    request[PRINCIPAL_KEY] = principal
    return await handler(request)


async def json_body(request: web.Request, *, empty_ok: bool = False) -> Any:
    """The request's JSON value (strict: no NaN or Infinity); 422 ``body`` when it is not JSON."""
    raw = await request.read()
    if empty_ok and not raw.strip():
        return {}
    try:
        return v.parse_json(raw)
    except v.NonFiniteNumber as exc:
        raise v.invalid("body", f"the request body is not valid JSON: {exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise v.invalid("body", "the request body is not valid JSON") from None


LIMIT = Num(minimum=1, maximum=MAX_LIMIT, integer=True, description="how many, newest first")


def limit_of(args: Args, default: int) -> int:
    return int(args.query.get("limit", default))


@dataclass(frozen=True)
class IntQuery(Schema):
    """An integer in a query string (validated like :class:`Num`)."""

    number: Num = field(default_factory=lambda: LIMIT)

    def validate(self, value: Any, field: str) -> int:
        try:
            parsed = int(value)
        except (TypeError, ValueError):
            raise v.invalid(field, f"{field} must be an integer") from None
        return int(self.number.validate(parsed, field))

    def json_schema(self) -> dict[str, Any]:
        return self.number.json_schema()
