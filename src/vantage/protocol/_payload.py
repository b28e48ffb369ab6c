"""Strict JSON encoding and decoding of signed payloads, and field checks shared by verifiers.

Decoding is deliberately strict because the bytes were signed, and two parsers must never
read one signed payload differently: UTF-8 only, a JSON object at the top, no duplicate keys
(``{"aud": "a", "aud": "b"}`` is refused rather than "last one wins"), no NaN/Infinity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from vantage.protocol.errors import VerificationError

MAX_TIMESTAMP = 2**53  # unix seconds; far beyond any real date, small enough for every JSON parser
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX64 = re.compile(r"[0-9a-f]{64}")


def encode(obj: Mapping[str, Any]) -> bytes:
    """Canonical-enough JSON for signing: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate key {name!r}")
        result[name] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode(payload: bytes) -> dict[str, Any]:
    """Parse a verified payload as a JSON object (``malformed_payload`` otherwise)."""
    try:
        text = payload.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise VerificationError("malformed_payload", "payload is not UTF-8") from None
    except RecursionError:
        raise VerificationError("malformed_payload", "payload is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, huge integers
        raise VerificationError("malformed_payload", f"payload is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise VerificationError("malformed_payload", "payload is not a JSON object")
    return obj


def require_int(obj: Mapping[str, Any], name: str, *, minimum: int = 0, maximum: int = MAX_TIMESTAMP) -> int:
    value = obj.get(name)
    if type(value) is not int:  # bool is an int subclass and 1.0 is a float: both refused
        raise VerificationError("malformed_payload", f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise VerificationError("malformed_payload", f"{name} is out of range")
    return value


def require_str(
    obj: Mapping[str, Any], name: str, *, pattern: re.Pattern[str] | None = None, max_length: int = 1024
) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise VerificationError("malformed_payload", f"{name} must be a non-empty string")
    if len(value) > max_length:
        raise VerificationError("malformed_payload", f"{name} is too long")
    if pattern is not None and not pattern.fullmatch(value):
        raise VerificationError("malformed_payload", f"{name} has the wrong format")
    return value


def require_version(obj: Mapping[str, Any], expected: int = 1) -> None:
    value = obj.get("v")
    if type(value) is not int:
        raise VerificationError("malformed_payload", "v must be an integer")
    if value != expected:
        raise VerificationError(
            "unsupported_version", f"protocol version {value} is not supported (expected {expected})"
        )
