"""Agent sessions against a real in-process control plane on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.agents import (
    Api,
    FakeAgent,
    HandshakeRefused,
    Identity,
    RunningServer,
    make_settings,
    start_server,
)
from support.waiting import eventually

from vantage.protocol import HELLO_TYPE, TrustStore, generate_key, key_id


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(make_settings(tmp_path))
    yield running
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def enroll(api: Api, *identities: Identity) -> None:
    for ident in identities:
        await api.ok("PUT", f"/api/v1/checkpoints/{ident.checkpoint}", {})
        await api.ok("PUT", f"/api/v1/checkpoints/{ident.checkpoint}/instances/{ident.instance}",
                     {"public_key": ident.public_key})


def _heartbeat_seen(server: RunningServer, cp: str, inst: str) -> bool:
    live = server.core.registry.get(cp, inst)
    return live is not None and live.last_heartbeat is not None


def agent(http: aiohttp.ClientSession, server: RunningServer, ident: Identity) -> FakeAgent:
    return FakeAgent(http, server.ws_url, ident, server.url)


async def test_handshake_welcome_and_health(server: RunningServer, http: aiohttp.ClientSession) -> None:
    api = Api(http, server.url)
    a = Identity("site1", "a")
    await enroll(api, a)
    fa = agent(http, server, a)
    welcome = await fa.connect()
    assert welcome["heartbeat_interval"] == 1.0
    assert isinstance(welcome["server_time"], int)
    await fa.heartbeat()
    health = await eventually(lambda: _healthy(api, "site1"))
    assert health["state"] == "active"
    inst = health["instances"][0]
    assert inst["name"] == "a" and inst["connected"] and inst["version"] == "0.1.0"
    assert inst["host"]["hostname"] == "host-a"
    assert inst["data_protection"] == {"strip_content": False, "strip_headers": False, "strip_ips": False}
    metrics = await (await http.get(server.url + "/metrics")).text()
    assert "vantage_cp_connected_instances 1.0" in metrics
    await fa.close()


async def _healthy(api: Api, cp: str) -> dict[str, Any] | None:
    """The health answer once healthy and the heartbeats are stored (at the next tick)."""
    status, data = await api.call("GET", f"/api/v1/checkpoints/{cp}/health")
    assert status == 200
    return data if data["healthy"] and all(i["version"] for i in data["instances"]) else None


async def test_unhealthy_heartbeat_is_maintenance(server: RunningServer, http: aiohttp.ClientSession) -> None:
    api = Api(http, server.url)
    a = Identity("site1", "a")
    await enroll(api, a)
    fa = agent(http, server, a)
    await fa.connect()
    await fa.heartbeat(healthy=False)

    async def maintenance() -> dict[str, Any] | None:
        data = await api.ok("GET", "/api/v1/checkpoints/site1/health")
        return data if data["state"] == "maintenance" else None

    data = await eventually(maintenance)
    assert data["healthy"] is False
    assert "instance a: self-check failed" in data["reasons"]
    await fa.close()


@pytest.mark.parametrize("case", ["wrong_key", "wrong_challenge", "wrong_url", "not_enrolled"])
async def test_handshake_refused(server: RunningServer, http: aiohttp.ClientSession, case: str) -> None:
    api = Api(http, server.url)
    a = Identity("site1", "a")
    await enroll(api, a)
    fa = agent(http, server, a)
    expected = {
        "wrong_key": "unknown_instance",
        "wrong_challenge": "wrong_challenge",
        "wrong_url": "wrong_control_plane",
        "not_enrolled": "unknown_instance",
    }[case]
    with pytest.raises(HandshakeRefused) as info:
        if case == "wrong_key":
            await fa.connect(key_override=generate_key())
        elif case == "wrong_challenge":
            await fa.connect(challenge_override="ab" * 32)
        elif case == "wrong_url":
            await fa.connect(url_override="https://cp.example.com")
        else:
            await agent(http, server, Identity("site1", "ghost")).connect()
    assert info.value.reason == expected
    assert server.core.registry.get("site1", "a") is None


async def test_key_of_another_instance_is_refused(server: RunningServer, http: aiohttp.ClientSession) -> None:
    """b's key signing a hello that claims to be a: verify_hello refuses the instance name."""
    api = Api(http, server.url)
    a, b = Identity("site1", "a"), Identity("site1", "b")
    await enroll(api, a, b)
    impostor = agent(http, server, Identity("site1", "a", key=b.key))
    with pytest.raises(HandshakeRefused) as info:
        await impostor.connect()
    assert info.value.reason == "wrong_instance"


