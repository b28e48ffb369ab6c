"""The ``tcp`` check: connect to a vetted address, optionally send a string and expect a reply.

Details: ``banner`` (the first 1024 characters read: content), ``bytes_read``. Phases: ``dns_ms``,
``connect_ms``, ``first_byte_ms``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vantage.checks.fields import HOST_PORT_TARGET, parse_host_port
from vantage.checks.net import open_vetted
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import CheckType, Protect, Text

READ_LIMIT = 65536  # bytes read at most while waiting for ``expect``
EXCERPT_CHARS = 1024
MAX_SEND = 65536


async def run_tcp(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``tcp`` spec.

    Without ``expect`` the check succeeds once the connection is made (and ``send`` written).
    With it, the check reads until the expected text appears, the peer closes, or
    :data:`READ_LIMIT` bytes have been read; the first two kilobytes read are reported as the
    ``banner`` (content, removed by data protection).
    """
    host, port = parse_host_port(str(spec["target"]))
    conn = await open_vetted(host, port, options, probe)
    try:
        send: str | None = spec["send"]
        if send:
            with probe.phase("sending"):
                try:
                    conn.write(send.encode("utf-8"))
                    await conn.drain()
                except ConnectionError:
                    raise CheckFailure(f"connection reset by {conn.peer_ip} while sending") from None
        expect: str | None = spec["expect"]
        if expect is None:
            return
        wanted = expect.encode("utf-8")
        received = bytearray()
        start = time.perf_counter()
        probe.stage = f"read (expected {expect!r} not seen yet)"
        try:
            while wanted not in received and len(received) < READ_LIMIT:
                chunk = await conn.read(READ_LIMIT - len(received))
                if not chunk:
                    break
                if not received:
                    probe.add_phase("first_byte_ms", (time.perf_counter() - start) * 1000.0)
                received += chunk
                probe.details["banner"] = received[: EXCERPT_CHARS * 2].decode("utf-8", "replace")[
                    :EXCERPT_CHARS
                ]
        except ConnectionError:
            raise CheckFailure(f"connection reset by {conn.peer_ip} while reading") from None
        probe.details["bytes_read"] = len(received)
        if wanted not in received:
            why = (
                "the connection was closed" if len(received) < READ_LIMIT else f"{READ_LIMIT} bytes were read"
            )
            raise CheckFailure(f"expected {expect!r} not received ({why} after {len(received)} bytes)")
    finally:
        conn.abort()


CHECK = CheckType(
    name="tcp",
    description="A TCP connection to a vetted address; optionally send a string and expect text in the reply.",
    target=HOST_PORT_TARGET,
    fields={
        "send": Text(max_length=MAX_SEND, description="text to send once connected (UTF-8)"),
        "expect": Text(description=f"text the reply must contain within its first {READ_LIMIT} bytes"),
    },
    run=run_tcp,
    example={"type": "tcp", "target": "redis.example.internal:6379", "send": "PING\r\n", "expect": "PONG"},
    protect=Protect(content=frozenset({"banner"})),
)
