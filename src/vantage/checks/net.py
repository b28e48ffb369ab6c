"""The connection steps every check shares, each timed as its own phase.

resolve (``dns_ms``) → vet every address against the network policy → TCP connect to a vetted
address (``connect_ms``) → optional TLS handshake with SNI and name check against a server name
(``tls_ms``), reporting the peer certificate and warning of its expiry. Doing the steps by hand
rather than through a client library's connector gives separate, real TCP and TLS timings, and
guarantees that the address connected to is the one that was vetted.

:func:`open_vetted` hands out a :class:`Connection` (always ended with :meth:`Connection.abort`):
the event loop connects to the vetted address literal itself (no second resolution: an address
literal is never looked up) and the connection is the transport's protocol, a small buffered
byte stream with just the reads the checks make. That is about a third cheaper per connection
than asyncio's streams on uvloop, and a check makes one connection per run.
:func:`connect_vetted_socket` hands out a plain connected socket for a protocol library that wants
one of its own (``asyncssh``'s ``sock=``, PyMySQL's ``connect(sock=...)``). Once a library has
built a transport on that socket, the transport owns it: close it through the library, never the
socket itself (the event loop would still have the descriptor registered).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from vantage._tls import trust_system_cas
from vantage.checks.fields import PARSED_TARGETS, format_host_port
from vantage.checks.netpolicy import BlockedAddressError, CheckOptions, IPAddress, vet_addresses
from vantage.checks.result import CheckFailure, Probe

STREAM_LIMIT = 65536  # longest response line / header block the readers accept
#: Reading from the peer pauses while this much is buffered unread (a flood never fills memory).
BUFFER_HIGH = 4 * STREAM_LIMIT

_T = TypeVar("_T")


class Connection(asyncio.Protocol):
    """An open TCP (optionally TLS) connection to a vetted address, as a buffered byte stream.

    The reads (:meth:`read`, :meth:`readuntil`, :meth:`readexactly`) follow asyncio's
    ``StreamReader``: ``asyncio.IncompleteReadError`` when the peer closes too early,
    ``asyncio.LimitOverrunError`` for a line longer than :data:`STREAM_LIMIT`, and the
    connection's error (``ConnectionResetError``, …) once what arrived before it is read.
    :meth:`write` and :meth:`drain` (which waits while the peer is slow to take data) write.
    """

    def __init__(self, peer_ip: str, loop: asyncio.AbstractEventLoop) -> None:
        self.peer_ip = peer_ip
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        #: the TCP transport under a TLS one (aborted too: the TLS layer may not get to it)
        self.raw_transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._lost = False
        self._tls = False
        self._error: BaseException | None = None
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None

    # --- the protocol: called by the event loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self.raw_transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > BUFFER_HIGH and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return not self._tls  # plain TCP stays half-open, as with asyncio's streams; TLS cannot

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        if exc is not None:
            self._error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drain_waiter is None or self._drain_waiter.done():
            self._drain_waiter = self._loop.create_future()

    def resume_writing(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- what the checks call

    async def _wait(self) -> None:
        """Wait for more data, the peer's end or an error (returns at once after the end)."""
        if self._eof:
            if self._error is not None:
                raise self._error
            return
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, as soon as any are there; ``b""`` once the peer has closed."""
        while not self._buffer:
            if self._eof and self._error is None:
                return b""
            await self._wait()
        return self._take(size)

    async def readuntil(self, separator: bytes) -> bytes:
        """The data up to and including ``separator``, which must come within :data:`STREAM_LIMIT` bytes."""
        start = 0
        while True:
            found = self._buffer.find(separator, start)
            if found >= 0:
                if found + len(separator) > STREAM_LIMIT:
                    raise asyncio.LimitOverrunError("separator found beyond the limit", found)
                return self._take(found + len(separator))
            if len(self._buffer) > STREAM_LIMIT:
                raise asyncio.LimitOverrunError("separator not found within the limit", len(self._buffer))
            if self._eof and self._error is None:
                raise asyncio.IncompleteReadError(self._take(len(self._buffer)), None)
            start = max(0, len(self._buffer) - len(separator) + 1)
            await self._wait()

    async def readexactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes."""
        while len(self._buffer) < size:
            if self._eof and self._error is None:
                raise asyncio.IncompleteReadError(self._take(len(self._buffer)), size)
            await self._wait()
        return self._take(size)

    async def wait_data(self) -> bool:
        """Wait until some data is there (``True``) or the peer has closed without sending more (``False``)."""
        while not self._buffer:
            if self._eof and self._error is None:
                return False
            await self._wait()
        return True

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending (a lost connection shows in :meth:`drain`)."""
        if self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is full; ``ConnectionResetError`` once the connection is lost."""
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            await waiter
        if self._lost or self.transport is None:
            raise ConnectionResetError("Connection lost")

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Upgrade to TLS; plaintext received before is discarded (never mistaken for part of the session)."""
        if self.transport is None:
            raise ConnectionResetError("Connection lost")
        self._buffer.clear()
        self._reading_paused = False  # start_tls pauses the raw transport and resumes it itself
        transport = await self._loop.start_tls(
            self.transport, self, context, server_hostname=server_hostname
        )
        if transport is None:  # the peer closed during the handshake
            raise ConnectionResetError("Connection lost")
        self.transport = transport
        self._tls = True

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet (at most about :data:`BUFFER_HIGH`)."""
        return len(self._buffer)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        return None if self.transport is None else self.transport.get_extra_info("ssl_object")

    def abort(self) -> None:
        """Drop the connection at once (checks never reuse one; nothing is left to flush)."""
        for transport in (self.transport, self.raw_transport):
            if transport is not None:
                transport.abort()
        self.transport = self.raw_transport = None


