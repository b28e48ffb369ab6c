"""The ``smtp`` check: connect, banner, EHLO, optional STARTTLS, optional AUTH — each phase timed.

The SMTP dialogue is ``aiosmtplib``'s; the TCP connection is ours
(:func:`vantage.checks.rawsock.connect_vetted_socket`), so the library never resolves the name
again and only a vetted address is contacted. Certificates are verified against ``server_name``
(else the target's host) with the checkpoint's trust store, as in the ``tls`` check.

Phases: ``connect_ms``, ``banner_ms`` (with ``tls: implicit`` it includes the TLS handshake, which
the library performs before it reads the greeting), ``ehlo_ms`` (both EHLOs when STARTTLS is used),
``tls_ms`` (the STARTTLS command and handshake) and ``auth_ms``.

Error messages carry the SMTP reply code, never the server's reply text (that is response content
and goes to ``details.server_reply``, which data protection removes with ``strip_content``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from typing import Any

import aiosmtplib

from vantage.checks.net import cert_info_from_ssl, expiry_warning, tls_context
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.rawsock import connect_vetted_socket
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.spec import parse_host_port

EXCERPT_CHARS = 1024


def _reply(probe: Probe, exc: aiosmtplib.SMTPResponseException) -> str:
    """Record the server's reply text as content; return ``code`` (+ enhanced status) for the error."""
    message = str(exc.message or "")
    probe.details["server_reply"] = message[:EXCERPT_CHARS]
    enhanced = message.split(" ", 1)[0]
    if enhanced.count(".") == 2 and all(part.isdigit() for part in enhanced.split(".")):
        return f"{exc.code} {enhanced}"
    return str(exc.code)


def _tls_failure(exc: BaseException, during: str) -> CheckFailure | None:
    """A readable failure for a TLS error anywhere in ``exc``'s chain, else ``None``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return CheckFailure(
                f"TLS certificate verify failed ({during}): {seen.verify_message or seen.reason}"
            )
        if isinstance(seen, ssl.SSLError):
            return CheckFailure(f"TLS handshake failed ({during}): {seen.reason or seen}")
        seen = seen.__cause__ or seen.__context__
    return None


def _failure(exc: BaseException, probe: Probe, during: str) -> CheckFailure:
    tls = _tls_failure(exc, during)
    if tls is not None:
        return tls
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return CheckFailure(f"server closed the connection during {during}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return CheckFailure(f"{during} rejected ({_reply(probe, exc)})")
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError)):
        return CheckFailure(f"no answer from the server during {during} (timed out)")
    return CheckFailure(f"{during} failed: {type(exc).__name__}")


def _extensions(smtp: aiosmtplib.SMTP) -> list[str]:
    return sorted(name.upper() for name in smtp.esmtp_extensions)


def _record_tls(smtp: aiosmtplib.SMTP, probe: Probe, warning_days: int) -> None:
    ssl_object = smtp.get_transport_info("ssl_object")
    info = cert_info_from_ssl(ssl_object)
    if ssl_object is not None:
        cipher = ssl_object.cipher()
        info["protocol"] = ssl_object.version()
        info["cipher"] = cipher[0] if cipher else None
    probe.details["tls"] = info
    warning = expiry_warning(info, warning_days)
    if warning:
        probe.warnings.append(warning)


async def run_smtp(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``smtp`` spec; raises :class:`CheckFailure` at the first failing phase."""
    host, port = parse_host_port(str(spec["target"]))
    server_name = str(spec["server_name"] or host)
    mode = str(spec["tls"])
    credential = options.credentials.get(spec["credential"]) if spec["credential"] else None
    if credential is not None:
        credential.require("username", "password", purpose="SMTP AUTH")
    details = probe.details
    details["tls_mode"] = mode
    details["server_name"] = server_name
    context = tls_context(bool(spec["verify_tls"]), options.ca_bundle)
    # Known before connecting, so that the socket goes to the client without a wait in between.
    ehlo_name = spec["ehlo_name"] or await asyncio.to_thread(socket.getfqdn)
    sock, _peer = await connect_vetted_socket(host, port, options, probe)
    smtp = aiosmtplib.SMTP(
        hostname=server_name,
        sock=sock,
        use_tls=mode == "implicit",
        start_tls=False,
        tls_context=context,
        local_hostname=ehlo_name,
        timeout=float(spec["timeout_s"]),
    )
    try:
        with probe.phase("banner" if mode != "implicit" else "TLS handshake and banner", "banner_ms"):
            try:
                greeting = await smtp.connect()
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                during = "the TLS handshake or greeting" if mode == "implicit" else "the greeting"
                raise _failure(exc, probe, during) from None
        details["banner"] = greeting.message[:EXCERPT_CHARS]
        details["banner_code"] = greeting.code
        if mode == "implicit":
            _record_tls(smtp, probe, int(spec["cert_expiry_warning_days"]))
        expected: str | None = spec["expect_banner"]
        if expected is not None and expected not in greeting.message:
            raise CheckFailure(f"expected {expected!r} not found in the SMTP banner")

        with probe.phase("EHLO", "ehlo_ms"):
            try:
                await smtp.ehlo()
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise _failure(exc, probe, "EHLO") from None
        details["extensions"] = _extensions(smtp)

        if mode == "starttls":
            if not smtp.supports_extension("starttls"):
                raise CheckFailure("the server does not offer STARTTLS")
            with probe.phase("STARTTLS", "tls_ms"):
                try:
                    await smtp.starttls(server_hostname=server_name, tls_context=context)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    raise _failure(exc, probe, "STARTTLS") from None
            _record_tls(smtp, probe, int(spec["cert_expiry_warning_days"]))
            with probe.phase("EHLO after STARTTLS", "ehlo_ms"):
                try:
                    await smtp.ehlo()
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    raise _failure(exc, probe, "EHLO after STARTTLS") from None
            details["extensions"] = _extensions(smtp)

        details["auth_mechanisms"] = sorted(m.upper() for m in smtp.server_auth_methods)
        if credential is not None:
            assert credential.username is not None and credential.password is not None
            if not smtp.supports_extension("auth"):
                raise CheckFailure("the server does not offer AUTH")
            with probe.phase("AUTH", "auth_ms"):
                try:
                    await smtp.login(credential.username, credential.password)
                except aiosmtplib.SMTPAuthenticationError as exc:
                    raise CheckFailure(
                        f"authentication failed for credential {credential.name!r} ({_reply(probe, exc)})"
                    ) from None
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    raise _failure(exc, probe, "AUTH") from None
            details["authenticated"] = True
        try:
            await smtp.execute_command(b"QUIT", timeout=1.0)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass  # the check has its answer; a server that drops QUIT is not a failure
    finally:
        _abort(smtp)


def _abort(smtp: aiosmtplib.SMTP) -> None:
    """Drop the session through its transport, which owns the socket once ``connect`` was called.

    Never close the socket itself: under a TLS session its transport is still registered with
    the event loop (a graceful close waits for the server's close_notify), so the descriptor
    would be freed while in use and the next socket to get it would fail with "File descriptor
    N is used by transport". Aborting the TLS transport aborts the TCP transport beneath it,
    which closes the socket and unregisters it.
    """
    transport = smtp.transport
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    smtp.close()  # releases the client's lock; the aborted transport is not closed twice
