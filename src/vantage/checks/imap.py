"""The ``imap`` check: greeting, CAPABILITY, implicit TLS or STARTTLS, optional LOGIN — each phase timed.

A handshake-only probe on the shared mail session (:mod:`vantage.checks.mail`) rather than an IMAP
library: the check needs five commands (CAPABILITY, STARTTLS, CAPABILITY, LOGIN, LOGOUT), and
``aioimaplib`` and ``imaplib`` connect by name themselves (a second resolution would bypass the
address vetting).

Phases: ``connect_ms``, ``tls_ms`` (implicit handshake, or STARTTLS command plus handshake),
``banner_ms`` (the greeting), ``capability_ms`` and ``auth_ms``. Errors quote the tagged status
and the bracketed response code (``NO [AUTHENTICATIONFAILED]``), never the server's text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vantage.checks import mail
from vantage.checks.mail import MailSession
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import CheckType

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


class _Imap:
    def __init__(self, session: MailSession) -> None:
        self.session = session
        self.counter = 0

    async def line(self) -> str:
        """One response line, with any literals it announces appended (as text)."""
        out = bytearray()
        while True:
            chunk = await self.session.readline()
            out += chunk
            match = _LITERAL_RE.search(chunk)
            if match is None:
                break
            out += await self.session.readexactly(int(match.group(1)))
        return out.decode("utf-8", "replace").rstrip("\r\n")

    async def command(self, *parts: bytes) -> _Reply:
        """Send a command (``parts`` after the first follow a synchronising literal) and read its answer."""
        self.counter += 1
        tag = f"V{self.counter}"
        untagged: list[str] = []
        await self.session.send(tag.encode() + b" " + parts[0])
        for part in parts[1:]:
            reply = await self.line()
            if not reply.startswith("+"):
                return self._tagged(tag, reply, untagged)
            await self.session.send(part)
        for _ in range(MAX_LINES):
            reply = await self.line()
            if reply.startswith(tag + " "):
                return self._tagged(tag, reply, untagged)
            untagged.append(reply)
        raise CheckFailure(f"no tagged answer after {MAX_LINES} lines during {self.session.probe.stage}")

    def _tagged(self, tag: str, line: str, untagged: list[str]) -> _Reply:
        status, _, text = line[len(tag) + 1 :].partition(" ")
        status = status.upper()
        if status not in ("OK", "NO", "BAD"):
            raise CheckFailure(f"malformed IMAP answer during {self.session.probe.stage}")
        return _Reply(status, text, untagged)

    async def capability(self) -> list[str]:
        with self.session.probe.phase("CAPABILITY", "capability_ms"):
            reply = await self.command(b"CAPABILITY\r\n")
        if reply.status != "OK":
            raise CheckFailure(f"CAPABILITY rejected ({reply.code()})")
        caps = _capabilities(reply.untagged) or []
        self.session.probe.details["capabilities"] = caps
        return caps

    async def starttls(self) -> None:
        reply = await self.command(b"STARTTLS\r\n")
        if reply.status != "OK":
            self.session.server_reply(reply.text)
            raise CheckFailure(f"STARTTLS rejected ({reply.code()})")


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


def _login_parts(username: str, password: str) -> list[bytes]:
    """``LOGIN user password`` split at the synchronising literals it needs."""
    user, user_literal = _astring(username)
    secret, secret_literal = _astring(password)
    parts: list[bytes] = [b"LOGIN " + user]
    if user_literal is not None:
        parts.append(user_literal + b" " + secret)
    else:
        parts[0] += b" " + secret
    if secret_literal is not None:
        parts.append(secret_literal + b"\r\n")
    else:
        parts[-1] += b"\r\n"
    return parts


async def run_imap(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``imap`` spec; raises :class:`CheckFailure` at the first failing phase."""
    async with MailSession(spec, options, probe, protocol="IMAP", login="LOGIN") as session:
        imap = _Imap(session)
        with probe.phase("the greeting", "banner_ms"):
            greeting = await imap.line()
        kind = greeting.split(" ", 2)[1].upper() if greeting.startswith("* ") and " " in greeting[2:] else ""
        refused = None
        if kind not in ("OK", "PREAUTH"):
            refused = "the server refused the session (greeting is not * OK)" if kind == "BYE" else "not an IMAP greeting"
        session.greeting(greeting, refused)
        caps = await imap.capability()
        if session.mode == "starttls":
            if "STARTTLS" not in caps:
                raise CheckFailure("the server does not offer STARTTLS")
            await session.starttls(imap.starttls)
            caps = await imap.capability()  # RFC 3501: capabilities may change after STARTTLS
        credential = session.credential
        if credential is not None:
            assert credential.username is not None and credential.password is not None
            if "LOGINDISABLED" in caps:
                raise CheckFailure("the server does not allow LOGIN here (LOGINDISABLED)")
            with probe.phase("LOGIN", "auth_ms"):
                reply = await imap.command(*_login_parts(credential.username, credential.password))
            if reply.status != "OK":
                session.server_reply(reply.text)
                raise CheckFailure(f"login failed for credential {credential.name!r} ({reply.code()})")
            probe.details["authenticated"] = True
        await session.goodbye("LOGOUT", lambda: imap.command(b"LOGOUT\r\n"))


CHECK = CheckType(
    name="imap",
    description="An IMAP server: greeting, CAPABILITY, implicit TLS or STARTTLS with a verified certificate, "
    "optionally LOGIN.",
    target=mail.TARGET,
    fields=mail.fields("implicit"),
    rules=mail.RULES,
    run=run_imap,
    example={"type": "imap", "target": "mail.example.internal:993", "credential": "mail-probe"},
    protect=mail.PROTECT,
)
