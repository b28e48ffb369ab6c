"""The agent's websocket client against real servers on 127.0.0.1: aiohttp's, and a raw one that
sends exactly the bytes a test wants (fragments, hostile frames, broken upgrades)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from vantage.agent import wsclient
from vantage.agent.wsclient import ConnectionClosed, WebSocketError

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None, rsv: int = 0) -> bytes:
    """A frame as a server would send it (unmasked unless a test wants otherwise)."""
    size = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + payload
    return head + payload


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one frame from the client; it must be masked (RFC 6455 §5.3)."""
    first, second = await reader.readexactly(2)
    assert second & 0x80, "a client frame must be masked"
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4)
    data = await reader.readexactly(size)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class RawServer:
    """Answers the upgrade (or not, as told), then runs a script on the connection."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.status_line = "HTTP/1.1 101 Switching Protocols"
        self.extra_headers = ""
        self.wrong_accept = False
        self.request = b""
        self.done = asyncio.Event()
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.request = await reader.readuntil(b"\r\n\r\n")
            key = next(
                (
                    line.split(b":", 1)[1].strip()
                    for line in self.request.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                ),
                b"none (a CONNECT request)",
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
            if self.wrong_accept:
                accept = base64.b64encode(b"x" * 20).decode()
            writer.write(
                f"{self.status_line}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n{self.extra_headers}\r\n".encode()
            )
            if self.script is not None:
                await self.script(reader, writer)
        finally:
            self.done.set()
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    server_state = RawServer()
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", 0)
    server_state.port = server.sockets[0].getsockname()[1]
    yield server_state
    server.close()
    await server.wait_closed()


def url(raw: RawServer) -> str:
    return f"ws://127.0.0.1:{raw.port}/api/v1/agent/connect"


async def test_messages_both_ways_with_aiohttp_pings_and_a_clean_close() -> None:
    received: list[str] = []
    close_codes: list[Any] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str("hello")
        await ws.ping(b"are you there")
        await ws.send_str("x" * 70_000)  # a 64-bit length
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                received.append(msg.data)
                await ws.send_str(f"echo {len(msg.data)}")
        close_codes.append(ws.close_code)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        ws = await wsclient.connect(f"ws://127.0.0.1:{port}/ws")
        assert await ws.receive() == "hello"
        assert await ws.receive() == "x" * 70_000  # the ping was answered on the way
        await ws.send("één", b'{"raw":"utf-8"}', "y" * 300)  # 7-bit, bytes, and 16-bit lengths
        assert [await ws.receive() for _ in range(3)] == ["echo 3", "echo 15", "echo 300"]
        before = ws.last_rx
        await ws.ping(b"mine")
        await asyncio.sleep(0.1)
        with pytest.raises(asyncio.TimeoutError):  # the pong is not a message...
            await asyncio.wait_for(ws.receive(), 0.2)
        assert ws.last_rx > before  # ...but it is noticed
        await ws.close()
        assert ws.closed
        await asyncio.sleep(0.1)
        assert received == ["één", '{"raw":"utf-8"}', "y" * 300]
        assert close_codes == [1000]
    finally:
        await runner.cleanup()


async def test_fragmented_message_with_a_ping_in_between(raw: RawServer) -> None:
    pongs: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(server_frame(wsclient.OP_TEXT, b"frag", fin=False))
        writer.write(server_frame(wsclient.OP_PING, b"p1"))
        writer.write(server_frame(wsclient.OP_CONTINUATION, b"men", fin=False))
        writer.write(server_frame(wsclient.OP_CONTINUATION, "té".encode(), fin=True))
        opcode, data = await read_client_frame(reader)
        assert opcode == wsclient.OP_PONG
        pongs.append(data)
        writer.write(server_frame(wsclient.OP_CLOSE, struct.pack("!H", 4001) + b"stale"))
        opcode, data = await read_client_frame(reader)
        assert (opcode, data) == (wsclient.OP_CLOSE, struct.pack("!H", 4001))  # echoed

    raw.script = script
    ws = await wsclient.connect(url(raw))
    assert await ws.receive() == "fragmenté"
    with pytest.raises(ConnectionClosed) as excinfo:
        await ws.receive()
    assert (excinfo.value.code, excinfo.value.reason) == (4001, "stale")
    await asyncio.wait_for(raw.done.wait(), 5)
    assert pongs == [b"p1"]
    assert b"Sec-WebSocket-Version: 13" in raw.request and b"Upgrade: websocket" in raw.request


@pytest.mark.parametrize(
    ("frames", "code", "message"),
    [
        ([server_frame(wsclient.OP_TEXT, b"hi", mask=b"abcd")], 1002, "masked"),
        ([server_frame(wsclient.OP_TEXT, b"hi", rsv=0x40)], 1002, "reserved bits"),
        ([server_frame(wsclient.OP_CONTINUATION, b"hi")], 1002, "continuation"),
        ([server_frame(wsclient.OP_TEXT, b"a", fin=False), server_frame(wsclient.OP_TEXT, b"b")], 1002, "inside"),
        ([server_frame(wsclient.OP_PING, b"x" * 126)], 1002, "control frame"),
        ([server_frame(wsclient.OP_PING, b"x", fin=False)], 1002, "control frame"),
        ([server_frame(0x3, b"x")], 1002, "unknown opcode"),
        ([server_frame(wsclient.OP_BINARY, b"\x00\x01")], 1003, "binary"),
        ([server_frame(wsclient.OP_TEXT, b"\xff\xfe")], 1007, "UTF-8"),
        ([server_frame(wsclient.OP_TEXT, b"x" * 2000)], 1009, "over 1000 bytes"),
        (
            [server_frame(wsclient.OP_TEXT, b"x" * 600, fin=False), server_frame(wsclient.OP_CONTINUATION, b"y" * 600)],
            1009,
            "message over",
        ),
    ],
)
async def test_a_hostile_server_frame_closes_with_the_right_code(
    raw: RawServer, frames: list[bytes], code: int, message: str
) -> None:
    closes: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(frames))
        opcode, data = await read_client_frame(reader)
        assert opcode == wsclient.OP_CLOSE
        closes.append(data)

    raw.script = script
    ws = await wsclient.connect(url(raw), max_message=1000)
    with pytest.raises(WebSocketError, match=message):
        await ws.receive()
    await asyncio.wait_for(raw.done.wait(), 5)
    assert closes == [struct.pack("!H", code)]
    assert ws.closed
    with pytest.raises(ConnectionClosed):
        await ws.send("too late")


async def test_a_lost_connection_is_a_close_1006(raw: RawServer) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(server_frame(wsclient.OP_TEXT, b"last words")[:-3])  # cut mid-frame

    raw.script = script
    ws = await wsclient.connect(url(raw))
    with pytest.raises(ConnectionClosed) as excinfo:
        await ws.receive()
    assert excinfo.value.code == 1006


@pytest.mark.parametrize(
    ("status_line", "extra", "wrong_accept", "message"),
    [
        ("HTTP/1.1 403 Forbidden", "", False, "HTTP 403"),
        ("HTTP/1.1 101 Switching Protocols", "", True, "invalid"),
        ("HTTP/1.1 101 Switching Protocols", "Sec-WebSocket-Extensions: permessage-deflate\r\n", False, "extension"),
        ("SSH-2.0-OpenSSH_9.2", "", False, "not an HTTP answer"),
    ],
)
async def test_a_bad_upgrade_answer_is_refused(
    raw: RawServer, status_line: str, extra: str, wrong_accept: bool, message: str
) -> None:
    raw.status_line, raw.extra_headers, raw.wrong_accept = status_line, extra, wrong_accept
    with pytest.raises(WebSocketError, match=message):
        await wsclient.connect(url(raw))


async def test_only_websocket_urls_and_http_proxies() -> None:
    with pytest.raises(ValueError, match="not a websocket URL"):
        await wsclient.connect("https://127.0.0.1/")
    with pytest.raises(ValueError, match="only http:// proxies"):
        await wsclient.connect("ws://127.0.0.1:9/", proxy="socks5://127.0.0.1:1080")


async def test_a_proxy_that_refuses_the_tunnel(raw: RawServer) -> None:
    raw.status_line = "HTTP/1.1 407 Proxy Authentication Required"
    with pytest.raises(WebSocketError, match="proxy refused the tunnel: HTTP 407"):
        await wsclient.connect("ws://cp.example.com:8443/", proxy=f"http://user:p%40ss@127.0.0.1:{raw.port}")
    assert raw.request.startswith(b"CONNECT cp.example.com:8443 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic " + base64.b64encode(b"user:p@ss") in raw.request
