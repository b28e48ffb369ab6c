"""The health page (``/ui``) of an in-process control plane: login, session, headers, escaping, data.

The server is the real application on 127.0.0.1 with scripted agents (``FakeAgent``) sending
real heartbeats. Cookies are handled by hand: aiohttp's cookie jar keeps no cookies for IP
addresses and never sends ``Secure`` ones over plain HTTP, which is what this server speaks.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.agents import ADMIN_TOKEN, Api, FakeAgent, Identity, RunningServer, make_settings, start_server
from support.waiting import eventually

from vantage.control_plane.alerts import close_alert, open_alert
from vantage.control_plane.db import Result
from vantage.control_plane.ui import COOKIE_NAME, CSP, MAX_LOGIN_FAILURES, fmt_age, fmt_bytes, short_digest
from vantage.control_plane.ui_monitors import CHART_BUCKET_S, Bucket, chart_svg, nice_ceiling

EVIL = '<script>alert("x")</script>'


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(make_settings(tmp_path, heartbeat_interval=1.0))
    yield running
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


@pytest.fixture
def api(http: aiohttp.ClientSession, server: RunningServer) -> Api:
    return Api(http, server.url)


async def read_token(api: Api) -> str:
    data = await api.ok("POST", "/api/v1/tokens", {"name": "viewer", "scopes": ["read"]})
    return str(data["token"])


async def login(http: aiohttp.ClientSession, base: str, token: str, **headers: str) -> aiohttp.ClientResponse:
    async with http.post(base + "/ui/login", data={"token": token}, headers=headers,
                         allow_redirects=False) as response:
        await response.read()
        return response


def session_cookie(response: aiohttp.ClientResponse) -> tuple[str, Any]:
    """The session cookie's value and its morsel (attributes) from a Set-Cookie header."""
    cookies: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookies.load(header)
    morsel = cookies[COOKIE_NAME]
    return morsel.value, morsel


