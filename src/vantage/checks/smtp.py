"""The ``smtp`` check: connect, banner, EHLO, optional STARTTLS, optional AUTH — each phase timed.

The dialogue is spoken on the shared mail session (:mod:`vantage.checks.mail`): the connection
goes to a vetted address only, certificates are verified against ``server_name`` (else the
target's host), and the session is always closed through its transport. Nothing beyond the
handshake is needed — EHLO, STARTTLS, AUTH, QUIT — so no SMTP library is involved.

Phases: ``connect_ms``, ``tls_ms`` (the implicit handshake, or the STARTTLS command and
handshake), ``banner_ms``, ``ehlo_ms`` (both EHLOs when STARTTLS is used) and ``auth_ms``.

AUTH uses the first mechanism the server offers of CRAM-MD5 (the password never leaves the
checkpoint, even to a server that is not verified), PLAIN and LOGIN, and tries it once: a wrong
password must not cost the account several failed logins.

Error messages carry the SMTP reply code (and enhanced status code), never the server's reply
text (that is response content and goes to ``details.server_reply``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vantage.checks import mail
from vantage.checks.fields import host_name
from vantage.checks.mail import MailSession
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import CheckType, Text

MAX_REPLY_LINES = 200
#: AUTH mechanisms in order of preference.
AUTH_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")


@dataclass
class _Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def status(self) -> str:
        """The code, with the enhanced status code (RFC 3463) when the reply starts with one."""
        enhanced = self.lines[0].split(" ", 1)[0] if self.lines else ""
        if enhanced.count(".") == 2 and all(part.isdigit() for part in enhanced.split(".")):
            return f"{self.code} {enhanced}"
        return str(self.code)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class _Smtp:
    def __init__(self, session: MailSession, ehlo_name: str) -> None:
        self.session = session
        self.ehlo_name = ehlo_name
        self.extensions: dict[str, str] = {}
        self.auth: list[str] = []

    async def reply(self) -> _Reply:
        lines: list[str] = []
        code = None
        for _ in range(MAX_REPLY_LINES):
            line = (await self.session.readline()).decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-") \
                    or (code is not None and int(line[:3]) != code):
                raise CheckFailure(f"malformed SMTP reply during {self.session.probe.stage}")
            code = int(line[:3])
            lines.append(line[4:])
            if line[3:4] != "-":
                return _Reply(code, lines)
        raise CheckFailure(f"SMTP reply longer than {MAX_REPLY_LINES} lines during {self.session.probe.stage}")

    async def command(self, line: bytes) -> _Reply:
        await self.session.send(line + b"\r\n")
        return await self.reply()

    def rejected(self, during: str, reply: _Reply) -> CheckFailure:
        self.session.server_reply(reply.text)
        return CheckFailure(f"{during} rejected ({reply.status()})")

    async def ehlo(self, stage: str) -> None:
        with self.session.probe.phase(stage, "ehlo_ms"):
            reply = await self.command(b"EHLO " + self.ehlo_name.encode("ascii", "replace"))
        if reply.code != 250:
            raise self.rejected(stage, reply)
        self.extensions, self.auth = {}, []
        for line in reply.lines[1:]:
            if line.upper().startswith("AUTH="):  # the old-style advertisement
                self.auth += line[5:].upper().split()
                continue
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params
            if keyword.upper() == "AUTH":
                self.auth += params.upper().split()
        self.session.probe.details["extensions"] = sorted(self.extensions)

    async def starttls(self) -> None:
        reply = await self.command(b"STARTTLS")
        if reply.code != 220:
            raise self.rejected("STARTTLS", reply)

    async def authenticate(self, mechanism: str, username: str, password: str) -> _Reply:
        """One AUTH exchange; the server's last reply (235 on success)."""
        user, secret = username.encode("utf-8"), password.encode("utf-8")
        if mechanism == "PLAIN":
            return await self.command(b"AUTH PLAIN " + _b64(b"\0" + user + b"\0" + secret))
        reply = await self.command(b"AUTH " + mechanism.encode("ascii"))
        if mechanism == "LOGIN":
            for answer in (user, secret):
                if reply.code != 334:
                    return reply
                reply = await self.command(_b64(answer))
            return reply
        if reply.code != 334:  # CRAM-MD5 (RFC 2195)
            return reply
        try:
            challenge = base64.b64decode(reply.lines[0].strip(), validate=True)
        except (binascii.Error, IndexError):
            raise CheckFailure("malformed CRAM-MD5 challenge from the server") from None
        digest = hmac.new(secret, challenge, hashlib.md5).hexdigest().encode("ascii")
        return await self.command(_b64(user + b" " + digest))


async def run_smtp(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``smtp`` spec; raises :class:`CheckFailure` at the first failing phase."""
    ehlo_name = spec["ehlo_name"] or await asyncio.to_thread(socket.getfqdn)
    async with MailSession(spec, options, probe, protocol="SMTP", login="AUTH") as session:
        smtp = _Smtp(session, ehlo_name)
        with probe.phase("banner", "banner_ms"):
            greeting = await smtp.reply()
        probe.details["banner_code"] = greeting.code
        refused = None if greeting.code == 220 else f"the greeting rejected ({greeting.status()})"
        session.greeting(greeting.text, refused)
        await smtp.ehlo("EHLO")
        if session.mode == "starttls":
            if "STARTTLS" not in smtp.extensions:
                raise CheckFailure("the server does not offer STARTTLS")
            await session.starttls(smtp.starttls)
            await smtp.ehlo("EHLO after STARTTLS")  # RFC 3207: forget what was learnt before TLS
        probe.details["auth_mechanisms"] = sorted(set(smtp.auth))
        credential = session.credential
        if credential is not None:
            assert credential.username is not None and credential.password is not None
            if "AUTH" not in smtp.extensions and not smtp.auth:
                raise CheckFailure("the server does not offer AUTH")
            mechanism = next((m for m in AUTH_MECHANISMS if m in smtp.auth), None)
            if mechanism is None:
                raise CheckFailure(
                    f"the server offers no AUTH mechanism this check supports ({', '.join(AUTH_MECHANISMS)})"
                )
            with probe.phase("AUTH", "auth_ms"):
                reply = await smtp.authenticate(mechanism, credential.username, credential.password)
            if reply.code != 235:
                session.server_reply(reply.text)
                raise CheckFailure(f"authentication failed for credential {credential.name!r} ({reply.status()})")
            probe.details["auth_mechanism"] = mechanism
            probe.details["authenticated"] = True
        await session.goodbye("QUIT", lambda: smtp.command(b"QUIT"))


CHECK = CheckType(
    name="smtp",
    description="An SMTP server: banner, EHLO, STARTTLS or implicit TLS with a verified certificate, optionally AUTH.",
    target=mail.TARGET,
    fields={
        **mail.fields("starttls"),
        "ehlo_name": Text(max_length=253, normalize=host_name, pattern=r"^\s*\S+\s*$",
                          description="name sent in EHLO (default: the checkpoint's FQDN)"),
    },
    rules=mail.RULES,
    run=run_smtp,
    example={"type": "smtp", "target": "relay.example.internal:587", "credential": "mail-probe",
             "expect_banner": "ESMTP"},
    protect=mail.PROTECT,
)
