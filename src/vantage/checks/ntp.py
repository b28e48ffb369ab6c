"""The ``ntp`` check: one SNTP query (RFC 4330, an NTPv4 client packet) over UDP to a time server.

It checks that the server answers within the timeout with a usable time — in server mode, not a
kiss-o'-death, its clock synchronised (leap indicator not 3, stratum 1 to 15) — that its stratum
is at most ``max_stratum``, and that the checkpoint's clock is within ``max_offset_ms`` of it.
Signed instructions expire within minutes, so a checkpoint whose clock drifts stops working; this
check also watches the internal time servers the checkpoint (and everything else) relies on.

The name is resolved once and every address vetted, as for every check; the query goes to the
first vetted address (the next one when the network reports an error for it). The transmit
timestamp of the query is a random 64-bit value, as draft-ietf-ntp-data-minimization recommends:
it reveals nothing about the checkpoint's clock, and a reply counts only when it echoes that value
as its origin timestamp, so an off-path forgery is ignored.

Offset and delay follow RFC 5905: ``offset = ((T2 - T1) + (T3 - T4)) / 2`` and ``delay = (T4 - T1)
- (T3 - T2)``, with T1/T4 the checkpoint's send and receive times and T2/T3 the server's. A
positive offset means the checkpoint's clock is behind the server's.

Details: ``stratum``, ``offset_ms``, ``delay_ms``, ``leap``, ``version``, ``root_delay_ms``,
``root_dispersion_ms``, ``reference_id`` (a source code such as ``GPS`` at stratum 1; from stratum
2 the upstream server's IPv4 address, which ``strip_ips`` removes) and ``server_time``. Phases:
``dns_ms`` and ``query_ms`` (from sending the query to its answer).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

from vantage.checks.fields import HOST_PORT_TARGET, format_host_port, parse_host_port
from vantage.checks.net import resolve
from vantage.checks.netpolicy import BlockedAddressError, CheckOptions, IPAddress, vet_addresses
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import CheckType, Integer, Number, Protect

#: LI/VN/mode, stratum, poll, precision, root delay, root dispersion, reference ID, then the
#: reference, origin, receive and transmit timestamps (64-bit NTP format).
PACKET = struct.Struct("!BBbbII4sQQQQ")
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
CLIENT_MODE, SERVER_MODE, VERSION = 3, 4, 4
UNSYNCHRONISED_STRATUM = 16
MAX_OFFSET_MS_DEFAULT = 1000.0


def _seconds(timestamp: int) -> float:
    """A 64-bit NTP timestamp (era 0) as Unix seconds."""
    return timestamp / 2**32 - NTP_UNIX_OFFSET


class _Replies(asyncio.DatagramProtocol):
    """Queues each datagram with the moment it arrived (T4), and the errors the network reports."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, float] | OSError] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, time.time()))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.queue.put_nowait(exc)


def _reference(stratum: int, ref_id: bytes) -> str:
    if stratum <= 1:
        return ref_id.rstrip(b"\0").decode("ascii", "replace")
    return socket.inet_ntoa(ref_id)  # the upstream server (an IPv4 address, or a hash of an IPv6 one)


async def _query(address: IPAddress, port: int, probe: Probe) -> tuple[bytes, float, float]:
    """Send one client packet to ``address``; the matching reply, T1 and T4."""
    loop = asyncio.get_running_loop()
    transport, replies = await loop.create_datagram_endpoint(_Replies, remote_addr=(str(address), port))
    try:
        nonce = secrets.randbits(64)
        query = PACKET.pack(VERSION << 3 | CLIENT_MODE, 0, 0, 0, 0, 0, b"\0" * 4, 0, 0, 0, nonce)
        with probe.phase("NTP query", "query_ms"):
            sent = time.time()
            transport.sendto(query)
            while True:
                item = await replies.queue.get()
                if isinstance(item, OSError):
                    raise item
                data, received = item
                if len(data) >= PACKET.size and PACKET.unpack_from(data)[8] == nonce:
                    return data, sent, received
                # Not the answer to this query (a stray or forged datagram): keep waiting.
    finally:
        transport.abort()


