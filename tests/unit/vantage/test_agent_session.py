"""The agent's websocket session against an in-test control plane speaking docs/protocol.md.

Real sockets on 127.0.0.1 only: an aiohttp server plays the control plane (challenge, hello
verification, welcome, acks, instructions), and the checks run against a local HTTP target.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from vantage.agent.backoff import Backoff
from vantage.agent.config import load_config
from vantage.agent.health import healthcheck
from vantage.agent.session import Agent, Timing
from vantage.protocol import (
    INSTRUCTION_BATCH_TYPE,
    TrustStore,
    VerificationError,
    generate_key,
    instruction_payload,
    make_instruction,
    pae,
    public_key_b64,
    rotation_body,
    sign,
    verify_hello,
    write_private_key,
)
from vantage.protocol.keys import key_id

CHECKPOINT, INSTANCE = "site-a", "inst-1"
AUD = f"{CHECKPOINT}/{INSTANCE}"
CANARY_BODY = "canary-body-7d1f"
CANARY_HEADER = "canary-header-93ab"


class FakeControlPlane:
    """Just enough of the control plane: handshake, acks, and a queue of what the agent sent."""

    def __init__(self, enrolled_public_key: str, heartbeat: float = 0.3) -> None:
        self.enrolled_public_key = enrolled_public_key
        self.heartbeat = heartbeat
        self.url = ""
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sessions = 0
        self.hello_errors: list[str] = []
        self.auto_ack = True
        self.answer_pings = True
        self.refuse: str | None = None
        self.ws: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.results_received: list[str] = []

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=self.answer_pings)
        await ws.prepare(request)
        challenge = secrets.token_hex(32)
        await ws.send_json({"type": "challenge", "challenge": challenge, "server_time": time.time()})
        hello = await ws.receive_json(timeout=5)
        try:
            assert hello["type"] == "hello"
            verify_hello(
                hello["envelope"],
                enrolled_public_key=self.enrolled_public_key,
                challenge=challenge,
                checkpoint=CHECKPOINT,
                instance=INSTANCE,
                control_plane=self.url,
            )
        except (VerificationError, AssertionError, KeyError, TypeError, ValueError) as exc:  # for the test
            self.hello_errors.append(repr(exc))
            await ws.close()
            return ws
        if self.refuse:
            await ws.send_json({"type": "error", "error": self.refuse})
            await ws.close()
            return ws
        await ws.send_json(
            {"type": "welcome", "heartbeat_interval": self.heartbeat, "server_time": time.time()}
        )
        self.sessions += 1
        self.ws = ws
        self.connected.set()
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data["type"] == "result":
                self.results_received.append(data["result"]["id"])
                if self.auto_ack:
                    await ws.send_json({"type": "ack", "id": data["result"]["id"]})
            await self.messages.put(data)
        self.connected.clear()
        return ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.connected.wait()
        assert self.ws is not None
        await self.ws.send_json(message)

    async def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next message of ``kind`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind!r} message within {timeout}s")
            msg = await asyncio.wait_for(self.messages.get(), remaining)
            if msg["type"] == kind:
                return msg

    async def drop(self) -> None:
        """Close the current session from the server side."""
        if self.ws is not None:
            await self.ws.close()


async def _start_server(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@pytest.fixture
def signing_key() -> Any:
    return generate_key()


@pytest.fixture
def identity_key() -> Any:
    return generate_key()


@pytest.fixture
async def cp(identity_key: Any) -> AsyncIterator[FakeControlPlane]:
    fake = FakeControlPlane(public_key_b64(identity_key))
    app = web.Application()
    app.router.add_get("/api/v1/agent/connect", fake.handler)
    runner, port = await _start_server(app)
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def target() -> AsyncIterator[str]:
    """A local HTTP target answering with a canary body and header; /slow takes a while."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text=CANARY_BODY, headers={"X-Canary": CANARY_HEADER})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text="slow")

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/slow", slow)
    runner, port = await _start_server(app)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


