"""The OpenAPI 3.1 document of the REST API (``GET /api/v1/openapi.json``), derived from the route table.

Nothing here is written by hand beside the handlers: every operation, parameter, body and
answer comes from its :func:`~.web_common.endpoint` declaration — the very schemas that validate
the requests. Error answers are added from what an operation declares: 401/403 when it needs a
token, 404 when its path names something, 422 when it takes parameters or a body.
"""

from __future__ import annotations

import functools
from typing import Any

from vantage import __version__
from vantage.checks import CHECK_TYPES, spec_schema
from vantage.control_plane.schema import Anything, Obj, Schema
from vantage.control_plane.web_common import ERROR, ROUTES, Route

#: The check spec's own fields (``type``, ``target``, ``timeout_s`` and the type-specific ones)
#: in a monitor body: validated by ``vantage.checks.validate_spec``, documented by
#: ``vantage.checks.spec_schema`` — both made from the check types' own declarations.
CHECK_SPEC: Schema = Anything(description="a check spec field (validated by vantage.checks.validate_spec)")
MONITOR_REF = "#/components/schemas/monitor-{type}"

ERRORS = {
    401: "no token, or an unknown one",
    403: "the token lacks the scope",
    404: "unknown checkpoint, instance, monitor, channel or token",
    409: "conflict (another key enrolled, other replicas running)",
    422: "a parameter or the body is invalid (the answer names the field)",
}


def _content(schema: Schema | str) -> dict[str, Any]:
    if isinstance(schema, str):
        return {schema: {"schema": {"type": "string"} if schema.startswith("text/") else {}}}
    return {"application/json": {"schema": schema.document()}}


def monitor_schemas(body: Obj) -> dict[str, dict[str, Any]]:
    """One schema per check type: that type's spec (``spec_schema``) plus the monitor's own fields."""
    own = {name: schema.document() for name, schema in body.fields.items()}
    required = [name for name in body.required if name in body.fields]
    out: dict[str, dict[str, Any]] = {}
    for kind in CHECK_TYPES:
        spec = spec_schema(kind)
        out[f"monitor-{kind}"] = {
            **spec,
            "title": f"monitor with a {kind} check",
            "properties": {**own, **spec["properties"]},
            "required": [*required, *spec.get("required", [])],
        }
    return out


def _body_schema(body: Obj) -> dict[str, Any]:
    if body.extra is not CHECK_SPEC:
        return body.document()
    refs = {kind: MONITOR_REF.format(type=kind) for kind in CHECK_TYPES}  # a monitor: one of the check types
    return {"oneOf": [{"$ref": ref} for ref in refs.values()], "discriminator": {"propertyName": "type",
                                                                                 "mapping": refs}}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary, "tags": [route.tag]}
    params = [
        {"name": name, "in": "path", "required": True, "schema": schema.document()}
        for name, schema in route.path_params.items()
    ] + [
        {"name": name, "in": "query", "required": False, "schema": schema.document()}
        for name, schema in route.query.items()
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": route.body_required,
                             "content": {"application/json": {"schema": _body_schema(route.body)}}}
    responses: dict[str, Any] = {
        str(code): {"description": "success", "content": _content(schema)} for code, schema in route.responses.items()
    }
    errors = []
    if route.permission is not None:
        errors += [401, 403]
        op["security"] = [{"bearer": []}]
        op["description"] = f"Needs a token with the `{route.permission}` scope (or one that includes it)."
    if route.path_params:
        errors.append(404)
    if route.method in ("PUT", "POST") and route.permission is not None:
        errors.append(409)
    if params or route.body is not None:
        errors.append(422)
    for code in errors:
        responses[str(code)] = {"description": ERRORS[code], "content": _content(ERROR)}
    op["responses"] = responses
    return op


@functools.cache
def document() -> dict[str, Any]:
    """The document (built once per process: the routes do not change while it runs)."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
        if route.body is not None and route.body.extra is CHECK_SPEC:
            schemas.update(monitor_schemas(route.body))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vantage control plane",
            "version": __version__,
            "description": "REST API of the reference control plane (docs/control-plane.md). The agent "
                           "websocket (/api/v1/agent/connect) is described in docs/protocol.md.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }



__all__ = ["CHECK_SPEC", "document"]
