"""The opening steps the ``smtp`` and ``imap`` checks share, on a connection of :mod:`.net`.

connect to a vetted address (``connect_ms``) → with ``tls: implicit``, the TLS handshake
(``tls_ms``) → the server's greeting (``banner_ms``, recorded as ``details.banner``, checked
against ``expect_banner``) → with ``tls: starttls``, the protocol's STARTTLS command and the
handshake (both in ``tls_ms``). Every handshake verifies the chain and the name against
``server_name`` (else the target's host) with the checkpoint's trust store, records
``details.tls`` (certificate, protocol, cipher) and warns of the certificate's expiry. The
session always ends with :meth:`Connection.abort`, which closes the socket through its
transport.

Owning the connection rather than handing a socket to a protocol library keeps what every check
guarantees: one resolution, a connection only to a vetted address, real per-phase timings. Error
messages quote reply codes, never the server's text, which goes to ``details.server_reply``
(response content, removed by ``strip_content``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

from vantage.checks.credentials import Credential
from vantage.checks.fields import (
    CERT_EXPIRY_WARNING_DAYS,
    CREDENTIAL,
    HOST_PORT_TARGET,
    SERVER_NAME,
    VERIFY_TLS,
    parse_host_port,
)
from vantage.checks.net import Connection, open_vetted, secure, tls_context
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import Conflicts, Field, Protect, Rule, Text

EXCERPT_CHARS = 1024
TLS_MODES = ("starttls", "implicit", "none")
TARGET = HOST_PORT_TARGET
PROTECT = Protect(content=frozenset({"banner", "server_reply"}))


def fields(default_tls: str) -> dict[str, Field]:
    """The spec fields of a mail check (after ``target``); ``tls`` defaults to ``default_tls``."""
    return {
        "tls": Text(choices=TLS_MODES, fold=str.lower, default=default_tls,
                    description="starttls: upgrade after the greeting; implicit: TLS from the first byte; "
                    "none: no TLS (any case)"),
        "verify_tls": VERIFY_TLS,
        "server_name": SERVER_NAME,
        "cert_expiry_warning_days": CERT_EXPIRY_WARNING_DAYS,
        "credential": CREDENTIAL,
        "expect_banner": Text(max_length=1000, description="text the server's greeting must contain"),
    }


#: A password never crosses the network in clear.
RULES: tuple[Rule, ...] = (
    Conflicts("credential", "tls", "none",
              "needs tls 'starttls' or 'implicit': the password must never cross the network in clear"),
)


class MailSession:
    """One SMTP or IMAP session: its settings from the spec and its connection once opened.

    ``protocol`` (``SMTP``/``IMAP``) and ``login`` (``AUTH``/``LOGIN``) name the steps in
    messages. Use as ``async with``: entering connects (and does implicit TLS), leaving aborts.
    """

    def __init__(
        self, spec: Mapping[str, Any], options: CheckOptions, probe: Probe, *, protocol: str, login: str
    ) -> None:
        self.host, self.port = parse_host_port(str(spec["target"]))
        self.server_name = str(spec["server_name"] or self.host)
        self.mode = str(spec["tls"])
        self.expect_banner: str | None = spec["expect_banner"]
        self.warning_days = int(spec["cert_expiry_warning_days"])
        self.protocol = protocol
        self.options = options
        self.probe = probe
        self.credential: Credential | None = None
        if spec["credential"]:
            self.credential = options.credentials.get(spec["credential"])
            self.credential.require("username", "password", purpose=f"{protocol} {login}")
        self.context = tls_context(bool(spec["verify_tls"]), options.ca_bundle)
        self._conn: Connection | None = None
        probe.details["tls_mode"] = self.mode
        probe.details["server_name"] = self.server_name

    async def __aenter__(self) -> Self:
        self._conn = await open_vetted(self.host, self.port, self.options, self.probe)
        if self.mode == "implicit":
            await self._secure("implicit TLS")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            self._conn.abort()

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the mail session is not connected")
        return self._conn

    async def _secure(self, during: str) -> None:
        cert, session = await secure(self.conn, self.context, self.server_name, self.probe, self.warning_days,
                                     during=during)
        self.probe.details["tls"] = {**cert, **session}

    async def starttls(self, request: Callable[[], Awaitable[None]]) -> None:
        """Ask for STARTTLS with ``request`` (which raises when the server refuses), then upgrade."""
        with self.probe.phase("STARTTLS", "tls_ms"):
            await request()
        await self._secure("STARTTLS")

    def greeting(self, text: str, refused: str | None) -> None:
        """Record the greeting; fail with ``refused`` when the protocol rejected it, then check ``expect_banner``."""
        self.probe.details["banner"] = text[:EXCERPT_CHARS]
        if refused is not None:
            raise CheckFailure(refused)
        if self.expect_banner is not None and self.expect_banner not in text:
            what = "SMTP banner" if self.protocol == "SMTP" else f"{self.protocol} greeting"
            raise CheckFailure(f"expected {self.expect_banner!r} not found in the {what}")

    def server_reply(self, text: str) -> None:
        """Keep a rejected command's reply text as content (never in the error)."""
        self.probe.details["server_reply"] = text[:EXCERPT_CHARS]

    async def readline(self) -> bytes:
        """One line from the server (with its line end)."""
        return await self._read(self.conn.readuntil(b"\n"))

    async def readexactly(self, size: int) -> bytes:
        return await self._read(self.conn.readexactly(size))

    async def _read(self, pending: Awaitable[bytes]) -> bytes:
        try:
            return await pending
        except asyncio.IncompleteReadError:
            raise CheckFailure(f"server closed the connection during {self.probe.stage}") from None
        except asyncio.LimitOverrunError:
            raise CheckFailure(f"response line too long during {self.probe.stage}") from None
        except ConnectionError:
            raise CheckFailure(f"connection reset by the server during {self.probe.stage}") from None

    async def send(self, data: bytes) -> None:
        try:
            self.conn.write(data)
            await self.conn.drain()
        except ConnectionError:
            raise CheckFailure(f"connection reset by the server during {self.probe.stage}") from None

    async def goodbye(self, command: str, farewell: Callable[[], Awaitable[object]]) -> None:
        """Say goodbye (``QUIT``/``LOGOUT``) within a second; a server that drops it is not a failure."""
        self.probe.stage = command
        try:
            async with asyncio.timeout(1.0):
                await farewell()
        except (CheckFailure, TimeoutError, OSError):
            pass
