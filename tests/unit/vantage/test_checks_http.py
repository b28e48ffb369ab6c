"""The http check against real servers on 127.0.0.1 (plain and TLS via trustme)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from vantage.checks import CheckOptions, run_check

BIG = b"x" * 200_000 + b"NEEDLE"


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="all ok here", headers={"X-Canary": "header-canary-4711"})


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status page")


async def _redirect(request: web.Request) -> web.Response:
    hops = int(request.match_info["n"])
    raise web.HTTPFound("/ok" if hops == 0 else f"/redirect/{hops - 1}")


async def _loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop")


async def _to_metadata(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")


async def _to_other_origin(request: web.Request) -> web.Response:
    raise web.HTTPTemporaryRedirect(request.query["to"])


async def _echo(request: web.Request) -> web.Response:
    body = await request.text()
    return web.Response(
        text=f"method={request.method} body={body} auth={request.headers.get('Authorization')}"
    )


async def _post_redirect(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/echo")


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=BIG, content_type="text/plain")


async def _gzip(request: web.Request) -> web.Response:
    return web.Response(
        body=gzip.compress(b"compressed keyword inside"),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for part in (b"first part, ", b"second part, ", b"chunked-keyword"):
        await resp.write(part)
    await resp.write_eof()
    return resp


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ok", _ok)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/redirect/{n}", _redirect)
    app.router.add_get("/loop", _loop)
    app.router.add_get("/to-metadata", _to_metadata)
    app.router.add_get("/to-other", _to_other_origin)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_post("/post-redirect", _post_redirect)
    app.router.add_get("/big", _big)
    app.router.add_get("/gzip", _gzip)
    app.router.add_get("/chunked", _chunked)
    return app


async def _serve(ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


@pytest.fixture
async def http_base() -> AsyncIterator[str]:
    runner, port = await _serve()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


HttpsServer = Callable[..., Awaitable[str]]


@pytest.fixture
async def https_server(ca: trustme.CA) -> AsyncIterator[HttpsServer]:
    runners: list[web.AppRunner] = []

    async def start(*identities: str, **kwargs: Any) -> str:
        cert = ca.issue_cert(*(identities or ("127.0.0.1", "localhost")), **kwargs)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        runner, port = await _serve(ctx)
        runners.append(runner)
        return f"https://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def http(target: str, **fields: Any) -> dict[str, Any]:
    return {"type": "http", "target": target, "timeout_s": 5, **fields}


OPTS = CheckOptions()
pytestmark = pytest.mark.both_event_loops


async def test_success_details_and_phases(http_base: str) -> None:
    result = await run_check(http(f"{http_base}/ok", keyword="ok here", expected_status=200), OPTS)
    assert result.ok, result.error
    assert result.error is None
    d = result.details
    assert d["status_code"] == 200
    assert d["headers"]["X-Canary"] == "header-canary-4711"
    assert d["body_excerpt"] == "all ok here"
    assert d["resolved_ips"] == ["127.0.0.1"]
    assert d["peer_ip"] == "127.0.0.1"
    assert d["redirects"] == []
    assert d["warnings"] == []
    assert "tls" not in d
    assert set(result.phases) == {"connect_ms", "first_byte_ms"}  # IP literal: nothing resolved
    assert all(v >= 0 for v in result.phases.values())
    assert result.duration_ms > 0
    as_dict = result.to_dict()
    assert set(as_dict) == {"ok", "error", "duration_ms", "started_at", "phases", "details"}


async def test_host_name_is_resolved_and_timed(http_base: str) -> None:
    target = http_base.replace("127.0.0.1", "localhost") + "/ok"
    result = await run_check(http(target), OPTS)
    assert result.ok, result.error
    assert "dns_ms" in result.phases
    assert "127.0.0.1" in result.details["resolved_ips"]


async def test_connection_refused() -> None:
    sock_port = await _free_port()
    result = await run_check(http(f"http://127.0.0.1:{sock_port}/"), OPTS)
    assert not result.ok
    assert result.error == f"connection refused to 127.0.0.1:{sock_port}"


async def test_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # the system resolver is replaced so that the test never queries a real DNS server
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_host)
    result = await run_check(http("http://no-such-host.invalid/"), OPTS)
    assert not result.ok
    assert result.error == "DNS resolution failed for no-such-host.invalid: Name or service not known"


async def test_timeout_when_server_never_answers() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # swallow the request, never answer
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run_check(http(f"http://127.0.0.1:{port}/", timeout_s=0.3), OPTS)
        await asyncio.wait_for(done.wait(), 5)  # the check dropped its connection
    finally:
        server.close()
        await server.wait_closed()
    assert not result.ok
    assert result.error == "timed out after 0.3 s during waiting for the response"
    assert 250 <= result.duration_ms < 2000


async def test_server_closes_without_answer() -> None:
    done = asyncio.Event()

    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(rude, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run_check(http(f"http://127.0.0.1:{port}/"), OPTS)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
    assert not result.ok
    assert result.error == "connection closed by 127.0.0.1 without a response"


async def test_wrong_status(http_base: str) -> None:
    result = await run_check(http(f"{http_base}/status/503", expected_status=200), OPTS)
    assert not result.ok
    assert result.error == "expected status 200, got 503"
    assert result.details["status_code"] == 503


async def test_default_status_range(http_base: str) -> None:
    assert (await run_check(http(f"{http_base}/status/204"), OPTS)).ok
    bad = await run_check(http(f"{http_base}/status/404"), OPTS)
    assert bad.error == "expected status 200-399, got 404"
    listed = await run_check(http(f"{http_base}/status/404", expected_status=[404, 410]), OPTS)
    assert listed.ok, listed.error


async def test_keyword_missing_and_absent(http_base: str) -> None:
    missing = await run_check(http(f"{http_base}/ok", keyword="nope"), OPTS)
    assert missing.error == "keyword 'nope' not found in the first 65536 bytes"
    present = await run_check(http(f"{http_base}/ok", keyword_absent="ok here"), OPTS)
    assert not present.ok
    assert present.error is not None and "'ok here' found" in present.error
    absent = await run_check(http(f"{http_base}/ok", keyword_absent="error"), OPTS)
    assert absent.ok, absent.error


async def test_body_read_is_bounded(http_base: str) -> None:
    small = await run_check(http(f"{http_base}/big", keyword="NEEDLE"), OPTS)
    assert small.error == "keyword 'NEEDLE' not found in the first 65536 bytes"
    assert small.details["body_bytes"] == 65536
    assert small.details["body_truncated"] is True
    assert len(small.details["body_excerpt"]) == 1024
    large = await run_check(http(f"{http_base}/big", keyword="NEEDLE", max_body_bytes=300_000), OPTS)
    assert large.ok, large.error
    assert large.details["body_bytes"] == len(BIG)
    assert large.details["body_truncated"] is False


async def test_chunked_and_gzip_bodies(http_base: str) -> None:
    chunked = await run_check(http(f"{http_base}/chunked", keyword="chunked-keyword"), OPTS)
    assert chunked.ok, chunked.error
    gz = await run_check(http(f"{http_base}/gzip", keyword="keyword inside"), OPTS)
    assert gz.ok, gz.error
    assert gz.details["body_excerpt"] == "compressed keyword inside"


async def test_method_body_and_head(http_base: str) -> None:
    post = await run_check(http(f"{http_base}/echo", method="PUT", body="payload-1"), OPTS)
    assert post.details["body_excerpt"] == "method=PUT body=payload-1 auth=None"
    head = await run_check(http(f"{http_base}/ok", method="HEAD"), OPTS)
    assert head.ok, head.error
    assert head.details["body_bytes"] == 0


async def test_redirects_followed(http_base: str) -> None:
    result = await run_check(http(f"{http_base}/redirect/3", keyword="ok here"), OPTS)
    assert result.ok, result.error
    assert result.details["redirects"] == [
        f"{http_base}/redirect/2",
        f"{http_base}/redirect/1",
        f"{http_base}/redirect/0",
        f"{http_base}/ok",
    ]
    assert result.details["final_url"] == f"{http_base}/ok"


async def test_redirects_not_followed(http_base: str) -> None:
    result = await run_check(http(f"{http_base}/redirect/3", follow_redirects=False), OPTS)
    assert result.ok, result.error
    assert result.details["status_code"] == 302
    assert result.details["redirects"] == []
    strict = await run_check(
        http(f"{http_base}/redirect/3", follow_redirects=False, expected_status=200), OPTS
    )
    assert strict.error == "expected status 200, got 302"


async def test_redirects_limited(http_base: str) -> None:
    result = await run_check(http(f"{http_base}/loop"), OPTS)
    assert not result.ok
    assert result.error == "too many redirects (more than 10)"
    assert len(result.details["redirects"]) == 10
    nine = await run_check(http(f"{http_base}/redirect/9"), OPTS)  # 10 hops exactly
    assert nine.ok, nine.error


async def test_post_303_becomes_get(http_base: str) -> None:
    result = await run_check(http(f"{http_base}/post-redirect", method="POST", body="x"), OPTS)
    assert result.ok, result.error
    assert result.details["body_excerpt"].startswith("method=GET body= ")


async def test_credentials_not_sent_to_another_origin(http_base: str) -> None:
    other = http_base.replace("127.0.0.1", "localhost")
    spec = http(f"{http_base}/to-other?to={other}/echo", headers={"Authorization": "Bearer secret"})
    result = await run_check(spec, OPTS)
    assert result.ok, result.error
    assert result.details["body_excerpt"].endswith("auth=None")
    same = await run_check(
        http(f"{http_base}/to-other?to=/echo", headers={"Authorization": "Bearer s"}), OPTS
    )
    assert same.details["body_excerpt"].endswith("auth=Bearer s")


async def test_blocked_range_refused_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_connect(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(asyncio.get_running_loop(), "sock_connect", no_connect)
    result = await run_check(http("http://169.254.169.254/latest/meta-data/"), OPTS)
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("target address 169.254.169.254 is in blocked range 169.254.0.0/16")
    assert "allow it explicitly" in result.error
    assert "connect_ms" not in result.phases


async def test_redirect_into_blocked_range_refused(http_base: str) -> None:
    result = await run_check(http(f"{http_base}/to-metadata"), OPTS)
    assert not result.ok
    assert result.error is not None and "169.254.169.254 is in blocked range" in result.error
    assert result.details["redirects"] == ["http://169.254.169.254/latest/meta-data/"]


async def test_allow_list_overrides_block(http_base: str) -> None:
    loopback_blocked = CheckOptions(blocked_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    refused = await run_check(http(f"{http_base}/ok"), loopback_blocked)
    assert refused.error is not None and "127.0.0.1 is in blocked range 127.0.0.0/8" in refused.error
    allowed = CheckOptions(
        blocked_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        allow_networks=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    result = await run_check(http(f"{http_base}/ok"), allowed)
    assert result.ok, result.error


async def test_invalid_spec_is_a_failed_result() -> None:
    result = await run_check({"type": "http", "target": "http://h/", "keywrod": "x"}, OPTS)
    assert not result.ok
    assert result.error is not None and result.error.startswith("invalid check spec: keywrod: unknown field")


# --- TLS ---------------------------------------------------------------------------------------


async def test_https_success_with_ca_bundle(https_server: HttpsServer, ca_file: str) -> None:
    base = await https_server()
    result = await run_check(http(f"{base}/ok", keyword="ok"), CheckOptions(ca_bundle=ca_file))
    assert result.ok, result.error
    assert {"connect_ms", "tls_ms", "first_byte_ms"} <= set(result.phases)
    tls = result.details["tls"]
    assert "trustme" in tls["issuer"]
    assert tls["days_left"] > 14
    assert tls["protocol"].startswith("TLS")
    assert {"subject", "issuer", "not_after", "days_left"} <= set(tls)
    assert result.details["warnings"] == []


async def test_https_unknown_ca_fails(https_server: HttpsServer) -> None:
    base = await https_server()
    result = await run_check(http(f"{base}/ok"), OPTS)
    assert not result.ok
    assert result.error is not None and result.error.startswith("TLS certificate verify failed: ")
    assert "issuer" in result.error
    unverified = await run_check(http(f"{base}/ok", verify_tls=False), OPTS)
    assert unverified.ok, unverified.error
    assert "trustme" in unverified.details["tls"]["issuer"]  # still reported without verification


async def test_https_wrong_host_fails(https_server: HttpsServer, ca_file: str) -> None:
    base = await https_server("other.example")
    result = await run_check(http(f"{base}/ok"), CheckOptions(ca_bundle=ca_file))
    assert not result.ok
    assert result.error is not None and result.error.startswith("TLS certificate verify failed: ")
    assert "mismatch" in result.error


async def test_https_expired_fails(https_server: HttpsServer, ca_file: str) -> None:
    now = dt.datetime.now(dt.UTC)
    base = await https_server(
        "127.0.0.1", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    result = await run_check(http(f"{base}/ok"), CheckOptions(ca_bundle=ca_file))
    assert not result.ok
    assert result.error == "TLS certificate verify failed: certificate has expired"


async def test_https_expiry_warning(https_server: HttpsServer, ca_file: str) -> None:
    now = dt.datetime.now(dt.UTC)
    base = await https_server("127.0.0.1", not_after=now + dt.timedelta(days=5, hours=1))
    result = await run_check(http(f"{base}/ok"), CheckOptions(ca_bundle=ca_file))
    assert result.ok, result.error
    assert result.details["tls"]["days_left"] == 5
    assert len(result.details["warnings"]) == 1
    assert result.details["warnings"][0].startswith("certificate expires in 5 days")
    quiet = await run_check(http(f"{base}/ok", cert_expiry_warning_days=3), CheckOptions(ca_bundle=ca_file))
    assert quiet.details["warnings"] == []


async def _free_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


def _fake_getaddrinfo(addresses: list[str], calls: list[str]) -> Callable[..., Awaitable[Any]]:
    async def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(host)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return getaddrinfo


async def test_name_resolved_once_and_every_address_vetted(
    http_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(http_base.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    calls: list[str] = []
    monkeypatch.setattr(loop, "getaddrinfo", _fake_getaddrinfo(["127.0.0.1"], calls))
    good = await run_check(http(f"http://svc.internal:{port}/ok"), OPTS)
    assert good.ok, good.error
    assert calls == ["svc.internal"]  # connected to the vetted address, no second lookup

    mixed: list[str] = []
    monkeypatch.setattr(loop, "getaddrinfo", _fake_getaddrinfo(["127.0.0.1", "169.254.169.254"], mixed))
    refused = await run_check(http(f"http://svc.internal:{port}/ok"), OPTS)
    assert not refused.ok
    assert refused.error is not None and "169.254.169.254 is in blocked range" in refused.error
    assert "connect_ms" not in refused.phases
