"""The client side of a websocket (RFC 6455) for the agent's one connection to the control plane.

The agent needs one outbound connection that sends and receives JSON text messages, answers
pings, sends its own, tunnels through an HTTP proxy with ``CONNECT`` and closes cleanly.  This
module does exactly that on asyncio streams, with no extension negotiated (no compression) and
a bound on message size.  A general HTTP client library would cost the agent more memory than
all of its own code and more CPU per message (docs/agent.md, "Memory").

Everything the server sends is checked: the upgrade answer (status ``101``, ``Upgrade``,
``Connection`` and the ``Sec-WebSocket-Accept`` digest of the key sent), then every frame
(unmasked, no reserved bits, control frames unfragmented and at most 125 bytes, continuation
frames only inside a fragmented message, text valid UTF-8, messages within ``max_message``
bytes).  A violation closes the connection with the matching close code and raises
:class:`WebSocketError`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import ssl
import struct
import time
from urllib.parse import unquote, urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_UNSUPPORTED = 1000, 1001, 1002, 1003
CLOSE_INVALID_DATA, CLOSE_TOO_BIG = 1007, 1009
#: longest upgrade or proxy answer head accepted
MAX_HEAD_BYTES = 16 * 1024


class WebSocketError(ConnectionError):
    """The upgrade failed, or the server broke the protocol (the connection is closed)."""


class ConnectionClosed(WebSocketError):
    """The connection ended: a close frame (``code``, ``reason``) or a lost connection (1006)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


