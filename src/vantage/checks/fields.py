"""Field declarations several check types share, and the host and URL parsing behind them.

A check type module imports what it needs from here (targets, TLS options, the credential,
redirects, body limits) instead of declaring it again, so that each rule and message exists once.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import quote, urlsplit, urlunsplit

from vantage import contract
from vantage.checks.schema import Boolean, CheckSpecError, Integer, Text

MAX_TARGET_LENGTH = 2048
MAX_REDIRECTS = 10
MAX_BODY_BYTES_DEFAULT = 65536
MAX_BODY_BYTES_LIMIT = 16 * 1024 * 1024
CERT_WARNING_DAYS_DEFAULT = 14

_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
#: Whitespace and control characters, which no host name, URL or database name contains.
CTL_RE = re.compile(r"[\x00-\x20\x7f]")


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def hostname_ok(host: str) -> bool:
    """True for an IP literal or a syntactically valid DNS host name (IDNA already applied)."""
    if is_ip(host):
        return True
    name = host.removesuffix(".")
    if not name or len(name) > 253:
        return False
    return all(_LABEL_RE.match(label) for label in name.split("."))


def idna(host: str, field: str) -> str:
    """``host`` in its ASCII (IDNA) form, lower case."""
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise CheckSpecError(field, f"host name {host!r} is not a valid internationalised name") from None


#: How many distinct targets the parsers below remember: a monitor's target is parsed when its spec
#: is validated and again when it runs, every interval; the answer never changes.
PARSED_TARGETS = 1024


@functools.lru_cache(maxsize=PARSED_TARGETS)
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
        host = idna(host, field)
        if not hostname_ok(host):
            raise CheckSpecError(field, f"{host!r} is not a valid host name or IP address")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise CheckSpecError(field, "port must be a number between 1 and 65535")
    return host, int(port_text)


def format_host_port(host: str, port: int) -> str:
    """The inverse of :func:`parse_host_port`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.lru_cache(maxsize=PARSED_TARGETS)
def normalize_url(raw: str, field: str = "target") -> str:
    """Validate an http(s) URL and return it normalised (IDNA host, percent-encoded path, no fragment)."""
    if CTL_RE.search(raw):
        raise CheckSpecError(field, "URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise CheckSpecError(field, f"invalid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise CheckSpecError(field, "URL scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise CheckSpecError(field, "credentials in the URL are not supported; use headers.Authorization")
    host = parts.hostname
    if not host:
        raise CheckSpecError(field, "URL has no host")
    if ":" not in host:
        host = idna(host, field)
    if not hostname_ok(host):
        raise CheckSpecError(field, f"{host!r} is not a valid host name or IP address")
    if port == 0:
        raise CheckSpecError(field, "port must be between 1 and 65535")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~") or "/"
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    return urlunsplit((parts.scheme.lower(), netloc, path, query, ""))


def host_name(value: str, field: str) -> str:
    """A host name (or IP literal) in its ASCII form."""
    name = idna(value.strip(), field)
    if not hostname_ok(name):
        raise CheckSpecError(field, f"{name!r} is not a valid host name")
    return name


def _host_port(value: str, field: str) -> str:
    return format_host_port(*parse_host_port(value.strip(), field))


def _url(value: str, field: str) -> str:
    return normalize_url(value.strip(), field)


def _credential_name(value: str, field: str) -> str:
    if not contract.is_valid("credential_name", value):
        raise CheckSpecError(
            field, f"must be a credential name ({contract.RULES['credential_name'][1]}), not a secret value"
        )
    return value


#: ``host:port`` as the target (IPv6 as ``[::1]:443``); normalised to the IDNA, lower-case host.
HOST_PORT_TARGET = Text(
    max_length=MAX_TARGET_LENGTH, required=True, normalize=_host_port,
    pattern=r"^\s*(?:\[[0-9A-Fa-f:.]+(?:%[^\]\s]+)?\]|[^\s:\[\]]+):[0-9]{1,5}\s*$",
    description="host:port to connect to (IPv6 as [::1]:443); the name is resolved once and every address vetted",
)
#: An http(s) URL as the target; normalised (IDNA host, percent-encoded path, no fragment).
URL_TARGET = Text(
    max_length=MAX_TARGET_LENGTH, required=True, normalize=_url,
    pattern=r"^\s*[Hh][Tt][Tt][Pp][Ss]?://\S+\s*$",
    description="http or https URL, without credentials; the fragment is dropped",
)
SERVER_NAME = Text(
    max_length=253, normalize=host_name, pattern=r"^\s*\S+\s*$",
    description="name for SNI and the certificate check (default: the target's host)",
)
VERIFY_TLS = Boolean(default=True, description="verify the certificate chain and name (system store plus the checkpoint's CA bundle)")
CERT_EXPIRY_WARNING_DAYS = Integer(
    0, 3650, default=CERT_WARNING_DAYS_DEFAULT,
    description="warn when the certificate expires within this many days (0: only once expired)",
)
CREDENTIAL = Text(
    max_length=64, normalize=_credential_name, pattern=f"^{contract.RULES['credential_name'][0]}$",
    description="name of a credential in the checkpoint's credentials file (never a secret value)",
)
FOLLOW_REDIRECTS = Boolean(default=True, description=f"follow up to {MAX_REDIRECTS} redirects")
MAX_BODY_BYTES = Integer(
    0, MAX_BODY_BYTES_LIMIT, default=MAX_BODY_BYTES_DEFAULT,
    description="read at most this many bytes of a response body (after decompression)",
)
