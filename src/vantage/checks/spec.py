"""Validation and normalisation of check specs.

One function, :func:`validate_spec`, serves both the control plane's monitor API (which turns a
:class:`CheckSpecError` into a 422 naming the field) and the agent (which validates again before
running anything it received). The normalised spec has every optional field present, with
``None`` where "not set" is meaningful, so ``validate_spec(validate_spec(s)) == validate_spec(s)``.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

CHECK_TYPES = ("http", "tcp", "dns", "tls")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DNS_RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "PTR")

TIMEOUT_DEFAULT = 10.0
TIMEOUT_MIN = 0.1
TIMEOUT_MAX = 120.0
MAX_REDIRECTS = 10
MAX_BODY_BYTES_DEFAULT = 65536
MAX_BODY_BYTES_LIMIT = 16 * 1024 * 1024
CERT_WARNING_DAYS_DEFAULT = 14
MAX_TARGET_LENGTH = 2048
MAX_REQUEST_BODY = 1024 * 1024
MAX_HEADERS = 100
MAX_TEXT_FIELD = 4096
MAX_SEND = 65536
MAX_EXPECTED = 100

COMMON_FIELDS = frozenset({"type", "target", "timeout_s"})
TYPE_FIELDS: dict[str, frozenset[str]] = {
    "http": COMMON_FIELDS
    | {
        "method",
        "headers",
        "body",
        "expected_status",
        "keyword",
        "keyword_absent",
        "follow_redirects",
        "verify_tls",
        "cert_expiry_warning_days",
        "max_body_bytes",
    },
    "tcp": COMMON_FIELDS | {"send", "expect"},
    "dns": COMMON_FIELDS | {"record_type", "resolver", "expected"},
    "tls": COMMON_FIELDS | {"server_name", "verify", "cert_expiry_warning_days"},
}

# Headers whose value the HTTP check computes itself (message framing); a spec may not set them.
RESERVED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_CTL_RE = re.compile(r"[\x00-\x20\x7f]")


class CheckSpecError(ValueError):
    """A check spec is invalid; ``field`` is the dotted name of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_fields(check_type: str) -> frozenset[str]:
    """The field names a spec of ``check_type`` may carry (common fields included)."""
    try:
        return TYPE_FIELDS[check_type]
    except KeyError:
        raise CheckSpecError("type", f"unknown check type {check_type!r}") from None


def validate_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``spec`` and return a normalised copy with defaults filled in.

    Raises :class:`CheckSpecError` naming the first offending field: an unknown type, an unknown
    field (a typo fails rather than being ignored), a wrong type or a value out of range.
    """
    if not isinstance(spec, Mapping):
        raise CheckSpecError("spec", "must be an object")
    check_type = spec.get("type")
    if check_type is None:
        raise CheckSpecError("type", f"is required (one of {', '.join(CHECK_TYPES)})")
    if not isinstance(check_type, str) or check_type not in TYPE_FIELDS:
        raise CheckSpecError("type", f"unknown check type {check_type!r} (one of {', '.join(CHECK_TYPES)})")
    allowed = TYPE_FIELDS[check_type]
    for key in spec:
        if not isinstance(key, str):
            raise CheckSpecError(str(key), "field names must be strings")
        if key not in allowed:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise CheckSpecError(key, f"unknown field for a {check_type} check{suffix}")
    out: dict[str, Any] = {"type": check_type}
    out["timeout_s"] = _number(spec, "timeout_s", TIMEOUT_DEFAULT, TIMEOUT_MIN, TIMEOUT_MAX)
    _VALIDATORS[check_type](spec, out)
    return out


# --- helpers -------------------------------------------------------------------------------


def _get(spec: Mapping[str, Any], name: str) -> Any:
    return spec.get(name)


def _number(spec: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = _get(spec, name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckSpecError(name, "must be a number")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CheckSpecError(name, f"must be between {lo:g} and {hi:g}")
    return float(value)


def _int(spec: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = _get(spec, name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckSpecError(name, "must be an integer")
    if not lo <= value <= hi:
        raise CheckSpecError(name, f"must be between {lo} and {hi}")
    return value


def _bool(spec: Mapping[str, Any], name: str, default: bool) -> bool:
    value = _get(spec, name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise CheckSpecError(name, "must be true or false")
    return value


def _str(
    spec: Mapping[str, Any], name: str, *, max_len: int = MAX_TEXT_FIELD, allow_empty: bool = False
) -> str | None:
    value = _get(spec, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CheckSpecError(name, "must be a string")
    if not value and not allow_empty:
        raise CheckSpecError(name, "must not be empty")
    if len(value) > max_len:
        raise CheckSpecError(name, f"must be at most {max_len} characters")
    return value


def _required_target(spec: Mapping[str, Any]) -> str:
    value = _str(spec, "target", max_len=MAX_TARGET_LENGTH)
    if value is None:
        raise CheckSpecError("target", "is required")
    return value.strip()


def _hostname_ok(host: str) -> bool:
    """True for an IP literal or a syntactically valid DNS host name (IDNA already applied)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host.removesuffix(".")
    if not name or len(name) > 253:
        return False
    return all(_LABEL_RE.match(label) for label in name.split("."))


