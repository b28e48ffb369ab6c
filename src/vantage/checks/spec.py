"""The check types, and validation of check specs against them.

Each check type is one module of this package that declares ``CHECK``, a
:class:`~vantage.checks.schema.CheckType` (its spec, its runner, its data-protection rules);
:data:`TYPE_MODULES` registers it. A type's module is imported when a spec of that type is first
validated, run or described, never before: the agent loads only the types it is asked to run
(each module and what it imports costs memory for the life of the process), the control plane
all of them for its OpenAPI document. Everything else is derived from those declarations:

* :func:`validate_spec` serves both the control plane's monitor API (which turns a
  :class:`CheckSpecError` into a 422 naming the field) and the agent (which validates again before
  running anything it received). The normalised spec has every field present, with ``None`` where
  "not set" is meaningful, so ``validate_spec(validate_spec(s)) == validate_spec(s)``.
* :func:`spec_schema` and :func:`specs_schema` give the JSON Schema (2020-12) of one type and of
  any spec, for the control plane's OpenAPI document.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from vantage.checks.schema import JSON, CheckSpecError, CheckType

#: The modules of ``vantage.checks`` that are check types, in the order messages and schemas list
#: them. Adding a check type: write its module (see docs/checks.md), then add its name here.
TYPE_MODULES = ("http", "tcp", "dns", "tls", "ssh", "postgres", "mysql", "smtp", "imap", "http_multistep", "ntp")
#: Every check type's name (whether its module is loaded yet or not).
CHECK_TYPES = TYPE_MODULES

COMMON_FIELDS = frozenset({"type", "target", "timeout_s"})

__all__ = [
    "CHECK_TYPES",
    "COMMON_FIELDS",
    "LOADED",
    "TYPE_MODULES",
    "CheckSpecError",
    "all_types",
    "check_fields",
    "check_type",
    "spec_schema",
    "specs_schema",
    "validate_spec",
]

#: The check types loaded so far, by name (:func:`check_type` fills it; the import system makes a
#: module's first import thread-safe, and every thread finds the same ``CHECK`` in it).
LOADED: dict[str, CheckType] = {}


def check_type(name: str) -> CheckType:
    """The check type called ``name``, its module imported on first use.

    :class:`CheckSpecError` (field ``type``) when there is none; only a name in
    :data:`TYPE_MODULES` is ever imported.
    """
    check = LOADED.get(name)
    if check is not None:
        return check
    if name not in TYPE_MODULES:
        raise CheckSpecError("type", f"unknown check type {name!r} (one of {', '.join(CHECK_TYPES)})")
    check = getattr(importlib.import_module(f"vantage.checks.{name}"), "CHECK", None)
    if not isinstance(check, CheckType) or check.name != name:
        raise RuntimeError(f"vantage.checks.{name} must declare CHECK = CheckType(name={name!r}, ...)")
    LOADED[name] = check
    return check


def all_types() -> dict[str, CheckType]:
    """Every check type by name, in :data:`TYPE_MODULES` order (loading the modules not loaded yet)."""
    return {name: check_type(name) for name in TYPE_MODULES}


def check_fields(name: str) -> frozenset[str]:
    """The field names a spec of type ``name`` may carry (common fields included)."""
    return frozenset(check_type(name).spec.fields)


def validate_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``spec`` and return a normalised copy with defaults filled in.

    Raises :class:`CheckSpecError` naming the first offending field: an unknown type, an unknown
    field (a typo fails rather than being ignored), a wrong type or a value out of range.
    """
    if not isinstance(spec, Mapping):
        raise CheckSpecError("spec", "must be an object")
    name = spec.get("type")
    if name is None:
        raise CheckSpecError("type", f"is required (one of {', '.join(CHECK_TYPES)})")
    if not isinstance(name, str):
        raise CheckSpecError("type", f"unknown check type {name!r} (one of {', '.join(CHECK_TYPES)})")
    return check_type(name).validate(spec)


def spec_schema(name: str) -> JSON:
    """The JSON Schema (2020-12) of a spec of type ``name`` (``type`` is its ``const``)."""
    return check_type(name).json_schema()


def specs_schema(ref: str | None = None) -> JSON:
    """The JSON Schema (2020-12) of any check spec: one of the types, told apart by ``type``.

    With ``ref`` (e.g. ``"#/components/schemas/check-{type}"``) the alternatives are references
    to where the caller puts each :func:`spec_schema`, and an OpenAPI ``discriminator`` maps each
    ``type`` to its reference; without it they are inline.
    """
    if ref is None:
        return {"title": "check spec", "oneOf": [spec_schema(name) for name in CHECK_TYPES]}
    refs = {name: ref.format(type=name) for name in CHECK_TYPES}
    return {
        "title": "check spec",
        "oneOf": [{"$ref": target} for target in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }
