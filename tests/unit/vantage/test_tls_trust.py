"""The system's CAs in client TLS contexts (``vantage._tls``): found by hashed name, never all parsed.

Both users are held to it: the agent's connection to the control plane and the checks' contexts.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from vantage.agent.transport import tls_context as agent_context
from vantage.checks import net

CONTEXTS: dict[str, Callable[[], ssl.SSLContext]] = {
    "agent": lambda: agent_context(None),
    "checks": lambda: net.tls_context.__wrapped__(True, None),  # not the cached one: SSL_CERT_DIR changes here
}


@pytest.fixture
def hashed_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A trustme CA stored only under its OpenSSL hashed name in ``SSL_CERT_DIR``."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(tmp_path / "ca.pem")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    certs = tmp_path / "certs"
    certs.mkdir()
    ca.cert_pem.write_to_path(str(certs / f"{subject_hash}.0"))
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    return ca


@pytest.fixture
async def servers(hashed_ca: trustme.CA) -> AsyncIterator[tuple[int, int]]:
    """Ports of two TLS servers: one with a certificate of the hashed CA, one of a stranger."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    async def serve(issuer: Any) -> asyncio.Server:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issuer.issue_cert("127.0.0.1").configure_cert(server_context)
        return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)

    known, stranger = await serve(hashed_ca), await serve(trustme.CA())
    yield known.sockets[0].getsockname()[1], stranger.sockets[0].getsockname()[1]
    for server in (known, stranger):
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("user", CONTEXTS)
async def test_system_cas_are_found_in_the_hashed_directory_without_loading_them_all(
    user: str, servers: tuple[int, int]
) -> None:
    """A CA reachable only through SSL_CERT_DIR's hashed names verifies a real TLS server."""
    known, stranger = servers
    context = CONTEXTS[user]()
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing parsed up front
    reader, writer = await asyncio.open_connection("127.0.0.1", known, ssl=context)
    assert await reader.read() == b"hello"
    writer.close()
    with pytest.raises(ssl.SSLCertVerificationError):  # a CA found nowhere is refused
        await asyncio.open_connection("127.0.0.1", stranger, ssl=context)


def test_an_unverified_check_context_loads_no_ca() -> None:
    context = net.tls_context.__wrapped__(False, None)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