async def run_ntp(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``ntp`` spec; raises :class:`CheckFailure` when an expectation is not met."""
    host, port = parse_host_port(str(spec["target"]))
    addresses = await resolve(host, port, probe)
    try:
        vet_addresses(addresses, options)
    except BlockedAddressError as exc:
        raise CheckFailure(str(exc)) from None
    errors: list[str] = []
    for address in addresses:
        where = format_host_port(str(address), port)
        try:
            data, t1, t4 = await _query(address, port, probe)
        except ConnectionRefusedError:
            errors.append(f"no NTP server at {where} (port unreachable)")
            continue
        except OSError as exc:
            errors.append(f"cannot reach {where}: {exc.strerror or exc}")
            continue
        probe.details["peer_ip"] = str(address)
        break
    else:
        raise CheckFailure("; ".join(errors))

    first, stratum, _poll, _precision, root_delay, root_dispersion, ref_id, _ref, _origin, receive, transmit = (
        PACKET.unpack_from(data)
    )
    leap, version, mode = first >> 6, first >> 3 & 7, first & 7
    if mode != SERVER_MODE:
        raise CheckFailure(f"not an NTP server reply (mode {mode})")
    if stratum == 0:
        code = ref_id.decode("ascii", "replace").strip("\0 ")
        raise CheckFailure(f"the server refused the query with a kiss-o'-death ({code or 'no code'})")
    if transmit == 0:
        raise CheckFailure("invalid NTP reply: no transmit timestamp")
    t2, t3 = _seconds(receive), _seconds(transmit)
    offset_ms = ((t2 - t1) + (t3 - t4)) / 2 * 1000.0
    details = probe.details
    details.update(
        stratum=stratum,
        leap=leap,
        version=version,
        offset_ms=round(offset_ms, 3),
        delay_ms=round(((t4 - t1) - (t3 - t2)) * 1000.0, 3),
        root_delay_ms=round(root_delay / 65536 * 1000.0, 3),
        root_dispersion_ms=round(root_dispersion / 65536 * 1000.0, 3),
        reference_id=_reference(stratum, ref_id),
        server_time=dt.datetime.fromtimestamp(t3, dt.UTC).isoformat(),
    )
    if leap == 3 or stratum >= UNSYNCHRONISED_STRATUM:
        raise CheckFailure(f"the server's clock is not synchronised (leap indicator {leap}, stratum {stratum})")
    if leap in (1, 2):
        probe.warnings.append(f"the server announces a leap second ({'+1' if leap == 1 else '-1'} s) at the end of the day")
    if stratum > int(spec["max_stratum"]):
        raise CheckFailure(f"stratum {stratum} is above max_stratum {spec['max_stratum']}")
    if abs(offset_ms) > float(spec["max_offset_ms"]):
        raise CheckFailure(f"clock offset {offset_ms:+.1f} ms is beyond max_offset_ms {spec['max_offset_ms']:g}")


def _upstream_is_an_address(details: Mapping[str, Any]) -> frozenset[str]:
    stratum = details.get("stratum")
    return frozenset({"reference_id"}) if isinstance(stratum, int) and stratum >= 2 else frozenset()


CHECK = CheckType(
    name="ntp",
    description="An SNTP query to a time server: it answers, is synchronised, and the checkpoint's clock agrees.",
    target=HOST_PORT_TARGET.described("host:port of the NTP server (usually port 123)"),
    fields={
        "max_offset_ms": Number(0, 86_400_000, default=MAX_OFFSET_MS_DEFAULT,
                                description="largest clock offset between the checkpoint and the server, in ms"),
        "max_stratum": Integer(1, 15, default=15, description="largest acceptable stratum of the server"),
    },
    run=run_ntp,
    example={"type": "ntp", "target": "ntp1.example.internal:123", "max_offset_ms": 250, "max_stratum": 4},
    protect=Protect(ip_values=_upstream_is_an_address),
)