AgentFactory = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def start_agent(
    tmp_path: Path, cp: FakeControlPlane, signing_key: Any, identity_key: Any
) -> AsyncIterator[AgentFactory]:
    """Start agents as tasks; stop them at teardown."""
    write_private_key(tmp_path / "identity.pem", identity_key)
    TrustStore.single_key(signing_key).save(tmp_path / "trusted.json")
    tasks: list[tuple[Agent, asyncio.Task[None]]] = []

    async def start(**env_overrides: str) -> Agent:
        env = {
            "VANTAGE_CONTROL_PLANE_URL": cp.url,
            "VANTAGE_CHECKPOINT": CHECKPOINT,
            "VANTAGE_INSTANCE": INSTANCE,
            "VANTAGE_IDENTITY_KEY": str(tmp_path / "identity.pem"),
            "VANTAGE_TRUSTED_KEYS": str(tmp_path / "trusted.json"),
            "VANTAGE_STATE_DIR": str(tmp_path / "state"),
            **env_overrides,
        }
        config, _ = load_config(env)
        timing = Timing(handshake_timeout=3, default_heartbeat_interval=0.3, stable_after=0.5, stop_grace=1)
        agent = Agent.from_config(config, timing=timing, backoff=Backoff(base=0.05, cap=0.2))
        tasks.append((agent, asyncio.create_task(agent.run())))
        return agent

    yield start
    for agent, task in tasks:
        agent.stop()
        await asyncio.wait_for(task, 10)


def instruction(
    key: Any, kind: str, body: dict[str, Any], *, aud: str = AUD, **kwargs: Any
) -> dict[str, Any]:
    return make_instruction(key, iss="http://cp", aud=aud, kind=kind, body=body, seq=1, **kwargs)


def run_check_body(target: str, check_id: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "check_id": check_id or secrets.token_hex(8),
        "monitor_id": "m1",
        "attempt": 1,
        "check": {"type": "http", "target": target, "timeout_s": 5, **spec},
    }


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# ----------------------------------------------------------------------------- session basics


async def test_handshake_heartbeat_and_status(
    cp: FakeControlPlane, start_agent: AgentFactory, tmp_path: Path
) -> None:
    await start_agent(VANTAGE_IMAGE_DIGEST="sha256:" + "a" * 64, VANTAGE_HOST_NAME="docker-host-7")
    beat = await cp.next("heartbeat")
    assert not cp.hello_errors
    health = beat["health"]
    assert health["image_digest"] == "sha256:" + "a" * 64
    assert health["host"]["hostname"] == "docker-host-7"  # the Docker host's name, not the container's
    assert health["healthy"] is True and health["reasons"] == []
    assert set(health["host"]) == {
        "hostname",
        "os",
        "cpu_count",
        "memory_total_bytes",
        "dns_servers",
        "timezone",
    }
    assert health["data_protection"] == {"strip_content": False, "strip_headers": False, "strip_ips": False}
    assert health["uptime_s"] >= 0
    await cp.next("heartbeat")  # they keep coming, every heartbeat_interval
    healthy, reason = healthcheck(tmp_path / "state")
    assert healthy, reason


