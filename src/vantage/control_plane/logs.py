"""What the control plane writes to its log, and what it never writes: credentials.

Two measures, so that no token reaches a log whatever a client sends (query strings, headers,
paths, websocket frames):

- the access log names the *route* a request matched (``GET /api/v1/checkpoints/{cp} 200``),
  never the request's own path, query string or headers; unmatched requests show ``-``;
- every line the process logs goes through :class:`RedactingFormatter`, which blanks the
  bootstrap admin token, anything shaped like an API token (``vt_…``), ``Bearer …`` values and
  ``token=…``-style parameters, including in tracebacks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

REDACTED = "[redacted]"
_PATTERNS = (
    re.compile(r"vt_[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)(\b(?:access_token|token|api[_-]?key|apikey|password|passwd|secret)=)[^&\s\"',;]+"),
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and everything shaped like a credential blanked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.re.groups else "") + REDACTED, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, arguments and traceback alike) is passed through :func:`redact`."""

    def __init__(self, fmt: str | None = None, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def install_redaction(secrets: Iterable[str], fmt: str) -> None:
    """Give every handler of the root logger a :class:`RedactingFormatter` (call after ``basicConfig``)."""
    formatter = RedactingFormatter(fmt, secrets)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)


def route_of(request: web.BaseRequest) -> str:
    """The matched route's pattern (``/api/v1/monitors/{id}``), or ``-``: never the request's own path."""
    match_info = getattr(request, "match_info", None)
    resource = getattr(getattr(match_info, "route", None), "resource", None)
    return resource.canonical if resource is not None else "-"


class AccessLogger(AbstractAccessLogger):
    """``<address> "<METHOD> <route>" <status> <bytes> <ms>ms``: nothing the client chose but the method."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        method = request.method if request.method in _METHODS else "OTHER"
        self.logger.info(
            '%s "%s %s" %d %d %.1fms',
            request.remote or "-", method, route_of(request), response.status, response.body_length, time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
