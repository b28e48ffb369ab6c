"""Request validation basics: the API's error, strict JSON, and constants the schemas share.

The schemas themselves (what each body and parameter must be) are in :mod:`.schema`; every
failure becomes a 422 naming the offending field.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

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


MAX_CREDENTIALS = 256
