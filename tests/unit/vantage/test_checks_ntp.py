"""The ``ntp`` check: validation, and SNTP queries against a UDP time server the test runs on loopback.

The server speaks NTPv4 on a real UDP socket and can be told to run its clock ahead, report another
stratum or leap indicator, send a kiss-o'-death, answer in the wrong mode, forge a reply, or stay
silent.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from vantage.checks import CheckOptions, CheckSpecError, DataProtection, run_check, validate_spec

PACKET = struct.Struct("!BBbbII4sQQQQ")
NTP_UNIX_OFFSET = 2208988800


def ntp_time(seconds: float) -> int:
    return int((seconds + NTP_UNIX_OFFSET) * 2**32)


@dataclass
class TimeServer(asyncio.DatagramProtocol):
    """An NTPv4 server whose answers the test chooses."""

    ahead_s: float = 0.0
    stratum: int = 2
    leap: int = 0
    mode: int = 4
    reference: bytes = socket.inet_aton("10.1.2.3")
    forge_first: bool = False  # send a reply with the wrong origin timestamp before the real one
    only_forged: bool = False
    silent: bool = False
    queries: list[bytes] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queries.append(data)
        if self.silent or self.transport is None:
            return
        received = time.time() + self.ahead_s
        origin = PACKET.unpack_from(data)[10]

        def reply(echo: int) -> bytes:
            first = self.leap << 6 | 4 << 3 | self.mode
            return PACKET.pack(first, self.stratum, 6, -20, 0x0000_0C00, 0x0000_1A00, self.reference,
                               ntp_time(received - 30), echo, ntp_time(received), ntp_time(time.time() + self.ahead_s))

        if self.forge_first or self.only_forged:
            self.transport.sendto(reply(origin ^ 1), addr)
        if not self.only_forged:
            self.transport.sendto(reply(origin), addr)


@pytest.fixture
async def server() -> AsyncIterator[tuple[TimeServer, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(TimeServer, local_addr=("127.0.0.1", 0))
    yield protocol, int(transport.get_extra_info("sockname")[1])
    transport.close()


async def ntp(port: int, host: str = "127.0.0.1", **fields: Any) -> dict[str, Any]:
    spec = {"type": "ntp", "target": f"{host}:{port}", "timeout_s": 2, **fields}
    return (await run_check(spec, CheckOptions())).to_dict()


# --- validation ------------------------------------------------------------------------------------


def test_defaults_and_idempotence() -> None:
    norm = validate_spec({"type": "ntp", "target": "NTP1.example.internal:123"})
    assert norm == {"type": "ntp", "target": "ntp1.example.internal:123", "timeout_s": 10.0,
                    "max_offset_ms": 1000.0, "max_stratum": 15}
    assert validate_spec(norm) == norm
    assert validate_spec({"type": "ntp", "target": "[::1]:123", "max_offset_ms": 5})["max_offset_ms"] == 5.0


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"target": "ntp.example.internal"}, "target"),
        ({"max_offset_ms": -1}, "max_offset_ms"),
        ({"max_offset_ms": "100"}, "max_offset_ms"),
        ({"max_offset_ms": True}, "max_offset_ms"),
        ({"max_stratum": 0}, "max_stratum"),
        ({"max_stratum": 16}, "max_stratum"),
        ({"max_stratum": 2.5}, "max_stratum"),
        ({"max_ofset_ms": 5}, "max_ofset_ms"),
    ],
)
def test_errors_name_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(CheckSpecError) as info:
        validate_spec({"type": "ntp", "target": "ntp:123", **extra})
    assert info.value.field == field


# --- against the server ----------------------------------------------------------------------------


async def test_synchronised_server_reports_offset_delay_and_stratum(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    result = await ntp(port)
    assert result["ok"], result["error"]
    details = result["details"]
    assert details["stratum"] == 2 and details["leap"] == 0 and details["version"] == 4
    assert abs(details["offset_ms"]) < 100 and 0 <= details["delay_ms"] < 100
    assert details["reference_id"] == "10.1.2.3" and details["peer_ip"] == "127.0.0.1"
    assert details["root_delay_ms"] == pytest.approx(46.875) and details["root_dispersion_ms"] == pytest.approx(101.562)
    assert "query_ms" in result["phases"] and "dns_ms" not in result["phases"]
    # The query reveals nothing of the checkpoint's clock: only the random transmit timestamp is set.
    first, *middle, transmit = PACKET.unpack_from(protocol.queries[0])
    assert first == 4 << 3 | 3 and transmit != 0
    assert all(value in (0, b"\0\0\0\0") for value in middle)


async def test_offset_is_measured_and_bounded(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    protocol.ahead_s = 5.0  # the checkpoint's clock is 5 s behind the server's
    result = await ntp(port)
    assert not result["ok"]
    assert result["error"].startswith("clock offset +50") and result["error"].endswith("ms is beyond max_offset_ms 1000")
    result = await ntp(port, max_offset_ms=10_000)
    assert result["ok"], result["error"]
    assert result["details"]["offset_ms"] == pytest.approx(5000, abs=100)
    protocol.ahead_s = -2.0
    result = await ntp(port, max_offset_ms=500)
    assert result["error"].startswith("clock offset -20")


async def test_stratum_limit_and_stratum_one_reference(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    protocol.stratum = 5
    result = await ntp(port, max_stratum=3)
    assert result["error"] == "stratum 5 is above max_stratum 3" and result["details"]["stratum"] == 5
    protocol.stratum, protocol.reference = 1, b"GPS\0"
    result = await ntp(port, max_stratum=1)
    assert result["ok"], result["error"]
    assert result["details"]["reference_id"] == "GPS"


async def test_unsynchronised_server_fails(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    protocol.leap, protocol.stratum = 3, 16
    result = await ntp(port)
    assert result["error"] == "the server's clock is not synchronised (leap indicator 3, stratum 16)"


async def test_leap_second_announcement_is_a_warning(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    protocol.leap = 1
    result = await ntp(port)
    assert result["ok"], result["error"]
    assert result["details"]["warnings"] == ["the server announces a leap second (+1 s) at the end of the day"]


async def test_kiss_of_death_and_wrong_mode(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    protocol.stratum, protocol.reference = 0, b"RATE"
    result = await ntp(port)
    assert result["error"] == "the server refused the query with a kiss-o'-death (RATE)"
    protocol.stratum, protocol.mode = 2, 3
    result = await ntp(port)
    assert result["error"] == "not an NTP server reply (mode 3)"


async def test_a_reply_that_does_not_echo_the_query_is_ignored(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    protocol.forge_first = True
    result = await ntp(port)
    assert result["ok"], result["error"]
    protocol.forge_first, protocol.only_forged = False, True
    result = await ntp(port, timeout_s=0.5)
    assert result["error"] == "timed out after 0.5 s during NTP query"


async def test_silent_server_times_out(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    protocol.silent = True
    result = await ntp(port, timeout_s=0.5)
    assert result["error"] == "timed out after 0.5 s during NTP query"
    assert len(protocol.queries) == 1


async def test_closed_port_is_reported() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await ntp(port)
    assert result["error"] == f"no NTP server at 127.0.0.1:{port} (port unreachable)"


async def test_name_resolved_and_blocked_ranges_refused(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    result = await ntp(port, host="localhost")  # ::1 too, maybe first: port unreachable there, then 127.0.0.1
    assert result["ok"], result["error"]
    assert result["details"]["peer_ip"] == "127.0.0.1" and "dns_ms" in result["phases"]
    before = len(protocol.queries)
    blocked = await ntp(123, host="169.254.169.123")
    assert blocked["error"].startswith("target address 169.254.169.123 is in blocked range 169.254.0.0/16")
    assert len(protocol.queries) == before


async def test_data_protection_removes_the_upstream_address(server: tuple[TimeServer, int]) -> None:
    protocol, port = server
    result = await ntp(port)
    stripped = DataProtection(strip_ips=True).apply(result)
    assert "reference_id" not in stripped["details"] and "peer_ip" not in stripped["details"]
    assert "10.1.2.3" not in str(stripped) and stripped["details"]["stratum"] == 2
    protocol.stratum, protocol.reference = 1, b"PPS\0"
    result = await ntp(port)
    assert DataProtection(strip_ips=True).apply(result)["details"]["reference_id"] == "PPS"
