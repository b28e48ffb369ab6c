"""Request validation helpers; every failure becomes a 422 naming the offending field."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from vantage import contract

IMAGE_RE = re.compile(r"[^\s@]{1,512}")
SCOPES = ("admin", "enroll", "read")
#: integers beyond this are refused when parsing: nothing in the API needs them, and floats
#: made from them overflow
MAX_JSON_INT = 2**63


class NonFiniteNumber(ValueError):
    """A JSON number that is NaN, infinite, or too large to be one (``1e999``)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"{text[:40]} is not a finite number")
    return value


def _bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) >= MAX_JSON_INT:
        raise NonFiniteNumber(f"{text[:40]}... is too large a number")
    return value


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not a finite number (JSON has no NaN or Infinity)")


def parse_json(text: str | bytes) -> Any:
    """Strict JSON: what :func:`json.loads` accepts minus ``NaN``, ``Infinity`` and overflowing numbers.

    Everything the control plane reads from a client (request bodies, agent messages) goes through
    here, so that no non-finite number is ever stored and later served as invalid JSON.
    :class:`ValueError` (:class:`NonFiniteNumber` for the numbers) when the text is not acceptable.
    """
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)


def dump_json(data: Any) -> str:
    """Standard JSON (never ``NaN``/``Infinity``: :class:`ValueError` instead)."""
    return json.dumps(data, allow_nan=False, separators=(",", ":"))


class ApiError(Exception):
    """An error answered as JSON ``{"error": message[, "field": field]}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


def invalid(field: str, message: str) -> ApiError:
    """A 422 for ``field``."""
    return ApiError(422, message, field)


def check_rule(rule: str, value: Any, field: str) -> str:
    """``value`` when it follows the :mod:`vantage.contract` ``rule``; a 422 naming ``field``."""
    try:
        return contract.check(rule, value, field)
    except contract.ContractError as exc:
        raise invalid(field, str(exc)) from None


def check_name(value: Any, field: str) -> str:
    """A checkpoint or instance name (the contract's ``name`` rule)."""
    return check_rule("name", value, field)


def check_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body", "the request body must be a JSON object")
    return body


def check_known_fields(body: dict[str, Any], allowed: set[str]) -> None:
    for key in sorted(body):
        if key not in allowed:
            raise invalid(key, f"unknown field {key!r}")


def opt_str(body: dict[str, Any], field: str, *, default: str = "", max_len: int = 1000) -> str:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    if len(value) > max_len:
        raise invalid(field, f"{field} is longer than {max_len} characters")
    return value


def req_str(body: dict[str, Any], field: str, *, max_len: int = 1000) -> str:
    if field not in body:
        raise invalid(field, f"{field} is required")
    value = opt_str(body, field, max_len=max_len)
    if not value.strip():
        raise invalid(field, f"{field} must not be empty")
    return value


def opt_bool(body: dict[str, Any], field: str, default: bool = False) -> bool:
    value = body.get(field, default)
    if not isinstance(value, bool):
        raise invalid(field, f"{field} must be true or false")
    return value


def number(
    body: dict[str, Any], field: str, *, default: float, minimum: float, maximum: float
) -> float:
    """An optional number within ``[minimum, maximum]`` (booleans are not numbers)."""
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(field, f"{field} must be a number")
    if not minimum <= value <= maximum:
        raise invalid(field, f"{field} must be between {minimum:g} and {maximum:g}")
    return float(value)


def labels(body: dict[str, Any], field: str = "labels") -> dict[str, str]:
    value = body.get(field, {})
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 64:
        raise invalid(field, f"{field} must be an object of at most 64 string values")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 63 or len(item) > 255:
            raise invalid(field, f"{field} must map short names to short strings")
    return {str(k): str(v) for k, v in value.items()}


def scopes(body: dict[str, Any], field: str = "scopes") -> list[str]:
    value = body.get(field)
    if not isinstance(value, list) or not value:
        raise invalid(field, f"{field} must be a non-empty list of {', '.join(SCOPES)}")
    out: list[str] = []
    for item in value:
        if item not in SCOPES:
            raise invalid(field, f"unknown scope {item!r}; use {', '.join(SCOPES)}")
        if item not in out:
            out.append(item)
    return sorted(out)


MAX_CREDENTIALS = 256


def credential_names(body: dict[str, Any], field: str = "credentials") -> list[str]:
    """A list of credential names (never values): unique, each following the contract's rule."""
    value = body.get(field)
    if not isinstance(value, list) or len(value) > MAX_CREDENTIALS:
        raise invalid(field, f"{field} must be a list of at most {MAX_CREDENTIALS} credential names")
    for i, name in enumerate(value):
        if not contract.is_valid("credential_name", name):
            raise invalid(
                f"{field}.{i}",
                f"credential names are {contract.RULES['credential_name'][1]} "
                "(names only: secrets stay at the checkpoint)",
            )
    return sorted(set(value))
