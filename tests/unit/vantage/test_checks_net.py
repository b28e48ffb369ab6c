"""The checks' own connection (``vantage.checks.net.Connection``) and HTTP reader on real sockets.

Servers on 127.0.0.1 answer with exact bytes — truncated, malformed, oversized, reset — and every
test runs on asyncio's event loop and on uvloop's (the agent's), which report connection events
in their own ways.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme

from vantage.checks import CheckOptions, run_check
from vantage.checks.net import BUFFER_HIGH, STREAM_LIMIT, Connection, open_vetted
from vantage.checks.result import Probe

OPTS = CheckOptions()
pytestmark = pytest.mark.both_event_loops

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def start(handler: Handler) -> int:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await handler(reader, writer)
            except ConnectionError:
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(run, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 5)
    for server in servers:
        server.close()
        await server.wait_closed()


def answering(response: bytes, *, end: str = "close") -> Handler:
    """A server that reads a request head, writes ``response``, then closes (``close``/``reset``/``hold``)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        if end == "reset":
            reset(writer)
        elif end == "hold":
            await reader.read()  # until the check drops the connection

    return handler


async def http_check(port: int, **fields: Any) -> Any:
    return await run_check({"type": "http", "target": f"http://127.0.0.1:{port}/", "timeout_s": 5, **fields}, OPTS)


# --- the HTTP reader on what real servers can send ----------------------------------------------------


