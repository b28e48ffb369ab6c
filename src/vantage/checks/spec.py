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
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from vantage import contract

CHECK_TYPES = ("http", "tcp", "dns", "tls", "ssh", "postgres", "mysql", "smtp", "imap", "http_multistep")
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
DATABASE_FIELDS = frozenset(
    {"tls", "server_name", "cert_expiry_warning_days", "database", "credential", "query", "expected"}
)
MAIL_FIELDS = frozenset(
    {"tls", "verify_tls", "server_name", "cert_expiry_warning_days", "credential", "expect_banner"}
)
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
    "ssh": COMMON_FIELDS | {"host_key_sha256", "credential", "sftp"},
    "postgres": COMMON_FIELDS | DATABASE_FIELDS,
    "mysql": COMMON_FIELDS | DATABASE_FIELDS,
    "smtp": COMMON_FIELDS | MAIL_FIELDS | {"ehlo_name"},
    "imap": COMMON_FIELDS | MAIL_FIELDS,
    "http_multistep": COMMON_FIELDS
    | {"steps", "credential", "follow_redirects", "verify_tls", "cert_expiry_warning_days", "max_body_bytes"},
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


def _credential(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    """``credential``: the name of a secret in the checkpoint's credentials file (never a value).

    Whether the checkpoint has that name is checked by the control plane when the monitor is
    created (it knows the names each checkpoint declares) and by the agent when it runs.
    """
    name = _str(spec, "credential", max_len=64)
    if name is not None and not contract.is_valid("credential_name", name):
        raise CheckSpecError(
            "credential",
            f"must be a credential name ({contract.RULES['credential_name'][1]}), not a secret value",
        )
    out["credential"] = name


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


SSH_FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
MAX_HOST_KEY_PINS = 16
SFTP_FIELDS = ("list_dir", "file_exists")
DB_TLS_MODES = ("disable", "require", "verify-full")
MAX_QUERY = 4096
#: First keywords a ``query`` may start with: reads only (a guard against mistakes; the
#: least-privilege account and the read-only transaction are the real guards).
READ_QUERY_KEYWORDS = ("SELECT", "WITH", "SHOW", "VALUES", "TABLE")
_FIRST_WORD_RE = re.compile(r"^\s*\(*\s*([A-Za-z]+)")


def _host_key_pins(spec: Mapping[str, Any]) -> list[str] | None:
    value = _get(spec, "host_key_sha256")
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_HOST_KEY_PINS:
        raise CheckSpecError("host_key_sha256", f"must be a fingerprint or a list of 1 to {MAX_HOST_KEY_PINS}")
    pins: list[str] = []
    for i, item in enumerate(items):
        text = item.strip().rstrip("=") if isinstance(item, str) else ""
        if text and not text.startswith("SHA256:"):
            text = "SHA256:" + text
        if not SSH_FINGERPRINT_RE.match(text):
            raise CheckSpecError(
                f"host_key_sha256.{i}",
                "must be an OpenSSH SHA-256 fingerprint 'SHA256:<43 base64 characters>' "
                "(as `ssh-keygen -lf` prints it, or as this check reports it)",
            )
        if text not in pins:
            pins.append(text)
    return pins


def _path(block: Mapping[str, Any], prefix: str, name: str) -> str | None:
    value = block.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_FIELD or "\x00" in value:
        raise CheckSpecError(f"{prefix}.{name}", f"must be a non-empty path without NUL, at most {MAX_TEXT_FIELD} characters")
    return value


def _validate_ssh(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["target"] = format_host_port(*parse_host_port(_required_target(spec)))
    out["host_key_sha256"] = _host_key_pins(spec)
    _credential(spec, out)
    if out["credential"] is not None and out["host_key_sha256"] is None:
        raise CheckSpecError(
            "host_key_sha256",
            "is required with credential: a login to an unpinned server could be answered by an "
            "impostor; run the check without credential once and pin the fingerprint it reports",
        )
    sftp = _get(spec, "sftp")
    if sftp is not None:
        if not isinstance(sftp, Mapping):
            raise CheckSpecError("sftp", f"must be an object with {' and/or '.join(SFTP_FIELDS)}")
        for key in sftp:
            if key not in SFTP_FIELDS:
                raise CheckSpecError(f"sftp.{key}", f"unknown field (allowed: {', '.join(SFTP_FIELDS)})")
        sftp = {name: _path(sftp, "sftp", name) for name in SFTP_FIELDS}
        if all(v is None for v in sftp.values()):
            raise CheckSpecError("sftp", f"needs at least one of {', '.join(SFTP_FIELDS)}")
        if out["credential"] is None:
            raise CheckSpecError("sftp", "needs credential: SFTP runs after a login")
    out["sftp"] = sftp


def _scalar(value: Any) -> bool:
    return value is not None and (isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)))


