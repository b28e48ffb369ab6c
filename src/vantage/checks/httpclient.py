"""The HTTP client of the ``http`` and ``http_multistep`` checks: one exchange per hop, redirects, assertions.

The client is deliberately small: it sends one request with ``Connection: close`` over a
connection made by :mod:`.net`, reads the status line and headers, then at most
``max_body_bytes`` of (de-chunked, decompressed) body and drops the connection. That is all a
monitor needs, and owning it gives real per-phase timings, connections only to vetted addresses,
and a hard bound on what is read.

:func:`fetch` follows redirects hop by hop (each hop a new exchange, its phases summed), turns
``POST`` into ``GET`` where browsers do, and never carries credentials (``Authorization``,
``Cookie``, ``Proxy-Authorization``, ``Host``) to another origin.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

from vantage.checks.fields import (
    CERT_EXPIRY_WARNING_DAYS,
    FOLLOW_REDIRECTS,
    MAX_BODY_BYTES,
    MAX_REDIRECTS,
    PARSED_TARGETS,
    VERIFY_TLS,
    normalize_url,
)
from vantage.checks.net import STREAM_LIMIT, Connection, open_vetted, secure, tls_context
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import JSON, CheckSpecError, Conflicts, Field, Rule, Text, caseless_pattern

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_HEADERS = 100
MAX_HEADER_VALUE = 8192
MAX_REQUEST_BODY = 1024 * 1024
MAX_STATUS_CODES = 100
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Headers whose value the client computes itself (message framing); a spec may not set them.
RESERVED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
#: An RFC 9110 token (a header name).
TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Request headers that identify the client to one origin and are dropped on a cross-origin redirect.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "host"})
_STATUS_RE = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?\r?\n")
_CHARSET_RE = re.compile(r"charset=\"?([A-Za-z0-9_.:-]+)", re.IGNORECASE)


@dataclass
class Response:
    """Status, headers and the (bounded) body of one hop."""

    status: int
    reason: str
    version: str
    headers: dict[str, str]
    body: bytes = b""
    truncated: bool = False
    lower: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.lower.get(name.lower())

    def text(self) -> str:
        """The body decoded with the charset of ``Content-Type`` (UTF-8 when none or unknown)."""
        match = _CHARSET_RE.search(self.header("content-type") or "")
        charset = match.group(1) if match else "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Request:
    """One request to send: the first of a step, or the next hop of a redirect."""

    url: str
    method: str
    headers: Mapping[str, str]
    body: str | None

    def redirected(self, resp: Response, hops: int) -> Request | None:
        """The next hop when ``resp`` redirects (``hops`` followed so far), else ``None``.

        Raises :class:`CheckFailure` after :data:`MAX_REDIRECTS` hops and for a ``Location``
        that is not a valid http(s) URL.
        """
        location = resp.header("location")
        if resp.status not in REDIRECT_STATUSES or not location:
            return None
        if hops >= MAX_REDIRECTS:
            raise CheckFailure(f"too many redirects (more than {MAX_REDIRECTS})")
        try:
            url = normalize_url(urljoin(self.url, location.strip()))
        except ValueError:
            raise CheckFailure(f"redirect {hops + 1} points to an invalid or unsupported URL") from None
        method, body = self.method, self.body
        if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
            method = "GET" if method != "HEAD" else method
            body = None
        headers = self.headers
        if urlsplit(url)[:2] != urlsplit(self.url)[:2]:  # never carry credentials to another origin
            headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
        return replace(self, url=url, method=method, headers=headers, body=body)


@dataclass(frozen=True)
class Origin:
    """Where a normalised URL's request goes: scheme, host, port, request target, ``Host`` header."""

    https: bool
    host: str
    port: int
    target: str
    host_header: str

    @staticmethod
    @functools.lru_cache(maxsize=PARSED_TARGETS)
    def of(url: str) -> Origin:
        """The origin of ``url`` (parsed once per URL: a monitor requests the same one every interval)."""
        parts = urlsplit(url)
        https = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if https else 80)
        shown = f"[{host}]" if ":" in host else host
        return Origin(
            https=https,
            host=host,
            port=port,
            target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
            host_header=shown if port == (443 if https else 80) else f"{shown}:{port}",
        )


