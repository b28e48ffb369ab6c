"""The connection steps every check shares, each timed as its own phase.

resolve (``dns_ms``) → vet every address against the network policy → TCP connect to a vetted
address (``connect_ms``) → optional TLS handshake with SNI and name check against a server name
(``tls_ms``), reporting the peer certificate and warning of its expiry. Doing the steps by hand
rather than through a client library's connector gives separate, real TCP and TLS timings, and
guarantees that the address connected to is the one that was vetted.

:func:`open_vetted` hands out asyncio streams (a :class:`Connection`, always ended with
:meth:`Connection.abort`); :func:`connect_vetted_socket` a plain connected socket for a protocol
library that wants one of its own (``asyncssh``'s ``sock=``, PyMySQL's ``connect(sock=...)``).
Once a library has built a transport on that socket, the transport owns it: close it through the
library, never the socket itself (the event loop would still have the descriptor registered).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from vantage.checks.fields import format_host_port
from vantage.checks.netpolicy import BlockedAddressError, CheckOptions, IPAddress, vet_addresses
from vantage.checks.result import CheckFailure, Probe

STREAM_LIMIT = 65536  # longest response line / header block the readers accept


@dataclass
class Connection:
    """An open TCP (optionally TLS) connection to a vetted address."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer_ip: str
    raw_transport: asyncio.BaseTransport

    def abort(self) -> None:
        """Drop the connection at once (checks never reuse one; nothing is left to flush)."""
        self.writer.transport.abort()
        if self.raw_transport is not self.writer.transport:
            self.raw_transport.abort()  # type: ignore[attr-defined]


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int, probe: Probe) -> list[IPAddress]:
    """Resolve ``host`` once (no resolution at all for an IP literal); record ``resolved_ips``."""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        with probe.phase("dns resolution", "dns_ms"):
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
            except socket.gaierror as exc:
                raise CheckFailure(f"DNS resolution failed for {host}: {exc.strerror or exc}") from None
        addresses = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if addr not in addresses:
                addresses.append(addr)
        if not addresses:
            raise CheckFailure(f"DNS resolution failed for {host}: no IPv4 or IPv6 address")
    probe.details["resolved_ips"] = [str(a) for a in addresses]
    return addresses


def _connect_error(exc: OSError, where: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused to {where}"
    if isinstance(exc, ConnectionResetError):
        return f"connection reset by {where}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot connect to {where}: {reason}"


async def connect_vetted_socket(
    host: str, port: int, options: CheckOptions, probe: Probe
) -> tuple[socket.socket, str]:
    """Resolve ``host``, vet every address, connect to the first vetted address that answers.

    Returns the connected non-blocking socket and the peer address (also recorded as
    ``details.peer_ip``). Raises :class:`CheckFailure` for DNS failures, blocked addresses and
    connection errors; the caller owns the socket (see the module docstring).
    """
    addresses = await resolve(host, port, probe)
    try:
        vet_addresses(addresses, options)
    except BlockedAddressError as exc:
        raise CheckFailure(str(exc)) from None
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    for address in addresses:
        where = format_host_port(str(address), port)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        with probe.phase("connect", "connect_ms"):
            try:
                await loop.sock_connect(sock, (str(address), port))
            except OSError as exc:
                sock.close()
                errors.append(_connect_error(exc, where))
                continue
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        probe.details["peer_ip"] = str(address)
        return sock, str(address)
    raise CheckFailure("; ".join(errors))


async def open_vetted(host: str, port: int, options: CheckOptions, probe: Probe) -> Connection:
    """:func:`connect_vetted_socket`, as asyncio streams whose transport owns the socket."""
    sock, peer = await connect_vetted_socket(host, port, options, probe)
    try:
        reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)
    except BaseException:
        sock.close()  # no transport took it
        raise
    return Connection(reader, writer, peer, writer.transport)


async def secure(
    conn: Connection,
    context: ssl.SSLContext,
    server_name: str,
    probe: Probe,
    warning_days: int,
    *,
    during: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Upgrade ``conn`` to TLS (SNI and name check against ``server_name``) and report the peer.

    Returns the leaf certificate (:func:`cert_info`) and the session (protocol, cipher); warns when
    the certificate expires within ``warning_days`` (once per message). ``during`` names the step
    in error messages (``TLS handshake failed (STARTTLS): ...``).
    """
    where = f" ({during})" if during else ""
    with probe.phase("TLS handshake", "tls_ms"):
        try:
            await conn.writer.start_tls(context, server_hostname=server_name)
        except ssl.SSLCertVerificationError as exc:
            raise CheckFailure(
                f"TLS certificate verify failed{where}: {exc.verify_message or exc.reason}"
            ) from None
        except ssl.SSLError as exc:
            raise CheckFailure(f"TLS handshake failed{where}: {exc.reason or exc}") from None
        except ConnectionError as exc:
            raise CheckFailure(f"TLS handshake failed{where}: {_connect_error(exc, conn.peer_ip)}") from None
    ssl_object = conn.writer.get_extra_info("ssl_object")
    cert = cert_info(ssl_object)
    cipher = ssl_object.cipher() if ssl_object is not None else None
    session = {"protocol": ssl_object.version() if ssl_object is not None else None,
               "cipher": cipher[0] if cipher else None}
    warning = expiry_warning(cert, warning_days)
    if warning and warning not in probe.warnings:
        probe.warnings.append(warning)
    return cert, session


@functools.lru_cache(maxsize=32)
def tls_context(verify: bool, ca_bundle: str | None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A client SSL context, built once per (verify, ca_bundle, ALPN) and shared.

    With ``verify`` the system trust store is used, plus ``ca_bundle`` when given (an internal CA
    adds to the public roots rather than replacing them). Without it, neither chain nor host name
    is checked, but the peer certificate is still read and reported.
    """
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def cert_info(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """Subject, issuer, validity, SANs and fingerprint of the peer's leaf certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return {}
    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    now = dt.datetime.now(dt.UTC)
    san: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san = [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
        san += [f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": int((not_after - now).total_seconds() // 86400),
        "san": san,
        "serial": format(cert.serial_number, "x"),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def expiry_warning(info: dict[str, Any], warning_days: int) -> str | None:
    """A warning when the certificate expires within ``warning_days`` days (or already has)."""
    if "days_left" not in info:
        return None
    days = int(info["days_left"])
    if days < 0:
        return f"certificate expired {-days} days ago (not after {info['not_after']})"
    if warning_days > 0 and days <= warning_days:
        return f"certificate expires in {days} days (not after {info['not_after']})"
    return None
