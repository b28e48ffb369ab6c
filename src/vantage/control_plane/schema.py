"""Request and response schemas, declared once: handlers validate with them, the OpenAPI document is made from them.

A schema validates a decoded JSON value (:meth:`Schema.validate`: the cleaned value, or a 422
:class:`~.validation.ApiError` naming the field) and describes itself as JSON Schema
(:meth:`Schema.json_schema`, the dialect of OpenAPI 3.1). Names, channels, digests and versions
use the rules of :mod:`vantage.contract`, validated with a full match and documented as an
anchored ``pattern``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vantage import contract
from vantage.control_plane.validation import ApiError, invalid


def _join(parent: str, child: str | int) -> str:
    return f"{parent}.{child}" if parent else str(child)


class Schema:
    """Base class; ``description`` goes into the document."""

    description: str | None = None

    def validate(self, value: Any, field: str) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def document(self) -> dict[str, Any]:
        out = self.json_schema()
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class Str(Schema):
    """A string; ``rule`` names a :mod:`vantage.contract` rule it must match in full."""

    max_len: int = 1000
    rule: str | None = None
    enum: tuple[str, ...] | None = None
    nonblank: bool = False
    description: str | None = None

    def validate(self, value: Any, field: str) -> str:
        if self.rule is not None:
            try:
                return contract.check(self.rule, value, field)
            except contract.ContractError as exc:
                raise invalid(field, str(exc)) from None
        if not isinstance(value, str):
            raise invalid(field, f"{field} must be a string")
        if len(value) > self.max_len:
            raise invalid(field, f"{field} is longer than {self.max_len} characters")
        if self.enum is not None and value not in self.enum:
            raise invalid(field, f"{field} must be one of {', '.join(self.enum)}")
        if self.nonblank and not value.strip():
            raise invalid(field, f"{field} must not be empty")
        return value

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.rule is not None:
            out["pattern"] = f"^(?:{contract.RULES[self.rule][0]})$"
        else:
            out["maxLength"] = self.max_len
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.nonblank:
            out["minLength"] = 1
            out["pattern"] = r"\S"
        return out


@dataclass
class Num(Schema):
    """A finite number (``integer``: a whole one) within ``[minimum, maximum]``; booleans are not numbers."""

    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    description: str | None = None

    def validate(self, value: Any, field: str) -> float | int:
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            raise invalid(field, f"{field} must be {'an integer' if self.integer else 'a number'}")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise invalid(field, f"{field} must be between {self.minimum:g} and {self.maximum:g}")
        return value

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass
class Bool(Schema):
    description: str | None = None

    def validate(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise invalid(field, f"{field} must be true or false")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass
class Nullable(Schema):
    """``inner`` or null (response documentation only)."""

    inner: Schema
    description: str | None = None

    def validate(self, value: Any, field: str) -> Any:
        return None if value is None else self.inner.validate(value, field)

    def json_schema(self) -> dict[str, Any]:
        inner = self.inner.json_schema()
        kind = inner.get("type")
        if isinstance(kind, str):
            return {**inner, "type": [kind, "null"]}
        return {"anyOf": [inner, {"type": "null"}]}


@dataclass
class Arr(Schema):
    items: Schema
    max_items: int = 1000
    min_items: int = 0
    unique: bool = False
    description: str | None = None

    def validate(self, value: Any, field: str) -> list[Any]:
        if not isinstance(value, list) or not self.min_items <= len(value) <= self.max_items:
            raise invalid(field, f"{field} must be a list of {self.min_items} to {self.max_items} items")
        out = [self.items.validate(item, _join(field, i)) for i, item in enumerate(value)]
        return sorted(set(out)) if self.unique else out

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.items.document(), "maxItems": self.max_items}
        if self.min_items:
            out["minItems"] = self.min_items
        return out


@dataclass
class Map(Schema):
    """An object of arbitrary keys (at most ``max_key`` characters) to ``values``."""

    values: Schema
    max_props: int = 64
    max_key: int = 63
    description: str | None = None

    def validate(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict) or len(value) > self.max_props:
            raise invalid(field, f"{field} must be an object of at most {self.max_props} entries")
        for key in value:
            if len(key) > self.max_key:
                raise invalid(field, f"{field}: keys are at most {self.max_key} characters")
        return {key: self.values.validate(item, field) for key, item in value.items()}

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object", "additionalProperties": self.values.document(), "maxProperties": self.max_props,
            "propertyNames": {"maxLength": self.max_key},
        }


@dataclass
class Anything(Schema):
    """Any JSON value (documentation of free-form parts)."""

    kind: str | None = None
    description: str | None = None

    def validate(self, value: Any, field: str) -> Any:
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": self.kind} if self.kind else {}


@dataclass
class Obj(Schema):
    """An object with known fields; unknown ones are a 422 unless ``extra`` describes them.

    ``required`` fields must be present; absent optional fields are simply absent from the
    cleaned value (a handler applies its defaults). ``extra``: the schema of further fields
    (``Anything()`` for free-form ones, validated elsewhere).
    """

    fields: Mapping[str, Schema] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    extra: Schema | None = None
    description: str | None = None
    name: str | None = None

    def validate(self, value: Any, field: str = "body") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise invalid(field or "body", f"{field or 'the request body'} must be a JSON object")
        prefix = "" if field == "body" else field
        for key in self.required:
            if key not in value:
                raise invalid(_join(prefix, key), f"{key} is required")
        out: dict[str, Any] = {}
        for key in sorted(value):
            schema = self.fields.get(key, self.extra)
            if schema is None:
                raise invalid(_join(prefix, key), f"unknown field {key!r}")
            out[key] = schema.validate(value[key], _join(prefix, key))
        return out

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {key: schema.document() for key, schema in self.fields.items()},
            "additionalProperties": False if self.extra is None else self.extra.document(),
        }
        if self.required:
            out["required"] = list(self.required)
        return out


def not_found(message: str, field: str) -> ApiError:
    return ApiError(404, message, field)