async def connect(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | None = None,
    max_message: int = 4 * 1024 * 1024,
    user_agent: str = "vantage-agent",
) -> WebSocket:
    """Open a websocket to ``url`` (``ws://`` or ``wss://``), through ``proxy`` when given.

    ``proxy`` is an ``http://[user:password@]host:port`` proxy; the connection is tunnelled with
    ``CONNECT`` and TLS stays end to end.  The caller bounds the time it may take.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a websocket URL: {url!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    context = (ssl_context or ssl.create_default_context()) if secure else None
    if proxy:
        reader, writer = await _tunnel(proxy, host, port)
        if context is not None:
            await writer.start_tls(context, server_hostname=host)
    else:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context is not None else None
        )
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        default_port = 443 if secure else 80
        shown = f"[{host}]" if ":" in host else host
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        writer.write(
            (
                f"GET {target} HTTP/1.1\r\n"
                f"Host: {shown if port == default_port else f'{shown}:{port}'}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"User-Agent: {user_agent}\r\n\r\n"
            ).encode("ascii")
        )
        status, headers = await _read_head(reader)
        if status != 101:
            raise WebSocketError(f"websocket upgrade refused: HTTP {status}")
        digest = hashlib.sha1(key.encode("ascii") + _GUID, usedforsecurity=False).digest()  # RFC 6455 §4.2.2
        expected = base64.b64encode(digest).decode("ascii")
        if (
            headers.get("upgrade", "").lower() != "websocket"
            or "upgrade" not in {t.strip() for t in headers.get("connection", "").lower().split(",")}
            or headers.get("sec-websocket-accept") != expected
        ):
            raise WebSocketError("websocket upgrade answer is invalid (Upgrade, Connection or Accept)")
        if headers.get("sec-websocket-extensions") or headers.get("sec-websocket-protocol"):
            raise WebSocketError("the server chose an extension or subprotocol that was not offered")
    except BaseException:
        writer.close()
        raise
    return WebSocket(reader, writer, max_message)


class WebSocket:
    """An open websocket: :meth:`receive` text messages, :meth:`send` them, :meth:`close`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_message: int) -> None:
        self._reader = reader
        self._writer = writer
        self.max_message = max_message
        #: ``time.monotonic()`` of the last frame received (any frame, pongs included)
        self.last_rx = time.monotonic()
        self._close_sent = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """The connection is closing or closed: nothing can be sent any more."""
        return self._closed or self._close_sent or self._writer.is_closing()

    async def receive(self) -> str:
        """The next text message.  Pings are answered and pongs noted on the way.

        Raises :class:`ConnectionClosed` when the connection ends and :class:`WebSocketError`
        when the server breaks the protocol (a binary message included: the agent expects text).
        """
        parts: list[bytes] | None = None
        size = 0
        while True:
            fin, opcode, payload = await self._read_frame()
            self.last_rx = time.monotonic()
            if opcode == OP_PING:
                if not self.closed:
                    self._writer.write(_frame(OP_PONG, payload))
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code, reason = _close_payload(payload)
                if not self._close_sent:
                    with contextlib.suppress(Exception):
                        self._writer.write(_frame(OP_CLOSE, payload[:2]))
                    self._close_sent = True
                self._abort()
                raise ConnectionClosed(code, reason)
            if opcode == OP_CONTINUATION:
                if parts is None:
                    raise self._fail(CLOSE_PROTOCOL_ERROR, "continuation frame outside a message")
            elif opcode in (OP_TEXT, OP_BINARY):
                if parts is not None:
                    raise self._fail(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
                if opcode == OP_BINARY:
                    raise self._fail(CLOSE_UNSUPPORTED, "binary message (only text is used)")
                parts = []
            else:
                raise self._fail(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            size += len(payload)
            if size > self.max_message:
                raise self._fail(CLOSE_TOO_BIG, f"message over {self.max_message} bytes")
            parts.append(payload)
            if fin:
                try:
                    return (parts[0] if len(parts) == 1 else b"".join(parts)).decode("utf-8")
                except UnicodeDecodeError:
                    raise self._fail(CLOSE_INVALID_DATA, "text message is not UTF-8") from None

    async def send(self, *messages: str | bytes) -> None:
        """Send text messages (``bytes``: UTF-8 already) in one write; wait only while the buffer is full."""
        if self.closed:
            raise ConnectionClosed(1006, "connection is closed")
        self._writer.write(
            b"".join(_frame(OP_TEXT, m if isinstance(m, bytes) else m.encode("utf-8")) for m in messages)
        )
        await self._writer.drain()

    async def ping(self, data: bytes = b"") -> None:
        """Send a ping (the matching pong shows up as :attr:`last_rx`)."""
        if self.closed:
            raise ConnectionClosed(1006, "connection is closed")
        self._writer.write(_frame(OP_PING, data[:125]))
        await self._writer.drain()

    async def close(self, code: int = CLOSE_NORMAL, timeout: float = 2.0) -> None:
        """Close handshake: send a close frame, wait up to ``timeout`` for the server's, then close."""
        if self._closed:
            return
        try:
            if not self._close_sent:
                self._close_sent = True
                self._writer.write(_frame(OP_CLOSE, struct.pack("!H", code)))
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
                    while True:  # discard what is still in flight until the server's close
                        _, opcode, _ = await self._read_frame()
                        if opcode == OP_CLOSE:
                            break
        except (TimeoutError, OSError, WebSocketError, asyncio.IncompleteReadError):
            pass
        finally:
            self._abort()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await self._writer.wait_closed()

    # ------------------------------------------------------------------ internals

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        read = self._reader.readexactly
        try:
            head = await read(2)
            first, second = head[0], head[1]
            if first & 0x70:
                raise self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
            if second & 0x80:
                raise self._fail(CLOSE_PROTOCOL_ERROR, "masked frame from the server")
            fin, opcode, size = bool(first & 0x80), first & 0x0F, second & 0x7F
            if size == 126:
                size = int.from_bytes(await read(2), "big")
            elif size == 127:
                size = int.from_bytes(await read(8), "big")
            if opcode >= OP_CLOSE and (size > 125 or not fin):
                raise self._fail(CLOSE_PROTOCOL_ERROR, "control frame fragmented or over 125 bytes")
            if size > self.max_message:
                raise self._fail(CLOSE_TOO_BIG, f"frame over {self.max_message} bytes")
            payload = await read(size) if size else b""
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if isinstance(exc, WebSocketError):
                raise
            self._abort()
            raise ConnectionClosed(1006, "connection lost") from None
        return fin, opcode, payload

    def _fail(self, code: int, message: str) -> WebSocketError:
        if not self._close_sent:
            self._close_sent = True
            with contextlib.suppress(Exception):
                self._writer.write(_frame(OP_CLOSE, struct.pack("!H", code)))
        self._abort()
        return WebSocketError(f"protocol error: {message}")

    def _abort(self) -> None:
        self._closed = True
        self._writer.close()


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 §5.2-5.3: every client frame is masked)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, size)
    mask = os.urandom(4)
    if not size:
        return head + mask
    # XOR with the repeated mask in one big-integer operation (byte order irrelevant, both alike).
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")
    return head + mask + masked


def _close_payload(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        return 1005, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of an HTTP/1.1 answer head."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise WebSocketError("HTTP answer head too large") from None
    except asyncio.IncompleteReadError:
        raise WebSocketError("connection closed before an HTTP answer") from None
    if len(head) > MAX_HEAD_BYTES:
        raise WebSocketError("HTTP answer head too large")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
        raise WebSocketError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(status_line[1]), headers


async def _tunnel(proxy: str, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to ``host:port`` through an HTTP proxy (``CONNECT``)."""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// proxies are supported, not {proxy!r}")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            request += f"Proxy-Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n"
        writer.write((request + "\r\n").encode("latin-1"))
        status, _ = await _read_head(reader)
        if status != 200:
            raise WebSocketError(f"proxy refused the tunnel: HTTP {status}")
    except BaseException:
        writer.close()
        raise
    return reader, writer
