"""The tcp and tls checks against real servers on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from vantage.checks import CheckOptions, run_check

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OPTS = CheckOptions()
pytestmark = pytest.mark.both_event_loops


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[None]] = set()

    def tracked(handler: Handler) -> Handler:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await handler(reader, writer)
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except (ConnectionError, ssl.SSLError):
                    pass

        return run

    async def start(
        handler: Handler, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> int:
        server = await asyncio.start_server(tracked(handler), host, 0, ssl=ssl_context)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    # every handler ends once the check under test has dropped its connection
    await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 5)
    for server in servers:
        server.close()
        await server.wait_closed()


async def _idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.read()
    except ConnectionError:
        pass
    writer.close()


async def _banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_test canary-banner-99\r\n")
    await writer.drain()
    await _idle(reader, writer)


async def _ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(b"PONG\r\n" if line == b"PING\r\n" else b"WHAT\r\n")
    await writer.drain()
    await _idle(reader, writer)


async def _hello_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello")
    await writer.drain()
    writer.close()


def tcp(target: str, **fields: Any) -> dict[str, Any]:
    return {"type": "tcp", "target": target, "timeout_s": 5, **fields}


def tls(target: str, **fields: Any) -> dict[str, Any]:
    return {"type": "tls", "target": target, "timeout_s": 5, **fields}


# --- tcp -----------------------------------------------------------------------------------------


async def test_tcp_connect_only(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(_idle)
    result = await run_check(tcp(f"127.0.0.1:{port}"), OPTS)
    assert result.ok, result.error
    assert result.details["peer_ip"] == "127.0.0.1"
    assert result.details["resolved_ips"] == ["127.0.0.1"]
    assert "connect_ms" in result.phases


async def test_tcp_banner(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(_banner)
    result = await run_check(tcp(f"127.0.0.1:{port}", expect="SSH-2.0"), OPTS)
    assert result.ok, result.error
    assert result.details["banner"].startswith("SSH-2.0-OpenSSH_test")
    assert "first_byte_ms" in result.phases


async def test_tcp_send_expect(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(_ping)
    good = await run_check(tcp(f"127.0.0.1:{port}", send="PING\r\n", expect="PONG"), OPTS)
    assert good.ok, good.error
    bad = await run_check(tcp(f"127.0.0.1:{port}", send="PONG\r\n", expect="PONG", timeout_s=0.5), OPTS)
    assert not bad.ok
    assert bad.error == "timed out after 0.5 s during read (expected 'PONG' not seen yet)"


async def test_tcp_expect_missing_before_close(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(_hello_and_close)
    result = await run_check(tcp(f"127.0.0.1:{port}", expect="220 "), OPTS)
    assert not result.ok
    assert result.error == "expected '220 ' not received (the connection was closed after 5 bytes)"


async def test_tcp_timeout(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(_idle)
    result = await run_check(tcp(f"127.0.0.1:{port}", expect="x", timeout_s=0.3), OPTS)
    assert not result.ok
    assert result.error == "timed out after 0.3 s during read (expected 'x' not seen yet)"


async def test_tcp_refused(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(_idle)
    # a listening socket closed again leaves a port nobody listens on
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    assert free != port
    result = await run_check(tcp(f"127.0.0.1:{free}"), OPTS)
    assert result.error == f"connection refused to 127.0.0.1:{free}"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_tcp_ipv6(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(_banner, host="::1")
    result = await run_check(tcp(f"[::1]:{port}", expect="SSH"), OPTS)
    assert result.ok, result.error
    assert result.details["peer_ip"] == "::1"


async def test_tcp_blocked() -> None:
    result = await run_check(tcp("169.254.169.254:80"), OPTS)
    assert result.error is not None and "169.254.169.254 is in blocked range 169.254.0.0/16" in result.error
    v6 = await run_check(tcp("[fe80::1]:80"), OPTS)
    assert v6.error is not None and "in blocked range fe80::/10" in v6.error
    mapped = await run_check(tcp("[::ffff:169.254.169.254]:80"), OPTS)
    assert mapped.error is not None and "in blocked range 169.254.0.0/16" in mapped.error


# --- tls -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_options(ca: trustme.CA, tmp_path: Path) -> CheckOptions:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return CheckOptions(ca_bundle=str(path))


def _server_ctx(ca: trustme.CA, *identities: str, **kwargs: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(identities or ("127.0.0.1",)), **kwargs).configure_cert(ctx)
    return ctx


async def _tls_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.read()
    except (ConnectionError, ssl.SSLError):
        pass
    writer.close()


async def test_tls_success(
    serve: Callable[..., Awaitable[int]], ca: trustme.CA, ca_options: CheckOptions
) -> None:
    port = await serve(_tls_idle, ssl_context=_server_ctx(ca, "127.0.0.1", "svc.example"))
    result = await run_check(tls(f"127.0.0.1:{port}"), ca_options)
    assert result.ok, result.error
    cert = result.details["cert"]
    assert {"subject", "issuer", "not_after", "days_left", "san"} <= set(cert)
    assert "IP:127.0.0.1" in cert["san"] and "DNS:svc.example" in cert["san"]
    assert result.details["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert result.details["cipher"]
    assert result.details["peer_ip"] == "127.0.0.1"
    assert {"connect_ms", "tls_ms"} <= set(result.phases)
    assert result.details["warnings"] == []


async def test_tls_server_name(
    serve: Callable[..., Awaitable[int]], ca: trustme.CA, ca_options: CheckOptions
) -> None:
    port = await serve(_tls_idle, ssl_context=_server_ctx(ca, "svc.internal"))
    named = await run_check(tls(f"127.0.0.1:{port}", server_name="svc.internal"), ca_options)
    assert named.ok, named.error
    unnamed = await run_check(tls(f"127.0.0.1:{port}"), ca_options)
    assert unnamed.error is not None and unnamed.error.startswith("TLS certificate verify failed: ")
    assert "mismatch" in unnamed.error


async def test_tls_untrusted(serve: Callable[..., Awaitable[int]], ca: trustme.CA) -> None:
    port = await serve(_tls_idle, ssl_context=_server_ctx(ca))
    result = await run_check(tls(f"127.0.0.1:{port}"), OPTS)
    assert result.error is not None and result.error.startswith("TLS certificate verify failed: ")
    unverified = await run_check(tls(f"127.0.0.1:{port}", verify=False), OPTS)
    assert unverified.ok, unverified.error
    assert unverified.details["cert"]["issuer"]


async def test_tls_self_signed(serve: Callable[..., Awaitable[int]], tmp_path: Path) -> None:
    own = trustme.CA()  # a CA certificate served as the leaf: self-signed
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    key = tmp_path / "key.pem"
    cert = tmp_path / "cert.pem"
    own.private_key_pem.write_to_path(str(key))
    own.cert_pem.write_to_path(str(cert))
    ctx.load_cert_chain(str(cert), str(key))
    port = await serve(_tls_idle, ssl_context=ctx)
    result = await run_check(tls(f"127.0.0.1:{port}"), OPTS)
    assert result.error is not None and result.error.startswith("TLS certificate verify failed: self")


async def test_tls_expired(
    serve: Callable[..., Awaitable[int]], ca: trustme.CA, ca_options: CheckOptions
) -> None:
    now = dt.datetime.now(dt.UTC)
    ctx = _server_ctx(ca, not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=2))
    port = await serve(_tls_idle, ssl_context=ctx)
    verified = await run_check(tls(f"127.0.0.1:{port}"), ca_options)
    assert verified.error == "TLS certificate verify failed: certificate has expired"
    unverified = await run_check(tls(f"127.0.0.1:{port}", verify=False), OPTS)
    assert not unverified.ok
    assert unverified.error is not None and unverified.error.startswith("certificate expired on ")
    assert unverified.details["warnings"][0].startswith(
        "certificate expired 2 days ago"
    ) or unverified.details["warnings"][0].startswith("certificate expired 3 days ago")


async def test_tls_expiry_warning(
    serve: Callable[..., Awaitable[int]], ca: trustme.CA, ca_options: CheckOptions
) -> None:
    now = dt.datetime.now(dt.UTC)
    port = await serve(_tls_idle, ssl_context=_server_ctx(ca, not_after=now + dt.timedelta(days=3, hours=1)))
    result = await run_check(tls(f"127.0.0.1:{port}"), ca_options)
    assert result.ok, result.error
    assert result.details["cert"]["days_left"] == 3
    assert result.details["warnings"] == [
        f"certificate expires in 3 days (not after {result.details['cert']['not_after']})"
    ]
    off = await run_check(tls(f"127.0.0.1:{port}", cert_expiry_warning_days=0), ca_options)
    assert off.details["warnings"] == []


async def test_tls_against_plain_tcp(serve: Callable[..., Awaitable[int]]) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls at all\r\n" * 10)
        await writer.drain()
        writer.close()

    port = await serve(plain)
    result = await run_check(tls(f"127.0.0.1:{port}", verify=False), OPTS)
    assert not result.ok
    assert result.error is not None and result.error.startswith("TLS handshake failed: ")


async def test_tls_timeout(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(_idle)  # accepts, never speaks TLS
    result = await run_check(tls(f"127.0.0.1:{port}", timeout_s=0.3), OPTS)
    assert result.error == "timed out after 0.3 s during TLS handshake"