def _validate_database(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["target"] = format_host_port(*parse_host_port(_required_target(spec)))
    tls = (_str(spec, "tls") or "verify-full").lower()
    if tls not in DB_TLS_MODES:
        raise CheckSpecError("tls", f"must be one of {', '.join(DB_TLS_MODES)}")
    out["tls"] = tls
    server_name = _str(spec, "server_name", max_len=253)
    if server_name is not None:
        server_name = _idna(server_name.strip(), "server_name")
        if not _hostname_ok(server_name):
            raise CheckSpecError("server_name", f"{server_name!r} is not a valid host name")
    out["server_name"] = server_name
    _cert_days(spec, out)
    database = _str(spec, "database", max_len=64)
    if database is not None and _CTL_RE.search(database.replace(" ", "")):
        raise CheckSpecError("database", "must not contain control characters")
    out["database"] = database
    _credential(spec, out)
    if database is not None and out["credential"] is None:
        raise CheckSpecError("database", "needs credential: the database is chosen at login")
    query = _str(spec, "query", max_len=MAX_QUERY)
    if query is not None:
        query = query.strip().rstrip(";").rstrip()
        match = _FIRST_WORD_RE.match(query)
        if match is None or match.group(1).upper() not in READ_QUERY_KEYWORDS:
            raise CheckSpecError(
                "query", f"must be one read-only statement starting with {', '.join(READ_QUERY_KEYWORDS)}"
            )
        if out["credential"] is None:
            raise CheckSpecError("query", "needs credential: the query runs after a login")
    out["query"] = query
    expected = _get(spec, "expected")
    if expected is not None:
        if query is None:
            raise CheckSpecError("expected", "needs query")
        if isinstance(expected, list):
            if not 1 <= len(expected) <= MAX_EXPECTED:
                raise CheckSpecError("expected", f"a row must have 1 to {MAX_EXPECTED} values")
            for i, item in enumerate(expected):
                if not _scalar(item) or (isinstance(item, str) and len(item) > MAX_TEXT_FIELD):
                    raise CheckSpecError(f"expected.{i}", "must be a string, number or boolean")
            expected = list(expected)
        elif not _scalar(expected) or (isinstance(expected, str) and len(expected) > MAX_TEXT_FIELD):
            raise CheckSpecError(
                "expected", "must be a string, number or boolean (first column) or a list of them (first row)"
            )
    out["expected"] = expected


MAIL_TLS_MODES = ("starttls", "implicit", "none")
MAIL_TLS_DEFAULT = {"smtp": "starttls", "imap": "implicit"}


def _validate_mail(spec: Mapping[str, Any], out: dict[str, Any], check_type: str) -> None:
    out["target"] = format_host_port(*parse_host_port(_required_target(spec)))
    tls = (_str(spec, "tls") or MAIL_TLS_DEFAULT[check_type]).lower()
    if tls not in MAIL_TLS_MODES:
        raise CheckSpecError("tls", f"must be one of {', '.join(MAIL_TLS_MODES)}")
    out["tls"] = tls
    out["verify_tls"] = _bool(spec, "verify_tls", True)
    server_name = _str(spec, "server_name", max_len=253)
    if server_name is not None:
        server_name = _idna(server_name.strip(), "server_name")
        if not _hostname_ok(server_name):
            raise CheckSpecError("server_name", f"{server_name!r} is not a valid host name")
    out["server_name"] = server_name
    _cert_days(spec, out)
    _credential(spec, out)
    if out["credential"] is not None and tls == "none":
        raise CheckSpecError(
            "credential", "needs tls 'starttls' or 'implicit': the password must never cross the network in clear"
        )
    out["expect_banner"] = _str(spec, "expect_banner", max_len=1000)


def _validate_smtp(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    _validate_mail(spec, out, "smtp")
    ehlo_name = _str(spec, "ehlo_name", max_len=253)
    if ehlo_name is not None:
        ehlo_name = _idna(ehlo_name.strip(), "ehlo_name")
        if not _hostname_ok(ehlo_name):
            raise CheckSpecError("ehlo_name", f"{ehlo_name!r} is not a valid host name")
    out["ehlo_name"] = ehlo_name


def _validate_imap(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    _validate_mail(spec, out, "imap")


# --- http_multistep ---------------------------------------------------------------------------

MAX_STEPS = 10
MAX_EXTRACTS = 20
MAX_JSON_ASSERTIONS = 20
MAX_REGEX = 1000
STEP_FIELDS = frozenset(
    {"name", "method", "url", "headers", "body", "expected_status", "keyword", "keyword_absent", "json", "extract"}
)
EXTRACT_SOURCES = ("json", "header", "regex")
#: ``${name}`` references an extracted variable, ``${credential.username}`` / ``${credential.password}``
#: the monitor's credential; ``$$`` is a literal ``$``. (Not ``{{ }}``: Ansible would template it.)
VARIABLE_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
CREDENTIAL_VARIABLES = frozenset({"credential.username", "credential.password"})
_JSON_PATH_TOKEN_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\['([^']*)'\]")


def parse_json_path(path: str) -> list[str | int]:
    """Parse the JSON path subset ``$.a.b[0]["c d"]`` into keys and indexes (``$`` alone: the root).

    Raises ``ValueError`` describing the first unparsable position.
    """
    if not path.startswith("$"):
        raise ValueError("must start with '$' (e.g. $.data.token or $.items[0].id)")
    out: list[str | int] = []
    pos = 1
    while pos < len(path):
        match = _JSON_PATH_TOKEN_RE.match(path, pos)
        if match is None:
            raise ValueError(f"cannot parse at position {pos}: use .name, [index] or [\"name\"]")
        name, index, dq, sq = match.groups()
        if index is not None:
            out.append(int(index))
        elif dq is not None:
            out.append(re.sub(r"\\(.)", r"\1", dq))
        else:
            out.append(name if name is not None else sq)
        pos = match.end()
    return out


def template_variables(text: str) -> list[str]:
    """The variable names ``text`` references (``${name}``), in order; ``$$`` is not one."""
    return [m.group(1) for m in VARIABLE_RE.finditer(text) if m.group(0) != "$$"]


def _check_references(text: str, field: str, known: set[str], has_credential: bool) -> None:
    for name in template_variables(text):
        if name in CREDENTIAL_VARIABLES:
            if not has_credential:
                raise CheckSpecError(field, f"${{{name}}} needs the monitor's credential field")
            continue
        if not VARIABLE_NAME_RE.match(name):
            raise CheckSpecError(field, f"${{{name}}} is not a valid variable reference")
        if name not in known:
            raise CheckSpecError(
                field, f"${{{name}}} is not extracted by an earlier step (known: {', '.join(sorted(known)) or 'none'})"
            )


def _placeholder(text: str) -> str:
    return VARIABLE_RE.sub(lambda m: "$" if m.group(0) == "$$" else "x", text)


def _validate_extract(value: Any, field: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or not 1 <= len(value) <= MAX_EXTRACTS:
        raise CheckSpecError(field, f"must be an object of 1 to {MAX_EXTRACTS} variable names to sources")
    out: dict[str, dict[str, Any]] = {}
    for name, source in value.items():
        sub = f"{field}.{name}"
        if not isinstance(name, str) or not VARIABLE_NAME_RE.match(name):
            raise CheckSpecError(sub, "variable names are letters, digits and '_', not starting with a digit")
        if not isinstance(source, Mapping):
            raise CheckSpecError(sub, f"must be an object with one of {', '.join(EXTRACT_SOURCES)}")
        kinds = [k for k in EXTRACT_SOURCES if k in source]
        extra = sorted(set(source) - set(EXTRACT_SOURCES) - {"group"})
        if len(kinds) != 1 or extra:
            raise CheckSpecError(sub, f"must have exactly one of {', '.join(EXTRACT_SOURCES)} (and group for regex)")
        kind = kinds[0]
        text = source[kind]
        if not isinstance(text, str) or not text or len(text) > MAX_REGEX:
            raise CheckSpecError(f"{sub}.{kind}", f"must be a non-empty string of at most {MAX_REGEX} characters")
        item: dict[str, Any] = {kind: text}
        if kind == "json":
            try:
                parse_json_path(text)
            except ValueError as exc:
                raise CheckSpecError(f"{sub}.json", str(exc)) from None
        elif kind == "header":
            if not _TOKEN_RE.match(text):
                raise CheckSpecError(f"{sub}.header", "is not a valid HTTP header name")
        else:
            try:
                pattern = re.compile(text)
            except re.error as exc:
                raise CheckSpecError(f"{sub}.regex", f"invalid regular expression: {exc}") from None
            group = source.get("group", 1 if pattern.groups else 0)
            if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group <= pattern.groups:
                raise CheckSpecError(f"{sub}.group", f"must be an integer between 0 and {pattern.groups}")
            item["group"] = group
        if kind != "regex" and "group" in source:
            raise CheckSpecError(f"{sub}.group", "applies to regex only")
        out[name] = item
    return out


def _validate_json_assertions(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_JSON_ASSERTIONS:
        raise CheckSpecError(field, f'must be a list of 1 to {MAX_JSON_ASSERTIONS} {{"path", "equals"}} objects')
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        sub = f"{field}.{i}"
        if not isinstance(item, Mapping) or set(item) != {"path", "equals"}:
            raise CheckSpecError(sub, 'must be an object with exactly "path" and "equals"')
        path = item["path"]
        if not isinstance(path, str) or len(path) > MAX_TEXT_FIELD:
            raise CheckSpecError(f"{sub}.path", "must be a JSON path string")
        try:
            parse_json_path(path)
        except ValueError as exc:
            raise CheckSpecError(f"{sub}.path", str(exc)) from None
        out.append({"path": path, "equals": item["equals"]})
    return out


def _validate_step(
    step: Any, i: int, base: str, common: dict[str, Any], known: set[str], has_credential: bool
) -> dict[str, Any]:
    prefix = f"steps.{i}"
    if not isinstance(step, Mapping):
        raise CheckSpecError(prefix, "must be an object")
    for key in step:
        if key not in STEP_FIELDS:
            hint = difflib.get_close_matches(str(key), sorted(STEP_FIELDS), n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise CheckSpecError(f"{prefix}.{key}", f"unknown step field{suffix}")
    name = step.get("name", f"step {i + 1}")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise CheckSpecError(f"{prefix}.name", "must be a non-empty string of at most 200 characters")
    url = step.get("url")
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_TARGET_LENGTH:
        raise CheckSpecError(f"{prefix}.url", "is required: an absolute http(s) URL or a path relative to target")
    url = url.strip()
    _check_references(url, f"{prefix}.url", known, has_credential)
    try:
        normalize_url(urljoin(base, _placeholder(url)))
    except CheckSpecError as exc:
        raise CheckSpecError(f"{prefix}.url", exc.message) from None
    # The single-request validator checks method, headers, body and the assertions.
    single = {k: step[k] for k in ("method", "headers", "body", "expected_status", "keyword", "keyword_absent") if k in step}
    single["target"] = base
    single["max_body_bytes"] = common["max_body_bytes"]
    probe: dict[str, Any] = {}
    try:
        _validate_http(single, probe)
    except CheckSpecError as exc:
        raise CheckSpecError(f"{prefix}.{exc.field}", exc.message) from None
    out: dict[str, Any] = {"name": name.strip(), "url": url}
    for key in ("method", "headers", "body", "expected_status", "keyword", "keyword_absent"):
        out[key] = probe[key]
    for hname, hvalue in out["headers"].items():
        _check_references(hvalue, f"{prefix}.headers.{hname}", known, has_credential)
    if out["body"] is not None:
        _check_references(out["body"], f"{prefix}.body", known, has_credential)
    out["json"] = (
        _validate_json_assertions(step["json"], f"{prefix}.json") if step.get("json") is not None else None
    )
    out["extract"] = (
        _validate_extract(step["extract"], f"{prefix}.extract") if step.get("extract") is not None else None
    )
    reads_body = bool(out["json"]) or any("header" not in e for e in (out["extract"] or {}).values())
    if reads_body and (out["method"] == "HEAD" or common["max_body_bytes"] == 0):
        raise CheckSpecError(prefix, "reads the response body, which method HEAD or max_body_bytes 0 rule out")
    known.update(out["extract"] or {})
    return out


def _validate_http_multistep(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["target"] = normalize_url(_required_target(spec))
    out["follow_redirects"] = _bool(spec, "follow_redirects", True)
    out["verify_tls"] = _bool(spec, "verify_tls", True)
    _cert_days(spec, out)
    out["max_body_bytes"] = _int(spec, "max_body_bytes", MAX_BODY_BYTES_DEFAULT, 0, MAX_BODY_BYTES_LIMIT)
    _credential(spec, out)
    steps = _get(spec, "steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise CheckSpecError("steps", f"must be a list of 1 to {MAX_STEPS} steps")
    known: set[str] = set()
    out["steps"] = [
        _validate_step(step, i, out["target"], out, known, out["credential"] is not None)
        for i, step in enumerate(steps)
    ]


_VALIDATORS: dict[str, Callable[[Mapping[str, Any], dict[str, Any]], None]] = {
    "http": _validate_http,
    "tcp": _validate_tcp,
    "dns": _validate_dns,
    "tls": _validate_tls,
    "ssh": _validate_ssh,
    "postgres": _validate_database,
    "mysql": _validate_database,
    "smtp": _validate_smtp,
    "imap": _validate_imap,
    "http_multistep": _validate_http_multistep,
}