def _idna(host: str, field: str) -> str:
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise CheckSpecError(field, f"host name {host!r} is not a valid internationalised name") from None


def parse_host_port(value: str, field: str = "target") -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:443``) and validate both parts."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not value[end + 1 :].startswith(":"):
            raise CheckSpecError(field, "must be host:port (IPv6 as [::1]:443)")
        host, port_text = value[1:end], value[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CheckSpecError(field, f"{host!r} is not an IPv6 address") from None
    else:
        if value.count(":") != 1:
            raise CheckSpecError(field, "must be host:port (IPv6 as [::1]:443)")
        host, port_text = value.rsplit(":", 1)
        host = _idna(host, field)
        if not _hostname_ok(host):
            raise CheckSpecError(field, f"{host!r} is not a valid host name or IP address")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise CheckSpecError(field, "port must be a number between 1 and 65535")
    return host, int(port_text)


def format_host_port(host: str, port: int) -> str:
    """The inverse of :func:`parse_host_port`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cert_days(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["cert_expiry_warning_days"] = _int(
        spec, "cert_expiry_warning_days", CERT_WARNING_DAYS_DEFAULT, 0, 3650
    )


# --- per type --------------------------------------------------------------------------------


def normalize_url(raw: str) -> str:
    """Validate an http(s) URL and return it normalised (IDNA host, percent-encoded path, no fragment)."""
    if _CTL_RE.search(raw):
        raise CheckSpecError("target", "URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise CheckSpecError("target", f"invalid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise CheckSpecError("target", "URL scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise CheckSpecError("target", "credentials in the URL are not supported; use headers.Authorization")
    host = parts.hostname
    if not host:
        raise CheckSpecError("target", "URL has no host")
    if ":" not in host:
        host = _idna(host, "target")
    if not _hostname_ok(host):
        raise CheckSpecError("target", f"{host!r} is not a valid host name or IP address")
    if port == 0:
        raise CheckSpecError("target", "port must be between 1 and 65535")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~") or "/"
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    return urlunsplit((parts.scheme.lower(), netloc, path, query, ""))


def _validate_http(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["target"] = normalize_url(_required_target(spec))
    method = _str(spec, "method") or "GET"
    if method.upper() not in HTTP_METHODS:
        raise CheckSpecError("method", f"must be one of {', '.join(HTTP_METHODS)}")
    out["method"] = method.upper()

    headers = _get(spec, "headers")
    norm_headers: dict[str, str] = {}
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise CheckSpecError("headers", "must be an object of header names to string values")
        if len(headers) > MAX_HEADERS:
            raise CheckSpecError("headers", f"at most {MAX_HEADERS} headers")
        seen: set[str] = set()
        for name, value in headers.items():
            field = f"headers.{name}"
            if not isinstance(name, str) or not _TOKEN_RE.match(name):
                raise CheckSpecError(field, "is not a valid HTTP header name")
            if name.lower() in RESERVED_HEADERS:
                raise CheckSpecError(field, "is set by the check itself and cannot be overridden")
            if name.lower() in seen:
                raise CheckSpecError(field, "is given twice (header names are case-insensitive)")
            seen.add(name.lower())
            if not isinstance(value, str):
                raise CheckSpecError(field, "value must be a string")
            if any(c in value for c in "\r\n\x00") or len(value) > 8192:
                raise CheckSpecError(field, "value must be one line without NUL, at most 8192 characters")
            norm_headers[name] = value
    out["headers"] = norm_headers
    out["body"] = _str(spec, "body", max_len=MAX_REQUEST_BODY, allow_empty=True)

    status = _get(spec, "expected_status")
    if status is not None:
        items = status if isinstance(status, list) else [status]
        if not items or len(items) > 100:
            raise CheckSpecError("expected_status", "must be a status code or a list of 1 to 100 codes")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
                raise CheckSpecError("expected_status", "status codes must be integers between 100 and 599")
        status = sorted(set(items))
    out["expected_status"] = status
    out["max_body_bytes"] = _int(spec, "max_body_bytes", MAX_BODY_BYTES_DEFAULT, 0, MAX_BODY_BYTES_LIMIT)
    for name in ("keyword", "keyword_absent"):
        out[name] = _str(spec, name)
        if out[name] is not None and out["method"] == "HEAD":
            raise CheckSpecError(name, "cannot be checked with method HEAD (no response body)")
        if out[name] is not None and out["max_body_bytes"] == 0:
            raise CheckSpecError("max_body_bytes", f"must be greater than 0 when {name} is set")
    out["follow_redirects"] = _bool(spec, "follow_redirects", True)
    out["verify_tls"] = _bool(spec, "verify_tls", True)
    _cert_days(spec, out)


def _validate_tcp(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["target"] = format_host_port(*parse_host_port(_required_target(spec)))
    out["send"] = _str(spec, "send", max_len=MAX_SEND)
    out["expect"] = _str(spec, "expect")


def _validate_dns(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    target = _required_target(spec)
    record_type = (_str(spec, "record_type") or "A").upper()
    if record_type not in DNS_RECORD_TYPES:
        raise CheckSpecError("record_type", f"must be one of {', '.join(DNS_RECORD_TYPES)}")
    is_ip = True
    try:
        ipaddress.ip_address(target)
    except ValueError:
        is_ip = False
    if not is_ip or record_type != "PTR":
        target = _idna(target, "target")
        name = target.removesuffix(".")
        if not name or len(name) > 253 or not all(0 < len(x) <= 63 for x in name.split(".")):
            raise CheckSpecError("target", f"{target!r} is not a valid DNS name")
        if _CTL_RE.search(name):
            raise CheckSpecError("target", "DNS name must not contain whitespace or control characters")
    out["target"] = target
    out["record_type"] = record_type

    resolver = _str(spec, "resolver")
    if resolver is not None:
        resolver = resolver.strip()
        try:
            ipaddress.ip_address(resolver)
        except ValueError:
            host, port = parse_host_port(resolver, "resolver")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise CheckSpecError("resolver", "must be an IP address, optionally with :port") from None
            resolver = format_host_port(host, port)
    out["resolver"] = resolver

    expected = _get(spec, "expected")
    if expected is not None:
        if not isinstance(expected, list) or not 1 <= len(expected) <= MAX_EXPECTED:
            raise CheckSpecError("expected", f"must be a list of 1 to {MAX_EXPECTED} strings")
        for i, item in enumerate(expected):
            if not isinstance(item, str) or not item or len(item) > MAX_TEXT_FIELD:
                raise CheckSpecError(f"expected.{i}", "must be a non-empty string")
        expected = list(expected)
    out["expected"] = expected


def _validate_tls(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["target"] = format_host_port(*parse_host_port(_required_target(spec)))
    server_name = _str(spec, "server_name", max_len=253)
    if server_name is not None:
        server_name = _idna(server_name.strip(), "server_name")
        if not _hostname_ok(server_name):
            raise CheckSpecError("server_name", f"{server_name!r} is not a valid host name")
    out["server_name"] = server_name
    out["verify"] = _bool(spec, "verify", True)
    _cert_days(spec, out)


_VALIDATORS: dict[str, Callable[[Mapping[str, Any], dict[str, Any]], None]] = {
    "http": _validate_http,
    "tcp": _validate_tcp,
    "dns": _validate_dns,
    "tls": _validate_tls,
}