async def test_a_small_order_key_never_opens_a_session(
    tmp_path: Path, server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """32 zero bytes are refused at enrollment; planted in the database anyway, no forged hello passes.

    With that key, a hello signed R = identity, S = 0 verifies for about one message in four;
    sixteen different hellos are tried.
    """
    api = Api(http, server.url)
    zero = base64.b64encode(bytes(32)).decode()
    await api.ok("PUT", "/api/v1/checkpoints/site1", {})
    status, data = await api.call("PUT", "/api/v1/checkpoints/site1/instances/a", {"public_key": zero})
    assert (status, data["field"]) == (422, "public_key") and "small order" in data["error"]
    await enroll(api, Identity("site1", "a"))
    with sqlite3.connect(tmp_path / "cp.db") as db:  # as if enrolled before keys were checked
        db.execute("UPDATE instances SET public_key = ?, keyid = ? WHERE name = 'a'", (zero, key_id(bytes(32))))
    forged_sig = base64.b64encode((1).to_bytes(32, "little") + bytes(32)).decode()
    for offset in range(16):
        async with http.ws_connect(server.ws_url, heartbeat=None) as ws:
            challenge = json.loads((await ws.receive(timeout=5)).data)["challenge"]
            payload = json.dumps({"v": 1, "challenge": challenge, "checkpoint": "site1", "instance": "a",
                                  "control_plane": server.url, "iat": int(time.time()) - offset}).encode()
            envelope = {"payloadType": HELLO_TYPE, "payload": base64.b64encode(payload).decode(),
                        "signatures": [{"keyid": key_id(bytes(32)), "sig": forged_sig}]}
            await ws.send_str(json.dumps({"type": "hello", "envelope": envelope}))
            answer = json.loads((await ws.receive(timeout=5)).data)
            assert answer["type"] == "error", answer
    assert server.core.registry.get("site1", "a") is None


HOSTILE = ["bad_json", "binary", "huge", "wrong_first", "flood", "not_object", "bad_result"]


@pytest.mark.parametrize("attack", HOSTILE)
async def test_hostile_client_is_disconnected_others_served(
    tmp_path: Path, http: aiohttp.ClientSession, attack: str
) -> None:
    settings = make_settings(tmp_path, max_msg_size=64 * 1024, message_rate=20.0, message_burst=50.0)
    server = await start_server(settings)
    try:
        api = Api(http, server.url)
        good, bad = Identity("site1", "good"), Identity("site1", "bad")
        await enroll(api, good, bad)
        ga = agent(http, server, good)
        await ga.connect()
        ba = agent(http, server, bad)
        if attack == "wrong_first":
            ba.ws = await http.ws_connect(server.ws_url)
            await ba.receive()
            await ba.send({"type": "heartbeat", "health": {}})
        else:
            await ba.connect()
            assert ba.ws is not None
            if attack == "bad_json":
                await ba.ws.send_str("{not json")
            elif attack == "binary":
                await ba.ws.send_bytes(b"\x00\x01")
            elif attack == "huge":
                await ba.ws.send_str(json.dumps({"type": "heartbeat", "health": {"x": "y" * 100_000}}))
            elif attack == "not_object":
                await ba.ws.send_str("[1, 2, 3]")
            elif attack == "bad_result":
                await ba.send({"type": "result", "result": {"id": 5, "ok": "yes"}})
            else:
                for _ in range(500):
                    if ba.ws.closed:
                        break
                    await ba.ws.send_str(json.dumps({"type": "unknown-chatter"}))
        code = await ba.wait_closed()
        assert code is not None and code != 1000
        await eventually(lambda: server.core.registry.get("site1", "bad") is None)
        # the well-behaved agent is still served
        await ga.heartbeat()
        await eventually(lambda: _heartbeat_seen(server, "site1", "good"))
        assert not ga.ws.closed  # type: ignore[union-attr]
        metrics = await (await http.get(server.url + "/metrics")).text()
        assert "vantage_cp_ws_rejections_total" in metrics
        await ga.close()
    finally:
        await server.stop()


async def test_no_hello_in_time_is_disconnected(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    server = await start_server(make_settings(tmp_path, hello_timeout=0.3))
    try:
        ws = await http.ws_connect(server.ws_url)
        challenge = json.loads((await ws.receive(timeout=2)).data)
        assert challenge["type"] == "challenge" and len(challenge["challenge"]) == 64
        error = json.loads((await ws.receive(timeout=2)).data)
        assert error == {"type": "error", "error": "hello_timeout"}
        await ws.receive(timeout=2)
        assert ws.closed or ws.close_code is not None
    finally:
        await server.stop()


@pytest.mark.parametrize("heartbeat", [30.0, 0.25])
async def test_pings_do_not_hold_the_hello_deadline_open(
    tmp_path: Path, http: aiohttp.ClientSession, heartbeat: float
) -> None:
    """The hello deadline counts from the challenge: pings (or the server's own heartbeat pongs) never reset it."""
    server = await start_server(make_settings(tmp_path, hello_timeout=1.0, heartbeat_interval=heartbeat))
    try:
        clients = [await http.ws_connect(server.ws_url, heartbeat=None, autoping=True) for _ in range(5)]
        for ws in clients:
            assert json.loads((await ws.receive(timeout=2)).data)["type"] == "challenge"
        started = time.monotonic()

        async def chatter(ws: aiohttp.ClientWebSocketResponse) -> float:
            while not ws.closed:
                await ws.ping()
                try:
                    msg = await ws.receive(timeout=0.2)
                except TimeoutError:
                    continue
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
            return time.monotonic() - started

        elapsed = await asyncio.wait_for(asyncio.gather(*(chatter(ws) for ws in clients)), timeout=8)
        assert max(elapsed) < 3.0, elapsed
    finally:
        await server.stop()


async def test_unauthenticated_connections_are_capped(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Beyond the caps a websocket upgrade is answered 503 before any challenge; an agent still gets in."""
    settings = make_settings(tmp_path, hello_timeout=5.0, max_unauthenticated=6, max_unauthenticated_per_address=4)
    server = await start_server(settings)
    try:
        api = Api(http, server.url)
        a = Identity("site1", "a")
        await enroll(api, a)
        idle = [await http.ws_connect(server.ws_url, heartbeat=None) for _ in range(4)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url, heartbeat=None)
        assert refused.value.status == 503
        # another address (127.0.0.2 is loopback too) still has room, up to the total cap
        other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=other) as http2:
            more = [await http2.ws_connect(server.ws_url, heartbeat=None) for _ in range(2)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                await http2.ws_connect(server.ws_url, heartbeat=None)
            assert full.value.status == 503
            for ws in more:
                await ws.close()
        for ws in idle:
            await ws.close()

        async def agent_gets_in() -> bool:
            fa = agent(http, server, a)
            try:
                await fa.connect()  # the slots are free again once the idle sockets are gone
            except aiohttp.WSServerHandshakeError:
                return False
            await fa.close()
            return True

        await eventually(agent_gets_in)
    finally:
        await server.stop()


async def test_new_session_replaces_old(server: RunningServer, http: aiohttp.ClientSession) -> None:
    api = Api(http, server.url)
    a = Identity("site1", "a")
    await enroll(api, a)
    first = agent(http, server, a)
    await first.connect()
    second = agent(http, server, a)
    await second.connect()
    assert await first.wait_closed() == 4000
    live = server.core.registry.get("site1", "a")
    assert live is not None and not live.closed
    await second.heartbeat()
    await eventually(lambda: _heartbeat_seen(server, "site1", "a"))
    await second.close()


async def test_stale_instance_is_disconnected(server: RunningServer, http: aiohttp.ClientSession) -> None:
    api = Api(http, server.url)
    a = Identity("site1", "a")
    await enroll(api, a)
    fa = agent(http, server, a)
    await fa.connect()
    # heartbeat interval 1 s: three missed → closed with 4001 within ~3.2 s
    assert await fa.wait_closed(timeout=6) == 4001
    data = await api.ok("GET", "/api/v1/checkpoints/site1/health")
    assert data["state"] == "unavailable"
    assert data["reasons"] == ["instance a is not connected (last heartbeat never)"]


async def test_removed_or_replaced_instance_loses_session(server: RunningServer, http: aiohttp.ClientSession) -> None:
    api = Api(http, server.url)
    a = Identity("site1", "a")
    await enroll(api, a)
    fa = agent(http, server, a)
    await fa.connect()
    new_key = Identity("site1", "a")
    await api.ok("PUT", "/api/v1/checkpoints/site1/instances/a", {"public_key": new_key.public_key, "replace": True})
    assert await fa.wait_closed() == 4002
    with pytest.raises(HandshakeRefused):
        await agent(http, server, a).connect()
    fb = agent(http, server, new_key)
    await fb.connect()
    await api.ok("DELETE", "/api/v1/checkpoints/site1/instances/a")
    assert await fb.wait_closed() == 4002


async def test_key_rotation_announced_and_used(server: RunningServer, http: aiohttp.ClientSession) -> None:
    api = Api(http, server.url)
    a, b = Identity("site1", "a"), Identity("site1", "b")
    await enroll(api, a, b)
    trust = TrustStore.from_json(await api.ok("GET", "/api/v1/signing-keys"))
    old_keyid = server.core.keys.keyid
    fa = agent(http, server, a)
    await fa.connect()
    rotated = await api.ok("POST", "/api/v1/signing-keys/rotate", {"grace_s": 3600})
    assert rotated["previous_keyid"] == old_keyid and rotated["announced_to"] == ["site1/a"]
    instr = await fa.instruction(trust)  # signed by the old key, which the agent trusts
    assert instr["kind"] == "rotate_key" and instr["aud"] == "site1/a"
    assert instr["body"]["key"]["keyid"] == rotated["keyid"]
    assert instr["body"]["retire_keyid"] == old_keyid
    keys = (await api.ok("GET", "/api/v1/signing-keys"))["keys"]
    by_id = {k["keyid"]: k for k in keys}
    assert by_id[rotated["keyid"]]["status"] == "active" and by_id[rotated["keyid"]]["not_after"] is None
    assert by_id[old_keyid]["not_after"] == rotated["retire_at"]
    assert (await api.ok("GET", "/api/v1/status"))["signing_keyid"] == rotated["keyid"]
    # an instance that was offline during the rotation hears about it when it connects
    fb = agent(http, server, b)
    await fb.connect()
    again = await fb.instruction(trust)
    assert again["kind"] == "rotate_key" and again["body"]["key"]["keyid"] == rotated["keyid"]
    # the key files: new key active, old one kept as .prev, both 0600
    path = server.core.settings.signing_key_path
    assert (path.stat().st_mode & 0o777) == 0o600
    prev = path.with_name(path.name + ".prev")
    assert (prev.stat().st_mode & 0o777) == 0o600
    await fa.close()
    await fb.close()


async def test_configured_public_url_is_binding(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    server = await start_server(make_settings(tmp_path, public_url="https://cp.example.com:8443"))
    try:
        api = Api(http, server.url)
        a = Identity("site1", "a")
        await enroll(api, a)
        with pytest.raises(HandshakeRefused) as info:  # the URL the socket was opened with is not enough
            await agent(http, server, a).connect()
        assert info.value.reason == "wrong_control_plane"
        fa = FakeAgent(http, server.ws_url, a, "https://CP.example.com:8443/")
        await fa.connect()
        trust = TrustStore.from_json(await api.ok("GET", "/api/v1/signing-keys"))
        await api.ok("POST", "/api/v1/monitors", {"name": "m", "checkpoint": "site1", "type": "tcp", "target": "h:1"})
        instr = await fa.instruction(trust)
        assert instr["iss"] == "https://cp.example.com:8443"
        await fa.close()
    finally:
        await server.stop()