def _build_request(request: Request, origin: Origin, user_agent: str) -> bytes:
    given = {k.lower() for k in request.headers} if request.headers else frozenset()
    lines = [f"{request.method} {origin.target} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {origin.host_header}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {user_agent}")
    if "accept" not in given:
        lines.append("Accept: */*")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    lines.append("Connection: close")
    payload = request.body.encode("utf-8") if request.body is not None else b""
    if request.body is not None or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(payload)}")
    lines.extend(f"{k}: {v}" for k, v in request.headers.items())
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8") + payload


def _parse_head(head: bytes) -> Response:
    match = _STATUS_RE.match(head)
    if not match:
        raise CheckFailure("malformed HTTP response: no valid status line")
    major, minor, status, reason = match.groups()
    lower: dict[str, str] = {}
    names: dict[str, str] = {}  # lower-case name -> the name as first sent
    last: str | None = None
    for line in head[match.end() :].decode("latin-1").split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t" and last is not None:  # obsolete line folding
            lower[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name:
            raise CheckFailure("malformed HTTP response: invalid header line")
        value = value.strip()
        key = name.lower()
        if key in lower:
            lower[key] += ", " + value
        else:
            lower[key] = value
            names[key] = name
        last = key
    return Response(
        status=int(status),
        reason=(reason or b"").decode("latin-1"),
        version=f"{major.decode()}.{minor.decode()}",
        headers={names[key]: value for key, value in lower.items()},
        lower=lower,
    )


async def _read_head(conn: Connection, probe: Probe) -> bytes:
    try:
        return await conn.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise CheckFailure(f"response headers exceed {STREAM_LIMIT} bytes") from None
    except asyncio.IncompleteReadError:
        raise CheckFailure(f"connection closed by {conn.peer_ip} while {probe.stage}") from None


class _BodyReader:
    """Reads a message body by its framing, decodes chunking and gzip/deflate, up to a limit."""

    def __init__(self, conn: Connection, resp: Response, limit: int) -> None:
        self.conn = conn
        self.limit = limit
        self.out = bytearray()
        encoding = (resp.header("content-encoding") or "").strip().lower()
        self.decoder: Any = None
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS)
        self.undecoded = encoding if encoding not in ("", "identity") and self.decoder is None else None
        self.truncated = False

    @property
    def full(self) -> bool:
        return len(self.out) >= self.limit

    def _feed(self, data: bytes) -> None:
        if self.decoder is not None:
            try:
                data = self.decoder.decompress(data, max(self.limit - len(self.out), 1))
            except zlib.error:
                raise CheckFailure("response body is not valid compressed data") from None
        room = self.limit - len(self.out)
        if len(data) > room:
            self.truncated = True
        self.out += data[:room]

    async def read_length(self, length: int | None) -> None:
        remaining = length
        while not self.full and (remaining is None or remaining > 0):
            want = 65536 if remaining is None else min(remaining, 65536)
            chunk = await self.conn.read(want)
            if not chunk:
                if remaining:
                    raise CheckFailure("connection closed before the end of the response body")
                return
            if remaining is not None:
                remaining -= len(chunk)
            self._feed(chunk)
        if self.full and (remaining is None or remaining > 0):
            self.truncated = True

    async def read_chunked(self) -> None:
        try:
            while not self.full:
                line = await self.conn.readuntil(b"\n")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise CheckFailure("malformed chunked response body") from None
                if size == 0:
                    return
                while size > 0 and not self.full:
                    chunk = await self.conn.read(min(size, 65536))
                    if not chunk:
                        raise asyncio.IncompleteReadError(b"", size)
                    size -= len(chunk)
                    self._feed(chunk)
                if size == 0:
                    await self.conn.readexactly(2)
        except asyncio.IncompleteReadError:
            raise CheckFailure("connection closed inside a chunked response body") from None
        self.truncated = True


