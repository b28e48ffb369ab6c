"""The dns check against a tiny authoritative UDP server started on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from vantage.checks import CheckOptions, run_check

ZONE: dict[tuple[str, str], list[str]] = {
    ("www.test.", "A"): ["192.0.2.10", "192.0.2.11"],
    ("www.test.", "TXT"): ['"v=spf1 -all"', '"part one " "part two"'],
    ("www.test.", "MX"): ["10 mail.test."],
    ("10.2.0.192.in-addr.arpa.", "PTR"): ["www.test."],
}
SERVFAIL_NAME = "broken.test."


class _Server(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        if name == SERVFAIL_NAME:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif (name, rdtype) in ZONE:
            response.answer.append(dns.rrset.from_text_list(name, 300, "IN", rdtype, ZONE[(name, rdtype)]))
        elif not any(key[0] == name for key in ZONE):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[tuple[str, _Server]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Server, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    yield f"127.0.0.1:{port}", protocol
    transport.close()


def dns_spec(resolver: str, target: str, **fields: Any) -> dict[str, Any]:
    return {"type": "dns", "target": target, "resolver": resolver, "timeout_s": 3, **fields}


OPTS = CheckOptions()


async def test_a_record(dns_server: tuple[str, _Server]) -> None:
    resolver, _ = dns_server
    result = await run_check(dns_spec(resolver, "www.test", expected=["192.0.2.11"]), OPTS)
    assert result.ok, result.error
    assert sorted(result.details["answers"]) == ["192.0.2.10", "192.0.2.11"]
    assert result.details["resolver"] == resolver
    assert result.details["record_type"] == "A"
    assert result.details["ttl"] == 300
    assert "dns_ms" in result.phases


async def test_expected_answer_missing(dns_server: tuple[str, _Server]) -> None:
    resolver, _ = dns_server
    result = await run_check(dns_spec(resolver, "www.test", expected=["192.0.2.10", "192.0.2.99"]), OPTS)
    assert not result.ok
    assert result.error == "expected A answer '192.0.2.99' not found for www.test"


async def test_txt_record(dns_server: tuple[str, _Server]) -> None:
    resolver, _ = dns_server
    result = await run_check(
        dns_spec(resolver, "www.test", record_type="TXT", expected=["v=spf1 -all"]), OPTS
    )
    assert result.ok, result.error
    assert sorted(result.details["answers"]) == ["part one part two", "v=spf1 -all"]


async def test_mx_and_ptr(dns_server: tuple[str, _Server]) -> None:
    resolver, _ = dns_server
    mx = await run_check(dns_spec(resolver, "www.test", record_type="MX", expected=["MAIL.test"]), OPTS)
    assert mx.ok, mx.error
    assert mx.details["answers"] == ["10 mail.test."]
    ptr = await run_check(dns_spec(resolver, "192.0.2.10", record_type="PTR", expected=["www.test"]), OPTS)
    assert ptr.ok, ptr.error


async def test_nxdomain(dns_server: tuple[str, _Server]) -> None:
    resolver, _ = dns_server
    result = await run_check(dns_spec(resolver, "missing.test"), OPTS)
    assert not result.ok
    assert result.error == f"DNS name missing.test does not exist (NXDOMAIN) at {resolver}"


async def test_no_answer(dns_server: tuple[str, _Server]) -> None:
    resolver, _ = dns_server
    result = await run_check(dns_spec(resolver, "www.test", record_type="AAAA"), OPTS)
    assert result.error == f"no AAAA records for www.test at {resolver}"


async def test_servfail(dns_server: tuple[str, _Server]) -> None:
    resolver, _ = dns_server
    result = await run_check(dns_spec(resolver, "broken.test"), OPTS)
    assert not result.ok
    assert result.error is not None and result.error.startswith("no name server answered for broken.test")


async def test_timeout_on_silent_server() -> None:
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    port = silent.get_extra_info("sockname")[1]
    try:
        result = await run_check(dns_spec(f"127.0.0.1:{port}", "www.test", timeout_s=0.3), OPTS)
    finally:
        silent.close()
    assert not result.ok
    assert result.error is not None and result.error.startswith("timed out after 0.3 s during dns query")


async def test_blocked_resolver_refused(dns_server: tuple[str, _Server]) -> None:
    result = await run_check(dns_spec("169.254.169.253", "www.test"), OPTS)
    assert result.error is not None
    assert result.error.startswith("resolver address 169.254.169.253 is in blocked range 169.254.0.0/16")
