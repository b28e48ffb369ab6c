"""The ``imap`` check: greeting, CAPABILITY, implicit TLS or STARTTLS, optional LOGIN — each phase timed.

A handshake-only probe written on :mod:`vantage.checks.net` rather than an IMAP library: the
check needs five commands (CAPABILITY, STARTTLS, CAPABILITY, LOGIN, LOGOUT), and owning the
connection keeps what every other check guarantees — one resolution, connection only to a vetted
address, the certificate verified against the name (``aioimaplib`` and ``imaplib`` connect by
name themselves, so they would resolve again), and real per-phase timings.

Phases: ``connect_ms``, ``tls_ms`` (implicit handshake, or STARTTLS command plus handshake),
``banner_ms`` (the greeting), ``capability_ms`` and ``auth_ms``. Errors quote the tagged status
and the bracketed response code (``NO [AUTHENTICATIONFAILED]``), never the server's text, which
goes to ``details.server_reply`` (content).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from vantage.checks.net import (
    Connection,
    cert_info,
    expiry_warning,
    open_vetted,
    start_tls,
    tls_context,
    tls_session_info,
)
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.spec import parse_host_port

EXCERPT_CHARS = 1024
MAX_LINES = 200  # untagged lines accepted before a tagged answer
_LITERAL_RE = re.compile(rb"\{(\d{1,9})\+?\}\r?\n$")
_CODE_RE = re.compile(r"^\[([^\]]{1,200})\]")


class _Reply:
    def __init__(self, status: str, text: str, untagged: list[str]) -> None:
        self.status = status
        self.text = text
        self.untagged = untagged

    def code(self) -> str:
        match = _CODE_RE.match(self.text)
        return f"{self.status} [{match.group(1).split(' ', 1)[0]}]" if match else self.status


class _Session:
    def __init__(self, conn: Connection, probe: Probe) -> None:
        self.conn = conn
        self.probe = probe
        self.counter = 0

    async def line(self) -> str:
        """One response line, with any literals it announces appended (as text)."""
        out = bytearray()
        try:
            while True:
                chunk = await self.conn.reader.readuntil(b"\n")
                out += chunk
                match = _LITERAL_RE.search(chunk)
                if match is None:
                    break
                out += await self.conn.reader.readexactly(int(match.group(1)))
        except asyncio.IncompleteReadError:
            raise CheckFailure(f"server closed the connection during {self.probe.stage}") from None
        except asyncio.LimitOverrunError:
            raise CheckFailure(f"response line too long during {self.probe.stage}") from None
        except ConnectionError:
            raise CheckFailure(f"connection reset by the server during {self.probe.stage}") from None
        return out.decode("utf-8", "replace").rstrip("\r\n")

    async def send(self, data: bytes) -> None:
        try:
            self.conn.writer.write(data)
            await self.conn.writer.drain()
        except ConnectionError:
            raise CheckFailure(f"connection reset by the server during {self.probe.stage}") from None

    async def command(self, *parts: bytes) -> _Reply:
        """Send a command (``parts`` after the first follow a synchronising literal) and read its answer."""
        self.counter += 1
        tag = f"V{self.counter}"
        untagged: list[str] = []
        await self.send(tag.encode() + b" " + parts[0])
        for part in parts[1:]:
            reply = await self.line()
            if not reply.startswith("+"):
                return self._tagged(tag, reply, untagged)
            await self.send(part)
        for _ in range(MAX_LINES):
            reply = await self.line()
            if reply.startswith(tag + " "):
                return self._tagged(tag, reply, untagged)
            untagged.append(reply)
        raise CheckFailure(f"no tagged answer after {MAX_LINES} lines during {self.probe.stage}")

    def _tagged(self, tag: str, line: str, untagged: list[str]) -> _Reply:
        status, _, text = line[len(tag) + 1 :].partition(" ")
        status = status.upper()
        if status not in ("OK", "NO", "BAD"):
            raise CheckFailure(f"malformed IMAP answer during {self.probe.stage}")
        return _Reply(status, text, untagged)


def _capabilities(lines: list[str]) -> list[str] | None:
    for line in lines:
        upper = line.upper()
        if upper.startswith("* CAPABILITY "):
            return sorted(set(upper[len("* CAPABILITY ") :].split()))
        match = re.search(r"\[CAPABILITY ([^\]]*)\]", upper)
        if match:
            return sorted(set(match.group(1).split()))
    return None


def _astring(value: str) -> tuple[bytes, bytes | None]:
    """``value`` as an IMAP quoted string, or — for non-printable / non-ASCII text — a literal."""
    if all(0x20 <= ord(c) < 0x7F for c in value):
        return b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode("ascii") + b'"', None
    data = value.encode("utf-8")
    return b"{%d}\r\n" % len(data), data


async def run_imap(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``imap`` spec; raises :class:`CheckFailure` at the first failing phase."""
    host, port = parse_host_port(str(spec["target"]))
    server_name = str(spec["server_name"] or host)
    mode = str(spec["tls"])
    credential = options.credentials.get(spec["credential"]) if spec["credential"] else None
    if credential is not None:
        credential.require("username", "password", purpose="IMAP LOGIN")
    details = probe.details
    details["tls_mode"] = mode
    details["server_name"] = server_name
    warning_days = int(spec["cert_expiry_warning_days"])
    context = tls_context(bool(spec["verify_tls"]), options.ca_bundle)

    def record_tls() -> None:
        info = cert_info(conn)
        info.update(tls_session_info(conn))
        details["tls"] = info
        warning = expiry_warning(info, warning_days)
        if warning:
            probe.warnings.append(warning)

    conn = await open_vetted(host, port, options, probe)
    try:
        session = _Session(conn, probe)
        if mode == "implicit":
            await start_tls(conn, context, server_name, probe)
            record_tls()
        with probe.phase("the greeting", "banner_ms"):
            greeting = await session.line()
        details["banner"] = greeting[:EXCERPT_CHARS]
        kind = greeting.split(" ", 2)[1].upper() if greeting.startswith("* ") and " " in greeting[2:] else ""
        if kind not in ("OK", "PREAUTH"):
            raise CheckFailure(
                "the server refused the session (greeting is not * OK)"
                if kind == "BYE"
                else "not an IMAP greeting"
            )
        expected: str | None = spec["expect_banner"]
        if expected is not None and expected not in greeting:
            raise CheckFailure(f"expected {expected!r} not found in the IMAP greeting")

        async def capability() -> list[str]:
            with probe.phase("CAPABILITY", "capability_ms"):
                reply = await session.command(b"CAPABILITY\r\n")
            if reply.status != "OK":
                raise CheckFailure(f"CAPABILITY rejected ({reply.code()})")
            caps = _capabilities(reply.untagged) or []
            details["capabilities"] = caps
            return caps

        caps = await capability()
        if mode == "starttls":
            if "STARTTLS" not in caps:
                raise CheckFailure("the server does not offer STARTTLS")
            with probe.phase("STARTTLS", "tls_ms"):
                reply = await session.command(b"STARTTLS\r\n")
                if reply.status != "OK":
                    details["server_reply"] = reply.text[:EXCERPT_CHARS]
                    raise CheckFailure(f"STARTTLS rejected ({reply.code()})")
            await start_tls(conn, context, server_name, probe)
            record_tls()
            caps = await capability()  # RFC 3501: capabilities may change after STARTTLS

        if credential is not None:
            assert credential.username is not None and credential.password is not None
            if "LOGINDISABLED" in caps:
                raise CheckFailure("the server does not allow LOGIN here (LOGINDISABLED)")
            user, user_literal = _astring(credential.username)
            password, password_literal = _astring(credential.password)
            parts: list[bytes] = [b"LOGIN " + user]
            if user_literal is not None:
                parts.append(user_literal + b" " + password)
            else:
                parts[0] += b" " + password
            if password_literal is not None:
                parts.append(password_literal + b"\r\n")
            else:
                parts[-1] += b"\r\n"
            with probe.phase("LOGIN", "auth_ms"):
                reply = await session.command(*parts)
            if reply.status != "OK":
                details["server_reply"] = reply.text[:EXCERPT_CHARS]
                raise CheckFailure(f"login failed for credential {credential.name!r} ({reply.code()})")
            details["authenticated"] = True
        probe.stage = "LOGOUT"
        try:
            async with asyncio.timeout(1.0):
                await session.command(b"LOGOUT\r\n")
        except (CheckFailure, TimeoutError, OSError):
            pass  # the check has its answer; a server that drops LOGOUT is not a failure
    finally:
        conn.abort()