async def get(http: aiohttp.ClientSession, url: str, cookie: str | None = None) -> tuple[int, str, Any]:
    headers = {"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
    async with http.get(url, headers=headers, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers


async def logged_in(api: Api, server: RunningServer) -> str:
    response = await login(api.http, server.url, await read_token(api))
    assert response.status == 303
    return session_cookie(response)[0]


async def connect(server: RunningServer, api: Api, cp: str, inst: str, **health: Any) -> FakeAgent:
    identity = Identity(cp, inst)
    await api.ok("PUT", f"/api/v1/checkpoints/{cp}/instances/{inst}", {"public_key": identity.public_key})
    agent = FakeAgent(api.http, server.ws_url, identity, server.url)
    await agent.connect()
    await agent.heartbeat(**health)
    await eventually(lambda: _stored(server, cp, inst, "version"))
    return agent


async def _stored(server: RunningServer, cp: str, inst: str, key: str, value: Any = None) -> bool:
    """Whether the stored health (heartbeats are stored at the next tick) has ``key`` (equal to ``value``)."""
    health = await server.core.stored_health(cp, inst)
    return key in health and (value is None or health[key] == value)


def attr(html: str, selector: str, name: str) -> str:
    """``name``'s value in the first start tag holding ``selector`` (an attribute=value text)."""
    match = re.search(rf"<[^>]*{re.escape(selector)}[^>]*>", html)
    assert match, f"{selector} not in page"
    found = re.search(rf'{name}="([^"]*)"', match.group(0))
    assert found, f"{name} not on {selector}"
    return found.group(1)


# --- access ----------------------------------------------------------------------------------------


async def test_page_needs_a_login_and_root_redirects(api: Api, server: RunningServer) -> None:
    status, _body, headers = await get(api.http, server.url + "/")
    assert status == 303 and headers["Location"] == "/ui"
    status, body, headers = await get(api.http, server.url + "/ui")
    assert status == 303 and headers["Location"] == "/ui/login"
    assert "checkpoint" not in body
    # a bearer header is for the API: it does not open the page
    async with api.http.get(server.url + "/ui", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                            allow_redirects=False) as response:
        assert response.status == 303
    status, body, headers = await get(api.http, server.url + "/ui/login")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'type="password"' in body and 'method="post"' in body


async def test_login_sets_a_strict_session_cookie_that_is_not_the_token(api: Api, server: RunningServer) -> None:
    token = await read_token(api)
    response = await login(api.http, server.url, token)
    assert response.status == 303 and response.headers["Location"] == "/ui"
    value, morsel = session_cookie(response)
    assert value and token not in value and value not in token
    assert morsel["httponly"] and morsel["secure"]
    assert morsel["samesite"] == "Strict" and morsel["path"] == "/ui"
    status, body, headers = await get(api.http, server.url + "/ui", value)
    assert status == 200 and "Vantage checkpoints" in body and "signed in as viewer" in body
    assert token not in body
    # the login form with a valid session goes straight to the page
    status, _body, headers = await get(api.http, server.url + "/ui/login", value)
    assert status == 303 and headers["Location"] == "/ui"


async def test_wrong_or_missing_token_is_refused_without_echo(api: Api, server: RunningServer) -> None:
    secret = "vt_this-is-not-a-valid-token-123456"
    response = await login(api.http, server.url, secret)
    assert response.status == 401 and "Set-Cookie" not in response.headers
    async with api.http.post(server.url + "/ui/login", data={"token": secret}, allow_redirects=False) as again:
        body = await again.text()
    assert "Invalid token." in body and secret not in body
    assert (await login(api.http, server.url, "")).status == 401
    # a token in the URL is never used
    async with api.http.post(server.url + f"/ui/login?token={ADMIN_TOKEN}", allow_redirects=False) as url_login:
        assert url_login.status == 401 and "Set-Cookie" not in url_login.headers
    status, _body, _headers = await get(api.http, server.url + f"/ui/login?token={ADMIN_TOKEN}")
    assert status == 200
    status, _body, headers = await get(api.http, server.url + f"/ui?token={ADMIN_TOKEN}")
    assert status == 303 and headers["Location"] == "/ui/login"
    # a forged cookie is no session
    status, _body, _headers = await get(api.http, server.url + "/ui", "forged-session-id")
    assert status == 303


async def test_failed_logins_are_rate_limited(api: Api, server: RunningServer) -> None:
    for _ in range(MAX_LOGIN_FAILURES):
        assert (await login(api.http, server.url, "vt_wrong-token-abcdefghijkl")).status == 401
    # now even the right token waits: a guesser learns nothing
    assert (await login(api.http, server.url, ADMIN_TOKEN)).status == 429


async def test_cross_site_login_and_logout_are_refused(api: Api, server: RunningServer) -> None:
    token = await read_token(api)
    assert (await login(api.http, server.url, token, Origin="https://evil.example")).status == 403
    assert (await login(api.http, server.url, token, **{"Sec-Fetch-Site": "cross-site"})).status == 403
    assert (await login(api.http, server.url, token, Origin="null", **{"Sec-Fetch-Site": "same-site"})).status == 403
    same = await login(api.http, server.url, token, Origin=server.url, **{"Sec-Fetch-Site": "same-origin"})
    assert same.status == 303
    # our pages say Referrer-Policy: no-referrer, so browsers send Origin: null from them
    assert (await login(api.http, server.url, token, Origin="null", **{"Sec-Fetch-Site": "same-origin"})).status == 303


async def test_logout_needs_the_form_token_and_ends_the_session(api: Api, server: RunningServer) -> None:
    cookie = await logged_in(api, server)
    _status, body, _headers = await get(api.http, server.url + "/ui", cookie)
    csrf = attr(body, 'name="csrf"', "value")
    headers = {"Cookie": f"{COOKIE_NAME}={cookie}"}
    async with api.http.post(server.url + "/ui/logout", data={"csrf": "wrong"}, headers=headers,
                             allow_redirects=False) as response:
        assert response.status == 403
    assert (await get(api.http, server.url + "/ui", cookie))[0] == 200
    async with api.http.post(server.url + "/ui/logout", data={"csrf": csrf}, headers=headers,
                             allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/ui/login"
        value, morsel = session_cookie(response)
        assert value == "" and morsel["max-age"] == "0"
    # the old cookie no longer opens the page
    assert (await get(api.http, server.url + "/ui", cookie))[0] == 303


async def test_revoking_the_token_ends_its_sessions(api: Api, server: RunningServer) -> None:
    created = await api.ok("POST", "/api/v1/tokens", {"name": "short-lived", "scopes": ["read"]})
    response = await login(api.http, server.url, created["token"])
    cookie = session_cookie(response)[0]
    assert (await get(api.http, server.url + "/ui", cookie))[0] == 200
    await api.ok("DELETE", f"/api/v1/tokens/{created['id']}")
    assert (await get(api.http, server.url + "/ui", cookie))[0] == 303


# --- headers -------------------------------------------------------------------------------------


async def test_security_headers_on_every_ui_response(api: Api, server: RunningServer) -> None:
    cookie = await logged_in(api, server)
    for path, expected in (("/ui", 200), ("/ui/login", 303), ("/ui/style.css", 200), ("/ui/favicon.svg", 200),
                           ("/", 303)):
        status, _body, headers = await get(api.http, server.url + path, cookie)
        assert status == expected, path
        assert headers["Content-Security-Policy"] == CSP, path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert headers["Cache-Control"] == "no-store", path
        assert headers["X-Frame-Options"] == "DENY", path
    assert "default-src 'none'" in CSP and "unsafe-inline" not in CSP and "script-src" not in CSP
    status, css, headers = await get(api.http, server.url + "/ui/style.css")
    assert headers["Content-Type"].startswith("text/css") and "badge" in css


async def test_no_script_and_no_external_asset(api: Api, server: RunningServer) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/site1", {})
    await connect(server, api, "site1", "a")
    cookie = await logged_in(api, server)
    _status, body, _headers = await get(api.http, server.url + "/ui", cookie)
    assert "<script" not in body.lower() and " on" not in re.sub(r">[^<]*<", "><", body).lower()
    for ref in re.findall(r'(?:href|src|action)="([^"]*)"', body):
        assert ref.startswith(("/ui", "#cp-")), ref


# --- content ------------------------------------------------------------------------------------


async def test_agent_and_caller_strings_are_escaped(api: Api, server: RunningServer) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/site1", {"description": f"desc {EVIL}", "labels": {"env": EVIL}})
    hostile_host = {"hostname": EVIL, "os": '"><img src=x onerror=alert(1)>', "cpu_count": 2,
                    "memory_total_bytes": 1 << 30, "dns_servers": [EVIL], "timezone": "UTC"}
    agent = await connect(server, api, "site1", "a", version=f"1.0{EVIL}", image_digest=f"sha256:{EVIL}",
                          host=hostile_host)
    await agent.heartbeat(healthy=False, reasons=[EVIL])
    await eventually(lambda: _stored(server, "site1", "a", "healthy", False))
    await server.core.store.run(open_alert, "monitor_down", "no-such-monitor", f"failed: {EVIL}", time.time())
    cookie = await logged_in(api, server)
    _status, body, _headers = await get(api.http, server.url + "/ui", cookie)
    assert "<script" not in body and "<img" not in body
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    # description, label, hostname, DNS, version, agent's reason, alert message
    assert body.count(escaped) >= 7, body
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in body
    await agent.close()


async def test_page_agrees_with_the_rest_health_view(api: Api, server: RunningServer) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/site1", {"description": "sandbox pair"})
    await api.ok("PUT", "/api/v1/checkpoints/site2", {})
    await api.ok("PUT", "/api/v1/checkpoints/site3", {})
    await api.ok("POST", "/api/v1/checkpoints/site3/state", {"state": "disabled", "reason": "moving racks"})
    a = await connect(server, api, "site1", "a", image_digest="sha256:" + "ab" * 32,
                      data_protection={"strip_content": True, "strip_headers": False, "strip_ips": True})
    b = await connect(server, api, "site1", "b")
    sick = await connect(server, api, "site2", "x")
    await sick.heartbeat(healthy=False, reasons=["image is outdated"])
    await eventually(lambda: _stored(server, "site2", "x", "healthy", False))
    await b.close()
    await eventually(lambda: server.core.registry.get("site1", "b") is None)
    cookie = await logged_in(api, server)
    _status, body, _headers = await get(api.http, server.url + "/ui", cookie)

    for cp, state in (("site1", "active"), ("site2", "maintenance"), ("site3", "disabled")):
        health = await api.ok("GET", f"/api/v1/checkpoints/{cp}/health")
        assert health["state"] == state
        assert attr(body, f'data-checkpoint="{cp}"', "data-state") == state
        assert attr(body, f'data-checkpoint="{cp}"', "data-healthy") == str(health["healthy"]).lower()
        section = body.split(f'data-checkpoint="{cp}"', 1)[1].split("</section>", 1)[0]
        for inst in health["instances"]:
            row = f'data-instance="{inst["name"]}"'
            assert attr(section, row, "data-connected") == str(inst["connected"]).lower()
            assert attr(section, row, "data-healthy") == str(inst["healthy"]).lower()
        for reason in health["reasons"]:  # the same sentences (ages may differ by a second)
            assert re.sub(r"\d+ s ago", "", reason) in re.sub(r"\d+ s ago", "", section)
    assert "checkpoint is disabled: moving racks" in body and "sandbox pair" in body
    assert "instance x: image is outdated" in body
    assert "sha256:abababababab" in body and 'title="sha256:' + "ab" * 32 + '"' in body
    assert "content: stripped" in body and "headers: sent" in body and "IPs: stripped" in body
    assert "host-a" in body and "1.0 GiB" in body
    assert '<meta http-equiv="refresh" content="5">' in body
    await a.close()
    await sick.close()


def _result(monitor_id: str, n: int, *, at: float, ok: bool = True, attempt: int = 1, ms: float | None = 10.0,
            error: str | None = None, instance: str = "a") -> Result:
    return Result(id=f"{monitor_id}-{n}", monitor_id=monitor_id, check_id=f"{monitor_id}-{n}", checkpoint="site1",
                  instance=instance, attempt=attempt, ok=ok, error=error, duration_ms=ms, started_at=at - 0.01,
                  phases_json="{}", details_json="{}", received_at=at)


def _section(body: str, selector: str) -> str:
    return body.split(selector, 1)[1].split("</tr>", 1)[0]


async def test_monitors_with_state_last_result_uptime_and_chart(api: Api, server: RunningServer) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/site1", {})
    await api.ok("PUT", "/api/v1/checkpoints/off", {})
    made = {}
    for name, cp in (("web", "site1"), ("db", "site1"), ("fresh", "site1"), (f"x{EVIL}", "site1"), ("old", "off"),
                     ("quiet", "site1")):
        made[name] = await api.ok("POST", "/api/v1/monitors", {"name": name, "checkpoint": cp, "type": "tcp",
                                                              "target": "127.0.0.1:9", "interval_s": 600})
    await api.ok("POST", "/api/v1/checkpoints/off/state", {"state": "disabled", "reason": "moved"})
    t = time.time()
    web, db = made["web"]["id"], made["db"]["id"]
    rows = [_result(web, n, at=t - 5 * 3600 + n * CHART_BUCKET_S, ms=10.0 + n) for n in range(10)]  # 10 checks up
    rows += [_result(web, 20, at=t - 7200, ok=False, ms=None, error="refused"),  # one check down: both failed
             _result(web, 21, at=t - 7190, ok=False, attempt=2, ms=None, error="refused", instance="b"),
             _result(web, 22, at=t - 60, ms=40.0),  # the latest: up
             _result(web, 23, at=t - 90000, ok=False, attempt=2, ms=None)]  # older than 24 h: not counted
    rows += [_result(db, 1, at=t - 30, ok=False, ms=None, error="timeout"),
             _result(db, 2, at=t - 20, ok=False, attempt=2, ms=None, error=f"refused {EVIL}", instance="b"),
             _result(made[f"x{EVIL}"]["id"], 1, at=t - 10, ms=5.0),
             _result(made["quiet"]["id"], 1, at=t - 3 * 86400, ok=False, ms=None, error="gone")]  # only an old one

    def store(session: Any) -> None:
        session.add_all(rows)

    await server.core.store.run(store)
    await server.core.store.run(open_alert, "monitor_down", db, "failed twice", t)
    cookie = await logged_in(api, server)
    _status, body, _headers = await get(api.http, server.url + "/ui", cookie)

    states = {name: attr(body, f'data-monitor="{m["id"]}"', "data-state") for name, m in made.items()}
    assert states == {"web": "up", "db": "down", "fresh": "pending", f"x{EVIL}": "up", "old": "paused",
                      "quiet": "failing"}
    for cp in ("site1", "off"):  # the page's "down" is the REST view's
        for m in (await api.ok("GET", f"/api/v1/monitors?checkpoint={cp}"))["monitors"]:
            assert attr(body, f'data-monitor="{m["id"]}"', "data-down") == str(m["down"]).lower()
    web_row, db_row = _section(body, f'data-monitor="{web}"'), _section(body, f'data-monitor="{db}"')
    assert "91.66 %" in web_row and "12 checks, 1 down" in web_row  # 1 - 1/12, rounded down
    assert "40 ms" in web_row and re.search(r"6\d s ago on a<", web_row)
    assert web_row.count('<svg class="chart"') == 1 and 'class="fail"' in web_row and "<polyline" in web_row
    assert "peak 40 ms" in web_row
    assert "attempt 2" in db_row and "on b" in db_row and "error" in db_row
    assert "refused &lt;script&gt;" in db_row and "0.00 %" in db_row and "1 checks, 1 down" in db_row
    fresh_row = _section(body, f'data-monitor="{made["fresh"]["id"]}"')
    assert "no result yet" in fresh_row and "no check in 24 h" in fresh_row and "<svg" not in fresh_row
    quiet_row = _section(body, f'data-monitor="{made["quiet"]["id"]}"')
    assert "3 d ago" in quiet_row and "gone" in quiet_row and "no check in 24 h" in quiet_row
    assert "<script" not in body and f"x{EVIL}" not in body and "x&lt;script&gt;" in body
    assert "No monitor runs on this checkpoint." not in body


def test_response_time_chart_svg() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 99, 101, 4500)] == [1, 0.5, 1, 10, 20, 100, 200, 5000]
    svg = chart_svg([Bucket(0, 10.0, 0), Bucket(1, 30.0, 0), Bucket(2, None, 2), Bucket(5, 80.0, 1),
                     Bucket(70, 25.0, 0), Bucket(71, 20.0, 0)])
    assert svg.startswith('<svg class="chart" role="img"') and "<script" not in svg and "style=" not in svg
    assert svg.count("<polyline") == 2  # buckets 0-1 and 70-71; bucket 5 alone is a point
    assert svg.count("<circle") == 1 and svg.count('class="fail"') == 2
    assert "100 ms</text>" in svg and "3 failed results" in svg
    # the line's y grows downwards: 80 ms (bucket 5) sits above 10 ms (bucket 0)
    cy = float(re.search(r'<circle[^>]*cy="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    first_y = float(re.search(r'points="[\d.]+,([\d.]+)', svg).group(1))  # type: ignore[union-attr]
    assert cy < first_y
    assert CHART_BUCKET_S == 300
    failures_only = chart_svg([Bucket(3, None, 1)])
    assert "<polyline" not in failures_only and " ms</text>" not in failures_only  # no scale without values
    assert "no successful result; 1 failed result" in failures_only


async def test_open_alerts_come_first(api: Api, server: RunningServer) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/site1", {})
    monitor = await api.ok("POST", "/api/v1/monitors", {"name": "intranet", "checkpoint": "site1", "type": "tcp",
                                                        "target": "127.0.0.1:9", "interval_s": 3600})
    run, t = server.core.store.run, time.time()
    await run(open_alert, "checkpoint_unavailable", "site1", "no instance connected", t)
    await run(open_alert, "monitor_down", monitor["id"], "connection refused twice", t + 1)
    await run(close_alert, "checkpoint_unavailable", "site1", t + 2)
    await run(open_alert, "checkpoint_unavailable", "site2", "still away", t + 3)
    cookie = await logged_in(api, server)
    _status, body, _headers = await get(api.http, server.url + "/ui", cookie)
    flags = re.findall(r'class="alert" data-alert="\d+" data-open="(true|false)"', body)
    assert flags == ["true", "true", "false"]
    assert f"monitor intranet ({monitor['id']}) on site1" in body and "2 open" in body


async def test_empty_control_plane_page(api: Api, server: RunningServer) -> None:
    cookie = await logged_in(api, server)
    status, body, _headers = await get(api.http, server.url + "/ui", cookie)
    assert status == 200 and "No checkpoint exists yet." in body and "No alerts." in body


def test_formatting_helpers() -> None:
    assert fmt_age(None, 100) == "never"
    assert fmt_age(90, 100) == "10 s ago" and fmt_age(100 - 600, 100) == "10 min ago"
    assert fmt_age(100 - 3 * 3600, 100) == "3 h ago" and fmt_age(100 - 5 * 86400, 100) == "5 d ago"
    assert fmt_age(200, 100) == "0 s ago"
    assert fmt_bytes(512) == "512 B" and fmt_bytes(3 * 1024**3) == "3.0 GiB" and fmt_bytes("x") == "x"
    assert short_digest("sha256:" + "0123456789abcdef" * 4) == "sha256:0123456789ab"