async def test_response_without_a_status_line(serve: Callable[[Handler], Awaitable[int]]) -> None:
    result = await http_check(await serve(answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")))
    assert result.error == "malformed HTTP response: no valid status line"


async def test_header_line_without_a_colon(serve: Callable[[Handler], Awaitable[int]]) -> None:
    result = await http_check(await serve(answering(b"HTTP/1.1 200 OK\r\nnot a header\r\n\r\n")))
    assert result.error == "malformed HTTP response: invalid header line"


async def test_headers_longer_than_the_limit(serve: Callable[[Handler], Awaitable[int]]) -> None:
    flood = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * (2 * STREAM_LIMIT)
    result = await http_check(await serve(answering(flood, end="hold")))
    assert result.error == f"response headers exceed {STREAM_LIMIT} bytes"


async def test_connection_closed_inside_the_headers(serve: Callable[[Handler], Awaitable[int]]) -> None:
    result = await http_check(await serve(answering(b"HTTP/1.1 200 OK\r\nServer: half")))
    assert result.error == "connection closed by 127.0.0.1 while reading the response headers"


async def test_body_shorter_than_its_content_length(serve: Callable[[Handler], Awaitable[int]]) -> None:
    result = await http_check(await serve(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")))
    assert result.error == "connection closed before the end of the response body"


async def test_chunked_body_cut_off(serve: Callable[[Handler], Awaitable[int]]) -> None:
    cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwo"
    result = await http_check(await serve(answering(cut)))
    assert result.error == "connection closed inside a chunked response body"
    cut_in_size = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1"
    result = await http_check(await serve(answering(cut_in_size)))
    assert result.error == "connection closed inside a chunked response body"


async def test_chunked_body_with_a_bad_size(serve: Callable[[Handler], Awaitable[int]]) -> None:
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    result = await http_check(await serve(answering(bad)))
    assert result.error == "malformed chunked response body"
    endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * (2 * STREAM_LIMIT)
    result = await http_check(await serve(answering(endless, end="hold")))
    assert result.error == "malformed chunked response body"


async def test_chunked_body_and_interim_response(serve: Callable[[Handler], Awaitable[int]]) -> None:
    good = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Set-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    result = await http_check(await serve(answering(good)), keyword="hello world")
    assert result.ok, result.error
    assert result.details["status_code"] == 200
    assert result.details["headers"]["Set-Cookie"] == "a=1, b=2"
    assert result.details["body_bytes"] == 11


async def test_body_until_the_connection_closes(serve: Callable[[Handler], Awaitable[int]]) -> None:
    result = await http_check(await serve(answering(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 100_000 + b"END")),
                              keyword="END", max_body_bytes=200_000)
    assert result.ok, result.error
    assert result.details["body_bytes"] == 100_003
    assert result.details["http_version"] == "1.0"


async def test_reset_after_the_whole_response_still_counts(serve: Callable[[Handler], Awaitable[int]]) -> None:
    """What arrived before a reset is read first: a complete answer is judged, not the reset."""
    result = await http_check(await serve(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", end="reset")),
                              keyword="ok")
    assert result.ok, result.error


async def test_reset_before_the_response(serve: Callable[[Handler], Awaitable[int]]) -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        reset(writer)

    result = await http_check(await serve(rude))
    assert result.error in (
        "connection reset by 127.0.0.1 before the response",
        "connection closed by 127.0.0.1 without a response",  # the kernel may report it as a close
    )


# --- the connection itself ---------------------------------------------------------------------------


async def connect(port: int) -> Connection:
    return await open_vetted("127.0.0.1", port, OPTS, Probe())


async def test_reads_follow_stream_semantics(serve: Callable[[Handler], Awaitable[int]]) -> None:
    async def lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"one\r\ntwo\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"three")  # a separator split over two reads must still be found
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"\r\nrest")
        await writer.drain()
        writer.write_eof()  # half-close: the check's side stays writable
        assert await reader.readexactly(4) == b"ping"

    conn = await connect(await serve(lines))
    try:
        assert await conn.readuntil(b"\r\n") == b"one\r\n"
        assert await conn.read(2) == b"tw"
        assert await conn.readexactly(3) == b"o\r\n"
        assert await conn.readuntil(b"\r\n") == b"three\r\n"
        with pytest.raises(asyncio.IncompleteReadError) as incomplete:
            await conn.readexactly(10)
        assert incomplete.value.partial == b"rest"
        assert await conn.read(10) == b""
        assert await conn.wait_data() is False
        conn.write(b"ping")
        await conn.drain()
    finally:
        await asyncio.sleep(0.05)
        conn.abort()


async def test_a_flood_is_not_buffered_beyond_the_bound(serve: Callable[[Handler], Awaitable[int]]) -> None:
    sent = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        block = b"x" * 65536
        while True:
            writer.write(block)
            await writer.drain()
            sent += len(block)

    conn = await connect(await serve(flood))
    try:
        await asyncio.sleep(0.3)
        # the server keeps writing while the check reads nothing: the kernel's buffers fill, not ours
        assert conn.buffered <= BUFFER_HIGH + 1024 * 1024
        assert sent > conn.buffered
        got = 0
        while got < 8 * 1024 * 1024:  # reading resumes the flow
            got += len(await conn.read(65536))
    finally:
        conn.abort()


async def test_reset_is_raised_after_the_data_before_it(serve: Callable[[Handler], Awaitable[int]]) -> None:
    async def say_and_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"last words")
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)

    conn = await connect(await serve(say_and_reset))
    try:
        await asyncio.sleep(0.2)
        assert await conn.read(100) == b"last words"
        with pytest.raises(ConnectionResetError):
            await conn.read(100)
        with pytest.raises(ConnectionResetError):
            await conn.drain()
    finally:
        conn.abort()


async def test_plaintext_sent_before_starttls_is_discarded(serve: Callable[[Handler], Awaitable[int]]) -> None:
    """A reply injected in clear before the handshake is never read as if it came over TLS."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readuntil(b"\n") == b"STARTTLS\r\n"
        writer.write(b"220 go ahead\r\n250 INJECTED\r\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        writer.write(b"250 over tls\r\n")
        await writer.drain()
        await reader.read()

    conn = await connect(await serve(starttls))
    try:
        conn.write(b"STARTTLS\r\n")
        assert await conn.readuntil(b"\n") == b"220 go ahead\r\n"
        await asyncio.sleep(0.1)  # the injected line has arrived by now
        await conn.start_tls(client_ctx, "127.0.0.1")
        assert conn.ssl_object is not None
        assert await conn.readuntil(b"\n") == b"250 over tls\r\n"
    finally:
        conn.abort()