async def _read_body(conn: Connection, resp: Response, limit: int, probe: Probe) -> None:
    with probe.phase("reading the response body"):
        reader = _BodyReader(conn, resp, limit)
        try:
            if "chunked" in (resp.header("transfer-encoding") or "").lower():
                await reader.read_chunked()
            else:
                length_text = resp.header("content-length")
                length = int(length_text) if length_text and length_text.strip().isdigit() else None
                await reader.read_length(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise CheckFailure("connection closed before the end of the response body") from None
        except asyncio.LimitOverrunError:
            raise CheckFailure("malformed chunked response body") from None
        resp.body = bytes(reader.out)
        resp.truncated = reader.truncated
        if reader.undecoded:
            probe.warnings.append(f"content-encoding {reader.undecoded!r} not decoded")


async def exchange(request: Request, spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> Response:
    """One request/response on a fresh connection; records TLS details (and an expiry warning) for https.

    ``spec`` supplies ``verify_tls``, ``max_body_bytes`` and ``cert_expiry_warning_days``.
    """
    origin = Origin.of(request.url)
    conn = await open_vetted(origin.host, origin.port, options, probe)
    try:
        if origin.https:
            ctx = tls_context(bool(spec["verify_tls"]), options.ca_bundle, ("http/1.1",))
            cert, session = await secure(conn, ctx, origin.host, probe, int(spec["cert_expiry_warning_days"]))
            probe.details["tls"] = {**cert, **session}
        else:
            probe.details.pop("tls", None)
        sent = time.perf_counter()
        with probe.phase("sending the request"):
            conn.write(_build_request(request, origin, options.user_agent))
            await conn.drain()
        with probe.phase("waiting for the response"):
            try:
                answered = await conn.wait_data()
            except ConnectionError:
                raise CheckFailure(f"connection reset by {conn.peer_ip} before the response") from None
            if not answered:
                raise CheckFailure(f"connection closed by {conn.peer_ip} without a response")
            probe.add_phase("first_byte_ms", (time.perf_counter() - sent) * 1000.0)
        with probe.phase("reading the response headers"):
            resp = _parse_head(await _read_head(conn, probe))
            while 100 <= resp.status < 200 and resp.status != 101:  # interim responses
                resp = _parse_head(await _read_head(conn, probe))
        no_body = request.method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        limit = int(spec["max_body_bytes"])
        if not no_body and limit > 0:
            await _read_body(conn, resp, limit, probe)
        return resp
    finally:
        conn.abort()


async def fetch(
    request: Request,
    spec: Mapping[str, Any],
    options: CheckOptions,
    probe: Probe,
    *,
    redirects: list[str] | None = None,
    prepare: Callable[[Request], Request] | None = None,
    received: Callable[[Request, Response], None] | None = None,
) -> tuple[Response, Request]:
    """Send ``request`` and follow its redirects (when ``spec["follow_redirects"]``), hop by hop.

    Each URL redirected to is appended to ``redirects`` as it is followed. ``prepare`` may change
    each hop just before it is sent (the cookie jar adds its cookies), ``received`` sees each hop's
    answer. Returns the last response and the request that got it.
    """
    hops = 0
    while True:
        sent = prepare(request) if prepare is not None else request
        resp = await exchange(sent, spec, options, probe)
        if received is not None:
            received(sent, resp)
        following = request.redirected(resp, hops) if spec["follow_redirects"] else None
        if following is None:
            return resp, request
        hops += 1
        if redirects is not None:
            redirects.append(following.url)
        request = following


def describe_expected(expected: list[int] | None) -> str:
    if expected is None:
        return "200-399"
    if len(expected) == 1:
        return str(expected[0])
    return "one of " + ", ".join(str(s) for s in expected)


def check_response(assertions: Mapping[str, Any], resp: Response, text: str, max_body_bytes: int) -> None:
    """Raise :class:`CheckFailure` unless ``resp`` meets ``expected_status``, ``keyword`` and ``keyword_absent``."""
    expected: list[int] | None = assertions["expected_status"]
    if not (200 <= resp.status <= 399 if expected is None else resp.status in expected):
        raise CheckFailure(f"expected status {describe_expected(expected)}, got {resp.status}")
    keyword: str | None = assertions["keyword"]
    if keyword is not None and keyword not in text:
        raise CheckFailure(f"keyword {keyword!r} not found in the first {max_body_bytes} bytes")
    absent: str | None = assertions["keyword_absent"]
    if absent is not None and absent in text:
        raise CheckFailure(f"keyword {absent!r} found in the response body but must be absent")


# --- the spec fields of a request and its assertions ---------------------------------------------


class Headers(Field):
    """Request headers: an object of header names (RFC 9110 tokens, each once in any case) to one-line values."""

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise CheckSpecError(name, "must be an object of header names to string values")
        if len(value) > MAX_HEADERS:
            raise CheckSpecError(name, f"at most {MAX_HEADERS} headers")
        out: dict[str, str] = {}
        seen: set[str] = set()
        for header, text in value.items():
            sub = f"{name}.{header}"
            if not isinstance(header, str) or not TOKEN_RE.match(header):
                raise CheckSpecError(sub, "is not a valid HTTP header name")
            if header.lower() in RESERVED_HEADERS:
                raise CheckSpecError(sub, "is set by the check itself and cannot be overridden")
            if header.lower() in seen:
                raise CheckSpecError(sub, "is given twice (header names are case-insensitive)")
            seen.add(header.lower())
            if not isinstance(text, str):
                raise CheckSpecError(sub, "value must be a string")
            if any(c in text for c in "\r\n\x00") or len(text) > MAX_HEADER_VALUE:
                raise CheckSpecError(
                    sub, f"value must be one line without NUL, at most {MAX_HEADER_VALUE} characters"
                )
            out[header] = text
        return out

    def value_schema(self) -> JSON:
        return {
            "type": "object",
            "maxProperties": MAX_HEADERS,
            "propertyNames": {"pattern": TOKEN_RE.pattern, "not": {"pattern": caseless_pattern(sorted(RESERVED_HEADERS))}},
            "additionalProperties": {"type": "string", "maxLength": MAX_HEADER_VALUE, "pattern": r"^[^\r\n\u0000]*$"},
        }


class ExpectedStatus(Field):
    """One status code or a list of them; normalised to a sorted list without duplicates."""

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> list[int]:
        items = value if isinstance(value, list) else [value]
        if not items or len(items) > MAX_STATUS_CODES:
            raise CheckSpecError(name, f"must be a status code or a list of 1 to {MAX_STATUS_CODES} codes")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
                raise CheckSpecError(name, "status codes must be integers between 100 and 599")
        return sorted(set(items))

    def value_schema(self) -> JSON:
        code = {"type": "integer", "minimum": 100, "maximum": 599}
        return {"anyOf": [code, {"type": "array", "items": code, "minItems": 1, "maxItems": MAX_STATUS_CODES}]}


#: One request and the assertions on its answer (the ``http`` check, each ``http_multistep`` step).
REQUEST_FIELDS: dict[str, Field] = {
    "method": Text(choices=HTTP_METHODS, fold=str.upper, default="GET", description="request method (any case)"),
    "headers": Headers(default={}, description="request headers; Content-Length, Transfer-Encoding and "
                       "Connection are the client's own. Dropped on a redirect to another origin: "
                       "Authorization, Cookie, Proxy-Authorization, Host"),
    "body": Text(max_length=MAX_REQUEST_BODY, allow_empty=True, description="request body (UTF-8)"),
    "expected_status": ExpectedStatus(description="status code(s) that pass (default: 200-399)"),
    "keyword": Text(description="text the response body must contain (needs a body: not with HEAD)"),
    "keyword_absent": Text(description="text the response body must not contain (not with HEAD)"),
}
#: Keywords need a response body: not with HEAD.
NO_KEYWORD_WITH_HEAD: tuple[Rule, ...] = tuple(
    Conflicts(keyword, "method", "HEAD", "cannot be checked with method HEAD (no response body)")
    for keyword in ("keyword", "keyword_absent")
)
#: How a response is read: the same for the ``http`` check and every ``http_multistep`` step.
RESPONSE_FIELDS: dict[str, Field] = {
    "max_body_bytes": MAX_BODY_BYTES,
    "follow_redirects": FOLLOW_REDIRECTS,
    "verify_tls": VERIFY_TLS,
    "cert_expiry_warning_days": CERT_EXPIRY_WARNING_DAYS,
}