async def test_run_check_result_is_sent_and_removed_on_ack(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    agent = await start_agent()
    body = run_check_body(target + "/", check_id="c-1")
    await cp.send({"type": "instruction", "envelope": instruction(signing_key, "run_check", body)})
    result = (await cp.next("result"))["result"]
    assert result["id"] == result["check_id"] == "c-1"
    assert result["monitor_id"] == "m1" and result["attempt"] == 1
    assert result["ok"] is True, result
    assert {"ok", "error", "duration_ms", "started_at", "phases", "details"} <= set(result)
    await wait_for(lambda: len(agent.outbox) == 0)


async def test_unacked_results_are_resent_after_reconnect(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    cp.auto_ack = False
    agent = await start_agent()
    await cp.send(
        {
            "type": "instruction",
            "envelope": instruction(signing_key, "run_check", run_check_body(target, "c-2")),
        }
    )
    await cp.next("result")
    assert "c-2" in agent.outbox
    cp.auto_ack = True
    await cp.drop()
    result = (await cp.next("result"))["result"]
    assert result["id"] == "c-2"
    assert cp.sessions == 2
    await wait_for(lambda: len(agent.outbox) == 0)


async def test_result_finished_while_disconnected_is_delivered(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    agent = await start_agent()
    body = run_check_body(target + "/slow?s=0.8", "c-slow")
    await cp.send({"type": "instruction", "envelope": instruction(signing_key, "run_check", body)})
    cp.refuse = "maintenance"  # the next sessions are refused for a while
    await cp.drop()
    await wait_for(lambda: "c-slow" in agent.outbox, timeout=5)
    assert agent.status.state != "connected"
    cp.refuse = None
    result = (await cp.next("result", timeout=5))["result"]
    assert result["id"] == "c-slow" and result["ok"] is True
    await wait_for(lambda: len(agent.outbox) == 0)


# ----------------------------------------------------------------------------- verification


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda key, forger: instruction(forger, "run_check", {}), "unknown_key"),
        (lambda key, forger: instruction(key, "run_check", {}, aud="site-a/other"), "wrong_audience"),
        (lambda key, forger: instruction(key, "run_check", {}, now=time.time() - 600), "expired"),
        (lambda key, forger: {"payloadType": "x", "payload": "", "signatures": []}, "malformed_envelope"),
    ],
    ids=["forged", "other-audience", "expired", "malformed"],
)
async def test_bad_instructions_are_rejected_and_never_run(
    cp: FakeControlPlane,
    start_agent: AgentFactory,
    signing_key: Any,
    make: Callable[[Any, Any], dict[str, Any]],
    reason: str,
    target: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = await start_agent()
    calls: list[Any] = []
    monkeypatch.setattr(agent.runner, "run", lambda body: calls.append(body))
    envelope = make(signing_key, generate_key())
    if reason != "malformed_envelope":
        # Make sure the envelope would have described a real check.
        payload = json.loads(base64.b64decode(envelope["payload"]))
        assert payload["kind"] == "run_check"
    await cp.send({"type": "instruction", "envelope": envelope})
    rejected = await cp.next("rejected")
    assert rejected["reason"] == reason
    if reason in {"wrong_audience", "expired"}:  # signature verified: the nonce may be quoted
        assert rejected["nonce"] == json.loads(base64.b64decode(envelope["payload"]))["nonce"]
    else:  # never read from an unauthenticated payload
        assert rejected["nonce"] is None
    assert calls == [] and agent.executed == {}
    assert len(agent.outbox) == 0


async def test_tampered_instruction_is_rejected(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    agent = await start_agent()
    envelope = instruction(signing_key, "run_check", run_check_body(target))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["body"]["check"]["target"] = "http://169.254.169.254/"
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    await cp.send({"type": "instruction", "envelope": envelope})
    assert (await cp.next("rejected"))["reason"] == "bad_signature"
    assert agent.executed == {}


async def test_replayed_instruction_runs_once_even_across_restart(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    agent = await start_agent()
    envelope = instruction(signing_key, "run_check", run_check_body(target, "c-once"))
    await cp.send({"type": "instruction", "envelope": envelope})
    await cp.next("result")
    await cp.send({"type": "instruction", "envelope": envelope})
    assert (await cp.next("rejected"))["reason"] == "replayed"
    assert agent.executed == {"run_check": 1}
    # A restarted agent (same state dir) still refuses it: the replay cache is persistent.
    agent.stop()
    await wait_for(lambda: agent.status.state == "stopped")
    cp.connected.clear()
    second = await start_agent()
    await cp.send({"type": "instruction", "envelope": envelope})
    assert (await cp.next("rejected"))["reason"] == "replayed"
    assert second.executed == {}
    assert cp.results_received.count("c-once") == 1


# ----------------------------------------------------------------------------- signed batches


def batch(
    key: Any, bodies: list[dict[str, Any]], tamper: Callable[[list[dict[str, Any]]], None] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A signed batch of run_check instructions (``tamper`` may change the items before signing)."""
    items = [
        instruction_payload(iss="http://cp", aud=AUD, kind="run_check", body=body, seq=index + 1)
        for index, body in enumerate(bodies)
    ]
    if tamper is not None:
        tamper(items)
    return sign(INSTRUCTION_BATCH_TYPE, json.dumps({"v": 1, "items": items}).encode(), key), items


async def test_a_batch_runs_every_check_once_across_a_restart(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    agent = await start_agent()
    bodies = [run_check_body(target + "/", f"b-{i}") for i in range(5)]
    envelope, _ = batch(signing_key, bodies)
    await cp.send({"type": "instruction_batch", "envelope": envelope})
    results = [(await cp.next("result"))["result"] for _ in bodies]
    assert sorted(r["id"] for r in results) == [f"b-{i}" for i in range(5)]
    assert all(r["ok"] for r in results) and agent.executed == {"run_check": 5}
    beat = await cp.next("heartbeat")
    assert "instruction_batch" in beat["health"]["features"]
    # Neither the batch nor any of its items can come back, not even after a restart.
    agent.stop()
    await wait_for(lambda: agent.status.state == "stopped")
    cp.connected.clear()
    second = await start_agent()
    await cp.send({"type": "instruction_batch", "envelope": envelope})
    rejected = [await cp.next("rejected") for _ in bodies]
    assert {r["reason"] for r in rejected} == {"replayed"}
    assert second.executed == {}
    assert sorted(cp.results_received) == [f"b-{i}" for i in range(5)]


def _item_1(**changes: Any) -> Callable[[list[dict[str, Any]]], None]:
    return lambda items: items[1].update(changes)


def _item_1_repeats_item_0(items: list[dict[str, Any]]) -> None:
    items[1]["nonce"] = items[0]["nonce"]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_item_1(aud="site-a/other"), "wrong_audience"),
        (_item_1(iat=int(time.time()) - 600, exp=int(time.time()) - 540), "expired"),
        (_item_1(kind="format_disk"), "unknown_kind"),
        (_item_1_repeats_item_0, "replayed"),
    ],
    ids=["other-audience", "expired", "unknown-kind", "duplicate-nonce"],
)
async def test_one_bad_item_refuses_the_batch_and_every_item_is_answered(
    cp: FakeControlPlane,
    start_agent: AgentFactory,
    signing_key: Any,
    target: str,
    tamper: Callable[[list[dict[str, Any]]], None],
    reason: str,
) -> None:
    agent = await start_agent()
    envelope, items = batch(signing_key, [run_check_body(target + "/", f"x-{i}") for i in range(3)], tamper)
    nonces = {item["nonce"] for item in items}
    await cp.send({"type": "instruction_batch", "envelope": envelope})
    rejected = [await cp.next("rejected") for _ in nonces]
    assert {r["reason"] for r in rejected} == {reason}
    assert {r["nonce"] for r in rejected} == nonces
    assert agent.executed == {} and len(agent.outbox) == 0
    assert len(agent.verifier.replay) == 0  # no nonce of a refused batch was recorded
    # The other items, in a batch of their own, run: the refused batch consumed none of them.
    good = [items[0], items[2]]
    await cp.send(
        {
            "type": "instruction_batch",
            "envelope": sign(INSTRUCTION_BATCH_TYPE, json.dumps({"v": 1, "items": good}).encode(), signing_key),
        }
    )
    assert {(await cp.next("result"))["result"]["id"] for _ in good} == {"x-0", "x-2"}


async def test_too_many_items_and_an_oversized_batch_are_refused(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    from vantage.protocol import MAX_BATCH_ITEMS, MAX_PAYLOAD_BYTES

    agent = await start_agent()
    bodies = [run_check_body(target + "/", f"many-{i}") for i in range(MAX_BATCH_ITEMS + 1)]
    envelope, _ = batch(signing_key, bodies)
    await cp.send({"type": "instruction_batch", "envelope": envelope})
    rejected = [await cp.next("rejected") for _ in range(MAX_BATCH_ITEMS)]  # one per item, bounded
    assert {r["reason"] for r in rejected} == {"payload_too_large"}
    # over the payload limit (within the frame limit), signed all the same (sign() would refuse):
    # refused before its signature is even checked
    _, items = batch(signing_key, [run_check_body(target + "/", "big")])
    items[0]["body"]["padding"] = "x" * MAX_PAYLOAD_BYTES
    payload = json.dumps({"v": 1, "items": items}).encode()
    signature = signing_key.sign(pae(INSTRUCTION_BATCH_TYPE, payload))
    oversized = {
        "payloadType": INSTRUCTION_BATCH_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(signing_key), "sig": base64.b64encode(signature).decode()}],
    }
    await cp.send({"type": "instruction_batch", "envelope": oversized})
    assert await cp.next("rejected") == {"type": "rejected", "nonce": None, "reason": "payload_too_large"}
    assert agent.executed == {} and len(agent.verifier.replay) == 0


async def test_a_forged_batch_is_answered_without_reading_its_payload(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    agent = await start_agent()
    envelope, _ = batch(signing_key, [run_check_body(target + "/", "f-1")])
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["items"][0]["body"]["check"]["target"] = "http://169.254.169.254/"
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    await cp.send({"type": "instruction_batch", "envelope": envelope})
    assert await cp.next("rejected") == {"type": "rejected", "nonce": None, "reason": "bad_signature"}
    # a single instruction's envelope is not a batch
    single = instruction(signing_key, "run_check", run_check_body(target + "/", "f-2"))
    await cp.send({"type": "instruction_batch", "envelope": single})
    assert (await cp.next("rejected"))["reason"] == "wrong_payload_type"
    assert agent.executed == {}


async def test_ping_answers_with_a_heartbeat(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any
) -> None:
    cp.heartbeat = 30  # no periodic heartbeat gets in the way
    await start_agent()
    await cp.next("heartbeat")
    await cp.send({"type": "instruction", "envelope": instruction(signing_key, "ping", {})})
    await cp.next("heartbeat", timeout=2)


async def test_rotate_key_is_applied_and_persisted(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, tmp_path: Path, target: str
) -> None:
    agent = await start_agent()
    new_key = generate_key()
    body = rotation_body(new_key, retire_keyid=key_id(signing_key), retire_at=int(time.time()) - 1)
    await cp.send({"type": "instruction", "envelope": instruction(signing_key, "rotate_key", body)})
    await wait_for(lambda: agent.executed.get("rotate_key") == 1)
    stored = TrustStore.load(tmp_path / "state" / "trusted_keys.json")
    assert stored.is_trusted(key_id(new_key)) and not stored.is_trusted(key_id(signing_key))
    # The old key is no longer accepted, the new one is.
    await cp.send({"type": "instruction", "envelope": instruction(signing_key, "ping", {})})
    assert (await cp.next("rejected"))["reason"] == "unknown_key"
    await cp.send(
        {"type": "instruction", "envelope": instruction(new_key, "run_check", run_check_body(target))}
    )
    assert (await cp.next("result"))["result"]["ok"] is True


# ----------------------------------------------------------------------------- data protection


async def test_data_protection_applies_before_outbox_and_send(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str, tmp_path: Path
) -> None:
    cp.auto_ack = False
    agent = await start_agent(
        VANTAGE_DP_STRIP_CONTENT="true", VANTAGE_DP_STRIP_HEADERS="1", VANTAGE_DP_STRIP_IPS="yes"
    )
    await cp.send(
        {
            "type": "instruction",
            "envelope": instruction(signing_key, "run_check", run_check_body(target + "/", "c-dp")),
        }
    )
    result = (await cp.next("result"))["result"]
    assert result["ok"] is True
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state" / "journal").iterdir())
    assert b'"c-dp"' in stored  # the grep below looks where the result is kept
    for blob in (json.dumps(result).encode(), stored):
        assert CANARY_BODY.encode() not in blob
        assert CANARY_HEADER.encode() not in blob
        assert b"127.0.0.1" not in blob
    beat = await cp.next("heartbeat")
    assert beat["health"]["data_protection"] == {
        "strip_content": True,
        "strip_headers": True,
        "strip_ips": True,
    }
    assert "c-dp" in agent.outbox


async def test_without_data_protection_content_is_reported(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    """The control for the test above: the canaries do appear when protection is off."""
    await start_agent()
    await cp.send(
        {
            "type": "instruction",
            "envelope": instruction(signing_key, "run_check", run_check_body(target + "/")),
        }
    )
    blob = json.dumps((await cp.next("result"))["result"])
    assert CANARY_BODY in blob and CANARY_HEADER in blob and "127.0.0.1" in blob


# ----------------------------------------------------------------------------- failures


async def test_refused_session_backs_off_and_reports_unhealthy(
    cp: FakeControlPlane, start_agent: AgentFactory, tmp_path: Path
) -> None:
    cp.refuse = "unknown_instance"
    agent = await start_agent()
    await wait_for(lambda: agent.backoff.failures >= 3)
    healthy, reason = healthcheck(tmp_path / "state")
    assert not healthy and "unknown_instance" in reason
    cp.refuse = None
    await cp.next("heartbeat")
    assert healthcheck(tmp_path / "state")[0]


async def test_unresponsive_control_plane_is_noticed(
    cp: FakeControlPlane, start_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that holds the socket open but answers no ping must not look connected."""
    cp.answer_pings = False
    cp.heartbeat = 0.2
    agent = await start_agent()
    await cp.next("heartbeat")
    cp.answer_pings = True  # the next session is healthy again
    # The agent's heartbeats keep its own side busy, but nothing comes back from the server:
    # the watchdog pings, gets no pong, and ends the session.
    await wait_for(lambda: cp.sessions >= 2, timeout=5)
    assert "no pong within" in caplog.text
    # and it came back by itself (the server counts the session before its welcome arrives)
    await wait_for(lambda: agent.status.state == "connected", timeout=5)


async def test_garbage_frame_closes_the_session_and_agent_reconnects(
    cp: FakeControlPlane, start_agent: AgentFactory
) -> None:
    await start_agent()
    await cp.next("heartbeat")
    assert cp.ws is not None
    await cp.ws.send_str("not json")
    await wait_for(lambda: cp.sessions >= 2, timeout=5)


async def test_wrong_url_in_hello_is_what_the_server_checks(
    cp: FakeControlPlane, start_agent: AgentFactory
) -> None:
    """The hello binds the configured control-plane URL; a mismatch fails verification."""
    real = cp.url
    cp.url = real.replace("127.0.0.1", "localhost")
    await start_agent(VANTAGE_CONTROL_PLANE_URL=real)
    await wait_for(lambda: len(cp.hello_errors) >= 1)
    assert "control_plane" in cp.hello_errors[0] or "url" in cp.hello_errors[0].lower()


# ----------------------------------------------------------------------------- delivery details


async def test_large_backlog_is_delivered_once_each(
    cp: FakeControlPlane, start_agent: AgentFactory, tmp_path: Path
) -> None:
    """Results left by a previous run are all sent (windowed), each exactly once, and acked."""
    from vantage.agent.journal import Journal, result_record

    backlog = Journal(tmp_path / "state")
    backlog.write(
        [result_record(json.dumps({"id": f"old-{i}", "check_id": f"old-{i}", "ok": True}).encode()) for i in range(150)]
    )
    backlog.close()
    agent = await start_agent()
    await wait_for(lambda: len(agent.outbox) == 0, timeout=10)
    assert sorted(cp.results_received) == sorted(f"old-{index}" for index in range(150))


async def test_stop_lets_a_running_check_finish_and_deliver(
    cp: FakeControlPlane, start_agent: AgentFactory, signing_key: Any, target: str
) -> None:
    agent = await start_agent()
    body = run_check_body(target + "/slow?s=0.3", "c-stop")
    await cp.send({"type": "instruction", "envelope": instruction(signing_key, "run_check", body)})
    await wait_for(lambda: agent.runner.running == 1)
    agent.stop()
    await wait_for(lambda: agent.status.state == "stopped", timeout=5)
    assert cp.results_received == ["c-stop"]
    assert len(agent.outbox) == 0


class ConnectProxy:
    """A minimal HTTP CONNECT proxy that records the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.port = 0

    async def start(self) -> asyncio.AbstractServer:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, authority, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        self.tunnels.append(authority)
        host, port = authority.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_tls_session_through_https_proxy(
    tmp_path: Path, identity_key: Any, signing_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTPS_PROXY`` carries the wss session (CONNECT tunnel, TLS end to end, private CA)."""
    import ssl

    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    fake = FakeControlPlane(public_key_b64(identity_key))
    app = web.Application()
    app.router.add_get("/api/v1/agent/connect", fake.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"https://127.0.0.1:{port}"
    proxy = ConnectProxy()
    proxy_server = await proxy.start()
    for name in ("NO_PROXY", "no_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")

    write_private_key(tmp_path / "identity.pem", identity_key)
    TrustStore.single_key(signing_key).save(tmp_path / "trusted.json")
    config, _ = load_config(
        {
            "VANTAGE_CONTROL_PLANE_URL": fake.url,
            "VANTAGE_CHECKPOINT": CHECKPOINT,
            "VANTAGE_INSTANCE": INSTANCE,
            "VANTAGE_IDENTITY_KEY": str(tmp_path / "identity.pem"),
            "VANTAGE_TRUSTED_KEYS": str(tmp_path / "trusted.json"),
            "VANTAGE_CA_BUNDLE": str(tmp_path / "ca.pem"),
            "VANTAGE_STATE_DIR": str(tmp_path / "state"),
        }
    )
    agent = Agent.from_config(
        config, timing=Timing(default_heartbeat_interval=0.3), backoff=Backoff(0.05, 0.2)
    )
    task = asyncio.create_task(agent.run())
    try:
        await fake.next("heartbeat")
        assert proxy.tunnels == [f"127.0.0.1:{port}"]
        assert not fake.hello_errors
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
        proxy_server.close()
        await runner.cleanup()


async def test_stop_while_the_control_plane_does_not_answer(
    tmp_path: Path, identity_key: Any, signing_key: Any
) -> None:
    """A TCP peer that never completes the handshake must not delay a shutdown."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # hold the connection, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    write_private_key(tmp_path / "identity.pem", identity_key)
    TrustStore.single_key(signing_key).save(tmp_path / "trusted.json")
    config, _ = load_config(
        {
            "VANTAGE_CONTROL_PLANE_URL": f"http://127.0.0.1:{port}",
            "VANTAGE_CHECKPOINT": CHECKPOINT,
            "VANTAGE_INSTANCE": INSTANCE,
            "VANTAGE_IDENTITY_KEY": str(tmp_path / "identity.pem"),
            "VANTAGE_TRUSTED_KEYS": str(tmp_path / "trusted.json"),
            "VANTAGE_STATE_DIR": str(tmp_path / "state"),
        }
    )
    agent = Agent.from_config(config)  # production timing: a 15 s handshake timeout
    task = asyncio.create_task(agent.run())
    await wait_for(lambda: agent.status.state == "connecting")
    await asyncio.sleep(0.2)
    started = time.monotonic()
    agent.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2
    assert agent.status.state == "stopped"
    server.close()
