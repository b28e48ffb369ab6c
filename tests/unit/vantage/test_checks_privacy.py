"""DataProtection and the network policy helpers."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from vantage.checks import (
    DEFAULT_BLOCKED_NETWORKS,
    CheckOptions,
    DataProtection,
    blocked_by,
    parse_networks,
    run_check,
    scrub_ips,
)

BODY_CANARY = "body-canary-31337"
HEADER_CANARY = "header-canary-27182"


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"<p>{BODY_CANARY}</p>", headers={"X-Secret": HEADER_CANARY})

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/page?token={HEADER_CANARY}")

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/hop", hop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def _protocol_result(result: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c1", "check_id": "c1", "monitor_id": "m1", "attempt": 1, **result}


async def test_everything_stripped_from_a_real_http_result(base: str) -> None:
    raw = await run_check({"type": "http", "target": f"{base}/hop", "keyword": "nope"}, CheckOptions())
    result = _protocol_result(raw.to_dict())
    text = json.dumps(result)
    for canary in (BODY_CANARY, HEADER_CANARY, "127.0.0.1"):
        assert canary in text  # the canaries are there to be removed

    stripped = DataProtection(strip_content=True, strip_headers=True, strip_ips=True).apply(result)
    out = json.dumps(stripped)
    for canary in (BODY_CANARY, HEADER_CANARY, "127.0.0.1"):
        assert canary not in out
    details = stripped["details"]
    assert not {"body_excerpt", "headers", "redirects", "resolved_ips", "peer_ip"} & set(details)
    assert details["status_code"] == 200
    assert stripped["error"] == "keyword 'nope' not found in the first 65536 bytes"
    assert "final_url" not in details
    assert stripped["id"] == "c1" and stripped["phases"] == result["phases"]
    assert json.dumps(result) == text  # the input is not modified


async def test_switches_are_independent(base: str) -> None:
    result = (await run_check({"type": "http", "target": f"{base}/page"}, CheckOptions())).to_dict()
    only_content = json.dumps(DataProtection(strip_content=True).apply(result))
    assert BODY_CANARY not in only_content and HEADER_CANARY in only_content and "127.0.0.1" in only_content
    only_headers = json.dumps(DataProtection(strip_headers=True).apply(result))
    assert BODY_CANARY in only_headers and HEADER_CANARY not in only_headers and "127.0.0.1" in only_headers
    only_ips = json.dumps(DataProtection(strip_ips=True).apply(result))
    assert (
        DataProtection(strip_ips=True).apply(result)["details"]["final_url"].startswith("http://<redacted>:")
    )
    assert BODY_CANARY in only_ips and HEADER_CANARY in only_ips and "127.0.0.1" not in only_ips
    assert DataProtection().apply(result) == result


async def test_error_ip_is_scrubbed() -> None:
    raw = await run_check({"type": "tcp", "target": "169.254.169.254:80"}, CheckOptions())
    stripped = DataProtection(strip_ips=True).apply(raw.to_dict())
    assert "169.254" not in json.dumps(stripped)
    assert stripped["error"].startswith("target address <redacted> is in blocked range <redacted>/16")


async def test_tcp_banner_stripped() -> None:
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.internal ESMTP banner-canary-1618\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        raw = await run_check({"type": "tcp", "target": f"127.0.0.1:{port}", "expect": "220"}, CheckOptions())
    finally:
        server.close()
        await server.wait_closed()
    assert raw.ok, raw.error
    out = json.dumps(DataProtection(strip_content=True, strip_ips=True).apply(raw.to_dict()))
    assert "banner-canary-1618" not in out and "127.0.0.1" not in out


def test_synthetic_result_every_known_key() -> None:
    result = {
        "id": "r",
        "ok": False,
        "error": "connection refused to [2001:db8::7]:443; cannot connect to 10.1.2.3:443: boom",
        "details": {
            "record_type": "AAAA",
            "answers": ["2001:db8::1"],
            "resolver": "10.0.0.53:53",
            "resolved_ips": ["10.1.2.3", "2001:db8::7"],
            "peer_ip": "10.1.2.3",
            "tls": {"san": ["DNS:x.internal", "IP:10.9.8.7"], "subject": "CN=fe80::1%eth0"},
            "warnings": ["seen ::ffff:192.0.2.1 and 192.0.2.55"],
            "nested": [{"banner": "secret", "headers": {"a": "b"}, "body": b"bytes-secret"}],
            "ipv6_hosts": {"2001:db8::9": "key is an address"},
        },
    }
    out = DataProtection(True, True, True).apply(result)
    text = json.dumps(out)
    for needle in ("2001:db8", "10.1.2.3", "10.0.0.53", "10.9.8.7", "fe80", "192.0.2", "secret", '"a"'):
        assert needle not in text, needle
    assert "answers" not in out["details"]
    assert out["details"]["nested"] == [{}]
    assert out["error"] == "connection refused to [<redacted>]:443; cannot connect to <redacted>:443: boom"


def test_dns_answers_of_name_types_kept_but_scrubbed() -> None:
    result = {"details": {"record_type": "TXT", "answers": ["v=spf1 ip4:192.0.2.0/24 -all"]}}
    out = DataProtection(strip_ips=True).apply(result)
    assert out["details"]["answers"] == ["v=spf1 ip4:<redacted>/24 -all"]
    ptr = DataProtection(strip_ips=True).apply(
        {"details": {"record_type": "PTR", "answers": ["host.example."]}}
    )
    assert "answers" not in ptr["details"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", "<redacted>"),
        ("to 127.0.0.1:8081", "to <redacted>:8081"),
        ("[::1]:443", "[<redacted>]:443"),
        ("fe80::1%eth0 x", "<redacted> x"),
        ("::ffff:10.0.0.1", "<redacted>"),
        ("2001:db8:0:0:0:0:0:1", "<redacted>"),
        ("10.0.0.5.nip.io", "<redacted>.nip.io"),
        ("version 1.2.3 at 12:30:45", "version 1.2.3 at 12:30:45"),
        ("mac aa:bb:cc:dd:ee:ff", "mac aa:bb:cc:dd:ee:ff"),
        ("std::vector and 999.1.1.1", "std::vector and 999.1.1.1"),
    ],
)
def test_scrub_ips(text: str, expected: str) -> None:
    assert scrub_ips(text) == expected


def test_from_env() -> None:
    assert DataProtection.from_env({}) == DataProtection()
    dp = DataProtection.from_env(
        {"VANTAGE_DP_STRIP_CONTENT": "Yes", "VANTAGE_DP_STRIP_HEADERS": "0", "VANTAGE_DP_STRIP_IPS": " TRUE "}
    )
    assert dp == DataProtection(strip_content=True, strip_headers=False, strip_ips=True)
    assert dp.as_dict() == {"strip_content": True, "strip_headers": False, "strip_ips": True}
    for bad in ("on", "", "2", "tru"):
        with pytest.raises(ValueError, match="VANTAGE_DP_STRIP_IPS"):
            DataProtection.from_env({"VANTAGE_DP_STRIP_IPS": bad})


def test_network_policy() -> None:
    opts = CheckOptions()
    for blocked in (
        "169.254.169.254",
        "fe80::1",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
        "0.0.0.0",
        "224.0.0.1",
        "ff02::1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
    ):
        assert blocked_by(ipaddress.ip_address(blocked), opts) is not None, blocked
    for allowed in ("127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "172.16.0.1", "fd00::1", "8.8.8.8"):
        assert blocked_by(ipaddress.ip_address(allowed), opts) is None, allowed
    allow = CheckOptions(allow_networks=parse_networks(["169.254.169.254/32"]))
    assert blocked_by(ipaddress.ip_address("169.254.169.254"), allow) is None
    assert blocked_by(ipaddress.ip_address("169.254.169.253"), allow) is not None
    assert len(DEFAULT_BLOCKED_NETWORKS) == 8
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        parse_networks(["10.0.0.1/8"])