@functools.lru_cache(maxsize=PARSED_TARGETS)
def _literal(host: str) -> tuple[IPAddress, str] | None:
    """``host`` as an address and its canonical text when it is an IP literal (parsed once per host)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address, str(address)


async def _resolve(host: str, port: int, probe: Probe) -> tuple[list[IPAddress], list[str]]:
    """:func:`resolve`, with each address's text too."""
    literal = _literal(host)
    if literal is not None:
        addresses, texts = [literal[0]], [literal[1]]
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
        texts = [str(a) for a in addresses]
    probe.details["resolved_ips"] = texts
    return addresses, texts


async def resolve(host: str, port: int, probe: Probe) -> list[IPAddress]:
    """Resolve ``host`` once (no resolution at all for an IP literal); record ``resolved_ips``."""
    return (await _resolve(host, port, probe))[0]


def _connect_error(exc: OSError, where: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused to {where}"
    if isinstance(exc, ConnectionResetError):
        return f"connection reset by {where}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot connect to {where}: {reason}"


async def _connect_first(
    host: str, port: int, options: CheckOptions, probe: Probe, connect: Callable[[str, int], Awaitable[_T]]
) -> _T:
    """Resolve ``host``, vet every address, then ``connect(address, family)`` to each in turn until one answers.

    Records ``connect_ms`` and ``details.peer_ip``; raises :class:`CheckFailure` for DNS failures,
    blocked addresses and when no address could be connected to (each one's error listed).
    """
    addresses, texts = await _resolve(host, port, probe)
    try:
        vet_addresses(addresses, options)
    except BlockedAddressError as exc:
        raise CheckFailure(str(exc)) from None
    errors: list[str] = []
    for address, peer in zip(addresses, texts, strict=True):
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        with probe.phase("connect", "connect_ms"):
            try:
                connected = await connect(peer, family)
            except OSError as exc:
                errors.append(_connect_error(exc, format_host_port(peer, port)))
                continue
        probe.details["peer_ip"] = peer
        return connected
    raise CheckFailure("; ".join(errors))


async def connect_vetted_socket(
    host: str, port: int, options: CheckOptions, probe: Probe
) -> tuple[socket.socket, str]:
    """Resolve ``host``, vet every address, connect to the first vetted address that answers.

    Returns the connected non-blocking socket and the peer address (also recorded as
    ``details.peer_ip``). Raises :class:`CheckFailure` for DNS failures, blocked addresses and
    connection errors; the caller owns the socket (see the module docstring).
    """
    loop = asyncio.get_running_loop()

    async def connect(peer: str, family: int) -> tuple[socket.socket, str]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (peer, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        return sock, peer

    return await _connect_first(host, port, options, probe, connect)


async def open_vetted(host: str, port: int, options: CheckOptions, probe: Probe) -> Connection:
    """Resolve ``host``, vet every address, connect to the first vetted address that answers.

    The event loop connects to the address literal itself (it never resolves one); the
    :class:`Connection` is the transport's protocol. Raises :class:`CheckFailure` like
    :func:`connect_vetted_socket`.
    """
    loop = asyncio.get_running_loop()

    async def connect(peer: str, family: int) -> Connection:
        _transport, conn = await loop.create_connection(
            functools.partial(Connection, peer, loop), peer, port, family=family
        )
        return conn

    return await _connect_first(host, port, options, probe, connect)


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
            await conn.start_tls(context, server_name)
        except ssl.SSLCertVerificationError as exc:
            raise CheckFailure(
                f"TLS certificate verify failed{where}: {exc.verify_message or exc.reason}"
            ) from None
        except ssl.SSLError as exc:
            raise CheckFailure(f"TLS handshake failed{where}: {exc.reason or exc}") from None
        except ConnectionError as exc:
            raise CheckFailure(f"TLS handshake failed{where}: {_connect_error(exc, conn.peer_ip)}") from None
    ssl_object = conn.ssl_object
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

    With ``verify`` the system trust store is used (:func:`vantage._tls.trust_system_cas`: each
    CA parsed when a handshake needs it), plus ``ca_bundle`` when given (an internal CA adds to
    the public roots rather than replacing them). Without it, neither chain nor host name is
    checked and no CA is loaded, but the peer certificate is still read and reported.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    if verify:
        trust_system_cas(ctx)
        if ca_bundle:
            ctx.load_verify_locations(cafile=ca_bundle)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def cert_info(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """Subject, issuer, validity, SANs and fingerprint of the peer's leaf certificate."""
    import datetime as dt  # imported here, like the parser: only checks that make a TLS handshake need it

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
