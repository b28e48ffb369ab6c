"""A real ``vantage agent run`` killed with SIGKILL at random points under load, again and again.

A protocol-correct control plane on 127.0.0.1 (challenge, verified hello, welcome, signed
instructions alone and in batches, acks) drives the agent while it runs checks against a local
HTTP target that records which check reached it.  Each cycle: restart the agent, replay every
instruction frame ever sent, exactly as it was sent, then put it under load and SIGKILL it at a
random moment.  After every kill and every restart the test proves, from the target's and the
control plane's records and from the journal the agent left:

* nothing sent is lost: every result the control plane received and did not acknowledge is in
  the journal after the kill, and is delivered again after the restart;
* nothing is replayed: every frame holding a check that reached the target is refused as
  ``replayed`` after the restart (all of its items), and no check ever reaches the target twice;
* the journal stays bounded and a torn or half-written tail never stops the agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from support.waiting import eventually

from vantage.agent.journal import read_journal
from vantage.protocol import (
    TrustStore,
    generate_key,
    instruction_payload,
    make_instruction,
    make_instruction_batch,
    public_key_b64,
    verify_hello,
    write_private_key,
)

VANTAGE = Path(sys.executable).with_name("vantage")
CHECKPOINT, INSTANCE = "crash", "a"
AUDIENCE = f"{CHECKPOINT}/{INSTANCE}"
CYCLES = 6
LIFETIME = 300  # every frame stays valid for the whole test: a refusal can only be "replayed"


class ControlPlane:
    """One agent session at a time: verifies the hello, records results, acknowledges about half."""

    def __init__(self, identity_public_key: str) -> None:
        self.key = generate_key()
        self.identity = identity_public_key
        self.url = ""
        self.sessions = 0
        self.received: Counter[str] = Counter()  # result id -> deliveries
        self.acked: set[str] = set()
        self.rejected: list[dict[str, Any]] = []
        self.ws: web.WebSocketResponse | None = None
        self.rng = random.Random(7)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/agent/connect", self._connect)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _connect(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        challenge = os.urandom(32).hex()
        await ws.send_json({"type": "challenge", "challenge": challenge, "server_time": time.time()})
        hello = await ws.receive_json(timeout=10)
        verify_hello(
            hello["envelope"],
            enrolled_public_key=self.identity,
            challenge=challenge,
            checkpoint=CHECKPOINT,
            instance=INSTANCE,
            control_plane=self.url,
        )
        await ws.send_json({"type": "welcome", "heartbeat_interval": 15, "server_time": time.time()})
        self.ws = ws
        self.sessions += 1
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data["type"] == "result":
                result_id = data["result"]["id"]
                self.received[result_id] += 1
                if self.rng.random() < 0.5:
                    await ws.send_json({"type": "ack", "id": result_id})
                    self.acked.add(result_id)
            elif data["type"] == "rejected":
                self.rejected.append(data)
        return ws

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(frame)

    async def ack_everything(self) -> None:
        """From now on every result is acknowledged (the last, clean session)."""
        self.rng = random.Random()
        self.rng.random = lambda: 0.0  # type: ignore[method-assign]


class Target:
    """Answers ``/hit/<check id>`` after a short random delay and counts the hits per id."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.match_info["check_id"]] += 1
        await asyncio.sleep(random.uniform(0, 0.03))  # keep checks in flight when the agent dies
        return web.Response(text="ok")


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    state = Target()
    app = web.Application()
    app.router.add_get("/hit/{check_id}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


class Frames:
    """Every instruction frame sent, with the check ids it carries."""

    def __init__(self, key: Any, target: Target, control_plane_url: str) -> None:
        self.key = key
        self.target = target
        self.iss = control_plane_url
        self.seq = 0
        self.sent: list[tuple[dict[str, Any], list[str]]] = []

    def _payload(self) -> tuple[dict[str, Any], str]:
        self.seq += 1
        check_id = str(uuid.uuid4())
        body = {
            "check_id": check_id,
            "monitor_id": "m",
            "attempt": 1,
            "check": {"type": "http", "target": f"{self.target.url}/hit/{check_id}", "timeout_s": 5},
        }
        payload = instruction_payload(
            iss=self.iss, aud=AUDIENCE, kind="run_check", body=body, seq=self.seq, lifetime=LIFETIME
        )
        return payload, check_id

    def next(self, rng: random.Random) -> dict[str, Any]:
        """A new frame: a single instruction or a batch of 2-8, at random."""
        if rng.random() < 0.5:
            payload, check_id = self._payload()
            envelope = make_instruction(
                self.key, iss=payload["iss"], aud=AUDIENCE, kind="run_check", body=payload["body"],
                seq=payload["seq"], lifetime=LIFETIME, nonce=payload["nonce"],
            )  # fmt: skip
            frame, ids = {"type": "instruction", "envelope": envelope}, [check_id]
        else:
            pairs = [self._payload() for _ in range(rng.randint(2, 8))]
            envelope = make_instruction_batch(self.key, [payload for payload, _ in pairs])
            frame, ids = {"type": "instruction_batch", "envelope": envelope}, [i for _, i in pairs]
        self.sent.append((frame, ids))
        return frame


async def test_sigkill_at_random_points_under_load_loses_nothing_sent_and_replays_nothing(
    tmp_path: Path, target: Target
) -> None:
    identity = generate_key()
    write_private_key(tmp_path / "identity.pem", identity)
    cp = ControlPlane(public_key_b64(identity))
    await cp.start()
    TrustStore.single_key(cp.key).save(tmp_path / "trusted.json")
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env.update(
        VANTAGE_CONTROL_PLANE_URL=cp.url,
        VANTAGE_CHECKPOINT=CHECKPOINT,
        VANTAGE_INSTANCE=INSTANCE,
        VANTAGE_IDENTITY_KEY=str(tmp_path / "identity.pem"),
        VANTAGE_TRUSTED_KEYS=str(tmp_path / "trusted.json"),
        VANTAGE_STATE_DIR=str(state),
        VANTAGE_LOG_LEVEL="WARNING",
    )
    log = (tmp_path / "agent.log").open("ab")
    frames = Frames(cp.key, target, cp.url)
    rng = random.Random(2024)
    procs: list[asyncio.subprocess.Process] = []

    async def start_agent() -> asyncio.subprocess.Process:
        sessions = cp.sessions
        proc = await asyncio.create_subprocess_exec(str(VANTAGE), "agent", "run", env=env, stderr=log)
        procs.append(proc)
        await eventually(lambda: cp.sessions > sessions, timeout=20)
        return proc

    def unacknowledged() -> set[str]:
        return set(cp.received) - cp.acked

    try:
        executed_total = 0
        for cycle in range(CYCLES):
            agent = await start_agent()
            # 1. Everything sent and not acknowledged before the kill is delivered again.
            left = unacknowledged()
            await eventually(lambda left=left: all(cp.received[i] >= 1 for i in left), timeout=20)

            # 2. Replay every frame ever sent, exactly as sent: those that ran are refused whole.
            executed = {check_id for check_id, count in target.hits.items() if count}
            hits_before = Counter(target.hits)
            expected_refusals = 0
            rejected_before = len(cp.rejected)
            for frame, ids in frames.sent:
                if any(i in executed for i in ids):
                    expected_refusals += len(ids)
                await cp.send(frame)
            wanted = rejected_before + expected_refusals
            await eventually(lambda wanted=wanted: len(cp.rejected) >= wanted, timeout=20)
            await asyncio.sleep(0.3)  # anything wrongly accepted would reach the target by now
            for check_id in executed:
                assert target.hits[check_id] == hits_before[check_id], f"check {check_id} ran twice"
            refusals = cp.rejected[rejected_before:]
            assert {r["reason"] for r in refusals} <= {"replayed"}, refusals[:3]
            assert max(target.hits.values(), default=0) <= 1

            # 3. Load, then SIGKILL at a random moment with checks in flight.
            deadline = time.monotonic() + rng.uniform(0.3, 1.5)
            while time.monotonic() < deadline:
                await cp.send(frames.next(rng))
                await asyncio.sleep(0.01)
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
            await asyncio.sleep(0.2)  # requests already on their way still land at the target

            # 4. Everything the control plane saw and did not acknowledge is in the journal.
            stored = set(read_journal(state).results)
            missing = unacknowledged() - stored
            assert not missing, f"cycle {cycle}: {len(missing)} sent result(s) not durable: {sorted(missing)[:3]}"
            executed_total = sum(1 for count in target.hits.values() if count)
            assert len(list((state / "journal").glob("*.log"))) <= 2  # bounded: a start compacts

        # The last, clean session: everything unacknowledged is delivered and acknowledged.
        assert executed_total > 100, "the load was too light to prove anything"
        await cp.ack_everything()
        agent = await start_agent()
        await eventually(lambda: not unacknowledged(), timeout=30)
        await eventually(lambda: not read_journal(state).results, timeout=10)
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.wait(), 15) == 0
        assert max(target.hits.values()) == 1  # no check ever ran twice
        assert "Traceback" not in (tmp_path / "agent.log").read_text(errors="replace")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        log.close()
        await cp.stop()
