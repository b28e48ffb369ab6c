"""The ``http_multistep`` check against a real aiohttp application: login, cookies, extraction, assertions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from vantage.checks import CheckOptions, DataProtection, run_check
from vantage.checks.credentials import CredentialStore

CANARY_PASSWORD = "Canary-5e1f-http-pw"
SESSION_TOKEN = "tok-7c2d9a41e0b3-session"
STORE = CredentialStore.from_mapping({"credentials": {"api": {"username": "probe", "password": CANARY_PASSWORD}}})


def app() -> web.Application:
    async def login(request: web.Request) -> web.Response:
        data = await request.json()
        if data != {"user": "probe", "password": CANARY_PASSWORD}:
            return web.json_response({"error": "bad credentials"}, status=401)
        resp = web.HTTPFound("/welcome")
        resp.set_cookie("sid", "s-1", httponly=True, expires="Wed, 21 Oct 2037 07:28:00 GMT")
        resp.headers["X-Token"] = SESSION_TOKEN
        raise resp

    async def welcome(request: web.Request) -> web.Response:
        if request.cookies.get("sid") != "s-1":
            return web.Response(status=403, text="no session")
        return web.json_response({"token": SESSION_TOKEN, "items": [{"id": 42, "ok": True}]})

    async def items(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SESSION_TOKEN}" or request.cookies.get("sid") != "s-1":
            return web.Response(status=401, text=f"denied for {request.headers.get('Authorization')}")
        return web.Response(text=f'<input name="csrf" value="c-{request.match_info["id"]}">')

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"q": request.query.get("q", ""), "csrf": request.headers.get("X-CSRF")})

    application = web.Application()
    application.router.add_post("/login", login)
    application.router.add_get("/welcome", welcome)
    application.router.add_get("/items/{id}", items)
    application.router.add_get("/echo", echo)
    return application


@pytest.fixture
async def base() -> AsyncIterator[str]:
    runner = web.AppRunner(app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


def flow(base: str, **overrides: Any) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {
            "name": "login",
            "method": "POST",
            "url": "/login",
            "headers": {"Content-Type": "application/json"},
            "body": '{"user": "${credential.username}", "password": "${credential.password}"}',
            "expected_status": 200,
            "json": [{"path": "$.items[0].ok", "equals": True}],
            "extract": {"token": {"json": "$.token"}, "item": {"json": "$.items[0].id"}},
        },
        {
            "name": "item",
            "url": "/items/${item}",
            "headers": {"Authorization": "Bearer ${token}"},
            "keyword": "csrf",
            "extract": {"csrf": {"regex": 'name="csrf" value="([^"]+)"'}},
        },
        {
            "name": "echo",
            "url": "/echo?q=${csrf}&cost=$$5",
            "headers": {"X-CSRF": "${csrf}"},
            "json": [{"path": "$.q", "equals": "c-42"}, {"path": "$.csrf", "equals": "c-42"}],
        },
    ]
    return {"type": "http_multistep", "target": base, "credential": "api", "steps": steps, **overrides}


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    result = (await run_check(spec, CheckOptions(credentials=STORE))).to_dict()
    dumped = json.dumps(result)
    assert CANARY_PASSWORD not in dumped and SESSION_TOKEN not in dumped  # neither secrets nor tokens
    return result


async def test_login_cookie_extract_and_reuse(base: str) -> None:
    result = await run(flow(base))
    assert result["ok"], result["error"]
    steps = result["details"]["steps"]
    assert [s["name"] for s in steps] == ["login", "item", "echo"]
    assert [s["status_code"] for s in steps] == [200, 200, 200]
    assert steps[0]["extracted"] == ["item", "token"] and steps[1]["url"] == "/items/${item}"
    assert "failed_step" not in result["details"]


async def test_status_assertion_names_the_failing_step(base: str) -> None:
    spec = flow(base)
    spec["steps"][0]["body"] = '{"user": "${credential.username}", "password": "nope"}'
    result = await run(spec)
    assert result["error"] == "step 1 (login): expected status 200, got 401"
    assert result["details"]["failed_step"] == {"index": 1, "name": "login"}
    assert "body_excerpt" not in result["details"] and "headers" not in result["details"]
    assert DataProtection(strip_content=True, strip_headers=True).apply(result)["details"]["failed_step"]["index"] == 1


async def test_json_and_keyword_assertions(base: str) -> None:
    spec = flow(base)
    spec["steps"][2]["json"] = [{"path": "$.q", "equals": "c-43"}]
    result = await run(spec)
    assert result["error"] == (
        'step 3 (echo): JSON path $.q does not equal the expected value (expected "c-43", got a str)'
    )
    spec = flow(base)
    spec["steps"][1]["keyword"] = "absent-word"
    result = await run(spec)
    assert result["error"].startswith("step 2 (item): keyword 'absent-word' not found")


async def test_extraction_failure_and_token_scrubbed_from_excerpt(base: str) -> None:
    spec = flow(base)
    spec["steps"][1]["headers"] = {"Authorization": "Bearer ${token}-x"}
    spec["steps"][1]["expected_status"] = 200
    result = await run(spec)  # the server echoes the header with the token: never reported
    assert result["error"] == "step 2 (item): expected status 200, got 401"
    spec = flow(base)
    spec["steps"][0]["extract"] = {"token": {"header": "X-Missing"}, "item": {"json": "$.items[0].id"}}
    result = await run(spec)
    assert result["error"] == "step 1 (login): cannot extract 'token': header 'X-Missing' not in the response"


async def test_cookie_and_header_from_an_unfollowed_redirect(base: str) -> None:
    spec = flow(base, follow_redirects=False)
    spec["steps"][0]["expected_status"] = 302
    spec["steps"][0]["json"] = None
    spec["steps"][0]["extract"] = {"token": {"header": "X-Token"}, "item": {"regex": r"(\d+)"}}
    spec["steps"] = spec["steps"][:2]  # item = "302", from the redirect's body
    result = await run(spec)
    # step 2 still has the cookie from the 302 (the jar stores it) and the header-extracted token
    assert result["ok"], result["error"]


async def test_refused_and_blocked_addresses() -> None:
    spec = {"type": "http_multistep", "target": "http://127.0.0.1:9/", "steps": [{"url": "/a"}]}
    result = await run(spec)
    assert result["error"] == "step 1 (step 1): connection refused to 127.0.0.1:9"
    spec = {"type": "http_multistep", "target": "http://169.254.169.254/", "steps": [{"url": "/latest"}]}
    result = await run(spec)
    assert "blocked range 169.254.0.0/16" in result["error"]


async def test_timeout_names_the_step(base: str) -> None:
    import asyncio
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        spec = flow(base, timeout_s=0.5)
        spec["steps"][1]["url"] = f"http://127.0.0.1:{port}/slow"
        result = await run(spec)
        await asyncio.sleep(0)
    assert result["error"] == "timed out after 0.5 s during step 2 (item), waiting for the response"


def test_spec_validation_catches_typos() -> None:
    from vantage.checks import validate_spec

    base = "http://h/"
    cases = [
        ({"steps": []}, "steps"),
        ({"steps": [{"url": "/a?x=${tok}"}]}, "steps.0.url"),
        ({"steps": [{"url": "/a", "extract": {"t": {"json": "data.x"}}}]}, "steps.0.extract.t.json"),
        ({"steps": [{"url": "/a", "extract": {"t": {"regex": "("}}}]}, "steps.0.extract.t.regex"),
        ({"steps": [{"url": "/a", "json": [{"path": "$.a"}]}]}, "steps.0.json.0"),
        ({"steps": [{"url": "/a", "methd": "GET"}]}, "steps.0.methd"),
        ({"steps": [{"url": "/a", "body": "${credential.password}"}]}, "steps.0.body"),
        ({"steps": [{"url": "/a", "headers": {"Content-Length": "1"}}]}, "steps.0.headers.Content-Length"),
    ]
    for extra, field in cases:
        with pytest.raises(ValueError) as info:
            validate_spec({"type": "http_multistep", "target": base, **extra})
        assert getattr(info.value, "field", None) == field, (extra, str(info.value))
